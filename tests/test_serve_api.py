"""`her2dlr serve`'s API through the ASGI test client: the same answers as `her2dlr.predict.predict`, refused inputs,
token, limits, de-identification and temporary files."""

from __future__ import annotations

import base64
import io
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import lesion_image, lesion_mask, write_png
from her2dlr.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

fastapi = pytest.importorskip("fastapi", reason="the server needs fastapi (pip install -e .)")
from fastapi.testclient import TestClient  # noqa: E402

from her2dlr.serve import ServeSettings, create_app  # noqa: E402

DEEP = "deep_densenet3block-signature"
AUTO = "deep_densenet3block-auto"
CLIN = "clinical-lr"
SECRET_NAME = "Doe^Jane^Secretname"


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


@pytest.fixture(scope="module")
def client(serve_models: Path) -> TestClient:
    return TestClient(create_app(ServeSettings(serve_models)))


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("case")
    img, mask = lesion_image(321, texture="rough"), lesion_mask()
    return {"image": write_png(folder / "case.png", img), "mask": write_png(folder / "case_mask.png", mask),
            "png": _png(img), "mask_png": _png(mask), "box": _box(mask), "shape": img.shape}


def test_health_and_models_list_cards_and_clinical_fields(client: TestClient):
    health = client.get("/api/health")
    assert health.status_code == 200 and health.json()["models"] == 3
    assert "not for diagnosis" in health.json()["notice"]
    models = {m["id"]: m for m in client.get("/api/models").json()}
    assert set(models) == {DEEP, AUTO, CLIN}
    deep = models[DEEP]
    assert deep["kind"] == "deep" and deep["heat_map"] and not deep["segmentation"]
    assert deep["inputs"]["lesion"] == "mask or box" and deep["inputs"]["image_spec"]["arch"] == "densenet3block"
    assert models[AUTO]["segmentation"] and models[AUTO]["inputs"]["lesion"] == "automatic"
    fields = {f["name"]: f for f in models[CLIN]["inputs"]["clinical"]}
    # the drop-down's levels are the ones the fitted encoder saw in training
    assert sorted(fields["Shape"]["levels"]) == ["irregular", "oval", "round"]
    assert fields["Age"]["type"] == "numeric" and fields["Age"]["unit"] == "years"
    low, high = fields["Age"]["range"]
    assert 20 < low < 55 < high < 90
    # training cases per class: negatives / positives of the two-class card; the network's card records none
    trained = client.get(f"/api/models/{CLIN}").json()["card"]["training"]
    assert models[CLIN]["training"]["counts"] == {"negative": trained["n_cases"] - trained["n_positive"],
                                                  "positive": trained["n_positive"]}
    assert 0 < trained["n_positive"] < trained["n_cases"] and models[DEEP]["training"]["counts"] is None
    one = client.get(f"/api/models/{CLIN}").json()
    assert one["card"]["name"] == CLIN and one["threshold"]["value"] == pytest.approx(one["card"]["threshold"]["value"])


def test_predict_gives_the_entry_points_answer_and_a_heat_map(client: TestClient, case: dict, serve_models: Path,
                                                              tmp_path: Path):
    from her2dlr.predict import Case, predict

    box = ",".join(map(str, case["box"]))
    r = client.post(f"/api/models/{DEEP}/predict", files={"image": ("anything.png", case["png"], "image/png")},
                    data={"box": box})
    assert r.status_code == 200, r.text
    got = r.json()
    want = predict(serve_models / DEEP, Case(image=case["image"], box=case["box"]), heat_maps=tmp_path / "h.png",
                   progress=False)[0]
    assert got["probability"] == pytest.approx(want.probability, abs=1e-9)
    assert got["predicted_class"] == want.predicted_class and got["threshold"] == pytest.approx(want.threshold)
    assert got["provenance"]["lesion"] == "box" and "artefact" not in got["provenance"]
    heat = Image.open(io.BytesIO(base64.b64decode(got["heat_map"]["png_base64"])))
    assert heat.format == "PNG" and heat.size[0] >= case["shape"][1] and heat.size[1] > case["shape"][0]  # + caption, bar
    assert f"{want.probability:.3f}" in heat.text["Caption"]
    assert np.array_equal(np.asarray(heat), np.asarray(Image.open(tmp_path / "h.png")))
    assert got["heat_map"]["lesion_share"] == pytest.approx(want.heat_map.lesion_share)
    by_mask = client.post(f"/api/models/{DEEP}/predict", data={"heat_map": "false"},
                          files={"image": ("a.png", case["png"], "image/png"),
                                 "mask": ("m.png", case["mask_png"], "image/png")}).json()
    assert by_mask["probability"] == pytest.approx(got["probability"], abs=1e-9) and by_mask["heat_map"] is None


def test_jpeg_is_read_by_content_whatever_its_name(client: TestClient, case: dict, serve_models: Path, tmp_path: Path):
    from her2dlr.predict import Case, predict

    buf = io.BytesIO()
    Image.open(case["image"]).save(buf, format="JPEG", quality=95)
    path = tmp_path / "case.jpg"
    path.write_bytes(buf.getvalue())
    r = client.post(f"/api/models/{DEEP}/predict", files={"image": ("scan.png", buf.getvalue(), "image/png")},
                    data={"box": ",".join(map(str, case["box"])), "heat_map": "false"})
    assert r.status_code == 200, r.text
    assert r.json()["image"]["kind"] == "jpeg"
    want = predict(serve_models / DEEP, Case(image=path, box=case["box"]), progress=False)[0]
    assert r.json()["probability"] == pytest.approx(want.probability, abs=1e-9)


def test_clinical_model_from_json_values_and_its_refusals(client: TestClient, serve_models: Path):
    from her2dlr.predict import Case, predict

    values = {"Age": 61, "Shape": "irregular"}
    r = client.post(f"/api/models/{CLIN}/predict", data={"clinical": json.dumps(values)})
    assert r.status_code == 200, r.text
    want = predict(serve_models / CLIN, Case(clinical=values), progress=False)[0]
    assert r.json()["probability"] == pytest.approx(want.probability, abs=1e-12)
    assert r.json()["heat_map"] is None
    oval = client.post(f"/api/models/{CLIN}/predict", data={"clinical": json.dumps({**values, "Shape": "oval"})}).json()
    assert oval["probability"] < r.json()["probability"]  # the synthetic truth: irregular raises the odds
    missing = client.post(f"/api/models/{CLIN}/predict", data={"clinical": json.dumps({"Age": 61})})
    assert missing.status_code == 400 and missing.json()["field"] == "clinical" and "Shape" in missing.json()["detail"]
    unknown = client.post(f"/api/models/{CLIN}/predict", data={"clinical": json.dumps({**values, "Shap": "oval"})})
    assert unknown.status_code == 422 and "Did you mean 'Shape'" in unknown.json()["detail"]
    text_age = client.post(f"/api/models/{CLIN}/predict", data={"clinical": json.dumps({**values, "Age": "old"})})
    assert text_age.status_code == 422 and "'Age' is numeric" in text_age.json()["detail"]


@pytest.mark.parametrize(("files", "data", "status", "field", "words"), [
    ({"image": ("x.png", b"just some text, not an image" * 4, "image/png")}, {"box": "1,1,5,5"}, 415, "image", "unknown type"),
    ({"image": ("x.png", b"GIF89a" + b"\x00" * 64, "image/png")}, {"box": "1,1,5,5"}, 415, "image", "expected PNG"),
    ({"image": ("x.png", b"", "image/png")}, {}, 400, "image", "empty"),
    ({"image": ("x.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png")}, {"box": "1,1,5,5"}, 400, "image",
     "cannot be decoded"),
    (None, {"box": "10,10,20"}, 422, "box", "box"),
    (None, {"box": "70,90,20,20"}, 422, "box", "inside the image"),
    (None, {}, 400, "mask", "--mask or --box"),
    (None, {"box": "10,10,20,20", "method": "saliency"}, 422, "method", "gradcampp"),
    (None, {"box": "10,10,20,20", "spacing": "-1"}, 422, "spacing", "(0, 10]"),
    (None, {"box": "10,10,20,20", "patient_name": "x"}, 422, "patient_name", "Unknown field"),
])
def test_bad_requests_get_a_4xx_naming_the_field(client: TestClient, case: dict, files, data, status, field, words):
    files = files or {"image": ("a.png", case["png"], "image/png")}
    r = client.post(f"/api/models/{DEEP}/predict", files=files, data=data)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and words in r.json()["detail"]


def test_unknown_model_and_route_and_a_mask_of_another_size(client: TestClient, case: dict):
    r = client.get(f"/api/models/{DEEP[:-2]}")
    assert r.status_code == 404 and r.json()["field"] == "model" and f"Did you mean '{DEEP}'" in r.json()["detail"]
    assert client.get("/api/nothing").status_code == 404
    r = client.post(f"/api/models/{DEEP}/predict", files={"image": ("a.png", case["png"], "image/png"),
                                                          "mask": ("m.png", _png(np.zeros((8, 8), np.uint8)), "image/png")})
    assert r.status_code == 422 and r.json()["field"] == "mask"


def test_upload_size_and_pixel_limits_refuse_before_decoding(serve_models: Path, case: dict):
    import struct
    import zlib

    small = TestClient(create_app(ServeSettings(serve_models, max_upload_mb=0.001)))
    r = small.post(f"/api/models/{DEEP}/predict", files={"image": ("a.png", case["png"], "image/png")})
    assert r.status_code == 413 and r.json()["field"] in ("image", "body")
    few = TestClient(create_app(ServeSettings(serve_models, max_pixels=1000)))
    r = few.post(f"/api/models/{DEEP}/predict", files={"image": ("a.png", case["png"], "image/png")}, data={"box": "1,1,5,5"})
    assert r.status_code == 413 and "7,680 pixels" not in r.json()["detail"] and "80 x 96" in r.json()["detail"]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    # a 1-kB file that declares 60000 x 60000 pixels: refused from its header
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 2000)) + chunk(b"IEND", b""))
    r = TestClient(create_app(ServeSettings(serve_models))).post(
        f"/api/models/{DEEP}/predict", files={"image": ("a.png", bomb, "image/png")}, data={"box": "1,1,5,5"})
    assert r.status_code == 413 and "60000 x 60000" in r.json()["detail"]


def test_token_is_required_off_loopback_and_checked_on_every_api_call(serve_models: Path):
    with pytest.raises(InputError, match="needs a token"):
        create_app(ServeSettings(serve_models, host="0.0.0.0"))
    with pytest.raises(InputError, match="at least 16"):
        create_app(ServeSettings(serve_models, host="0.0.0.0", token="short"))
    token = "t0ken-of-the-test-suite"
    client = TestClient(create_app(ServeSettings(serve_models, host="0.0.0.0", token=token)))
    for path in ("/api/health", "/api/models", f"/api/models/{DEEP}"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong-token-of-same-len"}).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    r = client.post(f"/api/models/{DEEP}/predict", data={"box": "1,1,2,2"})
    assert r.status_code == 401 and r.json()["field"] == "token" and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/").status_code == 200  # the page itself asks for the token


def test_cors_is_off_and_security_headers_are_set(client: TestClient, serve_models: Path):
    r = client.get("/api/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff" and "frame-ancestors 'none'" in r.headers["content-security-policy"]
    pre = client.options(f"/api/models/{DEEP}/predict", headers={"Origin": "http://evil.example",
                                                                 "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers and pre.status_code >= 400
    allowed = TestClient(create_app(ServeSettings(serve_models, cors_origins=["http://ward.example"])))
    r = allowed.get("/api/health", headers={"Origin": "http://ward.example"})
    assert r.headers["access-control-allow-origin"] == "http://ward.example"


def test_busy_server_answers_503_with_retry_after(serve_models: Path, case: dict):
    app = create_app(ServeSettings(serve_models, max_concurrent=1))
    client = TestClient(app)
    files = {"image": ("a.png", case["png"], "image/png")}
    data = {"box": ",".join(map(str, case["box"])), "heat_map": "false"}
    slots = app.state.slots
    assert slots.acquire(blocking=False)  # another prediction holds the only slot
    try:
        r = client.post(f"/api/models/{DEEP}/predict", files=files, data=data)
        assert r.status_code == 503 and r.headers["retry-after"] == "2" and "retry" in r.json()["detail"]
    finally:
        slots.release()
    assert client.post(f"/api/models/{DEEP}/predict", files=files, data=data).status_code == 200


def test_segmentation_endpoint_returns_the_automatic_mask(client: TestClient, case: dict, serve_models: Path):
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict.segmenter import automatic_mask

    r = client.post(f"/api/models/{AUTO}/segment", files={"image": ("a.png", case["png"], "image/png")})
    assert r.status_code == 200, r.text
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["mask_png_base64"])))) > 0
    want, info = automatic_mask(load_artefact(serve_models / AUTO), case["image"])
    assert np.array_equal(mask, want) and mask.any()
    assert r.json()["confidence"] == pytest.approx(info["confidence"])
    no_seg = client.post(f"/api/models/{DEEP}/segment", files={"image": ("a.png", case["png"], "image/png")})
    assert no_seg.status_code == 400 and no_seg.json()["field"] == "model" and AUTO in no_seg.json()["detail"]
    # the automatic model predicts from the image alone
    auto = client.post(f"/api/models/{AUTO}/predict", files={"image": ("a.png", case["png"], "image/png")})
    assert auto.status_code == 200 and auto.json()["provenance"]["lesion"] == "automatic"


def _identified_dicom(tmp_path: Path) -> bytes:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = SECRET_NAME
    ds.PatientID = "PID-99887766"
    ds.InstitutionName = "Secret Hospital of Somewhere"
    ds.ReferringPhysicianName = "Dr^Whoknows"
    ds.PatientBirthDate = "Born1970x"  # not a valid DA: pydicom's warnings would quote it
    ds.add_new(0x00091001, "LO", "private secret value")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_dicom_is_deidentified_before_use_and_nothing_leaks(client: TestClient, tmp_path: Path, caplog,
                                                            monkeypatch: pytest.MonkeyPatch):
    import pydicom

    from her2dlr.serve.deidentify import deidentify_dataset

    data = _identified_dicom(tmp_path)
    ds = pydicom.dcmread(io.BytesIO(data))
    pixels = ds.pixel_array.copy()
    report = deidentify_dataset(ds)
    assert report.removed >= 5 and report.replaced_uids >= 3
    assert "PatientName" not in ds and "PatientID" not in ds and "InstitutionName" not in ds
    assert not any(e.VR == "PN" or e.tag.is_private for e in ds.iterall())
    assert np.array_equal(ds.pixel_array, pixels)

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    caplog.set_level(logging.DEBUG)
    box = "40,40,40,40"
    answers = [client.post("/api/preview", files={"image": ("Doe_Jane.dcm", data, "application/dicom")}),
               client.post(f"/api/models/{DEEP}/predict", files={"image": ("Doe_Jane.dcm", data, "application/dicom")},
                           data={"box": box}),
               client.post(f"/api/models/{DEEP}/predict", files={"image": ("Doe_Jane.dcm", data, "application/dicom")})]
    assert [a.status_code for a in answers] == [200, 200, 400]  # the last one lacks the lesion
    assert answers[1].json()["image"]["deidentified"]["removed_elements"] >= 5
    preview = np.asarray(Image.open(io.BytesIO(base64.b64decode(answers[0].json()["png_base64"]))))
    assert preview.shape == pixels.shape
    for secret in ("Secretname", "99887766", "Secret Hospital", "Whoknows", "private secret", "Doe_Jane", "Born1970"):
        assert all(secret not in a.text for a in answers)
        assert secret not in caplog.text
    assert list(temp.iterdir()) == []  # every request's temporary folder is gone, after success and error


def test_an_unexpected_error_is_a_500_without_its_text(client: TestClient, case: dict, monkeypatch: pytest.MonkeyPatch):
    import her2dlr.predict

    def broken(*args, **kwargs):
        raise RuntimeError("/secret/path/of/the/server")

    monkeypatch.setattr(her2dlr.predict, "predict", broken)
    r = client.post(f"/api/models/{DEEP}/predict", files={"image": ("a.png", case["png"], "image/png")},
                    data={"box": "10,10,20,20"})
    assert r.status_code == 500 and "secret" not in r.text and r.json()["field"] is None


def test_serve_command_refuses_an_open_host_without_token(serve_models: Path, monkeypatch: pytest.MonkeyPatch):
    from typer.testing import CliRunner

    from her2dlr.cli import app

    monkeypatch.delenv("HER2DLR_TOKEN", raising=False)
    res = CliRunner().invoke(app, ["serve", str(serve_models), "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "needs a token" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["serve", str(serve_models.parent / "nowhere")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_study_units_reach_the_card_and_the_models_endpoint(tmp_path: Path):
    import pandas as pd

    from her2dlr.cohort.manifest import Manifest
    from her2dlr.cohort.splits import repeated_group_kfold
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.stage import run_learn_stage

    rng = np.random.default_rng(3)
    n = 60
    size = rng.gamma(4.0, 5.0, n).round(1)
    y = (rng.random(n) < 1 / (1 + np.exp(-(size - 20) / 5))).astype(int)
    ids = [f"c{i:02d}" for i in range(n)]
    table = pd.DataFrame({"case_id": ids, "patient_id": ids, "image": "x.png", "label": y, "Size": size,
                          "Age": rng.normal(55, 9, n).round(), "Shape": rng.choice(["oval", "irregular"], n),
                          "fold_r0": repeated_group_kfold(y, np.asarray(ids), 3, 1, 0)[0]})
    types = {"Size": "numeric", "Age": "numeric", "Shape": "categorical"}
    manifest = Manifest(table, clinical_columns=list(types), clinical_types=types)
    # the study file's learn: section, as YAML gives it
    learn = {"models": [{"name": "lr", "grid": {}}], "schemes": ["kfold"], "search": {"inner_splits": 2},
             "clinical": {"units": {"Size": "mm", "Age": "years"}}}
    run_learn_stage(None, manifest, LearnSettings.model_validate(learn), tmp_path / "learn", clinical=True,
                    models_dir=tmp_path / "models")
    card = load_artefact(tmp_path / "models" / "clinical-lr").card
    assert card["inputs"]["units"] == {"Size": "mm", "Age": "years"}
    listed = TestClient(create_app(ServeSettings(tmp_path / "models"))).get("/api/models").json()
    fields = {f["name"]: f for f in listed[0]["inputs"]["clinical"]}
    assert fields["Size"]["unit"] == "mm" and fields["Age"]["unit"] == "years" and "unit" not in fields["Shape"]
    wrong = {**learn, "clinical": {"units": {"Sise": "mm"}}}
    with pytest.raises(InputError, match=r"learn.clinical.units: 'Sise' is not a clinical column.*Did you mean 'Size'"):
        run_learn_stage(None, manifest, LearnSettings.model_validate(wrong), tmp_path / "learn2", clinical=True)
