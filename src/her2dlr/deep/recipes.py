"""Training recipes: candidate ways to train a fold's network, chosen on the inner validation split.

A :class:`Recipe` is a named set of changes to the training settings
(:class:`~her2dlr.deep.train.TrainSettings`: mixup, label smoothing, weight averaging,
test-time flips, augmentation strength, epochs ...) and to the ROI
(:class:`~her2dlr.imaging.roi.RoiSpec`: input size, context around the box). Given several,
:func:`her2dlr.deep.cv.run_deep_cv` trains every candidate in each outer fold on the same
inner training part, scores it on the same inner validation split (the trainer's, drawn from
the fold's training rows only), and keeps the best candidate's network as the fold's network
(no retraining: the early-stopped network that was scored is the one used). The outer test
rows are predicted once, by the chosen network, after the choice; they never enter it.

Every candidate gets the fold's seed, validation share and class count, so all see the same
inner split; a recipe may not change them (:data:`FIXED_KEYS`).

The same inner validation split also chose each candidate's epoch (early stopping), so the
winner's inner score is optimistic (a maximum over epochs and candidates); it ranks the
candidates, and the outer test fold gives the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from her2dlr.deep.train import TrainSettings
from her2dlr.deep.transforms import AugmentSettings
from her2dlr.errors import InputError, nearest
from her2dlr.imaging.roi import RoiSpec

__all__ = ["FIXED_KEYS", "ROI_KEYS", "Recipe", "RecipeChoice", "choose_recipe", "recipes_from_dicts"]

#: Training settings a recipe may not change: every candidate must see the same inner split.
FIXED_KEYS = frozenset({"seed", "val_fraction", "min_class_cases", "n_classes", "in_channels", "spatial_dims",
                        "distributed", "device", "allow_cpu_fallback", "num_workers", "num_threads", "progress"})
#: Keys of a recipe that change the ROI (``image_size`` changes both the ROI and the network input).
ROI_KEYS = frozenset({"image_size", "margin", "margin_fraction", "keep_aspect"})


@dataclass(frozen=True)
class Recipe:
    """A named candidate: changes to the training settings and the ROI.

    Parameters
    ----------
    name : str
    changes : mapping
        ``TrainSettings`` fields (``augment`` as a mapping of
        :class:`~her2dlr.deep.transforms.AugmentSettings` fields, merged into the base's) and the
        ROI keys :data:`ROI_KEYS`. Empty: the base settings as they are.
    """

    name: str
    changes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not str(self.name).strip():
            raise InputError("A training recipe needs a non-empty name.")
        allowed = ({f.name for f in fields(TrainSettings)} | ROI_KEYS) - FIXED_KEYS
        bad = sorted(set(self.changes) - allowed)
        if bad:
            fixed = sorted(set(bad) & FIXED_KEYS)
            why = (f" ({', '.join(fixed)} must be the same for every recipe: they set the inner split)"
                   if fixed else nearest(bad[0], allowed))
            raise InputError(f"Recipe '{self.name}': unknown or fixed key(s) {bad}.{why} Allowed: {sorted(allowed)}.")

    def apply(self, settings: TrainSettings, roi: RoiSpec) -> tuple[TrainSettings, RoiSpec]:
        """The base training settings and ROI with this recipe's changes (validated)."""
        train = {k: v for k, v in self.changes.items() if k not in ROI_KEYS - {"image_size"}}
        if isinstance(train.get("augment"), Mapping):
            train["augment"] = AugmentSettings(**{**settings.augment.to_dict(), **dict(train["augment"])})
        roi_changes = {k: v for k, v in self.changes.items() if k in ROI_KEYS}
        if "image_size" in roi_changes:
            roi_changes["size"] = roi_changes.pop("image_size")
        try:
            new_settings = replace(settings, **train)
            new_roi = replace(roi, **roi_changes)
        except (TypeError, ValueError) as exc:
            raise InputError(f"Recipe '{self.name}': {exc}") from None
        return new_settings, new_roi

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"name": ..., **changes}``."""
        return {"name": self.name, **{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.changes.items()}}


def recipes_from_dicts(items: Sequence[Mapping[str, Any]]) -> list[Recipe]:
    """Recipes from ``[{"name": ..., key: value, ...}, ...]`` (a study file's ``deep.recipes``).

    Raises
    ------
    InputError
        A recipe without a name, two with the same name, or a key that is not allowed.
    """
    out: list[Recipe] = []
    for i, item in enumerate(items):
        item = dict(item)
        name = item.pop("name", None)
        if not name:
            raise InputError(f"Recipe #{i + 1} has no 'name'.")
        out.append(Recipe(str(name), item))
    names = [r.name for r in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"Recipe name(s) {dup} are used more than once.")
    return out


@dataclass(frozen=True)
class RecipeChoice:
    """Which candidate a fold chose and every candidate's inner validation AUC.

    Attributes
    ----------
    name : str
    val_auc : float
        The chosen candidate's inner validation AUC (NaN without a validation split).
    scores : dict
        recipe name -> inner validation AUC, in the order tried.
    """

    name: str
    val_auc: float
    scores: dict[str, float]


def choose_recipe(scores: Mapping[str, float]) -> RecipeChoice:
    """The candidate with the highest inner validation AUC; ties and all-NaN go to the first listed.

    Parameters
    ----------
    scores : mapping
        recipe name -> inner validation AUC, in the order the recipes were given.
    """
    if not scores:
        raise InputError("No recipe was scored.")
    names = list(scores)
    best = names[0]
    for name in names[1:]:
        value, current = scores[name], scores[best]
        if not math.isnan(value) and (math.isnan(current) or value > current + 1e-12):
            best = name
    return RecipeChoice(best, float(scores[best]), {k: float(v) for k, v in scores.items()})
