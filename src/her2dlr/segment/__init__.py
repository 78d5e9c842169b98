"""Lesion segmentation (2D and 3D): networks, inputs and targets, training, post-processing, inference,
quality metrics, figures and DSFR features.

Modules: :mod:`~her2dlr.segment.networks` (``build_seg_network``), :mod:`~her2dlr.segment.data`
(``SegSpec``, inputs, targets, ``paste_back``), :mod:`~her2dlr.segment.augment` (joint image and
mask augmentation), :mod:`~her2dlr.segment.train` (``train_segmenter``, checkpoints),
:mod:`~her2dlr.segment.postprocess` and :mod:`~her2dlr.segment.infer` (``segment_images``),
:mod:`~her2dlr.segment.metrics` (Dice, IoU, HD95, detection), :mod:`~her2dlr.segment.figures`
(best / median / worst montage), :mod:`~her2dlr.segment.dsfr` (seed 003's features).
Imported lazily: ``import her2dlr.segment`` does not load torch.
"""

__all__: list[str] = []
