"""The leakage benchmark tells nested selection from selection on all data (quick mode)."""

from __future__ import annotations

import pytest

from her2dlr.bench import BenchOptions, dumps
from her2dlr.bench.learn_benches import leakage_bench


@pytest.mark.slow
def test_leakage_quick():
    lines = {line["metric"]: line for line in leakage_bench(BenchOptions(quick=True, n_jobs=1))}
    for line in lines.values():
        dumps(line)  # valid JSON, no NaN
        assert line["bench"] == "leakage" and line["n"] == 120 and "seconds" in line
    proper, leaky = lines["auc_proper"]["value"], lines["auc_leaky"]["value"]
    assert 0.35 <= proper <= 0.65
    assert leaky > proper + 0.15
    assert 0.35 <= lines["auc_proper_workflows"]["value"] <= 0.65  # choosing among workflows does not leak
