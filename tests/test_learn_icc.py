"""ICC(1,1), ICC(2,1), ICC(3,1) against Shrout & Fleiss (1979) and the ICC filter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from her2dlr.errors import InputError, StudyFileError
from her2dlr.learn.selection import ICCFilter, build_selection, intraclass_correlation

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SF_TABLE2 = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)


def test_icc_hand_worked_shrout_fleiss_table2():
    # By hand: grand mean 5.2917; BMS = 11.24, JMS = 32.49, EMS = 1.02, WMS = 6.26 (Table 3), so
    # ICC(1,1) = (11.24 - 6.26) / (11.24 + 3 * 6.26) = 0.166
    # ICC(2,1) = (11.24 - 1.02) / (11.24 + 3 * 1.02 + 4 * (32.49 - 1.02) / 6) = 0.290
    # ICC(3,1) = (11.24 - 1.02) / (11.24 + 3 * 1.02) = 0.715
    # Published: .17, .29, .71; pingouin.intraclass_corr gives 0.166, 0.290, 0.715.
    assert intraclass_correlation(SF_TABLE2, "icc1") == pytest.approx(0.1657, abs=5e-4)
    assert intraclass_correlation(SF_TABLE2, "icc2") == pytest.approx(0.2898, abs=5e-4)
    assert intraclass_correlation(SF_TABLE2, "icc3") == pytest.approx(0.7148, abs=5e-4)


def test_icc_vectorised_matches_one_at_a_time():
    rng = np.random.default_rng(0)
    ratings = rng.normal(size=(30, 3, 5)) + rng.normal(size=(30, 1, 5)) * np.array([0.1, 1, 2, 3, 4])
    together = intraclass_correlation(ratings, "icc2")
    for j in range(5):
        assert together[j] == pytest.approx(intraclass_correlation(ratings[:, :, j], "icc2"))


def _repeat_tables(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(n, 4))
    noise_sd = np.array([0.1, 0.2, 2.0, 3.0])  # two stable, two unstable features
    ids = [f"c{i}" for i in range(n)]
    cols = ["stable a", "stable (b)", "unstable c", "unstable d"]
    first = pd.DataFrame(truth + rng.normal(size=(n, 4)) * noise_sd, index=ids, columns=cols)
    second = pd.DataFrame(truth + rng.normal(size=(n, 4)) * noise_sd, index=ids, columns=cols)
    return first, second


def test_icc_filter_keeps_reproducible_features_using_training_cases_only():
    first, second = _repeat_tables()
    train = first.iloc[:40]
    sel = ICCFilter(second, threshold=0.75).fit(train)
    assert list(sel.get_feature_names_out()) == ["stable a", "stable (b)"]
    assert sel.n_cases_ == 40
    # the ICC uses only the cases given: changing the other cases' repeats changes nothing
    other = second.copy()
    other.iloc[40:] = 99.0
    np.testing.assert_allclose(ICCFilter(other).fit(train).icc_, sel.icc_)


def test_icc_filter_needs_case_ids_and_repeat_columns():
    first, second = _repeat_tables()
    with pytest.raises(InputError, match="DataFrame indexed by case id"):
        ICCFilter(second).fit(first.to_numpy())
    with pytest.raises(InputError, match="missing from the repeat"):
        ICCFilter(second.drop(columns=["unstable d"])).fit(first)
    sel = ICCFilter(second.drop(columns=["unstable d"]), missing="keep").fit(first)
    assert "unstable d" in sel.get_feature_names_out()


def test_icc_step_must_come_first_in_study_file(tmp_path):
    first, second = _repeat_tables()
    path = tmp_path / "repeat.parquet"
    second.rename_axis("case_id").to_parquet(path)
    steps = build_selection([{"name": "icc", "repeat": str(path)}, {"name": "variance"}])
    assert steps[0][1].fit(first).get_support().sum() == 2
    with pytest.raises(StudyFileError, match="must be the first step"):
        build_selection([{"name": "variance"}, {"name": "icc", "repeat": str(path)}])
