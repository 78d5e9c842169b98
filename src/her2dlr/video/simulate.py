"""Probe sweeps simulated from a real still ultrasound image and its lesion mask.

No labelled breast ultrasound video reaches this project, so the video path is tested and
benchmarked on sweeps made from real stills (BUSI, BrEaST-Lesions-USG). Frame ``t`` of a sweep
(``u = t / (n - 1)`` runs from 0 to 1) is made in four steps:

1. **Lesion layer.** The lesion is cut out with a soft (blurred) copy of its mask and the hole is
   filled from the surrounding tissue (normalised Gaussian convolution), giving a lesion-free
   background. The lesion layer is scaled about its centroid by
   ``s(u) = min_scale + (1 - min_scale) * sin(pi * u)``: the cross-section grows from the sweep's
   start to its middle and shrinks again, as when a probe passes over a roughly ellipsoidal mass.
2. **Probe motion.** The field of view slides across the image (``slide`` of its width over the
   sweep, plus a small smooth jitter) and tilts (``tilt_deg * sin(...)`` rotation about the field's
   centre); background and lesion layer are resampled through the same transform.
3. **Speckle.** Multiplicative gamma-distributed speckle (spatially correlated over about one pixel)
   is drawn anew for every frame, with a slow gain drift.
4. **Acquisition faults.** ``n_dropouts`` frames go (nearly) black and ``n_freezes`` frames repeat
   the frame before them exactly.

The true lesion mask of every frame is kept (:attr:`SimulatedSweep.masks`): for a frozen frame it is
the mask of the image shown, for a dropout the mask of where the lesion was (what interpolation
should recover).

What this can and cannot show: localisation, rejection, interpolation, frame QC, streaming and
speed are exercised on realistic grey levels and lesion shapes; but the lesion's 3D shape is a
scaled copy of one 2D section (real lesions change shape, not only size, through a sweep), tissue
does not deform under the probe, there is no acoustic shadowing or depth-dependent attenuation, and
the texture over time is the still image's texture plus fresh speckle. Class differences between
simulated videos are those of the source stills, so video-level AUCs measure how well the pipeline
keeps that information, not how much a real sweep adds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from her2dlr.errors import InputError

__all__ = ["SimulatedSweep", "SweepSettings", "simulate_sweep", "sweep_frames", "write_sweep"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep is simulated (see the module docstring).

    Parameters
    ----------
    n_frames : int, default=60
    fps : float, default=30.0
    frame_size : (int, int), default=(128, 160)
        Output frame height and width (even, for H.264).
    lesion_fraction : float, default=0.4
        The lesion's largest side as a fraction of the frame height at its largest cross-section.
    slide : float, default=0.3
        Distance the probe slides over the sweep, as a fraction of the frame width.
    tilt_deg : float, default=6.0
        Largest probe tilt (in-plane rotation) in degrees.
    min_scale : float, default=0.4
        Lesion cross-section at the sweep's ends relative to its middle (linear scale).
    speckle : float, default=0.25
        Standard deviation of the multiplicative speckle.
    n_dropouts, n_freezes : int, default=2
        Frames that go black, frames that repeat the one before.
    seed : int, default=0
    """

    n_frames: int = 60
    fps: float = 30.0
    frame_size: tuple[int, int] = (128, 160)
    lesion_fraction: float = 0.4
    slide: float = 0.3
    tilt_deg: float = 6.0
    min_scale: float = 0.4
    speckle: float = 0.25
    n_dropouts: int = 2
    n_freezes: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_frames < 2:
            raise InputError(f"SweepSettings.n_frames must be >= 2; got {self.n_frames}.")
        h, w = self.frame_size
        if h < 16 or w < 16 or h % 2 or w % 2:
            raise InputError(f"SweepSettings.frame_size must be even sides >= 16; got {self.frame_size}.")
        if not 0 < self.min_scale <= 1:
            raise InputError(f"SweepSettings.min_scale must be in (0, 1]; got {self.min_scale}.")
        if self.n_dropouts + self.n_freezes > self.n_frames // 3:
            raise InputError("SweepSettings: dropouts + freezes must stay under a third of the frames.")


@dataclass
class SimulatedSweep:
    """A simulated clip with its truth.

    Attributes
    ----------
    frames : list of ndarray (H, W) uint8
    masks : list of ndarray (H, W) bool
        True lesion mask of each frame.
    events : list of str
        ``"ok"``, ``"dropout"`` or ``"frozen"`` per frame.
    fps : float
    key_frame : int
        Frame of the largest true cross-section (among ``"ok"`` frames).
    source : str
        The still image it was made from.
    """

    frames: list[np.ndarray]
    masks: list[np.ndarray]
    events: list[str]
    fps: float
    key_frame: int
    source: str = ""
    settings: SweepSettings = field(default_factory=SweepSettings)

    def boxes(self) -> pd.DataFrame:
        """True per-frame boxes ``frame, x, y, w, h`` (frames with no lesion left out)."""
        rows = []
        for i, m in enumerate(self.masks):
            if m.any():
                ys, xs = np.nonzero(m)
                rows.append({"frame": i, "x": int(xs.min()), "y": int(ys.min()),
                             "w": int(xs.max() - xs.min() + 1), "h": int(ys.max() - ys.min() + 1)})
        return pd.DataFrame(rows, columns=["frame", "x", "y", "w", "h"])


def _load(image: PathLike | np.ndarray, mask: PathLike | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(image, np.ndarray):
        img = image.astype(np.float32)
        if img.ndim == 3:
            from her2dlr.io.video import frame_grey

            img = frame_grey(img)
    else:
        import SimpleITK as sitk

        from her2dlr.io.images import read_image

        img = sitk.GetArrayFromImage(read_image(image)).astype(np.float32)
    if isinstance(mask, np.ndarray):
        msk = mask > 0
    else:
        from her2dlr.io.images import read_mask_array

        msk = read_mask_array(mask) > 0
    if msk.shape != img.shape:
        raise InputError(f"Mask {mask if not isinstance(mask, np.ndarray) else ''} has shape {msk.shape}, image "
                         f"{img.shape}: they must match.")
    if not msk.any():
        raise InputError(f"Mask {mask if not isinstance(mask, np.ndarray) else ''} is empty: a sweep needs a lesion.")
    return img, msk


def _background(img: np.ndarray, msk: np.ndarray, size: float) -> np.ndarray:
    """The image with the lesion filled in from the tissue around it (normalised convolution)."""
    hole = ndimage.binary_dilation(msk, iterations=max(2, int(size * 0.08)))
    keep = (~hole).astype(np.float32)
    sigma = max(2.0, size / 3.0)
    num = ndimage.gaussian_filter(img * keep, sigma)
    den = ndimage.gaussian_filter(keep, sigma)
    filled = num / np.maximum(den, 1e-3)
    return np.where(hole, filled, img)


def _affine(out_yx: np.ndarray, centre_src: np.ndarray, k: float, theta: float,
            shift_src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset mapping output (y, x) to source (y, x): rotate by theta, scale by k, move."""
    c, s = np.cos(theta), np.sin(theta)
    matrix = k * np.array([[c, -s], [s, c]])
    offset = centre_src + shift_src - matrix @ out_yx
    return matrix, offset


def sweep_frames(image: PathLike | np.ndarray, mask: PathLike | np.ndarray,
                 settings: SweepSettings | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    """Yield ``(frame, true_mask, event)`` one frame at a time (for long clips; see :func:`simulate_sweep`).

    Parameters
    ----------
    image : path or ndarray
        The still image (grey or RGB).
    mask : path or ndarray
        Its lesion mask (non-zero = lesion).
    settings : SweepSettings, optional
    """
    st = settings or SweepSettings()
    rng = np.random.default_rng(st.seed)
    img, msk = _load(image, mask)
    ys, xs = np.nonzero(msk)
    centre = np.array([ys.mean(), xs.mean()])
    lesion_size = float(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
    h, w = st.frame_size
    k = lesion_size / (st.lesion_fraction * h)  # source pixels per output pixel
    background = _background(img, msk, lesion_size)
    alpha = ndimage.gaussian_filter(msk.astype(np.float32), 1.0)
    lesion = img * (msk | (alpha > 0.05))
    out_centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    n = st.n_frames
    lesion_offset = rng.uniform(-0.15, 0.15, size=2) * np.array([h, w]) * k  # lesion not always centred
    phase = rng.uniform(0, 2 * np.pi)
    jitter = ndimage.gaussian_filter1d(rng.normal(0, 1.0, size=(n, 2)), sigma=max(1.0, n / 12), axis=0)
    gain = 1.0 + 0.08 * np.sin(np.linspace(0, 2 * np.pi, n) + rng.uniform(0, 2 * np.pi))
    faults = rng.choice(np.arange(1, n - 1), size=st.n_dropouts + st.n_freezes, replace=False)
    kind = {int(i): ("dropout" if j < st.n_dropouts else "frozen") for j, i in enumerate(faults)}
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for t in range(n):
        u = t / (n - 1)
        theta = np.deg2rad(st.tilt_deg) * np.sin(2 * np.pi * 0.75 * u + phase)
        shift = np.array([0.0, st.slide * w * (u - 0.5) * k]) + jitter[t] * k - lesion_offset
        matrix, offset = _affine(out_centre, centre, k, theta, shift)
        bg = ndimage.affine_transform(background, matrix, offset, output_shape=(h, w), order=1, mode="reflect")
        scale = st.min_scale + (1.0 - st.min_scale) * np.sin(np.pi * u)
        # lesion layer: source point p shows lesion point centre + (p - centre) / scale
        m2 = matrix / scale
        o2 = centre + (offset - centre) / scale
        a = ndimage.affine_transform(alpha, m2, o2, output_shape=(h, w), order=1, mode="constant")
        les = ndimage.affine_transform(lesion, m2, o2, output_shape=(h, w), order=1, mode="constant")
        clean = bg * (1 - a) + les * a
        true_mask = a > 0.5
        event = kind.get(t, "ok")
        if event == "frozen" and previous is not None:
            frame, true_mask = previous
        else:
            shape = 1.0 / st.speckle**2
            noise = ndimage.gaussian_filter(rng.gamma(shape, 1.0 / shape, size=(h, w)).astype(np.float32), 0.7)
            noise /= noise.mean()
            frame = np.clip(0.85 * clean * noise * gain[t] + rng.normal(0, 2.0, size=(h, w)), 0, 255).astype(np.uint8)
            if event == "dropout":
                frame = np.clip(rng.normal(3, 1.5, size=(h, w)), 0, 255).astype(np.uint8)
        previous = (frame, true_mask)
        yield frame, true_mask, event


def simulate_sweep(image: PathLike | np.ndarray, mask: PathLike | np.ndarray,
                   settings: SweepSettings | None = None) -> SimulatedSweep:
    """Simulate one probe sweep across the lesion of a still image (see the module docstring).

    Returns
    -------
    SimulatedSweep

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).uniform(60, 120, (200, 240)).astype(np.float32)
    >>> yy, xx = np.mgrid[:200, :240]
    >>> m = (yy - 100) ** 2 / 30 ** 2 + (xx - 120) ** 2 / 45 ** 2 < 1
    >>> sweep = simulate_sweep(img, m, SweepSettings(n_frames=20, n_dropouts=1, n_freezes=1))
    >>> len(sweep.frames), sweep.frames[0].shape, sweep.events.count("dropout")
    (20, (128, 160), 1)
    """
    st = settings or SweepSettings()
    frames, masks, events = [], [], []
    for frame, m, event in sweep_frames(image, mask, st):
        frames.append(frame)
        masks.append(m)
        events.append(event)
    areas = [int(m.sum()) if e == "ok" else -1 for m, e in zip(masks, events)]
    return SimulatedSweep(frames=frames, masks=masks, events=events, fps=st.fps, key_frame=int(np.argmax(areas)),
                          source="" if isinstance(image, np.ndarray) else str(image), settings=st)


def write_sweep(sweep: SimulatedSweep, path: PathLike, *, masks: bool = False) -> Path:
    """Write a sweep as an MP4 (or .mov/.mkv/.avi) file, or as a folder of numbered PNG frames.

    Parameters
    ----------
    sweep : SimulatedSweep
    path : path-like
        A file with a video suffix, or a folder (created; PNG frames ``frame_0000.png``, ...).
    masks : bool, default=False
        Also write the true masks as ``<stem>_masks/mask_0000.png`` and the true boxes as
        ``<stem>_boxes.csv`` (``frame, x, y, w, h``) beside ``path``.

    Returns
    -------
    Path
    """
    from PIL import Image

    from her2dlr.io.atomic import atomic_path, write_csv_atomic
    from her2dlr.io.video import VIDEO_SUFFIXES, VideoWriter

    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        with VideoWriter(path, fps=sweep.fps, crf=8) as writer:
            for frame in sweep.frames:
                writer.write(frame)
    else:
        with atomic_path(path) as tmp:
            tmp.mkdir()
            for i, frame in enumerate(sweep.frames):
                Image.fromarray(frame).save(tmp / f"frame_{i:04d}.png")
    if masks:
        stem = path.with_suffix("") if path.suffix else path
        with atomic_path(stem.parent / f"{stem.name}_masks") as tmp:
            tmp.mkdir()
            for i, m in enumerate(sweep.masks):
                Image.fromarray((m * 255).astype(np.uint8)).save(tmp / f"mask_{i:04d}.png")
        write_csv_atomic(sweep.boxes(), stem.parent / f"{stem.name}_boxes.csv")
    return path
