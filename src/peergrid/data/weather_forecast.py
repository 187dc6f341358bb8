"""Weather forecasts: an archive of forecast runs, as a weather service would deliver them.

A forecast *run* is issued at one slot and covers the slots from there on (`lead` 0 .. L − 1).
At a gate closure the EMS and the forecasters use the latest run issued at or before the gate;
a run never changes after it is issued, so a forecast made at a gate can only use what was
known then.

Time axis as in `forecast.base.ForecastData`: run slots count from the first slot of the run,
history slots are negative; arrays here are indexed by run and lead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class WeatherForecasts:
    """An archive of forecast runs.

    Attributes:
        run_slot: the slot at which each run is issued, ascending, (R,) int.
        temp_out_c: forecast outdoor temperature of run r for slot run_slot[r] + lead,
            (R, L) [°C].
        ghi_w_m2: forecast global horizontal irradiance, (R, L) [W/m²].
        description: what produced the archive (a model name, or the synthetic error model
            and its calibration), for summaries.
    """

    run_slot: IntArray
    temp_out_c: FloatArray
    ghi_w_m2: FloatArray
    description: str

    @property
    def n_leads(self) -> int:
        return int(self.temp_out_c.shape[1])

    def latest_run(self, issue_slot: int) -> int:
        """Index of the latest run issued at or before `issue_slot`.

        Raises:
            ValueError: no run was issued by then.
        """
        r = int(np.searchsorted(self.run_slot, issue_slot, side="right")) - 1
        if r < 0:
            raise ValueError(f"no weather forecast run issued by slot {issue_slot}")
        return r

    def at(self, issue_slot: int, first_slot: int, n_slots: int) -> tuple[FloatArray, FloatArray]:
        """Temperature [°C] and GHI [W/m²] for slots [first_slot, first_slot + n_slots), from
        the latest run issued at or before `issue_slot`, each (n_slots,).

        Raises:
            ValueError: no run by then, or the run does not reach that far.
        """
        r = self.latest_run(issue_slot)
        lead0 = first_slot - int(self.run_slot[r])
        if lead0 < 0 or lead0 + n_slots > self.n_leads:
            raise ValueError(
                f"the weather forecast run of slot {int(self.run_slot[r])} covers leads "
                f"0..{self.n_leads - 1}; slots {first_slot}..{first_slot + n_slots - 1} need "
                f"{lead0}..{lead0 + n_slots - 1}"
            )
        return (
            self.temp_out_c[r, lead0 : lead0 + n_slots],
            self.ghi_w_m2[r, lead0 : lead0 + n_slots],
        )


# The generator of the synthetic archive (`synthetic_weather_forecasts`) lives in this module:
#
#     synthetic_weather_forecasts(
#         *, first_slot: int, dt_h: float, utc_hour: FloatArray, temp_out_c: FloatArray,
#         ghi_w_m2: FloatArray, ghi_clearsky_w_m2: FloatArray, rng: np.random.Generator,
#         params: WeatherForecastParams | None = None,
#     ) -> WeatherForecasts
#
# inputs on the extended axis (row i <-> slot first_slot + i); runs issued at fixed UTC hours,
# each reaching at least 4 days ahead; the error model is documented and calibrated in its
# docstring.
