"""Feature harmonisation between acquisition sites: ComBat-style location/scale alignment.

Radiomics features of the same tissue differ between scanners and sites (gain, resolution,
post-processing). ComBat (Johnson, Li & Rabinovic 2007, Biostatistics 8:118-127; applied to
radiomics by Fortin et al. 2018 and Orlhac et al. 2018) models feature ``g`` of case ``j`` at
site ``i`` as ``x = alpha_g + gamma_ig + delta_ig * e``: a per-site additive and multiplicative
shift of each feature, estimated with empirical-Bayes shrinkage across features and removed.

:class:`LocationScaleHarmoniser` applies that model to the case of an external validation:

* ``fit(X_ref)`` learns each feature's reference location and scale from the **training
  site** (the training rows only, like every other fitted step);
* ``transform(X)`` treats the rows it is given as **one batch from one site**: it estimates
  that batch's own location and scale of each feature (optionally shrunk by ComBat's
  empirical Bayes) and maps the batch onto the reference distribution.

``transform`` therefore uses the *unlabelled feature values of the batch it transforms*: it
is a transductive step. It never sees labels, but its output for one case depends on the
other cases of the batch, so it needs a batch of cases from the new site (``min_cases``), and
a study that uses it must say so. No covariates are modelled (the new site has no labels):
a batch whose class mix differs strongly from the reference's is shifted along with it.

Written by hand: neuroCombat / neuroHarmonize need all sites, with covariates, at fit time
and are not scikit-learn transformers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from her2dlr.checks import check_choice, check_number
from her2dlr.errors import InputError

__all__ = ["LocationScaleHarmoniser", "external_probabilities", "harmonise_to_reference"]

#: IQR of a standard normal: scales the IQR so that it estimates an SD.
_IQR_NORMAL = 1.3489795003921634


def _location_scale(X: np.ndarray, location: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-column location and scale, ignoring missing values (NaN where a column is all missing)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if location == "mean":
            return np.nanmean(X, axis=0), np.nanstd(X, axis=0, ddof=1)
        q1, med, q3 = np.nanpercentile(X, [25, 50, 75], axis=0)
        return med, (q3 - q1) / _IQR_NORMAL


def _empirical_bayes(Z: np.ndarray, *, max_iter: int = 100, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """ComBat's parametric empirical-Bayes site effects of one batch of standardised features.

    ``Z`` (n_cases, n_features) are the batch's values standardised by the reference. Returns the
    shrunk additive shifts ``gamma*`` and variances ``delta2*`` per feature: normal prior on
    ``gamma`` and inverse-gamma prior on ``delta2``, both fitted across features by the method
    of moments, posterior means iterated to convergence (Johnson et al. 2007, section 3.2).
    """
    n = np.sum(np.isfinite(Z), axis=0).astype(np.float64)
    gamma_hat = np.nanmean(Z, axis=0)
    delta_hat = np.nanvar(Z, axis=0, ddof=1)
    ok = np.isfinite(gamma_hat) & np.isfinite(delta_hat) & (delta_hat > 0)
    gamma_star, delta_star = gamma_hat.copy(), delta_hat.copy()
    if ok.sum() < 3:
        return gamma_star, delta_star
    g_bar = float(np.mean(gamma_hat[ok]))
    tau2 = float(np.var(gamma_hat[ok], ddof=1))
    m = float(np.mean(delta_hat[ok]))
    s2 = float(np.var(delta_hat[ok], ddof=1))
    if tau2 <= 0 or s2 <= 0:
        return gamma_star, delta_star
    a = (2.0 * s2 + m**2) / s2
    b = (m * s2 + m**3) / s2
    g_old, d_old = gamma_hat[ok], delta_hat[ok]
    Zok, nok = Z[:, ok], n[ok]
    for _ in range(max_iter):
        g_new = (nok * tau2 * gamma_hat[ok] + d_old * g_bar) / (nok * tau2 + d_old)
        ss = np.nansum((Zok - g_new) ** 2, axis=0)
        d_new = (b + 0.5 * ss) / (nok / 2.0 + a - 1.0)
        change = max(np.max(np.abs(g_new - g_old) / np.maximum(np.abs(g_old), 1e-12)),
                     np.max(np.abs(d_new - d_old) / np.maximum(d_old, 1e-12)))
        g_old, d_old = g_new, d_new
        if change < tol:
            break
    gamma_star[ok], delta_star[ok] = g_old, d_old
    return gamma_star, delta_star


class LocationScaleHarmoniser(TransformerMixin, BaseEstimator):
    """Map a batch of cases from one site onto the training site's feature distribution.

    See the module docstring: ``fit`` learns the reference location/scale of each feature from
    the training rows; ``transform`` estimates the location/scale of the batch it is given (one
    site) and removes the difference: ``(x - loc_batch) / scale_batch * scale_ref + loc_ref``.
    Transforming the training rows themselves returns them unchanged (up to rounding).

    Parameters
    ----------
    location : {"mean", "median"}, default="mean"
        ``"mean"``: mean and SD (ComBat); ``"median"``: median and IQR / 1.349, robust to
        outlying cases and skewed features (no empirical Bayes).
    empirical_bayes : bool, default=True
        Shrink the batch's per-feature shifts and variances towards their average over
        features (ComBat's parametric empirical Bayes); only with ``location="mean"``.
    min_cases : int, default=10
        Fewest cases a batch must have; smaller batches raise (their location and scale
        would be noise).

    Attributes
    ----------
    location_ : ndarray of shape (n_features_in_,)
        Reference location of each feature.
    scale_ : ndarray of shape (n_features_in_,)
        Reference scale (SD, or IQR / 1.349).
    n_features_in_ : int
    feature_names_in_ : ndarray, only when fitted on a DataFrame

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"a": rng.normal(0, 1, 200), "b": rng.normal(5, 2, 200)})
    >>> site = pd.DataFrame({"a": rng.normal(3, 2, 100), "b": rng.normal(9, 1, 100)})
    >>> out = LocationScaleHarmoniser(empirical_bayes=False).fit(ref).transform(site)
    >>> bool(np.allclose(out.mean(), ref.mean()) and np.allclose(out.std(), ref.std()))
    True
    """

    def __init__(self, *, location: str = "mean", empirical_bayes: bool = True, min_cases: int = 10) -> None:
        self.location = location
        self.empirical_bayes = empirical_bayes
        self.min_cases = min_cases

    def _check_params(self) -> None:
        check_choice(self, "location", self.location, ("mean", "median"))
        check_number(self, "min_cases", self.min_cases, low=2, integer=True)
        if self.empirical_bayes and self.location != "mean":
            raise InputError("LocationScaleHarmoniser: empirical_bayes=True needs location='mean' "
                             "(ComBat's model is on means and variances); set empirical_bayes=False.")

    def _values(self, X: Any, *, reset: bool) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            X = X.replace([np.inf, -np.inf], np.nan)
        Xa = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=reset,
                           ensure_min_samples=1)
        if Xa.shape[0] < self.min_cases:
            raise InputError(f"LocationScaleHarmoniser: a batch of {Xa.shape[0]} case(s) is too small to estimate "
                             f"a site's feature distribution (min_cases={self.min_cases}).")
        return np.where(np.isinf(Xa), np.nan, Xa)

    def fit(self, X: Any, y: Any = None) -> LocationScaleHarmoniser:
        """Learn the reference location and scale of each feature from the training rows.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_cases, n_features)
            Training-site rows (missing values allowed and ignored).
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        Xa = self._values(X, reset=True)
        self.location_, self.scale_ = _location_scale(Xa, self.location)
        return self

    def transform(self, X: Any) -> Any:
        """Align the batch ``X`` (one site) to the reference.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_cases, n_features_in_)
            At least ``min_cases`` rows from one site.

        Returns
        -------
        DataFrame (same index and columns) or ndarray of shape (n_cases, n_features_in_)
            Features whose batch scale is zero or missing are only shifted; features constant in
            the reference become that constant.
        """
        check_is_fitted(self, "location_")
        Xa = self._values(X, reset=False)
        loc, scale = _location_scale(Xa, self.location)
        ref_scale = np.where(np.isfinite(self.scale_) & (self.scale_ > 0), self.scale_, 0.0)
        if self.empirical_bayes:
            safe_ref = np.where(ref_scale > 0, ref_scale, 1.0)
            Z = (Xa - self.location_) / safe_ref
            gamma, delta2 = _empirical_bayes(Z)
            sd = np.sqrt(np.where(np.isfinite(delta2) & (delta2 > 0), delta2, 1.0))
            gamma = np.where(np.isfinite(gamma), gamma, 0.0)
            out = (Z - gamma) / sd * ref_scale + self.location_
        else:
            unit = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
            shift = np.where(np.isfinite(loc), loc, 0.0)
            gain = np.where(np.isfinite(scale) & (scale > 0), ref_scale, 1.0)
            gain = np.where(ref_scale > 0, gain, 0.0)
            out = (Xa - shift) / unit * gain + self.location_
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out, index=X.index, columns=X.columns)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output features (those of the input)."""
        check_is_fitted(self, "location_")
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.requires_fit = True
        return tags


def harmonise_to_reference(reference: pd.DataFrame, target: pd.DataFrame, **options: Any) -> pd.DataFrame:
    """Align the features of ``target`` (one site, unlabelled) to those of ``reference``.

    Parameters
    ----------
    reference : DataFrame of shape (n_ref, n_features)
        Training-site features.
    target : DataFrame of shape (n_target, n_features)
        New-site features, same columns (matched by name).
    **options
        Passed to :class:`LocationScaleHarmoniser`.

    Returns
    -------
    DataFrame
        ``target`` aligned: its index, the reference's columns in the reference's order.

    Raises
    ------
    InputError
        When ``target`` lacks columns of ``reference``.
    """
    missing = [c for c in reference.columns if c not in target.columns]
    if missing:
        raise InputError(f"harmonise_to_reference: the target lacks {len(missing)} feature(s) of the reference, "
                         f"e.g. {missing[:3]}.")
    model = LocationScaleHarmoniser(**options).fit(reference)
    return model.transform(target[reference.columns])


def external_probabilities(model: Any, reference: pd.DataFrame, batch: pd.DataFrame, *, transductive: bool = False,
                           **options: Any) -> np.ndarray:
    """Positive-class probabilities of a fitted model on an external batch, harmonised first only when asked.

    Parameters
    ----------
    model : fitted classifier or pipeline with ``predict_proba``
        Fitted on ``reference``'s columns.
    reference : DataFrame
        The training rows' features (the harmoniser's reference; unused when not transductive).
    batch : DataFrame
        The external cases' features (columns matched by name).
    transductive : bool, default False
        ``False``: each case is scored on its own features, so its probability does not depend on
        the other cases of the batch. ``True``: the batch is first aligned to the reference
        (:func:`harmonise_to_reference`), which uses every case's unlabelled features: a case's
        probability then depends on the batch it came with, and every number computed from it must
        be labelled transductive.
    **options
        Passed to :class:`LocationScaleHarmoniser` when ``transductive``.

    Returns
    -------
    ndarray of shape (n_cases,)
    """
    X = batch[list(reference.columns)]
    if transductive:
        X = harmonise_to_reference(reference, X, **options)
    return np.asarray(model.predict_proba(X)[:, 1], dtype=float)
