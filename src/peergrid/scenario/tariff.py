"""Tariffs on the slot grid: normalised once, at load, into arrays (T,)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from peergrid.scenario.schema import TariffSpec, hhmm_to_hours
from peergrid.timegrid import SlotGrid


def retail_price_per_kwh(tariff: TariffSpec, grid: SlotGrid) -> NDArray[np.float64]:
    """Retail import price in every slot [currency/kWh]: the flat price overridden by time-of-use
    periods (later periods win where they overlap). A period whose end is not after its start
    wraps past midnight; the day filter applies to the day on which the period starts."""
    price = np.full(grid.n_slots, tariff.retail_per_kwh)
    hour = grid.local_hour
    weekday = grid.local_weekday
    for period in tariff.retail_tou:
        start, end = hhmm_to_hours(period.start), hhmm_to_hours(period.end)
        if end > start:
            in_time = (hour >= start) & (hour < end)
            day_of_start = weekday
        else:  # wraps midnight: after `start` today, or before `end` the next day
            late, early = hour >= start, hour < end
            in_time = late | early
            day_of_start = np.where(early, (weekday - 1) % 7, weekday)
        if period.days == "weekdays":
            in_time &= day_of_start < 5
        elif period.days == "weekends":
            in_time &= day_of_start >= 5
        price[in_time] = period.price_per_kwh
    return price


def feed_in_price_per_kwh(tariff: TariffSpec, grid: SlotGrid) -> NDArray[np.float64]:
    """Feed-in export price in every slot [currency/kWh]."""
    return np.full(grid.n_slots, tariff.feed_in_per_kwh)
