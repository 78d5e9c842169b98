"""Patient-level splits fixed by a seed: stratified hold-out, repeated stratified group k-fold, by centre.

Splits are made on groups (near-duplicate groups from QC, which already merge rows of one patient;
``patient_id`` when QC has not run), so a patient or a near-duplicate never sits on both sides.
They depend only on the labels, the groups and the seed: there is deliberately no function that
looks at a model's score, so a split cannot be chosen by the result it gives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.settings import SplitSettings
from her2dlr.errors import InputError, nearest

__all__ = ["assign_splits", "groups_straddling", "repeated_group_kfold", "stratified_group_holdout"]


def _group_ids(table: pd.DataFrame) -> pd.Series:
    if "group" in table.columns and table["group"].notna().all():
        return table["group"].astype(str)
    return table["patient_id"].astype(str)


def stratified_group_holdout(y: np.ndarray, groups: np.ndarray, test_size: float, seed: int) -> np.ndarray:
    """Boolean test mask of a hold-out that keeps groups whole and class proportions close to the whole.

    Groups are visited in a seeded random order; each goes to the test side when that brings the
    test set's class counts closer to ``test_size`` times the class totals (greedy, exact enough
    for cohorts of tens to thousands of patients).

    Parameters
    ----------
    y : array of shape (n_rows,)
        Integer class labels.
    groups : array of shape (n_rows,)
        Group of each row; a group never straddles the split.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    classes = np.unique(y)
    uniq, inverse = np.unique(groups, return_inverse=True)
    counts = np.zeros((len(uniq), len(classes)))
    np.add.at(counts, (inverse, np.searchsorted(classes, y)), 1)
    target = counts.sum(axis=0) * test_size
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    in_test = np.zeros(len(uniq), dtype=bool)
    current = np.zeros(len(classes))
    for g in order:
        new = current + counts[g]
        if np.abs(target - new).sum() < np.abs(target - current).sum():
            in_test[g] = True
            current = new
    return in_test[inverse]


def repeated_group_kfold(y: np.ndarray, groups: np.ndarray, n_splits: int, n_repeats: int, seed: int,
                         *, patients: np.ndarray | None = None) -> np.ndarray:
    """Fold index of every row for each repetition, shape (n_repeats, n_rows).

    Each repetition is a :class:`sklearn.model_selection.StratifiedGroupKFold` with a shuffled order
    seeded by ``seed + repetition``. ``patients`` (one per row) lets the message of a class
    with too few groups say how many patients QC merged into them as duplicates.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    for cls in np.unique(y):
        n_groups = len(np.unique(groups[y == cls]))
        if n_groups < n_splits:
            why = ""
            if patients is not None:
                n_rows, n_patients = int((y == cls).sum()), len(np.unique(np.asarray(patients)[y == cls]))
                if n_patients > n_groups:
                    why = (f" ({n_rows} row(s) of {n_patients} patient(s); QC merged them into {n_groups} group(s) "
                           "because their images are exact or near duplicates of each other, see qc_pairs.csv and "
                           "the group column of qc.csv; if they are different lesions, lower "
                           "qc.near_duplicate_distance)")
            raise InputError(
                f"Class {cls} has {n_groups} patient group(s){why}, fewer than split.kfold.n_splits = {n_splits}: "
                "lower n_splits or add cases."
            )
    out = np.full((n_repeats, len(y)), -1, dtype=int)
    for r in range(n_repeats):
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + r)
        for k, (_, test_idx) in enumerate(cv.split(np.zeros(len(y)), y, groups)):
            out[r, test_idx] = k
    return out


def groups_straddling(groups: pd.Series, assignment: pd.Series) -> int:
    """Number of groups whose rows fall on more than one side of ``assignment`` (must be 0)."""
    frame = pd.DataFrame({"g": groups.values, "a": assignment.values}).dropna()
    return int((frame.groupby("g")["a"].nunique() > 1).sum())


def assign_splits(manifest: Manifest, settings: SplitSettings) -> Manifest:
    """Write ``split`` and ``fold_r<k>`` columns into a copy of the manifest.

    Only included rows with a label take part; the others get ``split`` missing and fold -1.

    Raises
    ------
    InputError
        No ``label`` column, a test centre that does not exist, or too few groups per class.
    """
    if "label" not in manifest.table.columns:
        raise InputError("The manifest has no 'label' column: apply the label rule before splitting.")
    table = manifest.table.copy()
    usable = table["label"].notna()
    if "include" in table.columns:
        usable &= table["include"].fillna(True).astype(bool)
    sub = table[usable]
    y = sub["label"].astype(int).to_numpy()
    groups = _group_ids(sub).to_numpy()
    table["split"] = pd.Series(pd.NA, index=table.index, dtype="string")
    kfold_rows = usable.copy()
    if settings.by_centre is not None:
        centres = set(table["centre"].astype(str))
        for c in settings.by_centre.test_centres:
            if c not in centres:
                raise InputError(
                    f"split.by_centre.test_centres names '{c}', which is no centre of the cohort. "
                    f"Centres: {sorted(centres)}.{nearest(c, centres)}"
                )
        # a split by centre keeps every image with its centre: a near-duplicate group spanning
        # two centres cannot be moved to one side (QC reports such pairs as a warning)
        is_test = sub["centre"].astype(str).isin(settings.by_centre.test_centres)
        table.loc[sub.index, "split"] = np.where(is_test, "test", "train")
        kfold_rows = usable & (table["split"] == "train")
    elif settings.holdout is not None:
        test = stratified_group_holdout(y, groups, settings.holdout.test_size, settings.seed)
        table.loc[sub.index, "split"] = np.where(test, "test", "train")
    for c in [c for c in table.columns if c.startswith("fold_r")]:
        del table[c]
    if settings.kfold is not None:
        ksub = table[kfold_rows]
        folds = repeated_group_kfold(
            ksub["label"].astype(int).to_numpy(), _group_ids(ksub).to_numpy(),
            settings.kfold.n_splits, settings.kfold.n_repeats, settings.seed,
            patients=ksub["patient_id"].astype(str).to_numpy(),
        )
        for r in range(settings.kfold.n_repeats):
            col = np.full(len(table), -1, dtype=int)
            col[np.flatnonzero(kfold_rows.to_numpy())] = folds[r]
            table[f"fold_r{r}"] = col
    out = manifest.copy(table)
    out.meta["split"] = settings.model_dump(mode="json")
    return out
