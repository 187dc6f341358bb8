"""Small pure helpers every forecaster shares: checking a request, the seasonal-lag chain, and
the weather forecast's temperature for the targets."""

from __future__ import annotations

import numpy as np

from peergrid.forecast.base import FloatArray, ForecastData, IntArray


def check_request(data: ForecastData, issue_slot: int, first_slot: int, n_slots: int) -> None:
    """Raise ValueError unless [first_slot, first_slot + n_slots) is a valid target range for
    a forecast issued at `issue_slot`: after at least one observed slot, targets at or after
    the issue, inside the data and not beyond the run."""
    if n_slots < 1:
        raise ValueError(f"n_slots must be >= 1 (got {n_slots})")
    if first_slot < issue_slot:
        raise ValueError(f"first_slot {first_slot} lies before issue_slot {issue_slot}")
    if data.row(issue_slot) < 1:
        raise ValueError(
            f"issue_slot {issue_slot}: nothing is observed before it (history starts at slot "
            f"{-data.n_history})"
        )
    if first_slot + n_slots > data.n_slots:
        raise ValueError(
            f"slots {first_slot}..{first_slot + n_slots - 1} go beyond the run (T = {data.n_slots})"
        )


def target_rows(data: ForecastData, first_slot: int, n_slots: int) -> IntArray:
    """Rows of the target slots, (n_slots,)."""
    r0 = data.row(first_slot)
    return np.arange(r0, r0 + n_slots, dtype=np.int64)


def latest_lag_rows(lag_rows: IntArray, rows: IntArray, issue_row: int | IntArray) -> IntArray:
    """For each row, follow the seasonal lag (`ForecastData.prev_day` or `prev_week`) until it
    reaches a row observed before `issue_row` (one issue row, or one per row); −1 where the
    chain leaves the data first.

    The result is the most recent slot at the same local clock time (one or seven days apart)
    whose value is known at the issue: the lag is at least the lead."""
    r = lag_rows[rows]
    pending = r >= issue_row
    while pending.any():
        r = np.where(pending, lag_rows[np.maximum(r, 0)], r)
        pending = r >= issue_row
    return np.asarray(r, dtype=np.int64)


def chain_back(lag_rows: IntArray, rows: IntArray, steps: int) -> IntArray:
    """`steps` applications of the lag to `rows` (−1 stays −1), same shape."""
    r = rows
    for _ in range(steps):
        r = np.where(r >= 0, lag_rows[np.maximum(r, 0)], -1)
    return np.asarray(r, dtype=np.int64)


def weather_temperature(
    data: ForecastData, issue_slot: int, first_slot: int, n_slots: int
) -> FloatArray:
    """Outdoor temperature [°C] for the targets from the latest weather-forecast run issued at
    or before `issue_slot`, a fresh array (n_slots,)."""
    temp, _ = data.weather.at(issue_slot, first_slot, n_slots)
    return np.array(temp, dtype=np.float64)
