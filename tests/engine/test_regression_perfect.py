"""With perfect forecasts the lifecycle reproduces the parts 1–3 engine to 1e-9 (golden
fingerprints in tests/cases/parts-1-3-regression), at the slot itself and day-ahead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peergrid import load_scenario, simulate

CASES = Path(__file__).parents[1] / "cases" / "parts-1-3-regression"
TOL = 1e-9


DAY_AHEAD = ("demo-sdr", "demo-coordinated", "high-pv-sdr")
RUNS = [(p, "intraday 0") for p in sorted(CASES.glob("*.json"))] + [
    (CASES / f"{name}.json", "day-ahead 12:00") for name in DAY_AHEAD
]


@pytest.mark.parametrize(("path", "gate"), RUNS, ids=lambda x: getattr(x, "stem", str(x)))
def test_perfect_foresight_equals_the_previous_engine(path: Path, gate: str) -> None:
    case = json.loads(path.read_text())
    sc = load_scenario(case["scenario"])
    sc = sc.model_copy(
        update={
            "time": sc.time.model_copy(update={"days": case["days"]}),
            "market": sc.market.model_copy(update={"gate_closure": gate}),
        }
    )
    r = simulate(sc, market=case["market"], forecast="perfect")
    assert r.summary["settlement"]["gate_closure"] == gate
    assert np.all(r.series("deviation_kwh") == 0.0)
    for name, fp in case["series"].items():
        a = np.nan_to_num(r.series(name))
        assert a.sum() == pytest.approx(fp["sum"], abs=TOL), name
        assert np.abs(a).sum() == pytest.approx(fp["abs_sum"], abs=TOL), name
        assert (a * a).sum() == pytest.approx(fp["sum_sq"], abs=TOL), name
        np.testing.assert_allclose(a.ravel()[fp["at"]], fp["values"], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.participants["bill"], case["bill"], rtol=0, atol=TOL)
