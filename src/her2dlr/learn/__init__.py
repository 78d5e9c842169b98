"""Learning: feature selection, model zoo, nested cross-validation, thresholds.

Submodules (imported on demand so the CLI stays fast):

* :mod:`her2dlr.learn.selection` - feature selectors as scikit-learn transformers
* :mod:`her2dlr.learn.zoo` - model registry and hyper-parameter grids
* :mod:`her2dlr.learn.tuning` - pipeline + inner search picking by median AUC
* :mod:`her2dlr.learn.cv` - outer loop from the manifest (hold-out, repeated group k-fold)
* :mod:`her2dlr.learn.thresholds` - operating thresholds chosen on training predictions
* :mod:`her2dlr.learn.settings` - the ``learn:`` section of the study file
* :mod:`her2dlr.learn.stage` - runs the settings over a feature table and writes the run-folder outputs

(:mod:`her2dlr.learn.clinical` - the clinical model - is written separately.)
"""
