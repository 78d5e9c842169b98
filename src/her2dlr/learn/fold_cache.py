"""Finished outer folds kept on disk, so that an interrupted ``learn run`` resumes where it stopped.

Each fold's result (the fitted :class:`~her2dlr.learn.cv.FoldFit` and its inner out-of-fold
predictions) is written, atomically, as soon as the fold is done, to
``<folder>/<key>.joblib``. The key is a hash of everything the fold's fit depends on: the
training rows' values, column names, case ids and dtypes, their labels and groups, the model,
selection steps, grid, fixed parameters, search and threshold settings, the fold's name and
the versions of this package and scikit-learn. A study whose features, labels, folds or
settings changed therefore never meets a stale fold: its keys differ.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from her2dlr.io.atomic import atomic_path

__all__ = ["FoldCache", "fold_key"]

log = logging.getLogger(__name__)

_SUFFIX = ".joblib"


def fold_key(X_train: pd.DataFrame, y_train: np.ndarray, groups_train: np.ndarray, **settings: Any) -> str:
    """Hash of one outer fold's training data and fitting settings (hex digest).

    Parameters
    ----------
    X_train : DataFrame of shape (n_train, n_features)
    y_train, groups_train : ndarray of shape (n_train,)
    **settings
        Everything else the fit depends on (model, selection, grid, search, threshold, fold, ...).
    """
    import sklearn

    from her2dlr import __version__

    data = (X_train.to_numpy(), [str(c) for c in X_train.columns], [str(i) for i in X_train.index],
            [str(d) for d in X_train.dtypes], np.asarray(y_train), np.asarray(groups_train).astype(str))
    return joblib.hash((data, sorted(settings.items()), __version__, sklearn.__version__), hash_name="sha1")


class FoldCache:
    """Finished folds under one folder, by :func:`fold_key`.

    Parameters
    ----------
    folder : path-like
        Created on the first write.

    Attributes
    ----------
    used_ : set of str
        Keys read or written through this object (what :meth:`prune` keeps).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.used_: set[str] = set()

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}{_SUFFIX}"

    def get(self, key: str) -> Any | None:
        """The stored result of ``key``, or None (absent, or unreadable: the fold is fitted again)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            value = joblib.load(path)
        except Exception as exc:  # a file from another library version: recompute, never fail the run
            log.warning("Ignoring the cached fold %s (%s); fitting it again.", path, exc)
            return None
        self.used_.add(key)
        return value

    def put(self, key: str, value: Any) -> Path:
        """Store ``value`` under ``key`` (write, then rename)."""
        path = self._path(key)
        with atomic_path(path) as tmp:
            joblib.dump(value, tmp)
        self.used_.add(key)
        return path

    def prune(self, keep: Iterable[str] | None = None) -> int:
        """Remove stored folds whose key is not in ``keep`` (default: :attr:`used_`); return how many."""
        keep = set(self.used_ if keep is None else keep)
        if not self.folder.is_dir():
            return 0
        removed = 0
        for path in self.folder.glob(f"*{_SUFFIX}"):
            if path.name[: -len(_SUFFIX)] not in keep:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
