"""Time-frequency features of a curve checked against a hand-worked sine, SciPy and resampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from her2dlr.errors import InputError
from her2dlr.video.timefreq import (
    FREQUENCY_FEATURES,
    TIME_FEATURES,
    curve_features,
    resample_curve,
    time_frequency_table,
)

FPS, N, CYCLES = 30.0, 60, 3  # 20 samples a period: f0 = CYCLES * FPS / N = 1.5 Hz, on an FFT bin


def _sine(amplitude: float, offset: float = 0.0) -> np.ndarray:
    return offset + amplitude * np.sin(2 * np.pi * CYCLES * np.arange(N) / N)


def test_fourteen_time_and_ten_frequency_features() -> None:
    f = curve_features(_sine(1.0, 5.0), FPS)
    assert len(TIME_FEATURES) == 14 and len(FREQUENCY_FEATURES) == 10
    assert list(f) == [*TIME_FEATURES, *FREQUENCY_FEATURES]


def test_sine_with_offset_closed_form() -> None:
    a, c, f0 = 2.0, 5.0, 1.5
    f = curve_features(_sine(a, c), FPS)
    # time domain: mean c, std a/sqrt2, rms sqrt(c^2 + a^2/2), peak c + a, trough c - a
    assert f["mean"] == pytest.approx(c)
    assert f["std"] == pytest.approx(a / np.sqrt(2))
    assert f["rms"] == pytest.approx(np.sqrt(c**2 + a**2 / 2))
    assert f["peak"] == pytest.approx(c + a)
    assert f["min"] == pytest.approx(c - a)
    assert f["peak_to_peak"] == pytest.approx(2 * a)
    assert f["mean_abs"] == pytest.approx(c)  # the curve never crosses zero
    assert f["skewness"] == pytest.approx(0.0, abs=1e-12)
    assert f["kurtosis"] == pytest.approx(1.5)  # mean sin^4 / (mean sin^2)^2 = (3/8) / (1/4)
    # frequency domain: one line at f0 of amplitude a, dc = c
    assert f["dc"] == pytest.approx(c)
    assert f["ac_power"] == pytest.approx(a**2 / 2)
    assert f["peak_frequency"] == pytest.approx(f0)
    assert f["peak_amplitude"] == pytest.approx(a)
    assert f["fc"] == pytest.approx(f0)
    assert f["msf"] == pytest.approx(f0**2)
    assert f["rmsf"] == pytest.approx(f0)
    assert f["vf"] == pytest.approx(0.0, abs=1e-9)
    assert f["spectral_entropy"] == pytest.approx(0.0, abs=1e-9)


def test_zero_mean_sine_ratios() -> None:
    a = 3.0
    f = curve_features(_sine(a), FPS)
    # sampled at 20 points a period: mean |sin| = (1/10) sum_{n<10} sin(pi n / 10) = cot(pi / 20) / 10
    mean_abs = a / np.tan(np.pi / 20) / 10
    sqrt_amp = (a**0.5 * np.mean(np.sqrt(np.abs(np.sin(2 * np.pi * np.arange(20) / 20))))) ** 2
    assert f["mean_abs"] == pytest.approx(mean_abs)
    assert f["crest_factor"] == pytest.approx(np.sqrt(2))
    assert f["shape_factor"] == pytest.approx((a / np.sqrt(2)) / mean_abs)
    assert f["impulse_factor"] == pytest.approx(a / mean_abs)
    assert f["clearance"] == pytest.approx(a / sqrt_amp)
    assert f["dc"] == pytest.approx(0.0, abs=1e-12)


def test_two_tones_centre_of_gravity_and_variance() -> None:
    # lines at 1.5 Hz (amplitude 2) and 4.5 Hz (amplitude 1): power weights 4:1
    t = np.arange(N) / FPS
    x = 2 * np.sin(2 * np.pi * 1.5 * t) + np.cos(2 * np.pi * 4.5 * t)
    f = curve_features(x, FPS)
    w = np.array([4.0, 1.0]) / 5.0
    fr = np.array([1.5, 4.5])
    fc = float(w @ fr)
    assert f["fc"] == pytest.approx(fc)
    assert f["msf"] == pytest.approx(float(w @ fr**2))
    assert f["vf"] == pytest.approx(float(w @ (fr - fc) ** 2))
    assert f["rvf"] == pytest.approx(np.sqrt(float(w @ (fr - fc) ** 2)))
    assert f["peak_frequency"] == pytest.approx(1.5)
    assert f["ac_power"] == pytest.approx(np.var(x))  # Parseval


def test_random_curve_matches_scipy_and_parseval() -> None:
    x = np.random.default_rng(3).gamma(2.0, 1.0, size=77)  # odd length: no Nyquist bin
    f = curve_features(x, 25.0)
    assert f["skewness"] == pytest.approx(stats.skew(x))
    assert f["kurtosis"] == pytest.approx(stats.kurtosis(x, fisher=False))
    assert f["ac_power"] == pytest.approx(np.var(x))
    assert f["dc"] == pytest.approx(np.mean(x))
    assert 0 < f["spectral_entropy"] < 1


def test_resampling_keeps_the_tone_and_fills_gaps() -> None:
    t = np.arange(0, 4, 1 / 50.0)  # 4 s at 50 fps
    x = np.sin(2 * np.pi * 1.0 * t)
    x[[10, 11, 40]] = np.nan
    y = resample_curve(x, 50.0, 25.0)
    assert len(y) == 100 and np.isfinite(y).all()
    f = curve_features(x, 50.0, target_fps=25.0)
    assert f["peak_frequency"] == pytest.approx(1.0, abs=0.26)  # bin width 0.25 Hz
    assert f["std"] == pytest.approx(1 / np.sqrt(2), rel=0.02)


def test_flat_curve_is_finite_and_empty_curve_refused() -> None:
    f = curve_features(np.full(10, 4.0), 10.0)
    assert all(np.isfinite(v) for v in f.values())
    assert f["std"] == 0 and f["fc"] == 0 and f["crest_factor"] == 1.0
    with pytest.raises(InputError, match="no finite value"):
        curve_features(np.full(10, np.nan), 10.0)
    with pytest.raises(InputError, match="at least 4 frames"):
        curve_features(np.ones(3), 10.0)


def test_table_one_row_per_video_common_rate() -> None:
    t30, t15 = np.arange(60) / 30.0, np.arange(30) / 15.0
    curves = {"a": pd.DataFrame({"F (x)": np.sin(2 * np.pi * t30)}),
              "b": pd.DataFrame({"F (x)": np.sin(2 * np.pi * t15)})}
    table = time_frequency_table(curves, {"a": 30.0, "b": 15.0})
    assert table.index.name == "case_id" and list(table.index) == ["a", "b"]
    assert table.shape == (2, 24) and "F (x)__fc" in table.columns
    # resampled to the common 15 fps, the two recordings of one motion give near-equal features
    assert table.loc["a", "F (x)__fc"] == pytest.approx(table.loc["b", "F (x)__fc"], rel=1e-6)
