"""One HTTP/1.1 keep-alive connection per client, for benchmarks that read the answers.

``loadgen.py`` fires the same request again and again and throws the answers away; the
step benchmarks (W1, external workers) need each answer (an instance id, lease tokens) to
build the next request. Two interchangeable clients with one interface:

- ``RawConnection``: an asyncio protocol and a hand-written HTTP/1.1 exchange (no
  streams, no parsing library, no connection pool): the cheapest Python client we have;
- ``SocketConnection``: the same exchange on a blocking socket (one client per thread);
- ``HttpxConnection``: ``httpx.AsyncClient`` held to one keep-alive connection.

    async with RawConnection("127.0.0.1", port, token) as conn:
        status, body = await conn.request("POST", "/sop/w1-peer/start", b'{"inputs": {}}')

Only 127.0.0.1 is accepted. Every request is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

REQUEST_TIMEOUT = 10.0
ALLOWED_HOSTS = ("127.0.0.1", "localhost")
CLIENT_KINDS = ("raw", "socket", "httpx")
# Clients whose request() blocks its event loop: each needs a thread (and loop) of its own.
BLOCKING_KINDS = frozenset({"socket"})


class HttpError(RuntimeError):
    """The answer could not be read (transport error, timeout, unsupported framing)."""


T = TypeVar("T")


class Connection(Protocol):
    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request and read the whole answer: (status, body)."""

    async def close(self) -> None: ...


def _check_host(host: str) -> None:
    if host not in ALLOWED_HOSTS:
        raise ValueError(f"benchmarks only talk to 127.0.0.1, not {host!r}")


class _AnswerReader(asyncio.Protocol):
    """Collects the bytes of one answer at a time and hands it over once complete."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            answer = _complete_answer(self.buffer)
        except HttpError as error:
            self.waiter.set_exception(error)
            return
        if answer is not None:
            self.waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)


def _complete_answer(buffer: bytearray) -> tuple[int, bytes, bool] | None:
    """(status, body, keep-alive) once ``buffer`` holds a whole answer, which it drops."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    if b"\r\ntransfer-encoding:" in head:
        raise HttpError("chunked answers are not supported")
    length = 0
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        line_end = head.find(b"\r", at + 17)
        length = int(head[at + 17 : line_end if line_end >= 0 else None])
    total = end + 4 + length
    if len(buffer) < total:
        return None
    body = bytes(buffer[end + 4 : total])
    del buffer[:total]
    keep_alive = b"\r\nconnection: close" not in head
    return int(head[9:12]), body, keep_alive


class _HandWritten:
    """What the hand-written clients share: the checked address and the request bytes."""

    def __init__(self, host: str, port: int, token: str, timeout: float) -> None:
        _check_host(host)
        self.host = host
        self.port = port
        self.timeout = timeout
        # Everything but the request line and the length is the same on every request.
        self._fixed = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()

    def _message(self, method: str, path: str, body: bytes | None) -> bytes:
        payload = body or b""
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._fixed
        return head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload


class RawConnection(_HandWritten):
    """HTTP/1.1 on one asyncio protocol (no streams, no parsing library), reopened only
    when the server closes it: the cheapest Python client we have."""

    def __init__(
        self, host: str, port: int, token: str, *, timeout: float = REQUEST_TIMEOUT
    ) -> None:
        _HandWritten.__init__(self, host, port, token, timeout)
        self._reader: _AnswerReader | None = None

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        message = self._message(method, path, body)
        loop = asyncio.get_running_loop()
        try:
            if self._reader is None or self._reader.lost is not None:
                _, self._reader = await asyncio.wait_for(
                    loop.create_connection(_AnswerReader, self.host, self.port), self.timeout
                )
            reader = self._reader
            assert reader.transport is not None
            reader.waiter = loop.create_future()
            reader.transport.write(message)
            # One timer per request, cancelled with the answer.
            timer = loop.call_later(self.timeout, _expire, reader.waiter)
            try:
                status, data, keep_alive = await reader.waiter
            finally:
                timer.cancel()
        except (OSError, TimeoutError, ValueError) as error:
            await self.close()
            raise HttpError(f"{method} {path}: {type(error).__name__}: {error}") from error
        if not keep_alive:
            await self.close()
        return status, data

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader.transport is not None:
            reader.transport.close()


def _expire(waiter: asyncio.Future[tuple[int, bytes, bool]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer in time"))


class SocketConnection(_HandWritten):
    """HTTP/1.1 on a plain blocking socket: no event loop work at all per request, so
    the least client CPU between the server's answers. ``request`` is declared async for
    the common interface but blocks: run one such client per thread (``BLOCKING_KINDS``).
    """

    def __init__(
        self, host: str, port: int, token: str, *, timeout: float = REQUEST_TIMEOUT
    ) -> None:
        _HandWritten.__init__(self, host, port, token, timeout)
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    async def __aenter__(self) -> SocketConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        message = self._message(method, path, body)
        try:
            if self._sock is None:
                self._sock = socket.create_connection((self.host, self.port), self.timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._buffer.clear()
            self._sock.sendall(message)
            while (answer := _complete_answer(self._buffer)) is None:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("the server closed the connection")
                self._buffer += chunk
        except (OSError, ValueError) as error:
            await self.close()
            raise HttpError(f"{method} {path}: {type(error).__name__}: {error}") from error
        status, data, keep_alive = answer
        if not keep_alive:
            await self.close()
        return status, data

    async def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class HttpxConnection:
    """``httpx.AsyncClient`` limited to one keep-alive connection (no proxies, no env)."""

    def __init__(
        self, host: str, port: int, token: str, *, timeout: float = REQUEST_TIMEOUT
    ) -> None:
        import httpx

        _check_host(host)
        self._client = httpx.AsyncClient(
            base_url=f"http://{host}:{port}",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=timeout,
            trust_env=False,
        )
        self._errors: tuple[type[BaseException], ...] = (httpx.HTTPError,)

    async def __aenter__(self) -> HttpxConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        try:
            response = await self._client.request(method, path, content=body)
        except self._errors as error:
            raise HttpError(f"{method} {path}: {type(error).__name__}: {error}") from error
        return response.status_code, response.content

    async def close(self) -> None:
        await self._client.aclose()


def connect(
    kind: str, host: str, port: int, token: str
) -> RawConnection | SocketConnection | HttpxConnection:
    """A client of ``kind`` (one of ``CLIENT_KINDS``); the connection opens on first use."""
    if kind == "raw":
        return RawConnection(host, port, token)
    if kind == "socket":
        return SocketConnection(host, port, token)
    if kind == "httpx":
        return HttpxConnection(host, port, token)
    raise ValueError(f"unknown client kind {kind!r}; choose one of {CLIENT_KINDS}")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed (cheaper per request), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
