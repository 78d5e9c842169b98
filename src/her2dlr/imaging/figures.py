"""Picture helpers shared by the figures of every stage: grey to 8 bits, heat overlays, outlines, boxes, titled rows.

:func:`heat_map_figure` frames a heat overlay as a figure a reader can interpret: a caption above
(which case, which model, its probability and class) and a colour bar below that shows what the
overlay's colours mean.

Pictures are RGB ``uint8`` arrays of shape (rows, columns, 3), composed with NumPy and
Pillow (fast enough for every case of a cohort) and written atomically. :func:`save_figure`
writes a matplotlib figure the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from her2dlr.errors import InputError
from her2dlr.io.atomic import atomic_path

__all__ = [
    "GAP",
    "HEAT_BAR_LABEL",
    "PANEL",
    "TITLE_HEIGHT",
    "draw_box",
    "draw_outline",
    "grey_rgb",
    "heat_map_figure",
    "lesion_slice",
    "overlay_rgb",
    "save_figure",
    "save_png",
    "scale_to_height",
    "titled_row",
    "to_uint8",
]

#: Default height of one picture of :func:`titled_row`, in pixels.
PANEL = 192
#: Default white gap between two pictures of :func:`titled_row`, in pixels.
GAP = 4
#: Default height of the title band above the pictures of :func:`titled_row`, in pixels.
TITLE_HEIGHT = 34


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Grey image scaled to 0..255 by its 1st and 99.5th percentiles (uint8 images are kept)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    arr = image.astype(np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = np.percentile(finite, [1.0, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((np.nan_to_num(arr, nan=lo) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 copy of a grey image (any range, see :func:`to_uint8`); RGB uint8 images are kept."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return to_uint8(arr) if arr.dtype == np.uint8 else np.stack([to_uint8(arr[..., k]) for k in range(3)], -1)
    if arr.ndim != 2:
        raise InputError(f"Expected a grey image (rows, columns) or RGB (rows, columns, 3); got shape {arr.shape}.")
    grey = to_uint8(arr)
    return np.repeat(grey[..., None], 3, axis=2)


def overlay_rgb(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Heat map over a grey image.

    Parameters
    ----------
    image : ndarray of shape (rows, columns)
        Grey image (any range; see :func:`to_uint8`).
    heat : ndarray of shape (rows, columns)
        Values in [0, 1] (normalised map); 0 leaves the image as it is.
    alpha : float, default=0.5
        Opacity of the hottest pixels; each pixel's opacity is ``alpha * heat``.
    cmap : str, default="jet"

    Returns
    -------
    ndarray of shape (rows, columns, 3), uint8
    """
    from matplotlib import colormaps

    grey = to_uint8(image).astype(np.float64) / 255.0
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0.0, 1.0)
    if h.shape != grey.shape:
        raise InputError(f"Heat map shape {h.shape} differs from the image's {grey.shape}.")
    colour = colormaps[cmap](h)[..., :3]
    a = (alpha * h)[..., None]
    rgb = grey[..., None] * (1 - a) + colour * a
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def draw_box(rgb: np.ndarray, box: Sequence[int], colour: Sequence[int] = (255, 255, 0), width: int = 1
             ) -> np.ndarray:
    """Copy of ``rgb`` with the outline of box ``(x0, y0, x1, y1)`` (half-open) drawn, clipped to the image."""
    out = rgb.copy()
    rows, cols = out.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x1, y1 = x1 - 1, y1 - 1
    for t in range(width):
        for yy in (y0 + t, y1 - t):
            if 0 <= yy < rows:
                out[yy, max(x0, 0):max(min(x1 + 1, cols), 0)] = colour
        for xx in (x0 + t, x1 - t):
            if 0 <= xx < cols:
                out[max(y0, 0):max(min(y1 + 1, rows), 0), xx] = colour
    return out


def draw_outline(rgb: np.ndarray, mask: np.ndarray, colour: Sequence[int] = (0, 255, 0)) -> np.ndarray:
    """Copy of ``rgb`` with the boundary pixels of ``mask`` (non-zero inside) coloured."""
    from scipy.ndimage import binary_erosion

    m = np.asarray(mask) > 0
    if m.shape != rgb.shape[:2]:
        raise InputError(f"Mask shape {m.shape} differs from the image's {rgb.shape[:2]}.")
    edge = m & ~binary_erosion(m, border_value=0)
    out = rgb.copy()
    out[edge] = colour
    return out


def lesion_slice(mask: np.ndarray) -> int:
    """Index along axis 0 of the middle of the lesion's extent in a volume ``(slices, rows, columns)``.

    The volume's middle slice when the mask is empty.
    """
    m = np.asarray(mask) != 0
    if m.ndim != 3:
        raise InputError(f"lesion_slice takes a volume (slices, rows, columns); got shape {m.shape}.")
    hit = np.flatnonzero(m.reshape(len(m), -1).any(axis=1))
    return int((hit[0] + hit[-1]) // 2) if hit.size else len(m) // 2


def scale_to_height(array: np.ndarray, height: int, *, mask: bool = False) -> np.ndarray:
    """A 2D array resized to ``height`` rows, aspect kept: bilinear (float32), or nearest for a mask (bool).

    Scale pictures before drawing outlines on them, so the lines stay one pixel wide.
    """
    from PIL import Image

    arr = np.asarray(array)
    if arr.ndim != 2:
        raise InputError(f"scale_to_height takes a 2D array; got shape {arr.shape}.")
    rows, cols = arr.shape
    size = (max(round(cols * height / rows), 1), height)
    if mask:
        return np.asarray(Image.fromarray((arr != 0).astype(np.uint8)).resize(size, Image.NEAREST)) > 0
    return np.asarray(Image.fromarray(arr.astype(np.float32), mode="F").resize(size, Image.BILINEAR))


def _fit(picture: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    rows, cols = picture.shape[:2]
    width = max(round(cols * height / rows), 1)
    if (rows, cols) == (height, width):
        return picture
    return np.asarray(Image.fromarray(picture).resize((width, height), Image.BILINEAR))


def titled_row(pictures: Sequence[np.ndarray], titles: Sequence[str], *, height: int = PANEL, gap: int = GAP,
               title_height: int = TITLE_HEIGHT, font_size: int = 12) -> np.ndarray:
    """Pictures side by side, each scaled to ``height`` rows (aspect kept), with its title above on white.

    Parameters
    ----------
    pictures : sequence of ndarray of shape (rows, columns, 3), uint8
    titles : sequence of str
        One per picture; may hold line breaks (two lines fit the default ``title_height``).
    height : int, default=PANEL
    gap : int, default=GAP
        White columns between two pictures.
    title_height : int, default=TITLE_HEIGHT
    font_size : int, default=12

    Returns
    -------
    ndarray of shape (title_height + height, sum of the scaled widths + gap * (n - 1), 3), uint8
        A square picture takes ``height`` columns.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not pictures or len(pictures) != len(titles):
        raise InputError(f"titled_row needs one title per picture; got {len(pictures)} pictures and "
                         f"{len(titles)} titles.")
    fitted = [_fit(np.asarray(p, dtype=np.uint8), height) for p in pictures]
    width = sum(p.shape[1] for p in fitted) + gap * (len(fitted) - 1)
    canvas = Image.new("RGB", (width, title_height + height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    x = 0
    for pic, title in zip(fitted, titles):
        canvas.paste(Image.fromarray(pic), (x, title_height))
        draw.multiline_text((x + 2, 2), str(title), fill=(0, 0, 0), font=font, spacing=2)
        x += pic.shape[1] + gap
    return np.asarray(canvas)


#: What the colour bar of a heat map says: the maps are scaled to the image's own peak.
HEAT_BAR_LABEL = "heat relative to this image's peak (0: none, the image shows through; 1: peak)"


def heat_map_figure(picture: np.ndarray, caption: Sequence[str] | str, *, cmap: str = "jet", alpha: float = 0.5,
                    bar_label: str = HEAT_BAR_LABEL, font_size: int = 13, min_width: int = 480) -> np.ndarray:
    """A heat overlay framed as a figure: caption lines above, a colour bar with its scale below.

    Parameters
    ----------
    picture : ndarray of shape (rows, columns, 3), uint8
        The overlay (:func:`overlay_rgb`, possibly with boxes and outlines), or several side by side.
    caption : str or sequence of str
        Lines above the picture, e.g. the case, the model, its probability and class.
    cmap, alpha : str, float
        The colour map and the opacity of the hottest pixels the overlay was drawn with: the bar
        blends them over mid-grey the same way, so its colours are the overlay's.
    bar_label : str, default=HEAT_BAR_LABEL
        The line under the bar's scale.
    font_size : int, default=13
    min_width : int, default=480
        Narrow pictures are centred on a canvas this wide so the caption and bar labels fit.

    Returns
    -------
    ndarray of shape (rows', columns', 3), uint8
    """
    from PIL import Image, ImageDraw, ImageFont

    pic = np.asarray(picture, dtype=np.uint8)
    if pic.ndim != 3 or pic.shape[2] != 3:
        raise InputError(f"heat_map_figure takes an RGB picture (rows, columns, 3); got shape {pic.shape}.")
    lines = [caption] if isinstance(caption, str) else list(caption)
    font = ImageFont.load_default(size=font_size)
    small = ImageFont.load_default(size=max(font_size - 2, 8))
    line_h = font_size + 5
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max([measure.textlength(t, font=font) for t in lines] + [measure.textlength(bar_label, font=small)])
    width = int(max(pic.shape[1], min_width, text_w + 16))
    top = 8 + line_h * len(lines)
    bar_h, bar_w = 14, int(width * 0.7)
    bar_y = top + pic.shape[0] + 12
    height = bar_y + bar_h + 2 * line_h + 6
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(lines):
        draw.text((8, 4 + k * line_h), text, fill=(0, 0, 0), font=font)
    canvas.paste(Image.fromarray(pic), ((width - pic.shape[1]) // 2, top))
    ramp = np.tile(np.linspace(0.0, 1.0, bar_w), (bar_h, 1))
    bar = overlay_rgb(np.full((bar_h, bar_w), 128, np.uint8), ramp, alpha=alpha, cmap=cmap)
    x0 = (width - bar_w) // 2
    canvas.paste(Image.fromarray(bar), (x0, bar_y))
    draw.rectangle((x0 - 1, bar_y - 1, x0 + bar_w, bar_y + bar_h), outline=(0, 0, 0))
    for value in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = x0 + value * (bar_w - 1)
        draw.line((x, bar_y + bar_h, x, bar_y + bar_h + 3), fill=(0, 0, 0))
        label = f"{value:g}"
        draw.text((x - measure.textlength(label, font=small) / 2, bar_y + bar_h + 4), label, fill=(0, 0, 0), font=small)
    draw.text(((width - measure.textlength(bar_label, font=small)) / 2, bar_y + bar_h + 4 + line_h), bar_label,
              fill=(0, 0, 0), font=small)
    return np.asarray(canvas)


def save_png(rgb: np.ndarray, path: str | os.PathLike[str], *, text: dict[str, str] | None = None) -> Path:
    """Write an RGB (or grey) uint8 array as PNG, atomically; ``text``: PNG text chunks (e.g. the caption)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
    with atomic_path(path) as tmp:
        # zlib level 1: about half the default level's time (heat maps are served live), files of similar size
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG", pnginfo=info, compress_level=1)
    return Path(path)


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    """Write a matplotlib figure as PNG (tight bounding box) atomically, then close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)
