"""Mesh over-segmentation (superpoints): the ScanNet Segmentator algorithm.

Felzenszwalb–Huttenlocher graph segmentation on mesh vertex normals, as in the tool that produced
ScanNet's ``*_vh_clean_2.0.010000.segs.json`` files (defaults kThresh = 0.01, segMinVerts = 20):

1. vertex normal = running mean of the unit normals of the faces around the vertex, accumulated in
   float32 in face order like the official tool (which does not re-normalise it);
2. three edges per face (duplicates kept), weight ``w = 1 - dot(n_a, n_b)``, squared when the edge
   is convex (``dot(n_b, unit(p_b - p_a)) > 0``), in the tool's float32 steps;
3. edges sorted by weight with the same algorithm as the tool's ``std::sort`` (GCC's introsort,
   see :mod:`pointformer.preprocess.introsort`), so that equal weights keep the tool's order;
4. union–find in sorted order: merge when ``w <= thr[a]`` and ``w <= thr[b]``, then
   ``thr[root] = w + kThresh / size(root)`` (float32);
5. a second pass over the sorted edges merges any component with fewer than segMinVerts vertices;
6. the segment id of a vertex is its union–find root vertex (non-contiguous, like the official ids).

With numba (a dependency) every step but the graph's index bookkeeping is compiled, and the result
equals the official tool's segIndices exactly, ids included, on every mesh measured (see
BENCHMARKS.md) — the only intended difference: a zero-area face contributes a zero normal where the
tool would spread NaN. Without numba the graph is built with vectorised numpy (float64 mean normals)
and sorted with a stable radix sort, and the union–find runs in CPython: the same partition up to
float rounding and tie order, more slowly.
"""
from __future__ import annotations

import numpy as np

from pointformer.preprocess.introsort import std_sort_order
from pointformer.preprocess.jit import HAVE_NUMBA, jit

DEFAULT_K_THRESH = 0.01
DEFAULT_SEG_MIN_VERTS = 20


def segment_sorted_edges(num_vertices: int, ea: np.ndarray, eb: np.ndarray, w: np.ndarray,
                          k_thresh: float, seg_min_verts: int) -> np.ndarray:
    """The two union–find passes over edges already sorted by weight; returns root ids [V].

    Find and union are written inline (no helper calls) so that the very same source runs under
    numba and in CPython. Union by rank uses the official tool's tie rule (the second root wins), so
    the roots, and therefore the segment ids, are the ones the C++ tool reports for the same order.
    """
    parent = np.arange(num_vertices)
    rank = np.zeros(num_vertices, dtype=np.int64)
    size = np.ones(num_vertices, dtype=np.int64)
    thr = np.full(num_vertices, k_thresh, dtype=np.float32)
    for second_pass in (False, True):
        for i in range(len(ea)):
            a = ea[i]
            while parent[a] != a:
                a = parent[a]
            b = eb[i]
            while parent[b] != b:
                b = parent[b]
            # Path compression of both endpoints: same roots, shorter later finds.
            x = ea[i]
            while parent[x] != a:
                nxt = parent[x]
                parent[x] = a
                x = nxt
            x = eb[i]
            while parent[x] != b:
                nxt = parent[x]
                parent[x] = b
                x = nxt
            if a == b:
                continue
            if second_pass:
                if size[a] >= seg_min_verts and size[b] >= seg_min_verts:
                    continue
            elif not (w[i] <= thr[a] and w[i] <= thr[b]):
                continue
            if rank[a] > rank[b]:
                parent[b] = a
                size[a] += size[b]
                root = a
            else:
                parent[a] = b
                size[b] += size[a]
                if rank[a] == rank[b]:
                    rank[b] += 1
                root = b
            if not second_pass:
                # float32 arithmetic like the official tool (a float64 quotient rounds differently).
                thr[root] = w[i] + k_thresh / np.float32(size[root])
    out = np.empty(num_vertices, dtype=np.int64)
    for v in range(num_vertices):
        r = v
        while parent[r] != r:
            r = parent[r]
        out[v] = r
    return out


def check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape [V, 3], got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape [F, 3], got {faces.shape}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must be integer vertex indices, got dtype {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= vertices.shape[0]):
        raise ValueError(f"face indices must lie in [0, {vertices.shape[0]}), "
                         f"found range [{faces.min()}, {faces.max()}]")
    if not np.isfinite(vertices).all():
        raise ValueError("vertices contain NaN or inf")
    return vertices.astype(np.float32, copy=False), faces.astype(np.int64, copy=False)


def _face_unit_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals [F, 3] of cross(p2 - p1, p3 - p1); zero for degenerate faces."""
    p1, p2, p3 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    n = np.cross(p2 - p1, p3 - p1)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    # The C++ tool would produce NaN for a zero-area face and poison its vertices; zero is the sane value.
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def mean_face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-vertex mean of adjacent unit face normals [V, 3] (not normalised; zero if no face)."""
    fn = _face_unit_normals(vertices, faces)
    nv = vertices.shape[0]
    idx = faces.reshape(-1)
    counts = np.bincount(idx, minlength=nv).astype(np.float32)
    out = np.empty((nv, 3), dtype=np.float32)
    for axis in range(3):
        out[:, axis] = np.bincount(idx, weights=np.repeat(fn[:, axis], 3), minlength=nv)
    np.divide(out, counts[:, None], out=out, where=counts[:, None] > 0)
    return out


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals [V, 3] float32 (mean of adjacent face normals, normalised).

    vertices: float [V, 3]; faces: int [F, 3]. Vertices without a face, or whose face normals cancel,
    get a zero normal.
    """
    vertices, faces = check_mesh(vertices, faces)
    if HAVE_NUMBA:
        n = mean_normals_compiled(np.ascontiguousarray(vertices), np.ascontiguousarray(faces))
    else:
        n = mean_face_normals(vertices, faces)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 1e-12).astype(np.float32)


def edge_weights_numpy(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    normals = mean_face_normals(vertices, faces)
    # Edge order per face as in the official tool: (1,2), (1,3), (3,2).
    ea = np.stack([faces[:, 0], faces[:, 0], faces[:, 2]], axis=1).reshape(-1)
    eb = np.stack([faces[:, 1], faces[:, 2], faces[:, 1]], axis=1).reshape(-1)
    na, nb = normals[ea], normals[eb]
    d = vertices[eb] - vertices[ea]
    dd = np.linalg.norm(d, axis=1, keepdims=True)
    d = np.divide(d, dd, out=np.zeros_like(d), where=dd > 0)
    w = (1.0 - np.einsum("ij,ij->i", na, nb)).astype(np.float32)
    convex = np.einsum("ij,ij->i", nb, d) > 0
    w[convex] = w[convex] * w[convex]
    return ea, eb, w


def _mean_normals_loop(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-vertex running mean of unit face normals [V, 3] float32, computed exactly as the official
    tool does (faces in file order, ``n = t * face_normal + (1 - t) * n`` with ``t = 1 / (count + 1)``,
    all in float32), so that edge weights, and therefore segments, match it bit for bit on meshes
    without degenerate faces. Compiled by numba; :func:`mean_face_normals` is the numpy equivalent
    (same values up to float rounding)."""
    nv, nf = vertices.shape[0], faces.shape[0]
    normals = np.zeros((nv, 3), dtype=np.float32)
    count = np.zeros(nv, dtype=np.float32)
    one, zero = np.float32(1.0), np.float32(0.0)
    for f in range(nf):
        i1, i2, i3 = faces[f, 0], faces[f, 1], faces[f, 2]
        ux = vertices[i2, 0] - vertices[i1, 0]
        uy = vertices[i2, 1] - vertices[i1, 1]
        uz = vertices[i2, 2] - vertices[i1, 2]
        vx = vertices[i3, 0] - vertices[i1, 0]
        vy = vertices[i3, 1] - vertices[i1, 1]
        vz = vertices[i3, 2] - vertices[i1, 2]
        cx, cy, cz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        length = np.sqrt(cx * cx + cy * cy + cz * cz)
        if length > zero:
            cx, cy, cz = cx / length, cy / length, cz / length
        else:  # a zero-area face contributes a zero normal (the C++ tool would spread NaN)
            cx, cy, cz = zero, zero, zero
        for i in (i1, i2, i3):
            t = one / (count[i] + one)
            u = one - t
            normals[i, 0] = t * cx + u * normals[i, 0]
            normals[i, 1] = t * cy + u * normals[i, 1]
            normals[i, 2] = t * cz + u * normals[i, 2]
            count[i] += one
    return normals


def _edge_weights_loop(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same graph as :func:`edge_weights_numpy` as loops (compiled by numba: one pass over
    memory instead of a dozen temporary [3F, 3] arrays)."""
    nf = faces.shape[0]
    normals = mean_normals_compiled(vertices, faces)
    ea = np.empty(3 * nf, dtype=np.int64)
    eb = np.empty(3 * nf, dtype=np.int64)
    w = np.empty(3 * nf, dtype=np.float32)
    for f in range(nf):
        for k in range(3):
            a = faces[f, 0] if k < 2 else faces[f, 2]
            b = faces[f, 1] if k != 1 else faces[f, 2]
            e = 3 * f + k
            ea[e], eb[e] = a, b
            dx = vertices[b, 0] - vertices[a, 0]
            dy = vertices[b, 1] - vertices[a, 1]
            dz = vertices[b, 2] - vertices[a, 2]
            # The direction is normalised before the convexity test, as in the official tool: on flat
            # surfaces the test's sign is rounding noise, and only the same float32 steps reproduce it.
            dd = np.sqrt(dx * dx + dy * dy + dz * dz)
            if dd > 0:
                dx, dy, dz = dx / dd, dy / dd, dz / dd
            dot = normals[a, 0] * normals[b, 0] + normals[a, 1] * normals[b, 1] + normals[a, 2] * normals[b, 2]
            ww = np.float32(1.0) - dot
            if normals[b, 0] * dx + normals[b, 1] * dy + normals[b, 2] * dz > 0:  # convex
                ww = ww * ww
            w[e] = ww
    return ea, eb, w


segment_sorted_edges_compiled = jit(segment_sorted_edges)
mean_normals_compiled = jit(_mean_normals_loop)
_edge_weights_compiled = jit(_edge_weights_loop)  # after mean_normals_compiled: it calls it


def edge_weights(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The segmentator's graph: edge endpoints a, b int64 [3F] and weights float32 [3F] (unsorted)."""
    vertices, faces = check_mesh(vertices, faces)
    if HAVE_NUMBA:
        return _edge_weights_compiled(np.ascontiguousarray(vertices), np.ascontiguousarray(faces))
    return edge_weights_numpy(vertices, faces)


def stable_argsort_nonnegative(w: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative float32 weights as two 16-bit radix passes.

    The IEEE bit pattern of a non-negative float orders like the float; numpy's stable sort of
    16-bit keys is a radix sort, about 3x faster than a stable sort of 900k floats. Stability makes
    the result identical on every machine (an unstable SIMD sort may order ties differently).
    """
    bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
    order = np.argsort((bits & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((bits[order] >> 16).astype(np.uint16), kind="stable")]


def segment_mesh(vertices: np.ndarray, faces: np.ndarray, k_thresh: float = DEFAULT_K_THRESH,
                 seg_min_verts: int = DEFAULT_SEG_MIN_VERTS) -> np.ndarray:
    """Superpoints of a triangle mesh with the ScanNet Segmentator algorithm.

    vertices: float [V, 3]; faces: int [F, 3] (indices into vertices).
    Returns int64 [V]: the segment id of every vertex = the union–find root vertex of its segment
    (non-contiguous, like the official segIndices; remap with ``np.unique(..., return_inverse=True)``).
    Segments are connected through mesh edges; every segment has at least ``seg_min_verts`` vertices
    unless its connected component of the mesh is smaller. Deterministic for a given input; with
    numba the output equals the official C++ tool's segIndices for the same mesh (see module doc).
    """
    if not (k_thresh >= 0):
        raise ValueError(f"k_thresh must be a non-negative number, got {k_thresh}")
    if int(seg_min_verts) != seg_min_verts or seg_min_verts < 0:
        raise ValueError(f"seg_min_verts must be a non-negative integer, got {seg_min_verts}")
    if not HAVE_NUMBA:
        return segment_pure_python(vertices, faces, k_thresh, seg_min_verts)
    ea, eb, w = edge_weights(vertices, faces)
    # The official tool's std::sort order: same ties, hence the same root vertices (segment ids).
    order = std_sort_order(w)
    return segment_sorted_edges_compiled(
        int(np.asarray(vertices).shape[0]), ea[order], eb[order], w[order],
        np.float32(k_thresh), int(seg_min_verts))


def segment_pure_python(vertices: np.ndarray, faces: np.ndarray, k_thresh: float = DEFAULT_K_THRESH,
                         seg_min_verts: int = DEFAULT_SEG_MIN_VERTS) -> np.ndarray:
    """The algorithm without numba: numpy graph, stable radix sort, union–find in CPython.

    Same partition up to float rounding and tie order; used where numba is missing and to measure
    what the compilation buys."""
    vertices, faces = check_mesh(vertices, faces)
    ea, eb, w = edge_weights_numpy(vertices, faces)
    np.maximum(w, 0, out=w)
    order = stable_argsort_nonnegative(w)
    return segment_sorted_edges(int(np.asarray(vertices).shape[0]), ea[order].tolist(), eb[order].tolist(),
                                 w[order].tolist(), float(np.float32(k_thresh)), int(seg_min_verts))
