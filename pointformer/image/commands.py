"""The flows behind the 2D commands (their argument parsing is in ``pointformer.cli``):
``pointformer evaluate-model`` and ``pointformer infer`` on an image checkpoint."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from pointformer.image.evaluation import CocoResult, ImagePrediction, write_coco_results
from pointformer.image.overlay import write_overlay
from pointformer.image.predictor import ImagePredictor
from pointformer.io.atomic import atomic_write_json

__all__ = ["ImageEvaluation", "evaluate_image_checkpoint", "ImageInference", "infer_image_file"]

@dataclass
class ImageEvaluation:
    """What ``evaluate_image_checkpoint`` measured and wrote."""

    split: str
    num_images: int
    step: Optional[int]
    result: CocoResult
    results_json: Path
    metrics_json: Path


def evaluate_image_checkpoint(checkpoint: str | os.PathLike, overrides: Sequence[str] = (), *,
                              split: Optional[str] = None, limit: Optional[int] = None,
                              out: Optional[str | os.PathLike] = None, device: str = "auto") -> ImageEvaluation:
    """COCO segm AP of a 2D checkpoint on a labelled split; writes ``coco_results.json`` (RLE, the
    COCO results format) and ``metrics.json`` to ``out`` (default: ``<run>/eval_<split>``)."""
    predictor = ImagePredictor.from_checkpoint(checkpoint, overrides, device=device)
    split = split or predictor.settings.data.val_split
    if split is None:
        raise ValueError("the checkpoint's config has no data.val_split; pass --split")
    dataset = predictor.dataset(split, limit=limit)
    predictions = predictor.predict_dataset(dataset)
    result = predictor.evaluate(dataset, predictions)
    folder = Path(out) if out is not None else Path(checkpoint).resolve().parent.parent / f"eval_{split}"
    results_json = write_coco_results(folder / "coco_results.json", predictions, dataset.class_to_category_id)
    metrics_json = atomic_write_json(folder / "metrics.json", {"split": split, "checkpoint": str(checkpoint),
                                                               "step": predictor.step, **result.to_dict()}, indent=2)
    return ImageEvaluation(split=split, num_images=len(dataset), step=predictor.step, result=result,
                           results_json=Path(results_json), metrics_json=Path(metrics_json))


@dataclass
class ImageInference:
    """What ``infer_image_file`` predicted and wrote."""

    prediction: ImagePrediction
    class_names: list[str]
    overlay: Path
    instances_json: Path


def infer_image_file(checkpoint: str | os.PathLike, image: str | os.PathLike, *,
                     out: Optional[str | os.PathLike] = None, overrides: Sequence[str] = (), device: str = "auto",
                     score_threshold: float = 0.3) -> ImageInference:
    """Predict the instances of one image file; write ``<stem>_instances.png`` (the overlay) and
    ``<stem>_instances.json`` (class, score, pixel count, bbox of every instance above the threshold)
    into ``out`` (default: the image's folder)."""
    image = Path(image)
    predictor = ImagePredictor.from_checkpoint(checkpoint, overrides, device=device)
    prediction, pixels = predictor.predict_file(image)
    names = predictor.class_names
    folder = Path(out) if out is not None else image.parent
    overlay = write_overlay(folder / f"{image.stem}_instances.png", pixels.numpy(), prediction, names,
                            score_threshold=score_threshold)
    instances = []
    for i in sorted(range(len(prediction.scores)), key=lambda i: -float(prediction.scores[i])):
        score = float(prediction.scores[i])
        mask = prediction.masks[i]
        if score < score_threshold or not mask.any():
            continue
        rows, cols = mask.any(1).nonzero()[0], mask.any(0).nonzero()[0]
        instances.append({"class": names[int(prediction.classes[i])], "class_index": int(prediction.classes[i]),
                          "score": round(score, 4), "pixels": int(mask.sum()),
                          "bbox_xywh": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                                        int(rows[-1] - rows[0] + 1)]})
    instances_json = atomic_write_json(folder / f"{image.stem}_instances.json",
                                       {"image": str(image), "checkpoint": str(checkpoint),
                                        "score_threshold": score_threshold, "instances": instances}, indent=2)
    return ImageInference(prediction=prediction, class_names=names, overlay=Path(overlay),
                          instances_json=Path(instances_json))
