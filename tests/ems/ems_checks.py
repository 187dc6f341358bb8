"""Slot-by-slot checks that every asset respected its limits in a run (`run_policy` output)."""

from __future__ import annotations

from typing import Any

import numpy as np

from peergrid.assets import shiftable, thermal
from peergrid.assets.params import THERMAL_AIR_CONDITIONER, THERMAL_HEAT_PUMP
from peergrid.ems.driver import DISPATCH_FIELDS
from tests.ems.ems_community import Community

TOL = 1e-9


def _safe(eta: np.ndarray) -> np.ndarray:
    return np.where(eta > 0.0, eta, 1.0)


def check_battery(comm: Community, r: dict[str, Any]) -> None:
    b, dt = comm.assets.battery, comm.dt_h
    ch, dis, soc = r["battery_charge_kwh"], r["battery_discharge_kwh"], r["battery_soc_kwh"]
    assert (ch >= 0.0).all() and (dis >= 0.0).all()
    assert (ch <= b.power_kw * dt + TOL).all()
    assert (dis <= b.power_kw * dt + TOL).all()
    assert not ((ch > 0.0) & (dis > 0.0)).any(), "charge and discharge in one slot"
    assert (soc >= b.soc_min_kwh - TOL).all()
    assert (soc <= b.soc_max_kwh + TOL).all()
    expected = soc[:-1] + _safe(b.efficiency_charge) * ch - dis / _safe(b.efficiency_discharge)
    np.testing.assert_array_equal(soc[1:], expected)  # the update identity, bit for bit


def ev_sessions(plugged: np.ndarray) -> list[tuple[int, int, int]]:
    """(participant, arrival, departure) of every session that ends inside the run."""
    out = []
    n_slots, n = plugged.shape
    for p in range(n):
        col = plugged[:, p]
        t = 0
        while t < n_slots:
            if col[t]:
                end = t
                while end < n_slots and col[end]:
                    end += 1
                if end < n_slots:
                    out.append((p, t, end))
                t = end
            else:
                t += 1
    return out


def check_ev(comm: Community, r: dict[str, Any]) -> None:
    e, dt = comm.assets.ev, comm.dt_h
    plugged, trips = comm.profiles.ev_plugged, comm.profiles.ev_trip_kwh
    ch, dis, soc = r["ev_charge_kwh"], r["ev_discharge_kwh"], r["ev_soc_kwh"]
    assert (ch >= 0.0).all() and (dis >= 0.0).all()
    assert (ch <= e.power_kw * dt * plugged + TOL).all(), "EV charges beyond limit / unplugged"
    assert (dis <= e.power_kw * dt * (plugged & e.v2h) + TOL).all(), "EV v2h beyond limit"
    assert (ch[~plugged] == 0.0).all() and (dis[~plugged] == 0.0).all()
    assert not ((ch > 0.0) & (dis > 0.0)).any()
    assert (soc >= -TOL).all() and (soc <= e.capacity_kwh + TOL).all()
    after_trip = np.where(
        trips.any(axis=1, keepdims=True), np.maximum(soc[:-1] - trips, 0.0), soc[:-1]
    )
    np.testing.assert_array_equal(
        soc[1:], after_trip + _safe(e.efficiency_charge) * ch - dis / _safe(e.efficiency_discharge)
    )
    np.testing.assert_allclose(r["ev_unserved_kwh"], np.maximum(trips - soc[:-1], 0.0), atol=0)
    # v2h never below soc_min (unless it started there)
    v2h_slots = dis > 0.0
    assert (soc[1:][v2h_slots] >= np.broadcast_to(e.soc_min_kwh, dis.shape)[v2h_slots] - TOL).all()
    # the target is met at departure whenever it was reachable at arrival
    target = np.minimum(e.target_kwh, e.capacity_kwh)
    eta_c = _safe(e.efficiency_charge)
    for p, arrive, leave in ev_sessions(plugged):
        start = after_trip[arrive, p]
        reachable = start + eta_c[p] * e.power_kw[p] * dt * (leave - arrive)
        if reachable >= target[p] + 1e-6:
            assert soc[leave, p] >= target[p] - 1e-7, (p, arrive, leave, soc[leave, p], target[p])


def check_thermal(comm: Community, r: dict[str, Any], *, policy: str) -> int:
    """Checks the thermal limits; returns in how many slots the comfort band was checked."""
    th, dt = comm.assets.thermal, comm.dt_h
    e_th, temp = r["thermal_kwh"], r["indoor_temp_c"]
    assert (e_th >= 0.0).all()
    assert (e_th <= th.p_max_kw * dt + TOL).all()
    decay, gain = thermal.response(th.ua_kw_per_k, th.capacity_kwh_per_k, dt)
    sign = thermal.heat_sign(th.kind)
    t_out = comm.profiles.temp_out_c
    band = th.t_max_c - th.t_min_c
    margin = np.minimum(0.5, np.maximum(band, 0.0) / 2)
    near = np.where(sign > 0, th.t_min_c + margin, th.t_max_c - margin)
    valid = (sign != 0) & (th.cop > 0) & (gain > 0) & (th.p_max_kw > 0)
    checked = 0
    for t in range(comm.n_slots):
        inside = (temp[t] >= th.t_min_c - TOL) & (temp[t] <= th.t_max_c + TOL)
        # the building cannot drift out on the side the asset cannot act on
        passive_ok = np.where(sign > 0, t_out[t] <= th.t_max_c, t_out[t] >= th.t_min_c)
        free = thermal.free_temperature_c(temp[t], float(t_out[t]), decay)
        effect = sign * thermal.cop(th.cop, th.kind, float(t_out[t])) * gain
        needed = thermal.energy_for_setpoint_kwh(free, near, effect, np.full_like(free, np.inf))
        can_hold = needed <= th.p_max_kw * dt * (1 + 1e-12)
        cond = valid & inside & passive_ok & can_hold
        ok = (temp[t + 1] >= th.t_min_c - TOL) & (temp[t + 1] <= th.t_max_c + TOL)
        assert ok[cond].all(), (policy, t, temp[t + 1][cond & ~ok], th.t_min_c[cond & ~ok])
        checked += int(cond.sum())
    assert np.isin(th.kind, [0, THERMAL_HEAT_PUMP, THERMAL_AIR_CONDITIONER]).all()
    return checked


def check_jobs(comm: Community, r: dict[str, Any]) -> None:
    jobs, dt = comm.assets.jobs, comm.dt_h
    start = r["job_start_slot"]
    # every job ran exactly once, for its duration, inside its window (all windows lie
    # inside the run)
    assert (start != shiftable.NOT_STARTED).all()
    assert (start >= jobs.earliest_start).all()
    assert (start + jobs.duration_slots <= jobs.latest_end).all()
    n_slots, n = r["shiftable_kwh"].shape
    expected = np.zeros((n_slots, n))
    for t in range(n_slots):
        expected[t] = shiftable.energy_kwh(
            start, jobs.duration_slots, jobs.participant, jobs.p_kw, t=t, dt_h=dt, n_participants=n
        )
    np.testing.assert_allclose(r["shiftable_kwh"], expected, rtol=0, atol=1e-12)


def check_dispatch(comm: Community, r: dict[str, Any]) -> None:
    for name in DISPATCH_FIELDS:
        assert (r[name] >= 0.0).all(), name
    np.testing.assert_array_equal(
        r["demand_kwh"],
        comm.profiles.base_demand_kwh + r["thermal_kwh"] + r["shiftable_kwh"],
    )
    np.testing.assert_array_equal(r["generation_kwh"], comm.profiles.pv_kwh)
    lo = np.minimum(comm.retail, comm.feed_in)[:, None] - 1e-12
    hi = np.maximum(comm.retail, comm.feed_in)[:, None] + 1e-12
    for name in ("buy_limit_price", "sell_limit_price"):
        assert ((r[name] >= lo) & (r[name] <= hi)).all(), name


def check_all(comm: Community, r: dict[str, Any], *, policy: str) -> int:
    check_battery(comm, r)
    check_ev(comm, r)
    check_jobs(comm, r)
    check_dispatch(comm, r)
    return check_thermal(comm, r, policy=policy)
