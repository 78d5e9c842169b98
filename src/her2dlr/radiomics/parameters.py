"""PyRadiomics parameter sets: the shipped YAML files, loading, validation and hashing.

A parameter set is the dict PyRadiomics reads from a params YAML (top-level keys
``imageType``, ``featureClass``, ``setting``, ``voxelSetting``). Three sets ship in
``her2dlr/radiomics/params/``:

``us2d``   2D ultrasound: Original + LoG + Wavelet, 1,573 features (seed 002 uses 1,561).
``video``  ultrasound video frames: Original only, 88 cheap features (seed 001 uses 91).
``mri3d``  3D breast DCE-MRI: Original + LoG + Wavelet at 1 mm isotropic, 1,302 features.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from her2dlr.errors import InputError, nearest

__all__ = ["SHIPPED_PARAMS", "Params", "load_params", "params_hash", "validate_params"]

Params = dict[str, Any]
"""A resolved PyRadiomics parameter dict."""

SHIPPED_PARAMS = ("us2d", "video", "mri3d")
"""Names of the parameter sets shipped with her2dlr."""

_TOP_KEYS = ("imageType", "featureClass", "setting", "voxelSetting")
_FLOAT_SETTINGS = ("binWidth", "normalizeScale", "removeOutliers", "geometryTolerance")


def _shipped_path(name: str) -> Path:
    return Path(str(resources.files("her2dlr.radiomics").joinpath("params", f"{name}.yaml")))


def _read_yaml(path: Path) -> Params:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"Params file {path} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(
            f"Params file {path} must hold a mapping with keys {', '.join(_TOP_KEYS)}; "
            f"got a {type(data).__name__}."
        )
    return data


def _normalise(params: Mapping[str, Any], source: str) -> Params:
    """Copy ``params``, check its top-level keys and make float settings floats.

    PyRadiomics computes the upper bin edge as ``max + 2 * binWidth`` in the image's
    pixel type: with an integer ``binWidth`` and a uint8 image this wraps around for
    bright ROIs, so widths are always stored as floats.
    """
    unknown = [k for k in params if k not in _TOP_KEYS]
    if unknown:
        raise InputError(
            f"Params {source} has unknown top-level key(s) {unknown}; allowed: "
            f"{', '.join(_TOP_KEYS)}.{nearest(unknown[0], _TOP_KEYS)}"
        )
    out: Params = copy.deepcopy(dict(params))
    settings = dict(out.get("setting") or {})
    for key in _FLOAT_SETTINGS:
        value = settings.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            settings[key] = float(value)
    out["setting"] = settings
    return out


def validate_params(params: Mapping[str, Any], source: str = "<dict>") -> None:
    """Check a parameter dict against PyRadiomics' own schema.

    Parameters
    ----------
    params : mapping
        PyRadiomics parameter dict.
    source : str
        Name of the file or set, used in the error message.

    Raises
    ------
    InputError
        When PyRadiomics rejects the parameters; the message names ``source`` and the
        offending key as reported by the schema validator.
    """
    import pykwalify.core
    from pykwalify.errors import PyKwalifyException
    from radiomics import getParameterValidationFiles

    schema_file, schema_funcs = getParameterValidationFiles()
    log = logging.getLogger("pykwalify")
    previous = log.level
    log.setLevel(logging.CRITICAL)  # the validator logs each error before raising it
    try:
        with warnings.catch_warnings():
            # pykwalify loads PyRadiomics' schema extension with the deprecated load_module()
            warnings.simplefilter("ignore", DeprecationWarning)
            core = pykwalify.core.Core(
                source_data=copy.deepcopy(dict(params)),
                schema_files=[schema_file],
                extensions=[schema_funcs],
            )
            core.validate(raise_exception=True)
    except (PyKwalifyException, ValueError) as exc:
        text = str(getattr(exc, "msg", None) or exc)
        lines = [line.strip().lstrip("- ").strip() for line in text.splitlines() if line.strip()]
        if len(lines) > 1 and lines[0].endswith(":"):
            lines = [lines[0] + " " + "; ".join(lines[1:])]
        raise InputError(f"Invalid PyRadiomics params {source}: {' '.join(lines)}") from None
    finally:
        log.setLevel(previous)


def load_params(name_or_path: str | os.PathLike[str] | Mapping[str, Any]) -> Params:
    """Load a PyRadiomics parameter set by shipped name, YAML path, or from a dict.

    Parameters
    ----------
    name_or_path : str, path-like or mapping
        ``"us2d"``, ``"video"`` or ``"mri3d"`` for a shipped set; otherwise the path of
        a PyRadiomics params YAML. A mapping is checked and returned as a copy.

    Returns
    -------
    dict
        The validated parameter dict, float settings as floats.

    Raises
    ------
    InputError
        Unknown shipped name (the message lists the allowed names), missing or invalid
        file, or parameters PyRadiomics rejects.

    Examples
    --------
    >>> params = load_params("video")
    >>> sorted(params["featureClass"])[:2]
    ['firstorder', 'glcm']
    """
    if isinstance(name_or_path, Mapping):
        params = _normalise(name_or_path, "<dict>")
        validate_params(params, "<dict>")
        return params
    text = os.fspath(name_or_path)
    if text in SHIPPED_PARAMS:
        path, source = _shipped_path(text), f"'{text}'"
    else:
        path, source = Path(text), str(text)
        looks_like_path = path.suffix.lower() in (".yaml", ".yml", ".json") or os.sep in text
        if not path.is_file():
            if looks_like_path:
                raise InputError(f"Params file not found: {path}.")
            raise InputError(
                f"Unknown params set '{text}': give one of {', '.join(SHIPPED_PARAMS)} "
                f"or the path of a PyRadiomics params YAML.{nearest(text, SHIPPED_PARAMS)}"
            )
    params = _normalise(_read_yaml(path), source)
    validate_params(params, source)
    return params


def params_hash(params: Mapping[str, Any]) -> str:
    """Stable hash of a resolved parameter dict (16 hex digits).

    Key order and int-vs-float spelling of float settings do not change the hash;
    any change of a value does.

    Parameters
    ----------
    params : mapping
        Parameter dict, as returned by :func:`load_params`.

    Returns
    -------
    str
        First 16 hex digits of the SHA-256 of the canonical JSON form.
    """
    canonical = json.dumps(_normalise(params, "<dict>"), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
