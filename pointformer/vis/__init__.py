"""Visualisation: instance colours, coloured PLY, renders (Open3D offscreen, software fallback), viewer, and
``pointformer show`` (GT and prediction side by side in matched colours)."""
from pointformer.vis.colors import color_instances, palette
from pointformer.vis.matching import InstanceMatch, match_instances
from pointformer.vis.ply import write_instance_ply
from pointformer.vis.render import render_png
from pointformer.vis.show import ShowScene, colour_scene, render_show

__all__ = ["InstanceMatch", "ShowScene", "color_instances", "colour_scene", "match_instances", "palette", "render_png",
           "render_show", "write_instance_ply"]
