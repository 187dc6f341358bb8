"""Run a policy over whole profiles, the way the engine's slot loop calls it.

For tests, benchmarks and notebooks; the engine has its own loop (with the market in it).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from peergrid.assets.params import AssetParams, FloatArray, Profiles
from peergrid.ems.base import Dispatch, EmsPolicy, slot_view
from peergrid.ems.envelope import step_within_limits

DISPATCH_FIELDS = (
    "demand_kwh",
    "generation_kwh",
    "battery_charge_kwh",
    "battery_discharge_kwh",
    "ev_charge_kwh",
    "ev_discharge_kwh",
    "thermal_kwh",
    "shiftable_kwh",
    "ev_unserved_kwh",
    "buy_limit_price",
    "sell_limit_price",
)


def horizon_slots(policy: EmsPolicy[Any], dt_h: float) -> int:
    """Forecast rows the policy asks for [slots], at least 1."""
    return max(1, round(policy.horizon_h / dt_h))


def energy_forecast_slots(policy: EmsPolicy[Any], dt_h: float) -> int:
    """Rows of demand, PV and temperature forecast the policy reads from the slot it decides
    on [slots]: its horizon if it `reads_energy_forecast`, else 1."""
    return horizon_slots(policy, dt_h) if policy.reads_energy_forecast else 1


def run_policy(
    policy: EmsPolicy[Any],
    assets: AssetParams,
    profiles: Profiles,
    retail: FloatArray,
    feed_in: FloatArray,
    dt_h: float,
    *,
    export_limit_kwh: FloatArray | None = None,
    import_limit_kwh: FloatArray | None = None,
) -> dict[str, Any]:
    """Step `policy` through every slot with perfect-foresight forecasts, inside per-slot
    export and import limits (T, P) [kWh] where given (`envelope.step_within_limits`).

    Returns:
        The `Dispatch` fields as (T, P) arrays; the states `battery_soc_kwh`, `ev_soc_kwh` and
        `indoor_temp_c` as (T + 1, P) arrays (row t = start of slot t); `job_start_slot`, (J,),
        when the state records it; `step_s`, the time spent in `step` [s].
    """
    n_slots, n = profiles.base_demand_kwh.shape
    horizon = horizon_slots(policy, dt_h)
    out = {name: np.empty((n_slots, n)) for name in DISPATCH_FIELDS}
    soc_b = np.empty((n_slots + 1, n))
    soc_e = np.empty((n_slots + 1, n))
    temp = np.empty((n_slots + 1, n))
    state = policy.init_state(assets)
    soc_b[0], soc_e[0], temp[0] = state.battery_soc_kwh, state.ev_soc_kwh, state.indoor_temp_c
    step_s = 0.0
    for t in range(n_slots):
        inputs, forecast = slot_view(profiles, retail, feed_in, t, horizon, dt_h)
        t0 = time.perf_counter()
        exp = None if export_limit_kwh is None else export_limit_kwh[t]
        imp = None if import_limit_kwh is None else import_limit_kwh[t]
        state, d = step_within_limits(policy, state, inputs, forecast, assets, exp, imp)
        step_s += time.perf_counter() - t0
        _store(out, d, t)
        soc_b[t + 1], soc_e[t + 1], temp[t + 1] = (
            state.battery_soc_kwh,
            state.ev_soc_kwh,
            state.indoor_temp_c,
        )
    result: dict[str, Any] = dict(out)
    result.update(battery_soc_kwh=soc_b, ev_soc_kwh=soc_e, indoor_temp_c=temp, step_s=step_s)
    job_start = getattr(state, "job_start_slot", None)
    if callable(job_start):
        result["job_start_slot"] = job_start()
    return result


def _store(out: dict[str, FloatArray], d: Dispatch, t: int) -> None:
    for name in DISPATCH_FIELDS:
        out[name][t] = getattr(d, name)
