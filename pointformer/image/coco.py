"""COCO-format instance annotations: read, validate, decode to masks; category id <-> contiguous class.

Accepted (everything the COCO format allows): images without annotations; ``segmentation`` as a list
of polygons (several per object), as uncompressed RLE (``counts`` a list) or compressed RLE
(``counts`` a string); ``iscrowd`` 0/1 (absent = 0) with polygons or RLE; ``bbox`` / ``area``
absent or inconsistent (the evaluation GT gets both recomputed from the mask); category ids in any
order and not contiguous (classes are the categories sorted by id); extra keys anywhere.

Rejected with a :class:`CocoFormatError` that names the file and the image / annotation id: a
missing or malformed JSON file, missing required keys, duplicate image / category / annotation
ids, an annotation pointing at an unknown image or category, a non-positive image size, a polygon
of odd length or with non-finite coordinates, an RLE whose size differs from its image's or whose
run lengths do not add up to it.

Skipped with a warning, counted in :attr:`CocoAnnotations.summary` (never silent): polygons with
fewer than 3 points (an annotation left without any polygon is dropped), and annotations whose mask
is empty (found when decoded: :meth:`CocoAnnotations.instances`, or when the evaluation GT is built).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

log = logging.getLogger(__name__)
_LOGGED_PER_KIND = 5


class CocoFormatError(ValueError):
    """An annotation file that is not valid COCO instance format; the message names the file."""


@dataclass(frozen=True)
class CocoImage:
    """One entry of ``images``: its id, file name (relative to the split's image folder) and size."""

    image_id: int
    file_name: str
    height: int
    width: int


@dataclass(frozen=True)
class CocoInstance:
    """One validated annotation; ``segmentation`` is kept as written (polygons already cleaned)."""

    annotation_id: int
    image_id: int
    category_id: int
    iscrowd: bool
    segmentation: Any  # list of flat polygons [x0, y0, x1, y1, ...] or an RLE dict


@dataclass
class ImageInstances:
    """The decoded annotations of one image at its original size (H0, W0).

    masks: bool [K, H0, W0] non-crowd instances (empty masks dropped, with a warning);
    classes: int64 [K] contiguous classes; annotation_ids: int64 [K];
    crowd: bool [H0, W0] union of the image's crowd regions (ignored by loss and evaluation).
    """

    masks: np.ndarray
    classes: np.ndarray
    annotation_ids: np.ndarray
    crowd: np.ndarray


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _integral(value: Any) -> Any:
    """A float with an integer value (some writers store sizes as 480.0) as that int; else unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def compressed_rle_counts(counts: str) -> list[int]:
    """Run lengths of a compressed RLE string (COCO's LEB128-like code, 6 bits per character).

    Each count is written as 5-bit groups in characters ``48 + group`` with bit 0x20 meaning "more
    groups follow" and the sign taken from bit 0x10 of the last group; from the third count on a
    count is stored as the difference to the count two places before it.
    """
    result: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise ValueError("the string ends inside a run length")
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                raise ValueError(f"character {counts[position]!r} at position {position} is not an RLE code")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(result) > 2:
            value += result[-2]
        result.append(value)
    return result


class CocoAnnotations:
    """A validated COCO-format instance annotation file.

    Attributes:
        path: the JSON file.
        images: the images sorted by id (``image_ids`` is the same order).
        categories: ``[{"id", "name", ...}]`` sorted by id; class ``c`` is ``categories[c]``.
        class_to_category_id: list[int], contiguous class -> COCO category id.
        category_to_class: dict[int, int], COCO category id -> contiguous class.
        class_names: list[str].
        summary: Counter of skipped items (``short_polygons``, ``annotations_without_polygon``,
            ``empty_masks``), all of them also logged as warnings.
    """

    def __init__(self, path: str | Path, payload: dict[str, Any]) -> None:
        self.path = Path(path)
        self.summary: Counter[str] = Counter()
        self._warned_empty: set[int] = set()
        if not isinstance(payload, dict):
            self._fail(f"the top level must be a JSON object, got {type(payload).__name__}")
        for key in ("images", "annotations", "categories"):
            if key not in payload:
                self._fail(f"missing the '{key}' list")
            if not isinstance(payload[key], list):
                self._fail(f"'{key}' must be a list, got {type(payload[key]).__name__}")
        self._payload_info = {k: v for k, v in payload.items() if k in ("info", "licenses")}
        self.images = self._read_images(payload["images"])
        self._image_by_id = {im.image_id: im for im in self.images}
        self.categories = self._read_categories(payload["categories"])
        self.class_to_category_id = [int(c["id"]) for c in self.categories]
        self.category_to_class = {cid: c for c, cid in enumerate(self.class_to_category_id)}
        self.class_names = [str(c["name"]) for c in self.categories]
        self._instances: dict[int, list[CocoInstance]] = {im.image_id: [] for im in self.images}
        self._read_annotations(payload["annotations"])
        if self.summary:
            log.warning("%s: skipped %s", self.path, dict(self.summary))

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path) -> "CocoAnnotations":
        """Read and validate ``path`` (raises :class:`CocoFormatError` naming the file)."""
        path = Path(path)
        if not path.is_file():
            raise CocoFormatError(f"{path}: annotation file not found")
        try:
            with open(path, encoding="utf-8-sig") as f:  # -sig: a leading byte-order mark is allowed
                payload = json.load(f)
        except json.JSONDecodeError as exc:
            raise CocoFormatError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
        except UnicodeDecodeError as exc:
            raise CocoFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except OSError as exc:
            raise CocoFormatError(f"{path}: cannot read the annotation file: {exc}") from exc
        return cls(path, payload)

    def _fail(self, message: str) -> None:
        raise CocoFormatError(f"{self.path}: {message}")

    def _read_images(self, entries: list[Any]) -> list[CocoImage]:
        images: dict[int, CocoImage] = {}
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                self._fail(f"images[{position}] must be an object")
            image_id = entry.get("id")
            if not _is_int(image_id):
                self._fail(f"images[{position}] has no integer 'id' (got {image_id!r})")
            where = f"image id {image_id}"
            file_name = entry.get("file_name")
            if not isinstance(file_name, str) or not file_name:
                self._fail(f"{where} has no 'file_name'")
            height, width = _integral(entry.get("height")), _integral(entry.get("width"))
            if not (_is_int(height) and _is_int(width)):
                self._fail(f"{where} ({file_name}) needs integer 'height' and 'width', got {height!r}, {width!r}")
            if height <= 0 or width <= 0:
                self._fail(f"{where} ({file_name}) is empty: size {width}x{height}")
            if image_id in images:
                self._fail(f"duplicate image id {image_id}")
            images[int(image_id)] = CocoImage(int(image_id), file_name, int(height), int(width))
        return [images[i] for i in sorted(images)]

    def _read_categories(self, entries: list[Any]) -> list[dict[str, Any]]:
        categories: dict[int, dict[str, Any]] = {}
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict) or not _is_int(entry.get("id")):
                self._fail(f"categories[{position}] needs an integer 'id'")
            if entry["id"] in categories:
                self._fail(f"duplicate category id {entry['id']}")
            categories[int(entry["id"])] = {**entry, "id": int(entry["id"]),
                                            "name": str(entry.get("name", entry["id"]))}
        if not categories:
            self._fail("'categories' is empty")
        return [categories[i] for i in sorted(categories)]

    def _read_annotations(self, entries: list[Any]) -> None:
        seen: set[int] = set()
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                self._fail(f"annotations[{position}] must be an object")
            ann_id = entry.get("id")
            if not _is_int(ann_id):
                self._fail(f"annotations[{position}] has no integer 'id' (got {ann_id!r})")
            where = f"annotation id {ann_id}"
            if ann_id in seen:
                self._fail(f"duplicate annotation id {ann_id}")
            seen.add(int(ann_id))
            image_id, category_id = entry.get("image_id"), entry.get("category_id")
            if not _is_int(image_id) or image_id not in self._image_by_id:
                self._fail(f"{where} points at unknown image id {image_id!r}")
            if not _is_int(category_id) or category_id not in self.category_to_class:
                self._fail(f"{where} (image id {image_id}) has unknown category id {category_id!r}; "
                           f"known: {self.class_to_category_id}")
            iscrowd = entry.get("iscrowd", 0)
            if iscrowd not in (0, 1, True, False):
                self._fail(f"{where}: 'iscrowd' must be 0 or 1, got {iscrowd!r}")
            image = self._image_by_id[image_id]
            segmentation = self._check_segmentation(entry.get("segmentation"), image, where)
            if segmentation is None:
                continue
            self._instances[int(image_id)].append(CocoInstance(int(ann_id), int(image_id), int(category_id),
                                                               bool(iscrowd), segmentation))

    def _check_segmentation(self, segmentation: Any, image: CocoImage, where: str) -> Any:
        """The segmentation with short polygons removed; None when nothing is left (counted)."""
        where = f"{where} (image id {image.image_id}, {image.file_name})"
        if isinstance(segmentation, dict):
            size, counts = segmentation.get("size"), segmentation.get("counts")
            if isinstance(size, list):
                size = [_integral(v) for v in size]
            if not (isinstance(size, list) and len(size) == 2 and all(_is_int(s) for s in size)):
                self._fail(f"{where}: RLE needs 'size' [height, width], got {size!r}")
            if list(size) != [image.height, image.width]:
                self._fail(f"{where}: RLE size {size} differs from the image's [height, width] "
                           f"[{image.height}, {image.width}]")
            if isinstance(counts, list):
                if not all(_is_int(c) and c >= 0 for c in counts):
                    self._fail(f"{where}: uncompressed RLE 'counts' must be non-negative integers")
                run_lengths = counts
            elif isinstance(counts, str):
                try:
                    run_lengths = compressed_rle_counts(counts)
                except ValueError as exc:
                    self._fail(f"{where}: malformed compressed RLE: {exc}")
                if any(c < 0 for c in run_lengths):
                    self._fail(f"{where}: malformed compressed RLE: negative run length")
            else:
                self._fail(f"{where}: RLE 'counts' must be a list or a string, got {type(counts).__name__}")
            if sum(run_lengths) != image.height * image.width:
                self._fail(f"{where}: RLE run lengths add up to {sum(run_lengths)}, "
                           f"not height*width = {image.height * image.width}")
            return {"size": [image.height, image.width], "counts": counts}
        if segmentation is None:
            self._fail(f"{where} has no 'segmentation' (polygons or RLE)")
        if not isinstance(segmentation, list):
            self._fail(f"{where}: 'segmentation' must be a list of polygons or an RLE object, "
                       f"got {type(segmentation).__name__}")
        polygons = []
        for k, polygon in enumerate(segmentation):
            if not isinstance(polygon, list):
                self._fail(f"{where}: polygon {k} must be a flat list of numbers [x0, y0, x1, y1, ...]")
            try:  # one C-level pass: TypeError for a non-number, a non-finite sum (or ValueError) for NaN / inf
                finite = math.isfinite(math.fsum(polygon))
            except TypeError:
                self._fail(f"{where}: polygon {k} must be a flat list of numbers [x0, y0, x1, y1, ...]")
            except (ValueError, OverflowError):
                finite = False
            if len(polygon) % 2:
                self._fail(f"{where}: polygon {k} has an odd number of coordinates ({len(polygon)})")
            if not finite:
                self._fail(f"{where}: polygon {k} has a non-finite coordinate")
            if len(polygon) < 6:
                self._skip("short_polygons", f"{where}: polygon {k} has {len(polygon) // 2} point(s), "
                           "fewer than 3: skipped")
                continue
            polygons.append(polygon)
        if not polygons:
            self._skip("annotations_without_polygon", f"{where} has no polygon with 3 or more points: "
                       "annotation skipped")
            return None
        return polygons

    # ------------------------------------------------------------------ access
    @property
    def image_ids(self) -> list[int]:
        return [im.image_id for im in self.images]

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def image(self, image_id: int) -> CocoImage:
        try:
            return self._image_by_id[image_id]
        except KeyError:
            raise KeyError(f"{self.path}: no image with id {image_id}") from None

    def annotations_of(self, image_id: int) -> list[CocoInstance]:
        """The validated annotations of one image (crowd and non-crowd), in file order."""
        self.image(image_id)
        return list(self._instances[image_id])

    def rle(self, instance: CocoInstance) -> dict[str, Any]:
        """The instance's mask as one compressed RLE at its image's size (``counts`` bytes)."""
        image = self._image_by_id[instance.image_id]
        segmentation = instance.segmentation
        if isinstance(segmentation, list):
            return mask_utils.merge(mask_utils.frPyObjects(segmentation, image.height, image.width))
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(segmentation, image.height, image.width)
        return {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}

    def instances(self, image_id: int) -> ImageInstances:
        """Decode one image's annotations at its original size (see :class:`ImageInstances`)."""
        image = self.image(image_id)
        masks, classes, ids = [], [], []
        crowd = np.zeros((image.height, image.width), dtype=bool)
        instances = self._instances[image_id]
        decoded = decode_rles([self.rle(instance) for instance in instances], image.height, image.width)
        for instance, mask in zip(instances, decoded):
            if instance.iscrowd:
                crowd |= mask
                continue
            if not mask.any():
                self._warn_empty(instance)
                continue
            masks.append(mask)
            classes.append(self.category_to_class[instance.category_id])
            ids.append(instance.annotation_id)
        stacked = np.stack(masks) if masks else np.zeros((0, image.height, image.width), dtype=bool)
        return ImageInstances(masks=stacked, classes=np.asarray(classes, dtype=np.int64),
                              annotation_ids=np.asarray(ids, dtype=np.int64), crowd=crowd)

    def _warn_empty(self, instance: CocoInstance) -> None:
        if instance.annotation_id not in self._warned_empty:
            self._warned_empty.add(instance.annotation_id)
            self._skip("empty_masks", f"annotation id {instance.annotation_id} (image id {instance.image_id}) "
                       "has an empty mask: skipped")

    def _skip(self, kind: str, message: str) -> None:
        """Count a skipped item; the first few of each kind are logged one by one, the rest in the summary."""
        self.summary[kind] += 1
        if self.summary[kind] <= _LOGGED_PER_KIND:
            log.warning("%s: %s", self.path, message)
        elif self.summary[kind] == _LOGGED_PER_KIND + 1:
            log.warning("%s: more %s; see the summary", self.path, kind)

    @property
    def coco(self) -> COCO:
        """The evaluation GT of every image (see :meth:`evaluation_gt`)."""
        return self.evaluation_gt()

    def evaluation_gt(self, image_ids: Optional[Sequence[int]] = None) -> COCO:
        """The evaluation GT as a pycocotools ``COCO`` over ``image_ids`` (default: all images).

        Holds those images and their kept annotations, each with its segmentation as compressed RLE
        (the mask the dataset trains on), ``area`` and ``bbox`` recomputed from that mask and
        ``iscrowd`` 0/1; annotations with an empty mask are left out (warned and counted).
        """
        images = self.images if image_ids is None else [self.image(int(i)) for i in image_ids]
        annotations = []
        for image in images:
            for instance in self._instances[image.image_id]:
                rle = self.rle(instance)
                area = float(mask_utils.area(rle))
                if area == 0 and not instance.iscrowd:
                    self._warn_empty(instance)
                    continue
                annotations.append({
                    "id": instance.annotation_id, "image_id": instance.image_id,
                    "category_id": instance.category_id, "iscrowd": int(instance.iscrowd),
                    "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                    "area": area, "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
        dataset = {**self._payload_info,
                   "images": [{"id": im.image_id, "file_name": im.file_name, "height": im.height, "width": im.width}
                              for im in images],
                   "categories": [dict(c) for c in self.categories], "annotations": annotations}
        return coco_from_dataset(dataset)


def decode_rles(rles: list[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """Compressed RLEs (pycocotools dicts) -> bool [N, height, width] in one pycocotools call."""
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    with warnings.catch_warnings():
        # pycocotools 2.0.x under numpy 2 warns about its own __array__ on every decode; nothing to act on
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = mask_utils.decode(rles)
    return np.ascontiguousarray(decoded.transpose(2, 0, 1), dtype=bool)


def coco_from_dataset(dataset: dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` over an in-memory dataset dict (its index-building chatter silenced)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(path: str | Path) -> CocoAnnotations:
    """Shorthand for :meth:`CocoAnnotations.load`."""
    return CocoAnnotations.load(path)
