"""Lesion segmentation (2D and 3D): networks, inputs and targets, training, post-processing, inference.

Modules: :mod:`~her2dlr.segment.networks` (``build_seg_network``), :mod:`~her2dlr.segment.data`
(``SegSpec``, inputs, targets, ``paste_back``), :mod:`~her2dlr.segment.augment` (joint image and
mask augmentation), :mod:`~her2dlr.segment.train` (``train_segmenter``, checkpoints),
:mod:`~her2dlr.segment.postprocess` and :mod:`~her2dlr.segment.infer` (``segment_images``).
Imported lazily: ``import her2dlr.segment`` does not load torch.
"""

__all__: list[str] = []
