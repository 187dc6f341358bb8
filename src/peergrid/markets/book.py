"""Order books from user data: a CSV file, a DataFrame or a dict of arrays → `LabelledBook`.

The one place where a user's order book is checked (the mechanisms trust what they get). Columns,
exactly these, in any order:

    id, participant, side, quantity_kwh, price

- `id`: the order's id, unique. Kept as given for output: integers when every id is an integer
  (in a CSV: an optional sign and digits), otherwise every id is taken as text. Internally orders
  get the integer ids 0..n−1 **in the order of the user's ids** (numeric for integer ids,
  lexicographic by code point for text ids), so the mechanisms' "ties break by id" means by the
  user's id, whatever the row order. Array positions follow the rows.
- `participant`: a name (text; numbers are read as their text). Names map to the integer indices
  0, 1, ... in order of first appearance; `LabelledBook.participant_name` maps them back.
- `side`: `buy` or `sell` (case and surrounding blanks ignored).
- `quantity_kwh`: energy wanted or offered in the slot [kWh], a finite number >= 0.
- `price`: limit price [currency/kWh], a finite number (also for mechanisms that ignore it, such
  as SDR and MMR; put 0 there).

Every problem is an `InputError` naming the source (the file), the 1-based data row (row 1 is the
first line after the header) and the column, with the reason; where several rows are bad, the
first one (then the first column in the list above) is reported. An empty book (header only) is
valid.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from peergrid.errors import InputError
from peergrid.markets.base import OrderBook, Side

COLUMNS = ("id", "participant", "side", "quantity_kwh", "price")
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_INT_PATTERN = r"[+-]?\d+"


@dataclass(frozen=True, eq=False)
class LabelledBook(OrderBook):
    """An `OrderBook` that remembers the user's labels, for output.

    Attributes:
        order_id: the user's id of each order, by position: int64 when every id is an integer,
            else object (str). `id` holds their ranks 0..n−1 (see the module docstring).
        participant_name: the name of each participant index.
    """

    order_id: NDArray[Any]
    participant_name: tuple[str, ...]


@dataclass(frozen=True)
class _Problem:
    row: int  # 0-based data row
    column: str
    reason: str


def _first_bad(mask: NDArray[np.bool_]) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if bad.size else None


def _is_missing(values: pd.Series) -> NDArray[np.bool_]:
    """None, NaN or blank text."""
    missing = values.isna().to_numpy(bool)
    if not pd.api.types.is_numeric_dtype(values.dtype):
        blank = values.map(lambda v: isinstance(v, str) and not v.strip())
        missing |= blank.to_numpy(bool)
    return missing


def _parse_ids(values: pd.Series) -> tuple[NDArray[Any] | None, _Problem | None]:
    missing = _is_missing(values)
    row = _first_bad(missing)
    if row is not None:
        return None, _Problem(row, "id", "missing value")
    if pd.api.types.is_bool_dtype(values.dtype):
        return None, _Problem(0, "id", "ids must be integers or text, got booleans")
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(np.int64), None
    if pd.api.types.is_float_dtype(values.dtype):
        as_float = values.to_numpy(np.float64)
        if np.all(np.isfinite(as_float) & (as_float == np.round(as_float))):
            return as_float.astype(np.int64), None
    text = values.map(lambda v: v.strip() if isinstance(v, str) else str(v))
    if bool(text.str.fullmatch(_INT_PATTERN).all()):
        try:
            return np.array([int(v) for v in text], dtype=np.int64), None
        except OverflowError:
            pass  # beyond int64: keep them as text
    return text.to_numpy(object), None


def _why_not_a_number(raw: object) -> str:
    if raw is None or (isinstance(raw, str) and not raw):
        return "missing value"
    if isinstance(raw, float):
        return "missing value or NaN"  # a frame's missing numbers are NaN
    if isinstance(raw, str) and raw.lower() == "nan":
        return "NaN is not allowed"
    return f"not a number: {raw!r}"


def _parse_numbers(
    values: pd.Series, column: str, *, allow_negative: bool
) -> tuple[NDArray[np.float64] | None, _Problem | None]:
    if pd.api.types.is_bool_dtype(values.dtype):
        return None, _Problem(0, column, "expected numbers, got booleans")
    if pd.api.types.is_numeric_dtype(values.dtype):
        raw = values
        number = values.to_numpy(np.float64)
    else:
        raw = values.map(lambda v: v.strip() if isinstance(v, str) else v)
        number = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    problems = []
    nan = _first_bad(np.isnan(number))
    if nan is not None:  # NaN, blank or text that did not parse
        problems.append(_Problem(nan, column, _why_not_a_number(raw.iloc[nan])))
    inf = _first_bad(np.isinf(number))
    if inf is not None:
        problems.append(_Problem(inf, column, f"not finite: {number[inf]}"))
    if not allow_negative:
        neg = _first_bad(number < 0.0)
        if neg is not None:
            problems.append(_Problem(neg, column, f"negative quantity: {number[neg]}"))
    if problems:
        return None, min(problems, key=lambda p: p.row)
    return number, None


def _parse_sides(values: pd.Series) -> tuple[NDArray[np.int8] | None, _Problem | None]:
    text = values.map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    side = text.map(_SIDES)
    row = _first_bad(side.isna().to_numpy())
    if row is not None:
        raw = values.iloc[row]
        reason = (
            "missing value"
            if _is_missing(values.iloc[row : row + 1])[0]
            else f"unknown side {raw!r}"
        )
        return None, _Problem(row, "side", f"{reason}; expected 'buy' or 'sell'")
    return side.to_numpy(np.int8), None


def _parse_participants(values: pd.Series) -> tuple[pd.Series | None, _Problem | None]:
    row = _first_bad(_is_missing(values))
    if row is not None:
        return None, _Problem(row, "participant", "missing value")
    return values.map(lambda v: v.strip() if isinstance(v, str) else str(v)), None


def _duplicate(order_id: NDArray[Any]) -> _Problem | None:
    dup = pd.Series(order_id).duplicated(keep="first").to_numpy()
    row = _first_bad(dup)
    if row is None:
        return None
    value = order_id[row]
    first = int(np.flatnonzero(order_id == value)[0])
    shown = value.item() if isinstance(value, np.generic) else value
    return _Problem(row, "id", f"duplicate id {shown!r} (first used in row {first + 1})")


def _raise(problem: _Problem, source: str) -> NoReturn:
    raise InputError(
        f"row {problem.row + 1}, column {problem.column!r}: {problem.reason}", source=source
    )


def book_from_frame(
    data: pd.DataFrame | Mapping[str, Any], *, source: str = "book"
) -> LabelledBook:
    """Validate an order book given as a DataFrame or a dict of equal-length arrays.

    Args:
        data: the five columns of the module docstring (no others).
        source: how error messages name the book (the CSV reader passes the file name).

    Raises:
        InputError: a missing or unknown column, or a bad value (message: source, row, column,
            reason).
    """
    if isinstance(data, pd.DataFrame):
        frame = data.reset_index(drop=True)
    else:
        try:
            frame = pd.DataFrame({key: np.asarray(col) for key, col in data.items()})
        except ValueError as err:  # ragged columns, 2-D values
            raise InputError(
                f"columns must be 1-D arrays of equal length ({err})", source=source
            ) from None
    names = [str(c).strip() for c in frame.columns]
    frame.columns = pd.Index(names)
    for column in COLUMNS:
        if column not in names:
            raise InputError(
                f"missing column {column!r}; the columns are {', '.join(COLUMNS)}", source=source
            )
    unknown = [c for c in names if c not in COLUMNS]
    if unknown:
        raise InputError(
            f"unknown column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}", source=source
        )

    order_id, p_id = _parse_ids(frame["id"])
    participant, p_part = _parse_participants(frame["participant"])
    side, p_side = _parse_sides(frame["side"])
    quantity, p_q = _parse_numbers(frame["quantity_kwh"], "quantity_kwh", allow_negative=False)
    price, p_price = _parse_numbers(frame["price"], "price", allow_negative=True)
    problems = [p for p in (p_id, p_part, p_side, p_q, p_price) if p is not None]
    if order_id is not None:
        dup = _duplicate(order_id)
        if dup is not None:
            problems.append(dup)
    if problems:
        _raise(min(problems, key=lambda p: p.row), source)  # stable: column order on a tie
    assert order_id is not None and participant is not None and side is not None
    assert quantity is not None and price is not None

    rank = np.empty(order_id.size, np.int64)
    rank[np.argsort(order_id, kind="stable")] = np.arange(order_id.size)
    codes, names_by_index = pd.factorize(participant, sort=False)
    return LabelledBook(
        id=rank,
        participant=codes.astype(np.int64),
        side=side,
        quantity_kwh=quantity,
        price=price,
        order_id=order_id,
        participant_name=tuple(str(n) for n in names_by_index),
    )


def read_book(path: str | Path) -> LabelledBook:
    """Read and validate an order book CSV (header `id,participant,side,quantity_kwh,price`).

    Raises:
        InputError: the file cannot be read or parsed, or the book is invalid; the message names
            the file, the 1-based data row, the column and the reason.
    """
    source = str(path)
    try:
        with warnings.catch_warnings():
            # pandas only warns when the first data row is longer than the header
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False
            )
    except FileNotFoundError:
        raise InputError("file not found", source=source) from None
    except pd.errors.EmptyDataError:
        raise InputError(
            "empty file: expected a header line with the columns " + ", ".join(COLUMNS),
            source=source,
        ) from None
    except pd.errors.ParserWarning:
        raise InputError("row 1: more fields than the header has columns", source=source) from None
    except pd.errors.ParserError as err:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if found is None:
            raise InputError(f"cannot parse as CSV: {err}", source=source) from None
        expected, line, saw = (int(g) for g in found.groups())
        raise InputError(
            f"row {line - 1}: {saw} fields, but the header has {expected} columns", source=source
        ) from None
    except (UnicodeDecodeError, OSError) as err:
        raise InputError(f"cannot read: {err}", source=source) from None
    return book_from_frame(frame, source=source)
