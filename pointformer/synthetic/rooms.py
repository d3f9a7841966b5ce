"""Room layouts: walls, floor and furniture placed without collisions, some objects touching.

A layout is decided once from a random generator (what stands where) and meshed later at any vertex
spacing (see :func:`mesh_layout`), so the target vertex count changes the density, never the room.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from pointformer.synthetic import furniture as fu
from pointformer.synthetic import meshes

ROOM_TYPES = ("Bedroom / Hotel", "Office", "Living room / Lounge", "Kitchen", "Bathroom", "Conference Room")

# raw category -> (category, nyu40 id): the label table the generated scenes use. Several raw names
# map to one class, as in the real release.
RAW_CATEGORIES: dict[str, tuple[str, int]] = {
    "wall": ("wall", 1), "floor": ("floor", 2),
    "cabinet": ("cabinet", 3), "kitchen cabinets": ("kitchen cabinet", 3),
    "bed": ("bed", 4),
    "chair": ("chair", 5), "office chair": ("office chair", 5),
    "couch": ("couch", 6), "sofa": ("couch", 6),
    "table": ("table", 7), "coffee table": ("coffee table", 7), "dining table": ("table", 7),
    "door": ("door", 8), "window": ("window", 9), "bookshelf": ("bookshelf", 10), "picture": ("picture", 11),
    "kitchen counter": ("kitchen counter", 12), "counter": ("counter", 12),
    "desk": ("desk", 14), "curtain": ("curtain", 16), "refrigerator": ("refrigerator", 24),
    "shower curtain": ("shower curtain", 28), "toilet": ("toilet", 33), "sink": ("sink", 34),
    "bathtub": ("bathtub", 36), "trash can": ("trash can", 39), "stool": ("stool", 39),
    # Classes outside the 18-class benchmark.
    "nightstand": ("nightstand", 32), "pillow": ("pillow", 18), "lamp": ("lamp", 35), "box": ("box", 29),
    "monitor": ("monitor", 40), "tv": ("tv", 25), "plant": ("plant", 40), "whiteboard": ("whiteboard", 30),
    "mirror": ("mirror", 19),
}

# Base colours (RGB) by nyu40 id; objects jitter around them.
_COLORS: dict[int, tuple[int, int, int]] = {
    1: (205, 200, 190), 2: (150, 120, 90), 3: (170, 130, 90), 4: (200, 190, 210), 5: (70, 70, 80),
    6: (120, 60, 50), 7: (160, 110, 70), 8: (140, 100, 60), 9: (170, 200, 220), 10: (130, 90, 60),
    11: (200, 80, 60), 12: (110, 110, 110), 14: (180, 150, 110), 16: (90, 120, 170), 24: (230, 230, 230),
    28: (210, 210, 235), 33: (245, 245, 245), 34: (225, 225, 230), 36: (240, 240, 240), 39: (90, 90, 90),
}


@dataclass
class PlacedObject:
    """One object of a room: shape parts in its local frame, a yaw about +z and a translation."""

    raw_label: str
    parts: list[fu.Part]
    yaw: float
    translation: tuple[float, float, float]
    annotated: bool = True
    wall_index: int = -1          # which wall (0..3) a "wall" object is

    @property
    def nyu40(self) -> int:
        return RAW_CATEGORIES[self.raw_label][1] if self.raw_label in RAW_CATEGORIES else 0


@dataclass
class Layout:
    """A room (width W along x, depth D along y, height H) and its objects."""

    width: float
    depth: float
    height: float
    scene_type: str
    objects: list[PlacedObject] = field(default_factory=list)
    _floor: list[tuple[float, float, float, float]] = field(default_factory=list)
    _wall: dict[int, list[tuple[float, float, float, float]]] = field(default_factory=dict)

    # Walls, counter-clockwise from the south wall y = 0: start point, direction along, inward normal.
    def wall_frame(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        W, D = self.width, self.depth
        starts = [(0, 0), (W, 0), (W, D), (0, D)]
        dirs = [(1, 0), (0, 1), (-1, 0), (0, -1)]
        normals = [(0, 1), (-1, 0), (0, -1), (1, 0)]
        length = W if k % 2 == 0 else D
        return np.array(starts[k], float), np.array(dirs[k], float), np.array(normals[k], float), length


def _overlap(a, b, margin: float = 0.0) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def _footprint(x: float, y: float, w: float, d: float, yaw: float) -> tuple[float, float, float, float]:
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    hx, hy = (w * c + d * s) / 2, (w * s + d * c) / 2
    return (x - hx, y - hy, x + hx, y + hy)


class _Planner:
    def __init__(self, layout: Layout, rng: np.random.Generator) -> None:
        self.layout, self.rng = layout, rng
        layout._wall = {k: [] for k in range(4)}
        # Objects with a surface other objects may stand on (tables, desks, counters, ...): the
        # clutter pass of the "scannet" preset puts small items there.
        self.surfaces: list[tuple[PlacedObject, fu.Shape]] = []

    def add(self, raw_label: str, shape: fu.Shape, yaw: float, xyz, annotated: bool = True) -> PlacedObject:
        obj = PlacedObject(raw_label, shape.parts, yaw, tuple(float(v) for v in xyz), annotated)
        self.layout.objects.append(obj)
        if shape.top_z > 0:
            self.surfaces.append((obj, shape))
        return obj

    def free_floor(self, rect, margin: float = 0.05) -> bool:
        L = self.layout
        eps = 1e-6  # furniture stands with its back touching a wall
        if rect[0] < -eps or rect[1] < -eps or rect[2] > L.width + eps or rect[3] > L.depth + eps:
            return False
        return not any(_overlap(rect, r, margin) for r in L._floor)

    def on_wall(self, raw_label: str, shape: fu.Shape, *, z0: float = 0.0, floor_standing: bool = True,
                wall: Optional[int] = None, tries: int = 40,
                wall_margin: float = 0.05) -> Optional[tuple[PlacedObject, int, float]]:
        """Place a shape with its back on a wall (random wall and position); None when it does not fit."""
        L, rng = self.layout, self.rng
        back = shape.depth / 2 if floor_standing else 0.0
        for _ in range(tries):
            k = int(rng.integers(4)) if wall is None else wall
            start, along, normal, length = L.wall_frame(k)
            if length < shape.width + 0.2:
                continue
            s = float(rng.uniform(shape.width / 2 + 0.05, length - shape.width / 2 - 0.05))
            wrect = (s - shape.width / 2, z0, s + shape.width / 2, z0 + shape.height)
            if any(_overlap(wrect, r, wall_margin) for r in L._wall[k]):
                continue
            pos = start + s * along + back * normal
            yaw = math.atan2(normal[0], -normal[1])
            frect = None
            if floor_standing:
                frect = _footprint(pos[0], pos[1], shape.width, shape.depth, yaw)
                if not self.free_floor(frect):
                    continue
                L._floor.append(frect)
            L._wall[k].append(wrect)
            return self.add(raw_label, shape, yaw, (pos[0], pos[1], z0)), k, s
        return None

    def on_floor(self, raw_label: str, shape: fu.Shape, *, yaw: Optional[float] = None, tries: int = 40,
                 margin: float = 0.3, annotated: bool = True) -> Optional[PlacedObject]:
        L, rng = self.layout, self.rng
        for _ in range(tries):
            a = float(rng.integers(4)) * math.pi / 2 if yaw is None else yaw
            x = float(rng.uniform(margin, L.width - margin))
            y = float(rng.uniform(margin, L.depth - margin))
            rect = _footprint(x, y, shape.width, shape.depth, a)
            if self.free_floor(rect, 0.15):
                L._floor.append(rect)
                return self.add(raw_label, shape, a, (x, y, 0.0), annotated)
        return None

    def on_top(self, raw_label: str, shape: fu.Shape, host: PlacedObject, host_shape: fu.Shape,
               slot: float, annotated: bool = True, dy: float = 0.0) -> PlacedObject:
        """Stand a shape on the host's top surface at ``slot`` in [-1, 1] across its width (touching)."""
        hx, hy = host_shape.top_half
        local = np.array([slot * max(hx - shape.width / 2, 0.0),
                          dy + self.rng.uniform(-1, 1) * max(hy - shape.depth / 2, 0) * 0.3])
        c, s = math.cos(host.yaw), math.sin(host.yaw)
        xy = np.array(host.translation[:2]) + np.array([c * local[0] - s * local[1], s * local[0] + c * local[1]])
        return self.add(raw_label, shape, host.yaw, (xy[0], xy[1], host.translation[2] + host_shape.top_z), annotated)

    def windows(self, n: int, curtains: bool) -> None:
        """Windows at sill height on random walls, optionally with a curtain on each side in front."""
        rng, L = self.rng, self.layout
        for _ in range(n):
            shape = fu.window(rng)
            placed = self.on_wall("window", shape, z0=float(rng.uniform(0.8, 1.0)), floor_standing=False)
            if placed is None or not curtains:
                continue
            _, k, s = placed
            host_rect = L._wall[k][-1]
            for side in (-1, 1):
                cw = float(rng.uniform(0.4, 0.6))
                ch = L.height - 0.15
                cshape = fu.curtain(rng, width=cw, height=ch)
                s_c = s + side * (shape.width / 2 + cw / 2 - 0.15)
                start, along, normal, length = L.wall_frame(k)
                if s_c - cw / 2 < 0.05 or s_c + cw / 2 > length - 0.05:
                    continue
                wrect = (s_c - cw / 2, 0.0, s_c + cw / 2, ch)
                if any(_overlap(wrect, r, 0.02) for r in L._wall[k] if r is not host_rect):
                    continue
                pos = start + s_c * along
                L._wall[k].append(wrect)
                self.add("curtain", cshape, math.atan2(normal[0], -normal[1]), (pos[0], pos[1], 0.1))

    def wall_decor(self, label: str, shape: fu.Shape, z0: float) -> None:
        """A flat object hung on a wall (picture, mirror, whiteboard) with its bottom at ``z0``."""
        self.on_wall(label, shape, z0=z0, floor_standing=False)

    def table_with_chairs(self, table_shape: fu.Shape, label: str, chairs: int, chair_label: str = "chair") -> None:
        placed = self.on_floor(label, table_shape, yaw=float(self.rng.integers(2)) * math.pi / 2, margin=1.0)
        if placed is None:
            return
        table_rect = self.layout._floor[-1]
        tx, ty, _ = placed.translation
        c, s = math.cos(placed.yaw), math.sin(placed.yaw)
        hw, hd = table_shape.width / 2, table_shape.depth / 2
        for k in range(chairs):
            side = 1 if k % 2 == 0 else -1
            n_side = (chairs + (1 if side == 1 else 0)) // 2
            i = k // 2
            along = (i + 0.5) / max(n_side, 1) * 2 * hw - hw
            ch = fu.chair(self.rng)
            tuck = float(self.rng.uniform(-0.05, 0.15))  # pushed under the table top, or just touching it
            off = hd + ch.depth / 2 - tuck
            local = np.array([along, side * off])
            xy = np.array([tx, ty]) + np.array([c * local[0] - s * local[1], s * local[0] + c * local[1]])
            # The chair's front (-y) faces the table.
            yaw = placed.yaw + (0.0 if side == 1 else math.pi) + float(self.rng.uniform(-0.15, 0.15))
            rect = _footprint(xy[0], xy[1], ch.width, ch.depth, yaw)
            others = [r for r in self.layout._floor if r is not table_rect]  # chairs may tuck under it
            inside = (0.02 < rect[0] and 0.02 < rect[1]
                      and rect[2] < self.layout.width - 0.02 and rect[3] < self.layout.depth - 0.02)
            if inside and not any(_overlap(rect, r, 0.02) for r in others):
                self.layout._floor.append(rect)
                self.add(chair_label, ch, yaw, (xy[0], xy[1], 0.0))


def _furnish_bedroom(P: _Planner) -> None:
    rng, L = P.rng, P.layout
    P.windows(int(rng.integers(1, 3)), curtains=True)
    bed_shape = fu.bed(rng)
    placed = P.on_wall("bed", bed_shape)
    if placed is not None:
        bed_obj, k, s = placed
        for slot in ((-0.5, 0.5) if bed_shape.width > 1.2 else (0.0,)):
            P.on_top("pillow", fu.pillow(rng), bed_obj, bed_shape, slot, dy=bed_shape.extra["pillow_y"])
        for side in (-1, 1):  # night stands right beside the bed, touching it
            ns = fu.nightstand(rng)
            s_ns = s + side * (bed_shape.width / 2 + ns.width / 2 + 0.005)
            start, along, normal, length = L.wall_frame(k)
            if ns.width / 2 + 0.05 < s_ns < length - ns.width / 2 - 0.05:
                pos = start + s_ns * along + ns.depth / 2 * normal
                rect = _footprint(pos[0], pos[1], ns.width, ns.depth, bed_obj.yaw)
                if P.free_floor(rect, 0.0):
                    L._floor.append(rect)
                    L._wall[k].append((s_ns - ns.width / 2, 0.0, s_ns + ns.width / 2, ns.height))
                    host = P.add("nightstand", ns, bed_obj.yaw, (pos[0], pos[1], 0.0))
                    if rng.random() < 0.7:
                        P.on_top("lamp", fu.lamp(rng), host, ns, 0.0)
    if rng.random() < 0.7:
        P.on_wall("cabinet", fu.cabinet(rng, tall=True))
    if rng.random() < 0.6:
        if P.on_wall("desk", fu.desk(rng)) is not None:
            P.on_floor("chair", fu.chair(rng))
    for _ in range(int(rng.integers(1, 3))):
        P.wall_decor("picture", fu.picture(rng), float(rng.uniform(1.3, 1.6)))


def _furnish_office(P: _Planner) -> None:
    rng = P.rng
    P.windows(int(rng.integers(1, 3)), curtains=rng.random() < 0.5)
    for _ in range(int(rng.integers(1, 4))):
        desk_shape = fu.desk(rng)
        placed = P.on_wall("desk", desk_shape)
        if placed is None:
            continue
        obj = placed[0]
        P.on_top("monitor", fu.monitor(rng), obj, desk_shape, float(rng.uniform(-0.5, 0.5)))
        if rng.random() < 0.4:
            P.on_top("box", fu.small_box(rng), obj, desk_shape, 1.0, annotated=rng.random() < 0.5)
        P.on_floor("office chair", fu.chair(rng))
    for _ in range(int(rng.integers(1, 3))):
        P.on_wall("bookshelf", fu.bookshelf(rng))
    if rng.random() < 0.6:
        P.on_wall("cabinet", fu.cabinet(rng))
    if rng.random() < 0.5:
        P.on_floor("trash can", fu.stool(rng))
    P.wall_decor("picture", fu.picture(rng), float(rng.uniform(1.3, 1.6)))


def _furnish_living_room(P: _Planner) -> None:
    rng = P.rng
    P.windows(int(rng.integers(1, 3)), curtains=True)
    for _ in range(int(rng.integers(1, 3))):
        P.on_wall(str(rng.choice(["couch", "sofa"])), fu.sofa(rng))
    ct = fu.coffee_table(rng)
    table_obj = P.on_floor("coffee table", ct, margin=0.8)
    if table_obj is not None and rng.random() < 0.6:
        P.on_top("box", fu.small_box(rng), table_obj, ct, float(rng.uniform(-1, 1)))
    tv_stand = fu.cabinet(rng)
    placed = P.on_wall("cabinet", tv_stand)
    if placed is not None:
        P.on_top("tv", fu.tv(rng), placed[0], tv_stand, 0.0)
    for _ in range(int(rng.integers(0, 3))):
        P.on_floor("chair", fu.chair(rng))
    if rng.random() < 0.6:
        P.on_wall("bookshelf", fu.bookshelf(rng))
    if rng.random() < 0.6:
        P.on_floor("lamp", fu.floor_lamp(rng))
    if rng.random() < 0.6:
        P.on_floor("plant", fu.plant(rng))
    for _ in range(int(rng.integers(1, 3))):
        P.wall_decor("picture", fu.picture(rng), float(rng.uniform(1.2, 1.6)))


def _furnish_kitchen(P: _Planner) -> None:
    rng = P.rng
    P.windows(1, curtains=rng.random() < 0.5)
    for i in range(int(rng.integers(1, 3))):
        cshape = fu.counter(rng)
        placed = P.on_wall(str(rng.choice(["kitchen counter", "counter"])), cshape)
        if placed is not None and i == 0:
            sink_shape = fu.sink(rng, standalone=False)
            sink_obj = P.on_top("sink", sink_shape, placed[0], cshape, float(rng.uniform(-0.5, 0.5)))
            # The basin is set into the counter top: its rim stands 2 cm above the surface.
            x, y, z = sink_obj.translation
            sink_obj.translation = (x, y, z - sink_shape.height + 0.02)
    for _ in range(int(rng.integers(1, 4))):
        P.on_wall("kitchen cabinets", fu.cabinet(rng, tall=rng.random() < 0.3))
    P.on_wall("refrigerator", fu.refrigerator(rng))
    P.table_with_chairs(fu.table(rng), "dining table", int(rng.integers(2, 5)))
    if rng.random() < 0.6:
        P.on_floor("trash can", fu.stool(rng))


def _furnish_bathroom(P: _Planner) -> None:
    rng = P.rng
    if rng.random() < 0.6:
        P.windows(1, curtains=False)
    tub_shape = fu.bathtub(rng)
    placed = P.on_wall("bathtub", tub_shape)
    if placed is not None:
        tub = placed[0]
        w, d = tub_shape.width, tub_shape.depth
        # A shower curtain hanging along the tub's front rim, touching it.
        sheet = fu.Sheet((-w / 2, -d / 2 + 0.03, tub_shape.height - 0.02), w, 1.3,
                         amplitude=float(rng.uniform(0.02, 0.04)), wavelength=float(rng.uniform(0.15, 0.25)))
        P.add("shower curtain", fu.Shape([sheet], w, 0.1, 1.3), tub.yaw, tub.translation)
    P.on_wall("toilet", fu.toilet(rng))
    P.on_wall("sink", fu.sink(rng, standalone=True))
    if rng.random() < 0.5:
        P.on_wall("cabinet", fu.cabinet(rng))
    P.wall_decor("mirror", fu.picture(rng), 1.3)
    if rng.random() < 0.5:
        P.on_floor("trash can", fu.stool(rng), margin=0.3)


def _furnish_conference_room(P: _Planner) -> None:
    rng = P.rng
    P.windows(int(rng.integers(1, 3)), curtains=rng.random() < 0.7)
    P.table_with_chairs(fu.table(rng, large=True), "table", int(rng.integers(4, 9)))
    P.wall_decor("whiteboard", fu.whiteboard(rng), 0.9)
    if rng.random() < 0.5:
        P.on_wall("cabinet", fu.cabinet(rng))
    if rng.random() < 0.5:
        P.on_wall("tv", fu.tv(rng), z0=1.2, floor_standing=False)
    if rng.random() < 0.5:
        P.on_floor("stool", fu.stool(rng))


_FURNISH = {
    "Bedroom / Hotel": _furnish_bedroom,
    "Office": _furnish_office,
    "Living room / Lounge": _furnish_living_room,
    "Kitchen": _furnish_kitchen,
    "Bathroom": _furnish_bathroom,
    "Conference Room": _furnish_conference_room,
}


def _add_clutter(P: _Planner, target_objects: int, tries: int = 400) -> None:
    """Add small and mid-sized objects until the room holds ``target_objects`` annotated objects (or
    ``tries`` placements were attempted): pictures on the walls, small cabinets, trash cans, stools,
    chairs and plants on the floor, and items on every surface (lamps, monitors, boxes, pillows -- the
    latter mostly outside the 18 benchmark classes, as ScanNet's "otherprop" clutter on tables).

    ScanNet rooms hold many small objects (pictures, sinks, trash cans, small cabinets); the base
    furnishing gives 10-20 objects, mostly large ones. Kinds are drawn with fixed weights."""
    rng = P.rng
    kinds = ("picture", "small cabinet", "trash can", "stool", "chair", "plant", "on top")
    weights = np.array([0.22, 0.14, 0.16, 0.06, 0.1, 0.04, 0.28])
    for _ in range(tries):
        if sum(o.annotated for o in P.layout.objects) >= target_objects:
            return
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if kind == "picture":
            P.wall_decor("picture", fu.picture(rng, small=True), float(rng.uniform(1.0, 1.8)))
        elif kind == "small cabinet":
            P.on_wall("cabinet", fu.small_cabinet(rng))
        elif kind == "trash can":
            P.on_floor("trash can", fu.trash_can(rng), margin=0.2)
        elif kind == "stool":
            P.on_floor("stool", fu.stool(rng))
        elif kind == "chair":
            P.on_floor("chair", fu.chair(rng), yaw=float(rng.uniform(-math.pi, math.pi)))
        elif kind == "plant":
            P.on_floor("plant", fu.plant(rng), annotated=rng.random() < 0.5)
        elif P.surfaces:
            host, host_shape = P.surfaces[int(rng.integers(len(P.surfaces)))]
            label, shape = [("lamp", fu.lamp), ("monitor", fu.monitor), ("box", fu.small_box),
                            ("pillow", fu.pillow)][int(rng.integers(4))]
            P.on_top(label, shape(rng), host, host_shape, float(rng.uniform(-1, 1)),
                     annotated=rng.random() < 0.8)


def plan_room(rng: np.random.Generator, scene_type: str, *, clutter_objects: int = 0,
              room_scale: float = 1.0) -> Layout:
    """Decide a room of the given type: its size and every object (all 18 benchmark classes occur
    across the room types; some objects touch: chairs at tables, lamps on night stands, pillows on
    beds, sinks set into counters, curtains in front of windows).

    ``clutter_objects`` > 0: after the furnishing, add clutter (:func:`_add_clutter`) until the room
    holds that many annotated objects, walls and floor included; ``room_scale`` multiplies the width
    and depth (both used by the "scannet" preset; the defaults reproduce the base rooms exactly)."""
    if scene_type not in _FURNISH:
        raise ValueError(f"unknown scene type {scene_type!r}; choose from {ROOM_TYPES}")
    if room_scale <= 0:
        raise ValueError(f"room_scale must be positive, got {room_scale}")
    W, D = float(rng.uniform(3.5, 6.5)), float(rng.uniform(3.2, 5.5))
    if scene_type == "Bathroom":
        W, D = float(rng.uniform(2.6, 3.6)), float(rng.uniform(2.4, 3.2))
    W, D = W * room_scale, D * room_scale
    layout = Layout(W, D, float(rng.uniform(2.5, 2.9)), scene_type)
    P = _Planner(layout, rng)
    # Structure: the floor and the four walls are annotated objects (stuff classes).
    P.add("floor", fu.Shape([], W, D, 0), 0.0, (0, 0, 0))
    for k in range(4):
        P.add("wall", fu.Shape([], 0, 0, layout.height), 0.0, (0, 0, 0)).wall_index = k
    P.on_wall("door", fu.door(rng), floor_standing=False)
    _FURNISH[scene_type](P)
    # Unannotated clutter (its segments belong to no segGroup, as in the real release).
    for _ in range(int(rng.integers(1, 3))):
        P.on_floor("box", fu.small_box(rng), annotated=False)
    if clutter_objects > 0:
        _add_clutter(P, clutter_objects)
    return layout


@dataclass
class RoomMesh:
    """vertices float64 [V, 3]; faces int64 [F, 3]; object int64 [V] (index into layout.objects)."""

    vertices: np.ndarray
    faces: np.ndarray
    object_index: np.ndarray


def mesh_layout(layout: Layout, spacing: float, spacing_factor: Optional[np.ndarray] = None) -> RoomMesh:
    """Triangulate every object of a layout at ``spacing`` metres between vertices.

    ``spacing_factor``: optional float [num objects] multiplying the spacing per object (uneven scan
    density: surfaces seen from close up or far away)."""
    if spacing_factor is not None and len(spacing_factor) != len(layout.objects):
        raise ValueError(f"spacing_factor has {len(spacing_factor)} entries for {len(layout.objects)} objects")
    parts: list[meshes.Mesh] = []
    owner: list[np.ndarray] = []
    base_spacing = spacing
    for i, obj in enumerate(layout.objects):
        spacing = base_spacing if spacing_factor is None else base_spacing * float(spacing_factor[i])
        if obj.raw_label == "floor":
            m = meshes.grid((0, 0, 0), (layout.width, 0, 0), (0, layout.depth, 0), spacing)
        elif obj.raw_label == "wall":
            start, along, _, length = layout.wall_frame(obj.wall_index)
            m = meshes.grid((start[0], start[1], 0.0), (0, 0, layout.height), (*(along * length), 0.0), spacing)
        else:
            m = meshes.transform(fu.mesh_parts(obj.parts, spacing), obj.yaw, obj.translation)
        parts.append(m)
        owner.append(np.full(m.num_vertices, i, dtype=np.int64))
    mesh = meshes.concat(parts)
    return RoomMesh(mesh.vertices, mesh.faces, np.concatenate(owner))


def object_colors(layout: Layout, room: RoomMesh, rng: np.random.Generator) -> np.ndarray:
    """uint8 [V, 3]: a jittered base colour per object, a soft height gradient and per-vertex noise."""
    base = np.empty((len(layout.objects), 3))
    for i, obj in enumerate(layout.objects):
        rgb = np.array(_COLORS.get(obj.nyu40, tuple(rng.integers(40, 220, 3))), dtype=float)
        base[i] = rgb + rng.normal(0, 15, 3)
    colors = base[room.object_index]
    colors *= (0.85 + 0.15 * np.clip(room.vertices[:, 2:3] / max(layout.height, 1e-6), 0, 1))
    colors += rng.normal(0, 6, colors.shape)
    return np.clip(np.rint(colors), 0, 255).astype(np.uint8)
