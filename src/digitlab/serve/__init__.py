"""The draw-a-digit web app: `create_app(model_file)` builds it, `run(...)` serves it with uvicorn."""

from __future__ import annotations

import socket
from pathlib import Path

from ..errors import DigitlabError
from ..runs import shipped_model_file
from .app import MAX_BODY, create_app
from .inputs import MAX_PIXELS

default_model_file = shipped_model_file  # the model served when none is given


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; a clear error when the address is taken or not ours. Port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and without it every
    # response waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise DigitlabError(f"cannot listen on {host}:{port} ({e.strerror}); pick another with --port "
                            f"(0 picks a free one) or --host.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(app, sock: socket.socket, access_log: bool = False) -> None:
    """Serve `app` on the bound socket until SIGINT/SIGTERM (uvicorn, one process, one event loop)."""
    import uvicorn  # deferred: only a running server needs it, not building the app (tests, OpenAPI)

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, access_log=access_log, log_level="info",
                            timeout_graceful_shutdown=5, limit_concurrency=1024, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


__all__ = ["MAX_BODY", "MAX_PIXELS", "bind", "create_app", "default_model_file", "run"]
