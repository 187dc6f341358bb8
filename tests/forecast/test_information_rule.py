"""The information rule, for every registered forecaster: a forecast issued at or before slot g
is unchanged when every observation in slots >= g (demand, PV, temperature, irradiance) and
every weather-forecast run issued after g change. (`perfect` is the rule's stated exception.)
Forecasters that prepare their issues (`PreparesIssues`) keep it when prepared for every slot
of the data first."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from peergrid.data.weather_forecast import WeatherForecasts
from peergrid.forecast.base import ForecastData, PreparesIssues
from peergrid.forecast.registry import forecaster_names, make_forecaster
from tests.forecast.conftest import ML_SMALL, small_data

DATA = small_data(days_history=9, days_run=3, seed=5)
RULED = [n for n in forecaster_names() if n != "perfect"]


def _params(name: str) -> dict[str, object] | None:
    return dict(ML_SMALL) if name == "ml" else None


def _future_changed(data: ForecastData, g: int, seed: int) -> ForecastData:
    """Every observation in rows of slots >= g and every weather run issued after g redrawn."""
    rng = np.random.default_rng(seed)
    cut = data.row(g)

    def redraw(x: np.ndarray, scale: float) -> np.ndarray:
        y = x.copy()
        y[cut:] = np.abs(rng.normal(0.0, scale, y[cut:].shape))
        return y

    wf = data.weather
    later = wf.run_slot > g
    temp_fc = wf.temp_out_c.copy()
    ghi_fc = wf.ghi_w_m2.copy()
    temp_fc[later] = rng.normal(30.0, 5.0, temp_fc[later].shape)
    ghi_fc[later] = rng.uniform(0.0, 900.0, ghi_fc[later].shape)
    return dataclasses.replace(
        data,
        demand_kwh=redraw(data.demand_kwh, 0.5),
        pv_kwh=redraw(data.pv_kwh, 1.0),
        temp_out_c=redraw(data.temp_out_c, 20.0),
        ghi_w_m2=redraw(data.ghi_w_m2, 500.0),
        weather=WeatherForecasts(wf.run_slot, temp_fc, ghi_fc, "changed after the gate"),
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(RULED),
    g=st.integers(min_value=-2 * 96, max_value=DATA.n_slots - 1),
    back=st.integers(min_value=0, max_value=96),
    ahead=st.integers(min_value=0, max_value=60),
    n=st.integers(min_value=1, max_value=100),
    seed=st.integers(min_value=0, max_value=2**16),
    prepared=st.booleans(),
)
# ml with trained models (the first serves 12:00 on run day 1, slot 144), a day-ahead-like ask
@example(name="ml", g=230, back=40, ahead=30, n=100, seed=1, prepared=False)
@example(name="ml", g=150, back=0, ahead=4, n=97, seed=2, prepared=False)
@example(name="ml", g=230, back=40, ahead=30, n=100, seed=1, prepared=True)
@example(name="ml", g=150, back=0, ahead=4, n=97, seed=2, prepared=True)
def test_forecasts_issued_by_g_ignore_everything_from_g_on(
    name: str, g: int, back: int, ahead: int, n: int, seed: int, prepared: bool
) -> None:
    issue = g - back
    first = min(issue + ahead, DATA.n_slots - 1)
    n = min(n, DATA.n_slots - first)
    changed = _future_changed(DATA, g, seed)
    a = make_forecaster(name, _params(name), DATA, seed=1)
    b = make_forecaster(name, _params(name), changed, seed=1)
    if prepared:  # every slot, as far ahead as any ask below reaches
        slots = np.arange(-DATA.n_history, DATA.n_slots, dtype=np.int64)
        for f in (a, b):
            if isinstance(f, PreparesIssues):
                f.prepare(slots, 400)
    if name == "ml" and issue >= 144 + 4:  # the examples above: a model, not the fallback
        a.issue(issue, issue, 1)
        assert a.timings()["models"] >= 1.0 and a.timings()["fallback_issues"] == 0.0
    for i in (issue, g):
        fa = a.issue(i, max(first, i), min(n, DATA.n_slots - max(first, i)))
        fb = b.issue(i, max(first, i), min(n, DATA.n_slots - max(first, i)))
        np.testing.assert_array_equal(fa.demand_kwh, fb.demand_kwh)
        np.testing.assert_array_equal(fa.pv_kwh, fb.pv_kwh)
        np.testing.assert_array_equal(fa.temp_out_c, fb.temp_out_c)
    if prepared:  # the answers came from what prepare computed
        assert a.timings().get("lazy_predictions", 0.0) == 0.0


def test_ml_sees_the_change_after_the_gate() -> None:
    # a guard that the property above exercises something: a gate after the change differs
    # (run day 1, 12:00 + 1 h: a model exists, and its update reads the changed hour)
    g = 96 + 48
    changed = _future_changed(DATA, g, 0)
    f = make_forecaster("ml", dict(ML_SMALL), DATA, seed=1)
    a = f.issue(g + 4, g + 4, 4)
    b = make_forecaster("ml", dict(ML_SMALL), changed, seed=1).issue(g + 4, g + 4, 4)
    assert f.timings()["fallback_issues"] == 0.0
    assert not np.array_equal(a.demand_kwh, b.demand_kwh)
    assert not np.array_equal(a.pv_kwh, b.pv_kwh)
