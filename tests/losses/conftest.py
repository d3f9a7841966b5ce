"""Hand-built scenes and prediction configurations shared by the loss tests.

A configuration is an ownership matrix π [N+1, P] (row 0 = background slot) turned into logits:
ownership losses get log π (−sharpness where π = 0), sigmoid losses get logit(π) per query
(±sharpness where π is 0 or 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pytest
import torch

CONFIGURATIONS = ("correct", "split", "all_fire", "one_owns_all")


@dataclass
class HandScene:
    token_instance: torch.Tensor  # [P]
    token_weight: torch.Tensor  # [P]
    instance_class: torch.Tensor  # [K]
    seeds: Optional[torch.Tensor]  # [N] or None
    owner: list[int]  # query owning instance k in the correct partition
    partner: list[int]  # second candidate used by the 50/50 split
    num_queries: int
    num_classes: int

    @property
    def num_tokens(self) -> int:
        return self.token_instance.shape[0]

    def ownership(self, config: str) -> torch.Tensor:
        """π [N+1, P] of a configuration."""
        n, p = self.num_queries, self.num_tokens
        pi = torch.zeros(n + 1, p, dtype=torch.float64)
        pi[0, self.token_instance == 0] = 1.0
        pi[0, self.token_instance < 0] = 1.0
        for k in range(len(self.owner)):
            cols = self.token_instance == k + 1
            if config == "correct":
                pi[1 + self.owner[k], cols] = 1.0
            elif config == "split":
                pi[1 + self.owner[k], cols] = 0.5
                pi[1 + self.partner[k], cols] = 0.5
            elif config == "all_fire":
                pi[1:, cols] = 1.0 / n
            elif config == "one_owns_all":
                pi[1 + self.owner[0], cols] = 1.0
            else:
                raise KeyError(config)
        return pi

    def logits(self, config: str, activation: str, sharpness: float = 30.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask_logits [N, P], background_logits [P]) in float64."""
        pi = self.ownership(config)
        if activation == "ownership":
            z = torch.where(pi > 0, pi.clamp_min(1e-300).log(), torch.full_like(pi, -sharpness))
        else:
            inner = pi.clamp(1e-12, 1 - 1e-12)
            z = torch.log(inner) - torch.log1p(-inner)
            z = torch.where(pi <= 0, torch.full_like(pi, -sharpness), z)
            z = torch.where(pi >= 1, torch.full_like(pi, sharpness), z)
        return z[1:].clone(), z[0].clone()

    def ideal_class_logits(self, config: str, sharpness: float) -> torch.Tensor:
        """Class logits [N, C+1] that agree with `config`'s owners (others predict no-object)."""
        c = torch.full((self.num_queries, self.num_classes + 1), -sharpness, dtype=torch.float64)
        c[:, -1] = sharpness
        if config == "correct":
            for k, q in enumerate(self.owner):
                c[q] = -sharpness
                c[q, int(self.instance_class[k])] = sharpness
        return c

    def zero_class_logits(self) -> torch.Tensor:
        return torch.zeros(self.num_queries, self.num_classes + 1, dtype=torch.float64)


def make_hand_scene(*, num_instances: int, tokens_per_instance: int, background_tokens: int, num_queries: int,
                    seeded: bool, num_classes: int = 5, ignore_tokens: int = 0) -> HandScene:
    """K equal instances then background then ignore tokens. Seeded: queries 2k and 2k+1 are seeded
    on instance k, the rest on background tokens (needs N >= 2K + 1)."""
    k = num_instances
    inst = torch.cat([
        torch.arange(1, k + 1).repeat_interleave(tokens_per_instance),
        torch.zeros(background_tokens, dtype=torch.long),
        torch.full((ignore_tokens,), -1, dtype=torch.long),
    ])
    classes = torch.arange(k) % num_classes
    if seeded:
        assert num_queries >= 2 * k + 1 and background_tokens > 0
        seeds = torch.empty(num_queries, dtype=torch.long)
        for q in range(2 * k):
            seeds[q] = (q // 2) * tokens_per_instance + (q % 2)
        first_bg = k * tokens_per_instance
        for j, q in enumerate(range(2 * k, num_queries)):
            seeds[q] = first_bg + j % background_tokens
        owner = [2 * i for i in range(k)]
        partner = [2 * i + 1 for i in range(k)]
    else:
        seeds = None
        owner = list(range(k))
        partner = [k + i for i in range(k)]
    return HandScene(token_instance=inst, token_weight=torch.ones(inst.shape[0], dtype=torch.float64),
                     instance_class=classes, seeds=seeds, owner=owner, partner=partner,
                     num_queries=num_queries, num_classes=num_classes)


@pytest.fixture
def hand_scene():
    return make_hand_scene
