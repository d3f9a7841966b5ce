import numpy as np

from pointformer.vis.camera import CEILING_CUT_M, floor_height, project, room_camera, visible_mask


def _room(rng, size=(6.0, 4.0), height=2.8, n=20000):
    return np.c_[rng.uniform(0, size[0], n), rng.uniform(0, size[1], n), rng.uniform(0, height, n)]


def test_room_camera_looks_down_into_the_room_and_frames_it():
    rng = np.random.default_rng(0)
    xyz = _room(rng)
    keep = visible_mask(xyz)
    assert xyz[keep, 2].max() <= floor_height(xyz) + CEILING_CUT_M and not keep.all()  # the ceiling is cut
    camera = room_camera(xyz[keep], 400, 300)
    centre = (xyz[keep].min(0) + xyz[keep].max(0)) / 2
    # from above (60 degrees), from the side of the long (x) wall, outside the room horizontally
    direction = (camera.eye - centre) / np.linalg.norm(camera.eye - centre)
    assert np.degrees(np.arcsin(direction[2])) > 55 and abs(direction[0]) < 1e-6 and direction[1] < 0
    uv, depth = project(camera, xyz[keep], 400, 300)
    assert (depth > 0).all()
    assert uv[:, 0].min() >= 0 and uv[:, 0].max() < 400 and uv[:, 1].min() >= 0 and uv[:, 1].max() < 300
    assert uv[:, 0].max() - uv[:, 0].min() > 0.8 * 400  # it fills the picture


def test_buildings_are_seen_from_above_with_nothing_cut():
    rng = np.random.default_rng(1)
    xyz = _room(rng, size=(30.0, 60.0), height=3.0)
    assert visible_mask(xyz).all()
    camera = room_camera(xyz, 400, 300)
    forward = camera.basis()[2]
    assert np.allclose(forward, [0, 0, -1])
    uv, _ = project(camera, xyz, 400, 300)
    assert uv[:, 0].max() - uv[:, 0].min() > uv[:, 1].max() - uv[:, 1].min()  # the long axis across


def test_projection_is_a_pinhole_with_vertical_field_of_view():
    from pointformer.vis.camera import Camera

    camera = Camera(eye=np.array([0.0, 0, 2]), target=np.zeros(3), up=np.array([0.0, 1, 0]), fov_deg=90.0)
    uv, depth = project(camera, np.array([[0.0, 0, 0], [2.0, 0, 0], [0, 2.0, 0]]), 200, 100)
    # focal = (100 / 2) / tan(45 deg) = 50 px; x right, y up (v down)
    assert np.allclose(uv, [[100, 50], [150, 50], [100, 0]]) and np.allclose(depth, 2)


def test_a_scan_taller_than_a_room_is_drawn_whole():
    rng = np.random.default_rng(2)
    facade = _room(rng, size=(12.0, 1.0), height=15.0)
    assert visible_mask(facade).all()
