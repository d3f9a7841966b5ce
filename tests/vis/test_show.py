import matplotlib.image as mpimg
import numpy as np
import pytest

from pointformer.io.ply import read_ply
from pointformer.vis.show import ShowScene, colour_scene, render_show, show_window

from .show_scenes import synthetic_room


def _png(path):
    image = mpimg.imread(path)
    return np.round(image[:, :, :3] * 255).astype(np.uint8)


def _count(image, box, rgb, tolerance=0):
    left, top, right, bottom = box
    region = image[top:bottom, left:right].astype(int)
    return int((np.abs(region - np.asarray(rgb, dtype=int)).max(axis=2) <= tolerance).sum())


def _check_show_png(result, tolerance):
    image = _png(result.png)
    assert image.shape[:2] == result.layout.size[::-1]
    non_white = (image != 255).any(axis=2)
    assert non_white.mean() > 0.05 and image.std() > 20  # not blank
    gt_box, pred_box = result.layout.panels
    for left, top, right, bottom in (gt_box, pred_box):  # both panels drawn
        assert non_white[top:bottom, left:right].mean() > 0.05
    colours = result.colours
    matched = colours.gt_colors[0]       # the table: matched, one colour on both sides
    missed = colours.gt_colors[1]        # the chair: only on the GT side
    false_pos = colours.pred_colors[1]   # box C: only on the prediction side
    assert (colours.pred_colors[0] == matched).all()
    assert _count(image, gt_box, matched, tolerance) > 200 and _count(image, pred_box, matched, tolerance) > 200
    assert _count(image, gt_box, missed, tolerance) > 50 and _count(image, pred_box, missed, tolerance) == 0
    assert _count(image, pred_box, false_pos, tolerance) > 50 and _count(image, gt_box, false_pos, tolerance) == 0
    # the legend below the panels shows the swatches of all three objects
    for rgb in (matched, missed, false_pos):
        assert _count(image, result.layout.legend, rgb, tolerance) > 10
    return image


def test_show_png_software_has_two_panels_a_legend_and_matched_colours(tmp_path):
    scene = synthetic_room()
    result = render_show(scene, tmp_path / "show.png", pred_ply=tmp_path / "s.pred.ply", gt_ply=tmp_path / "s.gt.ply",
                         width=360, height=270, backend="software")
    assert result.backend == "software"
    _check_show_png(result, tolerance=0)
    assert result.colours.titles == ["ground truth: 2 objects, 1 missed (FN)", "prediction: 2 instances, TP 1, FP 1"]
    texts = [e.text for e in result.colours.legend]
    assert texts[0].startswith("table (IoU 0.9") and texts[1] == "chair: missed" and texts[2] == "FP: chair (0.60)"
    # the coloured PLYs carry the same colours and the ids
    pred = read_ply(tmp_path / "s.pred.ply")
    gt = read_ply(tmp_path / "s.gt.ply")
    assert (pred.colors == result.colours.pred_rgb).all() and (gt.colors == result.colours.gt_rgb).all()
    assert (pred.extra["instance"] == scene.pred_ids).all() and (gt.extra["instance"] == scene.gt_ids).all()
    matched_gt = pred.extra["matched_gt"]
    assert set(matched_gt[scene.pred_ids == 0].tolist()) == {0}
    assert set(matched_gt[scene.pred_ids == 1].tolist()) == {-1}


def test_show_png_with_the_automatic_backend(tmp_path):
    """Open3D offscreen where EGL/Vulkan works, the software renderer elsewhere: the same picture either way."""
    result = render_show(synthetic_room(), tmp_path / "auto.png", width=320, height=240, timeout_s=45)
    assert result.backend in ("open3d", "software")
    _check_show_png(result, tolerance=2)


def test_hatching_and_background_colours():
    scene = synthetic_room()
    colours = colour_scene(scene)
    chair = scene.gt_ids == 1
    hatch = (colours.gt_rgb[chair] == [25, 25, 25]).all(axis=1)
    assert 0.2 < hatch.mean() < 0.8  # stripes: part of the missed object, not all of it
    table = scene.pred_ids == 0
    assert (colours.pred_rgb[table] == colours.gt_colors[0]).all()  # a match is not hatched
    nothing = (scene.pred_ids < 0) & (scene.gt_ids < 0)
    assert (colours.pred_rgb[nothing] == colours.gt_rgb[nothing]).all()  # the rest: the same faded scan colours


def test_wrong_class_keeps_the_objects_colour_and_says_so():
    scene = synthetic_room()
    scene.pred_classes = np.array([5, 5])  # the table predicted as a chair
    colours = colour_scene(scene)
    assert (colours.pred_colors[0] == colours.gt_colors[0]).all()
    assert colours.legend[0].text == "table: predicted as chair"
    assert "TP 0" in colours.titles[1] and "wrong class 1" in colours.titles[1]
    assert ("pred", 0, "as chair") in colours.markers


def test_without_ground_truth_one_panel(tmp_path):
    scene = synthetic_room()
    scene.gt_ids, scene.gt_classes = None, None
    result = render_show(scene, tmp_path / "pred_only.png", width=240, height=180, backend="software")
    assert len(result.layout.panels) == 1 and result.colours.match is None
    image = _png(result.png)
    assert _count(image, result.layout.panels[0], result.colours.pred_colors[0]) > 100


def test_inconsistent_inputs_are_named():
    scene = synthetic_room()
    bad = ShowScene(xyz=scene.xyz, pred_ids=scene.pred_ids[:-5], pred_classes=scene.pred_classes,
                    pred_scores=scene.pred_scores, class_names={}, name="kitchen")
    with pytest.raises(ValueError, match="kitchen.*predictions have"):
        colour_scene(bad)
    bad = ShowScene(xyz=scene.xyz, pred_ids=scene.pred_ids, pred_classes=scene.pred_classes[:1],
                    pred_scores=scene.pred_scores[:1], class_names={}, name="kitchen")
    with pytest.raises(ValueError, match="prediction ids reach 1"):
        colour_scene(bad)


def test_georeferenced_coordinates_render_like_local_ones(tmp_path):
    """UTM-sized coordinates (float64, ~10^6 m) must not round to decimetres in the float32 renderers."""
    local = synthetic_room()
    far = synthetic_room()
    far.xyz = local.xyz.astype(np.float64) + [500_000.0, 4_000_000.0, 120.0]
    far.double = True
    a = render_show(local, tmp_path / "local.png", width=240, height=180, backend="software")
    b = render_show(far, tmp_path / "far.png", pred_ply=tmp_path / "far.ply", width=240, height=180,
                    backend="software")
    assert (_png(a.png) == _png(b.png)).all()
    from pointformer.io.clouds import read_cloud

    assert np.abs(read_cloud(tmp_path / "far.ply").xyz - far.xyz).max() < 1e-6  # float64 in the PLY


def test_window_shows_ground_truth_left_of_the_prediction(monkeypatch):
    import pointformer.vis.viewer as viewer

    shown = {}
    monkeypatch.setattr(viewer, "show_instances", lambda xyz, rgb, **kw: shown.update(xyz=xyz, rgb=rgb, **kw))
    scene = synthetic_room()
    colours = colour_scene(scene)
    show_window(scene, colours, title="t")
    half = len(shown["xyz"]) // 2
    left, right = shown["xyz"][:half], shown["xyz"][half:]
    assert left[:, 0].max() < right[:, 0].min()  # side by side, not overlapping
    assert np.allclose(right - left, right[0] - left[0])  # the same scene, shifted
    keep = scene.xyz[:, 2] <= np.percentile(scene.xyz[:, 2], 1) + 2.0  # the ceiling is cut in the window too
    assert half == keep.sum() < len(scene.xyz)
    assert (shown["rgb"][:half] == colours.gt_rgb[keep]).all() and (shown["rgb"][half:] == colours.pred_rgb[keep]).all()


def test_a_shortened_legend_keeps_the_problems():
    from pointformer.vis.show import LegendEntry, shorten_legend

    legend = [LegendEntry((0, 0, 0), f"ok {i}") for i in range(50)]
    legend[30] = LegendEntry((0, 0, 0), "chair: missed", hatched=True, problem=True)
    legend.append(LegendEntry((0, 0, 0), "FP: table (0.30)", hatched=True, problem=True))
    short = shorten_legend(legend, 10)
    assert len(short) == 10 and [e.text for e in short[-2:]] == ["chair: missed", "FP: table (0.30)"]
    assert [e.text for e in short[:8]] == [f"ok {i}" for i in range(8)]
    assert shorten_legend(legend[:5], 10) == legend[:5]
