"""A small HTTP/1.1 client for the operator's per-node API calls: persistent connections, nothing else.

At fleet scale every node of every run costs four requests (create the probe pod, read its
log, mark the node, delete the pod), each small. Through aiohttp each cost about 0.3 ms of
CPU (URL objects, cookie jar, tracing hooks, timers, a streaming response object) against
0.08 ms here: per node of a 5,000-node run, about a millisecond, half of the issue's CPU
budget. What this client does is what those calls need and no more:

- keep-alive connections (at most `limit`, over TLS when the server URL is https), reused
  LIFO so that few stay warm;
- responses framed by Content-Length, chunked transfer encoding, or the end of the
  connection, with a bound on the body (`max_body`) and on the head;
- a request that finds a kept-alive connection closed by the server before any byte of
  an answer is sent again once on a new connection (servers close idle connections);
- a timeout over the whole exchange; the connection is dropped on any error.

Not supported, because the calls do not need them: HTTP/2, proxies, redirects, compressed
bodies (no Accept-Encoding is sent), request streaming. Watches stay on aiohttp
(`adapters.watch`), whose cost is per event, not per request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The longest status line plus headers accepted (a server's answer head is a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024


class HttpError(OSError):
    """The exchange failed below HTTP: connection refused or lost, malformed answer, oversized body."""


@dataclass(frozen=True)
class Response:
    status: int
    #: Header names in lower case; repeated headers joined with ", ".
    headers: Mapping[str, str]
    body: bytes


class _StaleConnectionError(HttpError):
    """A kept-alive connection was closed by the server before it answered: safe to send again."""


class _Connection(asyncio.Protocol):
    """One connection: sends a request, parses one answer at a time."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head_request = False
        self._received_any = False
        self.reused = False
        self.closed = False
        self.keep_alive = False
        # Parser state of the answer in progress.
        self._status = 0
        self._headers: dict[str, str] = {}
        self._mode = ""  # "", "length", "chunked" or "close" (until the end of the connection)
        self._remaining = 0
        self._body = bytearray()
        self._chunk_trailer = False

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        self._buf += data
        try:
            self._parse()
        except HttpError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._mode == "close":
            self._finish(keep_alive=False)
        elif not self._received_any and self.reused:
            self._waiter.set_exception(_StaleConnectionError("the server closed the kept-alive connection"))
        else:
            why = f": {exc}" if exc else ""
            self._waiter.set_exception(HttpError(f"connection closed before the answer was complete{why}"))

    # --- requests --------------------------------------------------------------------------------

    def send(self, data: bytes, head_request: bool) -> asyncio.Future[Response]:
        assert self._transport is not None
        assert not self.closed
        self._waiter = asyncio.get_running_loop().create_future()
        self._head_request = head_request
        self._received_any = False
        self._status, self._headers, self._mode = 0, {}, ""
        self._transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # --- parsing ---------------------------------------------------------------------------------

    def _parse(self) -> None:
        while self._waiter is not None and not self._waiter.done():
            if not self._mode:
                if not self._parse_head():
                    return
                continue
            if self._mode == "length":
                if len(self._buf) < self._remaining:
                    return
                self._body += self._buf[:self._remaining]
                del self._buf[:self._remaining]
                self._finish(keep_alive=True)
            elif self._mode == "chunked":
                if not self._parse_chunk():
                    return
            else:  # until the end of the connection
                self._body += self._buf
                self._buf.clear()
                self._check_size()
                return
        if self._buf and (self._waiter is None or self._waiter.done()):
            # Bytes nobody asked for: the connection's framing is lost, it cannot be reused.
            self.keep_alive = False

    def _parse_head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                raise HttpError(f"the answer's head is larger than {MAX_HEAD_BYTES} bytes")
            return False
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[:end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(f"malformed header line {line[:80]!r}")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if 100 <= status < 200:
            return True  # an interim answer (100 Continue): the real one follows
        self._status, self._headers = status, headers
        self._body = bytearray()
        self.keep_alive = parts[0] == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if self._head_request or status in (204, 304):
            self._mode, self._remaining = "length", 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode, self._chunk_trailer = "chunked", False
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise HttpError(f"invalid Content-Length {length[:40]!r}")
            self._mode, self._remaining = "length", int(length)
            if self._remaining > self._max_body:
                raise HttpError(f"the answer's body ({self._remaining} bytes) is larger than {self._max_body}")
        else:
            self._mode, self.keep_alive = "close", False
        return True

    def _parse_chunk(self) -> bool:
        """Consume one chunk (or the final chunk and trailers); False when more bytes are needed."""
        if self._chunk_trailer:
            # After the last chunk: trailer lines, then an empty line.
            end = self._buf.find(b"\r\n")
            if end < 0:
                return False
            del self._buf[:end + 2]
            if end == 0:
                self._finish(keep_alive=True)
            return True
        if self._remaining:
            if len(self._buf) < self._remaining + 2:
                return False
            if self._buf[self._remaining:self._remaining + 2] != b"\r\n":
                raise HttpError("a chunk does not end with CRLF")
            self._body += self._buf[:self._remaining]  # its size was checked against max_body with its size line
            del self._buf[:self._remaining + 2]
            self._remaining = 0
            return True
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > 1024:
                raise HttpError("a chunk size line is too long")
            return False
        size_text = bytes(self._buf[:end]).split(b";", 1)[0].strip()
        del self._buf[:end + 2]
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(f"invalid chunk size {size_text[:20]!r}") from None
        if size < 0:
            raise HttpError("negative chunk size")
        if size == 0:
            self._chunk_trailer = True
        else:
            self._remaining = size
            if len(self._body) + size > self._max_body:
                raise HttpError(f"the answer's body is larger than {self._max_body} bytes")
        return True

    def _check_size(self) -> None:
        if len(self._body) > self._max_body:
            raise HttpError(f"the answer's body is larger than {self._max_body} bytes")

    def _finish(self, keep_alive: bool) -> None:
        self._mode = ""
        self.keep_alive = self.keep_alive and keep_alive
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(Response(self._status, self._headers, bytes(self._body)))
        self._body = bytearray()

    def _fail(self, exc: Exception) -> None:
        self.keep_alive = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to one server; `request()` from one event loop, `close()` when done."""

    def __init__(self, server: str, ssl_context: Callable[[], ssl.SSLContext | bool], *, limit: int = 64,
                 max_body: int = 64 * 1024 * 1024, timeout: float = 30.0, connect_timeout: float = 30.0) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) server URL: {server!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        default_port = 443 if self._tls else 80
        self._port = parts.port or default_port
        self._prefix = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if self._port == default_port else f"{host}:{self._port}"
        self._ssl_context = ssl_context
        self._max_body = max_body
        self._connect_timeout = connect_timeout
        self.timeout = timeout
        self._limit = limit
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Connection] = []
        #: Connections opened so far (for tests and the benchmark: reuse keeps it near the concurrency).
        self.opened = 0

    async def request(self, method: str, target: str, headers: Mapping[str, str],
                      body: bytes | None = None) -> Response:
        """Send one request (`target`: path and query) and return the whole answer.

        Raises `HttpError` (an OSError) for failures below HTTP and TimeoutError after `timeout` seconds
        for the whole exchange; HTTP error statuses are answers, returned like any other."""
        lines = [f"{method} {self._prefix}{target} HTTP/1.1", f"Host: {self._host_header}"]
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        async with self._slots, asyncio.timeout(self.timeout):
            for _ in range(2):
                conn = await self._connection()
                try:
                    response = await conn.send(data, method == "HEAD")
                except _StaleConnectionError:
                    # The server's idle timeout closed it, and likely the other idle ones of the same age:
                    # once more, on a new connection.
                    conn.close()
                    for other in self._idle:
                        other.close()
                    self._idle.clear()
                    continue
                except BaseException:
                    conn.close()  # an error or a timeout mid-answer: the framing is lost
                    raise
                if conn.keep_alive and not conn.closed:
                    conn.reused = True
                    self._idle.append(conn)
                else:
                    conn.close()
                return response
            raise HttpError("the server closed two connections in a row before answering")

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if self._tls else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self._max_body), self._host, self._port,
                    ssl=context if isinstance(context, ssl.SSLContext) else (True if self._tls else None),
                    server_hostname=self._host if self._tls else None)
        except TimeoutError:
            raise HttpError(f"connecting to {self._host}:{self._port} timed out") from None
        self.opened += 1
        return protocol

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        await asyncio.sleep(0)  # let the transports close
