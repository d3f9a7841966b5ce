"""Interactive Open3D window for a scan coloured by instance (needs a display)."""
from __future__ import annotations

from typing import Optional

import numpy as np


def show_instances(xyz: np.ndarray, rgb: np.ndarray, *, faces: Optional[np.ndarray] = None,
                   title: str = "pointformer") -> None:
    """Open a viewer window (xyz float [V, 3], rgb uint8 [V, 3], optional faces int [F, 3])."""
    try:
        import open3d as o3d
    except ImportError as exc:
        raise RuntimeError("the viewer needs open3d: pip install 'pointformer[vis]'") from exc
    colors = o3d.utility.Vector3dVector(np.asarray(rgb, dtype=np.float64) / 255.0)
    if faces is not None:
        geometry = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)),
                                             o3d.utility.Vector3iVector(np.asarray(faces, dtype=np.int32)))
        geometry.vertex_colors = colors
        geometry.compute_vertex_normals()
    else:
        geometry = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)))
        geometry.colors = colors
    o3d.visualization.draw_geometries([geometry], window_name=title)
