import datetime as dt

import numpy as np

from peergrid.scenario.schema import TariffSpec, TouPeriod
from peergrid.scenario.tariff import feed_in_price_per_kwh, retail_price_per_kwh
from peergrid.timegrid import make_grid


def test_flat_and_time_of_use_in_local_time_across_a_clock_change() -> None:
    grid = make_grid(dt.date(2024, 3, 30), 2, 60, "Europe/Berlin")  # Sat, then Sun (23 h)
    tariff = TariffSpec(
        retail_per_kwh=0.30,
        feed_in_per_kwh=0.08,
        retail_tou=[
            TouPeriod(start="17:00", end="21:00", price_per_kwh=0.45),
            TouPeriod(start="23:00", end="06:00", price_per_kwh=0.20),
        ],
    )
    price = retail_price_per_kwh(tariff, grid)
    hours = grid.local_hour
    assert np.all(price[(hours >= 17) & (hours < 21)] == 0.45)
    assert np.all(price[(hours >= 23) | (hours < 6)] == 0.20)
    assert np.all(price[(hours >= 6) & (hours < 17)] == 0.30)
    assert len(price) == 24 + 23
    assert np.all(feed_in_price_per_kwh(tariff, grid) == 0.08)


def test_weekday_filter_uses_the_day_the_period_starts() -> None:
    grid = make_grid(dt.date(2024, 6, 7), 3, 60, "UTC")  # Fri, Sat, Sun
    tariff = TariffSpec(
        retail_per_kwh=0.3,
        retail_tou=[TouPeriod(start="22:00", end="02:00", price_per_kwh=0.1, days="weekdays")],
    )
    price = retail_price_per_kwh(tariff, grid)
    # Friday 22:00 to Saturday 02:00 is cheap (starts on a weekday) ...
    assert list(price[22:26]) == [0.1, 0.1, 0.1, 0.1]
    assert price[26] == 0.3
    # ... Saturday 22:00 is not
    assert price[24 + 22] == 0.3
