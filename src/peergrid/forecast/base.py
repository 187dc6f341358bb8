"""The one interface every forecaster implements, and the data it may look at.

A forecaster predicts every participant's **base demand** (inflexible household load, the
meter's consumption without heat pump, EV and appliance runs) and **PV generation** for slots
ahead, *issued* at a gate closure. The market lifecycle (`engine/lifecycle.py`) asks for a
forecast at every gate; the EMS plans and bids from it, never from the actuals.

Time axis. Slots are counted on the run's grid: slot 0 is the first slot of the run, history
slots are negative (−n_history .. −1). `ForecastData` holds arrays on the *extended* axis:
row i ↔ slot i − n_history, N = n_history + T rows.

The information rule (what "never sees the future" means, and what the tests check by changing
all data after a time and asking again): a forecast issued at slot g may read

- the observed series (`demand_kwh`, `pv_kwh`, `temp_out_c`, `ghi_w_m2`) in rows of slots < g
  only — the meter and the weather station have reported up to the gate;
- the weather forecasts issued at or before g (`WeatherForecasts.at`);
- anything known in advance for any slot: calendar (`local_minute`, `weekday`,
  `day_of_year`), the seasonal lags (`prev_day`, `prev_week`), clear-sky values
  (`pv_clearsky_kwh`, `ghi_clearsky_w_m2`).

`perfect` is the one exception, by definition (it returns the actuals); it exists to measure
what forecast error costs.

Units: kWh per slot for energies, °C, W/m². Arrays are float64 unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from peergrid.data.weather_forecast import WeatherForecasts

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class ForecastData:
    """Everything a forecaster may look at, on the extended slot axis (module docstring).

    Attributes:
        n_history: slots of history before the run (rows 0 .. n_history − 1).
        dt_h: slot length [h].
        demand_kwh: observed base demand, (N, P) [kWh per slot].
        pv_kwh: observed PV generation, (N, P) [kWh per slot].
        pv_clearsky_kwh: generation of each participant's array under clear sky, (N, P)
            [kWh per slot]; zeros for participants without PV.
        temp_out_c: observed outdoor temperature, (N,) [°C].
        ghi_w_m2: observed global horizontal irradiance, (N,) [W/m²].
        ghi_clearsky_w_m2: clear-sky global horizontal irradiance, (N,) [W/m²].
        local_minute: local clock time at slot start, minutes since local midnight, (N,) int.
        weekday: local day of week, Monday = 0, (N,) int.
        day_of_year: local day of year 1..366, (N,) int.
        prev_day: row of the slot at the same local clock time one local day earlier, −1 where
            that lies before the data (on clock-change days: the nearest slot), (N,) int.
        prev_week: the same, seven local days earlier, (N,) int.
        weather: the weather forecasts issued over the data's time span.
    """

    n_history: int
    dt_h: float
    demand_kwh: FloatArray
    pv_kwh: FloatArray
    pv_clearsky_kwh: FloatArray
    temp_out_c: FloatArray
    ghi_w_m2: FloatArray
    ghi_clearsky_w_m2: FloatArray
    local_minute: IntArray
    weekday: IntArray
    day_of_year: IntArray
    prev_day: IntArray
    prev_week: IntArray
    weather: WeatherForecasts

    @property
    def n_rows(self) -> int:
        """N = n_history + T."""
        return int(self.demand_kwh.shape[0])

    @property
    def n_slots(self) -> int:
        """T, the run's slots."""
        return self.n_rows - self.n_history

    @property
    def n_participants(self) -> int:
        return int(self.demand_kwh.shape[1])

    def row(self, slot: int) -> int:
        """Row of run slot `slot` (negative slots are history)."""
        return slot + self.n_history


@dataclass(frozen=True, eq=False)
class Issued:
    """A forecast issued at one gate closure.

    Row k is run slot `first_slot + k`; `first_slot >= issue_slot`.

    Attributes:
        issue_slot: the slot at whose start the forecast was issued (the gate closure).
        first_slot: the first target slot.
        demand_kwh: base demand, (n, P) [kWh per slot].
        pv_kwh: PV generation, (n, P) [kWh per slot], >= 0.
        temp_out_c: outdoor temperature, (n,) [°C] (from the weather forecast).
    """

    issue_slot: int
    first_slot: int
    demand_kwh: FloatArray
    pv_kwh: FloatArray
    temp_out_c: FloatArray

    @property
    def n_slots(self) -> int:
        return int(self.demand_kwh.shape[0])


class ForecastParams(BaseModel):
    """Base of every forecaster's parameter model: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class Forecaster(Protocol):
    """A forecaster bound to one run's data. One module per method under `forecast/`,
    registered in `forecast/registry.py`; built by `make_forecaster`.

    `issue` is deterministic: equal arguments give equal arrays, whatever was asked before
    (a forecaster may cache, e.g. trained models, but the cache never changes an answer).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[ForecastParams]]

    @property
    def params(self) -> ForecastParams:
        """The validated parameters."""
        ...

    def issue(self, issue_slot: int, first_slot: int, n_slots: int) -> Issued:
        """The forecast issued at slot `issue_slot` for slots [first_slot, first_slot +
        n_slots), with first_slot >= issue_slot and first_slot + n_slots <= T; obeys the
        information rule of the module docstring."""
        ...

    def timings(self) -> dict[str, float]:
        """Seconds spent so far, by phase (e.g. {"train_s": ..., "predict_s": ...})."""
        ...


@runtime_checkable
class PreparesIssues(Protocol):
    """An optional capability of a forecaster: compute before the loop what its issues need.

    A run knows every gate it will issue at before it starts. A forecaster whose issues share
    expensive work (trained models, base forecasts) can do that work once, in bulk, and leave
    `issue` only slicing and cheap updates. The engine calls `prepare` when the forecaster
    satisfies this protocol (`isinstance(f, PreparesIssues)`); the cheap methods need not.

    Two promises, tested: every answer of `issue` is the same bit for bit whether or not
    `prepare` was called (and whatever it was called with), and the information rule holds for
    every issue as before — preparing computes, for each issue, only what that issue would have
    computed itself. An issue that `prepare` did not cover is still answered, lazily.
    """

    def prepare(self, issue_slots: IntArray, horizon_slots: int) -> None:
        """Prepare issues at the slots `issue_slots` (any order, repeats allowed), each asking
        for targets in [issue_slot, issue_slot + horizon_slots) [slots]."""
        ...
