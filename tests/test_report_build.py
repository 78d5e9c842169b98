"""The study report built from a small synthetic run folder: sections, embedded figures, CSV tables
that agree with the statistics functions, the PDF, and the checklists."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.bench.synthetic_run import make_synthetic_run
from her2dlr.evaluate.calibration import calibration_summary
from her2dlr.evaluate.clustered import clustered_auc_ci
from her2dlr.evaluate.compare import threshold_metrics_ci
from her2dlr.evaluate.decision import decision_curve
from her2dlr.evaluate.delong import delong_test
from her2dlr.report.build import build_report
from her2dlr.report.checklists import TODO

SECTION_IDS = ["cohort", "splits", "segmentation", "features", "models", "discrimination", "calibration", "utility", "tables",
               "nomogram", "explainability", "survival", "reproducibility", "checklists"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    run = make_synthetic_run(tmp_path_factory.mktemp("report") / "run", n_cases=120, n_models=3, seed=3)
    return run, build_report(run, progress=False, strict=True)


@pytest.fixture(scope="module")
def html(built: tuple[Path, object]) -> str:
    return built[1].html.read_text(encoding="utf-8")


def _holdout(run: Path, split: str) -> pd.DataFrame:
    pred = pd.read_parquet(run / "learn" / "radiomics_us2d_mask" / "predictions.parquet")
    return pred[(pred["fold"] == "holdout") & (pred["split"] == split)]


def test_every_section_is_present(html: str, built: tuple[Path, object]) -> None:
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in html, sid
    assert [s.id for s in built[1].sections] == SECTION_IDS
    assert not built[1].warnings
    for title in ("Cohort and quality control", "Discrimination", "Calibration", "Clinical utility", "Nomogram",
                  "Explainability", "Survival", "Reproducibility", "TRIPOD+AI", "CLEAR", "METRICS"):
        assert title in html


def test_html_is_self_contained(html: str) -> None:
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert len(srcs) >= 15
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not re.search(r'(src|href)="(?!data:|#)', html), "only embedded data and in-page anchors are allowed"
    assert "<link" not in html and "<script" not in html and "http://" not in html and "https://" not in html


def test_figures_and_tables_are_written(built: tuple[Path, object]) -> None:
    run, res = built
    out = run / "report"
    assert res.html == out / "report.html"
    for name, path in res.figures.items():
        assert path.exists() and path.read_bytes().startswith(b"\x89PNG"), name
    for name, path in res.tables.items():
        assert path.exists(), name
    index = json.loads((out / "report.json").read_text())
    files = {i["file"] for i in index["items"]}
    assert {"tables/auc_test.csv", "tables/models_metrics.csv", "tables/baseline_by_label.csv",
            "tables/odds_ratios_univariable.csv", "figures/roc_test.png", "figures/nomogram_combined.png",
            "figures/decision_curve_test.png"} <= files
    for item in index["items"]:
        assert all(not s.startswith("/") for s in item.get("sources", [])), "sources are run-relative"


def test_pdf_is_written(built: tuple[Path, object]) -> None:
    pdf = built[1].pdf
    assert pdf is not None and pdf.read_bytes()[:4] == b"%PDF"
    assert pdf.stat().st_size > 50_000


def test_auc_and_delong_tables_agree_with_statistics(built: tuple[Path, object]) -> None:
    run, _ = built
    test = _holdout(run, "test")
    table = pd.read_csv(run / "report" / "tables" / "auc_test.csv").set_index("model")
    assert set(table.index) == set(test["model"])
    for model, part in test.groupby("model"):
        # patients of the synthetic run have several cases: the interval is the patient-clustered one
        assert part["patient_id"].duplicated().any() and table.loc[model, "ci_method"] == "obuchowski"
        ref = clustered_auc_ci(part["label"], part["prob"], part["patient_id"])
        assert table.loc[model, "auc"] == pytest.approx(ref.auc, abs=1e-12)
        assert table.loc[model, "ci_low"] == pytest.approx(ref.ci_low, abs=1e-12)
        assert table.loc[model, "ci_high"] == pytest.approx(ref.ci_high, abs=1e-12)
    dl = pd.read_csv(run / "report" / "tables" / "delong_test.csv")
    wide = test.pivot(index="case_id", columns="model", values="prob")
    y = test.groupby("case_id")["label"].first().loc[wide.index]
    for _, row in dl.iterrows():
        ref = delong_test(y, wide[row["reference"]], wide[row["model"]])
        assert row["p_value"] == pytest.approx(ref.p_value, abs=1e-12)
        assert row["difference"] == pytest.approx(ref.difference, abs=1e-12)


def test_threshold_metrics_and_calibration_agree(built: tuple[Path, object]) -> None:
    run, _ = built
    test = _holdout(run, "test")
    tm = pd.read_csv(run / "report" / "tables" / "threshold_metrics_test.csv")
    cal = pd.read_csv(run / "report" / "tables" / "calibration_test.csv").set_index("model")
    for model, part in test.groupby("model"):
        ref = threshold_metrics_ci(part["label"], part["prob"], float(part["threshold"].iloc[0]),
                                   clusters=part["patient_id"])
        got = tm[tm["model"] == model].set_index("metric")
        for metric in ("sensitivity", "specificity", "accuracy", "youden"):
            assert got.loc[metric, "value"] == pytest.approx(ref.loc[metric, "value"], abs=1e-12)
            assert got.loc[metric, "ci_low"] == pytest.approx(ref.loc[metric, "ci_low"], abs=1e-12)
        summ = calibration_summary(part["label"], part["prob"])
        for key in ("brier", "slope", "intercept", "hl_statistic", "hl_p"):
            assert cal.loc[model, key] == pytest.approx(summ[key], rel=1e-9, abs=1e-12)


def test_decision_curve_data_agree(built: tuple[Path, object]) -> None:
    run, _ = built
    test = _holdout(run, "test")
    wide = test.pivot(index="case_id", columns="model", values="prob")
    y = test.groupby("case_id")["label"].first().loc[wide.index]
    got = pd.read_csv(run / "report" / "figures" / "decision_curve_test.csv")
    ref = decision_curve(y.to_numpy(), {m: wide[m].to_numpy() for m in wide.columns},
                         thresholds=np.round(np.arange(0.01, 1.0, 0.01), 2))
    merged = got.merge(ref, on=["model", "threshold"], suffixes=("", "_ref"))
    assert len(merged) == len(ref) and {"treat all", "treat none"} <= set(got["model"])
    np.testing.assert_allclose(merged["net_benefit"], merged["net_benefit_ref"], atol=1e-12)


def test_checklists_mark_unknown_items(built: tuple[Path, object], html: str) -> None:
    run, _ = built
    tripod = pd.read_csv(run / "report" / "tables" / "checklist_tripod_ai.csv", dtype={"item": str}).set_index("item")
    assert tripod.loc["17", "status"] == TODO and tripod.loc["17", "answer"] == TODO  # ethics: authors only
    assert tripod.loc["18a", "status"] == TODO
    assert tripod.loc["10", "status"] != TODO
    assert "120 images" in tripod.loc["10", "answer"] and "patients" in tripod.loc["10", "answer"]
    for name in ("checklist_clear", "checklist_metrics"):
        t = pd.read_csv(run / "report" / "tables" / f"{name}.csv")
        assert (t["status"] == TODO).any() and (t["status"] != TODO).any()
    assert html.count(TODO) >= 20


def test_reproducibility_lists_run_files(built: tuple[Path, object]) -> None:
    run, _ = built
    files = pd.read_csv(run / "report" / "tables" / "file_fingerprints.csv")
    assert "cohort/manifest.parquet" in set(files["file"])
    assert not any(f.startswith("report/") for f in files["file"])
    seeds = pd.read_csv(run / "report" / "tables" / "seeds_and_hashes.csv")
    assert "split seed" in set(seeds["item"])
