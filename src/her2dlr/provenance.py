"""What a run records about itself: package versions and a hash of its settings (DESIGN rule 5)."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from typing import Any

__all__ = ["TRACKED_PACKAGES", "config_hash", "package_versions"]

#: Distributions whose versions change results.
TRACKED_PACKAGES = ("her2dlr", "numpy", "pandas", "scipy", "scikit-learn", "pyradiomics-bhklab", "SimpleITK",
                    "xgboost-cpu", "xgboost", "lightgbm", "statsmodels", "lifelines", "torch", "monai")


def package_versions() -> dict[str, str]:
    """``{"python": ..., "<distribution>": version}`` for the installed tracked packages."""
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def config_hash(settings: Any) -> str:
    """SHA-256 (first 16 hex digits) of settings given as a pydantic model or JSON-able object."""
    if hasattr(settings, "model_dump"):
        settings = settings.model_dump(mode="json")
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
