"""Frame QC of an ultrasound clip: blank, frozen, duplicated, colour Doppler and overlay frames.

Each frame gets one flag, by these rules (first match wins), and flagged frames are excluded from
the per-frame features (their values are interpolated from the frames around them):

=========== =================================================================================
blank       grey standard deviation < ``blank_std`` or mean < ``blank_mean`` (dropout, black frame)
frozen      mean absolute grey difference from the previous frame < ``frozen_diff`` (a frozen
            display repeats the same image; live speckle never does)
duplicate   the same pixels as an earlier, non-adjacent frame (exact hash)
doppler     share of saturated colour pixels >= ``doppler_share`` (colour Doppler box)
overlay     share of colour pixels in [``overlay_share``, ``doppler_share``) (coloured calipers,
            marks, text) or share of new static white pixels >= ``white_share`` (burnt-in text,
            calipers: thin structures of near-white pixels with the very same value as in the
            previous frame, which live speckle never keeps, and that were not already there
            between frames 0 and 1; thick saturated tissue is removed by a 3x3 opening, scattered
            saturated speckle by keeping strokes of >= 8 connected pixels)
ok          none of the above
=========== =================================================================================

A colour pixel has chroma ``(max(R,G,B) - min(R,G,B)) / max(R,G,B) >= 0.35`` and ``max >= 60``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from her2dlr.io.video import frame_grey

__all__ = ["QC_FLAGS", "FrameQC", "QCSettings", "qc_counts"]

QC_FLAGS = ("ok", "blank", "frozen", "duplicate", "doppler", "overlay")


@dataclass(frozen=True)
class QCSettings:
    """Thresholds of the frame QC rules (see the module docstring)."""

    blank_std: float = 2.0
    blank_mean: float = 8.0
    frozen_diff: float = 0.25
    doppler_share: float = 0.02
    overlay_share: float = 0.0005
    white_share: float = 0.004


class FrameQC:
    """Streaming frame QC: call :meth:`update` on each frame in order, then read :attr:`table`.

    Parameters
    ----------
    settings : QCSettings, optional

    Examples
    --------
    >>> qc = FrameQC()
    >>> rng = np.random.default_rng(0)
    >>> a = rng.integers(20, 200, (32, 32), dtype=np.uint8)
    >>> [qc.update(f) for f in (a, a, np.zeros_like(a))]
    ['ok', 'frozen', 'blank']
    """

    def __init__(self, settings: QCSettings | None = None) -> None:
        self.settings = settings or QCSettings()
        self._rows: list[dict[str, float | str | int]] = []
        self._previous: np.ndarray | None = None
        self._hashes: dict[bytes, int] = {}
        self._baseline: np.ndarray | None = None

    def update(self, frame: np.ndarray) -> str:
        """Flag the next frame (one of :data:`QC_FLAGS`)."""
        st = self.settings
        index = len(self._rows)
        grey = frame_grey(frame)
        mean, std = float(grey.mean()), float(grey.std())
        diff = float(np.abs(grey - self._previous).mean()) if self._previous is not None and \
            self._previous.shape == grey.shape else np.inf
        digest = hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=16).digest()
        colour = white = 0.0
        arr = np.asarray(frame)
        if arr.ndim == 3 and arr.shape[-1] >= 3:
            rgb = arr[..., :3].astype(np.int16)
            hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
            colour = float(((hi - lo) >= 0.35 * hi).__and__(hi >= 60).mean())
        top = 255.0 if arr.dtype == np.uint8 else float(np.iinfo(arr.dtype).max) if arr.dtype.kind == "u" else 255.0
        bright = grey >= 0.98 * top
        if self._previous is not None and self._previous.shape == grey.shape:
            static = bright & (grey == self._previous)
            # overlays are thin (text strokes, caliper crosses, dotted lines); saturated tissue is not
            static &= ~ndimage.binary_opening(static, structure=np.ones((3, 3), bool))
            labels, n = ndimage.label(static, structure=np.ones((3, 3), bool))
            if n:  # and connected: a stroke of >= 8 pixels, not scattered saturated speckle
                sizes = np.bincount(labels.ravel())
                static = sizes[labels] >= 8
                static[labels == 0] = False
            if self._baseline is None:
                self._baseline = static  # labels burnt in from the start are not an event
            white = float((static & ~self._baseline).mean())
        if std < st.blank_std or mean < st.blank_mean:
            flag = "blank"
        elif diff < st.frozen_diff:
            flag = "frozen"
        elif digest in self._hashes and self._hashes[digest] < index - 1:
            flag = "duplicate"
        elif colour >= st.doppler_share:
            flag = "doppler"
        elif colour >= st.overlay_share or white >= st.white_share:
            flag = "overlay"
        else:
            flag = "ok"
        self._hashes.setdefault(digest, index)
        self._previous = grey
        self._rows.append({"frame": index, "mean": mean, "std": std, "diff_previous": diff,
                           "colour_share": colour, "white_share": white, "flag": flag})
        return flag

    @property
    def table(self) -> pd.DataFrame:
        """One row per frame: ``frame, mean, std, diff_previous, colour_share, white_share, flag``."""
        return pd.DataFrame(self._rows, columns=["frame", "mean", "std", "diff_previous", "colour_share",
                                                 "white_share", "flag"])


def qc_counts(table: pd.DataFrame) -> dict[str, int]:
    """Number of frames per flag (every flag present, zeros included)."""
    counts = table["flag"].value_counts()
    return {flag: int(counts.get(flag, 0)) for flag in QC_FLAGS}
