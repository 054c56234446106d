"""The operator's HTTP/1.1 client (`adapters.http1`) against scripted servers that answer the way real ones can:
framing by length, chunks or the end of the connection; answers split into single bytes; kept-alive
connections the server closed; slow, oversized and malformed answers; TLS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from accelqual.adapters.http1 import Http1Pool, HttpError, Response
from accelqual.adapters.kube import KubeError, RetryPolicy
from accelqual.adapters.kube_async import AsyncKube
from accelqual.adapters.watch import Connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client as k8s


@dataclass
class Seen:
    """What the scripted server received: one (method, target, headers, body) per request, per connection."""

    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    connections: int = 0


Script = Callable[[int, asyncio.StreamWriter], Awaitable[bool]]  # (request index, writer) -> keep the connection


@asynccontextmanager
async def scripted(script: Script, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen.requests.append((method, target, headers, body))
                if not await script(len(seen.requests) - 1, writer):
                    return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


def answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def write(writer: asyncio.StreamWriter, data: bytes, *, bytewise: bool = False) -> None:
    if bytewise:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0)
    else:
        writer.write(data)
        await writer.drain()


def plain_pool(url: str, **kwargs: object) -> Http1Pool:
    return Http1Pool(url, lambda: False, **kwargs)  # type: ignore[arg-type]


async def get_each(script: Script, targets: list[str]) -> tuple[list[Response], Seen]:
    """GET each target in turn through one pool against a server answering with `script`."""
    async with scripted(script) as (url, seen):
        pool = plain_pool(url)
        responses = [await pool.request("GET", target, {}) for target in targets]
        await pool.close()
    return responses, seen


async def test_a_kept_alive_connection_serves_every_request() -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await write(writer, answer(json.dumps({"n": i}).encode()))
        return True

    async with scripted(script) as (url, seen):
        pool = plain_pool(url)
        bodies = [(await pool.request("GET", f"/api/v1/x?n={i}", {"Accept": "application/json"})).body
                  for i in range(5)]
        await pool.close()
    assert [json.loads(b)["n"] for b in bodies] == [0, 1, 2, 3, 4]
    assert seen.connections == 1
    assert pool.opened == 1
    method, target, headers, _ = seen.requests[3]
    assert (method, target, headers["host"], headers["accept"]) == ("GET", "/api/v1/x?n=3", url.split("//")[1],
                                                                    "application/json")


async def test_a_request_body_is_sent_with_its_length() -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await write(writer, answer(b"", "201 Created"))
        return True

    async with scripted(script) as (url, seen):
        pool = plain_pool(url)
        response = await pool.request("PATCH", "/n", {"Content-Type": "application/merge-patch+json"}, b'{"a":1}')
        empty = await pool.request("POST", "/n", {})
        await pool.close()
    assert (response.status, response.body, empty.status) == (201, b"", 201)
    assert seen.requests[0][2]["content-length"] == "7"
    assert seen.requests[0][3] == b'{"a":1}'
    assert seen.requests[1][2]["content-length"] == "0"


async def test_chunked_answers_split_into_single_bytes_are_reassembled() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n"
               b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")

    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await write(writer, chunked if i == 0 else answer(b"next"), bytewise=i == 0)
        return True

    (first, second), seen = await get_each(script, ["/log", "/next"])
    assert first.body == b"hello 0123456789"
    assert first.headers["x-multi"] == "a, b"
    assert second.body == b"next"
    assert seen.connections == 1, "a complete chunked answer leaves the connection reusable"


async def test_an_answer_framed_by_the_end_of_the_connection_is_read_to_the_end() -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await write(writer, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nline one\nline two\n")
        return False

    (first, second), seen = await get_each(script, ["/a", "/b"])
    assert first.body == second.body == b"line one\nline two\n"
    assert seen.connections == 2


async def test_connection_close_is_honoured_and_interim_answers_skipped() -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await write(writer, b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"ok", extra="Connection: close\r\n"))
        return False

    answers, seen = await get_each(script, ["/"] * 3)
    assert [a.body for a in answers] == [b"ok"] * 3
    assert seen.connections == 3


async def test_a_kept_alive_connection_the_server_closed_is_replaced_without_an_error() -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await write(writer, answer(b"ok"))
        return False  # closes without saying so, as an idle timeout does

    async with scripted(script) as (url, seen):
        pool = plain_pool(url)
        assert (await pool.request("GET", "/", {})).body == b"ok"
        await asyncio.sleep(0.05)  # the close reaches the client
        assert (await pool.request("GET", "/", {})).body == b"ok"
        await pool.close()
    assert len(seen.requests) == 2
    assert seen.connections == 2


async def test_concurrent_requests_share_at_most_limit_connections() -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.01)
        await write(writer, answer(str(i).encode()))
        return True

    async with scripted(script) as (url, seen):
        pool = plain_pool(url, limit=4)
        answers = await asyncio.gather(*(pool.request("GET", f"/{i}", {}) for i in range(40)))
        await pool.close()
    assert len(answers) == 40
    assert all(a.status == 200 for a in answers)
    assert seen.connections <= 4


@pytest.mark.parametrize(("reply", "error"), [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.x answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd", "does not end with CRLF"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n", "larger than 1024"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"x" * 2048 + b"\r\n800\r\n", "larger than"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "before the answer was complete"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000, "head is larger"),
])
async def test_malformed_truncated_or_oversized_answers_are_errors(reply: bytes, error: str) -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await write(writer, reply)
        return False

    async with scripted(script) as (url, _):
        pool = plain_pool(url, max_body=1024)
        with pytest.raises(HttpError, match=error):
            await pool.request("GET", "/", {})
        await pool.close()


async def test_a_server_that_never_answers_times_out() -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async with scripted(script) as (url, _):
        pool = plain_pool(url, timeout=0.2)
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/", {})
        await pool.close()


async def test_an_unreachable_server_is_an_oserror() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = plain_pool(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionRefusedError):
        await pool.request("GET", "/", {})


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "server.crt", tmp_path / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_tls_with_the_clusters_ca_and_the_servers_name_checked(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)

    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await write(writer, answer(b'{"kind":"Status"}'))
        return True

    async with scripted(script, server_tls) as (url, seen):
        config = k8s.Configuration(host=url)
        config.ssl_ca_cert = str(cert_file)
        kube = AsyncKube(Connection(config))
        assert await kube.get("/version") == {"kind": "Status"}
        assert await kube.get("/version") == {"kind": "Status"}
        await kube.close()
        # Without the cluster's CA the server is not trusted.
        untrusted = AsyncKube(Connection(k8s.Configuration(host=url)), retry=RetryPolicy(attempts=1))
        with pytest.raises(KubeError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.get("/version")
        await untrusted.close()
    assert seen.connections == 1


async def test_asynckube_retries_throttling_after_the_servers_retry_after() -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        if i == 0:
            status = b'{"kind":"Status","reason":"TooManyRequests","message":"slow down"}'
            await write(writer, answer(status, "429 Too Many Requests", "Retry-After: 0\r\n"))
        else:
            await write(writer, answer(b'{"ok":true}'))
        return True

    async with scripted(script) as (url, seen):
        config = k8s.Configuration(host=url)
        config.api_key = {"authorization": "Bearer t0ken"}
        kube = AsyncKube(Connection(config))
        assert await kube.patch("/api/v1/nodes/n", {"metadata": {}}, "application/merge-patch+json") == {"ok": True}
        await kube.close()
    assert len(seen.requests) == 2
    method, _, headers, body = seen.requests[1]
    assert (method, headers["authorization"], headers["content-type"]) == (
        "PATCH", "Bearer t0ken", "application/merge-patch+json")
    assert body == b'{"metadata":{}}'


async def test_asynckube_sends_the_body_as_utf8_json() -> None:
    """A node mark carries a probe's reason, which may hold any printable text; null removes an annotation."""
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        await write(writer, answer(b'{"ok":true}'))
        return True

    patch = {"metadata": {"annotations": {"accelqual.io/reason": "显存带宽 12.5 GB/s < 40 GB/s \"slow\"",
                                          "accelqual.io/resume": None}},
             "spec": {"taints": [{"key": "k", "effect": "NoSchedule", "value": ""}], "unschedulable": False,
                      "n": 3, "x": 1.5}}
    async with scripted(script) as (url, seen):
        kube = AsyncKube(Connection(k8s.Configuration(host=url)))
        await kube.patch("/api/v1/nodes/n", patch, "application/merge-patch+json")
        await kube.close()
    _, _, headers, body = seen.requests[0]
    assert json.loads(body.decode("utf-8")) == patch
    assert int(headers["content-length"]) == len(body)


async def test_asynckube_reports_the_servers_error() -> None:
    async def script(i: int, writer: asyncio.StreamWriter) -> bool:
        status = b'{"kind":"Status","reason":"Forbidden","message":"nodes \\"n\\" is forbidden"}'
        await write(writer, answer(status, "403 Forbidden"))
        return True

    async with scripted(script) as (url, seen):
        kube = AsyncKube(Connection(k8s.Configuration(host=url)))
        with pytest.raises(KubeError) as caught:
            await kube.delete("/api/v1/nodes/n")
        await kube.close()
    assert (caught.value.status, caught.value.reason) == (403, "Forbidden")
    assert len(seen.requests) == 1, "a refusal is not retried"
    assert seen.requests[0][1] == "/api/v1/nodes/n?propagationPolicy=Background"
