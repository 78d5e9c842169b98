"""The base of every settings model of the study file, and error messages that name the key.

Each stage keeps its own settings (``cohort/settings.py``, ``radiomics/settings.py``,
``learn/settings.py``, ``deep/settings.py``, ``survival/settings.py``); :mod:`her2dlr.config`
composes them into the study file model. Unknown keys and bad values are refused with the key
path, the value given and what is allowed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from her2dlr.errors import nearest

__all__ = ["StrictModel", "format_validation_error"]


class StrictModel(BaseModel):
    """A settings model that refuses unknown keys and validates assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _tag_of(model: Any) -> str | None:
    """The discriminator value (``kind``) of a model of a tagged union, if it has one."""
    field = getattr(model, "model_fields", {}).get("kind")
    args = getattr(field.annotation, "__args__", ()) if field is not None else ()
    return str(args[0]) if len(args) == 1 else None


def _models_in(ann: Any) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for arg in getattr(ann, "__args__", ()) for m in _models_in(arg)]


def _key_path(loc: tuple[Any, ...], tags: set[str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in tags and parts and parts[-1].startswith("["):
            continue  # the discriminator tag adds nothing for the user
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, set[str]]:
    """The model at the parent of ``loc`` (best effort) and the union tags met on the way."""
    current: Any = model
    tags: set[str] = set()
    options: list[type[BaseModel]] = []
    for item in loc[:-1]:
        if isinstance(item, int) or current is None:
            continue
        by_tag = {_tag_of(m): m for m in options}
        if item in by_tag:
            current, options = by_tag[item], []
            tags.add(str(item))
            continue
        fields = getattr(current, "model_fields", {})
        if item in fields:
            options = _models_in(fields[item].annotation)
            current = options[0] if options else None
            tags |= {t for t in (_tag_of(m) for m in options) if t} if len(options) > 1 else set()
    return current, tags


def _all_tags(model: type[BaseModel], loc: tuple[Any, ...]) -> set[str]:
    tags = set()
    for i in range(1, len(loc) + 1):
        tags |= _walk(model, (*loc[:i], ""))[1]
    return tags


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel]) -> str:
    """Turn a pydantic error into lines naming the key, the value given and what is allowed."""
    lines = [f"{source} is not a valid study file:"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _key_path(loc, _all_tags(model, loc))
        if err["type"] == "extra_forbidden":
            parent, _ = _walk(model, loc)
            allowed = [f for f in getattr(parent, "model_fields", {}) if f != "base_dir"]
            hint = nearest(str(loc[-1]), allowed)
            lines.append(f"  - unknown key '{key}'. Allowed here: {', '.join(allowed)}.{hint}")
            continue
        if err["type"] == "missing":
            lines.append(f"  - {key or '(top level)'}: required, not given")
            continue
        value = err.get("input")
        msg = err["msg"]
        if err["type"] == "literal_error":
            msg = f"must be one of {err['ctx']['expected']}"
        shown = "" if isinstance(value, dict) else f" = {value!r}"  # a whole section is not worth repeating
        lines.append(f"  - {key or '(top level)'}{shown}: {msg}")
    return "\n".join(lines)
