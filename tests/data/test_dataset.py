import json

import numpy as np
import pytest
import torch

from pointformer.data import (DatasetConfigError, PreprocessedDataset, ResumableBatchSampler, ShardedEvalSampler,
                              build_transforms, collate_scenes, compute_color_stats)
from pointformer.data.toy import write_toy_split
from pointformer.data.transforms import NeighbourPlacement, build_neighbours
from pointformer.io.scene import SceneFormatError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    write_toy_split(root, "train", num_scenes=5, seed=1, num_points=800)
    write_toy_split(root, "val", num_scenes=2, seed=2, num_points=800)
    return root


def test_items_are_deterministic_per_epoch_and_index(root):
    ds = PreprocessedDataset(root, "train", transform=build_transforms(train=True), seed=7)
    a, b, c = ds[(3, 1)], ds[(3, 1)], ds[(4, 1)]
    assert np.array_equal(a.xyz, b.xyz) and np.array_equal(a.features, b.features)
    assert not np.allclose(a.xyz, c.xyz)
    # another seed, another augmentation; labels never change
    other = PreprocessedDataset(root, "train", transform=build_transforms(train=True), seed=8)[(3, 1)]
    assert not np.allclose(a.xyz, other.xyz)
    assert np.array_equal(a.targets.token_instance, other.targets.token_instance)
    assert a.features.shape == (a.num_points, 3) and a.targets.num_instances == 4


def test_neighbour_pairs_put_a_second_room_beside_the_first(root):
    single = PreprocessedDataset(root, "train", seed=3)
    paired = PreprocessedDataset(root, "train", seed=3, neighbours=NeighbourPlacement(probability=1.0, gap=[0.5, 1.0]))
    for key in [(0, 0), (1, 2), (2, 4)]:
        one, two = single[key], paired[key]
        other = single.scene_ids.index(two.meta["neighbour"])
        second = single[other]
        assert other != key[1] and two.scene_id == one.scene_id
        v = one.num_points
        assert two.num_points == v + second.num_points
        np.testing.assert_array_equal(two.xyz[:v], one.xyz)  # the first room stays where it was
        moved = two.xyz[v:] - second.xyz  # the second one is translated as a whole, floors level
        assert np.allclose(moved, moved[0], atol=1e-4) and abs(moved[0, 2] - (one.xyz[:, 2].min()
                                                                             - second.xyz[:, 2].min())) < 1e-4
        # apart by a gap in [0.5, 1.0] m along x or y: boxes never overlap
        low1, high1, low2, high2 = one.xyz.min(0), one.xyz.max(0), two.xyz[v:].min(0), two.xyz[v:].max(0)
        gaps = [max(low2[a] - high1[a], low1[a] - high2[a]) for a in (0, 1)]
        assert 0.5 - 1e-4 <= max(gaps) <= 1.0 + 1e-4
        # every instance and superpoint of both rooms, with their own ids
        assert two.targets.num_instances == one.targets.num_instances + second.targets.num_instances
        assert two.num_superpoints == one.num_superpoints + second.num_superpoints
        np.testing.assert_array_equal(two.targets.instance_class, np.concatenate(
            [one.targets.instance_class, second.targets.instance_class]))
        gt = two.gt_ids
        assert len(np.unique(gt)) == len(np.unique(one.gt_ids)) + len(np.unique(second.gt_ids)) - len(
            set(one.gt_ids[one.gt_ids % 1000 == 0]) & set(second.gt_ids[second.gt_ids % 1000 == 0]))
    assert single.neighbours is None and "neighbour" not in single[(0, 1)].meta  # off by default
    never = PreprocessedDataset(root, "train", seed=3, neighbours=NeighbourPlacement(probability=0.0))
    np.testing.assert_array_equal(never[(0, 1)].xyz, single[(0, 1)].xyz)
    with pytest.raises(ValueError, match="unknown option"):
        build_neighbours({"probabilty": 0.5})
    with pytest.raises(ValueError, match="gap must be"):
        NeighbourPlacement(gap=[2.0, 1.0])


def test_features_channels_and_thing_class_ids(root):
    ds = PreprocessedDataset(root, "val", features=("rgb", "normals"))
    assert ds[0].features.shape[1] == 6 and ds.num_features == 6
    assert ds.thing_class_ids[0] == 3 and len(ds.thing_class_ids) == 18
    assert ds[0].gt_ids is not None


def test_collate_offsets_and_global_superpoints(root):
    ds = PreprocessedDataset(root, "train")
    samples = [ds[0], ds[2], ds[4]]
    batch = collate_scenes(samples)
    assert batch.point_offsets.tolist() == [0, *np.cumsum([s.num_points for s in samples]).tolist()]
    for b, s in enumerate(samples):
        lo, hi = batch.point_offsets[b], batch.point_offsets[b + 1]
        sp = batch.superpoint[lo:hi]
        assert sp.min() >= batch.token_offsets[b] and sp.max() < batch.token_offsets[b + 1]
        assert (batch.batch_index[lo:hi] == b).all()
        assert torch.equal(batch.targets[b].token_instance, torch.from_numpy(s.targets.token_instance))
    assert batch.to("cpu").scene_ids == batch.scene_ids
    with pytest.raises(ValueError, match="empty"):
        collate_scenes([])


def test_manifest_checks_give_clear_errors(root, tmp_path):
    with pytest.raises(DatasetConfigError, match="does not exist.*preprocess"):
        PreprocessedDataset(tmp_path / "nope", "train")
    with pytest.raises(DatasetConfigError, match="splits found: \\['train', 'val'\\]"):
        PreprocessedDataset(root, "test")
    with pytest.raises(DatasetConfigError, match="expects 's3dis'"):
        PreprocessedDataset(root, "train", expected_dataset="s3dis")
    with pytest.raises(DatasetConfigError, match="data.features"):
        PreprocessedDataset(root, "train", features=("depth",))
    # a manifest listing a missing file
    broken = tmp_path / "broken"
    write_toy_split(broken, "train", num_scenes=2, seed=3, num_points=300)
    manifest = json.loads((broken / "train" / "manifest.json").read_text())
    first = next(iter(manifest["scenes"]))
    (broken / "train" / manifest["scenes"][first]["file"]).unlink()
    with pytest.raises(DatasetConfigError, match="missing"):
        PreprocessedDataset(broken, "train")
    # a corrupt scene file names the file when loaded
    second = list(manifest["scenes"])[1]
    (broken / "train" / manifest["scenes"][second]["file"]).write_bytes(b"garbage")
    ds = PreprocessedDataset(broken, "train", scenes=[second])
    with pytest.raises(SceneFormatError, match=second):
        ds[0]


def test_color_stats(root):
    mean, std = compute_color_stats(PreprocessedDataset(root, "train"))
    assert all(0 < m < 1 for m in mean) and all(0 < s < 1 for s in std)


def test_sampler_order_depends_on_seed_epoch_and_resumes_mid_epoch():
    full = ResumableBatchSampler(10, 3, seed=5, num_epochs=3)
    batches = list(full)
    assert full.steps_per_epoch == 3 and len(batches) == 9 == len(full)
    assert sorted(i for b in batches[:3] for _, i in b) == sorted(set(i for b in batches[:3] for _, i in b))
    assert [e for b in batches for e, _ in b][:9] == [0] * 9
    assert batches[:3] != batches[3:6]
    resumed = list(ResumableBatchSampler(10, 3, seed=5, num_epochs=3, start_step=4))
    assert resumed == batches[4:]
    assert list(ResumableBatchSampler(10, 3, seed=6, num_epochs=1)) != batches[:3]


def test_sampler_shards_ranks_disjointly_with_equal_step_counts():
    ranks = [ResumableBatchSampler(7, 2, seed=0, rank=r, world_size=2, num_epochs=1) for r in range(2)]
    got = [list(s) for s in ranks]
    assert len(got[0]) == len(got[1]) == 2
    seen = [i for g in got for b in g for _, i in b]
    # 7 scenes padded to 8 positions (one wraps around): every scene is seen, only the padding repeats
    assert sorted(set(seen)) == list(range(7)) and len(seen) == 8
    with pytest.raises(ValueError, match="lower trainer.batch_size"):
        ResumableBatchSampler(3, 2, seed=0, world_size=3)
    ev = [list(ShardedEvalSampler(5, rank=r, world_size=2)) for r in range(2)]
    assert sorted(i for e in ev for b in e for i in b) == [0, 1, 2, 3, 4]
