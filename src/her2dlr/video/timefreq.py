"""Time-domain and frequency-domain features of a per-frame feature curve (seed 001).

Seed 001 turns every per-frame radiomic feature into a curve over the sweep and describes each
curve by 14 time-domain and 10 frequency-domain features, naming the direct component (dc), the
centre-of-gravity frequency (fc) and the mean-square frequency (msf). The rest are taken from the
condition-monitoring feature set that these three come from (vibration analysis of rotating
machinery). Written here by hand: no maintained library computes this set.

Notation: the curve ``x_1 .. x_N`` (after resampling to a common frame rate), ``mu`` its mean,
``sigma`` its population standard deviation. The one-sided spectrum of ``x`` by the FFT,
``X_k`` for ``k = 0 .. floor(N/2)``, at frequencies ``f_k = k * fps / N`` Hz; the amplitude
``A_k = 2|X_k|/N`` (``|X_k|/N`` at ``k = 0`` and at the Nyquist bin of an even ``N``) and the power
``P_k = A_k^2 / 2`` (``A_k^2`` at the Nyquist bin), so that ``sum_{k>=1} P_k = sigma^2`` (Parseval).
Frequency moments are taken over the AC part ``k >= 1`` with weights ``w_k = P_k / sum_{j>=1} P_j``.

Time domain (14):

============== =====================================================
mean           ``mu = (1/N) sum x_i``
std            ``sigma = sqrt((1/N) sum (x_i - mu)^2)``
rms            ``sqrt((1/N) sum x_i^2)``
peak           ``max |x_i|``
min            ``min x_i``
peak_to_peak   ``max x_i - min x_i``
mean_abs       ``(1/N) sum |x_i|``
sqrt_amplitude ``((1/N) sum sqrt|x_i|)^2``
skewness       ``(1/N) sum (x_i - mu)^3 / sigma^3``
kurtosis       ``(1/N) sum (x_i - mu)^4 / sigma^4`` (Pearson's, 3 for a Gaussian, 1.5 for a sine)
shape_factor   ``rms / mean_abs``
crest_factor   ``peak / rms``
impulse_factor ``peak / mean_abs``
clearance      ``peak / sqrt_amplitude``
============== =====================================================

Frequency domain (10):

================= ===================================================
dc                ``A_0 = |X_0| / N`` (the direct component, equal to ``mu``)
ac_power          ``sum_{k>=1} P_k`` (equal to ``sigma^2``)
peak_frequency    ``f_k`` of the largest ``P_k``, ``k >= 1``
peak_amplitude    ``A_k`` at ``peak_frequency``
fc                ``sum_{k>=1} f_k w_k`` (centre-of-gravity frequency)
msf               ``sum_{k>=1} f_k^2 w_k`` (mean-square frequency)
rmsf              ``sqrt(msf)``
vf                ``sum_{k>=1} (f_k - fc)^2 w_k`` (frequency variance)
rvf               ``sqrt(vf)``
spectral_entropy  ``-sum_{k>=1} w_k ln w_k / ln K`` (``K`` AC bins; 0 = one line, 1 = flat)
================= ===================================================

A ratio whose denominator is 0 (a flat curve) is reported as 0.0, so a table stays finite.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from her2dlr.errors import InputError

__all__ = [
    "FREQUENCY_FEATURES",
    "TIME_FEATURES",
    "curve_features",
    "fill_gaps",
    "resample_curve",
    "time_frequency_table",
]

TIME_FEATURES = ("mean", "std", "rms", "peak", "min", "peak_to_peak", "mean_abs", "sqrt_amplitude", "skewness",
                 "kurtosis", "shape_factor", "crest_factor", "impulse_factor", "clearance")
FREQUENCY_FEATURES = ("dc", "ac_power", "peak_frequency", "peak_amplitude", "fc", "msf", "rmsf", "vf", "rvf",
                      "spectral_entropy")


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Fill NaN entries of a curve by linear interpolation (nearest value at the ends).

    Raises
    ------
    InputError
        When every value is NaN.
    """
    x = np.asarray(values, dtype=float)
    ok = np.isfinite(x)
    if not ok.any():
        raise InputError("The feature curve has no finite value.")
    if ok.all():
        return x
    idx = np.arange(len(x))
    return np.interp(idx, idx[ok], x[ok])


def resample_curve(values: np.ndarray, fps: float, target_fps: float) -> np.ndarray:
    """Resample a curve sampled at ``fps`` to ``target_fps`` by linear interpolation over its duration.

    The output covers ``[0, (N - 1) / fps]`` seconds at the target rate
    (``floor((N - 1) * target_fps / fps) + 1`` samples). NaNs are filled first (:func:`fill_gaps`).
    """
    if fps <= 0 or target_fps <= 0:
        raise InputError(f"Frame rates must be positive; got fps={fps}, target_fps={target_fps}.")
    x = fill_gaps(values)
    if fps == target_fps or len(x) < 2:
        return x
    duration = (len(x) - 1) / fps
    t_new = np.arange(int(np.floor(duration * target_fps + 1e-9)) + 1) / target_fps
    return np.interp(t_new, np.arange(len(x)) / fps, x)


def _time_features(x: np.ndarray) -> dict[str, float]:
    mu = float(x.mean())
    sigma = float(x.std())
    rms = float(np.sqrt(np.mean(x**2)))
    peak = float(np.abs(x).max())
    mean_abs = float(np.abs(x).mean())
    sqrt_amp = float(np.mean(np.sqrt(np.abs(x))) ** 2)
    centred = x - mu
    skew = float(np.mean(centred**3) / sigma**3) if sigma > 0 else 0.0
    kurt = float(np.mean(centred**4) / sigma**4) if sigma > 0 else 0.0
    return {"mean": mu, "std": sigma, "rms": rms, "peak": peak, "min": float(x.min()),
            "peak_to_peak": float(x.max() - x.min()), "mean_abs": mean_abs, "sqrt_amplitude": sqrt_amp,
            "skewness": skew, "kurtosis": kurt, "shape_factor": _ratio(rms, mean_abs),
            "crest_factor": _ratio(peak, rms), "impulse_factor": _ratio(peak, mean_abs),
            "clearance": _ratio(peak, sqrt_amp)}


def _frequency_features(x: np.ndarray, fps: float) -> dict[str, float]:
    n = len(x)
    spectrum = np.abs(np.fft.rfft(x))
    amp = 2.0 * spectrum / n
    amp[0] = spectrum[0] / n
    if n % 2 == 0:
        amp[-1] = spectrum[-1] / n
    power = amp**2 / 2.0
    if n % 2 == 0:
        power[-1] = amp[-1] ** 2
    freqs = np.fft.rfftfreq(n, d=1.0 / fps)
    ac_p, ac_f = power[1:], freqs[1:]
    total = float(ac_p.sum())
    out = {"dc": float(amp[0]), "ac_power": total}
    if total <= 0 or len(ac_p) == 0:
        return {**out, "peak_frequency": 0.0, "peak_amplitude": 0.0, "fc": 0.0, "msf": 0.0, "rmsf": 0.0,
                "vf": 0.0, "rvf": 0.0, "spectral_entropy": 0.0}
    w = ac_p / total
    top = int(np.argmax(ac_p))
    fc = float(np.sum(ac_f * w))
    msf = float(np.sum(ac_f**2 * w))
    vf = float(np.sum((ac_f - fc) ** 2 * w))
    nz = w[w > 0]
    entropy = float(-np.sum(nz * np.log(nz)) / np.log(len(w))) if len(w) > 1 else 0.0
    return {**out, "peak_frequency": float(ac_f[top]), "peak_amplitude": float(amp[1:][top]), "fc": fc,
            "msf": msf, "rmsf": float(np.sqrt(msf)), "vf": vf, "rvf": float(np.sqrt(max(vf, 0.0))),
            "spectral_entropy": entropy}


def curve_features(values: np.ndarray, fps: float, *, target_fps: float | None = None) -> dict[str, float]:
    """The 14 time-domain and 10 frequency-domain features of one curve (see the module docstring).

    Parameters
    ----------
    values : array-like of shape (n_frames,)
        One feature per frame; NaN for excluded frames (filled by interpolation).
    fps : float
        Frame rate of ``values``.
    target_fps : float, optional
        Resample to this rate first (so clips recorded at different rates are comparable).

    Returns
    -------
    dict of str to float
        ``TIME_FEATURES`` then ``FREQUENCY_FEATURES``, in that order.

    Examples
    --------
    >>> t = np.arange(60) / 30.0
    >>> f = curve_features(2.0 + np.sin(2 * np.pi * 1.5 * t), fps=30.0)
    >>> round(f["dc"], 6), round(f["fc"], 6), round(f["msf"], 6)
    (2.0, 1.5, 2.25)
    """
    x = fill_gaps(values)
    rate = float(fps)
    if target_fps is not None:
        x = resample_curve(x, rate, target_fps)
        rate = float(target_fps)
    if len(x) < 4:
        raise InputError(f"A feature curve needs at least 4 frames; got {len(x)}.")
    return {**_time_features(x), **_frequency_features(x, rate)}


def time_frequency_table(curves: Mapping[str, pd.DataFrame], fps: Mapping[str, float], *,
                         target_fps: float | None = None) -> pd.DataFrame:
    """One row per video: every curve's 24 features, columns ``<feature>__<tf feature>``.

    Parameters
    ----------
    curves : mapping of case id to DataFrame (n_frames, n_features)
        Per-frame features of each video (NaN rows for excluded frames).
    fps : mapping of case id to float
        Each video's frame rate.
    target_fps : float, optional
        Common rate all curves are resampled to first (default: the lowest of the videos' rates).

    Returns
    -------
    DataFrame indexed by ``case_id``
    """
    if not curves:
        raise InputError("No per-frame feature curves to summarise.")
    rate = float(target_fps) if target_fps is not None else min(float(fps[c]) for c in curves)
    rows = {}
    for case_id, table in curves.items():
        row: dict[str, float] = {}
        for column in table.columns:
            for name, value in curve_features(table[column].to_numpy(float), float(fps[case_id]),
                                              target_fps=rate).items():
                row[f"{column}__{name}"] = value
        rows[case_id] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "case_id"
    return out
