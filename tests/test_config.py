"""Study file validation: unknown keys and bad values name the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from her2dlr.config import load_study, study_from_dict
from her2dlr.errors import StudyFileError
from her2dlr.study_template import EXAMPLE_STUDY, write_example

BASE = {
    "name": "s",
    "cohort": {"sources": [{"kind": "folders", "path": "data"}]},
    "label": {"rule": "column", "column": "class", "positive": ["malignant"]},
}


def _with(**changes):
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        node[last] = value
    return raw


def test_example_study_is_valid(tmp_path: Path):
    path = write_example(tmp_path / "study.yaml")
    study = load_study(path)
    assert study.name == "her2-us"
    assert study.label.rule == "her2_status"
    assert study.split.kfold.n_repeats == 3
    assert "#" in path.read_text()  # commented


def test_init_refuses_to_overwrite(tmp_path: Path):
    path = write_example(tmp_path / "study.yaml")
    with pytest.raises(Exception, match="already exists"):
        write_example(path)


def test_unknown_key_is_named_with_suggestion():
    raw = _with(cohort__sources__0__mask_sufix="_m")
    with pytest.raises(StudyFileError) as err:
        study_from_dict(raw)
    msg = str(err.value)
    assert "unknown key 'cohort.sources[0].mask_sufix'" in msg
    assert "Did you mean 'mask_suffix'" in msg


def test_bad_literal_lists_allowed_values():
    with pytest.raises(StudyFileError, match=r"label.rule = 'her2'.*one of 'column', 'her2_status'"):
        study_from_dict(_with(label__rule="her2"))


def test_bad_number_names_key_and_value():
    with pytest.raises(StudyFileError, match=r"split.holdout.test_size = 1.5"):
        study_from_dict(_with(split__holdout__test_size=1.5))


def test_column_rule_needs_column():
    raw = _with()
    del raw["label"]["column"]
    with pytest.raises(StudyFileError, match="needs 'column'"):
        study_from_dict(raw)


def test_bbox_columns_need_four_names():
    raw = _with()
    raw["cohort"]["sources"] = [{"kind": "table", "path": "t.csv", "image_column": "img", "bbox_columns": ["x", "y"]}]
    with pytest.raises(StudyFileError, match="bbox_columns needs 4 names"):
        study_from_dict(raw)


def test_top_level_unknown_key():
    with pytest.raises(StudyFileError, match="unknown key 'splits'.*Did you mean 'split'"):
        study_from_dict({**BASE, "splits": {}})


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(StudyFileError, match="not found"):
        load_study(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(StudyFileError, match="not valid YAML"):
        load_study(bad)


def test_paths_resolve_against_study_folder(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "study.yaml"
    path.write_text(yaml.safe_dump(BASE))
    study = load_study(path)
    assert study.run_dir == (tmp_path / "sub" / "runs" / "s").resolve()
    assert study.resolve("data") == (tmp_path / "sub" / "data").resolve()


def test_example_text_parses_as_yaml():
    assert yaml.safe_load(EXAMPLE_STUDY)["radiomics"]["params"] == "us2d"


def test_deep_section_is_validated_and_in_the_example(tmp_path: Path):
    study = load_study(write_example(tmp_path / "study.yaml"))
    assert study.deep is not None and study.deep.arch == "densenet3block" and study.deep.schemes == ["kfold", "holdout"]
    assert study.deep.dlr.n_components == 64
    with pytest.raises(StudyFileError) as err:
        study_from_dict(_with(deep={"loss": "focall"}))
    assert "deep.loss" in str(err.value) and "focal" in str(err.value)
    with pytest.raises(StudyFileError) as err:
        study_from_dict(_with(deep={"dlr": {"n_component": 8}}))
    assert "deep.dlr.n_component" in str(err.value)
    merged = study_from_dict(_with(deep={"epochs": 5})).deep.merged(epochs=None, margin=3)
    assert (merged.epochs, merged.margin) == (5, 3)
