"""Seeded random streams: one independent, reproducible stream per purpose.

A run derives every random draw from the scenario seed and a purpose name ("groups", "demand",
"ev", ...). Streams for different purposes are independent, so adding draws for one purpose
never changes another's, and no global random state is touched.
"""

from __future__ import annotations

import zlib

import numpy as np


def child_rng(seed: int, purpose: str) -> np.random.Generator:
    """A generator for `purpose`, determined by (`seed`, `purpose`) alone."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(purpose.encode())]))
