"""PyRadiomics parameter sets: the shipped YAML files, loading, validation and hashing.

A parameter set is the dict PyRadiomics reads from a params YAML (top-level keys
``imageType``, ``featureClass``, ``setting``, ``voxelSetting``). Every YAML file in
``her2dlr/radiomics/params/`` is a shipped set, selectable by its file name without the suffix;
:func:`shipped_params` lists them with the first line of each file's header, so the lookup, the
error messages, ``her2dlr extract radiomics --help`` and ``her2dlr init`` all read one list:

``us2d``   2D ultrasound: Original + LoG + Wavelet, 1,556 features (seed 002 uses 1,561).
``us2d_original`` (and its ``_norm`` / ``_bincount`` variants)  the Original image only, 100 features.
``video``  ultrasound video frames: Original only, 87 cheap features (seed 001 uses 91).
``mri3d``  3D breast DCE-MRI: Original + LoG + Wavelet at 1 mm isotropic, 1,288 features.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from her2dlr.errors import InputError, nearest

__all__ = [
    "SHIPPED_PARAMS",
    "Params",
    "load_params",
    "params_hash",
    "shipped_params",
    "shipped_params_help",
    "shipped_params_path",
    "validate_params",
]

Params = dict[str, Any]
"""A resolved PyRadiomics parameter dict."""

_TOP_KEYS = ("imageType", "featureClass", "setting", "voxelSetting")
_FLOAT_SETTINGS = ("binWidth", "normalizeScale", "removeOutliers", "geometryTolerance")
#: The shipped files' first header line starts so; what follows is the set's one-line description.
_HEADER_PREFIX = "her2dlr shipped PyRadiomics parameters:"
#: The default and most used sets first; the others follow by name.
_FIRST = ("us2d", "video", "mri3d")


def _params_dir() -> Path:
    return Path(str(resources.files("her2dlr.radiomics").joinpath("params")))


@cache
def shipped_params() -> dict[str, str]:
    """The parameter sets shipped in ``her2dlr/radiomics/params/``: name -> one-line description.

    The single list behind name lookup (:func:`load_params`), its error messages and the command
    line's help: a YAML file added to that folder is selectable by name with nothing else to edit.

    Returns
    -------
    dict
        ``{"us2d": "2D ultrasound (B-mode, 8-bit grey).", ...}``, the default sets first.
    """
    found = {}
    for path in _params_dir().glob("*.yaml"):
        first = path.read_text(encoding="utf-8").lstrip().splitlines()[:1]
        line = first[0].lstrip("# ").strip() if first else ""
        found[path.stem] = line[len(_HEADER_PREFIX):].strip() if line.startswith(_HEADER_PREFIX) else line
    order = [n for n in _FIRST if n in found] + sorted(n for n in found if n not in _FIRST)
    return {name: found[name] for name in order}


def shipped_params_help() -> str:
    """The shipped set names, comma-separated, for help texts and messages (``us2d, video, ...``)."""
    return ", ".join(shipped_params())


def shipped_params_path(name: str) -> Path:
    """Path of the shipped params YAML ``name``.

    Raises
    ------
    InputError
        ``name`` is not a shipped set (the message lists them and suggests the nearest).
    """
    if name not in shipped_params():
        raise InputError(f"Unknown params set '{name}': the shipped sets are {shipped_params_help()}."
                         f"{nearest(name, list(shipped_params()))}")
    return _params_dir() / f"{name}.yaml"


SHIPPED_PARAMS = tuple(shipped_params())
"""Names of the parameter sets shipped with her2dlr (every YAML file of ``her2dlr/radiomics/params/``)."""


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
        The name of a shipped set (:func:`shipped_params`: ``"us2d"``, ``"us2d_original"``,
        ``"video"``, ``"mri3d"`` ...); otherwise the path of a PyRadiomics params YAML. A
        mapping is checked and returned as a copy.

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
    if text in shipped_params():
        path, source = shipped_params_path(text), f"'{text}'"
    else:
        path, source = Path(text), str(text)
        looks_like_path = path.suffix.lower() in (".yaml", ".yml", ".json") or os.sep in text
        if not path.is_file():
            if looks_like_path:
                raise InputError(f"Params file not found: {path}.")
            raise InputError(
                f"Unknown params set '{text}': give one of {shipped_params_help()} "
                f"or the path of a PyRadiomics params YAML.{nearest(text, list(shipped_params()))}"
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
