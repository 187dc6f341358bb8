"""Meter-data import: formats, units, resampling, DST, fill policies and every error path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid.data.meter import read_meter_data
from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid, make_grid

NAMES = ["anna", "ben", "cleo"]
FORMATS = ["csv", "parquet"]


def _frame(grid: SlotGrid, minutes: int, names: list[str], seed: int = 0) -> pd.DataFrame:
    """Long-format data at `minutes` resolution with ISO timestamps carrying UTC offsets."""
    steps = grid.n_slots * grid.slot_minutes // minutes
    t = grid.starts_utc[0] + pd.to_timedelta(np.arange(steps) * minutes, unit="min")
    local = t.tz_convert(grid.timezone)
    rng = np.random.default_rng(seed)
    parts = []
    for name in names:
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": [x.isoformat() for x in local],
                    "participant": name,
                    "demand": np.round(rng.uniform(0.0, 0.5, steps), 4),
                    "generation": np.round(rng.uniform(0.0, 0.3, steps), 4),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _write(df: pd.DataFrame, tmp_path: Path, fmt: str, name: str = "meter") -> Path:
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


def _expected(
    df: pd.DataFrame, grid: SlotGrid, name: str, col: str, scale: float = 1.0
) -> np.ndarray:
    sel = df[df.participant == name]
    ts = pd.to_datetime(sel.timestamp, format="ISO8601", utc=True)
    slot = ((ts - grid.starts_utc[0]) // pd.Timedelta(minutes=grid.slot_minutes)).to_numpy()
    return np.bincount(slot, sel[col].to_numpy(float) * scale, grid.n_slots)


@pytest.fixture
def grid() -> SlotGrid:
    return make_grid(dt.date(2024, 5, 6), 2, 15, "Europe/Berlin")


# --- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_finer_energy_data_is_summed_onto_the_slots(
    tmp_path: Path, grid: SlotGrid, fmt: str
) -> None:
    df = _frame(grid, 5, ["cleo", "anna"])
    data = read_meter_data(_write(df, tmp_path, fmt), grid, NAMES, "kWh", "error")
    assert data.names == ["anna", "cleo"]  # scenario order, only those in the file
    assert data.demand_kwh.shape == data.generation_kwh.shape == (grid.n_slots, 2)
    np.testing.assert_allclose(data.demand_kwh[:, 0], _expected(df, grid, "anna", "demand"))
    np.testing.assert_allclose(data.generation_kwh[:, 1], _expected(df, grid, "cleo", "generation"))


@pytest.mark.parametrize(
    ("unit", "scale"), [("kWh", 1.0), ("Wh", 1e-3), ("kW", 5 / 60), ("W", 5 / 60 * 1e-3)]
)
def test_units_energy_per_interval_or_mean_power(
    tmp_path: Path, grid: SlotGrid, unit: str, scale: float
) -> None:
    df = _frame(grid, 5, ["ben"])
    data = read_meter_data(_write(df, tmp_path, "csv"), grid, NAMES, unit, "error")
    np.testing.assert_allclose(data.demand_kwh[:, 0], _expected(df, grid, "ben", "demand", scale))


def test_mean_power_at_slot_resolution_times_slot_length(tmp_path: Path, grid: SlotGrid) -> None:
    df = _frame(grid, 15, ["ben"])
    df["demand"] = 2.0  # kW
    data = read_meter_data(_write(df, tmp_path, "csv"), grid, NAMES, "kW", "error")
    np.testing.assert_allclose(data.demand_kwh, 0.5)


def test_generation_column_is_optional(tmp_path: Path, grid: SlotGrid) -> None:
    df = _frame(grid, 15, ["anna"]).drop(columns="generation")
    df.columns = ["Timestamp", " Participant ", "DEMAND"]  # case and spaces do not matter
    data = read_meter_data(_write(df, tmp_path, "csv"), grid, NAMES, "kWh", "error")
    assert (data.generation_kwh == 0).all()


def test_rows_outside_the_run_are_ignored(tmp_path: Path, grid: SlotGrid) -> None:
    wider = make_grid(dt.date(2024, 5, 5), 4, 15, "Europe/Berlin")
    df = _frame(wider, 15, ["anna"])
    data = read_meter_data(_write(df, tmp_path, "csv"), grid, NAMES, "kWh", "error")
    assert data.demand_kwh.shape == (grid.n_slots, 1)
    np.testing.assert_allclose(data.demand_kwh[:, 0], df.demand.to_numpy()[96 : 96 + 192])


def test_naive_timestamps_are_local_time(tmp_path: Path, grid: SlotGrid) -> None:
    df = _frame(grid, 15, ["anna"])
    df["timestamp"] = [t[:19] for t in df.timestamp]  # drop "+02:00"
    data = read_meter_data(_write(df, tmp_path, "csv"), grid, NAMES, "kWh", "error")
    np.testing.assert_allclose(data.demand_kwh[:, 0], df.demand.to_numpy())


@pytest.mark.parametrize("fmt", FORMATS)
def test_fall_back_day_with_offsets_fills_100_slots(tmp_path: Path, fmt: str) -> None:
    day = make_grid(dt.date(2024, 10, 27), 1, 15, "Europe/Berlin")
    df = _frame(day, 15, ["anna"])
    assert len(df) == 100
    data = read_meter_data(_write(df, tmp_path, fmt), day, NAMES, "kWh", "error")
    np.testing.assert_allclose(data.demand_kwh[:, 0], df.demand.to_numpy())


def test_naive_timestamps_on_the_fall_back_day_are_ambiguous(tmp_path: Path) -> None:
    day = make_grid(dt.date(2024, 10, 27), 1, 15, "Europe/Berlin")
    df = _frame(day, 15, ["anna"])
    df["timestamp"] = [t[:19] for t in df.timestamp]
    path = _write(df, tmp_path, "csv")
    with pytest.raises(InputError, match=r"meter\.csv: row 9: local time 2024-10-27 02:00:00 is "
                       r"ambiguous.*UTC offsets"):  # fmt: skip
        read_meter_data(path, day, NAMES, "kWh", "error")


def test_naive_timestamps_in_the_spring_gap_do_not_exist(tmp_path: Path) -> None:
    day = make_grid(dt.date(2024, 3, 31), 1, 15, "Europe/Berlin")
    df = pd.DataFrame(
        {"timestamp": ["2024-03-31T01:45:00", "2024-03-31T02:15:00"], "participant": "anna",
         "demand": [0.1, 0.1]}
    )  # fmt: skip
    with pytest.raises(InputError, match=r"row 2: local time 2024-03-31 02:15:00 does not exist"):
        read_meter_data(_write(df, tmp_path, "csv"), day, NAMES, "kWh", "error")


def test_parquet_timestamp_columns_aware_and_naive(tmp_path: Path, grid: SlotGrid) -> None:
    df = _frame(grid, 15, ["ben"])
    aware = df.assign(timestamp=pd.to_datetime(df.timestamp, format="ISO8601", utc=True))
    data = read_meter_data(_write(aware, tmp_path, "parquet", "a"), grid, NAMES, "kWh", "error")
    np.testing.assert_allclose(data.demand_kwh[:, 0], df.demand.to_numpy())
    naive = aware.assign(
        timestamp=aware.timestamp.dt.tz_convert(grid.timezone).dt.tz_localize(None)
    )
    data = read_meter_data(_write(naive, tmp_path, "parquet", "n"), grid, NAMES, "kWh", "error")
    np.testing.assert_allclose(data.demand_kwh[:, 0], df.demand.to_numpy())


# --- fill policies -----------------------------------------------------------------------------


def _gappy(grid: SlotGrid) -> pd.DataFrame:
    df = _frame(grid, 15, ["anna"])
    df.loc[:, "demand"] = 1.0
    df.loc[10, "demand"] = 3.0
    df.loc[12, "demand"] = np.nan  # a missing value ...
    df = df.drop(index=[13, 14])  # ... followed by two missing intervals
    df.loc[15, "demand"] = 5.0
    return df


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("fill", "expected"),
    [
        ("zero", [3.0, 1.0, 0.0, 0.0, 0.0, 5.0]),
        ("ffill", [3.0, 1.0, 1.0, 1.0, 1.0, 5.0]),
        ("interpolate", [3.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
    ],
)
def test_fill_policies(
    tmp_path: Path, grid: SlotGrid, fmt: str, fill: str, expected: list[float]
) -> None:
    data = read_meter_data(_write(_gappy(grid), tmp_path, fmt), grid, NAMES, "kWh", fill)
    np.testing.assert_allclose(data.demand_kwh[10:16, 0], expected)
    assert np.isfinite(data.demand_kwh).all()


def test_leading_gap_is_filled_backwards_by_ffill_and_interpolate(
    tmp_path: Path, grid: SlotGrid
) -> None:
    df = _frame(grid, 15, ["anna"]).iloc[2:]
    for fill in ("ffill", "interpolate"):
        data = read_meter_data(_write(df, tmp_path, "csv"), grid, NAMES, "kWh", fill)
        assert data.demand_kwh[0, 0] == data.demand_kwh[1, 0] == df.demand.iloc[0]


# --- errors: every one names the file, the row or column, and the reason -------------------------


def _error(tmp_path: Path, grid: SlotGrid, df: pd.DataFrame, fmt: str, *, fill: str = "error",
           unit: str = "kWh") -> str:  # fmt: skip
    path = _write(df, tmp_path, fmt)
    with pytest.raises(InputError) as info:
        read_meter_data(path, grid, NAMES, unit, fill)
    msg = str(info.value)
    assert msg.startswith(str(path) + ": ")
    return msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_column(tmp_path: Path, grid: SlotGrid, fmt: str) -> None:
    df = _frame(grid, 15, ["anna"]).drop(columns="demand")
    assert "missing column 'demand'" in _error(tmp_path, grid, df, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_numeric_value(tmp_path: Path, grid: SlotGrid, fmt: str) -> None:
    df = _frame(grid, 15, ["anna"]).astype({"demand": str})  # a text column, as in a CSV
    df.loc[4, "demand"] = "0,5 kWh"
    assert "row 5: non-numeric value '0,5 kWh' in column 'demand'" in _error(
        tmp_path, grid, df, fmt
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_value_without_fill(tmp_path: Path, grid: SlotGrid, fmt: str) -> None:
    df = _frame(grid, 15, ["anna"])
    df.loc[7, "generation"] = np.nan
    msg = _error(tmp_path, grid, df, fmt)
    assert "row 8: missing value in column 'generation'" in msg and "fill" in msg


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("col", ["demand", "generation"])
@pytest.mark.parametrize("fill", ["error", "zero"])
def test_negative_values_are_always_errors(tmp_path: Path, grid: SlotGrid, fmt: str, col: str,
                                           fill: str) -> None:  # fmt: skip
    df = _frame(grid, 15, ["anna", "ben"])
    df.loc[100, col] = -0.2
    assert f"row 101: negative {col} (-0.2)" in _error(tmp_path, grid, df, fmt, fill=fill)


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_timestamp_and_participant(tmp_path: Path, grid: SlotGrid, fmt: str) -> None:
    df = _frame(grid, 15, ["anna", "ben"])
    df = pd.concat([df, df.iloc[[3]]], ignore_index=True)
    msg = _error(tmp_path, grid, df, fmt)
    assert f"row {len(df)}: duplicate of row 4 (participant 'anna'" in msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_written_with_another_offset(tmp_path: Path, grid: SlotGrid, fmt: str) -> None:
    df = _frame(grid, 15, ["anna"])
    extra = df.iloc[[20]].assign(
        timestamp=pd.Timestamp(df.timestamp[20]).tz_convert("UTC").isoformat()
    )
    msg = _error(tmp_path, grid, pd.concat([df, extra], ignore_index=True), fmt)
    assert "duplicate of row 21" in msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_timestamps_inside_the_run(tmp_path: Path, grid: SlotGrid, fmt: str) -> None:
    df = _frame(grid, 15, ["anna", "ben"])
    df = df.drop(index=[192 + 50, 192 + 51])  # two quarter hours of ben
    msg = _error(tmp_path, grid, df, fmt)
    assert (
        "participant 'ben': 2 interval(s) of the run missing, the first at 2024-05-06T12:30" in msg
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fill", ["error", "zero"])
def test_unknown_participant(tmp_path: Path, grid: SlotGrid, fmt: str, fill: str) -> None:
    df = _frame(grid, 15, ["anna"])
    df.loc[30, "participant"] = "zoe"
    assert "row 31: unknown participant 'zoe'" in _error(tmp_path, grid, df, fmt, fill=fill)


@pytest.mark.parametrize("fmt", FORMATS)
def test_timestamp_not_on_the_grid(tmp_path: Path, grid: SlotGrid, fmt: str) -> None:
    df = _frame(grid, 15, ["anna"])
    shifted = pd.Timestamp(df.timestamp[5]) + pd.Timedelta(minutes=15)
    df.loc[5:, "timestamp"] = [
        (pd.Timestamp(t) + pd.Timedelta(minutes=7, seconds=30)).isoformat()
        for t in df.timestamp[5:]
    ]
    assert shifted is not None
    msg = _error(tmp_path, grid, df, fmt)
    assert "row 6: timestamp 2024-05-06T01:22:30+02:00" in msg and "not on the grid" in msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_coarser_data_than_the_grid(tmp_path: Path, grid: SlotGrid, fmt: str) -> None:
    df = _frame(grid, 30, ["anna"])
    assert "30 min is coarser than the run's 15-min slots" in _error(tmp_path, grid, df, fmt)


def test_resolution_must_divide_the_slot(tmp_path: Path, grid: SlotGrid) -> None:
    df = _frame(make_grid(dt.date(2024, 5, 6), 2, 5, "Europe/Berlin"), 5, ["anna"])
    df = df.iloc[::2]  # 10-minute steps
    assert "10 min does not divide the run's 15-min slots" in _error(tmp_path, grid, df, "csv")


@pytest.mark.parametrize("fmt", FORMATS)
def test_unreadable_and_mixed_timestamps(tmp_path: Path, grid: SlotGrid, fmt: str) -> None:
    df = _frame(grid, 15, ["anna"])
    df.loc[2, "timestamp"] = "yesterday"
    assert "row 3: cannot read timestamp 'yesterday'" in _error(tmp_path, grid, df, fmt)
    df = _frame(grid, 15, ["anna"])
    df.loc[2, "timestamp"] = df.timestamp[2][:19]
    assert "row 3: timestamp '2024-05-06T00:30:00' has no UTC offset while row 1 has one" in (
        _error(tmp_path, grid, df, fmt)
    )
    df = _frame(grid, 15, ["anna"])
    df.loc[2, "timestamp"] = ""
    assert "row 3: missing timestamp" in _error(tmp_path, grid, df, fmt)


def test_bad_file_unit_and_fill(tmp_path: Path, grid: SlotGrid) -> None:
    with pytest.raises(InputError, match=r"nothere\.csv: file not found"):
        read_meter_data(tmp_path / "nothere.csv", grid, NAMES, "kWh", "error")
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(InputError, match=r"m\.xlsx: unknown file type '\.xlsx'"):
        read_meter_data(tmp_path / "m.xlsx", grid, NAMES, "kWh", "error")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: cannot read the file"):
        read_meter_data(tmp_path / "bad.parquet", grid, NAMES, "kWh", "error")
    path = _write(_frame(grid, 15, ["anna"]), tmp_path, "csv")
    with pytest.raises(InputError, match=r"data\.unit"):
        read_meter_data(path, grid, NAMES, "MWh", "error")
    with pytest.raises(InputError, match=r"data\.fill"):
        read_meter_data(path, grid, NAMES, "kWh", "guess")
    (tmp_path / "empty.csv").write_text("timestamp,participant,demand\n")
    with pytest.raises(InputError, match="no data rows"):
        read_meter_data(tmp_path / "empty.csv", grid, NAMES, "kWh", "error")


# --- resampling conserves energy ---------------------------------------------------------------


@given(
    data_minutes=st.sampled_from([1, 5, 15]),
    values=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=50),
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_resampling_conserves_energy(
    tmp_path: Path, data_minutes: int, values: list[float]
) -> None:
    grid = make_grid(dt.date(2024, 10, 27), 1, 15, "Europe/Berlin")
    steps = grid.n_slots * 15 // data_minutes
    t = grid.starts_utc[0] + pd.to_timedelta(np.arange(steps) * data_minutes, unit="min")
    demand = np.resize(np.array(values), steps)
    df = pd.DataFrame({"timestamp": t, "participant": "cleo", "demand": demand})
    path = tmp_path / "h.parquet"
    df.to_parquet(path, index=False)
    data = read_meter_data(path, grid, NAMES, "kWh", "error")
    assert data.demand_kwh.sum() == pytest.approx(demand.sum(), rel=1e-12, abs=1e-9)
    kw = read_meter_data(path, grid, NAMES, "kW", "error")
    assert kw.demand_kwh.sum() == pytest.approx(
        demand.sum() * data_minutes / 60, rel=1e-12, abs=1e-9
    )


def test_spreadsheet_csv_with_bom_semicolons_and_decimal_commas(
    tmp_path: Path, grid: SlotGrid
) -> None:
    df = _frame(grid, 15, ["anna"])
    text = "timestamp;participant;demand\n" + "".join(
        f"{t};anna;{str(v).replace('.', ',')}\n"
        for t, v in zip(df.timestamp, df.demand, strict=True)
    )
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    data = read_meter_data(path, grid, NAMES, "kWh", "error")
    np.testing.assert_allclose(data.demand_kwh[:, 0], df.demand.to_numpy())
