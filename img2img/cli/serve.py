"""`img2img serve`: trained runs behind a web page and an HTTP API, on uvicorn."""
from __future__ import annotations

from pathlib import Path

import click
import torch

from ..inference.translator import DEFAULT_TILE
from ..registry.catalog import Catalog
from ..serve import require_extra
from .options import device_option, runs_dir_option


def serve_command(catalog: Catalog) -> click.Command:
    @click.command("serve", context_settings={"show_default": True})
    @click.option("--model", "models", multiple=True, metavar="RUN|CHECKPOINT",
                  help="a run folder (RUN:best for its best evaluated checkpoint) or a "
                       ".safetensors checkpoint to serve; repeat for several  [default: the "
                       "newest run under --runs-dir]")
    @runs_dir_option("where the default run is looked for")
    @click.option("--host", default="127.0.0.1",
                  help="address to listen on; the default is reachable only from this "
                       "machine, 0.0.0.0 from the network (with no authentication)")
    @click.option("--port", type=click.IntRange(0, 65535), default=8000,
                  help="port to listen on (0: any free port)")
    @click.option("--max-bytes", type=click.IntRange(min=1), default=20 * 2**20,
                  help="largest upload, in bytes (larger: 413)")
    @click.option("--max-pixels", type=click.IntRange(min=1), default=4096 * 4096,
                  help="largest image, in pixels, checked before decoding (larger: 413)")
    @click.option("--max-frames", type=click.IntRange(min=1), default=600,
                  help="longest video upload, in frames (longer: 413)")
    @click.option("--workers", type=click.IntRange(min=1), default=1,
                  help="model calls run at once, each in its own thread")
    @click.option("--queue", type=click.IntRange(min=0), default=8,
                  help="requests that may wait for a worker; more get 503 with Retry-After")
    @click.option("--threads", type=click.IntRange(min=0), default=0,
                  help="torch threads per model call (0: the cores divided by --workers)")
    @click.option("--tile", type=click.IntRange(min=32), default=DEFAULT_TILE,
                  help="images larger than this are translated in overlapping tiles")
    @device_option()
    @click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info",
                                                    "debug"]), default="info",
                  help="uvicorn's log level (info logs every request)")
    def serve(models: tuple[str, ...], runs_dir: Path, host: str, port: int, max_bytes: int,
              max_pixels: int, max_frames: int, workers: int, queue: int, threads: int,
              tile: int, device: str, log_level: str) -> None:
        """Serve trained runs: a web page at / and an HTTP API (/api/models, /api/translate,
        /api/translate-video, /api/sample, /healthz; the schema at /openapi.json).

        Models load in the background once the server is up (the API answers 503 until they
        are ready) and stay loaded. Translations are the same as `img2img convert` writes.

        \b
        img2img serve                                   # the newest run under ./runs
        img2img serve --model runs/zebra --model runs/digits --port 8080
        curl -F image=@photo.jpg http://127.0.0.1:8000/api/translate -o out.jpg
        curl -F video=@clip.mp4 http://127.0.0.1:8000/api/translate-video -o out.mp4
        """
        require_extra()
        from ..serve import app as serve_app
        from ..serve import server

        torch.set_num_threads(threads or max(1, (torch.get_num_threads()) // workers))
        app = serve_app.create_app(list(models), runs_dir=runs_dir, device=device, tile=tile,
                                   max_bytes=max_bytes, max_pixels=max_pixels,
                                   max_frames=max_frames, workers=workers, queue=queue,
                                   catalog=catalog)
        names = ", ".join(app.state.pool.entries)
        if not server.is_loopback(host):
            click.echo(f"warning: listening on {host}: the server is reachable from the network "
                       "and has no authentication", err=True)

        def listening(url: str) -> None:
            click.echo(f"Serving {names} at {url} (Ctrl-C stops)", err=True)
            click.echo(url)

        server.run(app, host, port, log_level=log_level, on_listening=listening)
    return serve
