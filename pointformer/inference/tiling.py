"""Scans of any size: voxel units, overlapping tiles, and instances merged across tile borders.

A scan of N points (a room or a building) is predicted in three steps, each with bounded memory:

1. **Units** (:func:`voxel_units`): points are grouped into cubes of the model's voxel size (and, for a
   mesh, by superpoint too), because the backbone sees one value per voxel anyway. A unit carries
   the mean position / colour / normal of its points and their count; the scan keeps one int32 unit
   id per point. A 20-million-point LiDAR scan at 4 cm voxels becomes ~1-2 million units.
2. **Tiles** (:class:`TileGrid`): the x-y plane is cut into square *cores* of ``size - overlap``
   metres; a tile is its core grown by ``overlap / 2`` on every side (``size`` metres, z unbounded).
   Every unit has one *home* tile (the core it lies in); a scan no larger than ``size`` is one tile.
3. **Merging** (:class:`TileMerger`): tiles are predicted in order. A tile's instances label the units
   of its core (final); the units of its border band whose home tile was predicted earlier are the
   *shared band*: a tile instance whose points there overlap an earlier instance with IoU >= ``merge_iou``
   (over the band's points) continues that instance (union–find, so an instance may join several).
   Instances are numbered at the end by descending score; those with fewer than ``min_points`` points
   are dropped. Memory: the per-unit labels (int32) and one tile's arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np


@dataclass
class VoxelUnits:
    """Points grouped into voxel units (N points, M units).

    point_unit int32 [N]: the unit of every point; xyz float64 [M, 3]: mean position (scan-local);
    count int64 [M]: points per unit; rgb float32 [M, 3] / normals float32 [M, 3] / superpoint int64 [M]:
    per-unit means (normals re-normalised) or the unit's superpoint, None when not given.
    """

    point_unit: np.ndarray
    xyz: np.ndarray
    count: np.ndarray
    rgb: Optional[np.ndarray]
    normals: Optional[np.ndarray]
    superpoint: Optional[np.ndarray]

    @property
    def num_units(self) -> int:
        return int(self.xyz.shape[0])


def voxel_units(xyz: np.ndarray, voxel: float, *, rgb: Optional[np.ndarray] = None,
                normals: Optional[np.ndarray] = None, superpoint: Optional[np.ndarray] = None,
                chunk: int = 4_000_000) -> VoxelUnits:
    """Group points into ``voxel``-metre cubes (and superpoints, when given): module doc, step 1.

    xyz float [N, 3] metres, georeferenced float64 too (voxels are counted from the scan's minimum, in float64,
    ``chunk`` points at a time; no shifted copy of the scan is made); rgb [N, 3] 0..255; normals float [N, 3];
    superpoint int [N]. Memory: a few int64 arrays [N]. The units' xyz are float64 means in the input's frame.
    """
    if not voxel > 0:
        raise ValueError(f"the voxel size must be positive, got {voxel}")
    n = xyz.shape[0]
    low = xyz.min(axis=0).astype(np.float64)
    keys = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):  # one 21-bit integer per axis (2^21 voxels of 2 cm = 42 km)
        cells = np.floor((xyz[start:start + chunk].astype(np.float64) - low) / voxel).astype(np.int64)
        if cells.max(initial=0) >= 1 << 21:
            raise ValueError(f"the scan spans more than {(1 << 21) * voxel:.0f} m at {voxel} m voxels; cut it first")
        keys[start:start + chunk] = (cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2]
    if superpoint is not None:
        # a unit never spans two superpoints: key by (superpoint, voxel) via a second unique pass
        _, voxel_id = np.unique(keys, return_inverse=True)
        keys = np.asarray(superpoint, dtype=np.int64) * (int(voxel_id.max()) + 1) + voxel_id.reshape(-1)
        del voxel_id
    _, point_unit = np.unique(keys, return_inverse=True)
    del keys
    point_unit = point_unit.reshape(-1).astype(np.int32)
    m = int(point_unit.max()) + 1
    count = np.bincount(point_unit, minlength=m)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(point_unit, weights=values[:, c], minlength=m) for c in range(values.shape[1])],
                        axis=1) / count[:, None]

    unit_normals = None
    if normals is not None:
        unit_normals = mean(np.asarray(normals, dtype=np.float64))
        length = np.linalg.norm(unit_normals, axis=1, keepdims=True)
        unit_normals = np.where(length > 1e-12, unit_normals / np.maximum(length, 1e-12), 0.0).astype(np.float32)
    unit_superpoint = None
    if superpoint is not None:
        unit_superpoint = np.zeros(m, dtype=np.int64)
        unit_superpoint[point_unit] = superpoint
    return VoxelUnits(point_unit=point_unit, xyz=mean(xyz), count=count,
                      rgb=None if rgb is None else mean(np.asarray(rgb, dtype=np.float64)).astype(np.float32),
                      normals=unit_normals, superpoint=unit_superpoint)


@dataclass(frozen=True)
class Tile:
    """One tile: index (row-major), its core and outer x-y boxes [x0, x1) x [y0, y1) (infinite at the scan's edges)."""

    index: int
    core: tuple[float, float, float, float]
    outer: tuple[float, float, float, float]


class TileGrid:
    """Square tiles of ``size`` metres overlapping by ``overlap`` metres over the x-y box of ``xy`` (module doc).

    ``size`` None: one tile for the whole scan."""

    def __init__(self, xy: np.ndarray, size: Optional[float], overlap: float) -> None:
        if size is not None and not size > 0:
            raise ValueError(f"the tile size must be positive, got {size}")
        if not overlap >= 0 or (size is not None and overlap >= size):
            raise ValueError(f"the tile overlap must lie in [0, tile size), got {overlap} (tile {size})")
        self.size, self.overlap = size, overlap
        self.low = xy.min(axis=0).astype(np.float64)
        extent = xy.max(axis=0) - self.low
        self.stride = math.inf if size is None else size - overlap
        self.shape = tuple(1 if size is None or e <= size else int(math.ceil(e / self.stride)) for e in extent)

    @property
    def num_tiles(self) -> int:
        return self.shape[0] * self.shape[1]

    def home(self, xy: np.ndarray) -> np.ndarray:
        """int32 [M]: the tile whose core holds each point xy [M, 2]."""
        ids = []
        for axis in (0, 1):
            if self.shape[axis] == 1:
                ids.append(np.zeros(xy.shape[0], dtype=np.int64))
            else:
                cell = np.floor((xy[:, axis] - self.low[axis]) / self.stride).astype(np.int64)
                ids.append(np.clip(cell, 0, self.shape[axis] - 1))
        return (ids[0] * self.shape[1] + ids[1]).astype(np.int32)

    def tiles(self) -> Iterator[Tile]:
        for i in range(self.shape[0]):
            for j in range(self.shape[1]):
                bounds = []
                for axis, k in ((0, i), (1, j)):
                    lo = -math.inf if k == 0 else self.low[axis] + k * self.stride
                    hi = math.inf if k == self.shape[axis] - 1 else self.low[axis] + (k + 1) * self.stride
                    bounds.append((lo, hi))
                (x0, x1), (y0, y1) = bounds
                h = self.overlap / 2
                yield Tile(index=i * self.shape[1] + j, core=(x0, x1, y0, y1), outer=(x0 - h, x1 + h, y0 - h, y1 + h))

    def describe(self) -> Optional[dict]:
        """The tiling for an output's metadata (None: one pass)."""
        if self.num_tiles == 1:
            return None
        return {"size_m": self.size, "overlap_m": self.overlap, "grid": list(self.shape), "count": self.num_tiles}


def in_box(xy: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """bool [M]: which points xy [M, 2] lie in the box [x0, x1) x [y0, y1)."""
    x0, x1, y0, y1 = box
    return (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)


@dataclass
class MergedInstances:
    """Instances over M units after merging: unit_instance int32 [M] (0..K-1, -1 none), and per instance
    (K, by descending score) class_ids int64 [K], scores float64 [K], num_points int64 [K]."""

    unit_instance: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    num_points: np.ndarray


class TileMerger:
    """Collects tile predictions into scan instances (module doc, step 3).

    Args:
        num_tiles: the tiles of the grid; unit_home: int32 [M] the home tile of every unit;
        unit_points: int [M] points per unit (IoU weights);
        merge_iou: IoU over the shared band above which a tile instance continues an earlier instance.
    """

    def __init__(self, num_tiles: int, unit_home: np.ndarray, unit_points: np.ndarray, *,
                 merge_iou: float = 0.5) -> None:
        if not 0 < merge_iou <= 1:
            raise ValueError(f"merge_iou must lie in (0, 1], got {merge_iou}")
        self.home = unit_home
        self.points = np.asarray(unit_points, dtype=np.int64)
        self.merge_iou = merge_iou
        self.part = np.full(unit_home.shape[0], -1, dtype=np.int32)  # the part (tile instance) of each unit
        self.parent: list[int] = []        # union–find over parts
        self.part_score: list[float] = []
        self.part_class: list[int] = []
        self.done = np.zeros(num_tiles, dtype=bool)  # tiles added so far, by index

    def _root(self, p: int) -> int:
        while self.parent[p] != p:
            self.parent[p] = self.parent[self.parent[p]]
            p = self.parent[p]
        return p

    def add(self, tile: int, units: np.ndarray, labels: np.ndarray, scores: np.ndarray,
            class_ids: np.ndarray) -> None:
        """The prediction of ``tile`` over its units int [m] (all units in its outer box): labels int [m]
        (tile instance 0..k-1, -1 none), scores float [k], class_ids int [k]."""
        if self.done[tile]:
            raise ValueError(f"tile {tile} was added twice")
        k = int(scores.shape[0])
        if labels.size and (labels.min() < -1 or labels.max() >= k):
            raise ValueError(f"tile {tile}: labels must lie in -1..{k - 1}")
        home = self.home[units]
        band = self.done[home] if home.size else np.zeros(0, dtype=bool)  # final units of earlier tiles
        part_of_label = np.arange(len(self.parent), len(self.parent) + k, dtype=np.int32)
        for label in range(k):
            self.parent.append(int(part_of_label[label]))
            self.part_score.append(float(scores[label]))
            self.part_class.append(int(class_ids[label]))
        if band.any() and k:
            self._match(labels[band], self.part[units[band]], self.points[units[band]], part_of_label)
        core = home == tile
        lookup = np.append(part_of_label, np.int32(-1))  # label -1 (no instance) -> the appended -1
        self.part[units[core]] = lookup[labels[core]]
        self.done[tile] = True

    def _match(self, tile_label: np.ndarray, earlier_part: np.ndarray, weight: np.ndarray,
               part_of_label: np.ndarray) -> None:
        """Union every tile instance with the earlier instances it overlaps with IoU >= merge_iou in the band."""
        roots = np.array([self._root(p) for p in range(len(self.parent))], dtype=np.int64)
        earlier = np.where(earlier_part >= 0, roots[np.maximum(earlier_part, 0)], -1)
        size_label = np.bincount(tile_label[tile_label >= 0], weights=weight[tile_label >= 0],
                                 minlength=part_of_label.shape[0])
        has = earlier >= 0
        ids, local = np.unique(earlier[has], return_inverse=True)
        size_earlier = np.bincount(local.reshape(-1), weights=weight[has], minlength=ids.shape[0])
        both = (tile_label >= 0) & has
        if not both.any():
            return
        pair = tile_label[both].astype(np.int64) * ids.shape[0] + np.searchsorted(ids, earlier[both])
        keys, inter = np.unique(pair, return_inverse=True)
        inter = np.bincount(inter.reshape(-1), weights=weight[both])
        for key, overlap in zip(keys.tolist(), inter.tolist()):
            label, e = divmod(key, ids.shape[0])
            iou = overlap / (size_label[label] + size_earlier[e] - overlap)
            if iou >= self.merge_iou:
                a, b = self._root(int(part_of_label[label])), self._root(int(ids[e]))
                if a != b:
                    self.parent[a] = b

    def finish(self, *, min_points: int = 1) -> MergedInstances:
        """The merged instances: a part's class is that of the instance's largest part (by points), the
        score the point-weighted mean of its parts' scores; instances under ``min_points`` points are dropped."""
        num_parts = len(self.parent)
        m = self.part.shape[0]
        if num_parts == 0:
            return MergedInstances(np.full(m, -1, np.int32), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
        roots = np.array([self._root(p) for p in range(num_parts)], dtype=np.int64)
        assigned = self.part >= 0
        part_points = np.bincount(self.part[assigned], weights=self.points[assigned], minlength=num_parts)
        inst_of_part = np.unique(roots, return_inverse=True)[1].reshape(-1)
        k = int(inst_of_part.max()) + 1
        points = np.bincount(inst_of_part, weights=part_points, minlength=k)
        score_sum = np.bincount(inst_of_part, weights=part_points * np.asarray(self.part_score), minlength=k)
        # largest part first within each instance: lexsort by (instance, -points) and take the first per instance
        order = np.lexsort((-part_points, inst_of_part))
        first = order[np.r_[True, inst_of_part[order][1:] != inst_of_part[order][:-1]]]
        class_of = np.asarray(self.part_class, dtype=np.int64)[first]
        keep = np.flatnonzero(points >= max(min_points, 1))
        scores = score_sum[keep] / points[keep]
        ranked = keep[np.argsort(-scores, kind="stable")]
        renumber = np.full(k, -1, dtype=np.int32)
        renumber[ranked] = np.arange(ranked.shape[0], dtype=np.int32)
        unit_instance = np.where(assigned, renumber[inst_of_part[np.maximum(self.part, 0)]], -1).astype(np.int32)
        return MergedInstances(unit_instance=unit_instance, class_ids=class_of[ranked],
                               scores=score_sum[ranked] / points[ranked], num_points=points[ranked].astype(np.int64))


# A tile's prediction: its units int [m] -> (labels int [m] 0..k-1 or -1, scores float [k], class ids int [k]).
TilePredictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def predict_tiled(xy: np.ndarray, count: np.ndarray, predict_tile: TilePredictor, *, tile_size: Optional[float],
                  overlap: float, merge_iou: float = 0.5, min_points: int = 1,
                  progress: bool = False) -> tuple[MergedInstances, TileGrid]:
    """Predict M units tile by tile and merge the instances (module doc, steps 2-3).

    xy float [M, 2] unit positions; count int [M] points per unit; predict_tile: called once per tile with at
    least 2 units (row-major order). Returns the merged instances over the units and the grid used.
    """
    grid = TileGrid(xy, tile_size, overlap)
    merger = TileMerger(grid.num_tiles, grid.home(xy), count, merge_iou=merge_iou)
    tiles: Any = grid.tiles()
    if progress:
        from tqdm import tqdm

        tiles = tqdm(tiles, total=grid.num_tiles, desc=f"predict {grid.num_tiles} tile(s)", dynamic_ncols=True)
    for tile in tiles:
        units = np.flatnonzero(in_box(xy, tile.outer))
        if units.size < 2:  # nothing to predict (an empty tile, or a lone point)
            merger.add(tile.index, units, np.full(units.size, -1, np.int32), np.zeros(0), np.zeros(0, np.int64))
            continue
        labels, scores, class_ids = predict_tile(units)
        merger.add(tile.index, units, np.asarray(labels, dtype=np.int32), np.asarray(scores, dtype=np.float64),
                   np.asarray(class_ids, dtype=np.int64))
    return merger.finish(min_points=min_points), grid
