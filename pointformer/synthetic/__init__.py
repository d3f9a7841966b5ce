"""Synthetic scenes written in real raw dataset formats, for tests, demos and benchmarks.

``scannet.generate_scannet`` writes a ScanNet v2-style release (rooms of six types with the 18
benchmark classes) and returns its per-vertex ground truth; ``rooms`` plans room layouts,
``furniture`` describes object shapes, ``meshes`` triangulates primitives; ``cli`` is ``pointformer
synth``.
"""
