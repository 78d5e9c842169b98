"""A deployed model extracts a new image on its training pixel grid, as its training table was extracted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def _disc(folder: Path, name: str, radius_px: float, size: int, seed: int) -> tuple[str, str]:
    """A speckled disc (brighter for odd seeds) on a dark background, as PNG image + mask."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= radius_px**2
    rng = np.random.default_rng(seed)
    level = 170 if seed % 2 else 120
    img = np.clip(np.where(inside, level, 40) + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(folder / f"{name}.png")
    Image.fromarray(inside.astype(np.uint8) * 255).save(folder / f"{name}_mask.png")
    return f"{name}.png", f"{name}_mask.png"


def test_prediction_resamples_a_new_image_to_the_training_pixel_size(tmp_path: Path):
    """The test centre's images (0.05 mm) were resampled to the training 0.1 mm by the radiomics stage;
    the saved model, given one of them with its pixel size, computes the same features."""
    from her2dlr.cohort.build import build_cohort, manifest_path
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.config import study_from_dict
    from her2dlr.learn.artefact import list_artefacts, load_artefact
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.study import run_study_learning
    from her2dlr.predict.inputs import case_inputs
    from her2dlr.radiomics.settings import RadiomicsSettings
    from her2dlr.radiomics.stage import run_radiomics_stage

    src = tmp_path / "data"
    src.mkdir()
    records = []
    for k in range(12):
        test = k >= 10
        image, mask = _disc(src, f"c{k}", (20 if test else 10) + k % 3, 96 if test else 48, seed=k)
        records.append({"image": image, "mask": mask, "y": "pos" if k % 2 else "neg",
                        "site": "B" if test else "A", "px": 0.05 if test else 0.1})
    pd.DataFrame(records).to_csv(src / "table.csv", index=False)
    study = study_from_dict({
        "name": "px", "output_dir": str(tmp_path / "run"),
        "cohort": {"sources": [{"kind": "table", "path": str(src / "table.csv"), "image_root": str(src),
                                "image_column": "image", "mask_column": "mask", "centre_column": "site",
                                "spacing_column": "px", "label_columns": ["y"]}]},
        "label": {"rule": "column", "column": "y", "positive": ["pos"], "negative": ["neg"]},
        "split": {"by_centre": {"test_centres": ["B"]}, "kfold": None},
    }, base_dir=tmp_path)
    build_cohort(study, n_jobs=1, progress=False)
    res = run_radiomics_stage(study, RadiomicsSettings(params="us2d_original", n_jobs=1), progress=False)
    assert res.pixel_size is not None and res.pixel_size.target_mm == 0.1 and res.pixel_size.n_resampled == 2
    study.learn = LearnSettings(features=[res.path.stem], models=[{"name": "lr", "grid": {}}], schemes=["holdout"],
                                selection=[{"name": "variance"}, {"name": "zscore"}],
                                search={"inner_splits": 2})
    run_study_learning(study, progress=False)
    artefact = load_artefact(study.paths.models / list_artefacts(study.paths.models)["folder"].iloc[0])
    assert artefact.feature_tables[0]["pixel_size"]["target_mm"] == 0.1

    table = pd.read_parquet(res.path)
    table = table.set_index("case_id") if "case_id" in table.columns else table
    manifest = Manifest.load(manifest_path(study)).table.set_index("case_id")
    test_case = next(c for c in manifest.index if str(manifest.loc[c, "image"]).endswith("c10.png"))
    assert manifest.loc[test_case, "split"] == "test"
    k = 10
    record: dict = {}
    row = case_inputs(artefact, case_id="new", image=src / f"c{k}.png", mask=src / f"c{k}_mask.png", spacing=0.05,
                      record=record)
    assert record["resampled"] and record["pixel_size_mm"] == 0.1
    cols = artefact.feature_columns
    np.testing.assert_allclose(row[cols].to_numpy(float)[0], table.loc[test_case, cols].to_numpy(float), rtol=1e-9)
    # given as a 0.1 mm image it is not resampled, and its size features double in area (2x the pixel width)
    plain = case_inputs(artefact, case_id="new", image=src / f"c{k}.png", mask=src / f"c{k}_mask.png", spacing=0.1)
    area = "original_shape2D_PixelSurface"
    if area in cols:
        assert plain[area].iloc[0] > 3 * row[area].iloc[0]
