"""COCO segm evaluation: the wrapper equals pycocotools run independently; known answers; results JSON."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from pointformer.image.coco import CocoAnnotations, coco_from_dataset
from pointformer.image.evaluation import ImagePrediction, encode_prediction, evaluate_coco, write_coco_results
from pointformer.image.synthetic import generate_shapes2d


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory) -> CocoAnnotations:
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes2d(root, num_images=0, num_val_images=8, seed=21, size=64)
    return CocoAnnotations.load(root / "annotations" / "instances_val.json")


def _perfect(coco: CocoAnnotations) -> list[ImagePrediction]:
    out = []
    for image_id in coco.image_ids:
        inst = coco.instances(image_id)
        out.append(ImagePrediction(image_id, inst.masks, inst.classes, np.linspace(0.9, 0.5, len(inst.classes))))
    return out


def _noisy(coco: CocoAnnotations, seed: int) -> list[ImagePrediction]:
    """Dilated / eroded / shifted masks, some wrong classes, some spurious blobs, random scores."""
    rng = np.random.default_rng(seed)
    out = []
    for image_id in coco.image_ids:
        inst = coco.instances(image_id)
        masks, classes = [], []
        for mask, cls in zip(inst.masks, inst.classes):
            kind = rng.integers(0, 4)
            if kind == 0:
                mask = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, 4)))
            elif kind == 1:
                mask = ndimage.binary_erosion(mask, iterations=1)
            elif kind == 2:
                mask = np.roll(mask, int(rng.integers(-6, 7)), axis=1)
            masks.append(mask)
            classes.append(cls if rng.random() < 0.8 else (cls + 1) % coco.num_classes)
        for _ in range(int(rng.integers(0, 3))):
            blob = np.zeros_like(inst.crowd)
            y, x = rng.integers(0, blob.shape[0] - 10), rng.integers(0, blob.shape[1] - 10)
            blob[y:y + 10, x:x + 10] = True
            masks.append(blob)
            classes.append(int(rng.integers(0, coco.num_classes)))
        shape = (0,) + inst.crowd.shape
        out.append(ImagePrediction(image_id, np.stack(masks) if masks else np.zeros(shape, bool),
                                   np.asarray(classes, dtype=np.int64), rng.random(len(masks))))
    return out


def _independent_stats(coco: CocoAnnotations, predictions: list[ImagePrediction]) -> np.ndarray:
    """pycocotools on a results list built here by hand (own encoding, own category mapping)."""
    mapping = {0: 2, 1: 5, 2: 7, 3: 11}  # the synthetic set's categories, written down independently
    results = []
    for p in predictions:
        for mask, cls, score in zip(p.masks, p.classes, p.scores):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            results.append({"image_id": p.image_id, "category_id": mapping[int(cls)], "segmentation": rle,
                            "score": float(score)})
    gt = coco.evaluation_gt()
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.mark.parametrize("seed", [0, 1])
def test_wrapper_equals_pycocotools_on_imperfect_predictions(val: CocoAnnotations, seed: int) -> None:
    predictions = _noisy(val, seed)
    result = evaluate_coco(val.evaluation_gt(), predictions, val.class_to_category_id)
    stats = _independent_stats(val, predictions)
    assert 0.05 < stats[0] < 0.95  # a meaningful, imperfect case
    assert result.ap == pytest.approx(stats[0], abs=1e-12)
    assert result.ap50 == pytest.approx(stats[1], abs=1e-12)
    assert result.ap75 == pytest.approx(stats[2], abs=1e-12)
    for ours, theirs in ((result.ap_small, stats[3]), (result.ap_medium, stats[4]), (result.ap_large, stats[5])):
        assert (np.isnan(ours) and theirs == -1) or ours == pytest.approx(theirs, abs=1e-12)
    assert result.num_predictions == sum(len(p.scores) for p in predictions)
    assert result.num_images == len(val.image_ids)
    assert set(result.per_class_ap) == {"disc", "triangle", "square", "star"}


def test_encoded_predictions_give_the_same_numbers(tmp_path: Path, val: CocoAnnotations) -> None:
    predictions = _noisy(val, 4)
    encoded = [encode_prediction(p) for p in predictions]
    assert all(isinstance(rle["counts"], str) for e in encoded for rle in e.rles)
    gt = val.evaluation_gt()
    plain = json.dumps(evaluate_coco(gt, predictions, val.class_to_category_id).to_dict())  # NaN-aware equality
    assert json.dumps(evaluate_coco(gt, encoded, val.class_to_category_id).to_dict()) == plain
    mixed = encoded[:3] + predictions[3:]
    assert json.dumps(evaluate_coco(gt, mixed, val.class_to_category_id).to_dict()) == plain
    a = write_coco_results(tmp_path / "a.json", predictions, val.class_to_category_id).read_text()
    assert write_coco_results(tmp_path / "b.json", encoded, val.class_to_category_id).read_text() == a
    wrong = encode_prediction(ImagePrediction(predictions[0].image_id, predictions[0].masks[:, :-2],
                                              predictions[0].classes, predictions[0].scores))
    if wrong.rles:
        with pytest.raises(ValueError, match="original resolution"):
            evaluate_coco(gt, [wrong], val.class_to_category_id)


def test_perfect_predictions_give_ap_one(val: CocoAnnotations) -> None:
    result = evaluate_coco(val.evaluation_gt(), _perfect(val), val.class_to_category_id)
    assert (result.ap, result.ap50, result.ap75) == pytest.approx((1.0, 1.0, 1.0))
    assert list(result.per_class_ap.values()) == pytest.approx([1.0] * 4)


def test_missing_images_count_and_no_predictions_give_zero(val: CocoAnnotations) -> None:
    gt = val.evaluation_gt()
    partial = evaluate_coco(gt, _perfect(val)[:4], val.class_to_category_id)
    assert partial.ap < 1.0  # the other images' instances are missed: evaluation covers every GT image
    empty = evaluate_coco(gt, [], val.class_to_category_id)
    assert empty.ap == 0.0 and empty.ap50 == 0.0 and empty.num_predictions == 0


def _crowd_gt() -> tuple[CocoAnnotations, np.ndarray, np.ndarray]:
    obj = np.zeros((40, 40), bool)
    obj[5:20, 5:20] = True
    crowd = np.zeros((40, 40), bool)
    crowd[25:38, 2:38] = True
    rle = mask_utils.encode(np.asfortranarray(crowd.astype(np.uint8)))
    payload = {"images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 40}],
               "categories": [{"id": 4, "name": "thing"}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 4,
                                "segmentation": [[5, 5, 20, 5, 20, 20, 5, 20]]},
                               {"id": 2, "image_id": 1, "category_id": 4, "iscrowd": 1,
                                "segmentation": {"size": [40, 40], "counts": rle["counts"].decode()}}]}
    return CocoAnnotations(Path("crowd.json"), payload), obj, crowd


def test_prediction_on_a_crowd_region_is_not_a_false_positive() -> None:
    coco, obj, crowd = _crowd_gt()
    gt = coco.evaluation_gt()
    on_crowd = np.zeros_like(crowd)
    on_crowd[27:36, 5:30] = True  # inside the crowd region, scored above the true instance
    elsewhere = np.zeros_like(crowd)
    elsewhere[2:12, 25:38] = True  # the same kind of prediction on background
    for spurious, expected_perfect in ((on_crowd, True), (elsewhere, False)):
        prediction = ImagePrediction(1, np.stack([spurious, obj]), np.array([0, 0]), np.array([0.95, 0.9]))
        result = evaluate_coco(gt, [prediction], coco.class_to_category_id)
        if expected_perfect:
            assert result.ap == pytest.approx(1.0), result
        else:  # a false positive ranked above the only true positive
            assert result.ap < 0.6, result


def test_results_json_round_trip(tmp_path: Path, val: CocoAnnotations) -> None:
    predictions = _noisy(val, 3)
    path = write_coco_results(tmp_path / "out" / "segm_results.json", predictions, val.class_to_category_id)
    results = json.loads(path.read_text())
    assert len(results) == sum(len(p.scores) for p in predictions)
    assert {r["category_id"] for r in results} <= {2, 5, 7, 11}
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)
    first = predictions[0]
    np.testing.assert_array_equal(mask_utils.decode(results[0]["segmentation"]).astype(bool), first.masks[0])
    assert results[0]["score"] == pytest.approx(float(first.scores[0]))
    gt = val.evaluation_gt()
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(str(path)), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluate_coco(gt, predictions, val.class_to_category_id).ap == pytest.approx(evaluator.stats[0])
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_result_table_and_dict(val: CocoAnnotations) -> None:
    result = evaluate_coco(val.evaluation_gt(), _noisy(val, 0), val.class_to_category_id)
    flat = result.to_dict()
    assert flat["ap"] == result.ap and flat["ap/star"] == result.per_class_ap["star"]
    table = result.table()
    assert "AP50" in table and "triangle" in table and f"{100 * result.ap:5.1f}" in table


def test_bad_predictions_are_named(val: CocoAnnotations) -> None:
    gt = val.evaluation_gt()
    good = _perfect(val)[0]
    with pytest.raises(ValueError, match="image id 999: the image is not in the evaluation GT"):
        evaluate_coco(gt, [ImagePrediction(999, good.masks, good.classes, good.scores)], val.class_to_category_id)
    with pytest.raises(ValueError, match="original resolution"):
        evaluate_coco(gt, [ImagePrediction(good.image_id, good.masks[:, :-1], good.classes, good.scores)],
                      val.class_to_category_id)
    with pytest.raises(ValueError, match="masks must be boolean"):
        evaluate_coco(gt, [ImagePrediction(good.image_id, good.masks * 0.7, good.classes, good.scores)],
                      val.class_to_category_id)
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 4\)"):
        evaluate_coco(gt, [ImagePrediction(good.image_id, good.masks, good.classes + 4, good.scores)],
                      val.class_to_category_id)


def test_repeated_category_names_keep_one_entry_each() -> None:
    _, obj, _ = _crowd_gt()
    payload = {"images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 40}],
               "categories": [{"id": 4, "name": "thing"}, {"id": 6, "name": "thing"}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 6,
                                "segmentation": [[5, 5, 20, 5, 20, 20, 5, 20]]}]}
    twins = CocoAnnotations(Path("twins.json"), payload)
    result = evaluate_coco(twins.evaluation_gt(), [ImagePrediction(1, obj[None], np.array([1]), np.array([0.5]))],
                           twins.class_to_category_id)
    assert result.per_class_ap.keys() == {"thing (4)", "thing (6)"}
    assert result.per_class_ap["thing (6)"] == pytest.approx(1.0) and np.isnan(result.per_class_ap["thing (4)"])


def test_empty_gt_object_helper() -> None:
    coco = coco_from_dataset({"images": [{"id": 1, "height": 2, "width": 2}], "categories": [{"id": 1, "name": "a"}],
                              "annotations": []})
    assert coco.getImgIds() == [1]
