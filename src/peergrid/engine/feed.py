"""What a home's EMS knows at a gate closure: the forecaster's forecasts and the known schedules.

At a gate g the EMS sees, for the slots from `first` on: base demand, PV and temperature as the
run's forecaster issued them at g; the EV plug-in schedule its users declared (smart chargers
ask when the car leaves); the tariff; and the network operator's limits. `perfect` forecasts
are the realised arrays themselves, handed out as views (no copies), so a run with perfect
forecasts computes exactly what the one-call slot step of parts 1–3 computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.assets.params import BoolArray, FloatArray, IntArray, Profiles
from peergrid.ems.base import Forecast, SlotInputs
from peergrid.forecast.base import Forecaster


def ev_returns(plugged: BoolArray) -> BoolArray:
    """Slots in which an EV comes home (plugged now, not in the slot before), (T, P)."""
    out = plugged.copy()
    out[1:] &= ~plugged[:-1]
    return out


def ev_slots_to_departure(plugged: BoolArray) -> IntArray:
    """For every slot, how many slots the running plug-in session still lasts (>= 1 while
    plugged, 0 while away), (T, P): the declared departure the delivery keeps to."""
    n_t = plugged.shape[0]
    rows = np.arange(n_t, dtype=np.int64)[:, None]
    away = np.where(plugged, n_t, rows)  # the slot itself where the EV is away
    next_away = np.minimum.accumulate(away[::-1], axis=0)[::-1]  # first slot away from t on
    out: IntArray = np.where(plugged, next_away - rows, 0)
    return out


@dataclass(frozen=True, eq=False)
class ForecastFeed:
    """Forecast windows for the gates of one run.

    Attributes:
        profiles: the realised exogenous data (T, P).
        retail_price, feed_in_price: the tariff, (T,) [currency/kWh].
        dt_h: slot length [h].
        forecaster: the run's forecaster; None for perfect foresight.
        export_limit_kwh, import_limit_kwh: the operator's limits, (T, P), or None.
        returns: `ev_returns` of the profiles, (T, P).
        departure: `ev_slots_to_departure` of the profiles, (T, P).
    """

    profiles: Profiles
    retail_price: FloatArray
    feed_in_price: FloatArray
    dt_h: float
    forecaster: Forecaster | None
    export_limit_kwh: FloatArray | None
    import_limit_kwh: FloatArray | None
    returns: BoolArray
    departure: IntArray

    @staticmethod
    def build(
        profiles: Profiles,
        retail_price: FloatArray,
        feed_in_price: FloatArray,
        dt_h: float,
        forecaster: Forecaster | None,
        export_limit_kwh: FloatArray | None = None,
        import_limit_kwh: FloatArray | None = None,
    ) -> ForecastFeed:
        return ForecastFeed(
            profiles,
            retail_price,
            feed_in_price,
            dt_h,
            forecaster,
            export_limit_kwh,
            import_limit_kwh,
            ev_returns(profiles.ev_plugged),
            ev_slots_to_departure(profiles.ev_plugged),
        )

    @property
    def perfect(self) -> bool:
        return self.forecaster is None

    @property
    def n_slots(self) -> int:
        return int(self.profiles.base_demand_kwh.shape[0])

    def window(
        self, gate_slot: int, first: int, n_rows: int, energy_rows: int | None = None
    ) -> Forecast:
        """What is known at `gate_slot` about slots [first, first + n_rows); demand, PV and
        temperature only for the first `energy_rows` of them (all by default) — a policy that
        does not read them ahead (`EmsPolicy.reads_energy_forecast`) is not given them."""
        end = first + n_rows
        n_energy = n_rows if energy_rows is None else max(1, min(energy_rows, n_rows))
        p = self.profiles
        if self.forecaster is None:
            e_end = first + n_energy
            demand, pv = p.base_demand_kwh[first:e_end], p.pv_kwh[first:e_end]
            temp = p.temp_out_c[first:e_end]
        else:
            issued = self.forecaster.issue(gate_slot, first, n_energy)
            demand, pv, temp = issued.demand_kwh, issued.pv_kwh, issued.temp_out_c
        exp, imp = self.export_limit_kwh, self.import_limit_kwh
        return Forecast(
            base_demand_kwh=demand,
            pv_kwh=pv,
            temp_out_c=temp,
            ev_plugged=p.ev_plugged[first:end],
            retail_price=self.retail_price[first:end],
            feed_in_price=self.feed_in_price[first:end],
            export_limit_kwh=None if exp is None else exp[first:end],
            import_limit_kwh=None if imp is None else imp[first:end],
        )

    def trips(self, first: int, n_rows: int) -> FloatArray | None:
        """The trip energies to plan with: the actual ones under perfect foresight, else None
        (the EMS expects each return to take its last trip's energy)."""
        if self.forecaster is None:
            return self.profiles.ev_trip_kwh[first : first + n_rows]
        return None

    def actual(self, t: int) -> SlotInputs:
        """Slot t's actual inputs, revealed at delivery."""
        p = self.profiles
        return SlotInputs(
            t=t,
            dt_h=self.dt_h,
            base_demand_kwh=p.base_demand_kwh[t],
            pv_kwh=p.pv_kwh[t],
            temp_out_c=float(p.temp_out_c[t]),
            ev_plugged=p.ev_plugged[t],
            ev_trip_kwh=p.ev_trip_kwh[t],
            retail_price=float(self.retail_price[t]),
            feed_in_price=float(self.feed_in_price[t]),
        )

    def limits(self, t: int) -> tuple[FloatArray | None, FloatArray | None]:
        """Slot t's export and import limits, (P,) each, or None."""
        exp, imp = self.export_limit_kwh, self.import_limit_kwh
        return (None if exp is None else exp[t]), (None if imp is None else imp[t])
