"""The draw-a-digit web app: `create_app(model_file)` builds it, `run(...)` serves it with uvicorn."""

from __future__ import annotations

import socket
from importlib.resources import files
from pathlib import Path

from ..errors import DigitlabError
from .app import MAX_BODY, create_app
from .inputs import MAX_PIXELS

PRETRAINED = "digits-cnn.safetensors"


def default_model_file() -> Path:
    """The small model shipped inside the package (digitlab/pretrained/), found through importlib.resources."""
    path = Path(str(files("digitlab") / "pretrained" / PRETRAINED))  # a real file for any normal install
    if not path.is_file():
        raise DigitlabError(f"no shipped model at {path}: the installed package is incomplete (reinstall digitlab), "
                            f"or give a run folder or a .safetensors file: `digitlab serve runs/<run>`.")
    return path


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
