"""Model artefacts written by version 0.1.0 (before the prediction entry point and the module moves) still
load and predict the same.

``tests/fixtures/artefacts_v0.1`` holds artefacts saved by that version on synthetic lesions (a radiomics
model and the seed-000 network's signature) and on the embedded BrEaST sample (a clinical model, whose
pickle names the old ``her2dlr.learn.clinical_stats``), with the predictions that version made.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from her2dlr.learn.artefact import load_artefact
from her2dlr.predict import Case, predict

FIXTURES = Path(__file__).parent / "fixtures" / "artefacts_v0.1"


@pytest.mark.parametrize("model", ["radiomics_video_mask-lr", "deep_densenet3block-signature"])
def test_image_models_from_before_predict_the_same(model: str):
    expected = pd.read_csv(FIXTURES / "expected_predictions.csv")
    expected = expected[expected["model"] == model].set_index("case_id")
    cases = [Case(case_id=cid, image=FIXTURES / f"{cid}.png", mask=FIXTURES / "case_mask.png") for cid in expected.index]
    results = predict(FIXTURES / model, cases, progress=False)
    for r in results:
        want = expected.loc[r.case_id]
        assert r.probability == pytest.approx(want["prob"], abs=1e-6)
        assert (r.predicted_class, r.threshold) == (int(want["class"]), pytest.approx(want["threshold"], abs=1e-9))


def test_clinical_model_pickled_before_the_move_loads_and_predicts_the_same():
    art = load_artefact(FIXTURES / "clinical-lr")
    table = pd.read_csv(FIXTURES / "clinical_cases.csv", dtype={"case_id": str})
    expected = pd.read_csv(FIXTURES / "expected_clinical_predictions.csv", dtype={"case_id": str}).set_index("case_id")
    cases = [Case(case_id=row["case_id"], clinical={k: row[k] for k in art.clinical_types})
             for row in table.to_dict(orient="records")]
    for r in predict(art, cases, progress=False):
        assert r.probability == pytest.approx(expected.loc[r.case_id, "prob"], abs=1e-9)
        assert r.predicted_class == int(expected.loc[r.case_id, "class"])
