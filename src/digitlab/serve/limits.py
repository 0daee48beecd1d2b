"""A cap on request bodies, as pure ASGI middleware: 413 before the body is read whole.

A declared Content-Length over the cap is refused at once, before one byte of the body is read. A body sent
without one (chunked) is counted as it streams in, and refused the moment it passes the cap; the endpoint
never holds more than `max_body` bytes of it.
"""

from __future__ import annotations

import orjson

Scope = dict
Message = dict


class BodyTooLarge(Exception):
    """Raised from `receive` when a streamed body passes the cap."""


def error_body(code: str, detail: str) -> bytes:
    """Every refusal's JSON body, {error, detail}: this 413, the predict route's and FastAPI's handlers' (app.py)."""
    return orjson.dumps({"error": code, "detail": detail})


class BodyLimit:
    """Refuse HTTP requests whose body is over `max_body` bytes with 413 and close the connection."""

    def __init__(self, app, max_body: int = 1 << 20):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await self.refuse(send, 400, "bad_request", "Content-Length is not a number.")
            if size > self.max_body:
                return await self.refuse(send, 413, "body_too_large", self.too_large(f"{size} bytes"))
        started = False
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await self.refuse(send, 413, "body_too_large", self.too_large(f"more than {self.max_body} bytes"))

    def too_large(self, what: str) -> str:
        return (f"the request body ({what}) is over this server's limit of {self.max_body} bytes "
                f"({self.max_body / 2**20:g} MiB); send a smaller image (a digit needs no more than a few KB).")

    @staticmethod
    async def refuse(send, status: int, code: str, detail: str) -> None:
        body = error_body(code, detail)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
