"""Query↔instance assignment of the baselines: Mask3D's cost matrix (2·class + 5·BCE + 2·dice),
solved by `scipy.optimize.linear_sum_assignment` (`hungarian`) or greedily (`greedy`).

The cost matrix is guarded: NaN/±inf entries (mixed-precision overflow upstream) become a large
finite cost, so the solver never raises "cost matrix is infeasible" and never hands a NaN query an
instance when a finite choice exists.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from pointformer.losses.targets import PreparedScene
from pointformer.losses.terms import autocast_off, pairwise_sigmoid_costs, upcast

GUARD_COST = 1e8


def guard_cost_matrix(cost: Tensor) -> Tensor:
    """Replace NaN/±inf by GUARD_COST and clamp finite entries to ±GUARD_COST/10 (so a guarded
    entry is always worse than any finite one)."""
    finite = torch.isfinite(cost)
    return torch.where(finite, cost.clamp(-GUARD_COST / 10, GUARD_COST / 10), torch.full_like(cost, GUARD_COST))


@torch.no_grad()
def matching_cost(
    mask_logits: Tensor,
    class_logits: Tensor,
    scene: PreparedScene,
    *,
    class_weight: float,
    bce_weight: float,
    dice_weight: float,
) -> Tensor:
    """Guarded Mask3D cost of every query against every instance.

    Args:
        mask_logits: [N, P]; class_logits: [N, C+1].
        class_weight, bce_weight, dice_weight: weights of −p(class), BCE and dice (Mask3D: 2, 5, 2).
    Returns:
        float32 [N, K] (columns of instances without tokens are GUARD_COST).
    """
    with autocast_off(mask_logits):
        bce, dice = pairwise_sigmoid_costs(mask_logits, scene)
        prob = torch.softmax(upcast(class_logits).float(), dim=1)
        class_cost = -prob[:, scene.instance_class]  # [N, K]
        cost = class_weight * class_cost + bce_weight * bce.float() + dice_weight * dice.float()
        cost = guard_cost_matrix(cost)
        return torch.where(scene.instance_valid.unsqueeze(0), cost, torch.full_like(cost, GUARD_COST))


def _solve_hungarian(sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return linear_sum_assignment(sub)


def _solve_greedy(sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Repeatedly the globally cheapest (free query, free instance) pair."""
    sub = sub.copy()
    n, k = sub.shape
    rows, cols = [], []
    for _ in range(min(n, k)):
        r, c = divmod(int(np.argmin(sub)), k)
        rows.append(r)
        cols.append(c)
        sub[r, :] = np.inf
        sub[:, c] = np.inf
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


SOLVERS = {"hungarian": _solve_hungarian, "greedy": _solve_greedy}


def assign_many(costs: Sequence[Tensor], valid_columns: Sequence[Tensor], solver: str) -> list[tuple[Tensor, Tensor]]:
    """Assignments of several scenes with ONE device→host copy (one sync per decoder layer
    instead of one per scene).

    Args:
        costs: per scene [N_b, K_b] guarded costs (one device).
        valid_columns: per scene long [K_valid_b], the instances that may be matched.
        solver: "hungarian" (scipy's optimal assignment) or "greedy" (cheapest pairs first).
    Returns:
        per scene (query index [M_b], instance index [M_b]) on the costs' device.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
    if not costs:
        return []
    device = costs[0].device
    subs = [c.index_select(1, v) for c, v in zip(costs, valid_columns)]
    flat = torch.cat([sub.reshape(-1) for sub in subs]).detach().to("cpu", torch.float64).numpy()
    out: list[tuple[Tensor, Tensor]] = []
    offset = 0
    for sub, cols_valid in zip(subs, valid_columns):
        n, k = sub.shape
        if n == 0 or k == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            out.append((empty, empty))
            continue
        rows, cols = SOLVERS[solver](flat[offset: offset + n * k].reshape(n, k))
        offset += n * k
        rows_t = torch.as_tensor(rows, dtype=torch.long).to(device, non_blocking=True)
        cols_t = cols_valid[torch.as_tensor(cols, dtype=torch.long).to(device, non_blocking=True)]
        out.append((rows_t, cols_t))
    return out
