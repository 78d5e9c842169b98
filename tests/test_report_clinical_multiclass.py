"""The report's clinical section and the model card of a three-class run (HER2-zero / HER2-low / HER2-positive),
and the multinomial relative risk ratios against a hand-worked contingency table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from her2dlr.evaluate.multinomial_tables import relative_risk_ratio_table
from her2dlr.learn.artefact import load_artefact
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage
from her2dlr.report.context import ReportContext
from her2dlr.report.run import RunFolder
from her2dlr.report.sections.clinical import clinical_tables_section
from test_learn_clinical_multiclass import CLASSES, cohort


def test_relative_risk_ratios_of_a_two_by_three_table_are_its_cross_product_ratios():
    # palpable (no / yes) x class: a saturated multinomial model reproduces the table, so each RRR is
    # (n_class,yes * n_ref,no) / (n_class,no * n_ref,yes) with log-SE sqrt(sum 1/n), and the variable's
    # likelihood-ratio test is the G-test of the table
    counts = {"zero": (20, 10), "low": (12, 18), "pos": (8, 22)}
    rows = [(lev, cls) for cls, (no, yes) in counts.items() for lev, k in (("no", no), ("yes", yes)) for _ in range(k)]
    frame = pd.DataFrame(rows, columns=["palpable", "her2"])
    frame["her2"] = pd.Categorical(frame["her2"], categories=list(counts))
    res = relative_risk_ratio_table(frame, "her2", ["palpable"], types={"palpable": "categorical"})
    uni = res.univariable[res.univariable["note"] != "reference"].set_index("class")
    z = stats.norm.ppf(0.975)
    (rn, ry) = counts["zero"]
    for cls in ("low", "pos"):
        no, yes = counts[cls]
        rrr, se = yes * rn / (no * ry), np.sqrt(1 / yes + 1 / rn + 1 / no + 1 / ry)
        assert uni.loc[cls, "RRR"] == pytest.approx(rrr, rel=1e-6)
        assert uni.loc[cls, "ci_low"] == pytest.approx(rrr * np.exp(-z * se), rel=1e-5)
        assert uni.loc[cls, "ci_high"] == pytest.approx(rrr * np.exp(z * se), rel=1e-5)
    g_test = stats.chi2_contingency(np.array(list(counts.values())), lambda_="log-likelihood", correction=False)
    assert uni["p_overall"].iloc[0] == pytest.approx(g_test.pvalue, rel=1e-6)
    assert res.classes == ["zero", "low", "pos"] and res.selected == ["palpable"]
    assert res.class_counts == {"zero": 30, "low": 30, "pos": 30}


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory):
    """A run folder with the cohort manifest and a learned three-class clinical model."""
    manifest, _ = cohort()
    root = tmp_path_factory.mktemp("run3")
    manifest.save(root / "cohort" / "manifest.parquet")
    settings = LearnSettings(features=["clinical"], models=[{"name": "lr", "grid": {}}], search={"inner_splits": 3},
                             schemes=["holdout"])
    with pytest.warns(UserWarning, match="separates the classes almost perfectly"):
        run_learn_stage(None, manifest, settings, root / "learn" / "clinical", clinical=True,
                        models_dir=root / "models")
    return manifest, root


def test_clinical_section_of_three_classes_compares_the_three_classes(three_class_run):
    manifest, root = three_class_run
    sec = clinical_tables_section(ReportContext.from_run(RunFolder(root)))
    blocks = {b.name: b for b in sec.all_blocks() if hasattr(b, "data")}
    baseline = blocks["baseline_by_label"]
    assert all(c in baseline.data.columns for c in CLASSES) and ", ".join(CLASSES) in baseline.caption
    table = manifest.table
    by_class = [table.loc[table["label"] == k] for k in range(3)]
    p = baseline.data.dropna(subset=["p"]).set_index("variable")
    for v in ("Ki67", "Age"):
        samples = [pd.to_numeric(d[v]).dropna().to_numpy(dtype=float) for d in by_class]
        ref = (stats.kruskal(*samples) if p.loc[v, "test"] == "Kruskal-Wallis"
               else stats.f_oneway(*samples, equal_var=False))
        assert p.loc[v, "test"] in ("Kruskal-Wallis", "Welch ANOVA")
        assert p.loc[v, "p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert p.loc["Grade", "p"] == pytest.approx(stats.chi2_contingency(
        pd.crosstab(table["Grade"], table["label"]).to_numpy(), correction=False).pvalue, rel=1e-9)
    assert p.loc["Grade", "test"].startswith("chi-square")
    # relative risk ratios, not binary odds ratios; the saturated Grade model gives the table's cross-products
    assert "odds_ratios_univariable" not in blocks and "relative risk ratios" in sec.title
    rrr = blocks["relative_risk_ratios_univariable"].data
    assert set(rrr["class"]) == {"HER2-low", "HER2-positive"} and set(rrr["reference_class"]) == {"HER2-zero"}
    train = table[(table["split"] == "train") & table["Ki67"].notna()]
    n = pd.crosstab(train["Grade"], train["label"])
    got = rrr[(rrr["variable"] == "Grade") & (rrr["level"] == "2")].set_index("class")["RRR"]
    for k, cls in ((1, "HER2-low"), (2, "HER2-positive")):
        assert got[cls] == pytest.approx(n.loc["2", k] * n.loc["1", 0] / (n.loc["1", k] * n.loc["2", 0]), rel=1e-5)
    shown = blocks["relative_risk_ratios_univariable"].display
    assert "HER2-positive vs HER2-zero: RRR (95% CI)" in shown.columns
    # Ki67 separates the classes (the cohort's signal): no meaningless interval, its likelihood-ratio p stays
    ki67_row = shown[shown["Variable"] == "Ki67"].iloc[0]
    assert ki67_row["HER2-positive vs HER2-zero: RRR (95% CI)"] == "not estimable (separation)"
    assert ki67_row["p (variable)"] == "<0.001"
    # the label-proxy check names the class each column was scored against
    proxies = blocks["label_proxies"]
    ki67 = proxies.data.set_index("column").loc["Ki67", "vs_rest"]
    shown = proxies.display.set_index("Column")["Class vs rest"]
    assert shown["Ki67"] == f"{CLASSES[int(ki67)]} vs rest"


def test_three_class_model_card_counts_its_training_classes(three_class_run):
    manifest, root = three_class_run
    training = load_artefact(root / "models" / "clinical-lr").card["training"]
    rows = manifest.table[manifest.table["split"] == "train"]
    assert training["class_counts"] == {c: int((rows["label"] == k).sum()) for k, c in enumerate(CLASSES)}
    assert "n_positive" not in training and training["n_cases"] == len(rows)
