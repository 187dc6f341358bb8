"""The homes an agent runs are scenario participants built by the simulator's machinery: the
scenario's EMS and forecaster, vectorised across them, and meter data replayed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from peergrid.agent.homes import bid_gate, build_homes, deliver_slot, issue_slot, start_runtime
from peergrid.agent.submission import gate_orders
from peergrid.engine.simulate import resolve_full
from peergrid.errors import InputError
from peergrid.scenario.load import load_scenario

METERED = """
schema_version = 1
name = "metered"
seed = 5
[time]
start = 2024-06-03
days = 1
slot_minutes = 15
timezone = "Europe/Berlin"
[data]
meter_file = "meters.csv"
[[participants]]
name = "a"
[[participants]]
name = "b"
battery = { capacity_kwh = 5, power_kw = 2.5 }
[[participants]]
name = "c"
pv = { kwp = 4 }
"""


def test_picked_by_index_and_name_with_the_scenarios_ems_and_forecaster() -> None:
    sc = load_scenario("demo")
    names = [p.name for p in resolve_full(sc).participants]
    homes = build_homes(sc, [2, "battery-home-01", "0"])
    assert homes.names == [names[2], "battery-home-01", names[0]]
    assert homes.n_homes == 3 and homes.dt_h == 0.25 and homes.n_slots == 7 * 96
    assert homes.policy.name == sc.ems.policy == "self-consumption"
    assert homes.feed.forecaster is not None  # the demo's persistence forecasts
    assert type(homes.feed.forecaster).__name__.lower().startswith("persistence")
    assert homes.community.assets.battery.capacity_kwh[1] > 0
    for bad in ([99], ["nobody"], [1, "1"]):
        with pytest.raises(InputError, match="--profile"):
            build_homes(sc, bad)


def test_bid_then_deliver_across_homes() -> None:
    homes = build_homes(load_scenario("demo"), list(range(12)))
    runtime = start_runtime(homes, 40)  # 10:00 local: PV homes sell, others buy
    runtime, bids = bid_gate(homes, runtime, 39, 40, 1)
    orders = gate_orders(39, 40, bids.books)
    assert orders.n_orders > 0 and set(orders.side.tolist()) == {0, 1}
    planned = bids.plans[0].dispatch.net_kwh
    runtime, delivered = deliver_slot(homes, runtime, 40, planned)
    assert runtime.next_delivery == 41 and runtime.planned_until == 41
    assert delivered.dispatch.net_kwh.shape == (12,)
    # the forecast behind the bid was issued the slot before the gate
    issued = homes.feed.forecaster.issue(issue_slot(39), 40, 1)  # type: ignore[union-attr]
    assert np.array_equal(bids.plans[0].base_demand_kwh, issued.demand_kwh[0])


def test_meter_data_are_replayed_for_the_homes_that_have_them(tmp_path: Path) -> None:
    stamps = pd.date_range("2024-06-03", periods=96, freq="15min", tz="Europe/Berlin")
    gen = np.clip(np.sin((np.arange(96) / 4 - 6) / 14 * np.pi), 0, None)
    rows = [
        {"timestamp": t.isoformat(), "participant": p, "demand": d, "generation": g}
        for p, d, gs in (("a", 0.05, gen), ("b", 0.1, np.zeros(96)))
        for t, g in zip(stamps, gs, strict=True)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "meters.csv", index=False)
    (tmp_path / "community.toml").write_text(METERED)
    sc = load_scenario(tmp_path / "community.toml")
    homes = build_homes(sc, ["b", "c"])  # the file also has a, who is not run here
    assert homes.names == ["b", "c"] and homes.community.meter_names == ["b"]
    assert np.allclose(homes.community.profiles.base_demand_kwh[:, 0], 0.1)
    assert homes.community.profiles.pv_kwh[:, 0].sum() == 0
    assert homes.community.profiles.base_demand_kwh[:, 1].std() > 0  # c: synthetic
    homes_a = build_homes(sc, ["a"])
    assert np.allclose(homes_a.community.profiles.pv_kwh[:, 0], gen)
