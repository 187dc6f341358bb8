"""The run directory: its files, its columns, atomic writing, exact repetition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from peergrid import load_scenario, simulate
from peergrid.engine.result import SimulationResult
from peergrid.engine.series import TIMESERIES_COLUMNS, timeseries_columns
from peergrid.errors import InputError
from peergrid.rundir import run as rundir_run
from peergrid.rundir import write_run

from .conftest import small_scenario

SUMMARY_KEYS = [
    "scenario",
    "market",
    "participants",
    "slots",
    "slot_minutes",
    "runtime_s",
    "energy.demand_kwh",
    "energy.generation_kwh",
    "energy.grid_import_kwh",
    "energy.grid_export_kwh",
    "energy.p2p_traded_kwh",
    "cost.currency",
    "cost.baseline_total",
    "cost.total",
    "cost.savings_pct",
    "kpi.self_sufficiency",
    "kpi.self_consumption",
    "kpi.peak_import_kw",
    "kpi.baseline_peak_import_kw",
    "kpi.peak_to_average",
    "kpi.fairness_jain",
    "kpi.participants_worse_off",
    "forecast.method",
    "forecast.demand_mae_kwh",
    "forecast.generation_mae_kwh",
    "forecast.skill_vs_persistence",
    "settlement.deviation_rule",
    "settlement.gate_closure",
    "cost.perfect_foresight_total",
    "cost.forecast_error_cost",
]
TS_COLUMNS = ["slot_start", "participant", *timeseries_columns(False), "ev_plugged"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, Path]:
    result = simulate(small_scenario(n=5))
    out = tmp_path_factory.mktemp("runs") / "r1"
    write_run(result, out)
    return result, out


def test_files_and_summary_keys(run: tuple[SimulationResult, Path]) -> None:
    _, out = run
    for name in (
        "summary.json",
        "participants.csv",
        "timeseries.parquet",
        "trades.parquet",
        "scenario.resolved.toml",
        "report.html",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    for key in SUMMARY_KEYS:
        node = summary
        for part in key.split("."):
            node = node[part]
        assert node is not None or key == "kpi.peak_to_average", key


def test_timeseries_columns_and_identities_on_disk(run: tuple[SimulationResult, Path]) -> None:
    result, out = run
    ts = pd.read_parquet(out / "timeseries.parquet")
    assert list(ts.columns) == TS_COLUMNS
    assert len(ts) == result.summary["slots"] * result.summary["participants"]
    assert str(ts["slot_start"].dt.tz) == "UTC"
    a = ts["net_kwh"] - (
        ts["generation_kwh"]
        + ts["storage_discharge_kwh"]
        - ts["demand_kwh"]
        - ts["storage_charge_kwh"]
    )
    b = ts["net_kwh"] - (
        ts["grid_export_kwh"] + ts["p2p_sold_kwh"] - ts["grid_import_kwh"] - ts["p2p_bought_kwh"]
    )
    assert a.abs().max() <= 1e-9 and b.abs().max() <= 1e-9
    parts = pd.read_csv(out / "participants.csv")
    for col in (
        "participant",
        "baseline_bill",
        "bill",
        "saving",
        "saving_pct",
        "grid_import_kwh",
        "grid_export_kwh",
        "p2p_bought_kwh",
        "p2p_sold_kwh",
    ):
        assert col in parts.columns
    trades = pd.read_parquet(out / "trades.parquet")
    assert {"slot_start", "buyer", "seller", "quantity_kwh", "price"} <= set(trades.columns)


def test_resolved_scenario_repeats_the_run_exactly(run: tuple[SimulationResult, Path]) -> None:
    result, out = run
    again = simulate(load_scenario(out / "scenario.resolved.toml"))
    for key in result.recorded.series:
        assert np.array_equal(
            result.recorded.series[key], again.recorded.series[key], equal_nan=True
        ), key
    a = {k: v for k, v in result.summary.items() if k not in ("runtime_s", "timing_s")}
    b = {k: v for k, v in again.summary.items() if k not in ("runtime_s", "timing_s")}
    assert a == b


def test_interrupted_save_leaves_nothing_that_looks_complete(
    run: tuple[SimulationResult, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, _ = run

    def boom(result: SimulationResult) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir_run, "report_html", boom)
    with pytest.raises(KeyboardInterrupt):
        write_run(result, tmp_path / "r2")
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_an_old_run_but_not_a_foreign_folder(
    run: tuple[SimulationResult, Path], tmp_path: Path
) -> None:
    result, _ = run
    target = tmp_path / "r"
    write_run(result, target)
    (target / "stale.txt").write_text("old")
    write_run(result, target)
    assert not (target / "stale.txt").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="not a peergrid run directory"):
        write_run(result, foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(("market", "ems"), [("uniform", "price-aware"), ("sdr", "price-aware")])
def test_every_policy_and_mechanism_round_trips_through_the_resolved_file(
    tmp_path: Path, market: str, ems: str
) -> None:
    result = simulate(small_scenario(n=4, market=market, ems=ems))
    out = write_run(result, tmp_path / "r")
    again = simulate(load_scenario(out / "scenario.resolved.toml"))
    assert again.summary["cost"] == result.summary["cost"]
    assert again.scenario.ems == result.scenario.ems


def test_every_output_column_is_in_the_nomenclature() -> None:
    """The series table (engine/series.py) and docs/nomenclature.md cannot drift apart."""
    from peergrid.engine.series import PRICE_COLUMNS

    doc = (Path(__file__).parents[2] / "docs" / "nomenclature.md").read_text("utf-8")
    missing = [c for c in (*TIMESERIES_COLUMNS, *PRICE_COLUMNS) if f"`{c}`" not in doc]
    assert not missing, missing
