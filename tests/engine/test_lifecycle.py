"""The lifecycle contract: the order of the phases, the inputs each saw, purity, the EMS state
as bytes, and the identities and limits of delivery under forecast error."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid.assets.params import THERMAL_AIR_CONDITIONER, THERMAL_HEAT_PUMP, Profiles
from peergrid.ems.registry import make_policy
from peergrid.engine import lifecycle, loop
from peergrid.engine.community import Community, build_community
from peergrid.engine.feed import ForecastFeed
from peergrid.engine.loop import Recorded, run_lifecycle
from peergrid.engine.simulate import resolve_full, simulate
from peergrid.engine.state_codec import StateCodecError, decode_state, encode_state
from peergrid.forecast.base import ForecastParams, Issued
from peergrid.markets.base import MarketContext
from peergrid.markets.gate import gate_schedule, parse_gate_closure
from peergrid.markets.registry import get_mechanism
from peergrid.rng import child_rng
from peergrid.scenario.schema import Scenario

from .conftest import random_scenarios, small_scenario

TOL = 1e-9


@dataclass(eq=False)
class NoisyForecaster:
    """A test double: the actuals with seeded multiplicative noise per (issue, target), and a
    log of every issue. It reads the actuals, so it is for exercising deviations only."""

    name: ClassVar[str] = "noisy"
    description: ClassVar[str] = "actuals with noise (tests only)"
    Params: ClassVar[type[ForecastParams]] = ForecastParams
    profiles: Profiles
    sigma: float = 0.3
    seed: int = 0
    log: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def params(self) -> ForecastParams:
        return ForecastParams()

    def issue(self, issue_slot: int, first_slot: int, n_slots: int) -> Issued:
        self.log.append((issue_slot, first_slot, n_slots))
        p = self.profiles
        n_p = p.base_demand_kwh.shape[1]
        noise = np.stack(
            [
                np.random.default_rng([self.seed, issue_slot + 10**6, s]).normal(size=(2, n_p))
                for s in range(first_slot, first_slot + n_slots)
            ]
        )
        rows = slice(first_slot, first_slot + n_slots)
        demand = p.base_demand_kwh[rows] * np.exp(self.sigma * noise[:, 0])
        pv = p.pv_kwh[rows] * np.clip(1.0 + self.sigma * noise[:, 1], 0.0, None)
        temp = p.temp_out_c[rows] + 2.0 * noise[:, 0, 0]
        return Issued(issue_slot, first_slot, demand, pv, temp)

    def timings(self) -> dict[str, float]:
        return {}


@dataclass
class Setup:
    community: Community
    scenario: Scenario


def _setup(scenario: Scenario) -> Setup:
    resolved = resolve_full(scenario, forecast="perfect")
    return Setup(build_community(resolved, None), resolved)


def _run(
    s: Setup,
    *,
    gate: str,
    forecaster: Any = None,
    market: str = "sdr",
    rule: str = "retail",
    ems: str | None = None,
) -> Recorded:
    c = s.community
    feed = ForecastFeed.build(c.profiles, c.retail_price, c.feed_in_price, c.grid.dt_h, forecaster)
    gates = gate_schedule(c.grid, parse_gate_closure(gate, c.grid.slot_minutes))
    name = ems or s.scenario.ems.policy
    params = {"max_iterations": 3} if name == "stackelberg" else None
    policy = make_policy(name, params, c.n_participants, child_rng(s.scenario.seed, "ems"))
    return run_lifecycle(
        feed,
        c.assets,
        policy,
        get_mechanism(market),
        gates,
        deviation_rule=rule,  # type: ignore[arg-type]
        penalty_per_kwh=0.04,
    )


# --- the order of the phases and what each saw (mosaik-style contract) ---------------------


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    events: list[tuple[Any, ...]] = []
    real_bid, real_clear = lifecycle.bid, lifecycle.clear
    real_deliver, real_settle = lifecycle.deliver, lifecycle.settle

    def bid(policy: Any, runtime: Any, gate: Any, assets: Any, **kw: Any) -> Any:
        events.append(("bid", gate.gate_slot, gate.first_slot, gate.n_slots, runtime.next_delivery))
        return real_bid(policy, runtime, gate, assets, **kw)

    def clear(mechanism: Any, book: Any, ctx: MarketContext, n: int, *args: Any) -> Any:
        events.append(("clear", ctx.slot))
        return real_clear(mechanism, book, ctx, n, *args)

    def deliver(runtime: Any, slot: int, actual: Any, committed: Any, **kw: Any) -> Any:
        events.append(("deliver", slot, actual.t))
        return real_deliver(runtime, slot, actual, committed, **kw)

    def settle(commitment: Any, delivered: Any, *args: Any) -> Any:
        events.append(("settle",))
        return real_settle(commitment, delivered, *args)

    for name, fn in (("bid", bid), ("clear", clear), ("deliver", deliver), ("settle", settle)):
        monkeypatch.setattr(loop, name, fn)
    return events


def test_intraday_phase_order_and_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _setup(small_scenario(n=3, slot_minutes=60))
    events = _recording(monkeypatch)
    noisy = NoisyForecaster(s.community.profiles)
    _run(s, gate="intraday 2", forecaster=noisy)
    expected: list[tuple[Any, ...]] = [
        ("bid", -2, 0, 1, 0),
        ("clear", 0),
        ("bid", -1, 1, 1, 0),
        ("clear", 1),
        ("bid", 0, 2, 1, 0),
        ("clear", 2),
        ("deliver", 0, 0),
        ("settle",),
        ("bid", 1, 3, 1, 1),
        ("clear", 3),
        ("deliver", 1, 1),
        ("settle",),
    ]
    assert events[: len(expected)] == expected
    n_t = s.community.grid.n_slots
    assert events[-2:] == [("deliver", n_t - 1, n_t - 1), ("settle",)]
    assert sum(e[0] == "bid" for e in events) == n_t
    # every forecast was issued at the gate; self-consumption reads no demand or PV beyond
    # the slot it decides (its look-ahead is the plug-in schedule), so only the slot is asked
    assert len(noisy.log) == n_t
    for g, first, n in noisy.log:
        assert first == g + 2
        assert n == 1


@pytest.mark.parametrize("ems", ["self-consumption", "price-aware"])
def test_forecast_rows_follow_what_the_policy_reads(ems: str) -> None:
    s = _setup(small_scenario(n=3, slot_minutes=60))
    noisy = NoisyForecaster(s.community.profiles)
    _run(s, gate="intraday 2", forecaster=noisy, ems=ems)
    n_t = s.community.grid.n_slots
    horizon = 24  # both policies look 24 h ahead on 60-minute slots
    reads = ems == "price-aware"
    assert [n for _, _, n in noisy.log] == [
        min(n_t - first, horizon) if reads else 1 for _, first, _ in noisy.log
    ]


def test_day_ahead_phase_order(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _setup(small_scenario(n=3, slot_minutes=60, days=2))
    events = _recording(monkeypatch)
    _run(s, gate="day-ahead 12:00")
    kinds = [e[0] for e in events]
    # day 1's gate (12:00 the day before) closes its 24 slots before anything is delivered;
    # day 2's gate at 12:00 on day 1 comes after the 12 morning slots are delivered
    assert events[0] == ("bid", -12, 0, 24, 0)
    assert kinds[1:25] == ["clear"] * 24
    delivered_before = [e[1] for e in events[:50] if e[0] == "deliver"]
    assert delivered_before == list(range(12))
    second = events.index(("bid", 12, 24, 24, 12))
    assert kinds[second - 2 : second] == ["deliver", "settle"]
    assert sum(k == "deliver" for k in kinds) == 48


def test_a_phase_called_twice_returns_equal_outputs() -> None:
    s = _setup(small_scenario(n=4, slot_minutes=30, days=2))
    c = s.community
    noisy = NoisyForecaster(c.profiles)
    feed = ForecastFeed.build(c.profiles, c.retail_price, c.feed_in_price, c.grid.dt_h, noisy)
    policy = make_policy("price-aware", None, c.n_participants, child_rng(1, "ems"))
    runtime = lifecycle.init_runtime(policy, c.assets)
    gate = lifecycle.GateInputs(
        gate_slot=-2,
        first_slot=0,
        n_slots=3,
        dt_h=c.grid.dt_h,
        forecast=feed.window(-2, 0, 50),
        horizon_slots=48,
        ev_returns=feed.returns[:50],
    )
    (r1, b1), (r2, b2) = (lifecycle.bid(policy, runtime, gate, c.assets) for _ in range(2))
    for x, y in zip(b1.books, b2.books, strict=True):
        np.testing.assert_array_equal(x.quantity_kwh, y.quantity_kwh)
        np.testing.assert_array_equal(x.price, y.price)
    assert encode_state(r1) == encode_state(r2)
    mech = get_mechanism("uniform")
    ctx = MarketContext(retail_price=0.3, feed_in_price=0.07, dt_h=0.5, slot=0)
    c1, c2 = (lifecycle.clear(mech, b1.books[0], ctx, c.n_participants) for _ in range(2))
    np.testing.assert_array_equal(c1.commitment.committed_kwh, c2.commitment.committed_kwh)
    np.testing.assert_array_equal(c1.result.filled_kwh, c2.result.filled_kwh)
    from peergrid.ems.common import build_constants

    k = build_constants(c.assets, c.grid.dt_h, 0.0)
    d1, d2 = (
        lifecycle.deliver(
            r1,
            0,
            feed.actual(0),
            c1.commitment.committed_kwh,
            c=k,
            ev_slots_to_departure=feed.departure[0],
        )
        for _ in range(2)
    )
    assert encode_state(d1[0]) == encode_state(d2[0])
    np.testing.assert_array_equal(d1[1].dispatch.net_kwh, d2[1].dispatch.net_kwh)
    s1, s2 = (
        lifecycle.settle(c1.commitment, d1[1], 0.3, 0.07, "net-then-causer") for _ in range(2)
    )
    np.testing.assert_array_equal(s1.cost, s2.cost)
    assert s1.retailer_revenue == s2.retailer_revenue


# --- equivalences with perfect forecasts --------------------------------------------------


@pytest.mark.parametrize("gate", ["intraday 3", "day-ahead 12:00", "day-ahead 00:00"])
def test_perfect_forecasts_never_deviate_and_match_the_slot_step(gate: str) -> None:
    s = _setup(small_scenario(n=8, days=2, tou=True, ems="price-aware"))
    at_slot = _run(s, gate="intraday 0")
    ahead = _run(s, gate=gate)
    assert np.all(ahead.series["deviation_kwh"] == 0.0)
    assert np.all(at_slot.series["deviation_kwh"] == 0.0)
    for name, value in at_slot.series.items():
        np.testing.assert_array_equal(ahead.series[name], value, err_msg=name)


# --- the EMS state as bytes ---------------------------------------------------------------


@pytest.mark.parametrize("ems", ["self-consumption", "price-aware", "coordinated", "stackelberg"])
def test_state_round_trips_through_bytes_at_every_gate(
    ems: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose EMS state is written to bytes and read back at every gate closure is the
    run itself, bit for bit (what a server storing the state between gates relies on)."""
    s = _setup(small_scenario(n=6, slot_minutes=60, days=2, tou=True))
    noisy = NoisyForecaster(s.community.profiles)
    plain = _run(s, gate="intraday 2", forecaster=noisy, ems=ems, market="uniform")
    real_bid = lifecycle.bid
    sizes: list[int] = []

    def bid_from_bytes(policy: Any, runtime: Any, gate: Any, assets: Any, **kw: Any) -> Any:
        data = encode_state(runtime)
        sizes.append(len(data))
        again = decode_state(data)
        assert type(again.plan) is type(runtime.plan)
        return real_bid(policy, again, gate, assets, **kw)

    monkeypatch.setattr(loop, "bid", bid_from_bytes)
    stored = _run(s, gate="intraday 2", forecaster=noisy, ems=ems, market="uniform")
    assert len(sizes) == s.community.grid.n_slots and min(sizes) > 0
    for name, value in plain.series.items():
        np.testing.assert_array_equal(stored.series[name], value, err_msg=name)


def test_state_codec_rejects_foreign_bytes() -> None:
    with pytest.raises(StateCodecError):
        decode_state(b"not a state at all")
    with pytest.raises(StateCodecError):
        decode_state(b"PGST\x09" + b"\0" * 10)
    with pytest.raises(TypeError):
        encode_state(object())


# --- delivery under forecast error: identities, money, limits -----------------------------


def check_delivery(s: Setup, rec: Recorded) -> None:
    c = s.community
    x = rec.series
    a = c.assets
    dt = c.grid.dt_h
    net = x["net_kwh"]
    # part 1's identities on every metered row, plus net = committed + deviation
    storage_in = x["battery_charge_kwh"] + x["ev_charge_kwh"]
    storage_out = x["battery_discharge_kwh"] + x["ev_discharge_kwh"]
    phys = x["generation_kwh"] + storage_out - x["demand_kwh"] - storage_in
    np.testing.assert_allclose(net, phys, atol=TOL, rtol=0)
    fin = x["grid_export_kwh"] + x["p2p_sold_kwh"] - x["grid_import_kwh"] - x["p2p_bought_kwh"]
    np.testing.assert_allclose(net, fin, atol=TOL, rtol=0)
    np.testing.assert_allclose(net, x["committed_kwh"] + x["deviation_kwh"], atol=TOL, rtol=0)
    # money per slot: participants pay what the retailer and the operator receive
    paid = x["cost"].sum(axis=1)
    received = rec.market["retailer_revenue"] + rec.market["operator_revenue"]
    np.testing.assert_allclose(paid, received, atol=1e-9, rtol=0)
    # metered energy within every asset limit
    b, e = a.battery, a.ev
    for name in ("battery_charge_kwh", "battery_discharge_kwh"):
        assert np.all(x[name] >= -TOL) and np.all(x[name] <= b.power_kw * dt + TOL), name
    assert np.all(x["battery_soc_end_kwh"] >= b.soc_min_kwh - TOL)
    assert np.all(x["battery_soc_end_kwh"] <= b.soc_max_kwh + TOL)
    plugged = c.profiles.ev_plugged
    assert np.all(x["ev_charge_kwh"] <= e.power_kw * dt * plugged + TOL)
    assert np.all(x["ev_discharge_kwh"] <= e.power_kw * dt * (plugged & e.v2h) + TOL)
    assert np.all(x["ev_soc_end_kwh"] >= -TOL) and np.all(
        x["ev_soc_end_kwh"] <= e.capacity_kwh + TOL
    )
    assert np.all(x["generation_kwh"] <= c.profiles.pv_kwh + TOL)
    np.testing.assert_allclose(
        x["demand_kwh"],
        c.profiles.base_demand_kwh + x["thermal_kwh"] + x["shiftable_kwh"],
        atol=TOL,
        rtol=0,
    )
    # comfort: the heat pump (air conditioner) keeps the band's lower (upper) edge unless it
    # runs flat out, and never heats (cools) past the other edge; drifting past it unaided is
    # the weather
    th = a.thermal
    e_th, temp = x["thermal_kwh"], x["indoor_temp_end_c"]
    assert np.all(e_th <= th.p_max_kw * dt + TOL)
    full = e_th >= th.p_max_kw * dt - 1e-9
    idle = e_th <= 1e-12
    hp, ac = th.kind == THERMAL_HEAT_PUMP, th.kind == THERMAL_AIR_CONDITIONER
    assert np.all(((temp >= th.t_min_c - 1e-6) | full)[:, hp])
    assert np.all(((temp <= th.t_max_c + 1e-6) | idle)[:, hp])
    assert np.all(((temp <= th.t_max_c + 1e-6) | full)[:, ac])
    assert np.all(((temp >= th.t_min_c - 1e-6) | idle)[:, ac])


@pytest.mark.parametrize("rule", ["retail", "net-then-causer", "penalty"])
@pytest.mark.parametrize("gate", ["intraday 4", "day-ahead 12:00"])
def test_forecast_error_deviations_are_settled_consistently(rule: str, gate: str) -> None:
    s = _setup(small_scenario(n=9, days=2, ems="price-aware", tou=True))
    rec = _run(s, gate=gate, forecaster=NoisyForecaster(s.community.profiles), rule=rule)
    check_delivery(s, rec)
    dev = rec.series["deviation_kwh"]
    assert np.abs(dev).max() > 0.05  # the forecast error is real
    # storage absorbs part of the error: homes with a battery deviate less
    has_battery = s.community.assets.battery.capacity_kwh > 0
    mean_abs = np.abs(dev).mean(axis=0)
    assert mean_abs[has_battery].mean() < mean_abs[~has_battery].mean()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    scenario=random_scenarios(),
    rule=st.sampled_from(["retail", "net-then-causer", "penalty"]),
    gate=st.sampled_from(["intraday 0", "intraday 2", "day-ahead 12:00"]),
)
def test_delivery_invariants_on_random_communities(
    scenario: Scenario, rule: str, gate: str
) -> None:
    s = _setup(scenario)
    rec = _run(
        s,
        gate=gate,
        forecaster=NoisyForecaster(s.community.profiles, sigma=0.5),
        rule=rule,
        market=scenario.market.mechanism,
    )
    check_delivery(s, rec)


def test_simulate_reports_forecast_and_settlement_blocks() -> None:
    r = simulate(small_scenario(n=4), forecast="perfect")
    f, st_ = r.summary["forecast"], r.summary["settlement"]
    assert f["method"] == "perfect" and f["demand_mae_kwh"] == 0.0
    assert st_["deviation_rule"] == "retail" and st_["gate_closure"] == "intraday 4"
    assert st_["participants_paid"] == pytest.approx(
        st_["retailer_revenue"] + st_["operator_revenue"], abs=1e-3
    )
    assert r.summary["cost"]["forecast_error_cost"] == 0.0
    assert dataclasses.is_dataclass(r.recorded)
