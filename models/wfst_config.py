"""The WFST search's settings, apart from the search itself so that settings and the CLI need no compiler."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WfstConfig:
    """The search settings; defaults are FunASR's (``--global-beam 3 --lattice-beam 3 --am-scale 10 --fst-inc-wts 20``).

    ``min_active`` 200 is fixed in the reference and, with beam 3, is the rule
    that decides pruning.  ``lattice_beam`` only prunes the lattice, never the
    best path, so it is validated and otherwise unused.
    """

    beam: float = 3.0
    lattice_beam: float = 3.0
    am_scale: float = 10.0
    fst_inc_wts: int = 20
    min_active: int = 200
    beam_delta: float = 0.5
    hash_ratio: float = 2.0

    def __post_init__(self) -> None:
        for name in ("beam", "lattice_beam", "am_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if isinstance(self.fst_inc_wts, bool) or not isinstance(self.fst_inc_wts, int) or self.fst_inc_wts < 0:
            raise ValueError(f"fst_inc_wts must be a non-negative integer, got {self.fst_inc_wts!r}")
        if self.min_active < 0 or self.hash_ratio < 1 or self.beam_delta <= 0:
            raise ValueError("min_active must be >= 0, hash_ratio >= 1 and beam_delta > 0")
