"""Render a coloured point cloud / mesh to a PNG: Open3D offscreen first, matplotlib as fallback.

Open3D's offscreen renderer needs a working EGL/Vulkan stack (Mesa llvmpipe suffices) and can abort
the whole process when none is there, so it runs in a child process with a timeout; any failure
falls back to a matplotlib scatter render, which always works. The backend used is returned.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)

_OPEN3D_SCRIPT = r"""
import sys, numpy as np, open3d as o3d
data = np.load(sys.argv[1]); out = sys.argv[2]; w, h = int(sys.argv[3]), int(sys.argv[4])
xyz, rgb = data["xyz"].astype(np.float64), data["rgb"].astype(np.float64) / 255.0
r = o3d.visualization.rendering.OffscreenRenderer(w, h)
r.scene.set_background([1.0, 1.0, 1.0, 1.0])
mat = o3d.visualization.rendering.MaterialRecord()
mat.shader = "defaultUnlit"; mat.point_size = float(sys.argv[5])
if "faces" in data.files:
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(xyz),
                                     o3d.utility.Vector3iVector(data["faces"].astype(np.int32)))
    mesh.vertex_colors = o3d.utility.Vector3dVector(rgb)
    r.scene.add_geometry("scan", mesh, mat)
else:
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz)); pc.colors = o3d.utility.Vector3dVector(rgb)
    r.scene.add_geometry("scan", pc, mat)
lo, hi = xyz.min(0), xyz.max(0); c = (lo + hi) / 2; ext = float(np.linalg.norm(hi - lo))
eye = c + np.array([-0.55, -0.75, 0.85]) * ext
r.setup_camera(50.0, c.tolist(), eye.tolist(), [0.0, 0.0, 1.0])
o3d.io.write_image(out, r.render_to_image())
"""


def _render_open3d(path: Path, xyz: np.ndarray, rgb: np.ndarray, faces: Optional[np.ndarray], width: int, height: int,
                   point_size: float, timeout_s: float) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {"xyz": xyz, "rgb": rgb}
        if faces is not None:
            arrays["faces"] = faces
        np.savez(Path(tmp) / "scene.npz", **arrays)
        target = Path(tmp) / "render.png"
        try:
            proc = subprocess.run([sys.executable, "-c", _OPEN3D_SCRIPT, str(Path(tmp) / "scene.npz"), str(target),
                                   str(width), str(height), str(point_size)],
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.info("open3d offscreen render timed out after %.0f s; using matplotlib", timeout_s)
            return False
        if proc.returncode != 0 or not target.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            log.info("open3d offscreen render unavailable (%s); using matplotlib", last[:200])
            return False
        os.replace(target, path)
        return True


def _render_matplotlib(path: Path, xyz: np.ndarray, rgb: np.ndarray, width: int, height: int, max_points: int) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if xyz.shape[0] > max_points:  # a subsample keeps the render fast; fixed seed keeps it stable
        keep = np.random.default_rng(0).choice(xyz.shape[0], max_points, replace=False)
        xyz, rgb = xyz[keep], rgb[keep]
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_subplot(projection="3d")
    ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=rgb / 255.0, s=1.5, linewidths=0, depthshade=False)
    lo, hi = xyz.min(0), xyz.max(0)
    ax.set_box_aspect(np.maximum(hi - lo, 1e-3))
    ax.view_init(elev=35, azim=-125)
    ax.set_axis_off()
    fig.tight_layout(pad=0)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def render_png(path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray, *, faces: Optional[np.ndarray] = None,
               width: int = 1024, height: int = 768, backend: str = "auto", point_size: float = 3.0,
               timeout_s: float = 120.0, max_points: int = 60000) -> str:
    """Write a PNG view of the scan (xyz float [V, 3], rgb uint8 [V, 3], faces int [F, 3] optional).

    backend: "auto" (Open3D, else matplotlib), "open3d" (no fallback: RuntimeError if it fails) or
    "matplotlib". Returns the backend that produced the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xyz = np.asarray(xyz, dtype=np.float32)
    rgb = np.asarray(rgb, dtype=np.uint8)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape or xyz.shape[0] == 0:
        raise ValueError(
            f"render_png({path}): need xyz [V, 3] and rgb [V, 3] with V > 0, got {xyz.shape} and {rgb.shape}"
        )
    if backend not in ("auto", "open3d", "matplotlib"):
        raise ValueError(f"render_png: backend must be auto, open3d or matplotlib, got {backend!r}")
    if backend in ("auto", "open3d"):
        try:
            import open3d  # noqa: F401  (only to know whether to try; the render itself runs in a child)
            available = True
        except (ImportError, OSError):  # not installed, or a system library (libusb, libGL) is missing
            available = False
        if available and _render_open3d(path, xyz, rgb, faces, width, height, point_size, timeout_s):
            return "open3d"
        if backend == "open3d":
            raise RuntimeError("open3d offscreen rendering failed (install open3d and an EGL/Vulkan driver, e.g. "
                               "mesa-vulkan-drivers) or use backend='matplotlib'")
    _render_matplotlib(path, xyz, rgb, width, height, max_points)
    return "matplotlib"
