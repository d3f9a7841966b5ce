import numpy as np
import pytest

from pointformer.io.ply import read_ply
from pointformer.vis import color_instances, palette, render_png, write_instance_ply


def _scene(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.random((n, 3)).astype(np.float32) * [4, 3, 1]
    inst = (xyz[:, 0] // 1).astype(np.int64)  # instances 0..3 in x stripes; 0 = none
    return xyz, inst


def test_palette_distinct_and_instances_coloured():
    p = palette(40)
    assert len({tuple(c) for c in p}) == 40
    xyz, inst = _scene()
    colors = color_instances(inst)
    assert (colors[inst == 0] == [190, 190, 190]).all()
    assert len({tuple(c) for c in colors[inst > 0]}) == 3
    with pytest.raises(ValueError, match="vector"):
        color_instances(inst[:, None])


def test_instance_ply_round_trip(tmp_path):
    xyz, inst = _scene()
    colors = write_instance_ply(tmp_path / "pred.ply", xyz, inst)
    mesh = read_ply(tmp_path / "pred.ply")
    assert np.allclose(mesh.vertices, xyz) and (mesh.colors == colors).all()
    assert (mesh.extra["instance"] == inst).all()


def test_software_render_always_works(tmp_path):
    xyz, inst = _scene()
    backend = render_png(tmp_path / "a.png", xyz, color_instances(inst), backend="software", width=320, height=240)
    assert backend == "software"
    data = (tmp_path / "a.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    with pytest.raises(ValueError, match="backend"):
        render_png(tmp_path / "b.png", xyz, color_instances(inst), backend="vtk")


def test_auto_render_produces_a_png_with_some_backend(tmp_path):
    xyz, inst = _scene(500)
    used = render_png(tmp_path / "auto.png", xyz, color_instances(inst), width=160, height=120, timeout_s=60)
    assert used in ("open3d", "software") and (tmp_path / "auto.png").stat().st_size > 500
