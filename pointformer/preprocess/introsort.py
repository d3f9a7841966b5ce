"""The sort order of GCC's ``std::sort`` (libstdc++ introsort), compiled with numba.

ScanNet's Segmentator sorts its edges with ``std::sort``, which is not stable: edges of equal weight
come out in an order that depends on the algorithm. That order decides which vertex becomes a
segment's root, i.e. the segment ids written to segs.json. Sorting with the same algorithm —
introsort with a median-of-three pivot moved to the front, an unguarded partition, a heapsort
fallback at depth 2*floor(log2 n), and a final insertion sort with a 16-element threshold — makes
:func:`pointformer.preprocess.segmentator.segment_mesh` reproduce the official tool's segIndices
exactly, ids included (measured in benchmarks/preprocess.py). The algorithm is deterministic, so the
result is the same on every machine.

Only the keys are compared (``<``, like the tool's ``edge::operator<``); the returned permutation
carries the original positions along.
"""
from __future__ import annotations

import numpy as np

from pointformer.preprocess.jit import jit

_THRESHOLD = 16  # libstdc++'s _S_threshold


def _swap(k: np.ndarray, v: np.ndarray, i: int, j: int) -> None:
    k[i], k[j] = k[j], k[i]
    v[i], v[j] = v[j], v[i]


def _partition_pivot(k: np.ndarray, v: np.ndarray, first: int, last: int) -> int:
    """Median of (first+1, mid, last-1) moved to ``first``, then an unguarded partition of the rest."""
    a, b, c = first + 1, first + (last - first) // 2, last - 1
    if k[a] < k[b]:
        if k[b] < k[c]:
            _swap(k, v, first, b)
        elif k[a] < k[c]:
            _swap(k, v, first, c)
        else:
            _swap(k, v, first, a)
    elif k[a] < k[c]:
        _swap(k, v, first, a)
    elif k[b] < k[c]:
        _swap(k, v, first, c)
    else:
        _swap(k, v, first, b)
    pivot = k[first]
    lo, hi = first + 1, last
    while True:
        while k[lo] < pivot:
            lo += 1
        hi -= 1
        while pivot < k[hi]:
            hi -= 1
        if not lo < hi:
            return lo
        _swap(k, v, lo, hi)
        lo += 1


def _linear_insert(k: np.ndarray, v: np.ndarray, last: int) -> None:
    """Move element ``last`` left past every larger element (a smaller one is known to exist)."""
    key, val = k[last], v[last]
    prev = last - 1
    while key < k[prev]:
        k[last], v[last] = k[prev], v[prev]
        last = prev
        prev -= 1
    k[last], v[last] = key, val


def _insertion_sort(k: np.ndarray, v: np.ndarray, first: int, last: int) -> None:
    for i in range(first + 1, last):
        if k[i] < k[first]:
            key, val = k[i], v[i]
            for j in range(i, first, -1):
                k[j], v[j] = k[j - 1], v[j - 1]
            k[first], v[first] = key, val
        else:
            _linear_insert(k, v, i)


def _adjust_heap(k: np.ndarray, v: np.ndarray, first: int, hole: int, length: int, key, val) -> None:
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if k[first + child] < k[first + child - 1]:
            child -= 1
        k[first + hole], v[first + hole] = k[first + child], v[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        k[first + hole], v[first + hole] = k[first + child - 1], v[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and k[first + parent] < key:
        k[first + hole], v[first + hole] = k[first + parent], v[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    k[first + hole], v[first + hole] = key, val


def _heap_sort(k: np.ndarray, v: np.ndarray, first: int, last: int) -> None:
    length = last - first
    if length >= 2:
        parent = (length - 2) // 2
        while True:
            _adjust_heap(k, v, first, parent, length, k[first + parent], v[first + parent])
            if parent == 0:
                break
            parent -= 1
    while last - first > 1:
        last -= 1
        key, val = k[last], v[last]
        k[last], v[last] = k[first], v[first]
        _adjust_heap(k, v, first, 0, last - first, key, val)


def _sort_order(keys: np.ndarray) -> np.ndarray:
    """Permutation int64 [N] that std::sort would produce for ``keys`` [N] (any comparable dtype)."""
    n = keys.shape[0]
    k = keys.copy()
    v = np.arange(n)
    if n < 2:
        return v
    log2 = 0
    while (n >> (log2 + 1)) > 0:
        log2 += 1
    # The recursion (right part first, then loop on the left) as an explicit stack; the parts are
    # disjoint, so the order in which they are finished does not change the result.
    stack = np.empty((2 * log2 + 2, 3), dtype=np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, 2 * log2
    top = 1
    while top > 0:
        top -= 1
        first, last, depth = stack[top, 0], stack[top, 1], stack[top, 2]
        while last - first > _THRESHOLD:
            if depth == 0:
                _heap_sort(k, v, first, last)
                break
            depth -= 1
            cut = _partition_pivot(k, v, first, last)
            stack[top, 0], stack[top, 1], stack[top, 2] = cut, last, depth
            top += 1
            last = cut
    if n > _THRESHOLD:
        _insertion_sort(k, v, 0, _THRESHOLD)
        for i in range(_THRESHOLD, n):
            _linear_insert(k, v, i)
    else:
        _insertion_sort(k, v, 0, n)
    return v


# Rebinding the helpers first makes the compiled _sort_order call compiled helpers.
_swap = jit(_swap)
_partition_pivot = jit(_partition_pivot)
_linear_insert = jit(_linear_insert)
_insertion_sort = jit(_insertion_sort)
_adjust_heap = jit(_adjust_heap)
_heap_sort = jit(_heap_sort)
_sort_order_compiled = jit(_sort_order)


def std_sort_order(keys: np.ndarray) -> np.ndarray:
    """The permutation GCC's ``std::sort`` applies to ``keys`` [N] (compared with ``<``): int64 [N].

    ``keys[std_sort_order(keys)]`` is sorted; among equal keys the order is the one the C++ tool
    gets. Pure Python without numba (correct, but slow for millions of keys).
    """
    keys = np.ascontiguousarray(keys)
    if keys.ndim != 1:
        raise ValueError(f"keys must be 1-D, got shape {keys.shape}")
    return _sort_order_compiled(keys)
