"""`PreparesIssues`: preparing the issues of a run changes no answer, leaves `issue` nothing
expensive to do, keeps the information rule, and the engine prepares everything a run asks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from peergrid.engine.simulate import simulate
from peergrid.forecast.base import ForecastData, Forecaster, Issued, PreparesIssues
from peergrid.forecast.ml import GradientBoosting
from peergrid.forecast.registry import forecaster_names, make_forecaster
from peergrid.scenario.schema import ForecastSpec
from tests.engine.conftest import small_scenario
from tests.forecast.conftest import ML_SMALL

DAY = 96
K = 4  # intraday gates one hour ahead


def _asks(data: ForecastData) -> list[tuple[int, int, int]]:
    """Intraday gates (t − K for t .. t + 1 day), the baseline's (t for t .. t + 1 day),
    day-ahead-like asks, and asks no `prepare` below covers (too far ahead, before the run)."""
    t_end = data.n_slots
    asks = [(t - K, t, min(DAY, t_end - t)) for t in range(0, t_end, 3)]
    asks += [(t, t, min(DAY, t_end - t)) for t in range(1, t_end, 5)]
    asks += [(g, g + 48, min(2 * DAY, t_end - g - 48)) for g in (-48, 48, DAY + 48)]
    asks += [(10, 10, t_end - 10), (-300, -300, 200), (-5 * DAY, -4 * DAY, DAY), (7, 9, 1)]
    return asks


def _same(a: Issued, b: Issued) -> None:
    np.testing.assert_array_equal(a.demand_kwh, b.demand_kwh)
    np.testing.assert_array_equal(a.pv_kwh, b.pv_kwh)
    np.testing.assert_array_equal(a.temp_out_c, b.temp_out_c)


def _made(data: ForecastData) -> Forecaster:
    return make_forecaster("ml", dict(ML_SMALL), data, seed=2)


def test_only_ml_prepares(small: ForecastData) -> None:
    params = {"ml": dict(ML_SMALL)}
    prepares = {
        n
        for n in forecaster_names()
        if isinstance(make_forecaster(n, params.get(n), small, seed=0), PreparesIssues)
    }
    assert prepares == {"ml"}


@pytest.mark.parametrize(
    ("slots", "horizon"),
    [
        ("all", K + DAY),  # every slot, as far as the intraday gates read
        ("gates", 2 * DAY),  # every third intraday gate only
        ("all", 1),  # too short for any ask: everything beyond is lazy
    ],
)
def test_prepare_changes_no_answer(small: ForecastData, slots: str, horizon: int) -> None:
    asks = _asks(small)
    lazy = _made(small)
    expected = [lazy.issue(*a) for a in asks]
    prepared = _made(small)
    assert isinstance(prepared, PreparesIssues)
    if slots == "all":
        issue_slots = np.arange(-small.n_history, small.n_slots, dtype=np.int64)
    else:
        issue_slots = np.arange(-K, small.n_slots - K, 3, dtype=np.int64)
    prepared.prepare(issue_slots[::-1].copy(), horizon)  # any order
    # asked in reverse order: neither the order nor prepare changes an answer
    got = [prepared.issue(*a) for a in reversed(asks)][::-1]
    for a, b in zip(expected, got, strict=True):
        _same(a, b)
    assert prepared.timings()["fallback_issues"] == lazy.timings()["fallback_issues"] > 0


def test_prepare_in_small_batches_changes_no_answer(
    small: ForecastData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LightGBM calls that split base issues, update batches of a few gates
    from peergrid.forecast import ml

    asks = _asks(small)[::4]
    expected = [_made(small).issue(*a) for a in asks]
    monkeypatch.setattr(ml, "_BATCH_TRIPLES", 7 * small.n_participants)
    monkeypatch.setattr(ml, "_BATCH_GATES", 3)
    f = _made(small)
    assert isinstance(f, PreparesIssues)
    f.prepare(np.arange(-K, small.n_slots, dtype=np.int64), 2 * DAY)
    for a, e in zip(asks, expected, strict=True):
        _same(f.issue(*a), e)


def test_after_prepare_issue_only_slices(small: ForecastData) -> None:
    f = _made(small)
    assert isinstance(f, PreparesIssues)
    slots = np.arange(-K, small.n_slots - K, dtype=np.int64)
    f.prepare(np.concatenate([slots, slots + K]), K + DAY)
    before = f.timings()
    assert before["prepare_s"] > 0.0 and before["models"] >= 2.0
    assert before["lazy_predictions"] == 0.0
    for t in range(small.n_slots):
        f.issue(t - K, t, min(DAY, small.n_slots - t))
        f.issue(t, t, min(DAY, small.n_slots - t))
    after = f.timings()
    for key in ("features_s", "train_s", "predict_s", "models", "lazy_predictions"):
        assert after[key] == before[key], key
    # an ask beyond what was prepared is still answered, lazily
    f.issue(DAY // 2 + K, DAY // 2 + K, small.n_slots - DAY // 2 - K)
    assert f.timings()["lazy_predictions"] > 0.0


def test_a_later_prepare_replaces_the_earlier(small: ForecastData) -> None:
    f = _made(small)
    assert isinstance(f, PreparesIssues)
    f.prepare(np.arange(0, 50, dtype=np.int64), 10)
    f.prepare(np.arange(100, 150, dtype=np.int64), 10)
    ref = _made(small)
    for g in (10, 120):
        _same(f.issue(g, g, 10), ref.issue(g, g, 10))


def test_nothing_decided_by_T_depends_on_data_after_T_when_prepared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the engine-level property of tests/engine/test_no_future.py with every forecaster
    # prepared first for every slot of the data, far ahead
    from tests.engine import test_no_future

    def prepared(name: str, params: Any, data: ForecastData, *, seed: int) -> Forecaster:
        f = make_forecaster(name, params, data, seed=seed)
        assert isinstance(f, PreparesIssues)
        f.prepare(np.arange(-data.n_history, data.n_slots, dtype=np.int64), 3 * DAY)
        return f

    monkeypatch.setattr(test_no_future, "make_forecaster", prepared)
    for gate in ("intraday 4", "day-ahead 12:00"):
        test_no_future.test_nothing_decided_by_T_depends_on_data_after_T("ml", gate, monkeypatch)


@pytest.mark.parametrize("gate", ["intraday 4", "day-ahead 12:00"])
def test_simulate_prepares_what_the_run_asks(gate: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sc = small_scenario(n=4, days=2, ems="price-aware", gate_closure=gate)
    sc = sc.model_copy(
        update={"forecast": ForecastSpec(method="ml", params=dict(ML_SMALL), history_days=12)}
    )
    prepared = simulate(sc, twin=False)
    timing = prepared.summary["timing_s"]
    fc = timing["forecaster"]
    # the lifecycle's gates, the baseline's issues: nothing was left to compute lazily
    assert fc["lazy_predictions"] == 0.0 and fc["fallback_issues"] == 0.0
    assert 0.0 < fc["prepare_s"] <= timing["forecast_setup"] + 1e-3

    monkeypatch.setattr(GradientBoosting, "prepare", lambda self, slots, horizon: None)
    lazy = simulate(sc, twin=False)
    assert lazy.summary["timing_s"]["forecaster"]["lazy_predictions"] > 0.0
    for key, series in prepared.recorded.series.items():
        np.testing.assert_array_equal(series, lazy.recorded.series[key], err_msg=key)
    assert prepared.summary["forecast"] == lazy.summary["forecast"]
    assert prepared.summary["cost"] == lazy.summary["cost"]
