"""``her2dlr bench bad-inputs``: a catalogue of bad inputs run as a user would, each outcome classified.

Every entry runs the real command line in a fresh process (so an abort inside a C library is
seen as the crash it is) against a small study on the embedded BrEaST-Lesions-USG sample, and
is classified:

``clear``      the expected refusal (exit 2 with an ``Error:`` line) or the expected warning
               (``Warning:`` in the output next to the answer);
``silent``     an answer was printed where a refusal or a warning was due (a silently wrong answer);
``traceback``  a Python traceback reached the user;
``crash``      the process died without a Python message (a signal, e.g. exit 134);
``unclear``    it failed without a message.

The summary lines count each class; ``silent``, ``traceback`` and ``crash`` must be 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from her2dlr.bench import BenchOptions, register, result

__all__ = ["Entry", "classify"]

#: First-order and 2D shape features (shape is in mm: the model depends on the pixel spacing).
_PARAMS = {"setting": {"binWidth": 5.0, "label": 1}, "imageType": {"Original": {}},
           "featureClass": {"firstorder": None, "shape2D": None}}


@dataclass
class Entry:
    """One bad input: how to make it (``make(work) -> argv``) and what a user must get (``refuse`` or ``warn``)."""

    name: str
    expect: str
    make: Callable[[Path], list[str]]


def classify(expect: str, returncode: int, output: str) -> str:
    """The outcome class of one run (module docstring)."""
    if returncode < 0 or returncode in (134, 136, 137, 139):
        return "crash"
    if "Traceback (most recent call last)" in output:
        return "traceback"
    if returncode == 0:
        return "clear" if expect == "warn" and "Warning:" in output else "silent"
    return "clear" if "Error:" in output else "unclear"


# ------------------------------------------------------------------------------ the study
def _setup(work: Path) -> dict[str, Path]:
    """Train the catalogue's models on the embedded BrEaST sample (radiomics in mm + clinical)."""
    from her2dlr.cohort.build import build_cohort
    from her2dlr.config import load_study
    from her2dlr.demo import BREAST_CLINICAL, demo_data_dir
    from her2dlr.learn.study import run_study_learning
    from her2dlr.radiomics.stage import run_radiomics_stage

    data = demo_data_dir() / "breast"
    (work / "params.yaml").write_text(yaml.safe_dump(_PARAMS))
    raw = {
        "name": "bad", "output_dir": str(work / "run"),
        "cohort": {"sources": [{"kind": "table", "path": str(data / "clinical.csv"), "image_root": str(data / "images"),
                                "image_column": "Image_filename", "mask_column": "Mask_tumor_filename",
                                "spacing_column": "Pixel_size", "spacing_unit": "cm",
                                "clinical_columns": BREAST_CLINICAL, "label_columns": ["Classification"]}]},
        "label": {"rule": "column", "column": "Classification", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 1, "holdout": {"test_size": 0.3}, "kfold": {"n_splits": 3, "n_repeats": 1}},
        "radiomics": {"params": str(work / "params.yaml"), "n_jobs": 1, "backend": "sequential"},
        "learn": {"features": ["radiomics_params_mask", "clinical"], "models": [{"name": "lr", "grid": {}}],
                  "selection": [{"name": "variance"}, {"name": "zscore"}], "schemes": ["holdout"],
                  "search": {"inner_splits": 3}},
    }
    study_file = work / "study.yaml"
    study_file.write_text(yaml.safe_dump(raw))
    study = load_study(study_file)
    build_cohort(study, n_jobs=1, progress=False)
    run_radiomics_stage(study, progress=False)
    run_study_learning(study, progress=False)
    models = work / "run" / "models"
    table = pd.read_csv(data / "clinical.csv")
    first = table.iloc[0]
    return {"study": study_file, "radiomics": models / "radiomics_params_mask-lr", "clinical": models / "clinical-lr",
            "features": work / "run" / "features" / "radiomics_params_mask.parquet",
            "image": data / "images" / str(first["Image_filename"]), "mask": data / "images" / str(first["Mask_tumor_filename"]),
            "spacing": Path(str(float(first["Pixel_size"]) * 10.0)), "table": data / "clinical.csv"}


def _copy_model(src: Path, work: Path, name: str, edit: Callable[[Path], None]) -> Path:
    out = work / name
    shutil.copytree(src, out)
    edit(out)
    return out


def _edit_card(change: Callable[[dict[str, Any]], Any], *, rehash: bool) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        from her2dlr.learn.artefact import write_checksums

        card = json.loads((folder / "model_card.json").read_text())
        out = change(card)
        (folder / "model_card.json").write_text(json.dumps(card if out is None else out))
        if rehash:
            write_checksums(folder)
    return edit


def _png(path: Path, arr: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(arr).save(path)
    return path


def _catalogue(f: dict[str, Path]) -> list[Entry]:
    rad, clin, img, mask, sp = str(f["radiomics"]), str(f["clinical"]), str(f["image"]), str(f["mask"]), str(f["spacing"])
    clinical = [f"--clinical={c}={v}" for c, v in _clinical_row(f).items()]

    def sixteen(work: Path) -> list[str]:
        from PIL import Image

        arr = np.asarray(Image.open(img).convert("L")).astype(np.uint16) * 257
        return ["predict", rad, "--image", str(_png(work / "x16.png", arr)), "--mask", mask, "--spacing", sp]

    def table(text: str, name: str) -> Callable[[Path], list[str]]:
        def make(work: Path) -> list[str]:
            (work / name).write_text(text, encoding="utf-8")
            return ["predict", rad, "--features", str(work / name)]
        return make

    def features(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], list[str]]:
        def make(work: Path) -> list[str]:
            df = change(pd.read_parquet(f["features"]).head(4).reset_index())
            df.to_csv(work / "rows.csv", index=False)
            return ["predict", rad, "--features", str(work / "rows.csv")]
        return make

    def non_utf8(work: Path) -> list[str]:
        target = os.fsdecode(os.fsencode(work) + b"/caf\xe9.png")
        shutil.copyfile(img, target)
        return ["predict", rad, "--image", target, "--mask", mask, "--spacing", sp]

    def model(name: str, edit: Callable[[Path], None], base: str = rad) -> Callable[[Path], list[str]]:
        return lambda work: ["predict", str(_copy_model(Path(base), work, name, edit)), "--features", str(f["features"])]

    def garbage(folder: Path) -> None:
        from her2dlr.learn.artefact import write_checksums

        (folder / "model.joblib").write_bytes(os.urandom(512))
        write_checksums(folder)

    def study(change: Callable[[dict[str, Any]], None], name: str) -> Callable[[Path], list[str]]:
        def make(work: Path) -> list[str]:
            raw = yaml.safe_load(f["study"].read_text())
            raw["output_dir"] = str(work / f"run-{name}")
            change(raw)
            (work / f"{name}.yaml").write_text(yaml.safe_dump(raw))
            return ["cohort", "build", str(work / f"{name}.yaml"), "--n-jobs", "1"]
        return make

    def source_table(transform: Callable[[pd.DataFrame, Path], Path]) -> Callable[[dict[str, Any]], None]:
        def change(raw: dict[str, Any]) -> None:
            src = raw["cohort"]["sources"][0]
            work = Path(raw["output_dir"]).parent
            src["path"] = str(transform(pd.read_csv(f["table"]), work))
        return change

    def text_ages(df: pd.DataFrame, work: Path) -> Path:
        df = df.astype({"Age": object})
        df.loc[df.index[::2], "Age"] = "about " + df.loc[df.index[::2], "Age"].astype(str)
        df.to_csv(work / "ages.csv", index=False)
        return work / "ages.csv"

    def header_only(df: pd.DataFrame, work: Path) -> Path:
        df.head(0).to_csv(work / "empty.csv", index=False)
        return work / "empty.csv"

    def bom(df: pd.DataFrame, work: Path) -> Path:
        df.to_csv(work / "bom.csv", index=False, encoding="utf-8-sig")
        return work / "bom.csv"

    def read_only_run(raw: dict[str, Any]) -> None:
        blocker = Path(raw["output_dir"]).parent / "a-file"
        blocker.write_text("not a folder")
        raw["output_dir"] = str(blocker / "run")

    return [
        Entry("image without the spacing the model computes in", "refuse",
              lambda w: ["predict", rad, "--image", img, "--mask", mask]),
        Entry("spacing far from training", "warn",
              lambda w: ["predict", rad, "--image", img, "--mask", mask, "--spacing", "1.0"]),
        Entry("16-bit PNG for an 8-bit model", "refuse", sixteen),
        Entry("threshold edited in the card", "refuse",
              model("edited", _edit_card(lambda c: c["threshold"].update(value=0.999), rehash=False))),
        Entry("card without kind", "refuse", model("nokind", _edit_card(lambda c: c.pop("kind") and None, rehash=True))),
        Entry("card that is a JSON list", "refuse", model("list", _edit_card(lambda c: [c], rehash=True))),
        Entry("garbage model.joblib", "refuse", model("garbage", garbage)),
        Entry("clinical entry removed from the card", "refuse",
              model("noclin", _edit_card(lambda c: c["inputs"]["clinical"].pop("Age") and None, rehash=True), base=clin)),
        Entry("unseen clinical level", "warn",
              lambda w: ["predict", clin, *[a for a in clinical if not a.startswith("--clinical=Shape=")],
                         "--clinical", "Shape=hexagonal"]),
        Entry("unknown --clinical column", "warn", lambda w: ["predict", clin, *clinical, "--clinical", "Shoe=42"]),
        Entry("missing clinical value", "warn",
              lambda w: ["predict", clin, *[a for a in clinical if not a.startswith("--clinical=Age=")], "--clinical", "Age="]),
        Entry("NaN and inf in a feature row", "warn",
              features(lambda d: d.assign(**{d.columns[1]: [np.nan, np.inf, 1.0, 2.0]}))),
        Entry("duplicate case ids in a feature table", "refuse", features(lambda d: pd.concat([d, d.head(2)]))),
        Entry("feature table without the model's columns", "refuse", features(lambda d: d[["case_id"]])),
        Entry("header-only feature table", "refuse", table("case_id,a,b\n", "header.csv")),
        Entry("non-UTF-8 file name", "refuse", non_utf8),
        Entry("missing image file", "refuse", lambda w: ["predict", rad, "--image", str(w / "nope.png"), "--mask", mask,
                                                         "--spacing", sp]),
        Entry("truncated PNG", "refuse", lambda w: ["predict", rad, "--image", str(_truncated(Path(img), w)), "--mask",
                                                    mask, "--spacing", sp]),
        Entry("mask of another size", "refuse", lambda w: ["predict", rad, "--image", img, "--mask",
                                                           str(_png(w / "small.png", np.ones((8, 8), np.uint8) * 255)),
                                                           "--spacing", sp]),
        Entry("empty mask", "refuse", lambda w: ["predict", rad, "--image", img, "--mask", str(_empty_mask(Path(mask), w)),
                                                 "--spacing", sp]),
        Entry("box for a mask model", "refuse", lambda w: ["predict", rad, "--image", img, "--box", "1,1,20,20"]),
        Entry("malformed box", "refuse", lambda w: ["predict", rad, "--image", img, "--box", "1,2,x"]),
        Entry("clinical value without =", "refuse", lambda w: ["predict", clin, "--clinical", "Age52"]),
        Entry("not a model folder", "refuse", lambda w: ["predict", str(w), "--features", str(f["features"])]),
        Entry("heat map from a radiomics model", "refuse",
              lambda w: ["predict", rad, "--image", img, "--mask", mask, "--spacing", sp, "--heatmap", str(w / "h.png")]),
        Entry("study file missing", "refuse", lambda w: ["cohort", "build", str(w / "none.yaml")]),
        Entry("study file with an unknown key", "refuse", study(lambda raw: raw.update(lable={}), "unknown-key")),
        Entry("numeric clinical column with text", "refuse",
              study(lambda raw: (source_table(text_ages)(raw), raw["cohort"]["sources"][0].update(
                  clinical_types={"Age": "numeric"})), "ages")),
        Entry("header-only cohort table", "refuse", study(source_table(header_only), "header-only")),
        Entry("byte-order mark in the cohort table", "warn-or-ok", study(source_table(bom), "bom")),
        Entry("run folder that cannot be written", "refuse", study(read_only_run, "read-only")),
        Entry("unknown benchmark", "refuse", lambda w: ["bench", "no-such-bench"]),
    ]


def _clinical_row(f: dict[str, Path]) -> dict[str, str]:
    from her2dlr.learn.artefact import load_artefact

    art = load_artefact(f["clinical"])
    row = pd.read_csv(f["table"]).iloc[0]
    return {c: str(row[c]) for c in art.clinical_types}


def _truncated(src: Path, work: Path) -> Path:
    out = work / "truncated.png"
    data = src.read_bytes()
    out.write_bytes(data[: len(data) // 3])
    return out


def _empty_mask(src: Path, work: Path) -> Path:
    from PIL import Image

    shape = np.asarray(Image.open(src)).shape[:2]
    return _png(work / "empty_mask.png", np.zeros(shape, np.uint8))


def _run(argv: list[str], cwd: Path) -> tuple[int, str]:
    code = "import sys; from her2dlr.cli import app; sys.argv[0] = 'her2dlr'; app()"
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**os.environ, "COLUMNS": "200"}, errors="replace")
    return proc.returncode, proc.stdout + proc.stderr


@register("bad-inputs", "A catalogue of bad inputs through the command line: silent wrong answers, crashes and "
                        "tracebacks (all must be 0)")
def bad_inputs(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(opts.work_dir or tmp) / "bad-inputs"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        files = _setup(work)
        counts = {"clear": 0, "silent": 0, "traceback": 0, "crash": 0, "unclear": 0}
        entries = _catalogue(files)
        for i, entry in enumerate(tqdm(entries, desc="bad inputs", leave=False)):
            case_dir = work / f"case{i:02d}"
            case_dir.mkdir()
            argv = entry.make(case_dir)
            code, output = _run(argv, case_dir)
            expect = "warn" if entry.expect == "warn-or-ok" else entry.expect
            outcome = classify(expect, code, output)
            if entry.expect == "warn-or-ok" and outcome == "silent":
                outcome = "clear"  # reading the table correctly is the right answer
            counts[outcome] += 1
            said = next((line.strip() for line in output.splitlines() if "Error:" in line or "Warning:" in line), "")
            yield result("bad-inputs", "case", int(outcome == "clear"), name=entry.name, expect=entry.expect,
                         outcome=outcome, exit_code=code, message=said[:300])
        for outcome, n in counts.items():
            yield result("bad-inputs", outcome if outcome != "silent" else "silent_wrong", n, n=len(entries))
