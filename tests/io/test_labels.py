"""The dataset class sets: ScanNet200 sizes, uniqueness, stuff classes and the head/common/tail split."""
from __future__ import annotations

from pointformer.io.labels import (
    SCANNET200_COMMON_NAMES,
    SCANNET200_HEAD_NAMES,
    SCANNET200_IDS,
    SCANNET200_INSTANCE_IDS,
    SCANNET200_INSTANCE_NAMES,
    SCANNET200_NAMES,
    SCANNET200_STUFF_IDS,
    SCANNET200_TAIL_NAMES,
)


def test_scannet200_sizes_and_uniqueness() -> None:
    assert len(SCANNET200_IDS) == len(set(SCANNET200_IDS)) == 200
    assert len(SCANNET200_NAMES) == len(set(SCANNET200_NAMES)) == 200
    assert len(SCANNET200_INSTANCE_IDS) == len(SCANNET200_INSTANCE_NAMES) == 198
    assert all(i > 0 for i in SCANNET200_IDS)


def test_scannet200_stuff_is_wall_and_floor() -> None:
    names = dict(zip(SCANNET200_IDS, SCANNET200_NAMES))
    assert SCANNET200_STUFF_IDS == (1, 3)
    assert names[1] == "wall" and names[3] == "floor"
    assert not set(SCANNET200_STUFF_IDS) & set(SCANNET200_INSTANCE_IDS)
    assert "wall" not in SCANNET200_INSTANCE_NAMES and "floor" not in SCANNET200_INSTANCE_NAMES


def test_scannet200_instance_set_keeps_the_benchmark_order() -> None:
    pairs = [(i, n) for i, n in zip(SCANNET200_IDS, SCANNET200_NAMES) if i not in SCANNET200_STUFF_IDS]
    assert list(zip(SCANNET200_INSTANCE_IDS, SCANNET200_INSTANCE_NAMES)) == pairs
    assert SCANNET200_IDS[:3] == (1, 2, 3) and SCANNET200_NAMES[:3] == ("wall", "chair", "floor")
    assert SCANNET200_IDS[-1] == 1191 and SCANNET200_NAMES[-1] == "mattress"


def test_scannet200_head_common_tail_partition_all_names() -> None:
    head, common, tail = set(SCANNET200_HEAD_NAMES), set(SCANNET200_COMMON_NAMES), set(SCANNET200_TAIL_NAMES)
    assert (len(SCANNET200_HEAD_NAMES), len(SCANNET200_COMMON_NAMES), len(SCANNET200_TAIL_NAMES)) == (66, 68, 66)
    assert len(head) == 66 and len(common) == 68 and len(tail) == 66
    assert not head & common and not head & tail and not common & tail
    assert head | common | tail == set(SCANNET200_NAMES)
    # wall and floor are head categories; the instance benchmark's head therefore has 64 classes.
    assert {"wall", "floor"} <= head
    assert len(head & set(SCANNET200_INSTANCE_NAMES)) == 64
