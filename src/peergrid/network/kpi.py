"""Network KPIs of a run: voltage and loading violations, extremes and losses, defined once.

summary.json's network block and the report's network section both come from `network_kpis`,
with the tolerances below, so they cannot count differently. Over T slots, M monitored (LV)
buses and K monitored branches (lines and transformers with a rating):

- a bus is over-voltage in a slot when v_pu > v_max_pu + `V_TOL_PU`, under-voltage when
  v_pu < v_min_pu − `V_TOL_PU`; a slot with a voltage violation has at least one such bus
  (a slot with both kinds counts once);
- a branch is overloaded when loading_pct > max_loading_pct + `LOADING_TOL_PCT`;
- losses [kWh] = Σ_t losses_kw · dt_h; curtailment [kWh] = Σ_t curtailed_kwh.

A NaN (a slot whose power flow did not converge) is ignored: extremes are over the finite
values (NaN when there are none, e.g. `max_loading_pct` of a feeder without monitored
branches), and a NaN is never a violation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from peergrid.network.feeder import Feeder
from peergrid.network.powerflow import FlowResult

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

V_TOL_PU = 1e-6
"""A voltage counts as outside a limit when beyond it by more than this [pu]: a bus held at a
limit (by an envelope) is not a violation, and neither are the ~1e-7 pu by which float32 copies
(network.parquet, the report's arrays) move a value; a real excursion of 1e-5 pu counts."""

LOADING_TOL_PCT = 1e-4
"""A branch counts as overloaded when above its limit by more than this [%]."""


def overvoltage(v_pu: NDArray[np.floating], v_max_pu: float) -> BoolArray:
    """Where a voltage [pu] is above `v_max_pu` by more than `V_TOL_PU` (NaN: False)."""
    return np.asarray(v_pu > v_max_pu + V_TOL_PU, dtype=np.bool_)


def undervoltage(v_pu: NDArray[np.floating], v_min_pu: float) -> BoolArray:
    """Where a voltage [pu] is below `v_min_pu` by more than `V_TOL_PU` (NaN: False)."""
    return np.asarray(v_pu < v_min_pu - V_TOL_PU, dtype=np.bool_)


def overloaded(loading_pct: NDArray[np.floating], max_loading_pct: float) -> BoolArray:
    """Where a loading [%] is above `max_loading_pct` by more than `LOADING_TOL_PCT`."""
    return np.asarray(loading_pct > max_loading_pct + LOADING_TOL_PCT, dtype=np.bool_)


#: summary.json's keys of a `NetworkKpis` and the decimals they are rounded to (None: a count).
SUMMARY_DECIMALS: dict[str, int | None] = {
    "min_voltage_pu": 5,
    "max_voltage_pu": 5,
    "voltage_violation_slots": None,
    "undervoltage_slots": None,
    "overvoltage_slots": None,
    "overload_slots": None,
    "max_loading_pct": 3,
    "losses_kwh": 4,
}


@dataclass(frozen=True)
class NetworkKpis:
    """Key network figures of one case (counts are slots, out of `n_slots`).

    Attributes:
        n_slots: slots of the run.
        min_voltage_pu, max_voltage_pu: lowest and highest voltage at any monitored bus [pu].
        overvoltage_slots, undervoltage_slots, voltage_violation_slots: slots with at least
            one bus above, below, outside the voltage limits.
        overload_slots: slots with at least one overloaded branch.
        max_loading_pct: highest loading of any monitored branch [% of rating].
        losses_kwh: energy lost in the feeder [kWh].
        curtailed_kwh: generation curtailed in the community [kWh].
    """

    n_slots: int
    min_voltage_pu: float
    max_voltage_pu: float
    overvoltage_slots: int
    undervoltage_slots: int
    voltage_violation_slots: int
    overload_slots: int
    max_loading_pct: float
    losses_kwh: float
    curtailed_kwh: float

    def summary(self) -> dict[str, Any]:
        """The figures as summary.json writes them (`SUMMARY_DECIMALS`; without `n_slots` and
        `curtailed_kwh`, which the summary states elsewhere)."""
        out: dict[str, Any] = {}
        for key, decimals in SUMMARY_DECIMALS.items():
            value = getattr(self, key)
            out[key] = int(value) if decimals is None else round(float(value), decimals)
        return out

    @classmethod
    def from_summary(cls, block: Mapping[str, Any], n_slots: int) -> NetworkKpis:
        """The figures of one case from summary.json's network block (or its `baseline`);
        null (JSON's NaN) is NaN. A missing key is an error: the engine writes them all."""

        def number(key: str) -> float:
            value = block[key]
            return float("nan") if value is None else float(value)

        return cls(
            n_slots=n_slots,
            min_voltage_pu=number("min_voltage_pu"),
            max_voltage_pu=number("max_voltage_pu"),
            overvoltage_slots=int(block["overvoltage_slots"]),
            undervoltage_slots=int(block["undervoltage_slots"]),
            voltage_violation_slots=int(block["voltage_violation_slots"]),
            overload_slots=int(block["overload_slots"]),
            max_loading_pct=number("max_loading_pct"),
            losses_kwh=number("losses_kwh"),
            curtailed_kwh=number("curtailed_kwh"),
        )


def _reduce_or_nan(values: NDArray[np.floating], *, high: bool) -> float:
    """Max (high) or min of all finite values, NaN if there are none (no warning)."""
    if values.size == 0:
        return float("nan")
    ufunc = np.fmax if high else np.fmin
    return float(ufunc.reduce(values, axis=None))


def network_kpis(
    v_pu: NDArray[np.floating],
    loading_pct: NDArray[np.floating],
    losses_kw: NDArray[np.floating],
    *,
    dt_h: float,
    v_min_pu: float,
    v_max_pu: float,
    max_loading_pct: float,
    curtailed_kwh: NDArray[np.floating] | None = None,
) -> NetworkKpis:
    """The key figures of one case (see the module docstring).

    Args:
        v_pu: voltage of the monitored buses [pu], (T, M).
        loading_pct: loading of the monitored branches [% of rating], (T, K); K may be 0.
        losses_kw: feeder losses [kW], (T,).
        dt_h: slot length [h].
        v_min_pu, v_max_pu, max_loading_pct: the limits [pu, pu, %].
        curtailed_kwh: curtailed generation [kWh per slot], any shape; None: none.
    """
    over = np.any(overvoltage(v_pu, v_max_pu), axis=1)
    under = np.any(undervoltage(v_pu, v_min_pu), axis=1)
    overload = np.any(overloaded(loading_pct, max_loading_pct), axis=1)
    curtailed = 0.0 if curtailed_kwh is None else float(np.nansum(curtailed_kwh))
    return NetworkKpis(
        n_slots=int(np.shape(v_pu)[0]),
        min_voltage_pu=_reduce_or_nan(v_pu, high=False),
        max_voltage_pu=_reduce_or_nan(v_pu, high=True),
        overvoltage_slots=int(over.sum()),
        undervoltage_slots=int(under.sum()),
        voltage_violation_slots=int((over | under).sum()),
        overload_slots=int(overload.sum()),
        max_loading_pct=_reduce_or_nan(loading_pct, high=True),
        losses_kwh=float(np.nansum(losses_kw) * dt_h),
        curtailed_kwh=curtailed,
    )


def worst_buses(v_pu: NDArray[np.floating], n: int, *, high: bool) -> IntArray:
    """Indices of the `n` buses with the highest maximum (high) or lowest minimum voltage.

    Ties keep the given (electrical) order; buses with no finite value come last.
    """
    if high:
        key = -np.fmax.reduce(v_pu, axis=0).astype(np.float64)
    else:
        key = np.fmin.reduce(v_pu, axis=0).astype(np.float64)
    order = np.argsort(key, kind="stable")  # NaN sorts last
    return np.asarray(order[:n], dtype=np.int64)


def most_loaded_branches(loading_pct: NDArray[np.floating], n: int) -> IntArray:
    """Indices of the `n` branches with the highest maximum loading, ties in the given order."""
    key = -np.fmax.reduce(loading_pct, axis=0).astype(np.float64)
    return np.asarray(np.argsort(key, kind="stable")[:n], dtype=np.int64)


def feeder_kpis(
    feeder: Feeder,
    flow: FlowResult,
    dt_h: float,
    *,
    v_min_pu: float,
    v_max_pu: float,
    max_loading_pct: float,
) -> dict[str, Any]:
    """summary.json's figures of one power-flow run over the feeder's LV buses and monitored
    branches (`NetworkKpis.summary`), with `worst_bus`, the bus of the highest voltage."""
    v = flow.v_pu[:, feeder.lv_buses]
    kpis = network_kpis(
        v,
        flow.loading_pct[:, feeder.monitored_branches],
        flow.losses_kw,
        dt_h=dt_h,
        v_min_pu=v_min_pu,
        v_max_pu=v_max_pu,
        max_loading_pct=max_loading_pct,
    )
    worst = int(worst_buses(v, 1, high=True)[0])
    return {**kpis.summary(), "worst_bus": str(feeder.bus_names[feeder.lv_buses[worst]])}
