"""The mesh segmentator: invariants, agreement between the compiled and pure-Python paths, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pointformer.cli.preprocess import superpoints_main
from pointformer.io.ply import read_ply, write_ply
from pointformer.preprocess import segmentator as S
from pointformer.synthetic.meshes import box, concat, grid, transform


def _bumpy_sheet(n: int = 60, seed: int = 0):
    x, y = np.meshgrid(np.linspace(0, 3, n), np.linspace(0, 3, n), indexing="ij")
    z = 0.15 * np.sin(4 * x) * np.cos(3 * y) + 0.003 * np.random.default_rng(seed).standard_normal(x.shape)
    m = grid((0, 0, 0), (3, 0, 0), (0, 3, 0), 3 / (n - 1))
    m.vertices[:, 2] = z.reshape(-1)
    return m.vertices.astype(np.float32), m.faces


def _scene_like():
    """A room corner with furniture-like boxes and tiny isolated pieces (components under 20 vertices)."""
    parts = [grid((0, 0, 0), (3, 0, 0), (0, 3, 0), 0.05), grid((0, 0, 0), (0, 0, 2.5), (3, 0, 0), 0.05),
             box((1.0, 1.0, 0.4), (0.3, 0.2, 0.4), 0.04),
             transform(box((0, 0, 0.2), (0.5, 0.3, 0.2), 0.05), 0.5, (2, 2, 0)),
             box((0.5, 2.5, 0.05), (0.02, 0.02, 0.02), 0.1)]  # 8 vertices: a component smaller than 20
    m = concat(parts)
    v = m.vertices + 0.002 * np.random.default_rng(1).standard_normal(m.vertices.shape)
    return v.astype(np.float32), m.faces


def _check_invariants(vertices, faces, seg, seg_min_verts=20):
    nv = vertices.shape[0]
    assert seg.shape == (nv,) and seg.dtype == np.int64
    # Ids are root vertices: each id is a vertex of its own segment.
    assert (seg[seg] == seg).all()
    ea = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    eb = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    # Every segment is connected through mesh edges inside the segment.
    inside = seg[ea] == seg[eb]
    graph = coo_matrix((np.ones(inside.sum()), (ea[inside], eb[inside])), shape=(nv, nv))
    n_parts, part = connected_components(graph, directed=False)
    assert n_parts == len(np.unique(seg))
    # Segment sizes: at least seg_min_verts unless the mesh component is smaller.
    full = coo_matrix((np.ones(ea.shape[0]), (ea, eb)), shape=(nv, nv))
    _, comp = connected_components(full, directed=False)
    comp_size = np.bincount(comp)
    ids, sizes = np.unique(seg, return_counts=True)
    small = sizes < seg_min_verts
    assert (sizes[small] == comp_size[comp[ids[small]]]).all()
    # A segment never spans two mesh components.
    assert all(len(np.unique(comp[seg == i])) == 1 for i in ids[:50])


@pytest.mark.parametrize("mesh", [_bumpy_sheet, _scene_like])
def test_invariants(mesh):
    v, f = mesh()
    seg = S.segment_mesh(v, f)
    _check_invariants(v, f, seg)
    assert 1 < len(np.unique(seg)) < v.shape[0] // 10


def test_deterministic_and_vertex_order_independent_of_calls():
    v, f = _scene_like()
    a, b = S.segment_mesh(v, f), S.segment_mesh(v.copy(), f.copy())
    np.testing.assert_array_equal(a, b)


def test_pure_python_union_find_agrees_with_compiled():
    v, f = _bumpy_sheet(40)
    compiled = S.segment_mesh(v, f)
    python = S.segment_pure_python(v, f)
    # The graphs are built by different code (float32 running mean in numba vs float64 mean in
    # numpy); the weights differ by rounding only, so the partitions agree almost everywhere.
    assert _adjusted_rand_index(compiled, python) > 0.99


def test_compiled_graph_matches_numpy_graph():
    v, f = _scene_like()
    ea, eb, w = S.edge_weights(v, f)
    ea2, eb2, w2 = S.edge_weights_numpy(*S.check_mesh(v, f))
    np.testing.assert_array_equal(ea, ea2)
    np.testing.assert_array_equal(eb, eb2)
    assert np.mean(np.isclose(w, w2, atol=1e-5)) > 0.99


def test_flat_plane_is_one_segment_and_a_fold_splits():
    plane = grid((0, 0, 0), (1, 0, 0), (0, 1, 0), 0.05)
    assert len(np.unique(S.segment_mesh(plane.vertices, plane.faces))) == 1
    # Two planes meeting at a right angle (an L-shaped concave fold) -> two segments.
    floor = grid((0, 0, 0), (0, 1, 0), (1, 0, 0), 0.05)
    floor.faces = floor.faces[:, ::-1]  # normal +z
    wall = grid((0, 0, 0), (0, 0, 1), (0, 1, 0), 0.05)
    m = concat([floor, wall])
    from pointformer.synthetic.meshes import weld
    m = weld(m)
    seg = S.segment_mesh(m.vertices.astype(np.float32), m.faces)
    assert len(np.unique(seg)) == 2
    on_floor = m.vertices[:, 2] < 1e-9
    on_wall = m.vertices[:, 0] < 1e-9
    assert len(np.unique(seg[on_floor & ~on_wall])) == 1 and len(np.unique(seg[on_wall & ~on_floor])) == 1
    assert seg[on_floor & ~on_wall][0] != seg[on_wall & ~on_floor][0]


def test_parameters_change_granularity():
    v, f = _bumpy_sheet()
    fine = len(np.unique(S.segment_mesh(v, f, k_thresh=0.001, seg_min_verts=5)))
    default = len(np.unique(S.segment_mesh(v, f)))
    coarse = len(np.unique(S.segment_mesh(v, f, k_thresh=0.1, seg_min_verts=100)))
    assert fine > default > coarse >= 1


def test_vertex_normals_unit_and_outward():
    b = box((0, 0, 0), (1, 1, 1), 0.25)
    n = S.vertex_normals(b.vertices, b.faces)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    assert (np.einsum("ij,ij->i", n, b.vertices) > 0).all()  # outward on a box centred at 0


@pytest.mark.parametrize("faces, message", [
    (np.array([[0, 1, 5]]), "face indices"),
    (np.array([[0, 1]]), "shape"),
    (np.array([[0.0, 1.0, 2.0]]), "integer"),
])
def test_bad_input(faces, message):
    v = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        S.segment_mesh(v, faces)


def test_cli_writes_official_layout(tmp_path, capsys):
    v, f = _scene_like()
    mesh = tmp_path / "room_vh_clean_2.ply"
    write_ply(mesh, v, colors=np.zeros_like(v, dtype=np.uint8), faces=f)
    out = tmp_path / "out.segs.json"
    assert superpoints_main([str(mesh), str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"params", "sceneId", "segIndices"}
    assert data["params"] == {"kThresh": 0.01, "segMinVerts": 20}
    assert data["sceneId"] == "room_vh_clean_2"
    np.testing.assert_array_equal(data["segIndices"], S.segment_mesh(read_ply(mesh).vertices, f))
    # Default output name, as the official tool names it.
    assert superpoints_main([str(mesh)]) == 0
    assert (tmp_path / "room_vh_clean_2.0.010000.segs.json").exists()


def test_cli_errors_name_the_file(tmp_path, capsys):
    points = tmp_path / "points.ply"  # a PLY without faces is a point cloud (see test_cloud_segmentator.py)
    write_ply(points, np.zeros((1, 3)))
    assert superpoints_main([str(points), str(tmp_path / "o.json")]) == 1
    assert "points.ply" in capsys.readouterr().err
    assert superpoints_main([str(tmp_path / "missing.ply")]) == 1
    assert "missing.ply" in capsys.readouterr().err


def _adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = coo_matrix((np.ones(a.shape[0]), (ai, bi))).tocsr()
    comb = lambda x: x * (x - 1) / 2.0  # noqa: E731
    sum_ij = comb(table.data).sum()
    sum_a = comb(np.asarray(table.sum(1)).ravel()).sum()
    sum_b = comb(np.asarray(table.sum(0)).ravel()).sum()
    expected = sum_a * sum_b / comb(a.shape[0])
    return float((sum_ij - expected) / (0.5 * (sum_a + sum_b) - expected))


def test_compiled_normals_match_numpy_normals():
    v, f = _scene_like()
    compiled = S.mean_normals_compiled(v, f.astype(np.int64))
    np.testing.assert_allclose(compiled, S.mean_face_normals(v, f.astype(np.int64)), atol=1e-5)
    # A degenerate (zero-area) face contributes nothing instead of NaN.
    v2 = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0]], dtype=np.float32)
    f2 = np.array([[0, 1, 2], [0, 1, 3]])
    n = S.vertex_normals(v2, f2)
    assert np.isfinite(n).all() and np.allclose(n[:3], [0, 0, 1]) and np.allclose(n[3], 0)


def _reference_segmentator(vertices: np.ndarray, faces: np.ndarray, k: float = 0.01, min_verts: int = 20):
    """A literal, scalar transcription of the official tool's steps in float32 (slow; small meshes)."""
    f32 = np.float32
    v = vertices.astype(np.float32)
    nv = v.shape[0]
    normals = np.zeros((nv, 3), np.float32)
    counts = np.zeros(nv, np.int64)
    edges = []
    for i1, i2, i3 in faces.tolist():
        p1, p2, p3 = v[i1], v[i2], v[i3]
        u, w = p2 - p1, p3 - p1
        c = np.array([u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]], np.float32)
        n = np.sqrt(c[0] * c[0] + c[1] * c[1] + c[2] * c[2])
        c = c / n
        for i in (i1, i2, i3):
            t = f32(1.0) / (f32(counts[i]) + f32(1.0))
            normals[i] = t * c + (f32(1.0) - t) * normals[i]
            counts[i] += 1
        edges += [(i1, i2), (i1, i3), (i3, i2)]
    weights = []
    for a, b in edges:
        d = v[b] - v[a]
        d = d / np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        n1, n2 = normals[a], normals[b]
        dot = n1[0] * n2[0] + n1[1] * n2[1] + n1[2] * n2[2]
        ww = f32(1.0) - dot
        if n2[0] * d[0] + n2[1] * d[1] + n2[2] * d[2] > 0:
            ww = ww * ww
        weights.append(ww)
    weights = np.array(weights, np.float32)
    from pointformer.preprocess.introsort import std_sort_order
    order = std_sort_order(weights)
    parent, rank, size = list(range(nv)), [0] * nv, [1] * nv
    thr = [f32(k)] * nv

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    def join(x, y):
        if rank[x] > rank[y]:
            parent[y] = x
            size[x] += size[y]
        else:
            parent[x] = y
            size[y] += size[x]
            if rank[x] == rank[y]:
                rank[y] += 1

    for e in order:
        a, b = find(edges[e][0]), find(edges[e][1])
        if a != b and weights[e] <= thr[a] and weights[e] <= thr[b]:
            join(a, b)
            r = find(a)
            thr[r] = weights[e] + f32(k) / f32(size[r])
    for e in order:
        a, b = find(edges[e][0]), find(edges[e][1])
        if a != b and (size[a] < min_verts or size[b] < min_verts):
            join(a, b)
    return np.array([find(i) for i in range(nv)])


def _boxes_without_noise():
    """Flat faces: most weights tie exactly, so the tie order decides the root ids."""
    m = concat([box((0, 0, 0), (0.5, 0.3, 0.2), 0.05), box((2, 0, 0), (0.2, 0.2, 0.6), 0.1)])
    return m.vertices.astype(np.float32), m.faces


@pytest.mark.parametrize("mesh", [lambda: _bumpy_sheet(30), lambda: _bumpy_sheet(30, seed=5), _boxes_without_noise])
def test_equals_a_literal_transcription_of_the_official_steps(mesh):
    """Ids included: the compiled path reproduces the tool's float32 arithmetic and std::sort ties."""
    v, f = mesh()
    if S.HAVE_NUMBA:
        np.testing.assert_array_equal(S.segment_mesh(v, f), _reference_segmentator(v, f))
