"""COCO-format reading: polygons, RLE (compressed and uncompressed), crowd regions, the class
mapping, recomputed area/bbox, and clear errors on bad files."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pointformer.image.coco import CocoAnnotations, CocoFormatError, compressed_rle_counts


def _uncompressed(mask: np.ndarray) -> dict[str, Any]:
    flat = mask.reshape(-1, order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def _compressed(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _rect(y0: int, y1: int, x0: int, x1: int, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _rect_polygon(y0: int, y1: int, x0: int, x1: int) -> list[float]:
    """The polygon pycocotools rasterises to exactly the pixels [y0, y1) x [x0, x1)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _write(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def _valid_payload() -> dict[str, Any]:
    """Two 48x64 images and one 30x20 image without annotations; every segmentation kind."""
    blob = np.zeros((48, 64), dtype=bool)
    blob[10:30, 40:60] = True
    blob[12:16, 44:50] = False  # a hole: not expressible as one polygon
    return {
        "info": {"note": "extra keys are fine"},
        "images": [{"id": 42, "file_name": "b.png", "height": 48, "width": 64, "license": 3},
                   {"id": 7, "file_name": "a.png", "height": 48, "width": 64},
                   {"id": 9, "file_name": "empty.png", "height": 30, "width": 20}],
        "categories": [{"id": 90, "name": "toaster"}, {"id": 3, "name": "car"}, {"id": 1, "name": "person"},
                       {"id": 7, "name": "train", "supercategory": "vehicle"}],
        "annotations": [
            # two polygons, one object; no bbox / area keys at all
            {"id": 11, "image_id": 7, "category_id": 3,
             "segmentation": [_rect_polygon(2, 8, 2, 10), _rect_polygon(20, 24, 2, 6)]},
            # compressed RLE with a wrong area and bbox
            {"id": 12, "image_id": 7, "category_id": 90, "iscrowd": 0, "segmentation": _compressed(blob),
             "area": 1.0, "bbox": [0, 0, 1, 1]},
            # uncompressed RLE, non-crowd
            {"id": 13, "image_id": 42, "category_id": 1, "iscrowd": 0,
             "segmentation": _uncompressed(_rect(30, 40, 5, 25))},
            # crowd as uncompressed RLE (COCO's way) and a crowd polygon on the same image
            {"id": 14, "image_id": 42, "category_id": 7, "iscrowd": 1,
             "segmentation": _uncompressed(_rect(0, 5, 0, 64))},
            {"id": 15, "image_id": 42, "category_id": 7, "iscrowd": 1, "segmentation": [_rect_polygon(40, 48, 50, 64)]},
        ],
    }


def test_round_trip_of_polygons_rle_and_crowd(tmp_path: Path) -> None:
    payload = _valid_payload()
    coco = CocoAnnotations.load(_write(tmp_path / "instances_val.json", payload))
    assert coco.image_ids == [7, 9, 42]
    # categories sorted by id -> contiguous classes, and back
    assert coco.class_to_category_id == [1, 3, 7, 90]
    assert coco.category_to_class == {1: 0, 3: 1, 7: 2, 90: 3}
    assert coco.class_names == ["person", "car", "train", "toaster"]

    a = coco.instances(7)
    assert a.masks.shape == (2, 48, 64) and a.masks.dtype == bool
    assert a.annotation_ids.tolist() == [11, 12] and a.classes.tolist() == [1, 3]
    np.testing.assert_array_equal(a.masks[0], _rect(2, 8, 2, 10) | _rect(20, 24, 2, 6))
    blob = np.zeros((48, 64), dtype=bool)
    blob[10:30, 40:60] = True
    blob[12:16, 44:50] = False
    np.testing.assert_array_equal(a.masks[1], blob)
    assert not a.crowd.any()

    b = coco.instances(42)
    assert b.annotation_ids.tolist() == [13] and b.classes.tolist() == [0]
    np.testing.assert_array_equal(b.masks[0], _rect(30, 40, 5, 25))
    np.testing.assert_array_equal(b.crowd, _rect(0, 5, 0, 64) | _rect(40, 48, 50, 64))

    empty = coco.instances(9)
    assert empty.masks.shape == (0, 30, 20) and empty.classes.shape == (0,) and not empty.crowd.any()
    assert not coco.summary


def test_evaluation_gt_recomputes_area_and_bbox(tmp_path: Path) -> None:
    coco = CocoAnnotations.load(_write(tmp_path / "instances_val.json", _valid_payload()))
    gt = coco.evaluation_gt()
    assert sorted(gt.getImgIds()) == [7, 9, 42]
    ann = gt.anns[12]
    assert ann["area"] == 20 * 20 - 4 * 6
    assert ann["bbox"] == [40.0, 10.0, 20.0, 20.0]
    assert gt.anns[11]["area"] == 6 * 8 + 4 * 4 and gt.anns[11]["iscrowd"] == 0
    assert gt.anns[14]["iscrowd"] == 1 and gt.anns[15]["iscrowd"] == 1
    # the GT mask is the one the dataset trains on
    np.testing.assert_array_equal(gt.annToMask(gt.anns[11]).astype(bool), coco.instances(7).masks[0])
    subset = coco.evaluation_gt([42])
    assert subset.getImgIds() == [42] and sorted(subset.anns) == [13, 14, 15]


@pytest.mark.parametrize("seed", range(5))
def test_compressed_rle_counts_match_pycocotools(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((37, 23)) < rng.uniform(0.05, 0.95)
    mask[:, :3] = seed % 2 == 0  # starts with a foreground run on even seeds
    compressed = _compressed(mask)
    assert compressed_rle_counts(compressed["counts"]) == _uncompressed(mask)["counts"]


def test_short_polygons_are_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    payload = _valid_payload()
    payload["annotations"] += [
        {"id": 20, "image_id": 9, "category_id": 1, "segmentation": [[1, 1, 5, 5], _rect_polygon(2, 6, 2, 6)]},
        {"id": 21, "image_id": 9, "category_id": 1, "segmentation": [[1, 1, 5, 5]]},
        {"id": 22, "image_id": 9, "category_id": 1, "segmentation": []},
    ]
    with caplog.at_level(logging.WARNING):
        coco = CocoAnnotations.load(_write(tmp_path / "x.json", payload))
    assert coco.summary["short_polygons"] == 2
    assert coco.summary["annotations_without_polygon"] == 2
    assert "annotation id 21" in caplog.text and "x.json" in caplog.text
    kept = coco.instances(9)
    assert kept.annotation_ids.tolist() == [20]  # its valid polygon is kept, not read as a bbox
    np.testing.assert_array_equal(kept.masks[0], _rect(2, 6, 2, 6, (30, 20)))


def test_lenient_where_coco_writers_differ(tmp_path: Path) -> None:
    """Integral float sizes, polygons reaching outside the image (clipped), boolean iscrowd, a BOM."""
    payload = _valid_payload()
    payload["images"][0]["height"] = 48.0
    payload["annotations"][0]["segmentation"] = [[-5, -5, 10, -5, 10, 8, -5, 8]]
    payload["annotations"][3]["iscrowd"] = True
    payload["annotations"][2]["segmentation"]["size"] = [48.0, 64.0]
    path = tmp_path / "x.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(payload).encode())  # with a UTF-8 byte-order mark
    coco = CocoAnnotations.load(path)
    assert coco.image(42).height == 48
    np.testing.assert_array_equal(coco.instances(7).masks[0], _rect(0, 8, 0, 10))
    assert coco.instances(42).crowd[0].all()


def test_empty_mask_is_skipped_and_counted(tmp_path: Path) -> None:
    payload = _valid_payload()
    payload["annotations"].append({"id": 30, "image_id": 9, "category_id": 1,
                                   "segmentation": _uncompressed(np.zeros((30, 20), dtype=bool))})
    coco = CocoAnnotations.load(_write(tmp_path / "x.json", payload))
    assert coco.instances(9).masks.shape[0] == 0
    assert coco.summary["empty_masks"] == 1
    assert 30 not in coco.evaluation_gt().anns
    assert coco.summary["empty_masks"] == 1  # counted once per annotation


def _mutate(payload: dict[str, Any], change: str) -> Any:
    anns = payload["annotations"]
    if change == "unknown_image":
        anns[0]["image_id"] = 5
    elif change == "unknown_category":
        anns[1]["category_id"] = 4
    elif change == "zero_size_image":
        payload["images"][2]["height"] = 0
    elif change == "duplicate_image":
        payload["images"].append(dict(payload["images"][0]))
    elif change == "duplicate_annotation":
        anns.append(dict(anns[0]))
    elif change == "rle_size":
        anns[2]["segmentation"]["size"] = [48, 63]
    elif change == "rle_sum":
        anns[2]["segmentation"]["counts"][-1] += 1
    elif change == "rle_bad_string":
        anns[1]["segmentation"]["counts"] = anns[1]["segmentation"]["counts"][:-1] + "~\x7f"
    elif change == "odd_polygon":
        anns[0]["segmentation"][0].append(3)
    elif change == "text_in_polygon":
        anns[0]["segmentation"][1][2] = "7"
    elif change == "nan_in_polygon":
        anns[0]["segmentation"][1][2] = float("nan")
    elif change == "no_segmentation":
        del anns[2]["segmentation"]
    elif change == "no_annotations_key":
        del payload["annotations"]
    elif change == "top_level_list":
        return [payload]
    return payload


@pytest.mark.parametrize("change, expected", [
    ("unknown_image", "annotation id 11 points at unknown image id 5"),
    ("unknown_category", "annotation id 12 (image id 7) has unknown category id 4"),
    ("zero_size_image", "image id 9 (empty.png) is empty"),
    ("duplicate_image", "duplicate image id 42"),
    ("duplicate_annotation", "duplicate annotation id 11"),
    ("rle_size", "annotation id 13 (image id 42, b.png): RLE size [48, 63] differs"),
    ("rle_sum", "annotation id 13 (image id 42, b.png): RLE run lengths add up to 3073"),
    ("rle_bad_string", "annotation id 12 (image id 7, a.png): malformed compressed RLE"),
    ("odd_polygon", "annotation id 11 (image id 7, a.png): polygon 0 has an odd number of coordinates"),
    ("text_in_polygon", "annotation id 11 (image id 7, a.png): polygon 1 must be a flat list of numbers"),
    ("nan_in_polygon", "annotation id 11 (image id 7, a.png): polygon 1 has a non-finite coordinate"),
    ("no_segmentation", "annotation id 13 (image id 42, b.png) has no 'segmentation'"),
    ("no_annotations_key", "missing the 'annotations' list"),
    ("top_level_list", "the top level must be a JSON object"),
])
def test_bad_files_name_the_file_and_the_id(tmp_path: Path, change: str, expected: str) -> None:
    path = _write(tmp_path / "annotations" / "instances_bad.json", _mutate(_valid_payload(), change))
    with pytest.raises(CocoFormatError) as info:
        CocoAnnotations.load(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_missing_and_malformed_json(tmp_path: Path) -> None:
    with pytest.raises(CocoFormatError, match="annotation file not found") as info:
        CocoAnnotations.load(tmp_path / "nope.json")
    assert str(tmp_path / "nope.json") in str(info.value)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n{"id": 1,,}]}')
    with pytest.raises(CocoFormatError, match="malformed JSON at line 2") as info:
        CocoAnnotations.load(broken)
    assert str(broken) in str(info.value)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CocoFormatError, match=str(binary)):
        CocoAnnotations.load(binary)
