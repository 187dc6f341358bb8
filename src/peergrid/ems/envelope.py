"""Export and import limits at every connection point, respected by every EMS policy.

`EnvelopedPolicy` wraps any registered policy with per-slot, per-participant limits (a static
export limit or the network operator's dynamic operating envelopes, `network/envelope.py`,
as kWh per slot) and, after the inner policy's step, brings each participant's net position
(`Dispatch.net_kwh`, export positive) into [−import limit, export limit] with
`enforce_envelope`:

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

The inner policy's state carries the new battery and EV states of charge
(`dataclasses.replace` on `battery_soc_kwh` / `ev_soc_kwh`, through `inner` for a state that
wraps another, as `stackelberg`'s), so the next step starts from what really happened. What
each registered policy plans ahead is left as it is, and stays valid:

- `self-consumption`: no plan.
- `price-aware`: the battery plan is a reserve per slot, compared with the current SoC each
  step; the EV's energy still to buy at its price cap (`ev_at_cap_kwh`) may overstate what is
  needed after a v2h discharge was cut — the EV then charges at most to its target anyway.
- `coordinated`: the plan is a trajectory of states that the policy tracks from the actual
  state each slot, so a deviation is recovered in the next slots (within the limits, which
  this wrapper enforces again).
- `stackelberg`: the follower's state is updated as `price-aware`'s; the leader's price plan
  was found with unconstrained followers and is not recomputed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from peergrid.assets import battery, ev
from peergrid.assets.params import AssetParams, BoolArray, FloatArray
from peergrid.ems.base import Dispatch, EmsParams, EmsPolicy, Forecast, SlotInputs
from peergrid.errors import InputError


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


def with_state_of_charge(state: Any, battery_soc_kwh: FloatArray, ev_soc_kwh: FloatArray) -> Any:
    """A policy state with other battery and EV states of charge (`dataclasses.replace`; a
    state that wraps another one in `inner`, as `stackelberg`'s, is updated inside)."""
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        names = {f.name for f in dataclasses.fields(state)}
        if {"battery_soc_kwh", "ev_soc_kwh"} <= names:
            return dataclasses.replace(
                state, battery_soc_kwh=battery_soc_kwh, ev_soc_kwh=ev_soc_kwh
            )
        if "inner" in names:
            inner = with_state_of_charge(state.inner, battery_soc_kwh, ev_soc_kwh)  # type: ignore[attr-defined]
            return dataclasses.replace(state, inner=inner)
    raise TypeError(
        f"cannot set the state of charge of a {type(state).__name__}: it needs dataclass "
        "fields battery_soc_kwh and ev_soc_kwh (or an `inner` state that has them)"
    )


class EnvelopedPolicy:
    """An EMS policy whose every dispatch respects per-slot export and import limits.

    `EnvelopedPolicy(inner, export_limit_kwh, import_limit_kwh)` with limits (T, P) [kWh per
    slot], ≥ 0, +inf for none, indexed by `inputs.t`. It has the inner policy's name,
    description, parameters, horizon and state (the class attributes are copied to a subclass
    made per inner policy, so the `EmsPolicy` protocol's class variables hold).
    """

    name: ClassVar[str] = "enveloped"
    description: ClassVar[str] = "a policy held inside export and import limits"
    Params: ClassVar[type[EmsParams]] = EmsParams
    observes_market: ClassVar[bool] = False

    def __new__(
        cls, inner: EmsPolicy, export_limit_kwh: FloatArray, import_limit_kwh: FloatArray
    ) -> Self:
        del export_limit_kwh, import_limit_kwh
        bound = type(
            f"Enveloped{type(inner).__name__}",
            (cls,),
            {
                "name": inner.name,
                "description": inner.description,
                "Params": inner.Params,
                "observes_market": inner.observes_market,
                "__module__": cls.__module__,
            },
        )
        policy: Self = super().__new__(bound)
        return policy

    def __init__(
        self, inner: EmsPolicy, export_limit_kwh: FloatArray, import_limit_kwh: FloatArray
    ) -> None:
        exp = np.asarray(export_limit_kwh, dtype=np.float64)
        imp = np.asarray(import_limit_kwh, dtype=np.float64)
        if exp.ndim != 2 or exp.shape != imp.shape:
            raise InputError(
                "envelope: export and import limits must both be (slots, participants) "
                f"(got {exp.shape} and {imp.shape})"
            )
        for what, a in (("export", exp), ("import", imp)):
            if not (a >= 0.0).all():  # also rejects nan
                raise InputError(f"envelope: {what} limits must be >= 0 kWh (or +inf)")
        self.inner = inner
        self.horizon_h = inner.horizon_h
        self.export_limit_kwh = exp
        self.import_limit_kwh = imp

    @property
    def params(self) -> EmsParams:
        return self.inner.params

    def init_state(self, assets: AssetParams) -> Any:
        if assets.n_participants != self.export_limit_kwh.shape[1]:
            raise InputError(
                f"envelope: limits for {self.export_limit_kwh.shape[1]} participants, "
                f"the assets have {assets.n_participants}"
            )
        return self.inner.init_state(assets)

    def step(
        self, state: Any, inputs: SlotInputs, forecast: Forecast, assets: AssetParams
    ) -> tuple[Any, Dispatch]:
        new_state, d = self.inner.step(state, inputs, forecast, assets)
        t = inputs.t
        if not 0 <= t < self.export_limit_kwh.shape[0]:
            raise InputError(
                f"envelope: no limits for slot {t} (they cover {self.export_limit_kwh.shape[0]})"
            )
        exp, imp = self.export_limit_kwh[t], self.import_limit_kwh[t]
        net = d.net_kwh
        if not ((net > exp).any() or (-net > imp).any()):
            return new_state, d
        ev_start = state.ev_soc_kwh
        if np.count_nonzero(inputs.ev_trip_kwh):
            ev_start = ev.apply_trip(ev_start, inputs.ev_trip_kwh)[0]
        r = enforce_envelope(
            d,
            export_limit_kwh=exp,
            import_limit_kwh=imp,
            battery_soc_start_kwh=state.battery_soc_kwh,
            battery_soc_end_kwh=new_state.battery_soc_kwh,
            ev_soc_start_kwh=ev_start,
            ev_soc_end_kwh=new_state.ev_soc_kwh,
            assets=assets,
            dt_h=inputs.dt_h,
        )
        if not r.changed.any():
            return new_state, d
        return with_state_of_charge(new_state, r.battery_soc_kwh, r.ev_soc_kwh), r.dispatch
