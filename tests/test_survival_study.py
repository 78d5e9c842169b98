"""The survival stage driven by a study file: manifest in, tables and figures in <run>/survival."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from her2dlr.cli import app
from her2dlr.survival import logrank_test

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "survival"
runner = CliRunner()


def test_study_driven_survival_run(tmp_path: Path):
    gbsg = pd.read_csv(FIXTURES / "gbsg2.csv").iloc[:240].copy()
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(len(gbsg)):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(img_dir / f"p{i}.png")
        mask = np.zeros((24, 24), np.uint8)
        mask[6:18, 6:18] = 255
        Image.fromarray(mask).save(img_dir / f"p{i}_m.png")
    gbsg["image"] = [f"p{i}.png" for i in range(len(gbsg))]
    gbsg["mask"] = [f"p{i}_m.png" for i in range(len(gbsg))]
    gbsg["grade3"] = (gbsg["tgrade"] == "III").astype(int)
    gbsg.to_csv(tmp_path / "cohort.csv", index=False)
    study = {
        "name": "prognosis",
        "cohort": {"sources": [{
            "kind": "table", "path": "cohort.csv", "image_root": "img", "image_column": "image", "mask_column": "mask",
            "clinical_columns": ["age", "tsize", "pnodes", "menostat"], "label_columns": ["grade3"],
            "time_column": "time", "event_column": "cens", "treatment_column": "horTh",
        }]},
        "label": {"rule": "column", "column": "grade3"},
        "split": {"kfold": None},
        "survival": {"time_column": "time", "event_column": "event", "time_unit": "days",
                     "group_columns": ["treatment"], "covariates": ["age", "tsize", "pnodes"],
                     "n_bootstrap": 50},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    res = runner.invoke(app, ["cohort", "build", str(path), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["survival", "run", str(path)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "prognosis" / "survival"
    assert (out / "summary.txt").exists()
    tables = list(out.rglob("*.csv"))
    figures = list(out.rglob("*.png"))
    assert tables and figures
    # the stage's log-rank equals a direct call on the same rows
    direct = logrank_test(gbsg.rename(columns={"cens": "event", "horTh": "treatment"}), "time", "event", "treatment")
    logrank_tables = [p for p in tables if "logrank" in p.name]
    assert logrank_tables, [p.name for p in tables]
    text = " ".join(p.read_text() for p in logrank_tables)
    assert f"{direct.test_statistic:.4f}"[:6] in text
