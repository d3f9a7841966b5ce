"""COCO instance-segmentation evaluation (segm AP, AP50, AP75) through pycocotools' ``COCOeval``.

Predictions are masks at each image's original resolution with contiguous classes; they are
encoded as compressed RLE with ``category_id`` mapped back to the file's COCO ids — the COCO results
format, which :func:`write_coco_results` writes and :func:`evaluate_coco` hands to pycocotools
(``COCO.loadRes`` + ``COCOeval(iouType="segm")``, unchanged protocol: crowd regions are ignored,
at most 100 detections per image by score, areas small / medium / large at 32² and 96²).

The evaluation covers every image of the GT given (``coco_gt.getImgIds()``), not only the images
that have predictions: an image without predictions counts its instances as missed.
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pointformer.image.coco import coco_from_dataset
from pointformer.io.atomic import atomic_write_json


@dataclass
class ImagePrediction:
    """The instances predicted for one image.

    masks: bool [Q, H0, W0] at the image's ORIGINAL resolution; classes: int [Q] contiguous classes;
    scores: float [Q] confidence (ranks the detections).
    """

    image_id: int
    masks: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


@dataclass
class EncodedPrediction:
    """An :class:`ImagePrediction` with its masks as compressed RLE (``counts`` str), about 1/100 of
    the memory of boolean masks: what to keep when a whole split's predictions are gathered.

    size: (H0, W0); rles: Q RLE dicts; classes: int [Q]; scores: float [Q].
    """

    image_id: int
    size: tuple[int, int]
    rles: list[dict[str, Any]]
    classes: np.ndarray
    scores: np.ndarray


AnyPrediction = Union[ImagePrediction, EncodedPrediction]


def encode_prediction(prediction: ImagePrediction) -> EncodedPrediction:
    """Encode the masks of ``prediction`` (bool [Q, H0, W0]) as COCO compressed RLE."""
    masks = np.asarray(prediction.masks)
    if masks.ndim != 3:
        raise ValueError(f"prediction for image id {prediction.image_id}: masks must have shape [Q, H0, W0], "
                         f"got {list(masks.shape)}")
    _check_mask_dtype(masks, f"prediction for image id {prediction.image_id}")
    rles = []
    if masks.shape[0]:
        for rle in mask_utils.encode(np.asfortranarray(masks.astype(bool).transpose(1, 2, 0).astype(np.uint8))):
            rles.append({"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")})
    return EncodedPrediction(image_id=int(prediction.image_id), size=(int(masks.shape[1]), int(masks.shape[2])),
                             rles=rles, classes=np.asarray(prediction.classes), scores=np.asarray(prediction.scores))


def _check_mask_dtype(masks: np.ndarray, where: str) -> None:
    if masks.size and masks.dtype != bool and not (np.issubdtype(masks.dtype, np.integer)
                                                   and masks.min() >= 0 and masks.max() <= 1):
        raise ValueError(f"{where}: masks must be boolean (or 0/1 integers), got dtype {masks.dtype}")


@dataclass
class CocoResult:
    """COCO segm metrics in [0, 1]; NaN where the GT has no instance (an area range, a class)."""

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    per_class_ap: dict[str, float] = field(default_factory=dict)
    num_predictions: int = 0
    num_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Flat metrics (``ap``, ``ap50``, ..., ``ap/<class name>``) for logs and JSON."""
        out: dict[str, Any] = {"ap": self.ap, "ap50": self.ap50, "ap75": self.ap75, "ap_small": self.ap_small,
                               "ap_medium": self.ap_medium, "ap_large": self.ap_large,
                               "num_predictions": self.num_predictions, "num_images": self.num_images}
        out.update({f"ap/{name}": value for name, value in self.per_class_ap.items()})
        return out

    def table(self) -> str:
        """A plain-text table: the summary line, then AP per class."""
        def pct(v: float) -> str:
            return "   -" if math.isnan(v) else f"{100 * v:5.1f}"

        lines = ["AP     AP50   AP75   APs    APm    APl    (COCO segm, %)",
                 "  ".join(pct(v) for v in (self.ap, self.ap50, self.ap75, self.ap_small, self.ap_medium,
                                            self.ap_large)),
                 f"{self.num_predictions} predictions on {self.num_images} images", "", "class                AP"]
        lines += [f"{name[:20]:<20} {pct(value)}" for name, value in self.per_class_ap.items()]
        return "\n".join(lines)


def _check_prediction(prediction: AnyPrediction, coco_gt: COCO, num_classes: int) -> None:
    image = coco_gt.imgs.get(int(prediction.image_id))
    where = f"prediction for image id {prediction.image_id}"
    if image is None:
        raise ValueError(f"{where}: the image is not in the evaluation GT")
    expected = (image["height"], image["width"])
    if isinstance(prediction, EncodedPrediction):
        count, size = len(prediction.rles), tuple(prediction.size)
        if any(tuple(rle["size"]) != size for rle in prediction.rles):
            raise ValueError(f"{where}: every RLE must have the prediction's size {list(size)}")
        if size != expected and count:
            raise ValueError(f"{where}: masks must be at the original resolution {list(expected)}, got {list(size)}")
    else:
        masks = np.asarray(prediction.masks)
        if masks.ndim != 3 or tuple(masks.shape[1:]) != expected:
            raise ValueError(f"{where}: masks must have shape [Q, {expected[0]}, {expected[1]}] (the original "
                             f"resolution), got {list(masks.shape)}")
        _check_mask_dtype(masks, where)
        count = masks.shape[0]
    classes, scores = np.asarray(prediction.classes), np.asarray(prediction.scores)
    if classes.shape != (count,) or scores.shape != (count,):
        raise ValueError(f"{where}: classes and scores must have shape [{count}], got "
                         f"{list(classes.shape)} and {list(scores.shape)}")
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"{where}: classes must lie in [0, {num_classes}), got [{classes.min()}, {classes.max()}]")
    if not np.isfinite(scores).all():
        raise ValueError(f"{where}: scores contain NaN or inf")


def coco_results(predictions: Sequence[AnyPrediction], class_to_category_id: Sequence[int]) -> list[dict[str, Any]]:
    """The COCO results list: ``{"image_id", "category_id", "segmentation": RLE (counts str), "score"}``
    per predicted mask, with contiguous classes mapped to COCO category ids."""
    results = []
    for prediction in predictions:
        encoded = prediction if isinstance(prediction, EncodedPrediction) else encode_prediction(prediction)
        for rle, cls, score in zip(encoded.rles, np.asarray(encoded.classes), np.asarray(encoded.scores)):
            results.append({"image_id": int(encoded.image_id), "category_id": int(class_to_category_id[int(cls)]),
                            "segmentation": {"size": list(rle["size"]), "counts": rle["counts"]},
                            "score": float(score)})
    return results


def _nan_if_missing(value: float) -> float:
    return float("nan") if value < 0 else float(value)


def evaluate_coco(coco_gt: COCO, predictions: Sequence[AnyPrediction],
                  class_to_category_id: Sequence[int]) -> CocoResult:
    """COCO segm AP of ``predictions`` against ``coco_gt`` over all of its images.

    predictions: :class:`ImagePrediction` or :class:`EncodedPrediction` (mixed freely).
    coco_gt: the split's GT (e.g. ``CocoInstanceDataset.coco``); class_to_category_id: contiguous
    class -> COCO category id. No predictions at all gives AP 0.0. Raises ValueError for a prediction
    on an image outside the GT, masks not at the original resolution, or classes out of range.
    """
    for prediction in predictions:
        _check_prediction(prediction, coco_gt, len(class_to_category_id))
    results = coco_results(predictions, class_to_category_id)
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes rejects an empty list; an empty detection set scores 0 on every GT instance
            coco_dt = coco_from_dataset({"images": list(coco_gt.dataset["images"]),
                                         "categories": list(coco_gt.dataset["categories"]), "annotations": []})
        evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]; area "all" = 0, maxDets 100 = last
    per_class = {}
    names = [str(coco_gt.cats[c].get("name", c)) for c in evaluator.params.catIds]
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        name = names[k] if names.count(names[k]) == 1 else f"{names[k]} ({category_id})"  # names may repeat
        per_class[name] = float(values.mean()) if values.size else float("nan")
    return CocoResult(ap=_nan_if_missing(stats[0]), ap50=_nan_if_missing(stats[1]), ap75=_nan_if_missing(stats[2]),
                      ap_small=_nan_if_missing(stats[3]), ap_medium=_nan_if_missing(stats[4]),
                      ap_large=_nan_if_missing(stats[5]), per_class_ap=per_class, num_predictions=len(results),
                      num_images=len(coco_gt.getImgIds()))


def write_coco_results(path: str | Path, predictions: Sequence[AnyPrediction],
                       class_to_category_id: Sequence[int]) -> Path:
    """Write the COCO results JSON (see :func:`coco_results`) atomically; returns the path."""
    return atomic_write_json(path, coco_results(predictions, class_to_category_id), indent=None)
