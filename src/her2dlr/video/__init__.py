"""Ultrasound video (seed 001): frame QC, per-frame lesion localisation with temporal rejection and
interpolation, per-frame radiomics, time-frequency features of each feature curve, and a probe-sweep
simulator for tests and benchmarks.

Modules: :mod:`~her2dlr.video.simulate` (sweeps from real stills), :mod:`~her2dlr.video.timefreq`
(14 time-domain + 10 frequency-domain features per curve), :mod:`~her2dlr.video.qc` (blank, frozen,
duplicated, colour Doppler and overlay frames), :mod:`~her2dlr.video.track` (template tracker,
rejection, interpolation, smoothing), :mod:`~her2dlr.video.localise` (annotations, segmentation
network or tracker), :mod:`~her2dlr.video.features` (per-frame radiomics, the ``video_tf`` table).
Imported lazily: ``import her2dlr.video`` does not load torch.
"""

__all__: list[str] = []
