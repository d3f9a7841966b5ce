"""Query↔instance assignment of the baselines: Mask3D's cost matrix (2·class + 5·BCE + 2·dice),
solved by `scipy.optimize.linear_sum_assignment` (`hungarian`) or greedily (`greedy`).

The cost matrix is guarded: NaN/±inf entries (mixed-precision overflow upstream) become a large
finite cost, so the solver never raises "cost matrix is infeasible" and never hands a NaN query an
instance when a finite choice exists.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from pointformer.losses.targets import PreparedScene
from pointformer.losses.terms import pairwise_sigmoid_costs, upcast

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
    cost_class: float = 2.0,
    cost_bce: float = 5.0,
    cost_dice: float = 2.0,
) -> Tensor:
    """Guarded Mask3D cost of every query against every instance.

    Args:
        mask_logits: [N, P]; class_logits: [N, C+1].
    Returns:
        float32 [N, K] (columns of instances without tokens are GUARD_COST).
    """
    bce, dice = pairwise_sigmoid_costs(mask_logits, scene)
    prob = torch.softmax(upcast(class_logits).float(), dim=1)
    class_cost = -prob[:, scene.instance_class]  # [N, K]
    cost = cost_class * class_cost + cost_bce * bce.float() + cost_dice * dice.float()
    cost = guard_cost_matrix(cost)
    return torch.where(scene.instance_valid.unsqueeze(0), cost, torch.full_like(cost, GUARD_COST))


def hungarian_assign(cost: Tensor, instance_valid: Tensor) -> tuple[Tensor, Tensor]:
    """Optimal one-to-one assignment (scipy) between queries and valid instances.

    Args:
        cost: [N, K] guarded cost; instance_valid: bool [K].
    Returns:
        (query index [M], instance index [M]) long tensors on cost's device, M = min(N, K_valid).
    """
    cols_valid = instance_valid.nonzero().squeeze(1)
    if cols_valid.numel() == 0 or cost.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=cost.device)
        return empty, empty
    sub = cost[:, cols_valid].detach().cpu().double().numpy()
    rows, cols = linear_sum_assignment(sub)
    rows_t = torch.as_tensor(rows, dtype=torch.long, device=cost.device)
    cols_t = cols_valid[torch.as_tensor(cols, dtype=torch.long, device=cost.device)]
    return rows_t, cols_t


def greedy_assign(cost: Tensor, instance_valid: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy assignment: repeatedly the globally cheapest (free query, free instance) pair, i.e.
    each instance takes its cheapest free query, cheapest instances first. No solver.

    Args / Returns: as `hungarian_assign`.
    """
    cols_valid = instance_valid.nonzero().squeeze(1)
    n = cost.shape[0]
    if cols_valid.numel() == 0 or n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=cost.device)
        return empty, empty
    sub = cost[:, cols_valid].detach().cpu().double().numpy().copy()
    k = sub.shape[1]
    rows, cols = [], []
    for _ in range(min(n, k)):
        flat = int(np.argmin(sub))
        r, c = divmod(flat, k)
        rows.append(r)
        cols.append(c)
        sub[r, :] = np.inf
        sub[:, c] = np.inf
    rows_t = torch.as_tensor(rows, dtype=torch.long, device=cost.device)
    cols_t = cols_valid[torch.as_tensor(cols, dtype=torch.long, device=cost.device)]
    return rows_t, cols_t


ASSIGNERS = {"hungarian": hungarian_assign, "greedy": greedy_assign}
