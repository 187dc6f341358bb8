"""Quick modes of the benchmarks, so that they keep working (figures are not asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_simulate_benchmark_quick_mode() -> None:
    bench = _load("bench_simulate")
    figures = bench.run(days=2)
    assert figures["participants"] == 100
    assert figures["slots"] == 192
    assert 0 < figures["wall_s"] < 60
    assert figures["peak_rss_mb"] > 0


def test_network_benchmark_quick_mode() -> None:
    bench = _load("bench_network")
    figures = bench.run("simbench-lv-rural3", days=1, pp_slots=4)
    assert figures["buses"] >= 100
    assert figures["slots"] == 96
    assert figures["speedup"] > 1.0
    assert 0.9 < figures["min_voltage_pu"] <= figures["max_voltage_pu"] < 1.2


def test_forecast_benchmark_quick_mode() -> None:
    bench = _load("bench_forecast")
    figures = bench.run(days=2)
    assert figures["participants"] == 100
    assert figures["slots"] == 192
    methods = {(r["method"], r["regime"]) for r in figures["results"]}
    assert ("ml", "intraday-4") in methods and ("persistence", "day-ahead") in methods
    perfect = [r for r in figures["results"] if r["method"] == "perfect"]
    assert all(r["demand"]["rmse_kwh"] == 0.0 for r in perfect)


def test_ledger_benchmark_quick_mode() -> None:
    bench = _load("bench_ledger")
    figures = bench.run("demo", days=1, repeats=1)
    assert figures["participants"] == 36 and figures["slots"] == 96
    assert figures["signatures"] > 0 and figures["entries"] > figures["signatures"]
    assert figures["run_with_ledger_s"] > 0 and figures["verify_s"] > 0
    assert figures["append_per_s"] > 0


def test_live_load_benchmark_quick_mode() -> None:
    bench = _load("bench_live_load")
    figures = bench.run(rate=50.0, seconds=3.0, pg=False, n_participants=10, slot_seconds=2.0)
    orders = figures["orders"]
    assert orders["sent"] == 150 and orders["ok"] == 150
    assert figures["orders_stored"] == 150
    assert 0 < orders["p50_ms"] <= orders["p99_ms"] < 5000
    assert figures["reference_health"]["ok"] == figures["reference_health"]["sent"]
