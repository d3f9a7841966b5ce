#!/usr/bin/env python
"""ScanNet preprocessing speed on ScanNet-sized synthetic scenes (~150k vertices, ~300k faces).

Prints one JSON line per measurement:
  generate        seconds to generate one scene (not part of preprocessing; for reference)
  segmentator     segment_mesh on one mesh: first call (numba compile or cache load), median of
                  repeats, its parts (graph, std::sort-order sort, union-find), and the no-numba
                  alternatives (numpy graph, radix / numpy stable sort, CPython union-find)
  segmentator_cpp (with --cpp BINARY) the official C++ Segmentator on the same mesh, wall and CPU
                  time of the process (it reads the PLY and writes the JSON), against pointformer's
                  read + segment + write, plus the adjusted Rand index between the two segmentations
  segmentator_agreement  (with --cpp) C++ vs pointformer on the two scene meshes and on a curved
                  90k-vertex terrain mesh without and with vertex noise: adjusted Rand index and
                  whether the segIndices are identical (ids included)
  scene           process_scene (checksums, read, convert, write npz + GT) per annotated scene and
                  per test scene (which includes running the segmentator)
  throughput      preprocess_scannet over N copies of the annotated scene with 1 and with W workers,
                  projected to ScanNet v2 (1513 train+val scenes and 100 test scenes)

    python benchmarks/preprocess.py                              # 150k vertices, 2 workers
    python benchmarks/preprocess.py --cpp /tmp/segcpp/segmentator --repeats 5
    python benchmarks/preprocess.py --vertices 30000 --copies 4  # quick
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from pointformer.io.ply import read_ply
from pointformer.io.scannet import read_segs_json, write_segs_json
from pointformer.preprocess import segmentator as S
from pointformer.preprocess.introsort import std_sort_order
from pointformer.preprocess.scannet import SceneTask, preprocess_scannet, process_scene
from pointformer.synthetic.scannet import generate_scannet

SCANNET_TRAINVAL, SCANNET_TEST = 1513, 100


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two partitions (1 = identical up to renaming)."""
    from scipy.sparse import coo_matrix

    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = coo_matrix((np.ones(a.shape[0]), (ai, bi))).tocsr()

    def comb(x):
        return x * (x - 1) / 2.0

    sum_ij = comb(table.data).sum()
    sum_a, sum_b = comb(np.asarray(table.sum(1)).ravel()).sum(), comb(np.asarray(table.sum(0)).ravel()).sum()
    expected = sum_a * sum_b / comb(a.shape[0])
    return float((sum_ij - expected) / (0.5 * (sum_a + sum_b) - expected))


def copy_scene(src: Path, dst_root: Path, new_id: str) -> None:
    old_id = src.name
    dst = dst_root / new_id
    dst.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copyfile(f, dst / f.name.replace(old_id, new_id))


def terrain(noise: float, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """A single connected, curved height-field mesh (n x n vertices) with optional vertex noise."""
    from pointformer.synthetic.meshes import grid

    m = grid((0, 0, 0), (6, 0, 0), (0, 6, 0), 6 / (n - 1))
    x, y = m.vertices[:, 0], m.vertices[:, 1]
    z = 0.2 * np.sin(2 * x) * np.cos(1.5 * y) + 0.1 * np.sin(7 * x + 3 * y)
    m.vertices[:, 2] = z + noise * np.random.default_rng(0).standard_normal(x.shape)
    return m.vertices.astype(np.float32), m.faces


def agreement(cpp: Path, work: Path, meshes: list[Path]) -> None:
    """Adjusted Rand index between the C++ tool and segment_mesh on several meshes."""
    from pointformer.io.ply import write_ply

    work.mkdir()
    cases = [(p.name, p) for p in meshes]
    for noise in (0.0, 0.002, 0.01):
        path = work / f"terrain_{noise}.ply"
        v, f = terrain(noise)
        write_ply(path, v, faces=f)
        cases.append((f"terrain 300x300, noise {noise} m", path))
    for name, path in cases:
        local = work / "m.ply"
        shutil.copyfile(path, local)
        subprocess.run([str(cpp), str(local)], check=True, stdout=subprocess.DEVNULL)
        ref = read_segs_json(work / "m.0.010000.segs.json")
        m = read_ply(local, require_faces=True)
        ours = S.segment_mesh(m.vertices, m.faces)
        emit(bench="segmentator_agreement", mesh=name, vertices=int(m.vertices.shape[0]),
             cpp_segments=int(len(np.unique(ref))), ours_segments=int(len(np.unique(ours))),
             adjusted_rand_index=round(adjusted_rand_index(ref, ours), 4),
             identical_seg_indices=bool(np.array_equal(ref, ours)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=6, help="scenes for the throughput run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpp", type=Path, default=None, help="built official ScanNet Segmentator binary")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pf_bench_preprocess_"))
    try:
        t = time.perf_counter()
        ds = generate_scannet(tmp / "raw", num_scenes=1, num_test_scenes=1, seed=args.seed,
                              target_vertices=args.vertices, val_fraction=0.0, split_files=False)
        scene = ds.scenes["scene0000_00"]
        test = ds.scenes[ds.splits["test"][0]]
        emit(bench="generate", scenes=2, seconds_per_scene=round((time.perf_counter() - t) / 2, 3),
             vertices=scene.num_vertices, scene_type=scene.scene_type)

        mesh_path = scene.folder / "scene0000_00_vh_clean_2.ply"
        mesh = read_ply(mesh_path, require_faces=True)
        v, f = mesh.vertices, mesh.faces
        t = time.perf_counter()
        S.segment_mesh(v, f)
        first = time.perf_counter() - t
        seg_s, seg = timed(lambda: S.segment_mesh(v, f), args.repeats)
        graph_s, graph = timed(lambda: S.edge_weights(v, f), args.repeats)
        ea, eb, w = graph
        sort_s, order = timed(lambda: std_sort_order(w), args.repeats)
        wc = np.maximum(w, 0)
        radix_s, _ = timed(lambda: S.stable_argsort_nonnegative(wc), args.repeats)
        numpy_sort_s, _ = timed(lambda: np.argsort(wc, kind="stable"), args.repeats)
        a, b, ws = ea[order], eb[order], w[order]
        uf_s, _ = timed(lambda: S.segment_sorted_edges_compiled(v.shape[0], a, b, ws, np.float32(0.01), 20),
                        args.repeats)
        vv, ff = S.check_mesh(v, f)
        numpy_graph_s, _ = timed(lambda: S.edge_weights_numpy(vv, ff), 1)
        t = time.perf_counter()
        S.segment_sorted_edges(v.shape[0], a.tolist(), b.tolist(), ws.tolist(), 0.01, 20)
        python_uf = time.perf_counter() - t
        fallback_s, _ = timed(lambda: S.segment_pure_python(v, f), 1)
        emit(bench="segmentator", vertices=int(v.shape[0]), faces=int(f.shape[0]), edges=int(3 * f.shape[0]),
             segments=int(len(np.unique(seg))), numba=S.HAVE_NUMBA, first_call_s=round(first, 3),
             median_s=round(seg_s, 4), graph_s=round(graph_s, 4), sort_std_order_s=round(sort_s, 4),
             sort_radix_fallback_s=round(radix_s, 4), sort_numpy_stable_argsort_s=round(numpy_sort_s, 4),
             union_find_s=round(uf_s, 4), graph_numpy_fallback_s=round(numpy_graph_s, 4),
             union_find_pure_python_s=round(python_uf, 3),
             union_find_speedup_numba=round(python_uf / max(uf_s, 1e-9), 1),
             whole_without_numba_s=round(fallback_s, 3))

        if args.cpp is not None:
            work = tmp / "cpp"
            work.mkdir()
            shutil.copyfile(mesh_path, work / "mesh.ply")
            walls, cpus = [], []
            for _ in range(args.repeats):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.perf_counter()
                subprocess.run([str(args.cpp), str(work / "mesh.ply")], check=True, stdout=subprocess.DEVNULL)
                walls.append(time.perf_counter() - t)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            cpp_seg = read_segs_json(work / "mesh.0.010000.segs.json")

            def ours_end_to_end():
                m = read_ply(work / "mesh.ply", require_faces=True)
                s = S.segment_mesh(m.vertices, m.faces)
                write_segs_json(work / "ours.segs.json", s, scene_id="mesh")
                return s

            ours_walls, ours_cpus = [], []
            for _ in range(args.repeats):
                c0, t = time.process_time(), time.perf_counter()
                ours = ours_end_to_end()
                ours_walls.append(time.perf_counter() - t)
                ours_cpus.append(time.process_time() - c0)
            cpp_wall, cpp_cpu = statistics.median(walls), statistics.median(cpus)
            our_wall, our_cpu = statistics.median(ours_walls), statistics.median(ours_cpus)
            emit(bench="segmentator_cpp", binary=str(args.cpp), cpp_wall_s=round(cpp_wall, 4),
                 cpp_cpu_s=round(cpp_cpu, 4), ours_wall_s=round(our_wall, 4), ours_cpu_s=round(our_cpu, 4),
                 ratio_wall=round(our_wall / cpp_wall, 2), ratio_cpu=round(our_cpu / max(cpp_cpu, 1e-9), 2),
                 ours_segment_only_s=round(seg_s, 4), cpp_segments=int(len(np.unique(cpp_seg))),
                 ours_segments=int(len(np.unique(ours))),
                 adjusted_rand_index=round(adjusted_rand_index(cpp_seg, ours), 4),
                 identical_vertex_ids=round(float(np.mean(cpp_seg == ours)), 4))

        if args.cpp is not None:
            agreement(args.cpp, tmp / "agree", [scene.folder / "scene0000_00_vh_clean_2.ply",
                                                test.folder / f"{test.scene_id}_vh_clean_2.ply"])

        label_map = {row.split("\t")[1]: int(row.split("\t")[4])
                     for row in (ds.root / "scannetv2-labels.combined.tsv").read_text().splitlines()[1:]}
        out = tmp / "out"
        ann_s, res = timed(lambda: process_scene(SceneTask("scene0000_00", scene.folder, "train", out, force=True),
                                                 label_map), args.repeats)
        assert res.status == "done", res.error
        test_s, res = timed(lambda: process_scene(SceneTask(test.scene_id, test.folder, "test", out, force=True),
                                                  None), args.repeats)
        assert res.status == "done", res.error
        emit(bench="scene", vertices=scene.num_vertices, annotated_s=round(ann_s, 3), test_s=round(test_s, 3))

        many = tmp / "many"
        (many / "scans").mkdir(parents=True)
        shutil.copyfile(ds.root / "scannetv2-labels.combined.tsv", many / "scannetv2-labels.combined.tsv")
        for i in range(args.copies):
            copy_scene(scene.folder, many / "scans", f"scene{i:04d}_00")
        (many / "scannetv2_train.txt").write_text("".join(f"scene{i:04d}_00\n" for i in range(args.copies)))
        results = {}
        for workers in sorted({1, args.workers}):
            target = tmp / f"out_w{workers}"
            summary = preprocess_scannet(many, target, workers=workers, progress=False)
            assert summary.ok, summary.failed
            results[workers] = summary.seconds / args.copies
        best_workers = min(results, key=results.get)  # on a busy machine more workers may not help
        best = results[best_workers]
        resume_t = time.perf_counter()
        again = preprocess_scannet(many, tmp / f"out_w{args.workers}", workers=args.workers, progress=False)
        resume_per_scene = (time.perf_counter() - resume_t) / args.copies
        assert len(again.skipped) == args.copies
        # Test scenes also run the segmentator; their per-scene time scales with the same parallel speed-up.
        projected = SCANNET_TRAINVAL * best + SCANNET_TEST * test_s * best / results[1]
        emit(bench="throughput", scenes=args.copies, vertices=scene.num_vertices, cpus=os.cpu_count(),
             load_average_1min=round(os.getloadavg()[0], 1),
             seconds_per_scene_1_worker=round(results[1], 3),
             **{f"seconds_per_scene_{args.workers}_workers": round(results[args.workers], 3)},
             parallel_speedup=round(results[1] / results[args.workers], 2),
             resume_check_seconds_per_scene=round(resume_per_scene, 4),
             projected_with_workers=best_workers, projected_scannet_minutes=round(projected / 60, 1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
