"""Export and import limits at every connection point, respected by every EMS policy.

The network operator's limits (a static export or import cap, or its dynamic operating
envelopes, `network/envelope.py`, as kWh per slot and participant) are inputs of the lifecycle's
`bid` and `deliver` phases (`engine/lifecycle.py`): after a policy's step, and again on the
actual flows at delivery, `enforce_envelope` brings each participant's net position
(`Dispatch.net_kwh`, export positive) into [−import limit, export limit]:

- **Export above the limit**: discharge the battery less, then the EV (v2h) less, then charge
  the battery more from the surplus (within its power and SoC limits, only where it is not
  discharging), then curtail PV (`generation_kwh` goes down; curtailment =
  `inputs.pv_kwh − dispatch.generation_kwh`). This always suffices: with no discharge and no
  PV the net position is ≤ 0.
- **Import above the limit**: charge the battery less, then discharge it more (within its
  limits, only where it is not charging). What is left (inflexible load, heat pump, appliance
  runs and EV charging above the import limit) stays; the caller sees it as
  max(−net − import limit, 0) and reports it.

Demand, thermal load, appliance runs and EV charging are never changed, so comfort, job
windows and EV departure targets stay what the inner policy made them.

The policy's state takes the new battery and EV states of charge (`EmsState.with_physical`), so
the next step starts from what really happened. What each registered policy plans ahead is
left as it is, and stays valid:

- `self-consumption`: no plan.
- `price-aware`: the battery plan is a reserve per slot, compared with the current SoC each
  step; the EV's energy still to buy at its price cap (`ev_at_cap_kwh`) may overstate what is
  needed after a v2h discharge was cut — the EV then charges at most to its target anyway.
- `coordinated`: the plan is a trajectory of states that the policy tracks from the actual
  state each slot, so a deviation is recovered in the next slots (within the limits, which
  the lifecycle enforces again).
- `stackelberg`: the follower's state is updated as `price-aware`'s; the leader's price plan
  was found with unconstrained followers and is not recomputed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from peergrid.assets import battery, ev
from peergrid.assets.params import AssetParams, BoolArray, FloatArray
from peergrid.ems.base import Dispatch, EmsPolicy, EmsState, Forecast, PhysicalState, SlotInputs

S = TypeVar("S", bound=EmsState)


@dataclass(frozen=True, eq=False, slots=True)
class Enforced:
    """A dispatch brought into the limits, and the states of charge it leads to.

    Attributes:
        dispatch: the dispatch with the changed battery, EV and PV flows.
        battery_soc_kwh: home-battery state at the end of the slot, (P,) [kWh].
        ev_soc_kwh: EV state at the end of the slot, (P,) [kWh].
        changed: participants whose dispatch changed, (P,).
    """

    dispatch: Dispatch
    battery_soc_kwh: FloatArray
    ev_soc_kwh: FloatArray
    changed: BoolArray


def _safe_eta(eta: FloatArray) -> FloatArray:
    """Efficiencies of absent assets (≤ 0) as 1, as the policies use them."""
    return np.where(eta > 0.0, eta, 1.0).astype(np.float64)


def _cut(value: FloatArray, by: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Reduce `value` by up to `by` (both ≥ 0): (new value, what is left of `by`); exactly 0
    where `by` covers the value."""
    covered = by >= value
    return np.where(covered, 0.0, value - by), np.where(covered, by - value, 0.0)


def enforce_envelope(
    d: Dispatch,
    *,
    export_limit_kwh: FloatArray,
    import_limit_kwh: FloatArray,
    battery_soc_start_kwh: FloatArray,
    battery_soc_end_kwh: FloatArray,
    ev_soc_start_kwh: FloatArray,
    ev_soc_end_kwh: FloatArray,
    assets: AssetParams,
    dt_h: float,
) -> Enforced:
    """Bring each participant's net position into [−import limit, export limit] (module
    docstring for the order of the measures).

    Args:
        d: the inner policy's dispatch of the slot.
        export_limit_kwh, import_limit_kwh: the slot's limits, (P,) [kWh], ≥ 0 (+inf: none).
        battery_soc_start_kwh: battery state at the start of the slot, (P,) [kWh].
        battery_soc_end_kwh: the inner policy's battery state at its end (kept where the
            battery flows do not change), (P,) [kWh].
        ev_soc_start_kwh: EV state at the start of the slot after this slot's trip, (P,).
        ev_soc_end_kwh: the inner policy's EV state at the end of the slot, (P,).
        assets: the participants' assets (battery limits and efficiencies).
        dt_h: slot length [h].
    """
    net = d.net_kwh
    over = net - export_limit_kwh  # > 0: exports too much
    under = -net - import_limit_kwh  # > 0: imports too much
    exporting = over > 0.0
    importing = under > 0.0
    if not (exporting.any() or importing.any()):
        return Enforced(d, battery_soc_end_kwh, ev_soc_end_kwh, exporting)

    b = assets.battery
    eta_c, eta_d = _safe_eta(b.efficiency_charge), _safe_eta(b.efficiency_discharge)
    bat_ch, bat_dis = d.battery_charge_kwh, d.battery_discharge_kwh
    ev_dis, gen = d.ev_discharge_kwh, d.generation_kwh

    # export too high: less discharge (battery, then EV), more charge, then curtail PV
    left = np.where(exporting, over, 0.0)
    bat_dis, left = _cut(bat_dis, left)
    ev_dis, left = _cut(ev_dis, left)
    room = (
        battery.charge_limit_kwh(battery_soc_start_kwh, b.soc_max_kwh, b.power_kw, eta_c, dt_h)
        - bat_ch
    )
    more = np.where(bat_dis > 0.0, 0.0, np.minimum(left, np.maximum(room, 0.0)))
    bat_ch = bat_ch + more
    left = left - more
    gen, left = _cut(gen, left)

    # import too high: less battery charge, then more discharge
    need = np.where(importing, under, 0.0)
    bat_ch, need = _cut(bat_ch, need)
    room = (
        battery.discharge_limit_kwh(battery_soc_start_kwh, b.soc_min_kwh, b.power_kw, eta_d, dt_h)
        - bat_dis
    )
    bat_dis = bat_dis + np.where(bat_ch > 0.0, 0.0, np.minimum(need, np.maximum(room, 0.0)))

    bat_changed = (bat_ch != d.battery_charge_kwh) | (bat_dis != d.battery_discharge_kwh)
    ev_changed = ev_dis != d.ev_discharge_kwh
    soc_b = np.where(
        bat_changed,
        battery.next_soc_kwh(battery_soc_start_kwh, bat_ch, bat_dis, eta_c, eta_d),
        battery_soc_end_kwh,
    )
    if ev_changed.any():
        e = assets.ev
        soc_e = np.where(
            ev_changed,
            battery.next_soc_kwh(
                ev_soc_start_kwh,
                d.ev_charge_kwh,
                ev_dis,
                _safe_eta(e.efficiency_charge),
                _safe_eta(e.efficiency_discharge),
            ),
            ev_soc_end_kwh,
        )
    else:
        soc_e = ev_soc_end_kwh
    out = dataclasses.replace(
        d,
        battery_charge_kwh=bat_ch,
        battery_discharge_kwh=bat_dis,
        ev_discharge_kwh=ev_dis,
        generation_kwh=gen,
    )
    return Enforced(out, soc_b, soc_e, bat_changed | ev_changed | (gen != d.generation_kwh))


def step_within_limits(
    policy: EmsPolicy[S],
    state: S,
    inputs: SlotInputs,
    window: Forecast,
    assets: AssetParams,
    export_limit_kwh: FloatArray | None,
    import_limit_kwh: FloatArray | None,
) -> tuple[S, Dispatch]:
    """One policy step, its dispatch brought inside the slot's network limits
    (`enforce_envelope`) and the state's states of charge set to what that dispatch does."""
    new, d = policy.step(state, inputs, window, assets)
    if export_limit_kwh is None or import_limit_kwh is None:
        return new, d
    net = d.net_kwh
    if not (np.count_nonzero(net > export_limit_kwh) or np.count_nonzero(-net > import_limit_kwh)):
        return new, d
    ev_start = state.ev_soc_kwh
    if np.count_nonzero(inputs.ev_trip_kwh):
        ev_start = ev.apply_trip(ev_start, inputs.ev_trip_kwh)[0]
    r = enforce_envelope(
        d,
        export_limit_kwh=export_limit_kwh,
        import_limit_kwh=import_limit_kwh,
        battery_soc_start_kwh=state.battery_soc_kwh,
        battery_soc_end_kwh=new.battery_soc_kwh,
        ev_soc_start_kwh=ev_start,
        ev_soc_end_kwh=new.ev_soc_kwh,
        assets=assets,
        dt_h=inputs.dt_h,
    )
    if not r.changed.any():
        return new, d
    physical = PhysicalState(r.battery_soc_kwh, r.ev_soc_kwh, new.indoor_temp_c)
    return new.with_physical(physical), r.dispatch
