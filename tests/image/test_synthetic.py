"""`pointformer synth shapes2d`: layout, determinism, exact visible masks, every annotation kind."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pointformer.cli.synth import main as synth_main
from pointformer.image.coco import CocoAnnotations
from pointformer.image.synthetic import CATEGORIES, compressed_rle, generate_shapes2d, uncompressed_rle


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes2d")
    generate_shapes2d(root, num_images=16, seed=5, size=64)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_counts(generated: Path) -> None:
    for split, count in (("train", 16), ("val", 4)):  # val defaults to a quarter
        coco = CocoAnnotations.load(generated / "annotations" / f"instances_{split}.json")
        assert len(coco.images) == count
        for image in coco.images:
            assert (generated / split / image.file_name).is_file()
            with Image.open(generated / split / image.file_name) as pixels:
                assert pixels.size == (image.width, image.height) and pixels.mode == "RGB"
                assert pixels.format == ("JPEG" if image.file_name.endswith(".jpg") else "PNG")
        assert coco.class_to_category_id == [c["id"] for c in CATEGORIES] == [2, 5, 7, 11]
        assert not coco.summary
    train = json.loads((generated / "annotations" / "instances_train.json").read_text())
    kinds = {"polygon": 0, "rle_string": 0, "rle_list": 0, "crowd": 0}
    for ann in train["annotations"]:
        seg = ann["segmentation"]
        if ann["iscrowd"]:
            kinds["crowd"] += 1
        elif isinstance(seg, list):
            kinds["polygon"] += 1
        elif isinstance(seg["counts"], str):
            kinds["rle_string"] += 1
        else:
            kinds["rle_list"] += 1
    assert all(v > 0 for v in kinds.values()), kinds
    names = {p.suffix for p in (generated / "train").iterdir()}
    assert names == {".png", ".jpg"}
    used = {ann["category_id"] for ann in train["annotations"] if not ann["iscrowd"]}
    assert used == {2, 5, 7, 11}


def test_visible_masks_are_disjoint_and_substantial(generated: Path) -> None:
    coco = CocoAnnotations.load(generated / "annotations" / "instances_train.json")
    per_image = []
    for image_id in coco.image_ids:
        inst = coco.instances(image_id)
        assert (inst.masks.sum(0) <= 1).all()  # occlusion: no pixel belongs to two instances
        assert not (inst.masks.any(0) & inst.crowd).any()  # crowds are painted first and covered
        assert all(m.sum() >= 30 for m in inst.masks)
        per_image.append(len(inst.masks))
    assert max(per_image) >= 3 and min(per_image) <= 1


def test_masks_are_the_painted_pixels(generated: Path) -> None:
    """Every instance is filled with its own texture: pixels just inside a mask differ from the pixels
    just outside more than pixels within the mask differ from each other, on average."""
    coco = CocoAnnotations.load(generated / "annotations" / "instances_train.json")
    contrasts = []
    for image in coco.images:
        if image.file_name.endswith(".jpg"):
            continue
        pixels = np.asarray(Image.open(generated / "train" / image.file_name), dtype=np.float32) / 255
        inst = coco.instances(image.image_id)
        for mask in inst.masks:
            inside = mask[:, :-1] & mask[:, 1:]
            across = mask[:, :-1] & ~mask[:, 1:]
            step = np.abs(pixels[:, :-1] - pixels[:, 1:]).sum(-1)
            if across.sum() >= 5:
                contrasts.append(step[across].mean() - step[inside].mean())
    assert len(contrasts) > 10
    assert np.mean(contrasts) > 0.1


def test_same_seed_same_files_and_prefix_is_stable(tmp_path: Path) -> None:
    generate_shapes2d(tmp_path / "a", num_images=4, num_val_images=1, seed=9, size=48)
    generate_shapes2d(tmp_path / "b", num_images=4, num_val_images=1, seed=9, size=48)
    generate_shapes2d(tmp_path / "c", num_images=4, num_val_images=1, seed=10, size=48)
    generate_shapes2d(tmp_path / "d", num_images=6, num_val_images=2, seed=9, size=48)
    a, b, c, d = (_files(tmp_path / k) for k in "abcd")
    assert a == b
    assert a != c
    for name in ("train/000000.png", "train/000003.jpg", "val/000000.png"):
        assert a[name] == d[name]  # more images do not change the first ones


def test_rle_helpers_agree_with_pycocotools() -> None:
    from pycocotools import mask as mask_utils

    mask = np.random.default_rng(0).random((9, 13)) < 0.4
    mask[0, 0] = True
    for rle in (compressed_rle(mask), uncompressed_rle(mask)):
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 9, 13) if isinstance(rle["counts"], list) else
                                    {"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), mask)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "set"
    assert synth_main(["shapes2d", str(out), "--images", "3", "--val-images", "2", "--seed", "1", "--size", "32"]) == 0
    assert "train: 3 images" in capsys.readouterr().out
    assert len(json.loads((out / "annotations" / "instances_val.json").read_text())["images"]) == 2
    assert synth_main(["shapes2d", str(tmp_path / "bad"), "--size", "8"]) == 1
    assert "--size must be an integer >= 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synth_main(["--help"])
    text = capsys.readouterr().out
    assert "shapes2d" in text and "scannet" in text and "s3dis" in text
