"""Deep learning: networks, ROI data, training, cross-validated predictions, inference.

Modules: :mod:`~her2dlr.deep.networks` (``build_network``), :mod:`~her2dlr.deep.transforms`
(augmentation), :mod:`~her2dlr.deep.data` (ROI arrays from the manifest),
:mod:`~her2dlr.deep.train` (one training run), :mod:`~her2dlr.deep.cv` (the study's outer
folds, predictions, ``predict_images``), :mod:`~her2dlr.deep.features` and
:mod:`~her2dlr.deep.dlr` (per-fold deep features, seed 002's DLR models),
:mod:`~her2dlr.deep.dsfr_features` and :mod:`~her2dlr.deep.dsfr` (the segmentation networks'
DSFR features and seed 003's models). Imported lazily: ``import her2dlr`` does not load torch.
"""

__all__: list[str] = []
