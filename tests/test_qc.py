"""Cohort QC: unreadable files, bad masks, colour images, lesion policies, duplicates, groups."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from her2dlr.cohort.duplicates import (
    connected_groups,
    fingerprint,
    hamming_pairs,
    overlap_correlation,
)
from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.qc import run_qc
from her2dlr.errors import InputError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SIZE = (128, 160)  # height, width


# --------------------------------------------------------------------------- helpers
def scan(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A smooth random 'ultrasound' picture (uint8) whose structure differs from seed to seed."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=size), sigma=6)
    field = (field - field.min()) / (np.ptp(field) + 1e-12)
    return (40 + 180 * field).astype(np.uint8)


def disk(size: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[: size[0], : size[1]]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2).astype(np.uint8) * 255


def save(path: Path, arr: np.ndarray, **kwargs) -> str:
    Image.fromarray(arr).save(path, **kwargs)
    return str(path)


def make_manifest(rows: list[dict]) -> Manifest:
    """A manifest with the core columns the importers write (masks as a JSON list)."""
    full = []
    for r in rows:
        row = {"patient_id": r["case_id"], "modality": "US", "mask": pd.NA, "bbox": pd.NA, **r}
        row["masks"] = json.dumps([str(m) for m in r.get("masks", [])])
        full.append(row)
    return Manifest(pd.DataFrame(full))


def one_case(tmp_path: Path, image: np.ndarray, masks: list[np.ndarray], **extra) -> Manifest:
    img = save(tmp_path / "case.png", image)
    paths = [save(tmp_path / f"case_mask_{k}.png", m) for k, m in enumerate(masks)]
    return make_manifest([{"case_id": "case", "image": img, "masks": paths, **extra}])


def qc(manifest: Manifest, tmp_path: Path, **kwargs):
    return run_qc(manifest, derived_mask_dir=tmp_path / "derived", progress=False, **kwargs)


def mask_pixels(path: str) -> int:
    return int((np.asarray(Image.open(path)) > 0).sum())


# --------------------------------------------------------------------------- file checks
def test_unreadable_image_is_excluded_naming_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png at all" * 10)
    res = qc(make_manifest([{"case_id": "broken", "image": str(bad)}]), tmp_path)
    row = res.table.iloc[0]
    assert not row["readable"] and not row["include"]
    assert str(bad) in row["exclude_reason"]
    assert res.summary["excluded_by_reason"] == {"image_unreadable": 1}
    assert res.manifest.table["group"].notna().all()


def test_mask_of_another_size_names_both_sizes(tmp_path):
    m = one_case(tmp_path, scan(1), [disk((100, 90), (50, 45), 20)])
    reason = qc(m, tmp_path).table.iloc[0]["exclude_reason"]
    assert "(90, 100)" in reason and "(160, 128)" in reason and "case_mask_0.png" in reason


def test_empty_mask_is_excluded(tmp_path):
    m = one_case(tmp_path, scan(1), [np.zeros(SIZE, np.uint8)])
    row = qc(m, tmp_path).table.iloc[0]
    assert not row["include"]
    assert "case_mask_0.png is empty" in row["exclude_reason"]


def test_mask_with_other_labels_names_the_values(tmp_path):
    labels = (disk(SIZE, (40, 40), 15) // 255) + 2 * (disk(SIZE, (90, 110), 15) // 255)  # 0, 1, 2
    res = qc(one_case(tmp_path, scan(1), [labels.astype(np.uint8)]), tmp_path)
    row = res.table.iloc[0]
    assert not row["include"]
    assert "has values 2" in row["exclude_reason"] and "0 and 1 or 0 and 255" in row["exclude_reason"]
    assert res.summary["excluded_by_reason"] == {"mask_values": 1}


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("RGBA", 4)])
def test_colour_images_are_converted_and_recorded(tmp_path, mode, channels):
    grey = scan(3)
    colour = np.asarray(Image.fromarray(grey).convert(mode))
    res = qc(one_case(tmp_path, colour, [disk(SIZE, (64, 80), 20)]), tmp_path)
    row = res.table.iloc[0]
    assert row["include"] and row["channels"] == channels
    assert res.summary["rgb_converted"] == 1
    assert res.manifest.table.loc[0, "channels"] == channels
    # the grey picture is the same as the grey file's, so it hashes alike
    assert res.manifest.table.loc[0, "phash"] == fingerprint(grey).phash_hex
    assert res.manifest.table.loc[0, "pixel_sha1"] == fingerprint(grey).sha1


def test_a_16_bit_image_among_8_bit_ones_is_excluded_naming_both_depths(tmp_path):
    rows = []
    for k in range(3):
        pixels = scan(10 + k).astype(np.uint16) * 257 if k == 2 else scan(10 + k)  # the same kind of picture, 16-bit
        rows.append({"case_id": f"c{k}", "image": save(tmp_path / f"c{k}.png", pixels),
                     "masks": [save(tmp_path / f"m{k}.png", disk(SIZE, (64, 80), 20))]})
    res = qc(make_manifest(rows), tmp_path)
    assert res.table["bits"].tolist() == [8, 8, 16]
    assert res.table["include"].tolist() == [True, True, False]
    assert "c2.png is 16-bit while 2 of the cohort's 3 images are 8-bit" in res.table.loc[2, "exclude_reason"]
    assert res.summary["excluded_by_reason"] == {"bit_depth": 1}


def test_bbox_without_mask_is_fine_and_bad_bbox_is_not(tmp_path):
    img = save(tmp_path / "a.png", scan(1))
    m = make_manifest([
        {"case_id": "box", "image": img, "bbox": "[10, 10, 30, 20]"},
        {"case_id": "outside", "image": img, "bbox": "[500, 500, 10, 10]", "patient_id": "p2"},
        {"case_id": "nothing", "image": img, "patient_id": "p3"},
    ])
    res = qc(m, tmp_path)
    assert res.table["include"].tolist() == [True, False, True]
    assert res.manifest.table["mask"].isna().all()
    assert res.summary["rows_without_roi"] == 1  # "nothing": whole-image models only
    assert "bbox" in res.table.loc[1, "exclude_reason"] and img in res.table.loc[1, "exclude_reason"]


def test_previously_excluded_rows_stay_excluded(tmp_path):
    m = one_case(tmp_path, scan(1), [disk(SIZE, (64, 80), 20)], include=False, exclude_reason="no HER2 result")
    res = qc(m, tmp_path)
    assert not res.table.loc[0, "include"]
    assert res.table.loc[0, "exclude_reason"] == "no HER2 result"
    assert res.summary["excluded_by_reason"] == {"excluded_before_qc": 1}


# --------------------------------------------------------------------------- lesion policies
BIG = disk(SIZE, (40, 50), 18)
SMALL = disk(SIZE, (95, 120), 8)
SPECK = disk(SIZE, (10, 150), 1)  # 5 pixels: not a lesion


def test_policy_largest_keeps_the_bigger_lesion(tmp_path):
    res = qc(one_case(tmp_path, scan(1), [BIG | SMALL | SPECK]), tmp_path, lesion_policy="largest")
    row = res.manifest.table.iloc[0]
    assert row["n_lesions"] == 2 and row["include"]
    assert Path(row["mask"]).parent == tmp_path / "derived"
    written = np.asarray(Image.open(row["mask"]))
    assert set(np.unique(written)) == {0, 255} and written.dtype == np.uint8
    assert mask_pixels(row["mask"]) == int((BIG > 0).sum())


def test_policy_union_keeps_both_and_reuses_an_unchanged_file(tmp_path):
    res = qc(one_case(tmp_path, scan(1), [BIG | SMALL]), tmp_path, lesion_policy="union")
    assert res.manifest.table.loc[0, "mask"] == str(tmp_path / "case_mask_0.png")  # nothing to resolve
    assert not (tmp_path / "derived").exists()

    sub = tmp_path / "two"
    sub.mkdir()
    res = qc(one_case(sub, scan(1), [BIG, SMALL]), sub, lesion_policy="union")
    row = res.manifest.table.iloc[0]
    assert row["n_lesions"] == 2 and Path(row["mask"]).parent == sub / "derived"
    assert mask_pixels(row["mask"]) == int((BIG > 0).sum() + (SMALL > 0).sum())
    assert res.summary["multi_lesion_rows"] == 1


def test_policy_each_makes_one_row_per_lesion(tmp_path):
    m = one_case(tmp_path, scan(1), [BIG | SMALL], label="malignant", patient_id="p1")
    res = qc(m, tmp_path, lesion_policy="each")
    t = res.manifest.table
    assert t["case_id"].tolist() == ["case#1", "case#2"]
    assert t["n_lesions"].tolist() == [2, 2] and pd.api.types.is_integer_dtype(t["n_lesions"])
    assert t["patient_id"].tolist() == ["p1", "p1"] and t["group"].nunique() == 1
    assert [mask_pixels(p) for p in t["mask"]] == [int((BIG > 0).sum()), int((SMALL > 0).sum())]
    assert len(res.table) == 1 and res.summary["n_output_rows"] == 2


def test_bad_lesion_policy_names_the_options():
    m = make_manifest([{"case_id": "a", "image": "a.png"}])
    with pytest.raises(InputError, match="Did you mean 'union'"):
        run_qc(m, lesion_policy="unoin", derived_mask_dir="unused", progress=False)


# --------------------------------------------------------------------------- duplicates and groups
def _variants(tmp_path: Path) -> dict[str, str]:
    base = scan(10)
    rng = np.random.default_rng(0)
    noisy = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(base).save(jpeg, format="JPEG", quality=70)
    texted = Image.fromarray(base)
    ImageDraw.Draw(texted).text((5, 5), "L UOQ 3cm", fill=255)
    return {
        "original": save(tmp_path / "original.png", base),
        "copy": save(tmp_path / "copy.png", base.copy()),
        "noisy": save(tmp_path / "noisy.png", noisy),
        "jpeg": save(tmp_path / "jpeg.png", np.asarray(Image.open(jpeg))),
        "text": save(tmp_path / "text.png", np.asarray(texted)),
        "other": save(tmp_path / "other.png", scan(11)),
    }


def test_exact_and_near_duplicates_are_grouped_and_a_different_image_is_not(tmp_path):
    files = _variants(tmp_path)
    labels = {"other": "benign", "copy": "malignant"}
    m = make_manifest([
        {"case_id": k, "image": v, "bbox": "[10, 10, 20, 20]", "label": labels.get(k, "benign")}
        for k, v in files.items()
    ])
    res = qc(m, tmp_path)
    t = res.table.set_index("case_id")
    same = ["original", "copy", "noisy", "jpeg", "text"]
    assert t.loc[same, "group"].nunique() == 1
    assert t.loc["other", "group"] != t.loc["original", "group"]
    assert t.loc["other", "group_size"] == 1 and pd.isna(t.loc["other", "near_dup_group"])
    assert t.loc["original", "exact_dup_group"] == t.loc["copy", "exact_dup_group"]
    assert pd.isna(t.loc["noisy", "exact_dup_group"])
    pairs = res.duplicate_pairs
    assert pairs[pairs["exact"]][["case_a", "case_b"]].values.tolist() == [["original", "copy"]]
    assert "other" not in set(pairs["case_a"]) | set(pairs["case_b"])
    # "copy" is the only malignant one: its 4 pairs are the cross-label pairs
    assert res.summary["cross_label_pairs"] == 4
    assert res.summary["exact_duplicate_groups"] == 1 and res.summary["near_duplicate_groups"] == 1
    assert res.summary["rows_in_duplicate_groups"] == 5


def test_shifted_crop_is_grouped_by_the_overlap_check(tmp_path):
    wide = scan(20, size=(160, 260))
    m = make_manifest([
        {"case_id": "wide", "image": save(tmp_path / "wide.png", wide)},
        {"case_id": "crop", "image": save(tmp_path / "crop.png", wide[5:155, 23:243])},  # odd offsets
    ])
    on = qc(m, tmp_path)
    off = qc(m, tmp_path, overlap_ncc=None)
    assert on.table["group"].nunique() == 1 and on.duplicate_pairs["method"].tolist() == ["overlap"]
    assert off.table["group"].nunique() == 2


def test_rows_of_one_patient_share_a_group(tmp_path):
    m = make_manifest([
        {"case_id": f"c{k}", "patient_id": pid, "image": save(tmp_path / f"c{k}.png", scan(30 + k))}
        for k, pid in enumerate(["p1", "p2", "p1", "p3", "p2"])
    ])
    t = qc(m, tmp_path).manifest.table
    g = dict(zip(t["case_id"], t["group"]))
    assert g["c0"] == g["c2"] and g["c1"] == g["c4"]
    assert len({g["c0"], g["c1"], g["c3"]}) == 3
    assert pd.api.types.is_integer_dtype(t["group"])


def test_explicit_label_column_and_unknown_one(tmp_path):
    files = _variants(tmp_path)
    m = make_manifest([
        {"case_id": "a", "image": files["original"], "diagnosis": "benign"},
        {"case_id": "b", "image": files["copy"], "diagnosis": "malignant", "patient_id": "q"},
    ])
    res = qc(m, tmp_path, label_column="diagnosis")
    assert res.duplicate_pairs[["label_a", "label_b"]].values.tolist() == [["benign", "malignant"]]
    assert res.summary["label_balance"] == {"benign": 1, "malignant": 1}
    with pytest.raises(InputError, match="Did you mean 'diagnosis'"):
        qc(m, tmp_path, label_column="diagnosys")


# --------------------------------------------------------------------------- outputs
def test_written_files_are_atomic_and_match_the_table(tmp_path):
    files = _variants(tmp_path)
    rows = [{"case_id": k, "image": v, "masks": [save(tmp_path / f"{k}_m.png", BIG | SMALL)]}
            for k, v in files.items()]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    rows.append({"case_id": "bad", "image": str(bad)})
    res = run_qc(make_manifest(rows), derived_mask_dir=tmp_path / "derived", progress=False, n_jobs=2)
    out = tmp_path / "out"
    written = res.write(out)
    assert sorted(p.name for p in out.iterdir()) == ["qc.csv", "qc_pairs.csv", "qc_summary.json", "qc_summary.txt"]
    assert set(written) == {"qc.csv", "qc_pairs.csv", "qc_summary.json", "qc_summary.txt"}
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]

    table = pd.read_csv(out / "qc.csv")
    summary = json.loads((out / "qc_summary.json").read_text())
    assert summary["n_rows"] == len(table) == 7
    assert summary["n_included"] == int(table["include"].sum()) == 6
    assert summary["n_excluded"] == int((~table["include"]).sum()) == 1
    assert summary["near_duplicate_groups"] == table["near_dup_group"].dropna().nunique() == 1
    assert summary["rows_in_duplicate_groups"] == int(table["near_dup_group"].notna().sum()) == 5
    assert summary["exact_duplicate_groups"] == table["exact_dup_group"].dropna().nunique() == 1
    assert summary["duplicate_pairs"] == len(pd.read_csv(out / "qc_pairs.csv"))
    assert summary["multi_lesion_rows"] == int((table["n_lesions"] > 1).sum()) == 6
    assert summary["derived_masks"] == 6 and len(list((tmp_path / "derived").iterdir())) == 6
    text = (out / "qc_summary.txt").read_text()
    assert "included 6, excluded 1" in text and "1 near-duplicate groups" in text
    # n_jobs=2 gives what n_jobs=1 gives
    serial = run_qc(make_manifest(rows), derived_mask_dir=tmp_path / "d1", progress=False)
    pd.testing.assert_frame_equal(
        serial.table.drop(columns="mask"), res.table.drop(columns="mask"), check_dtype=False
    )


# --------------------------------------------------------------------------- duplicates module
def test_hamming_pairs_match_brute_force():
    rng = np.random.default_rng(5)
    hashes = rng.integers(0, 2**63, size=60, dtype=np.uint64)
    hashes[7] = hashes[3] ^ np.uint64(0b1011)  # 3 bits apart
    i, j, d = hamming_pairs(hashes, 20, block=16)
    brute = {(a, b): bin(int(hashes[a]) ^ int(hashes[b])).count("1")
             for a in range(60) for b in range(a + 1, 60)}
    expected = {k: v for k, v in brute.items() if v <= 20}
    assert dict(zip(zip(i.tolist(), j.tolist()), d.tolist())) == expected
    assert expected[(3, 7)] == 3


def test_connected_groups_are_transitive_and_numbered_by_first_row():
    assert connected_groups(6, [4, 0], [5, 4]).tolist() == [0, 1, 2, 3, 0, 0]


def test_overlap_correlation_finds_a_shift():
    a = scan(4, size=(80, 120)).astype(np.float32)
    ncc, overlap = overlap_correlation(a, a[10:70, 25:100])
    assert ncc > 0.999 and overlap == pytest.approx(1.0)
    other, _ = overlap_correlation(a, scan(5, size=(60, 75)).astype(np.float32))
    assert other < 0.9


# --------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_busi_known_duplicates_are_grouped(tmp_path):
    busi = DATA.resolve() / "busi"
    if not busi.is_dir():
        pytest.skip(f"real data folder {busi} is absent")
    # Found by hand: benign (433) and malignant (145) are the same file content; benign (131)
    # and malignant (51) a re-save of one scan; malignant (78) a wider crop of benign (333).
    names = ["benign (433)", "malignant (145)", "benign (131)", "malignant (51)", "benign (333)",
             "malignant (78)", "benign (1)", "malignant (10)"]
    rows = []
    for name in names:
        folder = busi / name.split(" ")[0]
        masks = sorted(folder.glob(f"{name}_mask*.png"))
        rows.append({"case_id": name, "image": str(folder / f"{name}.png"), "masks": masks,
                     "label": name.split(" ")[0]})
    res = qc(make_manifest(rows), tmp_path)
    g = dict(zip(res.table["case_id"], res.table["group"]))
    assert g["benign (433)"] == g["malignant (145)"]
    assert g["benign (131)"] == g["malignant (51)"]
    assert g["benign (333)"] == g["malignant (78)"]
    assert len({g["benign (433)"], g["benign (131)"], g["benign (333)"], g["benign (1)"], g["malignant (10)"]}) == 5
    assert res.summary["cross_label_pairs"] == 3
    assert res.table["include"].all()
