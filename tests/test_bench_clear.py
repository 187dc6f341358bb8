"""Quick mode of the clearing benchmark, so that it keeps working (figures are not asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_clear.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_clear", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clear_benchmark_quick_mode() -> None:
    bench = _load()
    figures = bench.run(quick=True)
    assert figures["quick"] is True
    assert figures["n_orders"] == bench.QUICK["n_orders"]
    for key in ("sort_s", "uniform_s", "pay_as_bid_s", "k_double_s", "totals_s", "sdr_s"):
        assert 0.0 < figures[key] < 10.0, key
    assert figures["uniform_over_sort"] == figures["uniform_s"] / figures["sort_s"]
    assert figures["ratio_repeat"] == bench.RATIO_REPEAT["quick"]
    assert 0.0 < figures["mmr_s"] < 10.0
    assert 0.0 < figures["bill_sharing_s"] < 10.0
    assert isinstance(figures["ratio_target_met"], bool)
    assert isinstance(figures["community_target_met"], bool)
