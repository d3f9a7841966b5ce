"""Visualisation: instance colours, coloured PLY, PNG rendering (Open3D offscreen, matplotlib fallback), viewer."""
from pointformer.vis.colors import color_instances, palette
from pointformer.vis.ply import write_instance_ply
from pointformer.vis.render import render_png

__all__ = ["color_instances", "palette", "render_png", "write_instance_ply"]
