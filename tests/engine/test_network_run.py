"""A run on a feeder: network KPIs, files, mapping, charges and loss allocation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import peergrid
from peergrid.engine.network import (
    allocate_run_losses,
    network_charges_of_run,
)
from peergrid.engine.result import SimulationResult
from peergrid.engine.simulate import simulate
from peergrid.errors import InputError
from peergrid.network.feeders import load_network
from peergrid.network.mapping import assign_buses
from peergrid.rundir import write_run
from peergrid.scenario.load import load_scenario
from peergrid.scenario.schema import Scenario
from tests.engine.conftest import small_scenario

NETWORK_KEYS = (
    "min_voltage_pu",
    "max_voltage_pu",
    "voltage_violation_slots",
    "overload_slots",
    "losses_kwh",
)


def with_network(sc: Scenario, **network: Any) -> Scenario:
    data = sc.model_dump(mode="python", exclude_none=True)
    data["network"] = {"feeder": "simbench-lv-rural1", **network}
    return Scenario.model_validate(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, Path]:
    sc = with_network(small_scenario(n=10, days=1, market="uniform"))
    result = simulate(sc)
    out = write_run(result, tmp_path_factory.mktemp("net") / "run")
    return result, out


def test_summary_has_network_kpis_for_both_runs(run: tuple[SimulationResult, Path]) -> None:
    _, out = run
    net = json.loads((out / "summary.json").read_text())["network"]
    for key in NETWORK_KEYS:
        assert key in net
        assert key in net["baseline"]
    assert net["limits"] == {"v_min_pu": 0.94, "v_max_pu": 1.1, "max_loading_pct": 100.0}
    assert 0.9 < net["min_voltage_pu"] <= net["max_voltage_pu"] < 1.2
    assert net["losses_kwh"] > 0.0
    # the self-consumption EMS does not look at the market: same dispatch, same network
    assert net["max_voltage_pu"] == net["baseline"]["max_voltage_pu"]


def test_network_parquet_matches_the_summary(run: tuple[SimulationResult, Path]) -> None:
    result, out = run
    table = pd.read_parquet(out / "network.parquet")
    assert set(table["case"].unique()) == {"p2p", "baseline"}
    buses = table[(table["kind"] == "bus") & (table["case"] == "p2p")]
    n_t = result.community.grid.n_slots
    feeder = result.extra["network"].setup.feeder
    assert len(buses) == n_t * feeder.lv_buses.size
    net = result.summary["network"]
    assert buses["v_pu"].max() == pytest.approx(net["max_voltage_pu"], abs=1e-5)
    assert buses["v_pu"].min() == pytest.approx(net["min_voltage_pu"], abs=1e-5)
    branches = table[(table["kind"] != "bus") & (table["case"] == "p2p")]
    assert branches["loading_pct"].notna().all()
    assert branches["loading_pct"].max() == pytest.approx(net["max_loading_pct"], abs=1e-3)


def test_network_json_is_pandapower_with_the_mapping(run: tuple[SimulationResult, Path]) -> None:
    import pandapower as pp

    result, out = run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = pp.from_json(str(out / "network.json"))
    assert list(net.load["name"]) == result.community.names
    resolved = result.scenario.network
    assert resolved is not None
    assert dict(zip(net.load["name"], net.load["bus"].astype(int), strict=True)) == resolved.buses
    assert len(net.sgen) == 0
    # the saved network runs: pandapower's flow with the first slot's injections
    participants = pd.read_csv(out / "participants.csv")
    assert list(participants["bus"]) == list(net.load["bus"])


def test_resolved_file_repeats_the_network_run(run: tuple[SimulationResult, Path]) -> None:
    result, out = run
    again = simulate(load_scenario(out / "scenario.resolved.toml"))
    assert again.summary["network"] == {
        **result.summary["network"],
        "power_flow_s": again.summary["network"]["power_flow_s"],
    }


def test_bus_mapping_is_seeded_and_uses_household_points() -> None:
    _, feeder = load_network("simbench-lv-rural2")
    names = [f"h{i}" for i in range(150)]
    a = assign_buses(feeder, names, {}, seed=3)
    assert np.array_equal(a, assign_buses(feeder, names, {}, seed=3))
    assert not np.array_equal(a, assign_buses(feeder, names, {}, seed=4))
    household = set(feeder.conn_bus[feeder.conn_type == "household"].tolist())
    assert set(a.tolist()) <= household
    # 150 households on the household points: each point serves one or two of them
    points = feeder.conn_bus[feeder.conn_type == "household"]
    per_bus = np.bincount(points, minlength=feeder.n_bus)
    counts = np.bincount(a, minlength=feeder.n_bus)
    assert points.size < 150 < 2 * points.size
    assert (counts <= 2 * per_bus).all()
    assert (counts >= per_bus).all()
    bus = int(feeder.bus_ids[feeder.lv_buses[3]])
    b = assign_buses(feeder, names, {"h7": bus}, seed=3)
    assert feeder.bus_ids[b[7]] == bus


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ({"buses": {"nobody": 3}}, r"network\.buses: unknown participant 'nobody'"),
        ({"buses": {"h1": 99999}}, r"network\.buses\.h1: the network has no bus 99999"),
        ({"feeder": "atlantis"}, "unknown feeder 'atlantis'"),
        ({"file": "grid.json"}, "give exactly one of 'feeder'"),
        ({"v_max_pu": 0.99}, r"v_max_pu"),
    ],
)
def test_bad_network_sections_name_the_field(network: dict[str, Any], message: str) -> None:
    with pytest.raises((InputError, ValueError), match=message):
        sc = with_network(small_scenario(n=3), **network)
        simulate(sc)


def test_cli_exits_2_for_a_bad_network(tmp_path: Path) -> None:
    from peergrid.cli import main

    path = tmp_path / "bad.toml"
    text = peergrid.scenario.resolve.to_toml(small_scenario(n=2), "")
    path.write_text(text + '\n[network]\nfeeder = "simbench-lv-rural1"\nv_min_pu = 1.2\n')
    assert main(["validate", str(path)]) == 2
    path.write_text(text + '\n[network]\nfeeder = "simbench-lv-rural1"\nbuses = { h0 = 12345 }\n')
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


# --- charges and loss allocation over a run ----------------------------------------------


@st.composite
def run_trades(draw: st.DrawFn) -> dict[str, Any]:
    n_t = draw(st.integers(1, 5))
    n_p = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = rng.random(n_t) < 0.5
    sold = np.zeros((n_t, n_p))
    bought = np.zeros((n_t, n_p))
    rows: dict[str, list[Any]] = {"slot": [], "buyer": [], "seller": [], "quantity_kwh": []}
    for t in range(n_t):
        sellers = rng.random(n_p) < 0.5
        if sellers.all() or not sellers.any():
            continue
        for _ in range(int(rng.integers(1, 5))):
            i = int(rng.choice(np.flatnonzero(sellers)))
            j = int(rng.choice(np.flatnonzero(~sellers)))
            q = float(rng.uniform(0.01, 2.0))
            sold[t, i] += q
            bought[t, j] += q
            if not pool[t]:
                for key, v in zip(rows, (t, j, i, q), strict=True):
                    rows[key].append(v)
        if pool[t]:
            for i in np.flatnonzero(sold[t]):
                for key, v in zip(rows, (t, -1, i, sold[t, i]), strict=True):
                    rows[key].append(v)
            for j in np.flatnonzero(bought[t]):
                for key, v in zip(rows, (t, j, -1, bought[t, j]), strict=True):
                    rows[key].append(v)
    trades = {
        "slot": np.asarray(rows["slot"], dtype=np.int64),
        "buyer": np.asarray(rows["buyer"], dtype=np.int64),
        "seller": np.asarray(rows["seller"], dtype=np.int64),
        "quantity_kwh": np.asarray(rows["quantity_kwh"], dtype=float),
    }
    grid = rng.uniform(-3, 3, (n_t, n_p))
    buyer_net = np.where(bought > 0, -bought - np.abs(grid), grid)
    net = np.where(sold > 0, sold + np.abs(grid), buyer_net)
    return {
        "trades": trades,
        "sold": sold,
        "bought": bought,
        "net": net,
        "pool": pool,
        "fees": rng.uniform(0, 0.05, (n_p, n_p)) * (1 - np.eye(n_p)),
        "lsf": rng.uniform(-0.01, 0.08, (n_t, n_p)),
        "actual": rng.uniform(0.0, 0.5, n_t),
    }


def _pairs(case: dict[str, Any]) -> np.ndarray:
    """The (T, P, P) seller → buyer volumes the run-level functions must imply."""
    sold, bought, tr = case["sold"], case["bought"], case["trades"]
    n_t, n_p = sold.shape
    q = np.zeros((n_t, n_p, n_p))
    for t in range(n_t):
        if case["pool"][t]:
            tot = sold[t].sum()
            if tot > 0:
                q[t] = np.outer(sold[t], bought[t]) / tot
    pair = (tr["buyer"] >= 0) & (tr["seller"] >= 0)
    rows = (tr["slot"][pair], tr["seller"][pair], tr["buyer"][pair], tr["quantity_kwh"][pair])
    for t, i, j, v in zip(*rows, strict=True):
        q[t, i, j] += v
    return q


@settings(max_examples=80, deadline=None)
@given(run_trades(), st.sampled_from(["buyer", "seller", "split"]))
def test_network_charges_sum_to_the_operator_revenue(case: dict[str, Any], payer: str) -> None:
    q = _pairs(case)
    charge = network_charges_of_run(
        case["trades"], case["sold"], case["bought"], case["fees"], payer
    )
    revenue = float((q * case["fees"][None]).sum())
    assert charge.sum() == pytest.approx(revenue, abs=1e-12)
    assert (charge >= -1e-15).all()
    if payer == "buyer":
        expected = np.einsum("tij,ij->j", q, case["fees"])
        np.testing.assert_allclose(charge, expected, atol=1e-12)


@settings(max_examples=80, deadline=None)
@given(run_trades())
def test_allocated_losses_equal_the_actual_losses(case: dict[str, Any]) -> None:
    n_p = case["sold"].shape[1]
    bus_of = np.arange(n_p)  # one participant per bus: lsf per participant = per bus
    p2p, grid, pair_total = allocate_run_losses(
        case["lsf"],
        bus_of,
        case["trades"],
        case["sold"],
        case["bought"],
        case["net"],
        case["actual"],
    )
    np.testing.assert_allclose(p2p.sum(axis=1) + grid.sum(axis=1), case["actual"], atol=1e-12)
    np.testing.assert_allclose(pair_total, _pairs(case).sum(axis=0), atol=1e-12)
    # the P2P part is proportional to the pairs' bilateral exchange coefficients
    q = _pairs(case)
    lsf = case["lsf"]
    pair_loss = (lsf[:, :, None] - lsf[:, None, :]) * q
    grid_loss = lsf * (case["net"] - case["sold"] + case["bought"])
    bec = pair_loss.sum(axis=(1, 2))
    marginal = bec + grid_loss.sum(axis=1)
    # slots where allocate_losses scales (its guard: Σ marginal > 1e-3 Σ |marginal| per slot)
    magnitude = np.abs(pair_loss).sum(axis=(1, 2)) + np.abs(grid_loss).sum(axis=1)
    ok = marginal > 1e-3 * magnitude
    scale = case["actual"] / np.where(ok, marginal, 1.0)
    np.testing.assert_allclose(p2p.sum(axis=1)[ok], (bec * scale)[ok], atol=1e-9)


def test_pair_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import peergrid.engine.network as mod

    rng = np.random.default_rng(4)
    n_t, n_p = 9, 4
    sold = np.where(rng.random((n_t, n_p)) < 0.5, rng.uniform(0, 1, (n_t, n_p)), 0.0)
    bought = np.where(sold == 0, rng.uniform(0, 1, (n_t, n_p)), 0.0)
    scale = sold.sum(axis=1, keepdims=True) / np.maximum(bought.sum(axis=1, keepdims=True), 1e-9)
    bought = bought * scale
    trades: dict[str, Any] = {
        "slot": np.repeat(np.arange(n_t), n_p),
        "buyer": np.where(bought.ravel() > 0, np.tile(np.arange(n_p), n_t), -1),
        "seller": np.where(bought.ravel() > 0, -1, np.tile(np.arange(n_p), n_t)),
        "quantity_kwh": np.maximum(sold, bought).ravel(),
    }
    fees = rng.uniform(0, 0.1, (n_p, n_p))
    whole = network_charges_of_run(trades, sold, bought, fees, "split")
    monkeypatch.setattr(mod, "PAIR_BLOCK_SLOTS", 2)
    np.testing.assert_allclose(network_charges_of_run(trades, sold, bought, fees, "split"), whole)


def test_a_users_pandapower_file_next_to_the_scenario(tmp_path: Path) -> None:
    import pandapower as pp

    net, _ = load_network("kerber-landnetz-kabel-1")
    pp.to_json(net, str(tmp_path / "my-grid.json"))
    text = peergrid.scenario.resolve.to_toml(small_scenario(n=4), "")
    (tmp_path / "community.toml").write_text(text + '\n[network]\nfile = "my-grid.json"\n')
    result = simulate(load_scenario(tmp_path / "community.toml"))
    assert result.summary["network"]["feeder"] == "my-grid.json"
    resolved = result.scenario.network
    assert resolved is not None and resolved.file == str((tmp_path / "my-grid.json").resolve())


def test_a_static_export_cap_holds_and_curtails() -> None:
    sc = with_network(small_scenario(n=6, days=1), export_limit_kw=1.5)
    result = simulate(sc)
    dt_h = result.community.grid.dt_h
    net = result.recorded.series["net_kwh"]
    assert net.max() <= 1.5 * dt_h + 1e-9
    assert result.summary["network"]["envelopes"] == "static"
    assert result.summary["network"]["curtailed_kwh"] > 0.0
    # the baseline keeps to the same connection rule
    assert result.baseline["net_kwh"].max() <= 1.5 * dt_h + 1e-9
    free = simulate(with_network(small_scenario(n=6, days=1)))
    assert free.recorded.series["net_kwh"].max() > 1.5 * dt_h


def test_limits_are_configurable() -> None:
    tight = simulate(with_network(small_scenario(n=10, days=1), v_max_pu=1.02))
    net = tight.summary["network"]
    assert net["limits"]["v_max_pu"] == 1.02
    assert net["max_voltage_pu"] > 1.02
    assert net["overvoltage_slots"] == net["voltage_violation_slots"] > 0


def test_per_slot_network_and_loss_charges_add_up_to_the_bills(tmp_path: Path) -> None:
    """timeseries.parquet carries each slot's network usage and loss charges; per participant
    they sum to participants.csv's totals, which are part of the bill."""
    sc = with_network(
        small_scenario(n=8, days=1, market="uniform"),
        charges={"kind": "uniform", "fee_per_kwh": 0.03, "payer": "split"},
    )
    result = simulate(sc)
    out = write_run(result, tmp_path / "run")
    ts = pd.read_parquet(out / "timeseries.parquet")
    parts = pd.read_csv(out / "participants.csv")
    per = ts.groupby("participant", observed=True)[["network_charge", "loss_charge"]].sum()
    per = per.loc[parts["participant"]]
    assert per["network_charge"].sum() > 0.0 and per["loss_charge"].sum() > 0.0
    np.testing.assert_allclose(per["network_charge"], parts["network_charge"], atol=1e-6)
    np.testing.assert_allclose(per["loss_charge"], parts["loss_charge"], atol=1e-6)
    # without a feeder the columns are not there at all
    plain = simulate(small_scenario(n=3, days=1))
    assert "network_charge" not in plain.timeseries.columns
