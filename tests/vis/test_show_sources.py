import numpy as np
import pytest

from pointformer.io.gt import write_gt_file
from pointformer.vis.sources import load_ground_truth, restrict_classes


def test_instance_npy_with_class_npy(tmp_path):
    ids = np.array([-1, 4, 4, 4, 9, 9, -1, 2])
    classes = np.array([-1, 5, 5, 7, 3, 3, -1, 8])  # instance 4: two votes for 5, one for 7
    np.save(tmp_path / "gt.npy", ids)
    np.save(tmp_path / "cls.npy", classes)
    gt = load_ground_truth(tmp_path / "gt.npy", 8, class_path=tmp_path / "cls.npy")
    # contiguous ids in order of the original values (2, 4, 9), -1 kept
    assert gt.ids.tolist() == [-1, 1, 1, 1, 2, 2, -1, 0] and gt.classes.tolist() == [8, 5, 3]
    no_classes = load_ground_truth(tmp_path / "gt.npy", 8)
    assert no_classes.classes.tolist() == [-1, -1, -1]


def test_scannet_txt_and_class_restriction(tmp_path):
    labels = np.array([0, 5001, 5001, 7002, 2003, 2003])  # chair, table, floor
    write_gt_file(tmp_path / "scene.txt", labels)
    gt = load_ground_truth(tmp_path / "scene.txt", 6)
    assert gt.ids.tolist() == [-1, 1, 1, 2, 0, 0] and gt.classes.tolist() == [2, 5, 7]
    things = restrict_classes(gt, {5, 7})
    assert things.ids.tolist() == [-1, 0, 0, 1, -1, -1] and things.classes.tolist() == [5, 7]
    assert restrict_classes(gt, None) is gt


def test_bad_ground_truth_names_the_file(tmp_path):
    write_gt_file(tmp_path / "scene.txt", np.array([0, 5001]))
    with pytest.raises(ValueError, match="scene.txt: 2 GT lines but the scene has 3 points"):
        load_ground_truth(tmp_path / "scene.txt", 3)
    np.save(tmp_path / "f.npy", np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="f.npy: GT instance ids must be integers \\[2\\]"):
        load_ground_truth(tmp_path / "f.npy", 2)
    with pytest.raises(ValueError, match="gt.las: unsupported GT file"):
        load_ground_truth(tmp_path / "gt.las", 2)
    np.savez(tmp_path / "plain.npz", xyz=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="plain.npz: not a preprocessed scene"):
        load_ground_truth(tmp_path / "plain.npz", 2)
