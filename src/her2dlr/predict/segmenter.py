"""The automatic mask of a new case, from the segmentation network a ``roi: auto`` model carries."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from her2dlr.errors import InputError
from her2dlr.learn.artefact import ModelArtefact

__all__ = ["automatic_mask"]


@functools.lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int) -> tuple[Any, Any, dict[str, Any], str]:
    from her2dlr.segment.checkpoints import load_segmenter

    model, spec, meta = load_segmenter(path)
    return model, spec, meta, hashlib.sha256(Path(path).read_bytes()).hexdigest()


def automatic_mask(artefact: ModelArtefact, image: str | os.PathLike[str], *, box: Any = None,
                   mask: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Segment the lesion of ``image`` with the artefact's segmentation network.

    A box-prompted network reads ``box``, else the bounding box of ``mask`` (as a reader would
    draw it); an unprompted one reads the image alone. The post-processing is the one the
    training masks had.

    Returns
    -------
    mask : ndarray of bool
    info : dict
        ``network`` (arch), ``sha256``, ``box_prompt``, ``confidence``, ``empty``.

    Raises
    ------
    InputError
        The model carries no segmentation network, a box-prompted network without a box, or an
        empty segmentation (the case has no ROI: never the whole image).
    """
    from her2dlr.segment.infer import segment_images
    from her2dlr.segment.postprocess import PostSettings

    path = artefact.segmenter_path
    if path is None:
        raise InputError(f"Model '{artefact.name}' reads features of automatic masks (roi: auto) but carries no "
                         "segmentation network: train it with `her2dlr train seg STUDY --final`, then `her2dlr learn "
                         "run` again; or give the case's feature row with --features.")
    model, spec, meta, digest = _load(str(path), path.stat().st_mtime_ns)
    if spec.box_prompt and box is None and mask is not None:
        from her2dlr.io.images import mask_to_bbox, read_mask_array

        box = mask_to_bbox(read_mask_array(mask) > 0)
    if spec.box_prompt and box is None:
        raise InputError(f"Model '{artefact.name}' finds the lesion inside the reader's box: give --box x,y,w,h.")
    post = PostSettings(**dict(meta.get("extra", {}).get("post") or {}))
    pred = segment_images(model, [str(image)], boxes=[tuple(box)] if spec.box_prompt else None, spec=spec, post=post,
                          progress=False)[0]
    info = {"network": meta["config"]["arch"], "sha256": digest, "box_prompt": bool(spec.box_prompt),
            "confidence": float(pred.confidence), "empty": bool(pred.empty)}
    if pred.empty:
        raise InputError(f"The segmentation network of model '{artefact.name}' found no lesion in {image}: the case "
                         "has no automatic ROI. Give the lesion with --mask or, for a box-prompted network, --box.")
    return pred.mask, info
