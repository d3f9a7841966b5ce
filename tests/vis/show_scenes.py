"""A small synthetic room for the show tests: floor, a back wall, a ceiling and three boxes.

GT: box A ("table", class 7) and box B ("chair", class 5). Predictions: 0 = most of A (a match),
1 = box C, where no object is (a false positive); B has no prediction (missed).
"""
import numpy as np

from pointformer.vis.show import ShowScene


def box(rng, lo, hi, n):
    return rng.uniform(lo, hi, size=(n, 3))


def synthetic_room(seed: int = 0, ceiling: bool = True) -> ShowScene:
    rng = np.random.default_rng(seed)
    parts = [
        np.c_[rng.uniform(0, 6, 6000), rng.uniform(0, 4, 6000), rng.uniform(0, 0.02, 6000)],   # floor
        np.c_[rng.uniform(0, 6, 3000), rng.uniform(3.97, 4, 3000), rng.uniform(0, 2.8, 3000)],  # back wall
        box(rng, [1, 1, 0], [2, 2, 0.8], 2500),          # A: table
        box(rng, [3.5, 1, 0], [4.3, 1.8, 1.0], 2000),    # B: chair, missed
        box(rng, [4.5, 2.4, 0], [5.5, 3.4, 0.9], 2000),  # C: false positive
    ]
    if ceiling:
        parts.append(np.c_[rng.uniform(0, 6, 4000), rng.uniform(0, 4, 4000), rng.uniform(2.78, 2.8, 4000)])
    xyz = np.concatenate(parts).astype(np.float32)
    starts = np.cumsum([0] + [len(p) for p in parts])
    gt = np.full(len(xyz), -1)
    gt[starts[2]:starts[3]] = 0
    gt[starts[3]:starts[4]] = 1
    pred = np.full(len(xyz), -1)
    pred[starts[2] + 150:starts[3]] = 0
    pred[starts[4]:starts[5]] = 1
    rgb = rng.integers(90, 200, size=(len(xyz), 3)).astype(np.uint8)
    return ShowScene(xyz=xyz, rgb=rgb, pred_ids=pred, pred_classes=np.array([7, 5]), pred_scores=np.array([0.9, 0.6]),
                     class_names={5: "chair", 7: "table"}, gt_ids=gt, gt_classes=np.array([7, 5]), name="room")
