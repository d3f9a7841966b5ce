"""Optional numba compilation of the preprocessing hot loops (segmentator, edge sort)."""
from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

try:  # numba is a declared dependency; without it the same functions run as plain Python
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

HAVE_NUMBA = numba is not None


def jit(fn: F) -> F:
    """``fn`` compiled with numba (nopython, cached on disk when a cache folder is writable:
    compiled once per install, ~0.3 s to load later); ``fn`` itself when numba is missing.

    Compilation is lazy (first call), so a compiled function calling other module-level functions
    must be created after those names are rebound to their compiled versions.
    """
    if numba is None:
        return fn
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "no locator available": no writable cache location; compile per process
        return numba.njit(nogil=True)(fn)
