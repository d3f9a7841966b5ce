"""std_sort_order: a permutation that sorts, and the tie order of GCC's std::sort."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from pointformer.preprocess import introsort
from pointformer.preprocess.introsort import std_sort_order


def _cases():
    rng = np.random.default_rng(0)
    yield np.zeros(0, np.float32)
    yield np.array([3.0], np.float32)
    for n in (2, 5, 16, 17, 33, 1000, 20000):
        yield rng.random(n).astype(np.float32)
        yield rng.integers(0, 4, n).astype(np.float32)         # many ties
        yield np.sort(rng.random(n)).astype(np.float32)         # sorted
        yield np.sort(rng.random(n))[::-1].astype(np.float32)   # reversed
        yield np.full(n, 0.5, np.float32)                       # all equal


@pytest.mark.parametrize("keys", list(_cases()), ids=lambda k: f"n{k.shape[0]}")
def test_sorts_and_is_a_permutation(keys):
    order = std_sort_order(keys)
    assert order.dtype == np.int64 and np.array_equal(np.sort(order), np.arange(keys.shape[0]))
    assert (np.diff(keys[order]) >= 0).all()


def test_python_driver_matches_compiled():
    keys = np.random.default_rng(1).integers(0, 7, 3000).astype(np.float32)
    np.testing.assert_array_equal(introsort._sort_order(keys), std_sort_order(keys))


def test_heapsort_fallback_sorts_a_range():
    rng = np.random.default_rng(2)
    k = rng.integers(0, 50, 500).astype(np.float32)
    v = np.arange(500)
    before = k.copy()
    introsort._heap_sort(k, v, 100, 400)
    assert (np.diff(k[100:400]) >= 0).all()
    np.testing.assert_array_equal(k[:100], before[:100])
    np.testing.assert_array_equal(before[v], k)


def test_rejects_2d_keys():
    with pytest.raises(ValueError, match="1-D"):
        std_sort_order(np.zeros((2, 2)))


CPP = r"""
#include <algorithm>
#include <cstdio>
#include <vector>
struct item { float w; int i; };
bool operator<(const item& a, const item& b) { return a.w < b.w; }
int main() {
  int n; if (std::scanf("%d", &n) != 1) return 1;
  std::vector<item> v(n);
  for (int i = 0; i < n; ++i) { std::scanf("%f", &v[i].w); v[i].i = i; }
  std::sort(v.begin(), v.end());
  for (int i = 0; i < n; ++i) std::printf("%d\n", v[i].i);
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compare with std::sort")
def test_tie_order_equals_gcc_std_sort(tmp_path):
    source = tmp_path / "sort.cpp"
    source.write_text(CPP)
    binary = tmp_path / "sort"
    subprocess.run(["g++", "-O2", "-o", str(binary), str(source)], check=True)
    rng = np.random.default_rng(3)
    for keys in (rng.integers(0, 30, 50000).astype(np.float32),       # heavy ties: the order matters
                 (rng.random(20000) * 1e-3).astype(np.float32), np.full(100, 1.0, np.float32)):
        text = f"{keys.shape[0]}\n" + "\n".join(repr(float(x)) for x in keys)
        out = subprocess.run([str(binary)], input=text, capture_output=True, text=True, check=True).stdout
        np.testing.assert_array_equal(std_sort_order(keys), np.array(out.split(), dtype=np.int64))
