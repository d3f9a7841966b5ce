"""Query diagnostics (duplicates, unmatched GT, assignment stability) on hand-built scenes."""
import pytest
import torch

from pointformer.evaluation.query_diagnostics import (SceneDiagnostics, assignment, assignment_stability,
                                                      scene_diagnostics, summarize)

# tokens: 0-3 instance 1 (weights 50 each = 200 points), 4-5 instance 2 (2 x 60), 6 instance 3 (30 points:
# below the evaluator's 100-point minimum), 7 background, 8 ignore
TOKEN_INSTANCE = torch.tensor([1, 1, 1, 1, 2, 2, 3, 0, -1])
TOKEN_WEIGHT = torch.tensor([50, 50, 50, 50, 60, 60, 30, 100, 500], dtype=torch.float32)


def _diagnose(masks, scores, queries):
    return scene_diagnostics(torch.tensor(masks, dtype=torch.bool).reshape(len(scores), 9),
                             torch.tensor(scores, dtype=torch.float32), torch.tensor(queries, dtype=torch.long),
                             TOKEN_INSTANCE, TOKEN_WEIGHT, min_region_size=100)


def test_scene_diagnostics_counts_duplicates_unmatched_and_the_covering_query():
    d = _diagnose(
        masks=[[1, 1, 1, 1, 0, 0, 0, 0, 1],    # query 7: instance 1 exactly (the ignore token is out of the IoU)
               [1, 1, 1, 0, 0, 0, 0, 0, 0],    # query 3: IoU 0.75 with instance 1 -> a duplicate (lower score)
               [1, 1, 1, 0, 0, 0, 0, 0, 0],    # query 3 again with another class: counted once
               [0, 0, 0, 0, 1, 0, 0, 1, 0],    # query 5: instance 2 at IoU 60/220 -> no hit
               [0, 0, 0, 0, 0, 0, 1, 0, 0]],   # query 9: exactly the too-small instance 3 -> not a GT
        scores=[0.9, 0.8, 0.1, 0.7, 0.95], queries=[7, 3, 3, 5, 9])
    assert d.num_gt == 2 and d.num_queries == 4
    assert d.hits == 2 and d.duplicates == 1
    assert d.covered_by == {1: 7}
    # the higher-scored of two covering queries owns the instance
    swapped = _diagnose(masks=[[1, 1, 1, 1, 0, 0, 0, 0, 1], [1, 1, 1, 0, 0, 0, 0, 0, 0]], scores=[0.3, 0.8],
                        queries=[7, 3])
    assert swapped.covered_by == {1: 3} and swapped.duplicates == 1
    empty = _diagnose(masks=[], scores=[], queries=[])
    assert (empty.hits, empty.duplicates, empty.num_queries, empty.covered_by, empty.num_gt) == (0, 0, 0, {}, 2)


def test_summary_rates_over_a_split():
    scenes = [SceneDiagnostics(num_gt=2, hits=3, duplicates=1, num_queries=4, covered_by={1: 7, 2: 5}),
              SceneDiagnostics(num_gt=2, hits=1, duplicates=0, num_queries=2, covered_by={4: 0})]
    rates = summarize(scenes)
    assert rates["duplicate_rate"] == pytest.approx(1 / 4)
    assert rates["unmatched_gt_rate"] == pytest.approx(1 - 3 / 4)
    assert rates["queries_per_scene"] == pytest.approx(3.0)
    assert summarize([]) == {"duplicate_rate": 0.0, "unmatched_gt_rate": None, "queries_per_scene": 0.0}
    assert assignment({"a": scenes[0]}) == {"a": {"1": 7, "2": 5}}


def test_assignment_stability_compares_covering_queries_between_evaluations():
    previous = {"a": {"1": 4, "2": 5, "3": 6}, "b": {"1": 0}}
    current = {"a": {"1": 4, "2": 9}, "b": {"1": 0, "2": 3}}
    s = assignment_stability(previous, current)
    # covered at both: a1 (same), a2 (changed), b1 (same) -> 2/3; retained of the 4 covered before: 2/4
    assert s["assignment_stability"] == pytest.approx(2 / 3)
    assert s["assignment_retention"] == pytest.approx(0.5)
    assert assignment_stability({}, current) == {"assignment_stability": None, "assignment_retention": None}
