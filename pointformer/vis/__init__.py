"""Visualisation: instance colours, coloured PLY, renders (Open3D offscreen, software fallback), viewer, and
``pointformer show`` (GT and prediction side by side in matched colours).

The names below are imported on first use (PEP 562): the 2D branch's overlays use ``colors`` alone and
must not load the PLY writer with it.
"""
from pointformer.lazy import lazy_exports

_EXPORTS = {
    "color_instances": "colors", "palette": "colors", "InstanceMatch": "matching", "match_instances": "matching",
    "write_instance_ply": "ply", "render_png": "render", "ShowScene": "show", "colour_scene": "show",
    "render_show": "show",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
