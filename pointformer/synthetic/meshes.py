"""Triangle-mesh primitives for synthetic scenes: boxes, cylinders, wavy sheets, at a given spacing.

Every primitive is a regular grid of vertices about ``spacing`` apart with outward-facing triangles
(counter-clockwise seen from outside), so vertex normals and the segmentator behave as on a real
scan. Parts of one object are concatenated and welded (coincident vertices merged) so that a box is
one closed surface rather than six loose sheets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    """vertices float64 [V, 3]; faces int64 [F, 3]."""

    vertices: np.ndarray
    faces: np.ndarray

    @staticmethod
    def empty() -> "Mesh":
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])


def _steps(length: float, spacing: float) -> int:
    return max(2, int(round(length / spacing)) + 1)


def grid(origin: np.ndarray, u: np.ndarray, v: np.ndarray, spacing: float) -> Mesh:
    """Parallelogram origin + a*u + b*v (a, b in [0, 1]); triangles face along u x v."""
    origin, u, v = (np.asarray(x, dtype=np.float64) for x in (origin, u, v))
    nu, nv = _steps(float(np.linalg.norm(u)), spacing), _steps(float(np.linalg.norm(v)), spacing)
    a = np.linspace(0.0, 1.0, nu)[:, None, None]
    b = np.linspace(0.0, 1.0, nv)[None, :, None]
    vertices = (origin + a * u + b * v).reshape(-1, 3)
    return Mesh(vertices, _grid_faces(nu, nv))


def _grid_faces(nu: int, nv: int, wrap_u: bool = False) -> np.ndarray:
    idx = np.arange(nu * nv).reshape(nu, nv)
    if wrap_u:
        idx = np.concatenate([idx, idx[:1]], axis=0)
    p00, p10 = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
    p11, p01 = idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    return np.concatenate([np.stack([p00, p10, p11], 1), np.stack([p00, p11, p01], 1)]).astype(np.int64)


def box(center, half, spacing: float, *, bottom: bool = True) -> Mesh:
    """Closed axis-aligned box (without its bottom face when ``bottom`` is False)."""
    c = np.asarray(center, dtype=np.float64)
    sx, sy, sz = (float(h) for h in half)
    X, Y, Z = np.array([2 * sx, 0, 0]), np.array([0, 2 * sy, 0]), np.array([0, 0, 2 * sz])
    lo = c - np.array([sx, sy, sz])
    sides = [
        grid(lo + Z, X, Y, spacing),               # +z
        grid(lo + X, Y, Z, spacing),               # +x
        grid(lo, Z, Y, spacing),                   # -x
        grid(lo + Y, Z, X, spacing),               # +y
        grid(lo, X, Z, spacing),                   # -y
    ]
    if bottom:
        sides.append(grid(lo, Y, X, spacing))      # -z
    return weld(concat(sides))


def cylinder(base_center, radius: float, height: float, spacing: float, *, top: bool = True) -> Mesh:
    """Vertical cylinder standing on ``base_center`` (side + optional top cap, no bottom)."""
    c = np.asarray(base_center, dtype=np.float64)
    n = max(8, int(math.ceil(2 * math.pi * radius / spacing)))
    m = _steps(height, spacing)
    theta = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    ring = np.stack([radius * np.cos(theta), radius * np.sin(theta), np.zeros(n)], 1)
    z = np.linspace(0.0, height, m)
    side = (ring[:, None, :] + np.array([0, 0, 1.0]) * z[None, :, None]).reshape(-1, 3) + c
    parts = [Mesh(side, _grid_faces(n, m, wrap_u=True))]
    if top:
        rings = max(2, int(round(radius / spacing)) + 1)
        scale = np.linspace(1.0, 0.0, rings)  # outer ring to the centre: faces point up
        cap = (ring[:, None, :] * scale[None, :, None]).reshape(-1, 3) + c + np.array([0, 0, height])
        parts.append(Mesh(cap, _grid_faces(n, rings, wrap_u=True)))
    return weld(concat(parts))


def wavy_sheet(origin, width: float, height: float, spacing: float, *, amplitude: float,
               wavelength: float) -> Mesh:
    """Vertical sheet in the x-z plane from ``origin`` (+x by width, +z by height), folded along y
    by ``amplitude * sin(2 pi x / wavelength)`` (a curtain); faces point to -y."""
    o = np.asarray(origin, dtype=np.float64)
    sheet = grid(o, np.array([width, 0, 0]), np.array([0, 0, height]), spacing)
    x = sheet.vertices[:, 0] - o[0]
    sheet.vertices[:, 1] += amplitude * np.sin(2 * math.pi * x / wavelength)
    return sheet


def concat(meshes: list[Mesh]) -> Mesh:
    """One mesh holding all given meshes (vertex indices shifted)."""
    meshes = [m for m in meshes if m.num_vertices]
    if not meshes:
        return Mesh.empty()
    offsets = np.cumsum([0] + [m.num_vertices for m in meshes[:-1]])
    return Mesh(np.concatenate([m.vertices for m in meshes]),
                np.concatenate([m.faces + off for m, off in zip(meshes, offsets)]))


def weld(mesh: Mesh, tolerance: float = 1e-6) -> Mesh:
    """Merge vertices closer than ``tolerance`` (on a grid) and drop faces that collapse."""
    if mesh.num_vertices == 0:
        return mesh
    keys = np.round(mesh.vertices / tolerance).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # Keep the first occurrence's order so that welding is deterministic and order-preserving.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    vertices = mesh.vertices[first[order]]
    faces = rank[inverse][mesh.faces]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return Mesh(vertices, faces[keep])


def transform(mesh: Mesh, yaw: float, translation) -> Mesh:
    """Rotate about +z by ``yaw`` radians, then translate."""
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Mesh(mesh.vertices @ rot.T + np.asarray(translation, dtype=np.float64), mesh.faces)
