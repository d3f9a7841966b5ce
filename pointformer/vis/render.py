"""Render coloured points / meshes to images: Open3D offscreen first, a software point splatter as fallback.

Open3D's offscreen renderer needs a working EGL/Vulkan stack (Mesa llvmpipe suffices) and can abort
the whole process when none is there, so it runs in a child process with a timeout; any failure falls
back to the software renderer (numpy: pinhole projection + z-buffer of square point splats), which
always works and is what the tests exercise deterministically. Both use the same camera
(:mod:`pointformer.vis.camera`) and draw colours unlit and unaltered (Open3D's post-processing, which
tone-maps colours, is off), so a colour in the scene is the same colour in the picture.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pointformer.io.atomic import atomic_write
from pointformer.vis.camera import Camera, project, room_camera, visible_mask

log = logging.getLogger(__name__)

BACKGROUND_RGB = (255, 255, 255)
BACKENDS = ("auto", "open3d", "software")

_OPEN3D_SCRIPT = r"""
import sys, numpy as np, open3d as o3d
data = np.load(sys.argv[1]); out = sys.argv[2]
w, h, n = int(data["size"][0]), int(data["size"][1]), int(data["count"])
r = o3d.visualization.rendering.OffscreenRenderer(w, h)
r.scene.set_background([1.0, 1.0, 1.0, 1.0])
r.scene.view.set_post_processing(False)  # no tone mapping: colours stay exactly as given
mat = o3d.visualization.rendering.MaterialRecord()
mat.shader = "defaultUnlit"; mat.point_size = float(data["point_size"])
cam = data["camera"]
images = []
for i in range(n):
    xyz, rgb = data[f"xyz{i}"].astype(np.float64), data[f"rgb{i}"].astype(np.float64) / 255.0
    r.scene.clear_geometry()
    if f"faces{i}" in data.files:
        g = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(xyz),
                                      o3d.utility.Vector3iVector(data[f"faces{i}"].astype(np.int32)))
        g.vertex_colors = o3d.utility.Vector3dVector(rgb)
    else:
        g = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz)); g.colors = o3d.utility.Vector3dVector(rgb)
    r.scene.add_geometry("scan", g, mat)
    # after the geometry: the near/far planes are fitted to what is in the scene
    r.setup_camera(float(cam[9]), cam[3:6].tolist(), cam[0:3].tolist(), cam[6:9].tolist())
    images.append(np.asarray(r.render_to_image())[:, :, :3])
np.save(out, np.stack(images))
"""


@dataclass(frozen=True)
class View:
    """One thing to draw: xyz float [V, 3], rgb uint8 [V, 3], faces int [F, 3] or None (points)."""

    xyz: np.ndarray
    rgb: np.ndarray
    faces: Optional[np.ndarray] = None


def subset_faces(faces: Optional[np.ndarray], keep: np.ndarray) -> Optional[np.ndarray]:
    """Faces int [F, 3] re-indexed to the kept vertices (bool [V]); faces touching a dropped vertex go."""
    if faces is None:
        return None
    new_index = np.cumsum(keep) - 1
    whole = keep[faces].all(axis=1)
    return new_index[faces[whole]].astype(np.int32)


def splat_points(view: View, camera: Camera, width: int, height: int, point_size: float) -> np.ndarray:
    """uint8 [height, width, 3]: every point a square of ``point_size`` pixels, the nearest point wins.

    Memory stays O(points + pixels) for any splat size: points sharing a pixel are first reduced to the
    nearest (it covers every pixel the others would), after which one offset of the square maps the
    survivors to distinct pixels, so a plain z-buffer update per offset is exact.
    """
    uv, depth = project(camera, view.xyz, width, height)
    half = max(int(round(point_size)), 1)
    offsets = np.arange(half) - (half - 1) // 2
    base = np.floor(uv).astype(np.int64)
    # points whose square can touch the picture, in front of the camera
    reach = ((depth > 0) & (base[:, 0] + offsets[-1] >= 0) & (base[:, 0] + offsets[0] < width)
             & (base[:, 1] + offsets[-1] >= 0) & (base[:, 1] + offsets[0] < height))
    point = np.flatnonzero(reach)
    base, depth = base[reach], depth[reach]
    key = (base[:, 1] + half) * (width + 2 * half) + (base[:, 0] + half)  # unique per base pixel, margin included
    order = np.lexsort((depth, key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = order[first]
    point, base, depth = point[keep], base[keep], depth[keep]
    z_buffer = np.full(height * width, np.inf)
    owner = np.full(height * width, -1, dtype=np.int64)
    for dx in offsets:
        for dy in offsets:
            x, y = base[:, 0] + dx, base[:, 1] + dy
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            pixel = y[inside] * width + x[inside]
            nearer = depth[inside] < z_buffer[pixel]
            z_buffer[pixel[nearer]] = depth[inside][nearer]
            owner[pixel[nearer]] = point[inside][nearer]
    image = np.empty((height * width, 3), dtype=np.uint8)
    image[:] = BACKGROUND_RGB
    drawn = owner >= 0
    image[drawn] = view.rgb[owner[drawn]]
    return image.reshape(height, width, 3)


def _render_open3d(views: Sequence[View], camera: Camera, width: int, height: int, point_size: float,
                   timeout_s: float) -> Optional[list[np.ndarray]]:
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {"size": np.array([width, height]), "count": np.array(len(views)),
                  "point_size": np.array(point_size),
                  "camera": np.concatenate([camera.eye, camera.target, camera.up, [camera.fov_deg]])}
        for i, view in enumerate(views):
            arrays[f"xyz{i}"], arrays[f"rgb{i}"] = view.xyz, view.rgb
            if view.faces is not None:
                arrays[f"faces{i}"] = view.faces
        np.savez(Path(tmp) / "scene.npz", **arrays)
        target = Path(tmp) / "images.npy"
        try:
            proc = subprocess.run([sys.executable, "-c", _OPEN3D_SCRIPT, str(Path(tmp) / "scene.npz"), str(target)],
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.info("open3d offscreen render timed out after %.0f s; using the software renderer", timeout_s)
            return None
        if proc.returncode != 0 or not target.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            log.info("open3d offscreen render unavailable (%s); using the software renderer", last[:200])
            return None
        images = np.load(target)
    if images.shape != (len(views), height, width, 3):
        log.info("open3d returned images of shape %s; using the software renderer", images.shape)
        return None
    return list(images.astype(np.uint8))


def open3d_importable() -> bool:
    """Whether open3d imports here (the render itself still runs in a child: it may abort without EGL)."""
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError):  # not installed, or a system library (libusb, libGL) is missing
        return False
    return True


def render_images(views: Sequence[View], camera: Camera, width: int, height: int, *, backend: str = "auto",
                  point_size: float = 3.0, timeout_s: float = 120.0) -> tuple[list[np.ndarray], str]:
    """Images uint8 [height, width, 3] of each view seen by ``camera``, and the backend that drew them.

    backend: "auto" (Open3D, else software), "open3d" (RuntimeError if it fails) or "software".
    """
    if backend not in BACKENDS:
        raise ValueError(f"render backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend in ("auto", "open3d"):
        images = _render_open3d(views, camera, width, height, point_size, timeout_s) if open3d_importable() else None
        if images is not None:
            return images, "open3d"
        if backend == "open3d":
            raise RuntimeError("open3d offscreen rendering failed (install open3d and an EGL/Vulkan driver, e.g. "
                               "mesa-vulkan-drivers) or use the software backend")
    return [splat_points(view, camera, width, height, point_size) for view in views], "software"


def subsample(num_points: int, max_points: int, seed: int = 0) -> Optional[np.ndarray]:
    """Sorted indices of at most ``max_points`` of ``num_points`` (a fixed seed keeps renders stable), or None
    when all fit. Memory is O(max_points), not O(num_points), so building-sized scans stay cheap."""
    if num_points <= max_points:
        return None
    return np.sort(np.random.default_rng(seed).choice(num_points, max_points, replace=False))


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an uint8 [H, W, 3] image as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return atomic_write(path, lambda f: plt.imsave(f, image, format="png"))


def render_png(path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray, *, faces: Optional[np.ndarray] = None,
               width: int = 1024, height: int = 768, backend: str = "auto", point_size: float = 3.0,
               timeout_s: float = 120.0, max_points: int = 400_000) -> str:
    """Write a PNG view of the scan (xyz float [V, 3], rgb uint8 [V, 3], faces int [F, 3] optional) seen by
    :func:`pointformer.vis.camera.room_camera`; returns the backend that drew it (see :func:`render_images`)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    rgb = np.asarray(rgb, dtype=np.uint8)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape or xyz.shape[0] == 0:
        raise ValueError(
            f"render_png({path}): need xyz [V, 3] and rgb [V, 3] with V > 0, got {xyz.shape} and {rgb.shape}"
        )
    xyz = (xyz - xyz.min(axis=0)).astype(np.float32)  # float32 near the origin keeps georeferenced scans exact
    view = prepare_view(xyz, rgb, faces, max_points)
    camera = room_camera(view.xyz, width, height)
    (image,), used = render_images([view], camera, width, height, backend=backend, point_size=point_size,
                                   timeout_s=timeout_s)
    write_png(path, image)
    return used


def prepare_view(xyz: np.ndarray, rgb: np.ndarray, faces: Optional[np.ndarray], max_points: int,
                 keep: Optional[np.ndarray] = None) -> View:
    """The drawn part of a scan: ``keep`` (bool [V], default :func:`visible_mask`), then at most
    ``max_points`` of it (faces are dropped when points are subsampled: they would reference missing ones)."""
    keep = visible_mask(xyz) if keep is None else keep
    xyz, rgb, faces = xyz[keep], rgb[keep], subset_faces(faces, keep)
    chosen = subsample(len(xyz), max_points)
    if chosen is not None:
        xyz, rgb, faces = xyz[chosen], rgb[chosen], None
    return View(xyz=np.ascontiguousarray(xyz, dtype=np.float32), rgb=np.ascontiguousarray(rgb, dtype=np.uint8),
                faces=faces)
