"""The coordinated benchmark's quick mode, so that it keeps working (figures not asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_coordinated.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_coordinated", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_coordinated"] = module
    spec.loader.exec_module(module)
    return module


def test_quick_mode_schedules_twenty_households() -> None:
    figures = _load().run(20)
    assert (figures["households"], figures["slots"], figures["assets"]) == (20, 96, "battery")
    assert figures["status"] == "Optimal"
    assert figures["lambda_in_band"]
    assert 0 < figures["total_s"] < 10
    assert figures["cols"] > 0 and figures["nonzeros"] > 0
