"""The tiny model learns: it overfits two toy scenes with the Influencer Loss (models + losses)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pointformer.data.targets import superpoint_targets
from pointformer.data.toy import THING_CLASSES, make_toy_scene
from pointformer.losses import InstanceCriterion, TokenTargets, query_setup
from pointformer.models.build import build_model, load_model_config
from pointformer.models.segmentor import PointBatch


def ownership_recall(out, targets: list[TokenTargets], threshold: float = 0.5) -> float:
    """Fraction of GT instances matched at IoU > threshold by a query's owned tokens (ignore tokens out)."""
    hits = []
    for b, target in enumerate(targets):
        logits = torch.cat([out.final.background_logits[b][None], out.final.mask_logits[b]])
        owner = logits.argmax(0)  # 0 = background, q + 1 = query q
        masks = owner[None, :] == torch.arange(1, logits.shape[0], device=owner.device)[:, None]
        weight = target.token_weight * (target.token_instance >= 0)
        for k in range(1, int(target.token_instance.max()) + 1):
            gt = target.token_instance == k
            iou = ((masks & gt) * weight).sum(1) / ((masks | gt) * weight).sum(1).clamp_min(1e-6)
            hits.append(bool(iou.max() > threshold))
    return float(np.mean(hits))


@pytest.mark.slow
def test_tiny_model_overfits_two_scenes_with_the_influencer_loss() -> None:
    torch.set_num_threads(1)
    scenes, targets = [], []
    for i in range(2):
        s = make_toy_scene(f"s{i}", seed=i, num_points=3000, num_objects=4)
        t = superpoint_targets(s.superpoint, s.semantic, s.instance, thing_classes=THING_CLASSES)
        scenes.append((torch.from_numpy(s.xyz - s.xyz.mean(0)), torch.from_numpy(s.rgb.astype(np.float32) / 127.5 - 1),
                       torch.from_numpy(s.superpoint.astype(np.int64))))
        targets.append(TokenTargets(token_instance=torch.from_numpy(t.token_instance),
                                    token_weight=torch.from_numpy(t.token_weight),
                                    instance_class=torch.from_numpy(t.instance_class)))
    batch = PointBatch.from_scenes(scenes)
    torch.manual_seed(0)
    setup = query_setup("influencer")  # ownership masks, seeded queries
    model = build_model(load_model_config("tiny"), mask_activation=setup.mask_activation, query_init=setup.query_init)
    criterion = InstanceCriterion(loss="influencer")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(80):
        out = model(batch)
        loss = criterion(out.layers, out.query_seed_token, targets, out.token_objectness)["loss"]
        first = float(loss) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.1 * first
    with torch.no_grad():
        assert ownership_recall(model(batch), targets) == 1.0  # train mode (batch statistics)
        assert ownership_recall(model.eval()(batch), targets) >= 0.75  # eval mode (running statistics)
