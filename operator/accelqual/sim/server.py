"""`EmulatorServer`: a `ClusterEmulator` on 127.0.0.1, in a background thread with its own event loop.

Used by `accelqual simulate`, the end-to-end tests and the benchmarks: anything that wants a
Kubernetes API URL (kopf, the `kubernetes` client, kubectl through `write_kubeconfig`) while
its own code keeps running in the calling thread. `run(coro)` executes a coroutine on the
emulator's loop; the emulator's Python API (`server.emulator.create(...)`) marshals itself.

The HTTP server is aiohttp's `RawTestServer`, the one `kmock.Server` wraps, used directly:
`kmock.Server` also installs a process-wide DNS interceptor on aiohttp (a class attribute
patched on enter, restored on exit, which must be strictly LIFO), and servers living in
background threads with their own lifetimes cannot promise that order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.test_utils
import yaml

from accelqual.sim.emulator import ClusterEmulator

T = TypeVar("T")


class EmulatorServer:
    """Serve a `ClusterEmulator` over HTTP from a background thread; a context manager."""

    def __init__(self, emulator: ClusterEmulator | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._emulator = emulator if emulator is not None else ClusterEmulator()
        self._host = host
        self._port = port
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def emulator(self) -> ClusterEmulator:
        return self._emulator

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash."""
        if self._url is None:
            raise RuntimeError("the emulator server is not running")
        return self._url

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the emulator server is not running")
        return self._loop

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("the emulator server is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._main, name="accelqual-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            error = self._error
            self.stop()
            raise RuntimeError(f"the emulator server did not start: {error!r}") from error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the watches, shut the HTTP server down and join the thread (idempotent)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # the loop closed between the check and the call: the thread is ending anyway
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("the emulator server thread did not stop in time")
        self._thread = self._loop = self._stopping = None
        self._url = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the emulator's loop from another thread and return its result."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def write_kubeconfig(self, path: str | Path, *, context: str = "accelqual-emulator",
                         namespace: str = "default") -> Path:
        """A kubeconfig for kubectl and `kubernetes.config.load_kube_config` (dummy token, no TLS)."""
        target = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": context, "user": {"token": "accelqual-emulator"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
            "current-context": context,
            "preferences": {},
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return target

    # --- the server thread ---------------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
        finally:
            self._ready.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = aiohttp.test_utils.RawTestServer(self._emulator, host=self._host, port=self._port or None)
        async with self._emulator:
            await server.start_server()
            try:
                self._url = str(server.make_url("")).rstrip("/")
                self._ready.set()
                await self._stopping.wait()
            finally:
                # Watches are the only long requests: ending them first lets aiohttp's graceful
                # shutdown (which waits for in-flight handlers) finish at once.
                self._emulator.close_watches()
                await server.close()
