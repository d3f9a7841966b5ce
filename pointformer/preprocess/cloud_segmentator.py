"""Superpoints for bare point clouds (no mesh): the Segmentator on a k-nearest-neighbour graph.

S3DIS rooms and custom scans have points but no faces, so the mesh segmentator
(:mod:`pointformer.preprocess.segmentator`) has no graph to work on. This module builds one:

1. graph: every point is joined to its ``k`` nearest neighbours (``scipy.spatial.cKDTree``; edges
   in both directions are kept, as the mesh segmentator keeps an edge once per face);
2. normals: the eigenvector of the smallest eigenvalue of the neighbourhood covariance (PCA over the
   point and its ``k`` neighbours), oriented towards ``viewpoint`` (default: the centre of the
   cloud's bounding box — indoor rooms are seen from inside);
3. edge weight: the Segmentator's ``w = 1 - dot(n_a, n_b)``, squared when the edge is convex
   (``dot(n_b, unit(p_b - p_a)) > 0``). PCA normals have no reliable sign, so ``n_b`` is first
   flipped to agree with ``n_a`` (an orientation mistake must not look like a 180-degree crease);
   optionally plus ``color_weight`` times the RGB distance (0..1);
4. the same sort and union–find passes as the mesh segmentator (``kThresh``, ``segMinVerts``), with
   its public :func:`stable_argsort_nonnegative` and ``segment_sorted_edges_compiled``;
5. ids are made contiguous (0..S-1, in order of first appearance of the root vertex's id).

:func:`cell_superpoints` is the voxel-cell fallback (cubes of ``cell`` metres), used by inference on a
bare cloud and measured against the kNN segmentator in BENCHMARKS.md ("Superpoints for point clouds").
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from pointformer.preprocess.jit import HAVE_NUMBA, jit
from pointformer.preprocess.segmentator import (
    DEFAULT_K_THRESH,
    DEFAULT_SEG_MIN_VERTS,
    segment_sorted_edges,
    segment_sorted_edges_compiled,
    stable_argsort_nonnegative,
)

DEFAULT_K = 10


def _check_xyz(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must have shape [V, 3], got {xyz.shape}")
    if not np.issubdtype(xyz.dtype, np.number) or not np.isfinite(xyz).all():
        raise ValueError("xyz must hold finite numbers")
    return xyz.astype(np.float64)


def _check_k(k: int, num_points: int) -> int:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k (neighbours per point) must be a positive integer, got {k!r}")
    if num_points < 2:
        raise ValueError(f"a point cloud needs at least 2 points for a neighbour graph, got {num_points}")
    return int(min(k, num_points - 1))


def knn_graph(xyz: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Indices int64 [V, k+1] of every point's neighbours, the point itself first (nearest first).

    ``k`` is capped at V - 1."""
    from scipy.spatial import cKDTree

    xyz = _check_xyz(xyz)
    k = _check_k(k, xyz.shape[0])
    # Query in a spatially coherent order (cells of 0.5 m): 2-3x faster than a shuffled scan order.
    order = np.lexsort(np.floor((xyz - xyz.min(axis=0)) / 0.5).T[::-1])
    local = xyz[order]
    _, nearest = cKDTree(local, balanced_tree=False, compact_nodes=False).query(local, k=k + 1, workers=-1)
    idx = np.empty((xyz.shape[0], k + 1), dtype=np.int64)
    idx[order] = order[nearest]
    # Duplicate points can put the point itself after a twin: make column 0 the point itself.
    own = np.arange(xyz.shape[0])
    swap = idx[:, 0] != own
    if swap.any():
        rows = np.nonzero(swap)[0]
        hit = idx[rows] == own[rows, None]
        col = np.where(hit.any(axis=1), hit.argmax(axis=1), k)
        idx[rows, col] = idx[rows, 0]
        idx[rows, 0] = rows
    return idx


def _smallest_eigenvector(c00: float, c01: float, c02: float, c11: float, c12: float, c22: float,
                          ) -> tuple[float, float, float]:
    """Unit eigenvector of the smallest eigenvalue of a symmetric 3x3 matrix (closed form).

    The eigenvalue comes from the trigonometric solution of the characteristic cubic; the vector is
    the longest cross product of two rows of ``C - lambda I`` (rows span the orthogonal plane)."""
    p1 = c01 * c01 + c02 * c02 + c12 * c12
    q = (c00 + c11 + c22) / 3.0
    p2 = (c00 - q) ** 2 + (c11 - q) ** 2 + (c22 - q) ** 2 + 2.0 * p1
    if p2 <= 1e-30:
        return 0.0, 0.0, 1.0  # isotropic (or a single point): no preferred direction
    p = np.sqrt(p2 / 6.0)
    b00, b11, b22 = (c00 - q) / p, (c11 - q) / p, (c22 - q) / p
    b01, b02, b12 = c01 / p, c02 / p, c12 / p
    r = (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02) + b02 * (b01 * b12 - b11 * b02)) / 2.0
    r = min(max(r, -1.0), 1.0)
    lam = q + 2.0 * p * np.cos(np.arccos(r) / 3.0 + 2.0 * np.pi / 3.0)  # the smallest root
    a00, a11, a22 = c00 - lam, c11 - lam, c22 - lam
    # cross products of the rows (a00 c01 c02), (c01 a11 c12), (c02 c12 a22)
    x0, y0, z0 = c01 * c12 - c02 * a11, c02 * c01 - a00 * c12, a00 * a11 - c01 * c01
    x1, y1, z1 = c01 * a22 - c02 * c12, c02 * c02 - a00 * a22, a00 * c12 - c01 * c02
    x2, y2, z2 = a11 * a22 - c12 * c12, c12 * c02 - c01 * a22, c01 * c12 - a11 * c02
    n0, n1, n2 = x0 * x0 + y0 * y0 + z0 * z0, x1 * x1 + y1 * y1 + z1 * z1, x2 * x2 + y2 * y2 + z2 * z2
    if n0 >= n1 and n0 >= n2:
        x, y, z, n = x0, y0, z0, n0
    elif n1 >= n2:
        x, y, z, n = x1, y1, z1, n1
    else:
        x, y, z, n = x2, y2, z2, n2
    if n <= 1e-300:
        return 0.0, 0.0, 1.0  # two equal smallest eigenvalues (a line): any normal of the line
    n = np.sqrt(n)
    return x / n, y / n, z / n


def _pca_normals_loop(xyz: np.ndarray, idx: np.ndarray, view: np.ndarray) -> np.ndarray:
    """Unit normals float64 [V, 3] from the neighbourhoods idx [V, k+1], oriented towards view [3]."""
    v, m = idx.shape
    out = np.empty((v, 3))
    for i in range(v):
        sx = sy = sz = 0.0
        for j in range(m):
            t = idx[i, j]
            sx += xyz[t, 0]
            sy += xyz[t, 1]
            sz += xyz[t, 2]
        mx, my, mz = sx / m, sy / m, sz / m
        c00 = c01 = c02 = c11 = c12 = c22 = 0.0
        for j in range(m):
            t = idx[i, j]
            dx, dy, dz = xyz[t, 0] - mx, xyz[t, 1] - my, xyz[t, 2] - mz
            c00 += dx * dx
            c01 += dx * dy
            c02 += dx * dz
            c11 += dy * dy
            c12 += dy * dz
            c22 += dz * dz
        nx, ny, nz = _smallest_eigenvector(c00, c01, c02, c11, c12, c22)
        if nx * (view[0] - xyz[i, 0]) + ny * (view[1] - xyz[i, 1]) + nz * (view[2] - xyz[i, 2]) < 0:
            nx, ny, nz = -nx, -ny, -nz
        out[i, 0], out[i, 1], out[i, 2] = nx, ny, nz
    return out


def _knn_weights_loop(xyz: np.ndarray, idx: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Segmentator weights float32 [V*k] of the edges (idx[i, 0], idx[i, j]), j = 1..k, row by row."""
    v, m = idx.shape
    out = np.empty(v * (m - 1), dtype=np.float32)
    for i in range(v):
        for j in range(1, m):
            b = idx[i, j]
            dot = normals[i, 0] * normals[b, 0] + normals[i, 1] * normals[b, 1] + normals[i, 2] * normals[b, 2]
            sign = -1.0 if dot < 0 else 1.0
            w = min(max(1.0 - abs(dot), 0.0), 1.0)
            dx, dy, dz = xyz[b, 0] - xyz[i, 0], xyz[b, 1] - xyz[i, 1], xyz[b, 2] - xyz[i, 2]
            if sign * (normals[b, 0] * dx + normals[b, 1] * dy + normals[b, 2] * dz) > 0:
                w = w * w  # convex edge (a zero-length edge is never convex)
            out[i * (m - 1) + j - 1] = w
    return out


_smallest_eigenvector = jit(_smallest_eigenvector)
_pca_normals_compiled = jit(_pca_normals_loop)  # after _smallest_eigenvector: it calls it
_knn_weights_compiled = jit(_knn_weights_loop)


def _pca_normals(xyz: np.ndarray, idx: np.ndarray, viewpoint: Optional[np.ndarray]) -> np.ndarray:
    """Unit normals float64 [V, 3] from neighbourhoods idx [V, k+1], oriented towards the viewpoint
    (default: the bounding-box centre)."""
    view = (xyz.min(axis=0) + xyz.max(axis=0)) / 2 if viewpoint is None else np.asarray(viewpoint, np.float64)
    if view.shape != (3,):
        raise ValueError(f"viewpoint must have shape [3], got {view.shape}")
    return _pca_normals_compiled(xyz, idx, view)


def cloud_normals(xyz: np.ndarray, k: int = DEFAULT_K, viewpoint: Optional[np.ndarray] = None) -> np.ndarray:
    """PCA normals float32 [V, 3] of a point cloud xyz [V, 3] from each point's ``k`` nearest neighbours.

    Unit length, oriented towards ``viewpoint`` float [3] (default: the bounding-box centre)."""
    xyz = _check_xyz(xyz)
    return _pca_normals(xyz, knn_graph(xyz, k), viewpoint).astype(np.float32)


def cloud_edge_weights(xyz: np.ndarray, rgb: Optional[np.ndarray] = None, *, k: int = DEFAULT_K,
                       color_weight: float = 0.0, viewpoint: Optional[np.ndarray] = None,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kNN graph with the Segmentator's weights: endpoints a, b int64 [V*k], weights float32 [V*k] >= 0.

    rgb: [V, 3] colours 0..255, needed only when ``color_weight`` > 0."""
    xyz = _check_xyz(xyz)
    if not (color_weight >= 0):
        raise ValueError(f"color_weight must be a non-negative number, got {color_weight}")
    if color_weight > 0 and rgb is None:
        raise ValueError("color_weight > 0 needs rgb colours")
    if rgb is not None and np.shape(rgb) != xyz.shape:
        raise ValueError(f"rgb must have shape {xyz.shape} like xyz, got {np.shape(rgb)}")
    idx = knn_graph(xyz, k)
    normals = _pca_normals(xyz, idx, viewpoint)
    kk = idx.shape[1] - 1
    ea = np.repeat(idx[:, 0], kk)
    eb = idx[:, 1:].reshape(-1)
    w = _knn_weights_compiled(xyz, idx, normals)
    if color_weight > 0:
        rgb = np.asarray(rgb, dtype=np.float64)
        w = w + color_weight * np.linalg.norm(rgb[ea] - rgb[eb], axis=1) / (255.0 * np.sqrt(3.0))
    return ea, eb, np.asarray(w, dtype=np.float32)


def segment_cloud(xyz: np.ndarray, rgb: Optional[np.ndarray] = None, *, k: int = DEFAULT_K,
                  k_thresh: float = DEFAULT_K_THRESH, seg_min_verts: int = DEFAULT_SEG_MIN_VERTS,
                  color_weight: float = 0.0, viewpoint: Optional[np.ndarray] = None) -> np.ndarray:
    """Superpoints of a bare point cloud: the Segmentator's union–find on a kNN graph (module doc).

    xyz: float [V, 3]; rgb: optional [V, 3] colours 0..255 (used when ``color_weight`` > 0);
    k: neighbours per point; k_thresh, seg_min_verts: as the mesh segmentator (kThresh, segMinVerts);
    viewpoint: float [3] the normals face (default: the bounding-box centre).
    Returns int64 [V] contiguous superpoint ids 0..S-1. Deterministic (stable sort of the weights).
    """
    if not (k_thresh >= 0):
        raise ValueError(f"k_thresh must be a non-negative number, got {k_thresh}")
    if isinstance(seg_min_verts, bool) or int(seg_min_verts) != seg_min_verts or seg_min_verts < 0:
        raise ValueError(f"seg_min_verts must be a non-negative integer, got {seg_min_verts!r}")
    xyz = _check_xyz(xyz)
    _check_k(k, xyz.shape[0])
    ea, eb, w = cloud_edge_weights(xyz, rgb, k=k, color_weight=color_weight, viewpoint=viewpoint)
    order = stable_argsort_nonnegative(w)
    ea, eb, w = ea[order], eb[order], w[order]
    if HAVE_NUMBA:
        roots = segment_sorted_edges_compiled(xyz.shape[0], ea, eb, w, np.float32(k_thresh), int(seg_min_verts))
    else:  # pragma: no cover - exercised only without numba
        roots = np.asarray(segment_sorted_edges(xyz.shape[0], ea.tolist(), eb.tolist(), w.tolist(),
                                                float(np.float32(k_thresh)), int(seg_min_verts)))
    return np.unique(roots, return_inverse=True)[1].reshape(-1).astype(np.int64)


def cell_superpoints(xyz: np.ndarray, cell: float) -> np.ndarray:
    """int64 [V] contiguous ids of the ``cell``-metre cubes the points xyz [V, 3] fall in (the voxel-cell
    superpoints of a bare point cloud)."""
    if not cell > 0:
        raise ValueError(f"the cell size (--cell) must be positive, got {cell}")
    keys = np.floor((xyz - xyz.min(axis=0)) / cell).astype(np.int64)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
