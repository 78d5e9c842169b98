"""Patient/group-level splits: stratified, reproducible by seed, groups never straddle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.splits import assign_splits, groups_straddling, repeated_group_kfold, stratified_group_holdout
from her2dlr.config import SplitSettings
from her2dlr.errors import InputError


def _manifest(n_groups: int = 120, seed: int = 0) -> Manifest:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = int(rng.random() < 0.3)
        for k in range(rng.integers(1, 4)):  # 1-3 images per group
            rows.append({"case_id": f"g{g}_{k}", "patient_id": f"p{g}", "image": f"g{g}_{k}.png",
                         "group": f"grp{g // 2}" if g % 7 == 0 else f"grp{g}", "label": label,
                         "include": True, "centre": "A" if g < 80 else "B"})
    return Manifest(pd.DataFrame(rows))


def test_holdout_is_stratified_and_sized():
    m = assign_splits(_manifest(), SplitSettings(seed=1, kfold=None))
    t = m.table
    test = t[t["split"] == "test"]
    assert abs(len(test) / len(t) - 0.3) < 0.03
    assert abs(test["label"].mean() - t["label"].mean()) < 0.03
    assert groups_straddling(t["group"], t["split"]) == 0


def test_repeated_kfold_keeps_groups_whole_in_every_repeat():
    m = assign_splits(_manifest(), SplitSettings(seed=3, kfold={"n_splits": 5, "n_repeats": 3}))
    assert m.fold_columns == ["fold_r0", "fold_r1", "fold_r2"]
    for col in m.fold_columns:
        assert set(m.table[col]) == {0, 1, 2, 3, 4}
        assert groups_straddling(m.table["group"], m.table[col]) == 0
    assert not (m.table["fold_r0"] == m.table["fold_r1"]).all()  # repeats differ


def test_same_seed_same_split_other_seed_other_split():
    a = assign_splits(_manifest(), SplitSettings(seed=7)).table
    b = assign_splits(_manifest(), SplitSettings(seed=7)).table
    c = assign_splits(_manifest(), SplitSettings(seed=8)).table
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])


def test_excluded_rows_get_no_split():
    m = _manifest()
    m.table.loc[0, "include"] = False
    m.table["label"] = m.table["label"].astype("Int64")
    m.table.loc[1, "label"] = pd.NA
    out = assign_splits(m, SplitSettings(seed=0)).table
    assert out.loc[[0, 1], "split"].isna().all()
    assert (out.loc[[0, 1], "fold_r0"] == -1).all()


def test_split_by_centre():
    out = assign_splits(_manifest(), SplitSettings(by_centre={"test_centres": ["B"]}, kfold={"n_splits": 3})).table
    assert (out.loc[out["centre"] == "B", "split"] == "test").all()
    assert (out.loc[out["centre"] == "A", "split"] == "train").all()
    assert (out.loc[out["centre"] == "B", "fold_r0"] == -1).all()  # internal CV on the training centres only


def test_unknown_centre_is_named():
    with pytest.raises(InputError, match="'C'.*Centres: \\['A', 'B'\\]"):
        assign_splits(_manifest(), SplitSettings(by_centre={"test_centres": ["C"]}))


def test_too_few_groups_for_folds():
    y = np.array([0, 0, 0, 1, 1])
    with pytest.raises(InputError, match="fewer than split.kfold.n_splits"):
        repeated_group_kfold(y, np.arange(5), 3, 1, 0)


def test_holdout_function_hand_case():
    # 10 groups of one row, 4 positives: 30% test should hold 1 positive and 2 negatives.
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    test = stratified_group_holdout(y, np.arange(10), 0.3, seed=0)
    assert test.sum() == 3
    assert y[test].sum() == 1
