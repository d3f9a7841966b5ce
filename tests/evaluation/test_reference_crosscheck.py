"""The vectorised evaluator against a slow, loop-based reference written from the protocol text.

The reference follows the protocol step by step with plain Python loops (per prediction, per GT,
per vertex), including the order-dependent greedy walk with the global visited flag. Random scenes
are built to hit every rule: void and non-benchmark classes, GT and predictions near 100 vertices,
duplicates, predictions straddling two GT instances (the order-dependent case at IoU 0.25), tied
scores, classes without GT and classes without predictions.
"""
from __future__ import annotations

import numpy as np
import pytest

from pointformer.evaluation import ScenePrediction, SegmentMasks, evaluate_scenes
from pointformer.io.labels import SCANNET200_INSTANCE_IDS, SCANNET_INSTANCE_IDS

THRESHOLDS = [0.5 + 0.05 * i for i in range(9)] + [0.25]


def reference_evaluate(gt_list, pred_list, class_ids=SCANNET_INSTANCE_IDS, min_size=100):
    """Returns AP [C, 10] following evaluation.md literally (slow)."""
    class_ids = list(class_ids)
    thresholds = list(np.append(np.arange(0.5, 0.95, 0.05), 0.25))
    scenes = []
    for gt, pr in zip(gt_list, pred_list):
        gt = [int(x) for x in gt]
        ids = sorted(set(gt))
        gts = [{"id": i, "label": i // 1000, "size": gt.count(i), "matched": []}
               for i in ids if i != 0 and i // 1000 in class_ids]
        void = [(g // 1000) not in class_ids for g in gt]
        preds = []
        for k in range(pr.num_masks):
            label = int(pr.class_ids[k])
            if label not in class_ids:
                continue
            mask = [bool(x) for x in pr.dense_masks()[k]]
            size = sum(mask)
            if size < min_size:
                continue
            p = {"key": (len(scenes), k), "label": label, "size": size, "score": float(pr.scores[k]),
                 "void": sum(1 for v in range(len(gt)) if mask[v] and void[v]), "matched": []}
            for g in gts:
                if g["label"] != label:
                    continue
                inter = sum(1 for v in range(len(gt)) if mask[v] and gt[v] == g["id"])
                if inter > 0:
                    g["matched"].append((p, inter))
                    p["matched"].append((g, inter))
            preds.append(p)
        scenes.append((gts, preds))

    ap = np.full((len(class_ids), len(thresholds)), np.nan)
    for ti, t in enumerate(thresholds):
        visited = {}
        for ci, label in enumerate(class_ids):
            y_true, y_score, hard_fn, has_gt, has_pred = [], [], 0, False, False
            for gts, preds in scenes:
                big = [g for g in gts if g["label"] == label and g["size"] >= min_size]
                mine = [p for p in preds if p["label"] == label]
                has_gt |= bool(big)
                has_pred |= bool(mine)
                for g in big:
                    score = None
                    for p, inter in g["matched"]:
                        if visited.get(p["key"]):
                            continue
                        if inter / (g["size"] + p["size"] - inter) > t:
                            if score is None:
                                score = p["score"]
                                visited[p["key"]] = True
                            else:
                                y_true.append(0.0)
                                y_score.append(min(score, p["score"]))
                                score = max(score, p["score"])
                    if score is None:
                        hard_fn += 1
                    else:
                        y_true.append(1.0)
                        y_score.append(score)
                for p in mine:
                    if any(inter / (g["size"] + p["size"] - inter) > t for g, inter in p["matched"]):
                        continue
                    ignore = p["void"] + sum(inter for g, inter in p["matched"] if g["size"] < min_size)
                    if ignore / p["size"] <= t:
                        y_true.append(0.0)
                        y_score.append(p["score"])
            if not has_gt:
                continue
            if not has_pred:
                ap[ci, ti] = 0.0
                continue
            ap[ci, ti] = _reference_ap(y_true, y_score, hard_fn)
    return ap


def _reference_ap(y_true, y_score, hard_fn):
    pairs = sorted(zip(y_score, y_true), key=lambda x: x[0])
    n = len(pairs)
    total = sum(t for _, t in pairs)
    precision, recall = [], []
    seen = set()
    for i, (s, _) in enumerate(pairs):
        if s not in seen:
            seen.add(s)
            before = sum(t for _, t in pairs[:i])
            tp = total - before
            fp = n - i - tp
            precision.append(tp / (tp + fp))
            recall.append(tp / (tp + before + hard_fn))
    precision.append(1.0)
    recall.append(0.0)
    padded = [recall[0]] + recall + [0.0]
    return sum(p * (padded[i] - padded[i + 2]) / 2 for i, p in enumerate(precision))


def random_scene(rng: np.random.Generator, num_vertices: int = 1500, class_ids=SCANNET_INSTANCE_IDS,
                 gt_classes=None, other_ids=(1, 40)):
    """GT ids and a prediction that exercise every rule of the protocol.

    class_ids: the evaluated class set; gt_classes: the evaluated classes the GT uses (default: the
    first three, twice as often as each of ``other_ids``, the non-evaluated labels such as wall).
    """
    gt = np.zeros(num_vertices, np.int64)
    gt_classes = list(class_ids[:3]) if gt_classes is None else list(gt_classes)
    labels = gt_classes * 2 + list(other_ids)
    start, inst = 0, 1
    while start < num_vertices:
        size = int(rng.choice([40, 95, 99, 100, 101, 150, 250, 400]))
        label = int(rng.choice(labels)) if rng.random() > 0.15 else 0
        gt[start:start + size] = 0 if label == 0 else label * 1000 + inst
        start += size
        inst += 1
    ids = np.unique(gt[gt > 0])
    masks, classes, scores = [], [], []
    for gid in ids:
        members = np.flatnonzero(gt == gid)
        label = int(gid // 1000)
        for _ in range(int(rng.integers(0, 4))):
            m = np.zeros(num_vertices, bool)
            keep = members[rng.random(members.size) < rng.uniform(0.5, 1.0)]
            m[keep] = True
            kind = rng.random()
            if kind < 0.3:  # a few random vertices anywhere (void, other objects)
                m[rng.integers(0, num_vertices, int(rng.integers(0, members.size // 2 + 1)))] = True
            elif kind < 0.7:  # straddle into the next object: two GT at IoU > 0.25 (order-dependent walk)
                m[members[-1]:members[-1] + int(rng.integers(members.size // 2, members.size + 150))] = True
            masks.append(m)
            cls = (label if label in class_ids and rng.random() > 0.1
                   else int(rng.choice(gt_classes + list(class_ids[3:6]))))
            classes.append(cls)
            scores.append(float(np.round(rng.random(), 1)))  # rounding makes ties
    for _ in range(int(rng.integers(0, 6))):  # random blobs, some tiny, some with non-benchmark classes
        m = np.zeros(num_vertices, bool)
        a = int(rng.integers(0, num_vertices))
        m[a:a + int(rng.choice([50, 99, 100, 300]))] = True
        masks.append(m)
        classes.append(int(rng.choice(gt_classes + list(class_ids[3:6]) + list(other_ids))))
        scores.append(float(rng.random()))
    order = rng.permutation(len(masks))
    masks = np.array(masks, bool).reshape(-1, num_vertices)[order]
    return gt, ScenePrediction(masks, np.array(classes, np.int64)[order], np.array(scores)[order])


def test_reference_ap_matches_hand_value():
    assert _reference_ap([1.0, 0.0], [0.9, 0.99], 0) == 0.25


@pytest.mark.parametrize("seed", range(10))
def test_vectorised_evaluator_matches_loop_reference_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, 900) for _ in range(4)]
    gts = [s[0] for s in scenes]
    preds = [s[1] for s in scenes]
    expected = reference_evaluate(gts, preds)
    got = evaluate_scenes(gts, preds).ap_matrix
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.isfinite(expected).sum() > 10  # the scenes are not degenerate


@pytest.mark.parametrize("seed", range(6))
def test_scannet200_evaluator_matches_loop_reference_on_random_scenes(seed):
    # Classes from the whole id range (head chair 2, tail ids > 1000, ...); the non-evaluated labels are
    # wall 1, floor 3 (both ScanNet200 stuff; 3 is cabinet in ScanNet v2) and 12, a raw id outside the 200.
    rng = np.random.default_rng(200 + seed)
    gt_classes = [int(c) for c in rng.choice(SCANNET200_INSTANCE_IDS, 3, replace=False)] + [2, 1191]
    scenes = [random_scene(rng, 900, SCANNET200_INSTANCE_IDS, gt_classes, other_ids=(1, 3, 12)) for _ in range(4)]
    gts = [s[0] for s in scenes]
    preds = [s[1] for s in scenes]
    expected = reference_evaluate(gts, preds, class_ids=SCANNET200_INSTANCE_IDS)
    result = evaluate_scenes(gts, preds, dataset="scannet200")
    assert result.ap_matrix.shape == (198, 10)
    np.testing.assert_array_equal(np.isnan(result.ap_matrix), np.isnan(expected))
    np.testing.assert_allclose(result.ap_matrix, expected, rtol=0, atol=1e-12)
    assert np.isfinite(expected).sum() > 10
    # head / common / tail: the mean of the AP, AP50, AP25 of the group's classes that have GT.
    row = {name: i for i, name in enumerate(result.class_names)}
    for group, names in result.class_groups:
        rows = [row[n] for n in names if not np.isnan(expected[row[n], 0])]
        for got, column in ((result.group_map, slice(0, 9)), (result.group_map50, 0), (result.group_map25, 9)):
            want = float(np.mean([np.mean(expected[r, column]) for r in rows])) if rows else float("nan")
            np.testing.assert_allclose(got[group], want, rtol=0, atol=1e-12, err_msg=group)


def test_order_dependent_walk_at_iou_0_25_follows_the_recorded_order():
    # P straddles GT1 and GT2 (IoU 150/350 = 0.43 with each); Q is GT1 exactly.
    V = 600
    gt = np.zeros(V, np.int64)
    gt[0:200], gt[200:400] = 3001, 3002
    p_mask = np.zeros(V, bool)
    p_mask[50:350] = True
    q_mask = np.zeros(V, bool)
    q_mask[0:200] = True
    for masks, scores in (([p_mask, q_mask], [0.8, 0.6]), ([q_mask, p_mask], [0.6, 0.8])):
        pred = ScenePrediction(np.array(masks), np.array([3, 3]), np.array(scores))
        got = evaluate_scenes([gt], [pred]).ap_matrix
        np.testing.assert_allclose(got, reference_evaluate([gt], [pred]), rtol=0, atol=1e-12)
    # P first: GT1 takes P (visited), Q is a second match (FP at min 0.6); GT2 finds P visited -> FN.
    pred_p_first = ScenePrediction(np.array([p_mask, q_mask]), np.array([3, 3]), np.array([0.8, 0.6]))
    pred_q_first = ScenePrediction(np.array([q_mask, p_mask]), np.array([3, 3]), np.array([0.6, 0.8]))
    ap25_p_first = evaluate_scenes([gt], [pred_p_first]).ap25["cabinet"]
    ap25_q_first = evaluate_scenes([gt], [pred_q_first]).ap25["cabinet"]
    # Q first: GT1 takes Q, P is a second match of GT1 (FP 0.6) but not visited, so GT2 takes P: 2 TP.
    assert ap25_p_first != ap25_q_first


@pytest.mark.parametrize("seed", range(3))
def test_segment_masks_give_the_same_result_as_dense_masks(seed):
    rng = np.random.default_rng(100 + seed)
    num_vertices, num_segments = 3000, 120
    seg = np.sort(rng.integers(0, num_segments, num_vertices))
    gt_of_segment = np.zeros(num_segments, np.int64)
    for s in range(num_segments):
        label = int(rng.choice([3, 4, 5, 1, 0]))
        gt_of_segment[s] = 0 if label == 0 else label * 1000 + int(rng.integers(1, 8))
    gt = gt_of_segment[seg]
    seg_masks = rng.random((40, num_segments)) < 0.08
    classes = rng.choice([3, 4, 5, 1], 40)
    scores = rng.random(40)
    sparse = ScenePrediction(SegmentMasks(seg_masks, seg), classes, scores)
    dense = ScenePrediction(seg_masks[:, seg], classes, scores)
    a = evaluate_scenes([gt], [sparse])
    b = evaluate_scenes([gt], [dense])
    np.testing.assert_array_equal(a.ap_matrix, b.ap_matrix)
    assert np.isfinite(a.ap_matrix).any()


def test_mask_memory_layouts_and_row_blocks_give_the_same_result():
    # V large enough that the dense path works in several row blocks; some rows have a non-benchmark
    # class (the subset path); F-ordered and strided masks take the other layout paths.
    rng = np.random.default_rng(5)
    num_vertices, num_masks = 100_000, 50
    gt = np.repeat(rng.choice([3001, 3002, 5003, 0, 1004, 7005], 100), num_vertices // 100)
    starts = rng.integers(0, num_vertices - 3000, num_masks)
    masks = np.zeros((num_masks, num_vertices), bool)
    for i, a in enumerate(starts):
        masks[i, a:a + int(rng.integers(100, 3000))] = True
    classes = rng.choice([3, 5, 7, 1], num_masks)
    scores = rng.random(num_masks)
    base = evaluate_scenes([gt], [ScenePrediction(masks, classes, scores)]).ap_matrix
    assert np.isfinite(base).any()
    fortran = np.asfortranarray(masks)
    wide = np.zeros((num_masks, 2 * num_vertices), bool)
    wide[:, ::2] = masks
    for variant in (fortran, wide[:, ::2], masks.astype(np.uint8), masks.astype(np.float32)):
        got = evaluate_scenes([gt], [ScenePrediction(variant, classes, scores)]).ap_matrix
        np.testing.assert_array_equal(got, base)
    # Loop reference on a slice of it (the reference is slow on 100k vertices).
    small = slice(0, 6000)
    keep = masks[:, small].sum(axis=1) > 0
    sub = ScenePrediction(masks[keep][:, small], classes[keep], scores[keep])
    np.testing.assert_allclose(evaluate_scenes([gt[small]], [sub]).ap_matrix, reference_evaluate([gt[small]], [sub]),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_closed_form_matching_equals_the_step_by_step_walk(seed):
    """Where no prediction is a candidate of two GT instances, the closed form must equal the walk."""
    from pointformer.evaluation import compute_scene_overlaps
    from pointformer.evaluation.protocol import class_set
    from pointformer.evaluation.evaluator import _walk

    rng = np.random.default_rng(50 + seed)
    checked = 0
    for _ in range(4):
        gt, pred = random_scene(rng, 1500)
        scene = compute_scene_overlaps(gt, pred, class_set("scannet"))
        iou = scene.pair_iou
        for t in np.append(np.arange(0.5, 0.95, 0.05), 0.25):
            cand = (iou > t) & (scene.gt_size[scene.pair_gt] >= 100)
            wp, wg = scene.pair_pred[cand], scene.pair_gt[cand]
            if wp.size == 0 or np.bincount(wp).max() > 1:
                continue
            classes, trues, scores, matched = _walk(scene, wp, wg)
            order = np.lexsort((-scene.pred_score[wp], wg))
            first = np.r_[True, wg[order][1:] != wg[order][:-1]]
            closed = sorted(zip(scene.gt_class[wg[order]].tolist(), first.astype(float).tolist(),
                                scene.pred_score[wp][order].tolist()))
            assert sorted(zip(classes.tolist(), trues.tolist(), scores.tolist())) == closed
            assert sorted(matched.tolist()) == sorted(set(wg.tolist()))
            checked += 1
    assert checked >= 5


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    gt = np.zeros(400, np.int64)
    gt[:200] = 3001
    masks = torch.zeros(2, 400, dtype=torch.bool)
    masks[0, :200] = True
    masks[1, 200:350] = True
    pred = ScenePrediction(masks, torch.tensor([3, 3]), torch.tensor([0.9, 0.99], dtype=torch.float32))
    assert evaluate_scenes([gt], [pred]).ap["cabinet"] == 1.0  # the second mask lies on void
    assert pred.scores.dtype == np.float64 and pred.masks.dtype == np.bool_
