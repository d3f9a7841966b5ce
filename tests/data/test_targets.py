import numpy as np
import pytest

from pointformer.data.targets import point_labels, superpoint_targets

THINGS = list(range(2, 20))


def test_point_labels_ignore_void_background_stuff_and_instance_for_things():
    semantic = np.array([-1, 0, 1, 5, 5, 7], dtype=np.int16)
    instance = np.array([0, 1, 2, 3, 0, 9], dtype=np.int32)
    # void -> -1; wall/floor -> 0; thing with instance -> id; thing without instance -> ignore
    assert point_labels(semantic, instance, THINGS).tolist() == [-1, 0, 0, 3, -1, 9]


def test_superpoint_takes_majority_instance_and_instances_are_renumbered():
    # sp0: 3 pts of inst 7 + 1 of inst 4 -> inst 7; sp1: background; sp2: 2 void + 1 inst 4 -> ignore
    superpoint = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    semantic = np.array([5, 5, 5, 3, 1, 1, -1, -1, 3], dtype=np.int16)
    instance = np.array([7, 7, 7, 4, 1, 1, 0, 0, 4], dtype=np.int32)
    t = superpoint_targets(superpoint, semantic, instance, thing_classes=THINGS)
    # instance 4 wins no superpoint and disappears; instance 7 becomes 1
    assert t.token_instance.tolist() == [1, 0, -1]
    assert t.token_weight.tolist() == [4.0, 2.0, 3.0]
    assert t.instance_class.tolist() == [5 - 2]
    assert t.instance_points.tolist() == [3]


def test_tie_prefers_ignore_over_background_over_instance():
    superpoint = np.array([0, 0, 1, 1])
    semantic = np.array([-1, 4, 0, 4], dtype=np.int16)
    instance = np.array([0, 2, 5, 2], dtype=np.int32)
    t = superpoint_targets(superpoint, semantic, instance, thing_classes=THINGS)
    assert t.token_instance.tolist() == [-1, 0]
    assert t.num_instances == 0


def test_empty_superpoints_are_ignored_and_bad_ids_rejected():
    superpoint = np.array([0, 0, 2])
    semantic = np.array([3, 3, 1], dtype=np.int16)
    instance = np.array([1, 1, 0], dtype=np.int32)
    t = superpoint_targets(superpoint, semantic, instance, thing_classes=THINGS, num_superpoints=4)
    assert t.token_instance.tolist() == [1, -1, 0, -1]
    assert t.token_weight.tolist() == [2, 0, 1, 0]
    with pytest.raises(ValueError, match="superpoint ids"):
        superpoint_targets(superpoint, semantic, instance, thing_classes=THINGS, num_superpoints=2)


def test_vectorised_vote_matches_a_loop_on_random_scenes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = 300
        superpoint = rng.integers(0, 25, v)
        semantic = rng.integers(-1, 20, v).astype(np.int16)
        instance = rng.integers(0, 6, v).astype(np.int32)
        t = superpoint_targets(superpoint, semantic, instance, thing_classes=THINGS, num_superpoints=25)
        labels = point_labels(semantic, instance, THINGS)
        kept = sorted({int(x) for x in t.token_instance if x > 0})
        assert kept == list(range(1, len(kept) + 1))
        for sp in range(25):
            members = labels[superpoint == sp]
            if members.size == 0:
                assert t.token_instance[sp] == -1
                continue
            values, counts = np.unique(members, return_counts=True)
            best = values[counts == counts.max()].min()
            got = t.token_instance[sp]
            assert (got > 0) == (best > 0) and (got == best if best <= 0 else True)
