"""What a server is allowed to do: where it listens, who may call it, how much it accepts.

The defaults are the safe ones: loopback only, no CORS, uploads of at most 32 MB and 40
megapixels (clips: 256 MB and 5,000 frames of at most 40 megapixels), two predictions at a time. Listening on any other address needs a token, which
every API call must then carry (``Authorization: Bearer <token>`` or ``X-Token``).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from her2dlr.errors import InputError

__all__ = ["TOKEN_ENV", "ServeSettings", "is_loopback"]

#: Environment variable holding the API token (instead of ``--token`` on the command line).
TOKEN_ENV = "HER2DLR_TOKEN"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeSettings:
    """Settings of :func:`her2dlr.serve.create_app`.

    Parameters
    ----------
    models_dir : path
        A run folder's ``models/`` (one artefact folder per model), or one artefact folder.
    host : str
        Address the server listens on (checked by :meth:`check`; the app itself does not bind).
    token : str, optional
        API token; required when ``host`` is not a loopback address.
    max_upload_mb : float
        Largest accepted file (image or mask), in MB.
    max_pixels : int
        Largest accepted image, in pixels (decompression bombs are refused before decoding).
    max_video_mb : float
        Largest accepted clip (``POST /api/predict/video``), in MB.
    max_video_frames : int
        Most frames of an accepted clip (each frame is also held to ``max_pixels``).
    max_concurrent : int
        Predictions computed at once (a streamed clip holds its slot until its last line); a request beyond that gets 503 with ``Retry-After``.
    cors_origins : list of str
        Origins allowed to call the API from a browser page of another site (none by default).
    """

    models_dir: Path
    host: str = "127.0.0.1"
    token: str | None = None
    max_upload_mb: float = 32.0
    max_pixels: int = 40_000_000
    max_video_mb: float = 256.0
    max_video_frames: int = 5_000
    max_concurrent: int = 2
    cors_origins: list[str] = field(default_factory=list)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_video_bytes(self) -> int:
        return int(self.max_video_mb * 1024 * 1024)

    def check(self) -> ServeSettings:
        """Refuse unsafe or meaningless settings (a non-loopback host without a token ...); return self."""
        if not is_loopback(self.host) and not self.token:
            raise InputError(f"Listening on {self.host} (not this machine only) needs a token: give --token or set "
                             f"{TOKEN_ENV}. Use --host 127.0.0.1 to serve this machine only.")
        if self.token is not None and len(self.token) < 16:
            raise InputError(f"The token must have at least 16 characters (got {len(self.token)}); "
                             "e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`.")
        if min(self.max_upload_mb, self.max_pixels, self.max_video_mb, self.max_video_frames) <= 0:
            raise InputError("--max-upload-mb, --max-pixels, --max-video-mb and --max-video-frames must be positive.")
        if self.max_concurrent < 1:
            raise InputError(f"--max-concurrent must be at least 1; got {self.max_concurrent}.")
        if "*" in self.cors_origins and self.token:
            raise InputError("CORS origin '*' with a token would let any site's page call the API; name the origins.")
        return self

    @classmethod
    def from_env(cls, models_dir: str | os.PathLike[str], **kwargs: object) -> ServeSettings:
        """Settings with the token taken from ``HER2DLR_TOKEN`` when not given."""
        token = kwargs.pop("token", None) or os.environ.get(TOKEN_ENV) or None
        return cls(Path(models_dir), token=token, **kwargs)  # type: ignore[arg-type]
