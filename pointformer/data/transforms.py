"""Mask3D-style augmentations of one scene, each drawing from an explicit ``np.random.Generator``.

Every transform is a callable ``(sample: PointSample, rng: np.random.Generator) -> PointSample``.
The generator is passed in (never the global numpy state) so that the dataset can seed it per
(seed, epoch, scene index): the same key always gives the same augmented scene, which is what makes
resuming a killed run mid-epoch exact, and what keeps the result independent of worker processes.

Geometric transforms move ``xyz`` and ``normals`` together; colour transforms work on ``rgb`` as
float32 in [0, 255] until :class:`NormalizeColor` turns it into the network's input scale.
Labels are never touched: no transform drops or reorders points (point order = mesh vertex order).
The one exception is :class:`RandomCuboidCrop` (S3DIS training), which is not a ``Transform``: it
returns the indices of the points to keep, and the dataset subsets every per-point array with them
before the transforms run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import ndimage

# Colour statistics of ScanNet v2 train (rgb / 255), the values Mask3D normalises with.
SCANNET_COLOR_MEAN: tuple[float, float, float] = (0.47793125906962, 0.4303257521323044, 0.3749598901421883)
SCANNET_COLOR_STD: tuple[float, float, float] = (0.2834475483823543, 0.27566157565723015, 0.27018971370874995)


@dataclass
class PointSample:
    """The mutable per-scene arrays that transforms change (V points).

    xyz float32 [V, 3] metres; rgb float32 [V, 3] in [0, 255] (after NormalizeColor: normalised);
    normals float32 [V, 3] unit vectors (zeros where undefined).
    """

    xyz: np.ndarray
    rgb: np.ndarray
    normals: np.ndarray


Transform = Callable[[PointSample, np.random.Generator], PointSample]


def _transform_vectors(sample: PointSample, matrix: np.ndarray) -> None:
    """Apply a linear map to xyz and the matching normal transform (inverse transpose) to normals."""
    sample.xyz = (sample.xyz @ matrix.T).astype(np.float32)
    normal_map = np.linalg.inv(matrix).T
    normals = sample.normals @ normal_map.T
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    # zero normals (undefined) stay zero instead of becoming NaN
    sample.normals = np.where(length > 0, normals / np.maximum(length, 1e-12), 0.0).astype(np.float32)


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: PointSample, rng: np.random.Generator) -> PointSample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class CenterScene:
    """Move the scene so that its points' mean is the origin (Mask3D centres every scene).

    ``grid`` (metres): move it by the mean rounded to a multiple of ``grid`` instead, so that two scenes
    cut from one scan (a tile, a room, the whole scan) keep the same voxel grid relative to the scan;
    prediction on scans uses the model's ``translation_period`` (``inference.predictor``).
    """

    def __init__(self, *, grid: Optional[float] = None) -> None:
        if grid is not None and not grid > 0:
            raise ValueError(f"CenterScene: grid must be positive, got {grid}")
        self.grid = grid

    def __call__(self, sample: PointSample, rng: np.random.Generator) -> PointSample:
        centre = sample.xyz.mean(axis=0, dtype=np.float64)
        if self.grid is not None:
            centre = np.round(centre / self.grid) * self.grid
        sample.xyz = (sample.xyz - centre).astype(np.float32)
        return sample

    def __repr__(self) -> str:
        return "CenterScene()" if self.grid is None else f"CenterScene(grid={self.grid})"


class RandomFlip:
    """Mirror each of the given axes independently with probability ``p``."""

    def __init__(self, *, axes: Sequence[int] = (0, 1), p: float = 0.5) -> None:
        if any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"RandomFlip: axes must be in 0..2, got {list(axes)}")
        self.axes, self.p = tuple(axes), float(p)

    def __call__(self, sample: PointSample, rng: np.random.Generator) -> PointSample:
        signs = np.ones(3)
        for axis in self.axes:
            if rng.random() < self.p:
                signs[axis] = -1.0
        if (signs < 0).any():
            _transform_vectors(sample, np.diag(signs))
        return sample

    def __repr__(self) -> str:
        return f"RandomFlip(axes={self.axes}, p={self.p})"


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


class RandomRotation:
    """Rotate about z by U(z_range) and tilt about x and y by U(-tilt, tilt) each (radians)."""

    def __init__(self, *, z_range: Sequence[float] = (-math.pi, math.pi), tilt: float = math.pi / 24) -> None:
        if len(z_range) != 2 or z_range[0] > z_range[1]:
            raise ValueError(f"RandomRotation: z_range must be (low, high) with low <= high, got {z_range}")
        if tilt < 0:
            raise ValueError(f"RandomRotation: tilt must be >= 0, got {tilt}")
        self.z_range, self.tilt = (float(z_range[0]), float(z_range[1])), float(tilt)

    def __call__(self, sample: PointSample, rng: np.random.Generator) -> PointSample:
        angle_x, angle_y = rng.uniform(-self.tilt, self.tilt, size=2) if self.tilt > 0 else (0.0, 0.0)
        angle_z = rng.uniform(*self.z_range)
        matrix = _rotation(2, angle_z) @ _rotation(1, angle_y) @ _rotation(0, angle_x)
        _transform_vectors(sample, matrix)
        return sample

    def __repr__(self) -> str:
        return f"RandomRotation(z_range={self.z_range}, tilt={self.tilt:.4f})"


class RandomScale:
    """Scale each axis by U(low, high) (one shared factor when ``per_axis`` is False)."""

    def __init__(self, *, low: float = 0.9, high: float = 1.1, per_axis: bool = True) -> None:
        if not 0 < low <= high:
            raise ValueError(f"RandomScale: need 0 < low <= high, got low={low} high={high}")
        self.low, self.high, self.per_axis = float(low), float(high), bool(per_axis)

    def __call__(self, sample: PointSample, rng: np.random.Generator) -> PointSample:
        factors = rng.uniform(self.low, self.high, size=3 if self.per_axis else 1) * np.ones(3)
        _transform_vectors(sample, np.diag(factors))
        return sample

    def __repr__(self) -> str:
        return f"RandomScale(low={self.low}, high={self.high}, per_axis={self.per_axis})"


class ElasticDistortion:
    """Smooth random displacement field (Mask3D's elastic distortion), applied with probability ``p``.

    For each (granularity, magnitude) pair in metres: Gaussian noise on a grid of that spacing over the
    scene's bounding box, smoothed by three passes of a 3-wide box filter along each axis, sampled at
    every point by trilinear interpolation and added times ``magnitude``. Normals are left unchanged
    (the field is smooth at the scale of a normal's neighbourhood).
    """

    def __init__(self, *, params: Sequence[Sequence[float]] = ((0.2, 0.4), (0.8, 1.6)), p: float = 0.95) -> None:
        parsed = []
        for pair in params:
            if len(pair) != 2 or pair[0] <= 0 or pair[1] < 0:
                raise ValueError(f"ElasticDistortion: each entry must be (granularity > 0, magnitude >= 0), got {pair}")
            parsed.append((float(pair[0]), float(pair[1])))
        self.params, self.p = tuple(parsed), float(p)

    @staticmethod
    def _distort(xyz: np.ndarray, granularity: float, magnitude: float, rng: np.random.Generator) -> np.ndarray:
        low = xyz.min(axis=0)
        # +3 cells of margin so the smoothing's borders stay outside the scene
        shape = (np.floor((xyz.max(axis=0) - low) / granularity).astype(np.int64) + 3)
        noise = rng.standard_normal((*shape, 3)).astype(np.float32)
        for _ in range(3):  # repeated box filtering approximates a Gaussian blur
            for axis in range(3):
                noise = ndimage.uniform_filter1d(noise, size=3, axis=axis, mode="constant")
        grid_pos = (xyz - low) / granularity + 1.0  # continuous grid coordinates (cell 1 = scene min)
        base = np.clip(np.floor(grid_pos).astype(np.int64), 0, shape - 2)
        frac = (grid_pos - base).astype(np.float32)
        out = np.zeros_like(xyz, dtype=np.float32)
        for corner in range(8):
            offset = np.array([(corner >> k) & 1 for k in range(3)])
            weight = np.prod(np.where(offset, frac, 1.0 - frac), axis=1, keepdims=True)
            idx = base + offset
            out += weight * noise[idx[:, 0], idx[:, 1], idx[:, 2]]
        return (xyz + out * magnitude).astype(np.float32)

    def __call__(self, sample: PointSample, rng: np.random.Generator) -> PointSample:
        if rng.random() < self.p:
            for granularity, magnitude in self.params:
                sample.xyz = self._distort(sample.xyz, granularity, magnitude, rng)
        return sample

    def __repr__(self) -> str:
        return f"ElasticDistortion(params={self.params}, p={self.p})"


class ColorJitter:
    """Brightness/contrast (factors U(-b, b), U(-c, c)) and a per-channel RGB shift U(-shift, shift).

    contrast scales colours about the scene's mean colour by (1 + c); brightness adds b * 255; the
    result is clipped to [0, 255]. Applied with probability ``p`` (each part).
    """

    def __init__(self, *, brightness: float = 0.2, contrast: float = 0.2, shift: float = 20.0, p: float = 0.5) -> None:
        if brightness < 0 or contrast < 0 or shift < 0:
            raise ValueError(
                f"ColorJitter: limits must be >= 0, got brightness={brightness} contrast={contrast} shift={shift}"
            )
        self.brightness, self.contrast, self.shift, self.p = float(brightness), float(contrast), float(shift), float(p)

    def __call__(self, sample: PointSample, rng: np.random.Generator) -> PointSample:
        rgb = sample.rgb.astype(np.float32)
        if rng.random() < self.p:
            alpha = 1.0 + rng.uniform(-self.contrast, self.contrast)
            beta = rng.uniform(-self.brightness, self.brightness) * 255.0
            mean = rgb.mean(axis=0, keepdims=True)
            rgb = (rgb - mean) * alpha + mean + beta
        if rng.random() < self.p:
            rgb = rgb + rng.uniform(-self.shift, self.shift, size=(1, 3))
        sample.rgb = np.clip(rgb, 0.0, 255.0).astype(np.float32)
        return sample

    def __repr__(self) -> str:
        return f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, shift={self.shift}, p={self.p})"


class NormalizeColor:
    """rgb in [0, 255] -> (rgb / 255 - mean) / std, per channel (the network's colour input)."""

    def __init__(self, *, mean: Sequence[float] = SCANNET_COLOR_MEAN, std: Sequence[float] = SCANNET_COLOR_STD) -> None:
        mean_arr, std_arr = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
        if mean_arr.shape != (3,) or std_arr.shape != (3,) or (std_arr <= 0).any():
            raise ValueError(
                f"NormalizeColor: mean and std must be 3 values with std > 0, got mean={list(mean)} std={list(std)}"
            )
        self.mean, self.std = mean_arr, std_arr

    def __call__(self, sample: PointSample, rng: np.random.Generator) -> PointSample:
        sample.rgb = ((sample.rgb.astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)
        return sample

    def __repr__(self) -> str:
        return f"NormalizeColor(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCuboidCrop:
    """Keep the points inside an axis-aligned cuboid of ``size`` metres around a random point.

    ``size`` is one edge for x and y (z unbounded) or three edges (x, y, z; ``None`` = unbounded on
    that axis). The centre is a uniformly drawn point of the scene, so a crop is never empty; a scene
    smaller than the cuboid is kept whole. Draws exactly one integer from the generator per call.
    """

    def __init__(self, *, size: float | Sequence[Optional[float]] = 6.0) -> None:
        edges = [size, size, None] if isinstance(size, (int, float)) else list(size)
        if len(edges) != 3 or any(e is not None and (isinstance(e, bool) or not float(e) > 0) for e in edges):
            raise ValueError(f"data.crop.size must be a positive number (x and y) or three positive numbers / "
                             f"null (x, y, z; null = unbounded), got {size!r}")
        self.size = np.array([np.inf if e is None else float(e) for e in edges])

    def __call__(self, xyz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64 indices (ascending, at least one) of the points of ``xyz`` [V, 3] inside the crop."""
        if xyz.shape[0] == 0:
            raise ValueError("RandomCuboidCrop: the scene has no points")
        centre = xyz[int(rng.integers(xyz.shape[0]))].astype(np.float64)
        inside = np.all(np.abs(xyz - centre) <= self.size / 2, axis=1)
        return np.flatnonzero(inside)

    def __repr__(self) -> str:
        return f"RandomCuboidCrop(size={[None if np.isinf(e) else float(e) for e in self.size]})"


class NeighbourPlacement:
    """Where a second scene goes when a training sample shows two rooms side by side.

    Scans of buildings hold many rooms, and a tile of one holds several; a model trained on single rooms has
    never seen an object of another room next to its own, so a query may claim the look-alike objects of a
    neighbouring room. Training on pairs teaches it not to. The second scene is put beside the first along
    a random horizontal axis and side, ``gap`` metres (uniform in the range) from it, floors at the same
    height, and shifted along the other axis by a uniform fraction of the rooms' overlap. Draws a fixed
    number of values from the generator per call (one decision, then four placement draws when placed).

    Args:
        probability: share of training samples that get a neighbour.
        gap: [low, high] metres between the two scenes' bounding boxes.
    """

    def __init__(self, *, probability: float = 0.5, gap: Sequence[float] = (0.3, 1.5)) -> None:
        if isinstance(probability, bool) or not 0.0 <= float(probability) <= 1.0:
            raise ValueError(f"data.neighbours.probability must be in [0, 1], got {probability!r}")
        gap = [float(g) for g in gap] if isinstance(gap, (list, tuple)) else []
        if len(gap) != 2 or not 0.0 <= gap[0] <= gap[1]:
            raise ValueError(f"data.neighbours.gap must be [low, high] metres with 0 <= low <= high, got {gap!r}")
        self.probability = float(probability)
        self.gap = (gap[0], gap[1])

    def wants_neighbour(self, rng: np.random.Generator) -> bool:
        return bool(rng.random() < self.probability)

    def offset(self, first: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float64 [3] translation that puts ``second`` [V2, 3] beside ``first`` [V1, 3] (never overlapping)."""
        axis, side = int(rng.integers(2)), 1 if rng.random() < 0.5 else -1
        gap, slide = rng.uniform(*self.gap), rng.random()
        low1, high1 = first.min(axis=0).astype(np.float64), first.max(axis=0).astype(np.float64)
        low2, high2 = second.min(axis=0).astype(np.float64), second.max(axis=0).astype(np.float64)
        offset = np.zeros(3)
        offset[axis] = (high1[axis] + gap - low2[axis]) if side > 0 else (low1[axis] - gap - high2[axis])
        other = 1 - axis  # anywhere from "ends aligned on one side" to "ends aligned on the other"
        start, end = low1[other] - low2[other], high1[other] - high2[other]
        offset[other] = start + slide * (end - start)
        offset[2] = low1[2] - low2[2]
        return offset

    def __repr__(self) -> str:
        return f"NeighbourPlacement(probability={self.probability}, gap={list(self.gap)})"


def build_neighbours(neighbours: Optional[dict]) -> Optional[NeighbourPlacement]:
    """The training pairs of ``data.neighbours`` (``None``: single scenes). Keys: ``probability``, ``gap``."""
    if neighbours is None:
        return None
    unknown = set(neighbours) - {"probability", "gap"}
    if unknown:
        raise ValueError(f"data.neighbours: unknown option(s) {sorted(unknown)}; known: gap, probability")
    return NeighbourPlacement(**neighbours)


def build_crop(crop: Optional[dict]) -> Optional[RandomCuboidCrop]:
    """The training crop of ``data.crop`` (``None``: no crop). Keys: ``size`` (see :class:`RandomCuboidCrop`)."""
    if crop is None:
        return None
    unknown = set(crop) - {"size"}
    if unknown:
        raise ValueError(f"data.crop: unknown option(s) {sorted(unknown)}; known: size")
    return RandomCuboidCrop(**crop)


def build_transforms(
    *,
    train: bool,
    color_mean: Sequence[float] = SCANNET_COLOR_MEAN,
    color_std: Sequence[float] = SCANNET_COLOR_STD,
    augment: Optional[dict] = None,
    centre_grid: Optional[float] = None,
) -> Compose:
    """The Mask3D pipeline: centre, then (training only) flips, rotation, scaling, elastic distortion,
    colour jitter, and always colour normalisation. ``augment`` holds per-transform keyword overrides,
    keyed ``flip``, ``rotation``, ``scale``, ``elastic``, ``color_jitter``; a key set to ``None`` or
    ``False`` switches that transform off. ``centre_grid``: centre by a multiple of it (:class:`CenterScene`).
    """
    augment = dict(augment or {})
    unknown = set(augment) - {"flip", "rotation", "scale", "elastic", "color_jitter"}
    if unknown:
        raise ValueError(
            f"data.augment: unknown augmentation(s) {sorted(unknown)}; "
            "known: flip, rotation, scale, elastic, color_jitter"
        )
    steps: list[Transform] = [CenterScene(grid=centre_grid)]
    if train:
        for key, cls in (("flip", RandomFlip), ("rotation", RandomRotation), ("scale", RandomScale),
                         ("elastic", ElasticDistortion), ("color_jitter", ColorJitter)):
            options = augment.get(key, {})
            if options is None or options is False:
                continue
            try:
                steps.append(cls(**dict(options)))
            except TypeError as exc:
                raise ValueError(f"data.augment.{key}: bad options {dict(options)} ({exc})") from None
    steps.append(NormalizeColor(mean=color_mean, std=color_std))
    return Compose(steps)
