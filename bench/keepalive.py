"""One HTTP/1.1 keep-alive connection per client, for benchmarks that read the answers.

``loadgen.py`` fires the same request again and again and throws the answers away; the
step benchmarks (W1, external workers) need each answer (an instance id, lease tokens) to
build the next request. Two interchangeable clients with one interface:

- ``RawConnection``: asyncio streams and a hand-written HTTP/1.1 exchange, as loadgen.py
  does (no parsing library, no connection pool): the cheapest Python client we have;
- ``HttpxConnection``: ``httpx.AsyncClient`` held to one keep-alive connection.

    async with RawConnection("127.0.0.1", port, token) as conn:
        status, body = await conn.request("POST", "/sop/w1-peer/start", b'{"inputs": {}}')

Only 127.0.0.1 is accepted. Every request is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

REQUEST_TIMEOUT = 10.0
ALLOWED_HOSTS = ("127.0.0.1", "localhost")
CLIENT_KINDS = ("raw", "httpx")


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


class RawConnection:
    """HTTP/1.1 over one asyncio stream, reopened only when the server closes it."""

    def __init__(
        self, host: str, port: int, token: str, *, timeout: float = REQUEST_TIMEOUT
    ) -> None:
        _check_host(host)
        self.host = host
        self.port = port
        self.timeout = timeout
        # Everything but the request line and the length is the same on every request.
        self._fixed = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        payload = body or b""
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._fixed
        head += b"Content-Length: %d\r\n\r\n" % len(payload)
        try:
            async with asyncio.timeout(self.timeout):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                assert self._reader is not None
                self._writer.write(head + payload)
                answer = await self._reader.readuntil(b"\r\n\r\n")
                status = int(answer[9:12])
                length = 0
                keep_alive = True
                for line in answer.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        keep_alive = False
                    elif name == b"transfer-encoding":
                        raise HttpError("chunked answers are not supported")
                data = await self._reader.readexactly(length) if length else b""
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as error:
            await self.close()
            raise HttpError(f"{method} {path}: {type(error).__name__}: {error}") from error
        if not keep_alive:
            await self.close()
        return status, data

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            # The server may have closed first: nothing left to wait for.
            with contextlib.suppress(OSError):
                await writer.wait_closed()


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


def connect(kind: str, host: str, port: int, token: str) -> RawConnection | HttpxConnection:
    """A client of ``kind`` (``raw`` or ``httpx``); the connection opens on first use."""
    if kind == "raw":
        return RawConnection(host, port, token)
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
