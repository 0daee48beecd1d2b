"""`digitlab serve`: the draw-a-digit web app and its JSON API on one model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, err


@app.command()
def serve(run: Optional[Path] = typer.Argument(None, help="A run folder or a .safetensors file "
                                               "[default: the model shipped in the package, digits-cnn.safetensors]."),
          host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 opens it to other machines."),
          port: int = typer.Option(8000, help="Port to listen on; 0 picks a free one (printed)."),
          max_body: int = typer.Option(1 << 20, help="Largest request body in bytes; bigger ones get 413."),
          max_pixels: int = typer.Option(16_000_000, help="Largest image (width x height) decoded; more gets 400."),
          threads: int = typer.Option(1, help="PyTorch threads for the model (the event loop needs a core too)."),
          access_log: bool = typer.Option(False, "--access-log/--no-access-log", help="Log every request."),
          page: Optional[Path] = typer.Option(None, "--page", help="Serve this page exported by `digitlab export "
                                              "--format web` at / (it runs its own model in the browser) instead "
                                              "of the built-in page; the API stays as it is.")):
    """Serve a model: a page to draw digits on at http://HOST:PORT/, the API under /api, OpenAPI at /docs.

    Example: [bold]digitlab serve runs/my-run --port 8000[/]
    Example: [bold]digitlab serve --page my-page/[/]
    """
    import torch  # deferred: keeps --help fast

    from ..runs import resolve_model_file  # deferred: imports torch; keeps --help fast
    from ..serve import bind, create_app, default_model_file, run as run_server  # deferred: fastapi, torch

    torch.set_num_threads(threads)
    model_file = resolve_model_file(run) if run else default_model_file()
    web = create_app(model_file, max_body=max_body, max_pixels=max_pixels, page_folder=page)
    sock = bind(host, port)
    name = f"[{host}]" if ":" in host else host
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] listening on {host}: other machines can reach this server.")
    # one plain line, flushed, so scripts (and the tests) can read the address even with --port 0
    print(f"serving {model_file} at http://{name}:{sock.getsockname()[1]}/", flush=True)
    run_server(web, sock, access_log=access_log)
