"""Exact duplicates, near duplicates and shifted crops among a cohort's images.

Two images are taken to show the same scan when

* **exact**: their decoded grey pixels are identical (SHA-1 of the array and its shape);
* **hash**: their 64-bit DCT perceptual hashes (:func:`imagehash.phash` of the grey image)
  differ in at most ``near_distance`` bits. This survives re-encoding, rescaling, mild noise,
  contrast changes and a few pixels of burnt-in text;
* **overlap**: one is a shifted crop of the other at the same pixel scale (screen grabs with
  other margins), which moves the perceptual hash by 12 to 24 bits. Candidate pairs whose
  difference hashes (:func:`imagehash.dhash`) differ in at most ``candidate_distance`` bits are
  aligned by phase correlation (to a fraction of a pixel) on band-passed 1/8 thumbnails and
  kept when the correlation over the overlap is at least ``overlap_ncc`` and the overlap
  covers at least half of the smaller image.

Pairs are joined transitively into groups (connected components of the pair graph).

The defaults were tuned on BUSI (780 images) by looking at pairs on both sides of each
threshold. Perceptual-hash pairs 0-10 bits apart were all the same scan or the next frame of
the same lesion; at 12 bits different patients appear (four benign/malignant or
benign/normal pairs that are plainly different lesions) and at 14 bits they dominate
(46 cross-label pairs instead of 10). The overlap correlation was computed once for all
303,810 pairs: among pairs more than 10 hash bits apart, the ten pixel-identical crops scored
0.974-0.999 and the next highest pair 0.841 (the next frame of one lesion); no pair at all
scored between 0.85 and 0.95, so 0.9 sits in the gap. All ten crops had difference hashes
at most 20 bits apart, hence the candidate band. With these defaults BUSI has 155 groups of
two or more images (349 images) and 11 benign/malignant or benign/normal pairs in 8 groups,
each of which is one scan filed twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy import fft as sfft
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "DEFAULT_CANDIDATE_DISTANCE",
    "DEFAULT_NEAR_DISTANCE",
    "DEFAULT_OVERLAP_NCC",
    "Fingerprint",
    "connected_groups",
    "find_duplicate_pairs",
    "fingerprint",
    "hamming_pairs",
    "overlap_correlation",
]

DEFAULT_NEAR_DISTANCE = 10
"""Largest perceptual-hash Hamming distance (of 64 bits) for a near duplicate."""

DEFAULT_OVERLAP_NCC = 0.9
"""Smallest correlation over the overlap for a shifted crop of the same scan."""

DEFAULT_CANDIDATE_DISTANCE = 20
"""Largest difference-hash distance for a pair to be checked for a shifted crop."""

THUMB_FACTOR = 8
"""Scale (1/8) of the band-passed thumbnails used for the overlap check."""

MIN_OVERLAP = 0.5
"""Smallest overlap, as a fraction of the smaller thumbnail, for the overlap check."""

HIGHPASS_SIGMA = 3.0
"""Gaussian (thumbnail pixels) subtracted from the thumbnails before correlating."""

TRIM = 4
"""Thumbnail pixels left out at each edge of the overlap (where the high-pass sees the border)."""

PAIR_DTYPES = {
    "i": "int64", "j": "int64", "exact": "bool", "distance": "int64", "dhash_distance": "int64",
    "overlap_ncc": "float64", "method": "object",
}


@dataclass(frozen=True)
class Fingerprint:
    """What duplicate search needs to know about one image.

    Attributes
    ----------
    sha1 : str
        SHA-1 of the grey pixel values (in thousandths) and the array shape.
    phash, dhash : int
        64-bit perceptual (DCT) and difference hashes of the grey picture.
    thumb : ndarray of shape (height // 8, width // 8) or None
        Band-passed thumbnail for the overlap check; None when the picture is smaller than
        128 pixels on a side.
    """

    sha1: str
    phash: int
    dhash: int
    thumb: np.ndarray | None

    @property
    def phash_hex(self) -> str:
        """The perceptual hash as 16 hex digits (as :class:`imagehash.ImageHash` prints it)."""
        return f"{self.phash:016x}"


def _pixel_sha1(grey: np.ndarray) -> str:
    """SHA-1 of the shape and the pixel values in thousandths (as int64).

    Thousandths, not the raw bytes, so that a grey PNG and the same picture stored as RGB
    (grey = R = G = B, converted in float32) hash alike; one slice at a time for volumes.
    """
    digest = hashlib.sha1(repr(tuple(grey.shape)).encode())
    planes = grey.reshape((-1, *grey.shape[-2:])) if grey.ndim >= 2 else grey.reshape(1, 1, -1)
    for plane in planes:
        if np.issubdtype(plane.dtype, np.integer):
            digest.update((plane.astype(np.int64) * 1000).tobytes())
        else:
            digest.update(np.rint(plane.astype(np.float64) * 1000).astype(np.int64).tobytes())
    return digest.hexdigest()


def _picture(grey: np.ndarray) -> np.ndarray:
    """The 2D picture to hash: the image itself, or the middle slice of a volume."""
    if grey.ndim == 2:
        return grey
    if grey.ndim == 3:
        return grey[grey.shape[0] // 2]
    raise ValueError(f"Expected a 2D image or a 3D volume, got an array of shape {grey.shape}.")


def _to_uint8(picture: np.ndarray) -> np.ndarray:
    if picture.dtype == np.uint8:
        return picture
    values = picture.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 255:
        return np.rint(values).astype(np.uint8)
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    h, w = (arr.shape[0] // factor) * factor, (arr.shape[1] // factor) * factor
    return arr[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def _thumbnail(picture: np.ndarray, factor: int = THUMB_FACTOR) -> np.ndarray | None:
    """Band-passed 1/``factor`` thumbnail for the overlap check, or None for small pictures.

    Block means, a Gaussian of ``factor / 2`` pixels (so that a crop whose offset is not a
    multiple of ``factor`` gives nearly the same thumbnail), block means again, and the
    Gaussian blur of :data:`HIGHPASS_SIGMA` thumbnail pixels subtracted: without that, the
    depth profile every ultrasound image shares (bright top, dark bottom) makes unrelated
    images correlate at 0.9.
    """
    if min(picture.shape) < 2 * (TRIM + 4) * factor:
        return None
    half = max(factor // 2, 1)
    smooth = ndimage.gaussian_filter(_block_mean(picture.astype(np.float32), half), sigma=1.0, mode="nearest")
    thumb = _block_mean(smooth, factor // half)
    return (thumb - ndimage.gaussian_filter(thumb, sigma=HIGHPASS_SIGMA, mode="nearest")).astype(np.float32)


def _hash_int(h: imagehash.ImageHash) -> int:
    return int(str(h), 16)


def fingerprint(grey: np.ndarray) -> Fingerprint:
    """Hashes and thumbnail of one grey image.

    Parameters
    ----------
    grey : ndarray of shape (height, width) or (depth, height, width)
        Grey pixel values (any numeric type). Volumes are hashed on their middle slice;
        ``sha1`` covers the whole array.

    Returns
    -------
    Fingerprint
    """
    grey = np.asarray(grey)
    picture = _picture(grey)
    pil = Image.fromarray(_to_uint8(picture))
    return Fingerprint(
        sha1=_pixel_sha1(grey),
        phash=_hash_int(imagehash.phash(pil)),
        dhash=_hash_int(imagehash.dhash(pil)),
        thumb=_thumbnail(picture),
    )


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(x)
    table = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1)


def hamming_pairs(
    hashes: np.ndarray, max_distance: int, *, block: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` of 64-bit hashes at most ``max_distance`` bits apart.

    Parameters
    ----------
    hashes : ndarray of shape (n,), dtype uint64
    max_distance : int
    block : int
        Rows compared at once (memory is ``block * n`` bytes).

    Returns
    -------
    i, j, distance : ndarray of shape (n_pairs,)
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    found_i, found_j, found_d = [], [], []
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block]
        dist = _popcount(rows[:, None] ^ hashes[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        keep = jj > ii
        found_i.append(ii[keep])
        found_j.append(jj[keep])
        found_d.append(dist[ii[keep] - start, jj[keep]].astype(np.int64))
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def _subpixel(surface: np.ndarray, peak: tuple[int, ...]) -> list[float]:
    """Fractional offset of a correlation peak along each axis (parabola through 3 samples)."""
    offsets = []
    for axis, size in enumerate(surface.shape):
        before, after = list(peak), list(peak)
        before[axis] = (peak[axis] - 1) % size
        after[axis] = (peak[axis] + 1) % size
        y0, y1, y2 = surface[tuple(before)], surface[peak], surface[tuple(after)]
        curvature = y0 - 2 * y1 + y2
        offsets.append(float(np.clip(0.5 * (y0 - y2) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0)
    return offsets


def overlap_correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Best translation of ``b`` onto ``a`` and the correlation over their overlap.

    The shift is the peak of the phase correlation (zero-padded, so any shift up to the
    image sizes is found), refined to a fraction of a pixel by a parabola through the peak;
    ``b`` is moved by that fraction (linear interpolation) before correlating. scikit-image's
    ``phase_cross_correlation`` does the same but is not a dependency of this package.

    Parameters
    ----------
    a, b : ndarray of shape (height, width)
        Thumbnails at the same pixel scale; sizes may differ.

    Returns
    -------
    ncc : float
        Pearson correlation of the overlapping pixels (0 when they barely overlap).
    overlap : float
        Overlap area as a fraction of the smaller image.
    """
    shape = tuple(sfft.next_fast_len(int(sa + sb), real=True) for sa, sb in zip(a.shape, b.shape))
    cross = sfft.rfft2(a - a.mean(), shape) * np.conj(sfft.rfft2(b - b.mean(), shape))
    cross /= np.abs(cross) + 1e-12
    surface = sfft.irfft2(cross, shape)
    peak = tuple(int(p) for p in np.unravel_index(int(np.argmax(surface)), shape))
    b = ndimage.shift(b.astype(np.float64), _subpixel(surface, peak), order=1, mode="nearest")
    dy, dx = (p - s if p > s // 2 else p for p, s in zip(peak, shape))
    y0, y1 = max(0, dy), min(a.shape[0], b.shape[0] + dy)
    x0, x1 = max(0, dx), min(a.shape[1], b.shape[1] + dx)
    if y1 - y0 <= 2 * TRIM + 2 or x1 - x0 <= 2 * TRIM + 2:
        return 0.0, 0.0
    overlap = (y1 - y0) * (x1 - x0) / min(a.size, b.size)
    t = TRIM  # the border of the overlap is where the high-pass and the interpolation differ
    pa = a[y0 + t : y1 - t, x0 + t : x1 - t].astype(np.float64)
    pb = b[y0 - dy + t : y1 - dy - t, x0 - dx + t : x1 - dx - t]
    pa, pb = pa - pa.mean(), pb - pb.mean()
    denom = float(np.sqrt((pa * pa).sum() * (pb * pb).sum()))
    return (float((pa * pb).sum()) / denom if denom > 0 else 0.0), overlap


def find_duplicate_pairs(
    fingerprints: Sequence[Fingerprint | None],
    *,
    near_distance: int = DEFAULT_NEAR_DISTANCE,
    overlap_ncc: float | None = DEFAULT_OVERLAP_NCC,
    candidate_distance: int = DEFAULT_CANDIDATE_DISTANCE,
) -> pd.DataFrame:
    """Pairs of images that show the same scan (exact, hash or overlap duplicates).

    Parameters
    ----------
    fingerprints : sequence of Fingerprint or None
        One per image; None (unreadable image) takes part in no pair.
    near_distance : int
        Largest perceptual-hash distance (0-64 bits) of a near duplicate.
    overlap_ncc : float or None
        Smallest overlap correlation of a shifted crop; None skips the overlap check.
    candidate_distance : int
        Largest difference-hash distance of a pair sent to the overlap check.

    Returns
    -------
    DataFrame
        Columns ``i, j`` (positions, ``i < j``), ``exact`` (bool), ``distance`` (phash bits),
        ``dhash_distance``, ``overlap_ncc`` (NaN when not checked) and ``method``
        (``"exact"``, ``"hash"`` or ``"overlap"``), sorted by ``i, j``.
    """
    if not 0 <= near_distance <= 64:
        raise ValueError(f"near_distance must be between 0 and 64 bits. Got {near_distance} instead.")
    index = np.array([k for k, f in enumerate(fingerprints) if f is not None], dtype=np.int64)
    fps = [fingerprints[k] for k in index]
    if len(fps) < 2:
        return pd.DataFrame([], columns=list(PAIR_DTYPES)).astype(PAIR_DTYPES)
    ph = np.array([f.phash for f in fps], dtype=np.uint64)
    dh = np.array([f.dhash for f in fps], dtype=np.uint64)
    sha = np.array([f.sha1 for f in fps])

    candidates = [_exact_pairs(sha), np.stack(hamming_pairs(ph, near_distance)[:2], axis=1)]
    if overlap_ncc is not None:
        candidates.append(np.stack(hamming_pairs(dh, candidate_distance)[:2], axis=1))
    pairs = np.unique(np.concatenate(candidates), axis=0)
    i, j = pairs[:, 0], pairs[:, 1]
    exact = sha[i] == sha[j]
    dist = _popcount(ph[i] ^ ph[j]).astype(np.int64)
    ddist = _popcount(dh[i] ^ dh[j]).astype(np.int64)
    rows = []
    for k in range(len(pairs)):
        ncc = np.nan
        if exact[k]:
            method = "exact"
        elif dist[k] <= near_distance:
            method = "hash"
        else:  # a dhash candidate: keep it only if one image is a shifted crop of the other
            ta, tb = fps[i[k]].thumb, fps[j[k]].thumb
            if overlap_ncc is None or ta is None or tb is None:
                continue
            ncc, overlap = overlap_correlation(ta, tb)
            if ncc < overlap_ncc or overlap < MIN_OVERLAP:
                continue
            method = "overlap"
        rows.append(
            (int(index[i[k]]), int(index[j[k]]), bool(exact[k]), int(dist[k]), int(ddist[k]), ncc, method)
        )
    out = pd.DataFrame(rows, columns=list(PAIR_DTYPES)).astype(PAIR_DTYPES)
    return out.sort_values(["i", "j"], ignore_index=True)


def _exact_pairs(sha: np.ndarray) -> np.ndarray:
    """All pairs ``i < j`` with the same pixel hash, as an array of shape (n_pairs, 2)."""
    order = np.argsort(sha, kind="stable")
    pairs = []
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order) or sha[order[end]] != sha[order[start]]:
            members = np.sort(order[start:end])
            pairs.extend((a, b) for n, a in enumerate(members) for b in members[n + 1 :])
            start = end
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def connected_groups(n: int, i: Sequence[int], j: Sequence[int]) -> np.ndarray:
    """Group ids of ``n`` items joined transitively by the pairs ``(i[k], j[k])``.

    Ids are 0, 1, 2, ... in order of each group's first item, so the result does not depend
    on the order of the pairs.

    Returns
    -------
    ndarray of shape (n,), dtype int64
    """
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    renumber = np.empty(len(order), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    return renumber[labels]
