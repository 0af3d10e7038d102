"""Compiling the few hot loops that NumPy cannot vectorise (the OpenFst reader, the WFST search).

numba compiles them once and keeps the machine code on disk next to the
sources, or in the user's cache when the installation is read-only.  Where no
cache directory is writable at all (a locked-down container user), numba
refuses ``cache=True`` at decoration time; the functions are then compiled
in memory at each start instead, which costs a few seconds, never a failure.
``nogil`` lets decoder threads run them in parallel.
"""
from __future__ import annotations

import numba


def compiled(fn):
    """``numba.njit(cache=True, nogil=True)``, or without the on-disk cache where none can be written."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)
