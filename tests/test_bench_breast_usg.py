"""The ``breast-usg`` benchmark on a small subset of BrEaST-Lesions-USG (skipped without ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from her2dlr.bench import BenchOptions, list_benches, run_bench
from her2dlr.errors import InputError

pytestmark = pytest.mark.realdata


def test_breast_usg_registered_and_needs_data():
    assert "breast-usg" in list_benches()
    with pytest.raises(InputError, match="--data"):
        list(run_bench("breast-usg", BenchOptions()))


def test_breast_usg_quick_subset(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import her2dlr.bench.breast_usg as bench

    monkeypatch.setattr(bench, "QUICK_CASES", 40)
    # the wiring is checked, not the feature set: the Original part of us2d costs a tenth of its extraction
    monkeypatch.setattr(bench, "PARAMS", "us2d_original")
    opts = BenchOptions(data=shared_data / "breast-lesions-usg", quick=True, work_dir=tmp_path, n_jobs=2)
    lines = {line["metric"]: line for line in run_bench("breast-usg", opts)}
    for family in ("clinical", "radiomics", "combined", "late"):
        line = lines[f"auc_{family}"]
        assert 0.0 <= line["ci_low"] <= line["value"] <= line["ci_high"] <= 1.0
        assert line["n"] == 40 and line["repeats"] == 1
    # the lexicon descriptors separate benign from malignant well, even on 40 cases
    assert lines["auc_clinical"]["value"] > 0.7
    kept = lines["clinical_variables"]["kept"]
    assert kept and set(kept) <= set(bench.BREAST_CLINICAL)
    assert lines["seconds"]["n_features"] == 100  # us2d_original
