"""`persistence`: what was last observed, held.

Demand: the last observed slot (the one just before the issue) held flat over every target.

PV: *smart persistence* (the benchmark of solar forecasting, e.g. Perez et al. 2013): the
clear-sky index of the latest daylight observations times each target's clear-sky PV,

    k_p = Σ pv_p / Σ pv_clear_p   over p's last `window_h` of daylight slots before the issue,
    PV_p(t) = k_p · pv_clear_p(t).

A slot is *daylight* for participant p when its clear-sky PV is at least `daylight_frac` of
p's largest clear-sky slot: dawn and dusk, where the ratio is noise, do not count. At night (and
in the morning before the first daylight slot of the day) the latest daylight observations are
those of the previous evening, so the index of the last daylight hour carries over the night;
night targets get zero PV because their clear-sky PV is zero. Before any daylight observation
(only at the very start of the data) k = 1, clear sky. Participants without PV get zero.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from peergrid.forecast.base import FloatArray, ForecastData, ForecastParams, Issued
from peergrid.forecast.common import check_request, weather_temperature

BoolArray = NDArray[np.bool_]

#: Largest clear-sky index persistence carries (cold, clear days exceed 1 slightly).
K_MAX = 1.5


def daylight_mask(pv_clearsky_kwh: FloatArray, daylight_frac: float) -> BoolArray:
    """(N, P) bool: clear-sky PV >= `daylight_frac` × the participant's largest slot (and > 0)."""
    peak = pv_clearsky_kwh.max(axis=0)
    mask = (pv_clearsky_kwh >= daylight_frac * peak[None, :]) & (peak[None, :] > 0.0)
    return np.asarray(mask, dtype=np.bool_)


def smart_persistence_index(
    pv_kwh: FloatArray, pv_clearsky_kwh: FloatArray, *, window: int, daylight_frac: float
) -> FloatArray:
    """k[i, p] = Σ pv / Σ pv_clear over p's last `window` daylight slots before row i,
    (N + 1, P) [-], in [0, K_MAX]; 1 where p has no daylight slot before i.

    Row i of the result uses rows < i only: it is what a forecast issued at row i may know."""
    n, p = pv_kwh.shape
    day = daylight_mask(pv_clearsky_kwh, daylight_frac)
    out = np.ones((n + 1, p), dtype=np.float64)
    for j in np.flatnonzero(day.any(axis=0)):  # once per participant, at set-up
        rows = np.flatnonzero(day[:, j])
        cum_pv = np.concatenate([[0.0], np.cumsum(pv_kwh[rows, j])])
        cum_cs = np.concatenate([[0.0], np.cumsum(pv_clearsky_kwh[rows, j])])
        # count[i] = daylight rows before row i
        count = np.searchsorted(rows, np.arange(n + 1), side="left")
        lo = np.maximum(count - window, 0)
        num = cum_pv[count] - cum_pv[lo]
        den = cum_cs[count] - cum_cs[lo]
        k = np.where(count > 0, num / np.where(den > 0.0, den, 1.0), 1.0)
        out[:, j] = np.clip(k, 0.0, K_MAX)
    return out


class PersistenceParams(ForecastParams):
    window_h: float = Field(
        1.0, gt=0.0, le=24.0, description="daylight observations that form the clear-sky index [h]"
    )
    daylight_frac: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="a slot is daylight when its clear-sky PV is at least this share of the "
        "participant's largest [-]",
    )


class Persistence:
    """Last observed demand held flat; smart persistence for PV (module docstring)."""

    name: ClassVar[str] = "persistence"
    description: ClassVar[str] = (
        "demand: last observed slot held flat; PV: clear-sky index of the last daylight hour "
        "times clear-sky PV"
    )
    Params: ClassVar[type[ForecastParams]] = PersistenceParams

    def __init__(self, params: PersistenceParams, data: ForecastData, *, seed: int) -> None:
        self._params = params
        self._data = data
        window = max(1, round(params.window_h / data.dt_h))
        self._k = smart_persistence_index(
            data.pv_kwh, data.pv_clearsky_kwh, window=window, daylight_frac=params.daylight_frac
        )

    @property
    def params(self) -> ForecastParams:
        return self._params

    def issue(self, issue_slot: int, first_slot: int, n_slots: int) -> Issued:
        d = self._data
        check_request(d, issue_slot, first_slot, n_slots)
        ig = d.row(issue_slot)
        a = d.row(first_slot)
        demand = np.repeat(d.demand_kwh[ig - 1][None, :], n_slots, axis=0)
        pv = d.pv_clearsky_kwh[a : a + n_slots] * self._k[ig]
        return Issued(
            issue_slot=issue_slot,
            first_slot=first_slot,
            demand_kwh=demand,
            pv_kwh=pv,
            temp_out_c=weather_temperature(d, issue_slot, first_slot, n_slots),
        )

    def timings(self) -> dict[str, float]:
        return {}
