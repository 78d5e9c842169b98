"""``her2dlr serve``: the models of a run folder behind an HTTP API and a web page (uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from her2dlr.cli.common import console, friendly

__all__ = ["serve_cmd"]


@friendly
def serve_cmd(
    models: Annotated[Path, typer.Argument(help="Models folder (<run>/models) or one model folder.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    token: Annotated[str | None, typer.Option("--token", help="API token (or set HER2DLR_TOKEN); required off loopback.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest accepted file, MB.")] = 32.0,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Largest accepted image, pixels.")] = 40_000_000,
    max_video_mb: Annotated[float, typer.Option("--max-video-mb", help="Largest accepted clip (/api/predict/video), MB.")] = 256.0,
    max_video_frames: Annotated[int, typer.Option("--max-video-frames", help="Most frames of an accepted clip.")] = 5_000,
    max_concurrent: Annotated[int, typer.Option("--max-concurrent", help="Predictions at once; more get 503 + Retry-After.")] = 2,
    cors_origin: Annotated[list[str] | None, typer.Option("--cors-origin", help="Allow browser pages of this origin (repeatable; none by default).")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve the models: an API (/api, /docs) and a page for one case, on this machine only by default."""
    import uvicorn

    from her2dlr.serve import NOTICE, ServeSettings, create_app

    settings = ServeSettings.from_env(models, host=host, token=token, max_upload_mb=max_upload_mb, max_pixels=max_pixels,
                                      max_video_mb=max_video_mb, max_video_frames=max_video_frames,
                                      max_concurrent=max_concurrent, cors_origins=list(_cors_origins(cors_origin)))
    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"Serving {len(app.state.registry.models)} model(s) from {models} at http://{shown}:{port}/ "
                  f"({'token required' if settings.token else 'no token: this machine only'}). {NOTICE}",
                  highlight=False)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False)


def _cors_origins(values: list[str] | None) -> list[str]:
    """The ``--cors-origin`` values, stripped, without duplicates."""
    return list(dict.fromkeys(v.strip().rstrip("/") for v in values or [] if v.strip()))
