"""A camera that looks into a scanned room, and the pinhole projection both renderers share.

The view: the scene is z-up; points above ``floor + CEILING_CUT_M`` are cut away (a ceiling, and the
top of the walls), and the camera looks at the centre of what is left from above, at 60° elevation,
from the side of a long wall so that the room's long axis runs across the picture. The steep
elevation with the cut walls shows the floor plan and the furniture on it instead of the outside of a
wall; only a strip of floor behind the near wall (~1.2 m at this cut) is hidden. Large scans (a floor
of a building: more than ``TOP_DOWN_EXTENT_M`` across) are seen straight from above (top-down), where
nothing hides the rooms; a scan taller than ``ROOM_MAX_HEIGHT_M`` is not a room (a façade, several
storeys) and is drawn whole, from the same oblique angle. The projection matches Open3D's
``setup_camera`` (vertical field of view), so markers drawn on an Open3D render land on their objects.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CEILING_CUT_M = 2.0          # points higher than this above the floor are not drawn (indoor scans)
ROOM_MAX_HEIGHT_M = 6.0      # a taller scan is not one room (a façade, a tree, several storeys): nothing is cut
TOP_DOWN_EXTENT_M = 25.0     # beyond this horizontal extent a scan is a building: view it from above
ELEVATION_DEG = 60.0
FOV_DEG = 40.0


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: eye and target float [3] (metres), up float [3], vertical field of view in degrees."""

    eye: np.ndarray
    target: np.ndarray
    up: np.ndarray
    fov_deg: float

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, true up, forward) unit vectors, each float64 [3]."""
        forward = self.target - self.eye
        forward = forward / np.linalg.norm(forward)
        right = np.cross(forward, self.up)
        right = right / np.linalg.norm(right)
        return right, np.cross(right, forward), forward


def project(camera: Camera, xyz: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates float64 [N, 2] (u right, v down) and depth float64 [N] (along the view axis) of
    points xyz float [N, 3]; points behind the camera get depth <= 0."""
    right, up, forward = camera.basis()
    rel = np.asarray(xyz, dtype=np.float64) - camera.eye
    x, y, depth = rel @ right, rel @ up, rel @ forward
    focal = (height / 2) / np.tan(np.radians(camera.fov_deg) / 2)
    safe = np.where(depth > 1e-9, depth, 1e-9)
    uv = np.stack([width / 2 + focal * x / safe, height / 2 - focal * y / safe], axis=1)
    return uv, depth


def floor_height(xyz: np.ndarray) -> float:
    """A robust floor height: the 1st percentile of z (a few stray points below the floor do not count)."""
    return float(np.percentile(xyz[:, 2], 1.0))


def visible_mask(xyz: np.ndarray) -> np.ndarray:
    """bool [N]: the points drawn — the part below the ceiling cut of a room; all of a building-sized or
    taller-than-a-room scan."""
    xyz = np.asarray(xyz)
    extent = xyz[:, :2].max(0) - xyz[:, :2].min(0)
    if float(extent.max()) > TOP_DOWN_EXTENT_M:
        return np.ones(len(xyz), dtype=bool)
    floor = floor_height(xyz)
    if float(np.percentile(xyz[:, 2], 99.0)) - floor > ROOM_MAX_HEIGHT_M:
        return np.ones(len(xyz), dtype=bool)
    keep = xyz[:, 2] <= floor + CEILING_CUT_M
    return keep if keep.any() else np.ones(len(xyz), dtype=bool)


def room_camera(xyz: np.ndarray, width: int, height: int) -> Camera:
    """The camera of the module docstring for points xyz float [N, 3] (those drawn) and a picture of
    width x height pixels, at a distance where all the points fit in the picture."""
    xyz = np.asarray(xyz, dtype=np.float64)
    lo, hi = xyz.min(0), xyz.max(0)
    centre = (lo + hi) / 2
    extent = hi - lo
    if float(extent[:2].max()) > TOP_DOWN_EXTENT_M:
        direction, up = np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])
        if extent[1] > extent[0]:  # the long axis across the picture
            up = np.array([1.0, 0.0, 0.0])
    else:
        elevation = np.radians(ELEVATION_DEG)
        # look across the short horizontal axis; the long one runs left-right in the picture
        side = np.array([0.0, -1.0, 0.0]) if extent[0] >= extent[1] else np.array([1.0, 0.0, 0.0])
        direction = np.cos(elevation) * side + np.array([0.0, 0.0, np.sin(elevation)])
        up = np.array([0.0, 0.0, 1.0])
    # fit what is drawn (a fixed sample of the points), not the bounding box's empty corners
    step = max(len(xyz) // 4000, 1)
    corners = xyz[::step]
    # start at a distance from the bounding sphere, then tighten to the points' actual projection
    distance = float(np.linalg.norm(extent)) / 2 / np.tan(np.radians(FOV_DEG) / 2) * 1.05 + 1e-3
    for _ in range(8):
        camera = Camera(eye=centre + direction * distance, target=centre, up=up, fov_deg=FOV_DEG)
        uv, depth = project(camera, corners, width, height)
        spread = max(np.abs(uv[:, 0] - width / 2).max() / (width / 2),
                     np.abs(uv[:, 1] - height / 2).max() / (height / 2))
        if depth.min() <= 0 or not np.isfinite(spread):
            distance *= 1.5
            continue
        target_spread = 0.94
        if abs(spread - target_spread) < 0.02:
            break
        # a smaller spread lets the camera come closer; the scale is near-linear in 1 / distance
        distance *= spread / target_spread
    return Camera(eye=centre + direction * distance, target=centre, up=up, fov_deg=FOV_DEG)
