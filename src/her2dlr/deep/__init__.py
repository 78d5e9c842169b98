"""Deep learning: networks, ROI data, training, cross-validated predictions, inference.

Modules: :mod:`~her2dlr.deep.networks` (``build_network``), :mod:`~her2dlr.deep.transforms`
(augmentation), :mod:`~her2dlr.deep.data` (ROI arrays from the manifest),
:mod:`~her2dlr.deep.train` (one training run), :mod:`~her2dlr.deep.cv` (the study's outer
folds, predictions, ``predict_images``). Imported lazily: ``import her2dlr`` does not load torch.
"""

__all__: list[str] = []
