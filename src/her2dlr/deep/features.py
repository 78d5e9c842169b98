"""Deep features: the penultimate layer of each outer fold's network, and PCA fitted in-fold.

Seed 002 takes the 2048 penultimate features of its best CNN, compresses them to 64 with PCA
and fuses them with radiomics (the DLR model); seed 000 clusters the global-average-pool
features (its figure 4). Both need deep features that say nothing about the cases they are
tested on.

Design: one feature table per outer fold
----------------------------------------
The deep stage trains one network per outer fold ``r<rep>f<k>`` of the cohort's repeated
group k-fold, on that fold's training cases only. For fold ``r<rep>f<k>`` this module embeds
*every* case with *that fold's* network (``model.embed``, the pooled penultimate features) and
writes the table ``deep_0 .. deep_{D-1}`` indexed by ``case_id``. A fold's test cases were
never seen by the network that describes them; its training cases were (their features are
in-sample, as the training features of any fitted model are). Everything fitted after the
network - scaling, PCA to 64 components, selection, the classifier - is fitted on the fold's
training rows only (:class:`DeepPCA` inside the fold's pipeline; see
:mod:`her2dlr.deep.dlr`), so the test rows reach nothing that is fitted.

Why not one out-of-fold table: the networks of different folds are different networks, their
``deep_j`` are unrelated coordinates (any permutation or rotation of the penultimate units
gives the same predictions), so stacking each case's features from "its" test fold makes a
column mean something else in every fold's rows. And a single table from one network trained
on all cases puts every test case inside the network's training set. Neither goes into the
ordinary learning stage; the per-fold tables are used fold by fold by
:func:`her2dlr.deep.dlr.run_dlr_cv`.

Bookkeeping: every :class:`FoldFeatures` keeps the cases its network was trained on (from the
checkpoint), and :func:`check_out_of_fold` refuses a fold whose test case is among them.
Each fold's positive-class probability (the deep signature, seed 002) is kept beside its
features.

Files (:func:`write_fold_features`): ``<run>/features/deep_<arch>/<fold>.parquet`` (one
table per fold; a folder, so the learning stage never mistakes it for one feature table),
``provenance.csv`` (``fold, case_id, seen_in_training, prob, checkpoint``) and
``deep_<arch>.json`` beside the folder (network, dimension, folds).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from her2dlr.errors import InputError
from her2dlr.io.atomic import atomic_path, write_csv_atomic, write_text_atomic
from her2dlr.runfolder import PROVENANCE, deep_features_name

__all__ = [
    "DEEP_PREFIX",
    "DeepFeaturesResult",
    "DeepPCA",
    "FoldFeatures",
    "PCAReport",
    "apply_checkpoint_record",
    "check_out_of_fold",
    "deep_columns",
    "deep_frame",
    "embed_arrays",
    "extract_deep_features",
    "extract_fold_features",
    "features_folder_name",
    "fold_features",
    "fold_test_cases",
    "in_fold_pca",
    "read_fold_features",
    "write_fold_features",
]

#: Column prefix of deep features (``deep_0``, ``deep_1``, ...).
DEEP_PREFIX = "deep_"


def features_folder_name(arch: str) -> str:
    """Name of a network's per-fold feature folder under ``<run>/features``: ``deep_<arch>``."""
    return deep_features_name(arch)


def deep_columns(columns: Iterable[Any]) -> list[str]:
    """The deep-feature columns (``deep_<int>``) among ``columns``, in order."""
    return [str(c) for c in columns if str(c).startswith(DEEP_PREFIX) and str(c)[len(DEEP_PREFIX):].isdigit()]


def embed_arrays(model: Any, x: np.ndarray | Any, *, batch_size: int = 64, device: Any = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features and positive-class probability of network inputs.

    Parameters
    ----------
    model : nn.Module
        With ``embed(x)`` and ``forward(x)``; run in eval mode without gradients.
    x : ndarray or Tensor of shape (n_images, channels, height, width) or (n_images, channels, depth, height, width)
        Prepared inputs (:func:`her2dlr.imaging.roi.prepare_roi`): images, or volumes for a 3D network.
    batch_size : int, default=64
    device : str or torch.device, optional
        Default: the device of the network's parameters.

    Returns
    -------
    features : ndarray of shape (n_images, embed_dim), float32
    prob : ndarray of shape (n_images,)
        Softmax column 1 (sigmoid for one logit).
    """
    import torch

    if not hasattr(model, "embed"):
        raise InputError(f"{type(model).__name__} has no embed(x) method: not a toolkit network.")
    if getattr(model, "n_clinical", 0):
        raise InputError("This network fuses clinical values at its head (deep.clinical_columns): its penultimate "
                         "features hold them, so they are no imaging features. For deep features and DLR models "
                         "train an image-only network (the learning stage fuses clinical data itself).")
    params = list(model.parameters())
    dev = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x.float()
    if xt.ndim not in (4, 5):
        raise InputError("Inputs must have shape (n_images, channels, height, width) or (n_images, channels, depth, "
                         f"height, width); got {tuple(xt.shape)}.")
    from her2dlr.deep.data import torch_threads
    from her2dlr.deep.train import default_threads

    was_training = model.training
    model.eval()
    feats, probs = [], []
    try:
        with torch.no_grad(), torch_threads(default_threads() if dev.type == "cpu" else None):
            for start in range(0, len(xt), batch_size):
                xb = xt[start:start + batch_size].to(dev)
                emb = model.embed(xb)
                logits = model(xb)
                feats.append(emb.float().cpu().numpy())
                p = torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, 1)[:, 1]
                probs.append(p.double().cpu().numpy())
    finally:
        model.train(was_training)
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros(0)
    return np.concatenate(feats), np.concatenate(probs)


def deep_frame(features: np.ndarray, case_ids: Sequence[Any]) -> pd.DataFrame:
    """Feature table: index ``case_id`` (str), columns ``deep_0 .. deep_{D-1}`` (float32)."""
    features = np.asarray(features)
    if features.ndim != 2 or len(features) != len(case_ids):
        raise InputError(f"{len(case_ids)} case ids for deep features of shape {features.shape}.")
    cols = [f"{DEEP_PREFIX}{j}" for j in range(features.shape[1])]
    return pd.DataFrame(features.astype(np.float32), index=pd.Index([str(c) for c in case_ids], name="case_id"),
                        columns=cols)


@dataclass
class FoldFeatures:
    """Deep features of every case from one outer fold's network.

    Attributes
    ----------
    fold : str
        ``r<rep>f<k>`` (or ``holdout`` / ``final``).
    features : DataFrame of shape (n_cases, embed_dim)
        Index ``case_id``, columns ``deep_0 ..``.
    prob : Series
        Positive-class probability of the network, by case id (the deep signature).
    train_cases : frozenset of str
        Cases the network was fitted on (its training and early-stopping cases).
    checkpoint : str, optional
        Where the network came from.
    meta : dict
    val_cases : frozenset of str
        The network's inner validation cases (among ``train_cases``: they chose the epoch and
        the recipe but gave no gradient steps), so its probabilities there are held out; empty
        when unknown.
    """

    fold: str
    features: pd.DataFrame
    prob: pd.Series
    train_cases: frozenset[str]
    checkpoint: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    val_cases: frozenset[str] = field(default_factory=frozenset)

    @property
    def embed_dim(self) -> int:
        """Number of deep features."""
        return int(self.features.shape[1])

    def provenance(self) -> pd.DataFrame:
        """``fold, case_id, seen_in_training, prob, checkpoint``: one row per case.

        Constant columns in ``meta["provenance"]`` (e.g. the DSFR features' ``lesion``) are appended.
        """
        ids = self.features.index.astype(str)
        extra = dict(self.meta.get("provenance", {}))
        return pd.DataFrame({"fold": self.fold, "case_id": ids, "seen_in_training": ids.isin(self.train_cases),
                             "inner_validation": ids.isin(self.val_cases),
                             "prob": self.prob.reindex(ids).to_numpy(), "checkpoint": self.checkpoint, **extra})


def fold_features(networks: Iterable[tuple[str, Any, Iterable[str], str | None]], inputs: np.ndarray,
                  case_ids: Sequence[Any], *, batch_size: int = 64, device: Any = None) -> dict[str, FoldFeatures]:
    """Embed every case with every fold's network.

    Parameters
    ----------
    networks : iterable of (fold, model, train_cases, checkpoint)
        ``model`` may also be a callable returning the network (loaded when needed, so only
        one network is in memory at a time).
    inputs : ndarray of shape (n_cases, channels, height, width) or (n_cases, channels, depth, height, width)
        Prepared network inputs (images, or volumes for a 3D network), in the order of ``case_ids``.
    case_ids : sequence of str
    batch_size : int, default=64
    device : optional

    Returns
    -------
    dict
        fold -> :class:`FoldFeatures`.
    """
    if len(inputs) != len(case_ids):
        raise InputError(f"{len(inputs)} network inputs for {len(case_ids)} case ids.")
    out: dict[str, FoldFeatures] = {}
    for fold, model, train_cases, checkpoint in networks:
        net = model() if callable(model) and not hasattr(model, "embed") else model
        emb, prob = embed_arrays(net, inputs, batch_size=batch_size, device=device)
        frame = deep_frame(emb, case_ids)
        out[str(fold)] = FoldFeatures(str(fold), frame, pd.Series(prob, index=frame.index, name="prob"),
                                      frozenset(str(c) for c in train_cases), checkpoint)
    return out


def apply_checkpoint_record(features: FoldFeatures, meta: Mapping[str, Any], load: Any, inputs: np.ndarray, *,
                            batch_size: int = 64) -> FoldFeatures:
    """Give a fold's features what its network's checkpoint records, in place; returns ``features``.

    The inner validation cases (``extra.val_cases``: where the network's probability is held
    out inside its training rows), and the signature as the network predicts it: with test-time
    flips when it was trained with ``tta_flips``, as its out-of-fold predictions and threshold were.

    Parameters
    ----------
    features : FoldFeatures
    meta : mapping
        The checkpoint without its weights (``settings``, ``extra``).
    load : nn.Module or callable returning it
    inputs : ndarray
        The prepared inputs ``features`` were computed from, in the order of its rows.
    batch_size : int, default=64
    """
    features.val_cases = frozenset(str(c) for c in dict(meta.get("extra") or {}).get("val_cases") or [])
    if dict(meta.get("settings") or {}).get("tta_flips"):
        from her2dlr.deep.train import predict_proba

        model = load() if callable(load) and not hasattr(load, "embed") else load
        prob = predict_proba(model, inputs, batch_size=batch_size, flips=True)[:, 1]
        features.prob = pd.Series(prob, index=features.prob.index, name="prob")
    return features


def fold_test_cases(table: pd.DataFrame, fold: str) -> list[str]:
    """Test cases of outer fold ``fold`` (``r<rep>f<k>`` or ``holdout``) in a manifest table; none for ``final``."""
    from her2dlr.learn.cv import outer_folds

    if fold == "final":  # the network to deploy: no case is held out from it
        return []

    scheme = "holdout" if fold == "holdout" else "kfold"
    for name, _, _, test in outer_folds(table, scheme):
        if name == fold:
            return table["case_id"].astype(str)[test].tolist()
    raise InputError(f"Fold '{fold}' is not an outer fold of the manifest (columns {list(table.columns)[:12]} ...).")


def check_out_of_fold(folds: Mapping[str, FoldFeatures], manifest: Any) -> pd.DataFrame:
    """Check that no fold's network saw one of that fold's test cases; return the bookkeeping.

    Parameters
    ----------
    folds : dict
        fold -> :class:`FoldFeatures`.
    manifest : Manifest or DataFrame
        With the outer-fold columns (``fold_r<rep>``) or ``split``.

    Returns
    -------
    DataFrame
        ``fold, case_id, role ("train"/"test"/"out"), seen_in_training``, one row per fold and case.

    Raises
    ------
    InputError
        A test case of a fold is among its network's training cases (names the fold and cases),
        or a fold lacks the features of some of its test cases.
    """
    table = manifest.included if hasattr(manifest, "included") else manifest
    from her2dlr.learn.cv import outer_folds

    rows = []
    for fold, ff in folds.items():
        scheme = fold if fold in ("holdout", "final") else "kfold"
        found = [(tr, te) for name, _, tr, te in outer_folds(table, scheme) if name == fold]
        if not found:
            raise InputError(f"Deep features of fold '{fold}' match no outer fold of the manifest.")
        tr, te = found[0]
        ids = table["case_id"].astype(str).to_numpy()
        test, train = ids[te], ids[tr]
        leaked = sorted(set(test) & ff.train_cases)
        if leaked:
            raise InputError(
                f"The network of fold '{fold}' was trained on {len(leaked)} of that fold's test case(s) "
                f"{leaked[:5]}: its features would leak. Retrain the fold or use the matching checkpoint."
            )
        missing = sorted(set(test) - set(ff.features.index))
        if missing:
            raise InputError(f"Fold '{fold}' has no deep features for test case(s) {missing[:5]}.")
        role = np.where(np.isin(ids, test), "test", np.where(np.isin(ids, train), "train", "out"))
        rows.append(pd.DataFrame({"fold": fold, "case_id": ids, "role": role,
                                  "seen_in_training": np.isin(ids, list(ff.train_cases))}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["fold", "case_id", "role", "seen_in_training"])


class DeepPCA(TransformerMixin, BaseEstimator):
    """Standardise deep features and project them on their first principal components (seed 002: 64).

    Fitted on the rows given to ``fit`` only (a fold's training rows, inside the pipeline).

    Parameters
    ----------
    n_components : int, default=64
        Lowered to ``min(n_rows - 1, n_features)`` when the training set is smaller (``n_components_``).
    scale : bool, default=True
        Z-score every feature before the PCA (with the training rows' mean and SD).
    random_state : int, default=0

    Attributes
    ----------
    n_components_ : int
    explained_variance_ratio_ : ndarray of shape (n_components_,)
    feature_names_in_ : ndarray of str
    pca_ : sklearn.decomposition.PCA

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> X = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 5)), columns=[f"deep_{j}" for j in range(5)])
    >>> Z = DeepPCA(n_components=3).fit(X).transform(X)
    >>> Z.shape, list(DeepPCA(n_components=3).fit(X).get_feature_names_out())
    ((20, 3), ['deep_pc1', 'deep_pc2', 'deep_pc3'])
    """

    def __init__(self, n_components: int = 64, *, scale: bool = True, random_state: int = 0) -> None:
        self.n_components = n_components
        self.scale = scale
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> DeepPCA:
        """Fit scaling and PCA on ``X`` (array-like of shape (n_rows, n_features))."""
        from sklearn.decomposition import PCA

        if isinstance(self.n_components, bool) or not isinstance(self.n_components, (int, np.integer)) \
                or self.n_components < 1:
            raise InputError(f"The 'n_components' parameter of DeepPCA must be an int >= 1. "
                             f"Got {self.n_components!r} instead.")
        arr = self._array(X, fitting=True)
        if len(arr) < 2:
            raise InputError(f"DeepPCA needs at least 2 training rows; got {len(arr)}.")
        self.mean_ = arr.mean(axis=0)
        sd = arr.std(axis=0, ddof=0) if self.scale else np.ones(arr.shape[1])
        self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        self.n_components_ = int(min(self.n_components, len(arr) - 1, arr.shape[1]))
        self.pca_ = PCA(n_components=self.n_components_, svd_solver="full", random_state=self.random_state)
        self.pca_.fit((arr - self.mean_) / self.scale_)
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        return self

    def transform(self, X: Any) -> Any:
        """Principal-component scores, shape (n_rows, n_components_); a DataFrame when ``X`` is one."""
        check_is_fitted(self, "pca_")
        arr = self._array(X, fitting=False)
        Z = self.pca_.transform((arr - self.mean_) / self.scale_)
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(Z, index=X.index, columns=self.get_feature_names_out())
        return Z

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``deep_pc1 .. deep_pc<n>``."""
        check_is_fitted(self, "pca_")
        return np.asarray([f"{DEEP_PREFIX}pc{j + 1}" for j in range(self.n_components_)], dtype=object)

    def _array(self, X: Any, *, fitting: bool) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            names = np.asarray([str(c) for c in X.columns], dtype=object)
            if fitting:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_") and not np.array_equal(names, self.feature_names_in_):
                raise InputError("DeepPCA: the columns differ from those it was fitted on.")
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2:
            raise InputError(f"DeepPCA takes a 2D table; got shape {arr.shape}.")
        if not fitting and arr.shape[1] != len(self.mean_):
            raise InputError(f"DeepPCA was fitted on {len(self.mean_)} features; got {arr.shape[1]}.")
        if not np.isfinite(arr).all():
            raise InputError("DeepPCA: deep features contain NaN or infinite values.")
        self.n_features_in_ = arr.shape[1] if fitting else self.n_features_in_
        return arr

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


@dataclass
class PCAReport:
    """In-fold PCA of deep features: one row per fold.

    Attributes
    ----------
    table : DataFrame
        ``fold, n_train, n_features, n_components, explained_variance`` (cumulative ratio of the
        kept components on the fold's training rows), ``components_for_95`` (how many reach 95 %).
    transformed : dict
        fold -> DataFrame of every case's component scores (fitted on the fold's training rows).
    """

    table: pd.DataFrame
    transformed: dict[str, pd.DataFrame]

    def summary(self) -> dict[str, float]:
        """Mean / min / max cumulative explained variance over the folds."""
        ev = self.table["explained_variance"]
        return {"mean": float(ev.mean()), "min": float(ev.min()), "max": float(ev.max()),
                "n_components": int(self.table["n_components"].max())}


def in_fold_pca(folds: Mapping[str, FoldFeatures], manifest: Any, *, n_components: int = 64,
                scale: bool = True) -> PCAReport:
    """PCA of each fold's deep features fitted on that fold's training cases only (seed 002: 64).

    Parameters
    ----------
    folds : dict
        fold -> :class:`FoldFeatures`.
    manifest : Manifest or DataFrame
        Included, labelled rows with the outer-fold columns.
    n_components : int, default=64
    scale : bool, default=True

    Returns
    -------
    PCAReport
    """
    from her2dlr.learn.cv import outer_folds

    table = manifest.included if hasattr(manifest, "included") else manifest
    if "label" in table.columns:
        table = table[table["label"].notna()]
    check_out_of_fold(folds, table)
    rows, transformed = [], {}
    ids = table["case_id"].astype(str).to_numpy()
    for fold, ff in folds.items():
        scheme = "holdout" if fold == "holdout" else "kfold"
        tr = next(t for name, _, t, _ in outer_folds(table, scheme) if name == fold)
        train_ids = ids[tr]
        X = ff.features.loc[[c for c in ids if c in ff.features.index]]
        pca = DeepPCA(n_components, scale=scale).fit(ff.features.loc[train_ids])
        transformed[fold] = pca.transform(X)
        cum = np.cumsum(pca.explained_variance_ratio_)
        rows.append({"fold": fold, "n_train": len(train_ids), "n_features": ff.embed_dim,
                     "n_components": pca.n_components_, "explained_variance": float(cum[-1]),
                     "components_for_95": int(np.searchsorted(cum, 0.95) + 1) if cum[-1] >= 0.95 else None})
    return PCAReport(pd.DataFrame(rows), transformed)


def write_fold_features(folds: Mapping[str, FoldFeatures], features_dir: str | os.PathLike[str], arch: str, *,
                        extra: Mapping[str, Any] | None = None, name: str | None = None) -> Path:
    """Write ``<features_dir>/<name>/<fold>.parquet`` + ``provenance.csv`` and ``<name>.json``.

    ``name`` defaults to ``deep_<arch>``; the DSFR features of the segmentation networks use
    ``dsfr_<arch>`` (:func:`her2dlr.runfolder.dsfr_features_name`). The folder is replaced as a
    whole (written beside, then renamed). Returns the folder.
    """
    if not folds:
        raise InputError("No fold features to write (no fold networks).")
    name = name or features_folder_name(arch)
    target = Path(features_dir) / name
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        for fold, ff in folds.items():
            ff.features.to_parquet(tmp / f"{fold}.parquet", index=True)
        prov = pd.concat([ff.provenance() for ff in folds.values()], ignore_index=True)
        prov.to_csv(tmp / PROVENANCE, index=False)
    first = next(iter(folds.values()))
    info = {"arch": arch, "embed_dim": first.embed_dim, "folds": list(folds), "n_cases": len(first.features),
            "layout": "one table per outer fold; a fold's network never saw that fold's test cases",
            **dict(extra or {})}
    write_text_atomic(Path(features_dir) / f"{name}.json", json.dumps(info, indent=2, default=str))
    return target


def read_fold_features(folder: str | os.PathLike[str], *, command: str = "her2dlr extract deep"
                       ) -> dict[str, FoldFeatures]:
    """Read what :func:`write_fold_features` wrote (fold -> :class:`FoldFeatures`).

    Parameters
    ----------
    folder : path-like
    command : str, default="her2dlr extract deep"
        The command that writes the folder, named in the error when it is missing.

    Raises
    ------
    InputError
        No such folder, or no ``provenance.csv`` in it.
    """
    folder = Path(folder)
    prov_path = folder / PROVENANCE
    if not folder.is_dir() or not prov_path.is_file():
        raise InputError(f"No per-fold features in {folder} (run `{command}` first).")
    prov = pd.read_csv(prov_path, dtype={"case_id": str, "fold": str})
    out: dict[str, FoldFeatures] = {}
    for fold, part in prov.groupby("fold", sort=False):
        path = folder / f"{fold}.parquet"
        if not path.is_file():
            raise InputError(f"{prov_path} names fold '{fold}' but {path} is missing.")
        frame = pd.read_parquet(path)
        frame.index = frame.index.astype(str)
        frame.index.name = "case_id"
        part = part.set_index("case_id")
        ckpt = part["checkpoint"].dropna()
        val = (frozenset(part.index[part["inner_validation"].fillna(False).astype(bool)])
               if "inner_validation" in part.columns else frozenset())
        out[str(fold)] = FoldFeatures(str(fold), frame, part["prob"].rename("prob"),
                                      frozenset(part.index[part["seen_in_training"].astype(bool)]),
                                      str(ckpt.iloc[0]) if len(ckpt) else None, val_cases=val)
    return out


@dataclass
class DeepFeaturesResult:
    """What :func:`extract_deep_features` wrote.

    Attributes
    ----------
    folder : Path
        ``RUN/features/deep_<arch>`` (one table per fold).
    folds : dict
        fold -> :class:`FoldFeatures`.
    pca : PCAReport
        In-fold PCA (``RUN/features/deep_<arch>_pca.csv``).
    bookkeeping : DataFrame
        :func:`check_out_of_fold` of every fold and case.
    """

    folder: Path
    folds: dict[str, FoldFeatures]
    pca: PCAReport
    bookkeeping: pd.DataFrame


def extract_fold_features(checkpoints: Mapping[str, Any], manifest: Any, *, n_jobs: int = 1,
                          batch_size: int = 64, progress: bool = False) -> dict[str, FoldFeatures]:
    """Embed every labelled case with every fold network of ``checkpoints``.

    Parameters
    ----------
    checkpoints : dict
        fold -> :class:`~her2dlr.deep.checkpoints.FoldCheckpoint`.
    manifest : Manifest or DataFrame
        Rows with ``image`` and ``mask`` / ``bbox``.
    n_jobs : int, default=1
        Threads reading images.
    batch_size : int, default=64
    progress : bool, default=False

    Returns
    -------
    dict
        fold -> :class:`FoldFeatures` (checked with :func:`check_out_of_fold`).
    """
    from her2dlr.deep.checkpoints import roi_spec_of
    from her2dlr.deep.data import manifest_rois

    table = manifest.included if hasattr(manifest, "included") else manifest
    if "label" in table.columns:
        table = table[table["label"].notna()]
    ids = table["case_id"].astype(str).tolist()
    inputs: dict[str, np.ndarray] = {}  # one array per distinct ROI setting
    out: dict[str, FoldFeatures] = {}
    items: Any = list(checkpoints.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="deep features by fold", leave=False)
    for fold, ck in items:
        spec = roi_spec_of(ck.meta)
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key not in inputs:
            inputs[key] = manifest_rois(table, spec, n_jobs=n_jobs)
        net = fold_features([(fold, ck.load, ck.train_cases, str(ck.path))], inputs[key], ids, batch_size=batch_size)
        out[fold] = apply_checkpoint_record(net[fold], ck.meta, ck.load, inputs[key], batch_size=batch_size)
        out[fold].meta.update({"arch": ck.meta.get("arch"), "roi": spec.to_dict()})
    check_out_of_fold(out, table)
    return out


def extract_deep_features(study: Any, *, arch: str = "densenet3block", n_components: int = 64, n_jobs: int = 1,
                          progress: bool = True) -> DeepFeaturesResult:
    """The study's deep features: every fold network under ``RUN/deep/<arch>`` embeds every case.

    Writes ``RUN/features/deep_<arch>/<fold>.parquet`` + ``provenance.csv``,
    ``RUN/features/deep_<arch>.json`` and ``RUN/features/deep_<arch>_pca.csv`` (the in-fold PCA's
    explained variance per fold).

    Raises
    ------
    InputError
        No fold checkpoints (train the networks first), or a network trained on its fold's test cases.
    """
    from her2dlr.cohort.build import manifest_path
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.deep.checkpoints import find_fold_checkpoints
    from her2dlr.deep.stage import deep_dir

    manifest = Manifest.load(manifest_path(study))
    checkpoints = find_fold_checkpoints(deep_dir(study, arch), manifest=manifest)
    folds = extract_fold_features(checkpoints, manifest, n_jobs=n_jobs, progress=progress)
    bookkeeping = check_out_of_fold(folds, manifest.included[manifest.included["label"].notna()])
    pca = in_fold_pca(folds, manifest, n_components=n_components)
    features_dir = study.paths.features
    folder = write_fold_features(folds, features_dir, arch, extra={"pca_components": n_components,
                                                                   "pca": pca.summary()})
    write_csv_atomic(pca.table, study.paths.deep_pca(arch))
    return DeepFeaturesResult(folder, folds, pca, bookkeeping)
