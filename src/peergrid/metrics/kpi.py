"""Key performance indicators of a community run: pure functions of a run's arrays.

Core arithmetic: the engine's summary computes every figure here, and reports show those
figures (or call these functions), never a second copy of the arithmetic.

Definitions (community level, over the whole run; Luthander et al. 2015 for the first two):
- self-sufficiency = 1 − grid import / consumption, consumption = demand + storage charge −
  storage discharge (what the homes used, storage losses and EV driving included);
- self-consumption = 1 − grid export / generation;
- peak import [kW] = max over slots of the community's billed grid import Σ_n import_n / Δt;
- peak-to-average = peak / mean of that same import profile;
- Jain's fairness index of per-participant savings x: (Σx)² / (n·Σx²), 1 = everyone saves the
  same; negative savings are counted as zero (the index is defined for x ≥ 0), and a community
  in which nobody saves scores 1;
- participants worse off = how many pay more than in the baseline (by more than
  `WORSE_OFF_TOL`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

WORSE_OFF_TOL = 1e-9
"""A saving below −WORSE_OFF_TOL [currency] counts as worse off: rounding noise does not."""


def jain_index(x: FloatArray) -> float:
    """Jain's fairness index of non-negative allocations (negatives clipped to 0)."""
    v = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    sq = float(np.sum(v * v))
    if v.size == 0 or sq == 0.0:
        return 1.0
    return float(np.sum(v) ** 2 / (v.size * sq))


def self_sufficiency(consumption_kwh: float, grid_import_kwh: float) -> float:
    """Share of consumption not imported from the grid [-]."""
    return 1.0 - grid_import_kwh / consumption_kwh if consumption_kwh > 0 else float("nan")


def self_consumption(generation_kwh: float, grid_export_kwh: float) -> float:
    """Share of generation used inside the community [-]."""
    return 1.0 - grid_export_kwh / generation_kwh if generation_kwh > 0 else float("nan")


def peak_and_par(import_per_slot_kwh: FloatArray, dt_h: float) -> tuple[float, float]:
    """Peak import [kW] and peak-to-average ratio [-] of a community import profile (T,)."""
    p_kw = import_per_slot_kwh / dt_h
    peak = float(p_kw.max()) if p_kw.size else 0.0
    mean = float(p_kw.mean()) if p_kw.size else 0.0
    return peak, (peak / mean if mean > 0 else float("nan"))


def saving_pct(baseline: FloatArray, actual: FloatArray) -> FloatArray:
    """Saving as a percentage of the baseline bill's magnitude (0 where the baseline is 0)."""
    denom = np.abs(baseline)
    return np.divide((baseline - actual) * 100.0, denom, out=np.zeros_like(denom), where=denom > 0)


def participants_worse_off(saving: FloatArray) -> int:
    """How many participants pay more than in the baseline: savings [currency] below
    −`WORSE_OFF_TOL` (NaN counts as not worse off)."""
    return int(np.sum(np.asarray(saving, dtype=np.float64) < -WORSE_OFF_TOL))
