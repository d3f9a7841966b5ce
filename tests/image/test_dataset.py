"""CocoInstanceDataset: items, augmentation keyed by (epoch, index), image formats, collation, errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pointformer.image.dataset import (CocoInstanceDataset, ImageBatch, ImageFileError, collate_images, read_image)
from pointformer.image.superpixels import SuperpixelSettings
from pointformer.image.synthetic import generate_shapes2d


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes2d(root, num_images=6, num_val_images=3, seed=11, size=64)
    return root


def _dataset(root: Path, split: str = "val", **overrides: Any) -> CocoInstanceDataset:
    kwargs: dict[str, Any] = dict(root=root, split=split, annotation_file=f"annotations/instances_{split}.json",
                                  image_dir=split, train=False, image_size=48, scale_jitter=None, crop_size=None,
                                  flip=False, superpixels=None, seed=0)
    kwargs.update(overrides)
    return CocoInstanceDataset(**kwargs)


def test_validation_item_is_the_resized_image_with_its_masks(shapes: Path) -> None:
    ds = _dataset(shapes)
    assert len(ds) == 3 and ds.num_classes == 4
    assert ds.class_names == ["disc", "triangle", "square", "star"] and ds.class_to_category_id == [2, 5, 7, 11]
    for index in range(len(ds)):
        sample = ds[index]
        info = ds.annotations.image(sample.image_id)
        assert sample.original_size == (info.height, info.width)
        h, w = sample.valid_size
        assert max(h, w) == 48 and sample.image.shape == (3, h, w)
        assert sample.image.dtype == torch.float32 and 0 <= sample.image.min() and sample.image.max() <= 1
        assert sample.masks.shape[1:] == (h, w) and sample.masks.dtype == torch.bool
        assert sample.classes.dtype == torch.int64 and sample.classes.shape == (sample.masks.shape[0],)
        assert sample.ignore.shape == (h, w) and sample.superpixels is None
        # resized back to the original size, each mask is close to the file's mask
        decoded = ds.annotations.instances(sample.image_id)
        assert sample.masks.shape[0] == decoded.masks.shape[0]
        assert sample.classes.tolist() == decoded.classes.tolist()
        back = torch.nn.functional.interpolate(sample.masks[None].float(), size=sample.original_size,
                                               mode="bilinear", align_corners=False)[0] >= 0.5
        for ours, truth in zip(back.numpy(), decoded.masks):  # small shapes lose their boundary pixels
            assert (ours & truth).sum() / (ours | truth).sum() > (0.85 if truth.sum() > 200 else 0.65)


def test_crowd_regions_become_ignore_not_instances(shapes: Path) -> None:
    ds = _dataset(shapes, split="train", image_size=64)
    crowded = [i for i, image_id in enumerate(ds.image_ids) if ds.annotations.instances(image_id).crowd.any()]
    assert crowded, "the fixture's seed should give at least one crowd region"
    sample = ds[crowded[0]]
    decoded = ds.annotations.instances(sample.image_id)
    if sample.valid_size == sample.original_size:  # 64-wide images are not resized
        assert torch.equal(sample.ignore, torch.from_numpy(decoded.crowd))
    assert sample.ignore.any()
    assert not (sample.masks.any(0) & sample.ignore).any()


def test_training_augmentation_is_keyed_by_epoch_and_index(shapes: Path) -> None:
    ds = _dataset(shapes, split="train", train=True, image_size=64, scale_jitter=(0.5, 1.5), crop_size=40,
                  flip=True, seed=3)
    a, b = ds[(2, 1)], ds[(2, 1)]
    assert torch.equal(a.image, b.image) and torch.equal(a.masks, b.masks)
    assert ds[1].image.shape == ds[(0, 1)].image.shape and torch.equal(ds[1].image, ds[(0, 1)].image)
    others = [ds[(epoch, 1)] for epoch in range(6)]
    assert len({tuple(o.image.shape) + (float(o.image.sum()),) for o in others}) > 1
    for o in others:
        assert max(o.image.shape[-2:]) <= 40 and o.valid_size == tuple(o.image.shape[-2:])
        assert o.masks.shape[0] == 0 or o.masks.flatten(1).any(1).all()  # empty (cropped away) masks dropped
    reseeded = _dataset(shapes, split="train", train=True, image_size=64, scale_jitter=(0.5, 1.5), crop_size=40,
                        flip=True, seed=4)
    def fingerprint(d: CocoInstanceDataset, epoch: int) -> tuple:
        item = d[(epoch, 1)]
        return tuple(item.image.shape) + (round(float(item.image.sum()), 3),)

    assert [fingerprint(reseeded, e) for e in range(4)] != [fingerprint(ds, e) for e in range(4)]
    with pytest.raises(IndexError, match="out of range"):
        ds[(0, 6)]


def test_superpixels_are_computed_on_the_augmented_image(shapes: Path) -> None:
    ds = _dataset(shapes, split="train", train=True, image_size=64, scale_jitter=(0.7, 1.0), crop_size=48,
                  flip=True, superpixels=SuperpixelSettings(threshold=0.5, min_size=8))
    sample = ds[(1, 0)]
    assert sample.superpixels is not None and sample.superpixels.shape == sample.image.shape[-2:]
    assert sample.superpixels.dtype == torch.int64
    ids = sample.superpixels.unique()
    assert ids.tolist() == list(range(int(ids.max()) + 1))
    assert 4 < len(ids) < sample.image.shape[-1] * sample.image.shape[-2] / 8


def test_collation_pads_and_reports_what_the_trainer_reads(shapes: Path) -> None:
    ds = _dataset(shapes, split="train", image_size=64, superpixels=SuperpixelSettings())
    samples = [ds[i] for i in range(len(ds))]
    batch = ds.collate_fn(samples)
    assert isinstance(batch, ImageBatch) and batch.batch_size == len(ds)
    hmax = max(s.image.shape[-2] for s in samples)
    assert batch.images.shape == (len(ds), 3, hmax, 64) and batch.valid.shape == (len(ds), hmax, 64)
    for i, s in enumerate(samples):
        h, w = s.image.shape[-2:]
        assert torch.equal(batch.images[i, :, :h, :w], s.image)
        assert batch.valid[i].sum() == h * w and batch.valid[i, :h, :w].all()
        assert batch.images[i, :, h:].abs().sum() == 0
    assert batch.gt_ids == ds.image_ids and batch.scene_ids == [str(i) for i in ds.image_ids]
    moved = batch.to("cpu")
    assert moved.batch_size == batch.batch_size and torch.equal(moved.samples[0].masks, samples[0].masks)
    with pytest.raises(ValueError, match="empty"):
        collate_images([])


def test_limit_restricts_items_and_evaluation_gt(shapes: Path) -> None:
    ds = _dataset(shapes, split="train", limit=2)
    assert len(ds) == 2 and sorted(ds.coco.getImgIds()) == ds.image_ids


def _single_image_set(root: Path, image: Image.Image | bytes | None, *, size: tuple[int, int] = (20, 30)) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "imgs").mkdir(exist_ok=True)
    path = root / "imgs" / "x.png"
    if isinstance(image, Image.Image):
        image.save(path)
    elif isinstance(image, bytes):
        path.write_bytes(image)
    payload = {"images": [{"id": 5, "file_name": "x.png", "height": size[0], "width": size[1]}],
               "categories": [{"id": 1, "name": "thing"}],
               "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "segmentation": [[2, 2, 10, 2, 10, 10]]}]}
    (root / "annotations" / "a.json").write_text(json.dumps(payload))
    return root


def _open(root: Path) -> CocoInstanceDataset:
    return CocoInstanceDataset(root=root, split="x", annotation_file="annotations/a.json", image_dir="imgs",
                               train=False, image_size=30, scale_jitter=None, crop_size=None, flip=False,
                               superpixels=None, seed=0)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "RGB-jpeg"])
def test_image_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    if mode == "I;16":
        image = Image.fromarray((rng.random((20, 30)) * 65535).astype(np.uint16))
    elif mode == "RGB-jpeg":
        image = Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8))
    else:
        image = Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8)).convert(mode)
    root = _single_image_set(tmp_path, None)
    if mode == "RGB-jpeg":
        image.save(root / "imgs" / "x.png", format="JPEG")  # the content decides, not the extension
    else:
        image.save(root / "imgs" / "x.png")
    sample = _open(root)[0]
    assert sample.image.shape == (3, 20, 30) and 0 <= float(sample.image.min()) and float(sample.image.max()) <= 1
    if mode in ("L", "I;16"):
        assert torch.equal(sample.image[0], sample.image[1]) and float(sample.image.std()) > 0.1
    if mode == "I;16":
        expected = np.asarray(image, dtype=np.float32) / 65535
        np.testing.assert_allclose(sample.image[0].numpy(), expected, atol=1e-6)


def test_missing_image_file_is_named_at_construction(tmp_path: Path) -> None:
    root = _single_image_set(tmp_path, None)
    with pytest.raises(ImageFileError) as info:
        _open(root)
    assert str(root / "imgs" / "x.png") in str(info.value) and "image id 5" in str(info.value)
    assert "not found" in str(info.value)


def _truncated_png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"not an image at all", "unreadable"),
                                              (_truncated_png(), "unreadable")])
def test_empty_or_unreadable_image_names_file_and_id(tmp_path: Path, content: bytes, message: str) -> None:
    ds = _open(_single_image_set(tmp_path, content))
    with pytest.raises(ImageFileError, match=message) as info:
        ds[0]
    assert str(tmp_path / "imgs" / "x.png") in str(info.value) and "image id 5" in str(info.value)


def test_image_size_must_match_the_annotation(tmp_path: Path) -> None:
    root = _single_image_set(tmp_path, Image.new("RGB", (31, 20)))
    with pytest.raises(ImageFileError, match="31x20 .* but the annotation file says 30x20"):
        _open(root)[0]


def test_missing_image_folder_and_annotation_file(tmp_path: Path) -> None:
    root = _single_image_set(tmp_path, Image.new("RGB", (30, 20)))
    with pytest.raises(ImageFileError, match="image folder"):
        CocoInstanceDataset(root=root, split="x", annotation_file="annotations/a.json", image_dir="nope", train=False,
                            image_size=30, scale_jitter=None, crop_size=None, flip=False, superpixels=None, seed=0)
    with pytest.raises(ValueError, match="annotation file not found"):
        CocoInstanceDataset(root=root, split="x", annotation_file="annotations/b.json", image_dir="imgs", train=False,
                            image_size=30, scale_jitter=None, crop_size=None, flip=False, superpixels=None, seed=0)


def test_read_image_without_annotation(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    Image.new("LA", (7, 5), (128, 10)).save(path)
    pixels = read_image(path)
    assert pixels.shape == (5, 7, 3) and np.allclose(pixels, 128 / 255)


def test_a_set_from_another_writer_end_to_end(tmp_path: Path) -> None:
    """Written here the way other tools write COCO: no bbox/area, ids 1/3/7/90 out of order, an object
    of two polygons, compressed and uncompressed RLE, a crowd RLE, an image without annotations,
    grey / RGBA PNG and JPEG files in a nested folder. Items carry exactly the drawn masks (no
    resize: image_size is the images' longer side), and those masks as predictions score AP 1."""
    from pycocotools import mask as mask_utils

    from pointformer.image.evaluation import ImagePrediction, evaluate_coco

    h, w = 40, 56
    rng = np.random.default_rng(2)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    files = {1: ("sub/a.png", "L"), 2: ("b.png", "RGBA"), 3: ("c.jpg", "RGB"), 4: ("d.png", "RGB")}
    for image_id, (name, mode) in files.items():
        pixels = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).convert(mode)
        pixels.save(tmp_path / "imgs" / name)

    def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        m = np.zeros((h, w), dtype=bool)
        m[y0:y1, x0:x1] = True
        return m

    def rle(mask: np.ndarray, compressed: bool) -> dict:
        if compressed:
            encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            return {"size": [h, w], "counts": encoded["counts"].decode()}
        flat = mask.reshape(-1, order="F").astype(np.int8)
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
        counts = np.diff(bounds).tolist()
        return {"size": [h, w], "counts": ([0] + counts) if flat[0] else counts}

    objects = {  # image id -> [(category id, mask, segmentation)]
        1: [(90, rect(2, 10, 3, 20) | rect(20, 30, 30, 40),
             [[3, 2, 20, 2, 20, 10, 3, 10], [30, 20, 40, 20, 40, 30, 30, 30]]),
            (1, rect(12, 18, 0, 56), None)],
        2: [(7, rect(5, 35, 5, 25), None), (3, rect(5, 35, 30, 50), None)],
        3: [(3, rect(0, 40, 0, 10), None)],
    }
    annotations, ann_id = [], 100
    for image_id, entries in objects.items():
        for k, (category, mask, polygons) in enumerate(entries):
            ann_id += 7
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": category,
                                "segmentation": polygons if polygons else rle(mask, compressed=k % 2 == 0)})
    annotations.append({"id": 999, "image_id": 2, "category_id": 1, "iscrowd": 1,
                        "segmentation": rle(rect(36, 40, 0, 56), compressed=False)})
    payload = {"info": {"writer": "elsewhere"}, "licenses": [{"id": 1}],
               "categories": [{"id": c, "name": f"c{c}", "supercategory": "x"} for c in (7, 90, 1, 3)],
               "images": [{"id": i, "file_name": files[i][0], "height": h, "width": w, "license": 1}
                          for i in (4, 2, 3, 1)],
               "annotations": annotations}
    (tmp_path / "ann.json").write_text(json.dumps(payload))
    ds = CocoInstanceDataset(root=tmp_path, split="val", annotation_file="ann.json", image_dir="imgs", train=False,
                             image_size=w, scale_jitter=None, crop_size=None, flip=False, superpixels=None, seed=0)
    assert ds.class_to_category_id == [1, 3, 7, 90] and ds.image_ids == [1, 2, 3, 4]
    predictions = []
    for index, image_id in enumerate(ds.image_ids):
        sample = ds[index]
        expected = objects.get(image_id, [])
        assert sample.valid_size == sample.original_size == (h, w)
        assert sample.masks.shape == (len(expected), h, w)
        for k, (category, mask, _) in enumerate(expected):
            assert torch.equal(sample.masks[k], torch.from_numpy(mask))
            assert ds.class_to_category_id[int(sample.classes[k])] == category
        assert bool(sample.ignore.any()) == (image_id == 2)
        masks = np.stack([m for _, m, _ in expected]) if expected else np.zeros((0, h, w), bool)
        classes = np.array([ds.class_to_category_id.index(c) for c, _, _ in expected], dtype=np.int64)
        predictions.append(ImagePrediction(image_id, masks, classes, np.ones(len(expected))))
    result = evaluate_coco(ds.coco, predictions, ds.class_to_category_id)
    assert result.ap == pytest.approx(1.0) and result.num_predictions == 5
