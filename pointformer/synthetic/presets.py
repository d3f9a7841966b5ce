"""Scene presets of the synthetic ScanNet generator: how many objects, how large the room, which scan
artefacts.

``basic`` is the generator as it always was (10-20 mostly large objects, clean meshes): tests, the
demo and the small convergence study use it, and its scenes are unchanged by the presets' existence.
``scannet`` imitates real ScanNet v2 rooms (docs/convergence.md, "ScanNet scale", states its measured
statistics next to ScanNet's published ones): ~150k vertices, 25-50 annotated objects of which many
are small (pictures, trash cans, small cabinets, items on tables), and the artefacts of a real
reconstruction -- uneven vertex density between surfaces and holes where the scanner saw nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ScenePreset", "PRESETS", "resolve_preset", "punch_holes"]


@dataclass(frozen=True)
class ScenePreset:
    """What a preset changes in :func:`pointformer.synthetic.scannet.generate_scene`.

    objects: (low, high) annotated objects per room, walls and floor included, drawn uniformly; (0, 0)
        keeps the base furnishing only.
    room_scale: (low, high) factor on the room's width and depth.
    density_jitter: per-object vertex spacing factor drawn log-uniformly in [1 / (1 + j), 1 + j].
    holes_per_m2: holes per square metre of floor area (scanner shadows, unseen surfaces).
    hole_radius: (low, high) metres.
    hole_keep: at least this share of every object's vertices survives the holes (no object vanishes).
    default_vertices: target vertices per scene when the caller gives none.
    """

    name: str
    objects: tuple[int, int] = (0, 0)
    room_scale: tuple[float, float] = (1.0, 1.0)
    density_jitter: float = 0.0
    holes_per_m2: float = 0.0
    hole_radius: tuple[float, float] = (0.0, 0.0)
    hole_keep: float = 0.6
    default_vertices: int = 20000

    @property
    def has_artefacts(self) -> bool:
        return self.density_jitter > 0 or self.holes_per_m2 > 0


PRESETS: dict[str, ScenePreset] = {p.name: p for p in (
    ScenePreset("basic"),
    ScenePreset("scannet", objects=(25, 50), room_scale=(1.0, 1.3), density_jitter=0.35, holes_per_m2=0.35,
                hole_radius=(0.08, 0.3), hole_keep=0.6, default_vertices=150000),
)}


def resolve_preset(name: str) -> ScenePreset:
    """The preset called ``name``; ValueError naming the choices otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


def punch_holes(vertices: np.ndarray, owner: np.ndarray, rng: np.random.Generator, *, count: int,
                radius: tuple[float, float], keep: float) -> np.ndarray:
    """Which vertices survive ``count`` spherical holes centred on random vertices.

    Args:
        vertices: float [V, 3]; owner: int [V] object of each vertex.
        count: holes; radius: (low, high) metres, drawn uniformly per hole.
        keep: per object, a hole is skipped for that object when it would leave fewer than this share
            of the object's original vertices (small objects get dented, never erased).
    Returns:
        bool [V], True = the vertex stays.
    """
    alive = np.ones(vertices.shape[0], dtype=bool)
    if count <= 0 or vertices.shape[0] == 0:
        return alive
    objects, inverse, sizes = np.unique(owner, return_inverse=True, return_counts=True)
    floor_count = np.ceil(keep * sizes).astype(np.int64)
    for _ in range(count):
        centre = vertices[int(rng.integers(vertices.shape[0]))]
        r = float(rng.uniform(*radius))
        inside = alive & (((vertices - centre) ** 2).sum(1) < r * r)
        if not inside.any():
            continue
        remaining = np.bincount(inverse[alive & ~inside], minlength=objects.shape[0])
        allowed = remaining >= floor_count
        alive &= ~(inside & allowed[inverse])
    return alive
