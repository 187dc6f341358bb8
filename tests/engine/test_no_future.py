"""Forecasts, orders and commitments never see the future: with every meter reading and weather
observation from slot T on changed (and every weather-forecast run issued after T), every slot
whose gate closed at or before T gets identical forecasts, orders and commitments, and every
slot before T is delivered and settled identically — for every forecaster, ml included."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from peergrid.assets.params import Profiles
from peergrid.ems.registry import make_policy
from peergrid.engine import lifecycle, loop
from peergrid.engine.community import build_community, build_history
from peergrid.engine.feed import ForecastFeed
from peergrid.engine.forecast_data import forecast_data_of
from peergrid.engine.loop import Recorded, run_lifecycle
from peergrid.engine.simulate import resolve_full
from peergrid.forecast.base import ForecastData
from peergrid.forecast.registry import make_forecaster
from peergrid.markets.gate import GateSchedule, gate_schedule, parse_gate_closure
from peergrid.markets.registry import get_mechanism
from peergrid.rng import child_rng
from tests.forecast.conftest import ML_SMALL
from tests.forecast.test_information_rule import _future_changed

from .conftest import small_scenario

T = 130  # slots before T are observed by the gates that happen at or before T
HISTORY_DAYS = 9


def _run(
    name: str,
    gate: str,
    data: ForecastData,
    profiles: Profiles,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Recorded, dict[int, Any], GateSchedule]:
    sc = resolve_full(small_scenario(n=5, days=3, ems="price-aware", tou=True, gate_closure=gate))
    c = build_community(sc, None)
    params = dict(ML_SMALL) if name == "ml" else None
    forecaster = make_forecaster(name, params, data, seed=3)
    feed = ForecastFeed.build(profiles, c.retail_price, c.feed_in_price, c.grid.dt_h, forecaster)
    gates = gate_schedule(c.grid, parse_gate_closure(gate, c.grid.slot_minutes))
    policy = make_policy("price-aware", None, c.n_participants, child_rng(sc.seed, "ems"))
    seen: dict[int, Any] = {}
    real_bid, real_clear = lifecycle.bid, lifecycle.clear

    def bid(policy: Any, runtime: Any, g: Any, assets: Any, **kw: Any) -> Any:
        out = real_bid(policy, runtime, g, assets, **kw)
        for k in range(g.n_slots):
            seen[g.first_slot + k] = {"demand_fc": g.forecast.base_demand_kwh[k].copy()}
        return out

    def clear(mechanism: Any, book: Any, ctx: Any, n: int, *args: Any) -> Any:
        cl = real_clear(mechanism, book, ctx, n, *args)
        seen[ctx.slot] |= {
            "orders": (book.participant.copy(), book.side.copy(), book.quantity_kwh.copy()),
            "prices": book.price.copy(),
            "committed": cl.commitment.committed_kwh.copy(),
            "fills": cl.result.filled_kwh.copy(),
        }
        return cl

    monkeypatch.setattr(loop, "bid", bid)
    monkeypatch.setattr(loop, "clear", clear)
    rec = run_lifecycle(feed, c.assets, policy, get_mechanism("uniform"), gates)
    return rec, seen, gates


@pytest.mark.parametrize("gate", ["intraday 4", "day-ahead 12:00"])
@pytest.mark.parametrize("name", ["persistence", "seasonal-naive", "ml"])
def test_nothing_decided_by_T_depends_on_data_after_T(
    name: str, gate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = resolve_full(small_scenario(n=5, days=3))
    c = build_community(sc, None)
    data = forecast_data_of(c, build_history(sc, HISTORY_DAYS, []), seed=3)
    changed = _future_changed(data, T, seed=11)
    n_h = data.n_history
    p = c.profiles
    later = dataclasses.replace(
        p,
        base_demand_kwh=changed.demand_kwh[n_h:],
        pv_kwh=changed.pv_kwh[n_h:],
        temp_out_c=changed.temp_out_c[n_h:],
    )
    assert not np.array_equal(later.base_demand_kwh[T:], p.base_demand_kwh[T:])
    np.testing.assert_array_equal(later.base_demand_kwh[:T], p.base_demand_kwh[:T])

    rec_a, seen_a, gates = _run(name, gate, data, p, monkeypatch)
    rec_b, seen_b, _ = _run(name, gate, changed, later, monkeypatch)
    decided = np.flatnonzero(gates.gate_of_slot <= T)
    assert decided.size > 0 and decided.size < c.grid.n_slots
    for s in decided:
        a, b = seen_a[int(s)], seen_b[int(s)]
        np.testing.assert_array_equal(a["demand_fc"], b["demand_fc"])
        for x, y in zip(a["orders"], b["orders"], strict=True):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(a["prices"], b["prices"])
        np.testing.assert_array_equal(a["committed"], b["committed"])
        np.testing.assert_array_equal(a["fills"], b["fills"])
    for key in ("net_kwh", "cost", "battery_soc_end_kwh", "deviation_kwh"):
        np.testing.assert_array_equal(rec_a.series[key][:T], rec_b.series[key][:T], err_msg=key)
    # and something after T did change: the test is not vacuous
    after = np.flatnonzero(gates.gate_of_slot > T)
    assert any(
        not np.array_equal(seen_a[int(s)]["committed"], seen_b[int(s)]["committed"]) for s in after
    )
