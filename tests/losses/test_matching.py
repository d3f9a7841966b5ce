"""Assignment of the matching baselines: scipy optimum, greedy rule, batching, cost guard."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from pointformer.losses.matching import GUARD_COST, assign_many, guard_cost_matrix


def assign_one(cost, solver):
    """The assignment of one scene whose instances may all be matched."""
    return assign_many([cost], [torch.arange(cost.shape[1])], solver)[0]


def test_assign_many_equals_per_scene_optimum():
    g = torch.Generator().manual_seed(0)
    shapes = [(6, 3), (4, 7), (5, 0), (3, 3)]  # incl. more instances than queries and no instance
    costs = [torch.rand(n, k, generator=g) for n, k in shapes]
    valid = [torch.arange(k) for _, k in shapes]
    valid[3] = torch.tensor([0, 2])  # instance 1 of the last scene cannot be matched
    out = assign_many(costs, valid, "hungarian")
    for cost, cols_valid, (rows, cols) in zip(costs, valid, out):
        if cols_valid.numel() == 0:
            assert rows.numel() == 0
            continue
        r, c = linear_sum_assignment(cost[:, cols_valid].numpy())
        assert rows.tolist() == r.tolist()
        assert cols.tolist() == cols_valid[torch.as_tensor(c)].tolist()
        assert len(rows) == min(cost.shape[0], cols_valid.numel())


def test_greedy_takes_cheapest_pairs_first_and_differs_from_optimum():
    cost = torch.tensor([[1.0, 2.0], [1.5, 10.0]])
    rows, cols = assign_one(cost, "greedy")
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1)]  # greedy: 1 + 10
    rows, cols = assign_one(cost, "hungarian")
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]  # optimum: 2 + 1.5
    # only instance 1 may be matched: both solvers take its cheapest query, in the original column index
    for solver in ("greedy", "hungarian"):
        rows, cols = assign_many([cost], [torch.tensor([1])], solver)[0]
        assert (rows.tolist(), cols.tolist()) == ([0], [1]), solver


def test_guard_makes_every_entry_finite_and_worse_than_any_real_cost():
    cost = torch.tensor([[float("nan"), 1.0], [float("inf"), -float("inf")], [1e12, -1e12]])
    guarded = guard_cost_matrix(cost)
    assert torch.isfinite(guarded).all()
    assert guarded[0, 0] == GUARD_COST and guarded[1, 0] == GUARD_COST and guarded[1, 1] == GUARD_COST
    assert guarded[2].abs().max() < GUARD_COST
    rows, cols = assign_one(guarded, "hungarian")
    assert (0, 0) not in set(zip(rows.tolist(), cols.tolist()))
    assert np.isfinite(guarded.numpy()).all()


def test_unknown_solver_rejected():
    with pytest.raises(ValueError, match="solver must be one of"):
        assign_many([torch.rand(2, 2)], [torch.arange(2)], "sinkhorn")
