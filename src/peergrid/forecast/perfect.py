"""`perfect`: the actuals, issued at any gate.

The one forecaster allowed to break the information rule (`forecast.base`), by definition: it
measures what forecast error costs (with `perfect` forecasts every deviation is zero and every
run equals the slot-by-slot simulation). Temperature is the observed one.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from peergrid.forecast.base import ForecastData, ForecastParams, Issued
from peergrid.forecast.common import check_request


class PerfectParams(ForecastParams):
    """`perfect` has no parameters."""


class Perfect:
    """Returns the observed demand, PV and temperature of the target slots."""

    name: ClassVar[str] = "perfect"
    description: ClassVar[str] = "the actuals (perfect foresight; measures the cost of error)"
    Params: ClassVar[type[ForecastParams]] = PerfectParams

    def __init__(self, params: PerfectParams, data: ForecastData, *, seed: int) -> None:
        self._params = params
        self._data = data

    @property
    def params(self) -> ForecastParams:
        return self._params

    def issue(self, issue_slot: int, first_slot: int, n_slots: int) -> Issued:
        d = self._data
        check_request(d, issue_slot, first_slot, n_slots)
        a = d.row(first_slot)
        b = a + n_slots
        return Issued(
            issue_slot=issue_slot,
            first_slot=first_slot,
            demand_kwh=np.array(d.demand_kwh[a:b]),
            pv_kwh=np.array(d.pv_kwh[a:b]),
            temp_out_c=np.array(d.temp_out_c[a:b]),
        )

    def timings(self) -> dict[str, float]:
        return {}
