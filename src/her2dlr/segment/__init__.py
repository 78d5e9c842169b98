"""Lesion segmentation (2D and 3D): networks, training, inference, quality metrics, figures and DSFR features."""
