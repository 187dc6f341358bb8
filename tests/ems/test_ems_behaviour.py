"""What each policy does, on small hand-built cases with numbers worked out by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from peergrid.assets.params import Profiles
from peergrid.ems.base import Forecast, SlotInputs
from peergrid.ems.registry import make_policy, policy_names
from tests.ems.ems_checks import check_all
from tests.ems.ems_community import (
    battery,
    cost,
    ev,
    hand_built,
    heat_pump,
    jobs_of,
    random_community,
    run,
    suburb,
    tou_prices,
)

# --------------------------------------------------------------------------------------------
# self-consumption


def test_sc_battery_charges_only_from_pv_surplus() -> None:
    comm = suburb(8, 3, 0.25)
    r = run("self-consumption", comm)
    surplus = np.maximum(r["generation_kwh"] - r["demand_kwh"] - r["ev_charge_kwh"], 0.0)
    assert (r["battery_charge_kwh"] <= surplus + 1e-12).all()
    assert r["battery_charge_kwh"].sum() > 1.0  # it did charge (from PV)


def test_sc_battery_serves_own_load_first() -> None:
    # 2 kW load, 1 kW PV, 10 kWh battery at 5 kWh: the battery covers the 1 kWh gap per hour
    comm = hand_built(
        4,
        1.0,
        battery_params=battery(1, capacity=10.0, power=5.0, eta=1.0, soc=5.0),
        base_kw=2.0,
        pv_kwh=np.full((4, 1), 1.0),
    )
    r = run("self-consumption", comm)
    np.testing.assert_allclose(r["battery_discharge_kwh"][:, 0], [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(r["battery_soc_kwh"][:, 0], [5.0, 4.0, 3.0, 2.0, 1.0])


def test_sc_ev_charges_at_full_power_on_arrival() -> None:
    plugged = np.zeros((10, 1), dtype=bool)
    plugged[2:9] = True
    trips = np.zeros((10, 1))
    trips[2] = 15.0  # more than the 10 kWh stored: 5 kWh unserved, SoC 0
    comm = hand_built(
        10, 1.0, ev_params=ev(1, soc=10.0, target=40.0, power=10.0), plugged=plugged, trips=trips
    )
    r = run("self-consumption", comm)
    np.testing.assert_allclose(r["ev_charge_kwh"][:, 0], [0, 0, 10, 10, 10, 10, 0, 0, 0, 0])
    assert r["ev_unserved_kwh"][2, 0] == pytest.approx(5.0)
    assert r["ev_soc_kwh"][6, 0] == pytest.approx(40.0)


def test_sc_jobs_start_on_pv_surplus_else_latest() -> None:
    pv = np.zeros((12, 1))
    pv[6:9] = 2.0  # 1.5 kWh surplus over the 0.5 kW base load
    jobs = jobs_of([(0, 2, 12, 2, 1.0), (0, 0, 5, 2, 1.0)])
    comm = hand_built(12, 1.0, jobs=jobs, pv_kwh=pv)
    r = run("self-consumption", comm)
    # sorted by earliest start: job 0 = window [0, 5) (no PV: latest start 3),
    # job 1 = window [2, 12) (PV from slot 6)
    np.testing.assert_array_equal(r["job_start_slot"], [3, 6])
    np.testing.assert_allclose(r["shiftable_kwh"][:, 0], [0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0])


def test_sc_two_jobs_share_a_surplus_only_as_far_as_it_goes() -> None:
    pv = np.zeros((8, 1))
    pv[3:] = 2.0  # 1.5 kWh surplus: room for one 1 kW job, not two
    jobs = jobs_of([(0, 0, 8, 1, 1.0), (0, 0, 8, 1, 1.0)])
    r = run("self-consumption", hand_built(8, 1.0, jobs=jobs, pv_kwh=pv))
    np.testing.assert_array_equal(np.sort(r["job_start_slot"]), [3, 4])


def test_sc_thermostat_holds_lower_edge_plus_margin() -> None:
    comm = hand_built(24, 0.5, thermal_params=heat_pump(1, p_max=8.0, t0=21.0), temp_out_c=-5.0)
    r = run("self-consumption", comm, {"comfort_margin_k": 0.3})
    temp = r["indoor_temp_c"][:, 0]
    assert temp.min() >= 20.3 - 1e-9
    np.testing.assert_allclose(temp[-5:], 20.3)
    assert (r["thermal_kwh"][-5:] > 0).all()


def test_sc_v2h_covers_home_and_still_meets_target() -> None:
    plugged = np.ones((12, 1), dtype=bool)
    plugged[10:] = False
    comm = hand_built(
        12,
        1.0,
        ev_params=ev(1, soc=30.0, target=30.0, power=5.0, v2h=True, soc_min=5.0),
        base_kw=2.0,
        plugged=plugged,
    )
    r = run("self-consumption", comm)
    assert r["ev_discharge_kwh"][:4, 0].sum() == pytest.approx(8.0)  # covers 2 kWh/h
    assert r["ev_soc_kwh"][10, 0] == pytest.approx(30.0)  # back at the target by departure


# --------------------------------------------------------------------------------------------
# price-aware


def _cheap_window_prices(n_slots: int) -> np.ndarray:
    retail = np.full(n_slots, 0.30)
    retail[10:14] = 0.10
    return retail


def test_pa_ev_fills_the_cheapest_plugged_slots() -> None:
    plugged = np.zeros((24, 1), dtype=bool)
    plugged[:20] = True
    comm = hand_built(
        24,
        1.0,
        ev_params=ev(1, soc=10.0, target=40.0, power=10.0),
        plugged=plugged,
        retail=_cheap_window_prices(24),
    )
    r = run("price-aware", comm)
    expected = np.zeros(24)
    expected[10:13] = 10.0
    np.testing.assert_allclose(r["ev_charge_kwh"][:, 0], expected)
    assert r["ev_soc_kwh"][20, 0] == pytest.approx(40.0)
    assert cost(comm, r) < cost(comm, run("self-consumption", comm))


def test_pa_ev_still_meets_target_when_cheap_slots_are_too_few() -> None:
    plugged = np.zeros((24, 1), dtype=bool)
    plugged[:12] = True
    comm = hand_built(
        24,
        1.0,
        ev_params=ev(1, soc=0.0, target=40.0, power=10.0),
        plugged=plugged,
        retail=_cheap_window_prices(24),
    )
    r = run("price-aware", comm)
    # 4 slots needed, the cheap window has 2 before departure at 12: 2 cheap + the 2 cheapest
    # (earliest) others
    assert r["ev_soc_kwh"][12, 0] == pytest.approx(40.0)
    assert r["ev_charge_kwh"][10:12, 0].sum() == pytest.approx(20.0)


def test_pa_job_picks_the_cheapest_start() -> None:
    jobs = jobs_of([(0, 2, 20, 3, 1.0)])
    comm = hand_built(24, 1.0, jobs=jobs, retail=_cheap_window_prices(24))
    r = run("price-aware", comm)
    np.testing.assert_array_equal(r["job_start_slot"], [10])


def test_pa_job_prefers_pv_surplus() -> None:
    pv = np.zeros((24, 1))
    pv[15:19] = 2.0
    jobs = jobs_of([(0, 2, 22, 2, 1.0)])
    r = run("price-aware", hand_built(24, 1.0, jobs=jobs, pv_kwh=pv))
    np.testing.assert_array_equal(r["job_start_slot"], [15])


def test_pa_heat_pump_preheats_in_cheap_slots() -> None:
    n_slots = 48
    retail = np.full(n_slots, 0.40)
    retail[:12] = 0.10
    comm = hand_built(
        n_slots,
        0.5,
        thermal_params=heat_pump(1, p_max=6.0, t0=20.5),
        temp_out_c=0.0,
        retail=retail,
    )
    r = run("price-aware", comm, {"horizon_h": 24.0})
    temp = r["indoor_temp_c"][:, 0]
    assert temp[:13].max() == pytest.approx(22.5)  # the far edge − margin
    assert temp.min() >= 20.5 - 1e-9
    sc = run("self-consumption", comm)
    assert r["thermal_kwh"][:12].sum() > sc["thermal_kwh"][:12].sum()
    assert cost(comm, r) < cost(comm, sc)


def test_pa_battery_arbitrage_on_time_of_use() -> None:
    dt_h = 0.25
    n_slots = 96 * 3
    retail, feed_in = tou_prices(n_slots, dt_h)  # night 0.15, day 0.28, peak 0.45
    comm = hand_built(
        n_slots,
        dt_h,
        battery_params=battery(1, capacity=6.0, power=3.0, eta=0.95, soc=0.0),
        base_kw=0.6,
        retail=retail,
        feed_in=feed_in,
    )
    r = run("price-aware", comm)
    hour = (np.arange(n_slots) * dt_h) % 24
    night = hour < 6
    ch, dis = r["battery_charge_kwh"][:, 0], r["battery_discharge_kwh"][:, 0]
    assert ch[night].sum() > 5.0
    assert ch[~night].sum() == 0.0
    assert dis[night].sum() == 0.0
    # the peak deficit (4 h · 0.6 kW = 2.4 kWh a day) is served first
    peak = (hour >= 17) & (hour < 21)
    np.testing.assert_allclose(dis[peak].sum(), 3 * 2.4)
    sc = run("self-consumption", comm)
    assert cost(comm, r) < cost(comm, sc) - 1.0


def test_pa_battery_holds_small_store_for_the_peak() -> None:
    dt_h = 0.25
    n_slots = 96 * 2
    retail, feed_in = tou_prices(n_slots, dt_h)
    # 2 kWh usable: less than the peak's 2.4 kWh, so nothing is spent in the day
    comm = hand_built(
        n_slots,
        dt_h,
        battery_params=battery(1, capacity=2.0, power=3.0, eta=1.0, soc=0.0),
        base_kw=0.6,
        retail=retail,
        feed_in=feed_in,
    )
    r = run("price-aware", comm)
    hour = (np.arange(n_slots) * dt_h) % 24
    dis = r["battery_discharge_kwh"][:, 0]
    day = (hour >= 6) & (hour < 17)
    assert dis[day].sum() == 0.0
    assert dis[(hour >= 17) & (hour < 21)].sum() == pytest.approx(4.0)


def test_pa_flat_tariff_without_pv_wastes_nothing() -> None:
    comm = suburb(10, 3, 0.25, tou=False)
    profiles = dataclasses.replace(comm.profiles, pv_kwh=np.zeros_like(comm.profiles.pv_kwh))
    comm = dataclasses.replace(comm, profiles=profiles)
    pa = run("price-aware", comm)
    sc = run("self-consumption", comm)
    assert pa["battery_charge_kwh"].sum() == 0.0  # no cycling from the grid
    assert pa["ev_discharge_kwh"].sum() == 0.0
    imports = {
        name: float(
            (
                r["demand_kwh"]
                + r["battery_charge_kwh"]
                + r["ev_charge_kwh"]
                - r["battery_discharge_kwh"]
                - r["ev_discharge_kwh"]
            ).sum()
        )
        for name, r in (("pa", pa), ("sc", sc))
    }
    assert imports["pa"] <= imports["sc"] + 1e-9
    check_all(comm, pa, policy="price-aware")


def test_price_aware_beats_self_consumption_on_time_of_use() -> None:
    comm = suburb(20, 7, 0.25, tou=True)
    pa = run("price-aware", comm)
    sc = run("self-consumption", comm)
    check_all(comm, pa, policy="price-aware")
    c_pa, c_sc = cost(comm, pa), cost(comm, sc)
    assert c_pa < 0.95 * c_sc, (c_pa, c_sc)


# --------------------------------------------------------------------------------------------
# both


@pytest.mark.parametrize("name", policy_names())
def test_equal_seeds_give_equal_runs(name: str) -> None:
    comm = random_community(42, 9, 2, 0.25)
    a = run(name, comm, seed=3)
    b = run(name, comm, seed=3)
    for key, value in a.items():
        if key != "step_s":
            np.testing.assert_array_equal(value, b[key], err_msg=key)
    c = run(name, comm, seed=4)
    if name == "coordinated":  # its limit prices are the internal price λ, not random draws
        np.testing.assert_array_equal(a["buy_limit_price"], c["buy_limit_price"])
    else:
        assert not np.array_equal(a["buy_limit_price"], c["buy_limit_price"])


@pytest.mark.parametrize("name", policy_names())
def test_step_is_pure(name: str) -> None:
    comm = suburb(6, 2, 0.25)
    policy = make_policy(name, None, 6, np.random.default_rng(0))
    state = policy.init_state(comm.assets)
    p: Profiles = comm.profiles
    snapshots = []
    for t in range(120):
        inputs = SlotInputs(
            t=t,
            dt_h=comm.dt_h,
            base_demand_kwh=p.base_demand_kwh[t],
            pv_kwh=p.pv_kwh[t],
            temp_out_c=float(p.temp_out_c[t]),
            ev_plugged=p.ev_plugged[t],
            ev_trip_kwh=p.ev_trip_kwh[t],
            retail_price=float(comm.retail[t]),
            feed_in_price=float(comm.feed_in[t]),
        )
        forecast = Forecast(
            p.base_demand_kwh[t : t + 96],
            p.pv_kwh[t : t + 96],
            p.temp_out_c[t : t + 96],
            p.ev_plugged[t : t + 96],
            comm.retail[t : t + 96],
            comm.feed_in[t : t + 96],
        )
        before = {
            "soc": state.battery_soc_kwh.copy(),
            "ev": state.ev_soc_kwh.copy(),
            "temp": state.indoor_temp_c.copy(),
        }
        new_state, d1 = policy.step(state, inputs, forecast, comm.assets)
        again, d2 = policy.step(state, inputs, forecast, comm.assets)  # same state, same result
        np.testing.assert_array_equal(d1.net_kwh, d2.net_kwh)
        np.testing.assert_array_equal(new_state.battery_soc_kwh, again.battery_soc_kwh)
        np.testing.assert_array_equal(state.battery_soc_kwh, before["soc"])
        np.testing.assert_array_equal(state.ev_soc_kwh, before["ev"])
        np.testing.assert_array_equal(state.indoor_temp_c, before["temp"])
        with pytest.raises(dataclasses.FrozenInstanceError):
            new_state.battery_soc_kwh = before["soc"]  # type: ignore[misc]
        snapshots.append(new_state)
        state = new_state
    # inputs untouched
    np.testing.assert_array_equal(p.base_demand_kwh, suburb(6, 2, 0.25).profiles.base_demand_kwh)
    assert snapshots[-1].job_start_slot().shape == (comm.assets.jobs.n_jobs,)


def test_pa_v2h_serves_the_peak_and_refills_at_night() -> None:
    dt_h = 1.0
    n_slots = 48
    retail, feed_in = tou_prices(n_slots, dt_h)  # night 0.15 (0-6 h), peak 0.45 (17-21 h)
    plugged = np.zeros((n_slots, 1), dtype=bool)
    plugged[17:31] = True  # 17:00 to 07:00 next morning
    comm = hand_built(
        n_slots,
        dt_h,
        ev_params=ev(
            1, capacity=60.0, power=7.0, eta=0.95, v2h=True, soc=40.0, target=40.0, soc_min=10.0
        ),
        base_kw=1.0,
        plugged=plugged,
        retail=retail,
        feed_in=feed_in,
    )
    r = run("price-aware", comm)
    dis, ch = r["ev_discharge_kwh"][:, 0], r["ev_charge_kwh"][:, 0]
    np.testing.assert_allclose(dis[17:21], 1.0)  # the 1 kW peak load, from the EV
    assert ch[17:24].sum() == 0.0  # no recharge before the cheap night
    assert ch[24:30].sum() > 0.0
    assert r["ev_soc_kwh"][31, 0] >= 40.0 - 1e-9  # back at the target by departure
    assert cost(comm, r) < cost(
        comm,
        run(
            "price-aware",
            dataclasses.replace(
                comm,
                assets=dataclasses.replace(
                    comm.assets,
                    ev=ev(
                        1,
                        capacity=60.0,
                        power=7.0,
                        eta=0.95,
                        v2h=False,
                        soc=40.0,
                        target=40.0,
                        soc_min=10.0,
                    ),
                ),
            ),
        ),
    )


def test_pa_stores_spilled_pv_in_the_ev_beyond_its_target() -> None:
    pv = np.zeros((12, 1))
    pv[4:8] = 3.0
    plugged = np.ones((12, 1), dtype=bool)
    comm = hand_built(
        12, 1.0, ev_params=ev(1, soc=40.0, target=40.0, power=10.0), plugged=plugged, pv_kwh=pv
    )
    r = run("price-aware", comm)
    np.testing.assert_allclose(r["ev_charge_kwh"][4:8, 0], 2.5)  # 3 kWh PV − 0.5 kWh load
    assert r["ev_soc_kwh"][-1, 0] == pytest.approx(50.0)


def test_pa_plans_a_window_beyond_the_look_ahead_when_it_opens() -> None:
    # When job 0 opens at slot 1, the 12 h look-ahead ends at slot 13 and does not cover job 1's
    # window [3, 14): planning it then would pick slot 11 (half cheap). It is planned when it
    # opens at slot 3 instead, with both cheap slots 12 and 13 in view.
    retail = np.full(24, 0.30)
    retail[12:14] = 0.10
    jobs = jobs_of([(0, 1, 5, 2, 1.0), (0, 3, 14, 2, 1.0)])
    comm = hand_built(24, 1.0, jobs=jobs, retail=retail)
    r = run("price-aware", comm, {"horizon_h": 12.0})
    np.testing.assert_array_equal(r["job_start_slot"], [1, 12])
    check_all(comm, r, policy="price-aware")
