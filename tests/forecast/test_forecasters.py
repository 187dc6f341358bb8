"""Worked examples of each forecaster, determinism and call order, and ml against persistence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from peergrid.forecast.base import ForecastData, Issued
from peergrid.forecast.metrics import error_metrics
from peergrid.forecast.persistence import smart_persistence_index
from peergrid.forecast.registry import forecaster_names, make_forecaster
from tests.forecast.conftest import ML_SMALL

DAY = 96


def _params(name: str) -> dict[str, object] | None:
    return dict(ML_SMALL) if name == "ml" else None


def test_perfect_returns_the_actuals(small: ForecastData) -> None:
    f = make_forecaster("perfect", None, small, seed=0)
    out = f.issue(-10, 5, 20)
    rows = slice(small.row(5), small.row(25))
    assert np.array_equal(out.demand_kwh, small.demand_kwh[rows])
    assert np.array_equal(out.pv_kwh, small.pv_kwh[rows])
    assert np.array_equal(out.temp_out_c, small.temp_out_c[rows])


def test_persistence_holds_the_last_demand_and_scales_clear_sky(small: ForecastData) -> None:
    f = make_forecaster("persistence", None, small, seed=0)
    g = 13 * 4  # 13:00 local on the run's first day
    out = f.issue(g, g + 4, 8)
    ig = small.row(g)
    assert np.array_equal(out.demand_kwh, np.repeat(small.demand_kwh[ig - 1][None], 8, axis=0))
    # the clear-sky index of the last daylight hour (4 slots), by hand
    for p in (0, 1):
        rows = np.arange(ig - 4, ig)
        k = small.pv_kwh[rows, p].sum() / small.pv_clearsky_kwh[rows, p].sum()
        expect = k * small.pv_clearsky_kwh[small.row(g + 4) : small.row(g + 12), p]
        np.testing.assert_allclose(out.pv_kwh[:, p], expect, rtol=1e-12)
    assert (out.pv_kwh[:, 2] == 0.0).all()
    temp, _ = small.weather.at(g, g + 4, 8)
    assert np.array_equal(out.temp_out_c, temp)


def test_smart_persistence_carries_the_evening_over_the_night() -> None:
    # one participant; daylight in rows 2..5 and 10..13 (clear-sky PV 1.0), pv = 0.5 then 0.8
    clear = np.zeros((16, 1))
    clear[2:6] = 1.0
    clear[10:14] = 1.0
    pv = 0.5 * clear
    pv[10:14] = 0.8
    k = smart_persistence_index(pv, clear, window=2, daylight_frac=0.1)
    assert k.shape == (17, 1)
    assert k[0, 0] == 1.0 and k[2, 0] == 1.0  # nothing observed yet: clear sky
    assert k[3, 0] == pytest.approx(0.5)
    assert k[9, 0] == pytest.approx(0.5)  # the night keeps the evening's index
    assert k[11, 0] == pytest.approx((0.5 + 0.8) / 2)  # window of 2 daylight slots
    assert k[16, 0] == pytest.approx(0.8)


def test_seasonal_naive_uses_the_latest_day_observed_before_the_issue(
    small: ForecastData,
) -> None:
    f = make_forecaster("seasonal-naive", None, small, seed=0)
    g = DAY + 12 * 4  # 12:00 on the run's second day (an ordinary day)
    out = f.issue(g, g, 2 * DAY)
    # targets before the gate's clock time tomorrow: one day earlier if that is observed
    first = small.row(g)
    assert np.array_equal(out.demand_kwh[0], small.demand_kwh[first - DAY])
    # a target 30 h ahead: one day earlier is still in the future, so two days earlier
    k = 30 * 4
    assert np.array_equal(out.demand_kwh[k], small.demand_kwh[first + k - 2 * DAY])
    assert np.array_equal(out.pv_kwh[k], small.pv_kwh[first + k - 2 * DAY])

    weekly = make_forecaster("seasonal-naive", {"period": "week"}, small, seed=0)
    out_w = weekly.issue(g, g, 4)
    # seven local days back cross the 23-hour day of 31 March: 7 × 96 − 4 slots
    assert small.prev_week[first] == first - 7 * DAY + 4
    assert np.array_equal(out_w.demand_kwh[0], small.demand_kwh[first - 7 * DAY + 4])


def test_seasonal_naive_across_the_clock_change(small: ForecastData) -> None:
    # small data starts 22 March 2024; 31 March (spring forward) is history day 9; the slot
    # 02:15 on 1 April (the run's first day) takes the value of 03:00 on 31 March
    f = make_forecaster("seasonal-naive", None, small, seed=0)
    out = f.issue(0, 9, 1)
    assert np.array_equal(out.demand_kwh[0], small.demand_kwh[small.prev_day[small.row(9)]])
    assert small.row(9) - small.prev_day[small.row(9)] == 96 - 3


@pytest.mark.parametrize("name", forecaster_names())
def test_issue_is_deterministic_and_order_free(small: ForecastData, name: str) -> None:
    asks = [(-200, -150, 60), (30, 34, 97), (-48, 0, 2 * DAY), (100, 104, 97)]

    def run(order: list[int]) -> dict[int, Issued]:
        f = make_forecaster(name, _params(name), small, seed=3)
        return {i: f.issue(*asks[i]) for i in order}

    a = run([0, 1, 2, 3])
    b = run([3, 2, 1, 0])
    again = make_forecaster(name, _params(name), small, seed=3)
    for i in range(len(asks)):
        c = again.issue(*asks[i])
        c2 = again.issue(*asks[i])
        for x in (b[i], c, c2):
            assert np.array_equal(a[i].demand_kwh, x.demand_kwh)
            assert np.array_equal(a[i].pv_kwh, x.pv_kwh)
            assert np.array_equal(a[i].temp_out_c, x.temp_out_c)
        assert a[i].demand_kwh.shape == (asks[i][2], small.n_participants)
        assert (a[i].pv_kwh >= 0.0).all() and (a[i].demand_kwh >= 0.0).all()


@pytest.mark.parametrize("name", forecaster_names())
def test_bad_requests_raise(small: ForecastData, name: str) -> None:
    f = make_forecaster(name, _params(name), small, seed=0)
    with pytest.raises(ValueError, match="before issue_slot"):
        f.issue(10, 5, 4)
    with pytest.raises(ValueError, match="beyond the run"):
        f.issue(small.n_slots - 10, small.n_slots - 5, 6)
    with pytest.raises(ValueError, match="nothing is observed"):
        f.issue(-small.n_history, 0, 4)


def test_ml_falls_back_to_seasonal_naive_before_enough_history(small: ForecastData) -> None:
    params = dict(ML_SMALL) | {"min_train_days": 30, "train_days": 30}
    f = make_forecaster("ml", params, small, seed=0)
    naive = make_forecaster("seasonal-naive", None, small, seed=0)
    out, ref = f.issue(20, 24, 10), naive.issue(20, 24, 10)
    assert np.array_equal(out.demand_kwh, ref.demand_kwh)
    assert f.timings()["fallback_issues"] == 1.0
    assert f.timings()["models"] == 0.0


def test_ml_trains_on_a_rolling_schedule(small: ForecastData) -> None:
    # 10 days of history: the first virtual base issue needs 7 days of data before it, a model
    # needs 2 of them and retrains every 2 base issues: the first model serves 12:00 on day 0
    f = make_forecaster("ml", dict(ML_SMALL), small, seed=0)
    for g in range(12 * 4, small.n_slots - 97, 24):
        f.issue(g, g + 4, 97)
    t = f.timings()
    assert t["fallback_issues"] == 0.0
    assert t["models"] == 2  # retrains at 12:00 on days 0 and 2
    assert t["train_s"] > 0.0 and t["predict_s"] > 0.0


def _score(data: ForecastData, name: str, params: dict[str, object] | None, lead: int) -> float:
    """Pooled demand RMSE of forecasts issued `lead` slots ahead, one per slot of the run."""
    f = make_forecaster(name, params, data, seed=0)
    fc = np.empty((data.n_slots, data.n_participants))
    step = 4
    for t in range(0, data.n_slots, step):
        n = min(step, data.n_slots - t)
        fc[t : t + n] = f.issue(t - lead, t, n).demand_kwh
    return error_metrics(fc, data.demand_kwh[data.n_history :]).mean_rmse_kwh


def test_ml_beats_persistence_on_demo_demand(demo_data: ForecastData) -> None:
    fast = {"n_estimators": 30, "max_train_rows": 20_000}
    for lead in (4, 48):
        ml = _score(demo_data, "ml", fast, lead)
        persistence = _score(demo_data, "persistence", None, lead)
        assert ml < 0.9 * persistence, (lead, ml, persistence)


def test_changing_the_future_changes_perfect_only(small: ForecastData) -> None:
    # the information rule's one exception, stated as a test
    g = 10
    changed = dataclasses.replace(small, demand_kwh=small.demand_kwh * 2.0)
    a = make_forecaster("perfect", None, small, seed=0).issue(g, g, 4)
    b = make_forecaster("perfect", None, changed, seed=0).issue(g, g, 4)
    assert not np.array_equal(a.demand_kwh, b.demand_kwh)
