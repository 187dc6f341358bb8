"""`seasonal-naive`: the same local clock time one day (or one week) earlier.

For each target slot t the forecast is the observed value at the most recent slot with t's
local clock time, one (`period = "day"`) or seven (`"week"`) local days apart, that was observed
before the issue: t − 1 day if that lies before the gate, else t − 2 days, and so on (the lag is
at least the lead). Clock-change days follow `ForecastData.prev_day`. Where the chain leaves the
data (only at its very start) the last observed slot is used. Demand and PV alike; temperature
from the weather forecast.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from peergrid.forecast.base import ForecastData, ForecastParams, IntArray, Issued
from peergrid.forecast.common import (
    check_request,
    latest_lag_rows,
    target_rows,
    weather_temperature,
)


def seasonal_naive_rows(lag_rows: IntArray, rows: IntArray, issue_row: int) -> IntArray:
    """The observed row each target row takes its value from (module docstring), (n,)."""
    r = latest_lag_rows(lag_rows, rows, issue_row)
    return np.where(r >= 0, r, issue_row - 1).astype(np.int64)


class SeasonalNaiveParams(ForecastParams):
    period: Literal["day", "week"] = Field(
        "day", description="the season: the same clock time one day or one week earlier"
    )


class SeasonalNaive:
    """The value at the same local clock time one day or week before, known at the issue."""

    name: ClassVar[str] = "seasonal-naive"
    description: ClassVar[str] = (
        "the same local clock time one day (or week) earlier, the latest one observed"
    )
    Params: ClassVar[type[ForecastParams]] = SeasonalNaiveParams

    def __init__(self, params: SeasonalNaiveParams, data: ForecastData, *, seed: int) -> None:
        self._params = params
        self._data = data
        self._lag = data.prev_day if params.period == "day" else data.prev_week

    @property
    def params(self) -> ForecastParams:
        return self._params

    def issue(self, issue_slot: int, first_slot: int, n_slots: int) -> Issued:
        d = self._data
        check_request(d, issue_slot, first_slot, n_slots)
        src = seasonal_naive_rows(self._lag, target_rows(d, first_slot, n_slots), d.row(issue_slot))
        return Issued(
            issue_slot=issue_slot,
            first_slot=first_slot,
            demand_kwh=d.demand_kwh[src],
            pv_kwh=d.pv_kwh[src],
            temp_out_c=weather_temperature(d, issue_slot, first_slot, n_slots),
        )

    def timings(self) -> dict[str, float]:
        return {}
