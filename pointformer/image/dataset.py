"""A COCO-format split as a torch dataset of augmented images with instance masks; collation.

Layout (folder and file names are arguments, so COCO 2017's own names work too)::

    ROOT/annotations/instances_train.json   ROOT/train/<file_name>
    ROOT/annotations/instances_val.json     ROOT/val/<file_name>

Items are keyed like the 3D datasets: an int ``index`` (epoch 0) or an ``(epoch, index)`` pair, which
is what the trainer's ``ResumableBatchSampler`` yields; augmentation draws from a generator seeded by
(seed, epoch, index), so a resumed run sees the same augmented images (no ``set_epoch``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from pointformer.image.coco import CocoAnnotations, CocoImage
from pointformer.image.superpixels import SuperpixelSettings, image_superpixels
from pointformer.image.transforms import AnnotatedImage, check_augmentation, drop_empty, eval_transform, train_transform

Key = Union[int, tuple[int, int]]


class ImageFileError(ValueError):
    """An image file that is missing, empty, unreadable or of another size than its annotation says."""


def augmentation_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that augments item ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]))


def read_image(path: Path, *, expected: Optional[CocoImage] = None) -> np.ndarray:
    """An image file as float32 [H, W, 3] RGB in [0, 1].

    Grey, palette and RGBA files become RGB (alpha dropped); 16-bit grey is scaled by 65535. Raises
    :class:`ImageFileError` naming the file (and the image id when ``expected`` is given) when it is
    missing, empty or unreadable, or when its size differs from ``expected``'s height/width.
    """
    where = f"{path}" + (f" (image id {expected.image_id})" if expected is not None else "")
    if not path.is_file():
        raise ImageFileError(f"{where}: image file not found")
    if path.stat().st_size == 0:
        raise ImageFileError(f"{where}: image file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                grey = np.asarray(image, dtype=np.float32) / np.float32(65535.0)
                array = np.repeat(np.clip(grey, 0.0, 1.0)[:, :, None], 3, axis=2)
            else:
                array = np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise ImageFileError(f"{where}: unreadable image file: {exc}") from exc
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageFileError(f"{where}: image has zero size {array.shape[1]}x{array.shape[0]}")
    if expected is not None and (array.shape[0], array.shape[1]) != (expected.height, expected.width):
        raise ImageFileError(f"{where}: image is {array.shape[1]}x{array.shape[0]} (width x height) but the "
                             f"annotation file says {expected.width}x{expected.height}")
    return array


@dataclass
class ImageSample:
    """One augmented image with its targets (see docs/image.md).

    image: float32 [3, H, W] RGB in [0, 1] (not normalised; the model normalises);
    masks: bool [K, H, W] non-crowd instances after augmentation (empty ones dropped);
    classes: int64 [K] contiguous classes 0..C-1; ignore: bool [H, W] union of crowd regions;
    superpixels: int64 [H, W] contiguous ids 0..S-1, or None when not requested;
    original_size: (H0, W0) of the file; valid_size: (h, w) = (H, W), the image content — for
    validation items the whole image resized (no crop / flip), so a prediction at [h, w] resized to
    (H0, W0) is at the original resolution.
    """

    image_id: int
    file_name: str
    image: Tensor
    masks: Tensor
    classes: Tensor
    ignore: Tensor
    superpixels: Optional[Tensor]
    original_size: tuple[int, int]
    valid_size: tuple[int, int]

    def to(self, device: torch.device | str) -> "ImageSample":
        return dataclasses.replace(
            self, image=self.image.to(device), masks=self.masks.to(device), classes=self.classes.to(device),
            ignore=self.ignore.to(device),
            superpixels=None if self.superpixels is None else self.superpixels.to(device))


@dataclass
class ImageBatch:
    """Images padded to a common size, and the samples (targets at their own size).

    images: float32 [B, 3, Hmax, Wmax] zero-padded at the bottom / right; valid: bool [B, Hmax, Wmax]
    True on image content. ``scene_ids`` are ``str(image_id)`` and ``gt_ids`` the image ids (the GT
    itself lives in the dataset's COCO file): the trainer passes both to ``Task.evaluate``.
    """

    images: Tensor
    valid: Tensor
    samples: list[ImageSample]

    @property
    def batch_size(self) -> int:
        return len(self.samples)

    @property
    def scene_ids(self) -> list[str]:
        return [str(s.image_id) for s in self.samples]

    @property
    def gt_ids(self) -> list[int]:
        return [s.image_id for s in self.samples]

    def to(self, device: torch.device | str) -> "ImageBatch":
        return ImageBatch(images=self.images.to(device), valid=self.valid.to(device),
                          samples=[s.to(device) for s in self.samples])

    def pin_memory(self) -> "ImageBatch":
        return ImageBatch(images=self.images.pin_memory(), valid=self.valid.pin_memory(), samples=self.samples)


def collate_images(samples: Sequence[ImageSample]) -> ImageBatch:
    """Pad the images of ``samples`` to the largest height and width of the batch."""
    if not samples:
        raise ValueError("cannot collate an empty list of image samples")
    height = max(int(s.image.shape[-2]) for s in samples)
    width = max(int(s.image.shape[-1]) for s in samples)
    images = torch.zeros((len(samples), 3, height, width), dtype=torch.float32)
    valid = torch.zeros((len(samples), height, width), dtype=torch.bool)
    for i, s in enumerate(samples):
        h, w = s.image.shape[-2:]
        images[i, :, :h, :w] = s.image
        valid[i, :h, :w] = True
    return ImageBatch(images=images, valid=valid, samples=list(samples))


class CocoInstanceDataset(Dataset):
    """One split of a COCO-format instance dataset.

    Args:
        root: dataset root; annotation_file, image_dir: relative to it (e.g.
            ``"annotations/instances_train.json"``, ``"train"``).
        split: a name for messages (``train``, ``val``).
        train: augment (scale jitter, flip, crop) when True; else resize only.
        image_size: the longer side after resize (validation, and training before jitter).
        scale_jitter: (low, high) factor range on ``image_size`` for training, or None.
        crop_size: training crop (square; clipped to the image), or None.
        flip: random horizontal flip in training.
        superpixels: compute superpixels on the augmented image when given.
        seed: augmentation seed; limit: keep the first ``limit`` images (by id) only.

    Every image file is checked to exist when the dataset is built (the error lists the missing
    ones); reading happens per item. ``coco`` is the evaluation GT of the images kept.
    """

    collate_fn = staticmethod(collate_images)

    def __init__(self, *, root: str | Path, split: str, annotation_file: str, image_dir: str, train: bool,
                 image_size: int, scale_jitter: tuple[float, float] | None, crop_size: int | None, flip: bool,
                 superpixels: SuperpixelSettings | None, seed: int, limit: int | None = None) -> None:
        check_augmentation(image_size=image_size, scale_jitter=scale_jitter, crop_size=crop_size)
        if limit is not None and (int(limit) != limit or limit < 1):
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        self.root = Path(root)
        self.split = split
        self.annotations = CocoAnnotations.load(self.root / annotation_file)
        self.image_dir = self.root / image_dir
        if not self.image_dir.is_dir():
            raise ImageFileError(f"{self.image_dir}: image folder of split '{split}' not found")
        self.image_ids = self.annotations.image_ids[:limit] if limit is not None else self.annotations.image_ids
        missing = [im for im in (self.annotations.image(i) for i in self.image_ids)
                   if not (self.image_dir / im.file_name).is_file()]
        if missing:
            listed = ", ".join(f"{self.image_dir / im.file_name} (image id {im.image_id})" for im in missing[:5])
            raise ImageFileError(f"{self.annotations.path}: {len(missing)} image file(s) not found: {listed}"
                                 + (" ..." if len(missing) > 5 else ""))
        self.train = bool(train)
        self.image_size = int(image_size)
        self.scale_jitter = None if scale_jitter is None else (float(scale_jitter[0]), float(scale_jitter[1]))
        self.crop_size = None if crop_size is None else int(crop_size)
        self.flip = bool(flip)
        self.superpixel_settings = superpixels
        self.seed = int(seed)
        self.num_classes = self.annotations.num_classes
        self.class_names = list(self.annotations.class_names)
        self.class_to_category_id = list(self.annotations.class_to_category_id)
        self._coco: Optional[COCO] = None

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def coco(self) -> COCO:
        """The evaluation GT (pycocotools ``COCO``) of the images of this dataset, built on first use."""
        if self._coco is None:
            self._coco = self.annotations.evaluation_gt(self.image_ids)
        return self._coco

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.annotations.image(self.image_ids[index]).file_name

    def __getitem__(self, key: Key) -> ImageSample:
        epoch, index = (0, key) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range for {len(self)} images")
        info = self.annotations.image(self.image_ids[index])
        pixels = read_image(self.image_dir / info.file_name, expected=info)
        decoded = self.annotations.instances(info.image_id)
        item = AnnotatedImage(image=torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
                              masks=torch.from_numpy(decoded.masks), ignore=torch.from_numpy(decoded.crowd))
        if self.train:
            item = train_transform(item, image_size=self.image_size, scale_jitter=self.scale_jitter,
                                   crop_size=self.crop_size, flip=self.flip,
                                   rng=augmentation_rng(self.seed, epoch, index))
        else:
            item = eval_transform(item, image_size=self.image_size)
        item, classes = drop_empty(item, torch.from_numpy(decoded.classes))
        superpixels = None
        if self.superpixel_settings is not None:
            ids = image_superpixels(item.image.permute(1, 2, 0).numpy(), settings=self.superpixel_settings)
            superpixels = torch.from_numpy(ids)
        return ImageSample(image_id=info.image_id, file_name=info.file_name, image=item.image, masks=item.masks,
                           classes=classes, ignore=item.ignore, superpixels=superpixels,
                           original_size=(info.height, info.width), valid_size=item.size)
