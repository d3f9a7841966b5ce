"""Tiling: voxel units, the tile grid, and tiled prediction agreeing with one pass.

The agreement test uses a *local* per-tile predictor (connected components of the tile's units), so
one pass and tiles must find the same objects when the merging is right: objects are placed across
tile borders (and one spans many tiles), and the criterion is the issue's (IoU >= 0.9 for >= 95 %)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from pointformer.inference.tiling import TileGrid, TileMerger, in_box, predict_tiled, voxel_units
from pointformer.preprocess.cloud_segmentator import cloud_normals


def _objects_scan(seed=0):
    """Points of ~45 separate boxes (0.5-3.5 m) over 34 x 34 m, one 24 m wall, and the object of each point."""
    rng = np.random.default_rng(seed)
    parts, owner, placed = [], [], []
    while len(placed) < 45:
        size = np.r_[rng.uniform(0.5, 3.5, 2), rng.uniform(0.3, 1.0)]
        low = np.r_[rng.uniform(0, 34 - size[0]), rng.uniform(0, 34 - size[1]), 0.0]
        box = (low[0] - 0.4, low[0] + size[0] + 0.4, low[1] - 0.4, low[1] + size[1] + 0.4)
        if any(not (b[1] < box[0] or box[1] < b[0] or b[3] < box[2] or box[3] < b[2]) for b in placed):
            continue  # keep objects 0.4 m apart
        placed.append((low[0], low[0] + size[0], low[1], low[1] + size[1]))
        n = int(600 * size[0] * size[1])
        parts.append(low + rng.random((n, 3)) * size)
        owner.append(np.full(n, len(placed) - 1))
    wall = np.c_[rng.uniform(1, 25, 6000), np.full(6000, -1.0), rng.uniform(0, 2, 6000)]  # below y = 0: free space
    parts.append(wall)
    owner.append(np.full(len(wall), len(placed)))
    return np.concatenate(parts), np.concatenate(owner)


def _components(xyz: np.ndarray, radius: float = 0.2) -> np.ndarray:
    pairs = cKDTree(xyz).query_pairs(radius, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(xyz), len(xyz)))
    return connected_components(graph, directed=False)[1]


def _predict(units, tile_size):
    def predict_tile(sel):
        labels = _components(units.xyz[sel]).astype(np.int32)
        sizes = np.bincount(labels)
        return labels, sizes / (sizes.max() + 1.0), np.zeros(len(sizes), np.int64)

    merged, grid = predict_tiled(units.xyz[:, :2], units.count, predict_tile, tile_size=tile_size, overlap=2.0,
                                 min_points=20)
    return merged.unit_instance[units.point_unit], merged, grid


def test_tiled_prediction_agrees_with_one_pass():
    xyz, owner = _objects_scan()
    units = voxel_units(xyz, 0.05)
    whole, whole_merged, one = _predict(units, None)
    tiled, tiled_merged, grid = _predict(units, 8.0)
    assert one.num_tiles == 1 and grid.num_tiles == 36
    # the merging is exercised: objects whose units have their home in more than one tile
    home = grid.home(units.xyz[:, :2])[units.point_unit]
    spanning = sum(len(np.unique(home[owner == k])) > 1 for k in np.unique(owner))
    assert spanning >= 10
    # one pass finds the objects themselves (a sanity check of the predictor)
    assert len(whole_merged.scores) == owner.max() + 1
    assert len(tiled_merged.scores) == len(whole_merged.scores)
    ious = []
    for k in range(len(whole_merged.scores)):
        a = whole == k
        best = np.bincount(tiled[a][tiled[a] >= 0], minlength=1).argmax()
        b = tiled == best
        ious.append((a & b).sum() / (a | b).sum())
    ious = np.array(ious)
    assert (ious >= 0.9).mean() >= 0.95, np.sort(ious)[:5]
    # merged instances: scores and point counts of the whole objects
    np.testing.assert_array_equal(np.sort(tiled_merged.num_points), np.sort(whole_merged.num_points))


def test_without_an_overlap_band_border_objects_split():
    """The same tiles without an overlap band (nothing to match): objects across borders come out in pieces,
    so the agreement above is the merging's doing."""
    xyz, _ = _objects_scan()
    units = voxel_units(xyz, 0.05)
    _, merged, _ = _predict(units, 8.0)

    def predict_tile(sel):
        labels = _components(units.xyz[sel]).astype(np.int32)
        return labels, np.ones(labels.max() + 1), np.zeros(labels.max() + 1, np.int64)

    no_band, grid = predict_tiled(units.xyz[:, :2], units.count, predict_tile, tile_size=8.0, overlap=0.0,
                                  min_points=20)
    assert grid.num_tiles == 25  # 35 m / 8 m cores
    assert len(no_band.scores) >= len(merged.scores) + 10
    with pytest.raises(ValueError, match="merge_iou"):
        TileMerger(1, np.zeros(3, np.int32), np.ones(3), merge_iou=0.0)


def test_tile_grid_homes_and_outer_boxes():
    rng = np.random.default_rng(0)
    xy = rng.random((5000, 2)) * [30.0, 11.0]
    grid = TileGrid(xy, 12.0, 2.0)
    assert grid.shape == (3, 1)  # 30 m / 10 m cores; 11 m fits one tile
    home = grid.home(xy)
    tiles = list(grid.tiles())
    for tile in tiles:
        core = in_box(xy, tile.core)
        np.testing.assert_array_equal(core, home == tile.index)  # every point in exactly one core
        outer = xy[in_box(xy, tile.outer)]
        assert np.ptp(outer[:, 0]) <= 12.0 + 1e-9
    assert TileGrid(xy, None, 2.0).num_tiles == 1 and TileGrid(xy, 40.0, 2.0).describe() is None
    with pytest.raises(ValueError, match="overlap"):
        TileGrid(xy, 2.0, 2.0)
    with pytest.raises(ValueError, match="tile size"):
        TileGrid(xy, -1.0, 0.0)


def test_voxel_units_means_counts_superpoints_and_far_origins():
    xyz = np.array([[0.01, 0.01, 0.01], [0.03, 0.03, 0.03], [0.11, 0.0, 0.0], [0.02, 0.02, 0.02]])
    rgb = np.array([[0, 0, 0], [100, 100, 100], [50, 50, 50], [200, 200, 200]], np.uint8)
    units = voxel_units(xyz, 0.1, rgb=rgb)
    assert units.num_units == 2 and units.point_unit.dtype == np.int32
    assert units.point_unit[0] == units.point_unit[1] == units.point_unit[3] != units.point_unit[2]
    u = units.point_unit[0]
    assert units.count[u] == 3
    np.testing.assert_allclose(units.xyz[u], [0.02, 0.02, 0.02])
    np.testing.assert_allclose(units.rgb[u], [100, 100, 100])
    split = voxel_units(xyz, 0.1, superpoint=np.array([0, 1, 0, 0]))  # a unit never spans two superpoints
    assert split.num_units == 3 and split.superpoint[split.point_unit[1]] == 1
    # georeferenced coordinates: the same units as at the origin (voxels counted from the minimum in float64)
    rng = np.random.default_rng(1)
    local = rng.random((2000, 3)) * 5
    geo = local + np.array([512_345.678, 4_123_456.789, 231.5])
    a, b = voxel_units(local, 0.04), voxel_units(geo, 0.04)
    assert (a.point_unit == b.point_unit).mean() > 0.999  # only points within ~1e-9 m of a voxel face may differ
    np.testing.assert_allclose(b.xyz - geo.min(axis=0), a.xyz - local.min(axis=0), atol=1e-8)


def test_estimated_normals_of_a_room_face_inwards():
    """kNN PCA normals (used for colour-free models when a cloud has none): floor up, walls inwards."""
    rng = np.random.default_rng(0)
    floor = np.c_[rng.random((4000, 2)) * 6, np.zeros(4000)]
    wall = np.c_[np.zeros(3000), rng.random(3000) * 6, rng.random(3000) * 2.5]
    xyz = np.concatenate([floor, wall]) + rng.normal(scale=0.002, size=(7000, 3))
    normals = cloud_normals(xyz.astype(np.float32))
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    inner_floor = (xyz[:4000, 0] > 0.3)
    assert (normals[:4000][inner_floor] @ [0, 0, 1] > np.cos(np.radians(10))).mean() > 0.95
    inner_wall = (xyz[4000:, 2] > 0.3)
    assert (normals[4000:][inner_wall] @ [1, 0, 0] > np.cos(np.radians(10))).mean() > 0.95
