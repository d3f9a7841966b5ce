"""Seed coverage: which GT instances hold a seed, by size bucket, as the evaluator counts instances."""
import numpy as np
import pytest
import torch

from pointformer.evaluation.seed_coverage import (SIZE_BUCKETS, bucket_names, scene_seed_coverage,
                                                  summarize_seed_coverage)


def _scene():
    # 8 tokens: background 0, instance 1 (tokens 1, 2: 300 + 300 points), instance 2 (token 3: 5000 points),
    # instance 3 (token 4: 50 points: below the evaluator's 100-point minimum), ignore token 5, instance 4
    # (tokens 6, 7: 1500 + 20000 points).
    token_instance = torch.tensor([0, 1, 1, 2, 3, -1, 4, 4])
    token_weight = torch.tensor([900.0, 300, 300, 5000, 50, 80, 1500, 20000])
    return token_instance, token_weight


def test_an_instance_counts_as_covered_when_any_of_its_tokens_is_a_seed():
    inst, weight = _scene()
    cov = scene_seed_coverage(torch.tensor([0, 2, 7, -1]), inst, weight)
    order = np.argsort(cov.sizes)
    assert cov.num_gt == 3                             # instance 3 is below the minimum region size
    assert cov.sizes[order].tolist() == [600.0, 5000.0, 21500.0]
    assert cov.seeded[order].tolist() == [True, False, True]
    assert cov.seeds == 3                              # -1 is no seed


def test_seeds_on_background_ignore_or_too_small_instances_cover_nothing():
    inst, weight = _scene()
    cov = scene_seed_coverage(torch.tensor([0, 4, 5]), inst, weight)
    assert not cov.seeded.any() and cov.num_gt == 3


def test_split_summary_per_size_bucket():
    inst, weight = _scene()
    scenes = [scene_seed_coverage(torch.tensor([1]), inst, weight),        # covers the 600-point instance
              scene_seed_coverage(torch.tensor([3, 6]), inst, weight)]     # covers the 5k and 21.5k ones
    summary = summarize_seed_coverage(scenes)
    assert summary["seed_coverage"] == pytest.approx(3 / 6)
    assert summary["seed_coverage/500-2k"] == pytest.approx(1 / 2)
    assert summary["seed_coverage/2k-10k"] == pytest.approx(1 / 2)
    assert summary["seed_coverage/>=10k"] == pytest.approx(1 / 2)
    assert summary["seed_coverage/<500"] is None and summary["seed_coverage/instances/<500"] == 0
    assert summary["seed_coverage/instances/500-2k"] == 2
    assert summary["seed_coverage/seeds_per_scene"] == pytest.approx(1.5)
    assert summarize_seed_coverage([], prefix="x")["x"] is None
    assert bucket_names(SIZE_BUCKETS) == ["<500", "500-2k", "2k-10k", ">=10k"]


def test_bad_shapes_and_out_of_range_seeds_are_rejected():
    inst, weight = _scene()
    with pytest.raises(ValueError, match="out of range"):
        scene_seed_coverage(torch.tensor([8]), inst, weight)
    with pytest.raises(ValueError, match="must be"):
        scene_seed_coverage(torch.tensor([[0]]), inst, weight)
    with pytest.raises(ValueError, match="must be"):
        scene_seed_coverage(torch.tensor([0]), inst, weight[:-1])
