"""Furniture shapes for synthetic rooms, as lists of primitive parts in an object's local frame.

Local frame: origin at the centre of the footprint on the floor, +z up, the object's back at +y
(the side that goes against a wall), its front at -y. A shape is only a description (parts and
sizes); :func:`mesh_parts` turns it into a triangle mesh at a given vertex spacing, so a room's
layout is decided once and can be meshed at any density.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np

from pointformer.synthetic import meshes


@dataclass
class Box:
    center: tuple[float, float, float]
    half: tuple[float, float, float]


@dataclass
class Cylinder:
    base: tuple[float, float, float]
    radius: float
    height: float


@dataclass
class Sheet:
    """A (wavy) vertical sheet from ``origin`` along +x by width and +z by height."""

    origin: tuple[float, float, float]
    width: float
    height: float
    amplitude: float = 0.0
    wavelength: float = 0.3


Part = Union[Box, Cylinder, Sheet]


@dataclass
class Shape:
    """Parts (local frame) and the footprint width (x), depth (y) and height (z) in metres."""

    parts: list[Part]
    width: float
    depth: float
    height: float
    top_z: float = 0.0            # height of a surface other objects may stand on (0 = none)
    top_half: tuple[float, float] = (0.0, 0.0)  # usable half extents of that surface
    extra: dict = field(default_factory=dict)


def mesh_parts(parts: list[Part], spacing: float) -> meshes.Mesh:
    """Mesh all parts at ``spacing`` and weld them into one object mesh."""
    out = []
    for p in parts:
        if isinstance(p, Box):
            out.append(meshes.box(p.center, p.half, spacing))
        elif isinstance(p, Cylinder):
            out.append(meshes.cylinder(p.base, p.radius, p.height, spacing))
        else:
            out.append(meshes.wavy_sheet(p.origin, p.width, p.height, spacing,
                                         amplitude=p.amplitude, wavelength=p.wavelength))
    return meshes.weld(meshes.concat(out))


def _legs(w: float, d: float, h: float, t: float, inset: float) -> list[Part]:
    x, y = w / 2 - inset - t / 2, d / 2 - inset - t / 2
    return [Box((sx * x, sy * y, h / 2), (t / 2, t / 2, h / 2)) for sx in (-1, 1) for sy in (-1, 1)]


def chair(rng: np.random.Generator) -> Shape:
    w, d = rng.uniform(0.42, 0.55), rng.uniform(0.42, 0.52)
    seat_h, back_h = rng.uniform(0.42, 0.48), rng.uniform(0.35, 0.5)
    t = 0.035
    parts = _legs(w, d, seat_h - 0.04, t, 0.01)
    parts.append(Box((0, 0, seat_h - 0.02), (w / 2, d / 2, 0.025)))
    parts.append(Box((0, d / 2 - 0.02, seat_h + back_h / 2), (w / 2, 0.02, back_h / 2)))
    return Shape(parts, w, d, seat_h + back_h)


def table(rng: np.random.Generator, *, large: bool = False) -> Shape:
    w = rng.uniform(2.0, 3.0) if large else rng.uniform(0.9, 1.5)
    d = rng.uniform(0.9, 1.2) if large else rng.uniform(0.6, 0.9)
    h = rng.uniform(0.7, 0.76)
    parts = _legs(w, d, h - 0.04, 0.05, 0.04) + [Box((0, 0, h - 0.02), (w / 2, d / 2, 0.02))]
    return Shape(parts, w, d, h, top_z=h, top_half=(w / 2 - 0.1, d / 2 - 0.1))


def coffee_table(rng: np.random.Generator) -> Shape:
    w, d, h = rng.uniform(0.8, 1.2), rng.uniform(0.5, 0.7), rng.uniform(0.38, 0.45)
    parts = _legs(w, d, h - 0.04, 0.05, 0.03) + [Box((0, 0, h - 0.02), (w / 2, d / 2, 0.02))]
    return Shape(parts, w, d, h, top_z=h, top_half=(w / 2 - 0.1, d / 2 - 0.1))


def desk(rng: np.random.Generator) -> Shape:
    w, d, h = rng.uniform(1.1, 1.6), rng.uniform(0.6, 0.8), rng.uniform(0.72, 0.76)
    parts: list[Part] = [Box((0, 0, h - 0.02), (w / 2, d / 2, 0.02))]
    parts += [Box((sx * (w / 2 - 0.02), 0, (h - 0.04) / 2), (0.02, d / 2 - 0.01, (h - 0.04) / 2)) for sx in (-1, 1)]
    # A drawer block under one side.
    parts.append(Box((w / 2 - 0.25, -0.02, h - 0.2), (0.2, d / 2 - 0.05, 0.15)))
    parts.append(Box((0, d / 2 - 0.03, h / 2), (w / 2 - 0.04, 0.01, h / 4)))  # modesty panel
    return Shape(parts, w, d, h, top_z=h, top_half=(w / 2 - 0.15, d / 2 - 0.15))


def bed(rng: np.random.Generator) -> Shape:
    w, d = rng.choice([0.95, 1.4, 1.6, 1.8]) + rng.uniform(-0.05, 0.05), rng.uniform(1.95, 2.1)
    frame_h, mattress_h = rng.uniform(0.25, 0.35), rng.uniform(0.18, 0.25)
    parts: list[Part] = [Box((0, 0, frame_h / 2), (w / 2, d / 2, frame_h / 2)),
                         Box((0, -0.02, frame_h + mattress_h / 2), (w / 2 - 0.03, d / 2 - 0.05, mattress_h / 2))]
    head_h = rng.uniform(0.8, 1.1)
    parts.append(Box((0, d / 2 - 0.04, head_h / 2), (w / 2, 0.04, head_h / 2)))
    top = frame_h + mattress_h
    return Shape(parts, w, d, head_h, top_z=top, top_half=(w / 2 - 0.15, 0.25),
                 extra={"pillow_y": d / 2 - 0.35})


def sofa(rng: np.random.Generator) -> Shape:
    w, d = rng.uniform(1.6, 2.4), rng.uniform(0.85, 1.0)
    seat_h, arm_h, back_h = rng.uniform(0.4, 0.45), rng.uniform(0.6, 0.7), rng.uniform(0.8, 0.95)
    arm_w = 0.18
    parts: list[Part] = [
        Box((0, -0.05, seat_h / 2), (w / 2 - arm_w, d / 2 - 0.05, seat_h / 2)),
        Box((0, d / 2 - 0.1, back_h / 2), (w / 2, 0.1, back_h / 2)),
    ]
    parts += [Box((sx * (w / 2 - arm_w / 2), -0.1, arm_h / 2), (arm_w / 2, d / 2 - 0.1, arm_h / 2)) for sx in (-1, 1)]
    return Shape(parts, w, d, back_h, top_z=seat_h, top_half=(w / 2 - arm_w - 0.2, 0.15))


def cabinet(rng: np.random.Generator, *, tall: bool = False) -> Shape:
    w, d = rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.6)
    h = rng.uniform(1.6, 2.0) if tall else rng.uniform(0.7, 0.95)
    parts: list[Part] = [Box((0, 0, h / 2), (w / 2, d / 2, h / 2))]
    doors = 2 if w > 0.8 else 1
    dw = w / doors
    for k in range(doors):
        x = -w / 2 + dw * (k + 0.5)
        parts.append(Box((x, -d / 2 - 0.008, h / 2), (dw / 2 - 0.01, 0.008, h / 2 - 0.03)))
        parts.append(Box((x + dw * 0.35, -d / 2 - 0.03, h * 0.55), (0.01, 0.015, 0.06)))  # handle
    return Shape(parts, w, d, h, top_z=0.0 if tall else h, top_half=(w / 2 - 0.1, d / 2 - 0.1))


def bookshelf(rng: np.random.Generator) -> Shape:
    w, d, h = rng.uniform(0.7, 1.2), rng.uniform(0.28, 0.4), rng.uniform(1.5, 2.1)
    t = 0.025
    parts: list[Part] = [Box((sx * (w / 2 - t / 2), 0, h / 2), (t / 2, d / 2, h / 2)) for sx in (-1, 1)]
    parts.append(Box((0, d / 2 - 0.01, h / 2), (w / 2 - t, 0.01, h / 2)))
    shelves = int(rng.integers(4, 7))
    for k in range(shelves):
        z = t / 2 + k * (h - t) / (shelves - 1)
        parts.append(Box((0, 0, z), (w / 2 - t, d / 2, t / 2)))
    return Shape(parts, w, d, h)


def counter(rng: np.random.Generator) -> Shape:
    w, d, h = rng.uniform(1.6, 2.8), rng.uniform(0.6, 0.7), rng.uniform(0.88, 0.93)
    parts: list[Part] = [Box((0, 0.02, (h - 0.04) / 2), (w / 2 - 0.02, d / 2 - 0.02, (h - 0.04) / 2)),
                         Box((0, 0, h - 0.02), (w / 2, d / 2, 0.02))]
    return Shape(parts, w, d, h, top_z=h, top_half=(w / 2 - 0.4, d / 2 - 0.25))


def refrigerator(rng: np.random.Generator) -> Shape:
    w, d, h = rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.75), rng.uniform(1.6, 1.9)
    parts: list[Part] = [Box((0, 0, h / 2), (w / 2, d / 2, h / 2)),
                         Box((w / 2 - 0.08, -d / 2 - 0.03, h * 0.7), (0.015, 0.02, 0.2)),
                         Box((w / 2 - 0.08, -d / 2 - 0.03, h * 0.3), (0.015, 0.02, 0.15))]
    return Shape(parts, w, d, h)


def toilet(rng: np.random.Generator) -> Shape:
    w, d = rng.uniform(0.38, 0.45), rng.uniform(0.65, 0.75)
    parts: list[Part] = [
        Box((0, d / 2 - 0.1, 0.58), (w / 2, 0.1, 0.2)),                        # tank
        Cylinder((0, -0.05, 0.0), 0.13, 0.3),                                 # pedestal
        Cylinder((0, -0.08, 0.3), w / 2, 0.1),                               # bowl
        Box((0, -0.08, 0.41), (w / 2 - 0.01, w / 2, 0.01)),                  # seat
    ]
    return Shape(parts, w, d, 0.78)


def sink(rng: np.random.Generator, *, standalone: bool) -> Shape:
    """A basin (bottom + four rims); on a pedestal when ``standalone``, else set into a counter top."""
    w, d, depth = rng.uniform(0.45, 0.65), rng.uniform(0.35, 0.45), 0.15
    z0 = 0.72 if standalone else 0.0
    t = 0.02
    parts: list[Part] = [Box((0, 0, z0 + t / 2), (w / 2, d / 2, t / 2))]
    parts += [Box((sx * (w / 2 - t / 2), 0, z0 + depth / 2), (t / 2, d / 2, depth / 2)) for sx in (-1, 1)]
    parts += [Box((0, sy * (d / 2 - t / 2), z0 + depth / 2), (w / 2 - t, t / 2, depth / 2)) for sy in (-1, 1)]
    parts.append(Cylinder((0, d / 2 - 0.05, z0 + depth), 0.015, 0.18))  # tap
    if standalone:
        parts.append(Cylinder((0, 0.05, 0.0), 0.08, z0))
    return Shape(parts, w, d, z0 + depth)


def bathtub(rng: np.random.Generator) -> Shape:
    w, d, h = rng.uniform(1.5, 1.8), rng.uniform(0.7, 0.8), rng.uniform(0.5, 0.6)
    t = 0.06
    parts: list[Part] = [Box((0, 0, t / 2), (w / 2, d / 2, t / 2))]
    parts += [Box((sx * (w / 2 - t / 2), 0, h / 2), (t / 2, d / 2, h / 2)) for sx in (-1, 1)]
    parts += [Box((0, sy * (d / 2 - t / 2), h / 2), (w / 2 - t, t / 2, h / 2)) for sy in (-1, 1)]
    return Shape(parts, w, d, h)


def nightstand(rng: np.random.Generator) -> Shape:
    w, d, h = rng.uniform(0.4, 0.55), rng.uniform(0.35, 0.45), rng.uniform(0.5, 0.6)
    parts: list[Part] = [Box((0, 0, h / 2), (w / 2, d / 2, h / 2)),
                         Box((0, -d / 2 - 0.01, h * 0.7), (w / 2 - 0.03, 0.01, h * 0.15))]
    return Shape(parts, w, d, h, top_z=h, top_half=(w / 2 - 0.1, d / 2 - 0.1))


def small_cabinet(rng: np.random.Generator) -> Shape:
    """A low cabinet or drawer unit (40-60 cm), with a door; something may stand on it."""
    w, d, h = rng.uniform(0.35, 0.6), rng.uniform(0.3, 0.45), rng.uniform(0.4, 0.7)
    parts: list[Part] = [Box((0, 0, h / 2), (w / 2, d / 2, h / 2)),
                         Box((0, -d / 2 - 0.008, h / 2), (w / 2 - 0.02, 0.008, h / 2 - 0.03))]
    return Shape(parts, w, d, h, top_z=h, top_half=(w / 2 - 0.08, d / 2 - 0.08))


def trash_can(rng: np.random.Generator) -> Shape:
    """An open-topped bin: a cylinder side without a lid (25-40 cm across)."""
    r, h = rng.uniform(0.12, 0.2), rng.uniform(0.3, 0.6)
    return Shape([Cylinder((0, 0, 0), r, h)], 2 * r, 2 * r, h)


def stool(rng: np.random.Generator) -> Shape:
    r, h = rng.uniform(0.16, 0.22), rng.uniform(0.45, 0.65)
    return Shape([Cylinder((0, 0, 0), 0.04, h - 0.04), Cylinder((0, 0, h - 0.04), r, 0.04),
                  Cylinder((0, 0, 0), r * 0.9, 0.03)], 2 * r, 2 * r, h)


def lamp(rng: np.random.Generator) -> Shape:
    h = rng.uniform(0.35, 0.55)
    return Shape([Cylinder((0, 0, 0), 0.08, 0.03), Cylinder((0, 0, 0.03), 0.012, h - 0.2),
                  Cylinder((0, 0, h - 0.2), 0.13, 0.2)], 0.26, 0.26, h)


def floor_lamp(rng: np.random.Generator) -> Shape:
    h = rng.uniform(1.4, 1.7)
    return Shape([Cylinder((0, 0, 0), 0.15, 0.03), Cylinder((0, 0, 0.03), 0.015, h - 0.3),
                  Cylinder((0, 0, h - 0.3), 0.2, 0.3)], 0.4, 0.4, h)


def small_box(rng: np.random.Generator) -> Shape:
    w, d, h = rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.4), rng.uniform(0.15, 0.4)
    return Shape([Box((0, 0, h / 2), (w / 2, d / 2, h / 2))], w, d, h)


def pillow(rng: np.random.Generator) -> Shape:
    w, d, h = rng.uniform(0.5, 0.7), rng.uniform(0.35, 0.45), rng.uniform(0.1, 0.15)
    return Shape([Box((0, 0, h / 2), (w / 2, d / 2, h / 2))], w, d, h)


def monitor(rng: np.random.Generator) -> Shape:
    w, h = rng.uniform(0.5, 0.9), rng.uniform(0.35, 0.55)
    return Shape([Box((0, 0.05, 0.01), (0.12, 0.1, 0.01)), Box((0, 0.05, 0.12), (0.02, 0.02, 0.1)),
                  Box((0, 0.02, 0.22 + h / 2), (w / 2, 0.025, h / 2))], w, 0.2, 0.22 + h)


def plant(rng: np.random.Generator) -> Shape:
    r, h = rng.uniform(0.12, 0.2), rng.uniform(0.5, 1.0)
    return Shape([Cylinder((0, 0, 0), r, 0.3), Cylinder((0, 0, 0.3), 0.02, h - 0.5),
                  Box((0, 0, h - 0.15), (r * 1.4, r * 1.4, 0.15))], 2.8 * r, 2.8 * r, h)


# Wall-mounted objects: local frame origin at the bottom centre on the wall, back (+y) on the wall.
def door(rng: np.random.Generator) -> Shape:
    w, h = rng.uniform(0.8, 0.95), rng.uniform(1.98, 2.1)
    return Shape([Box((0, -0.025, h / 2), (w / 2, 0.025, h / 2)), Box((w / 2 - 0.1, -0.08, 1.0), (0.06, 0.03, 0.012))],
                 w, 0.05, h)


def window(rng: np.random.Generator) -> Shape:
    w, h, t = rng.uniform(0.8, 1.6), rng.uniform(0.9, 1.4), 0.05
    parts: list[Part] = [Box((0, -0.01, h / 2), (w / 2 - t, 0.01, h / 2 - t))]  # glass
    parts += [Box((sx * (w / 2 - t / 2), -0.04, h / 2), (t / 2, 0.04, h / 2)) for sx in (-1, 1)]
    parts += [Box((0, -0.04, z), (w / 2 - t, 0.04, t / 2)) for z in (t / 2, h - t / 2)]
    return Shape(parts, w, 0.08, h)


def picture(rng: np.random.Generator, *, small: bool = False) -> Shape:
    """A framed picture; ``small`` draws the size range of ScanNet's many small frames (20-50 cm)."""
    if small:
        w, h = rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.45)
        return Shape([Box((0, -0.015, h / 2), (w / 2, 0.015, h / 2))], w, 0.03, h)
    w, h = rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.7)
    return Shape([Box((0, -0.015, h / 2), (w / 2, 0.015, h / 2))], w, 0.03, h)


def whiteboard(rng: np.random.Generator) -> Shape:
    w, h = rng.uniform(1.2, 2.0), rng.uniform(0.9, 1.2)
    return Shape([Box((0, -0.015, h / 2), (w / 2, 0.015, h / 2))], w, 0.03, h)


def curtain(rng: np.random.Generator, *, width: float, height: float) -> Shape:
    amp = rng.uniform(0.03, 0.06)
    return Shape([Sheet((-width / 2, -0.12, 0.0), width, height, amplitude=amp, wavelength=rng.uniform(0.2, 0.35))],
                 width, 0.2, height)


def tv(rng: np.random.Generator) -> Shape:
    w = rng.uniform(0.9, 1.4)
    h = w * 0.58
    return Shape([Box((0, -0.04, h / 2), (w / 2, 0.04, h / 2))], w, 0.08, h)

