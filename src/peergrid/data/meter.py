"""User meter data: demand and generation per participant from a CSV or Parquet file.

File format (long format, one row per participant and interval; column names are matched
without regard to case and surrounding spaces; other columns are ignored)::

    timestamp,participant,demand,generation
    2024-03-31T00:00:00+01:00,house-01,0.121,0.0
    2024-03-31T00:15:00+01:00,house-01,0.118,0.0

* ``timestamp``: the *start* of the metering interval, ISO 8601. With a UTC offset (``+01:00``,
  ``Z``) it is an instant. Without one it is local clock time in the run's time zone: times that
  do not exist (inside the spring-forward gap) are an error, and times in the repeated hour of
  the fall-back day are ambiguous and an error too: write such files with UTC offsets. A Parquet
  column may also be a timestamp type (with a time zone, or naive meaning local time).
* ``participant``: a name from the scenario.
* ``demand`` and ``generation`` (optional, zero if absent): energy per interval or mean power
  over the interval, in `unit`: ``kWh`` or ``Wh`` (energy per interval), ``kW`` or ``W`` (mean
  power). Non-negative; an empty cell is a missing value.

CSV files are UTF-8 (a byte-order mark is fine) with comma separators; a file whose header uses
semicolons instead (as spreadsheets with a decimal comma write them) is read with ``;`` as the
separator and ``,`` as the decimal mark.

The data resolution is the smallest step between two timestamps of a participant. It must
divide the slot length: finer data are summed (energy) or averaged (power) onto the slots;
coarser data are an error. Timestamps must lie on that resolution counted from the run's start.
Rows outside the run are ignored. Every participant in the file needs every interval of the run;
`fill` decides what happens to missing values (empty cells, NaN) and missing intervals:
``"error"`` (default) rejects them, ``"zero"`` sets them to zero, ``"interpolate"`` interpolates
linearly in time (holding the first/last value at the ends), ``"ffill"`` carries the last value
forward (the first value backwards at the start). Negative values, unknown participants,
duplicates and unparsable values are always errors.

Errors are `InputError`s naming the file and the row (1-based data row, the header not counted),
column or participant, and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid, epoch_ns

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

METER_UNITS = ("kWh", "Wh", "kW", "W")
FILL_POLICIES = ("error", "zero", "interpolate", "ffill")
REQUIRED_COLUMNS = ("timestamp", "participant", "demand")
VALUE_COLUMNS = ("demand", "generation")

_NS_PER_MIN = 60_000_000_000
_NS_PER_H = 60 * _NS_PER_MIN
_OFFSET = re.compile(r"\d:\d{2}(?::\d{2}(?:[.,]\d*)?)?\s*(?:Z|z|[+-]\d{2}(?::?\d{2})?)$")
_NAN_WORDS = frozenset({"", "nan", "na", "n/a", "null", "none"})


@dataclass(frozen=True, eq=False)
class MeterData:
    """Meter data on the slot grid.

    Attributes:
        demand_kwh: consumption per slot [kWh], (T, Pm).
        generation_kwh: generation per slot [kWh], (T, Pm).
        names: the Pm participants found in the file, in the order of the scenario.
    """

    demand_kwh: FloatArray
    generation_kwh: FloatArray
    names: list[str]


def _row(i: int) -> str:
    return f"row {i + 1}"


def _fmt_ns(ns: int, tz: str) -> str:
    t = pd.Timestamp(ns, tz="UTC")
    return f"{t.tz_convert(tz).isoformat()} ({t.strftime('%Y-%m-%dT%H:%M')}Z)"


def _read_table(path: Path, src: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError("file not found", source=src)
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            with path.open(encoding="utf-8-sig") as f:
                header = f.readline()
            # Spreadsheets set to a decimal comma write ';'-separated files.
            sep = ";" if ";" in header and "," not in header else ","
            df = pd.read_csv(
                path,
                sep=sep,
                dtype=str,
                keep_default_na=False,
                skipinitialspace=True,
                encoding="utf-8-sig",
            )
            if sep == ";":
                for col in df.columns:
                    if str(col).strip().lower() in VALUE_COLUMNS:
                        df[col] = df[col].str.replace(",", ".", regex=False)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise InputError(f"unknown file type {suffix!r}: use .csv or .parquet", source=src)
    except InputError:
        raise
    except Exception as exc:  # a reader's own message is the best description of a broken file
        raise InputError(f"cannot read the file: {exc}", source=src) from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise InputError(
                f"missing column {col!r} (columns found: {', '.join(map(str, df.columns))})",
                source=src,
            )
    return df


def _as_text(col: pd.Series) -> NDArray[np.object_]:
    """Cells as stripped strings, missing cells as ''."""
    text = col.astype(object).where(col.notna(), "").astype(str).str.strip()
    return np.asarray(text.to_numpy(dtype=object))


def _numbers(col: pd.Series, name: str, src: str) -> FloatArray:
    """A value column as floats (NaN = missing); unparsable, infinite or negative -> error."""
    if pd.api.types.is_bool_dtype(col.dtype):
        raise InputError(f"column {name!r}: boolean values, numbers expected", source=src)
    if pd.api.types.is_numeric_dtype(col.dtype):
        x = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        text = _as_text(col)
        x = pd.to_numeric(pd.Series(text), errors="coerce").to_numpy(np.float64)
        missing_word = pd.Series(text).str.lower().isin(_NAN_WORDS).to_numpy(dtype=bool)
        bad = np.isnan(x) & ~missing_word
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{_row(i)}: non-numeric value {text[i]!r} in column {name!r}", source=src
            )
    bad = np.isinf(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{_row(i)}: infinite value in column {name!r}", source=src)
    neg = x < 0
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise InputError(f"{_row(i)}: negative {name} ({x[i]}); {name} must be >= 0", source=src)
    return np.asarray(x, dtype=np.float64)


def _localize(naive: pd.DatetimeIndex, rows: IntArray, tz: str, src: str) -> IntArray:
    """Naive local times -> UTC ns; nonexistent or ambiguous local times are errors."""
    first = naive.tz_localize(tz, ambiguous=np.ones(len(naive), bool), nonexistent="NaT")
    second = naive.tz_localize(tz, ambiguous=np.zeros(len(naive), bool), nonexistent="NaT")
    a = epoch_ns(first)
    b = epoch_ns(second)
    nat = np.iinfo(np.int64).min
    gap = a == nat
    if gap.any():
        i = int(np.flatnonzero(gap)[0])
        raise InputError(
            f"{_row(int(rows[i]))}: local time {naive[i]} does not exist in {tz} (the clocks "
            "jump forward over it); give timestamps with UTC offsets",
            source=src,
        )
    amb = a != b
    if amb.any():
        i = int(np.flatnonzero(amb)[0])
        raise InputError(
            f"{_row(int(rows[i]))}: local time {naive[i]} is ambiguous in {tz} (the clocks go "
            "back and it happens twice); give timestamps with UTC offsets, e.g. "
            f"{naive[i].strftime('%Y-%m-%dT%H:%M')}+02:00 / +01:00",
            source=src,
        )
    return a


def _timestamps(col: pd.Series, tz: str, src: str) -> IntArray:
    """The timestamp column as UTC ns."""
    rows = np.arange(len(col), dtype=np.int64)
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        if col.isna().any():
            raise InputError(f"{_row(int(np.flatnonzero(col.isna())[0]))}: missing timestamp",
                             source=src)  # fmt: skip
        return epoch_ns(pd.DatetimeIndex(col))
    if pd.api.types.is_datetime64_dtype(col.dtype):
        if col.isna().any():
            raise InputError(f"{_row(int(np.flatnonzero(col.isna())[0]))}: missing timestamp",
                             source=src)  # fmt: skip
        return _localize(pd.DatetimeIndex(col), rows, tz, src)
    text = _as_text(col)
    empty = text == ""
    if empty.any():
        raise InputError(f"{_row(int(np.flatnonzero(empty)[0]))}: missing timestamp", source=src)
    # Work on the distinct strings (a file repeats each time stamp for every participant);
    # `pd.factorize` keeps them in order of first appearance, so the first bad one found is the
    # one in the earliest row.
    codes, uniques = pd.factorize(text)
    first_row = np.empty(len(uniques), dtype=np.int64)
    first_row[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    values = np.asarray(uniques, dtype=object)
    # Parse first (naive strings are read as UTC here, only to find unreadable ones).
    parsed = pd.to_datetime(pd.Series(values), format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{_row(int(first_row[k]))}: cannot read timestamp {values[k]!r} (ISO 8601 "
            "expected, e.g. 2024-03-31T02:15:00+02:00)",
            source=src,
        )
    aware = pd.Series(values).str.contains(_OFFSET).to_numpy(dtype=bool)
    if aware.all():
        return epoch_ns(pd.DatetimeIndex(parsed))[codes]
    if aware.any():
        k = int(np.flatnonzero(~aware)[0])
        m = int(np.flatnonzero(aware)[0])
        raise InputError(
            f"{_row(int(first_row[k]))}: timestamp {values[k]!r} has no UTC offset while "
            f"{_row(int(first_row[m]))} has one ({values[m]!r}); use one style throughout",
            source=src,
        )
    naive = pd.DatetimeIndex(pd.DatetimeIndex(parsed).tz_localize(None))
    return _localize(naive, first_row, tz, src)[codes]


def _fill(x: FloatArray, how: str) -> FloatArray:
    """Fill NaNs of each column of x (n, m) along axis 0."""
    if how == "zero":
        return np.nan_to_num(x, nan=0.0)
    out = x.copy()
    idx = np.arange(x.shape[0])
    for j in range(x.shape[1]):
        col = out[:, j]
        ok = ~np.isnan(col)
        if ok.all():
            continue
        if how == "interpolate":
            col[:] = np.interp(idx, idx[ok], col[ok])
        else:  # ffill, the first value backwards
            last = np.where(ok, idx, -1)
            np.maximum.accumulate(last, out=last)
            first_ok = int(np.flatnonzero(ok)[0])
            col[:] = col[np.where(last >= 0, last, first_ok)]
    return out


def read_meter_data(
    path: str | Path,
    grid: SlotGrid,
    participants: list[str],
    unit: str = "kWh",
    fill: str = "error",
) -> MeterData:
    """Read meter data onto `grid` (file format and rules in the module docstring).

    Args:
        path: CSV (.csv, .txt) or Parquet (.parquet, .pq) file.
        grid: the run's slot grid.
        participants: the scenario's participant names.
        unit: "kWh", "Wh" (energy per interval), "kW" or "W" (mean power over the interval).
        fill: "error", "zero", "interpolate" or "ffill" (missing values and intervals).

    Returns:
        `MeterData` for the participants that appear in the file.
    """
    path = Path(path)
    src = str(path)
    if unit not in METER_UNITS:
        raise InputError(f"data.unit: must be one of {METER_UNITS} (got {unit!r})")
    if fill not in FILL_POLICIES:
        raise InputError(f"data.fill: must be one of {FILL_POLICIES} (got {fill!r})")
    df = _read_table(path, src)
    n_rows = len(df)
    if n_rows == 0:
        raise InputError("no data rows", source=src)

    ts = _timestamps(df["timestamp"], grid.timezone, src)
    names = _as_text(df["participant"])
    index_of = {name: i for i, name in enumerate(participants)}
    mapped = pd.Series(names).map(index_of)
    unknown = mapped.isna().to_numpy()
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        shown = ", ".join(participants[:5]) + (", ..." if len(participants) > 5 else "")
        what = "missing participant" if names[i] == "" else f"unknown participant {names[i]!r}"
        raise InputError(f"{_row(i)}: {what} (participants: {shown})", source=src)
    pid = mapped.to_numpy(dtype=np.int64)
    values = {
        col: _numbers(df[col], col, src) if col in df.columns else np.zeros(n_rows)
        for col in VALUE_COLUMNS
    }

    order = np.lexsort((ts, pid))
    same = (pid[order][1:] == pid[order][:-1]) & (ts[order][1:] == ts[order][:-1])
    if same.any():
        k = int(np.flatnonzero(same)[0])
        i, j = sorted((int(order[k]), int(order[k + 1])))
        raise InputError(
            f"{_row(j)}: duplicate of {_row(i)} (participant {names[i]!r}, timestamp "
            f"{_fmt_ns(int(ts[i]), grid.timezone)})",
            source=src,
        )

    slot_ns = grid.slot_minutes * _NS_PER_MIN
    step = np.diff(ts[order])
    step = step[(pid[order][1:] == pid[order][:-1]) & (step > 0)]
    res_ns = int(step.min()) if step.size else slot_ns
    if res_ns > slot_ns:
        raise InputError(
            f"column 'timestamp': data resolution {res_ns / _NS_PER_MIN:g} min is coarser than "
            f"the run's {grid.slot_minutes}-min slots",
            source=src,
        )
    if slot_ns % res_ns:
        raise InputError(
            f"column 'timestamp': data resolution {res_ns / _NS_PER_MIN:g} min does not divide "
            f"the run's {grid.slot_minutes}-min slots",
            source=src,
        )
    start_ns = int(grid.starts_utc[0].value)
    off = (ts - start_ns) % res_ns
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise InputError(
            f"{_row(i)}: timestamp {_fmt_ns(int(ts[i]), grid.timezone)} is not on the grid "
            f"(intervals of {res_ns / _NS_PER_MIN:g} min from {_fmt_ns(start_ns, grid.timezone)})",
            source=src,
        )

    per_slot = slot_ns // res_ns
    n_fine = grid.n_slots * per_slot
    pos = (ts - start_ns) // res_ns
    inside = (pos >= 0) & (pos < n_fine)
    present, cols = np.unique(pid, return_inverse=True)
    out_names = [participants[int(p)] for p in present]

    result = {}
    for name in VALUE_COLUMNS:
        v = values[name]
        if fill == "error" and np.isnan(v[inside]).any():
            i = int(np.flatnonzero(inside & np.isnan(v))[0])
            raise InputError(
                f"{_row(i)}: missing value in column {name!r}; set fill to 'zero', "
                "'interpolate' or 'ffill' to fill gaps",
                source=src,
            )
        fine = np.full((n_fine, len(present)), np.nan)
        fine[pos[inside], cols[inside]] = v[inside]
        seen = np.zeros((n_fine, len(present)), dtype=bool)
        seen[pos[inside], cols[inside]] = True
        if fill == "error" and not seen.all():
            j = int(np.flatnonzero(~seen.all(axis=0))[0])
            gaps = np.flatnonzero(~seen[:, j])
            raise InputError(
                f"participant {out_names[j]!r}: {gaps.size} interval(s) of the run missing, the "
                f"first at {_fmt_ns(start_ns + int(gaps[0]) * res_ns, grid.timezone)}; set fill "
                "to 'zero', 'interpolate' or 'ffill' to fill gaps",
                source=src,
            )
        if fill != "error":
            empty = np.isnan(fine).all(axis=0)
            if fill != "zero" and empty.any():
                j = int(np.flatnonzero(empty)[0])
                raise InputError(
                    f"participant {out_names[j]!r}: no {name} values inside the run to fill from",
                    source=src,
                )
            fine = _fill(fine, fill)
        if unit in ("kW", "W"):
            fine *= res_ns / _NS_PER_H
        if unit in ("Wh", "W"):
            fine /= 1000.0
        result[name] = fine.reshape(grid.n_slots, per_slot, len(present)).sum(axis=1)
    return MeterData(
        demand_kwh=result["demand"], generation_kwh=result["generation"], names=out_names
    )
