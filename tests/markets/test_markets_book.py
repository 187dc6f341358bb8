"""Order books from CSV files, DataFrames and dicts: labels, id order, and every error path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from peergrid.errors import InputError
from peergrid.markets.base import OrderBook, Side
from peergrid.markets.book import LabelledBook, book_from_frame, read_book
from peergrid.markets.uniform import clear_uniform

HEADER = "id,participant,side,quantity_kwh,price"


def write(tmp_path: Path, text: str, name: str = "book.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_a_book_and_keeps_the_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "10,ann,buy,2.0,0.30\n"
        "9, bob , SELL ,1.5,0.10\n"
        "11,ann,sell,0,-0.05\n"
        "2,cyd,Buy,1e-1,0.2\n",
    )
    book = read_book(path)
    assert isinstance(book, LabelledBook)
    assert isinstance(book, OrderBook)
    # positions follow the rows; internal ids are the ranks of the user's ids (numeric order)
    assert book.order_id.tolist() == [10, 9, 11, 2]
    np.testing.assert_array_equal(book.id, [2, 1, 3, 0])
    np.testing.assert_array_equal(book.participant, [0, 1, 0, 2])
    assert book.participant_name == ("ann", "bob", "cyd")
    np.testing.assert_array_equal(book.side, [Side.BUY, Side.SELL, Side.SELL, Side.BUY])
    np.testing.assert_array_equal(book.quantity_kwh, [2.0, 1.5, 0.0, 0.1])
    np.testing.assert_array_equal(book.price, [0.30, 0.10, -0.05, 0.2])
    assert book.id.dtype == np.int64
    assert book.side.dtype == np.int8


def test_text_ids_sort_lexicographically(tmp_path: Path) -> None:
    book = read_book(write(tmp_path, f"{HEADER}\nb2,x,buy,1,1\na7,y,sell,1,1\nb10,z,buy,1,1\n"))
    assert book.order_id.tolist() == ["b2", "a7", "b10"]
    np.testing.assert_array_equal(book.id, [2, 0, 1])  # "a7" < "b10" < "b2"


def test_ties_break_by_the_users_id_not_the_row_order(tmp_path: Path) -> None:
    # two bids at the same price; the one with the smaller id (9, listed second) trades first
    rows = f"{HEADER}\n10,a,buy,1,9\n9,b,buy,1,9\n5,c,sell,1,1\n"
    book = read_book(write(tmp_path, rows))
    result = clear_uniform(book)
    assert book.order_id[result.trade_buy].tolist() == [9, 10]
    # ids 10 and 9 as text would sort "10" < "9": integer ids are compared as numbers
    assert book.id[1] < book.id[0]


def test_header_only_is_an_empty_book(tmp_path: Path) -> None:
    book = read_book(write(tmp_path, HEADER + "\n"))
    assert book.n_orders == 0
    assert book.participant_name == ()


def test_columns_in_any_order(tmp_path: Path) -> None:
    book = read_book(write(tmp_path, "price,side,id,quantity_kwh,participant\n0.2,sell,1,3,p\n"))
    assert (book.price[0], book.quantity_kwh[0], book.side[0]) == (0.2, 3.0, Side.SELL)


# --- every error path, from a file -------------------------------------------------------------

ERRORS = [
    # body (after a good first row), expected message fragment
    (
        "id,participant,side,quantity_kwh\n1,a,buy,1\n",
        r"book\.csv: missing column 'price'; the columns are id, participant",
    ),
    (f"{HEADER},note\n1,a,buy,1,1,x\n", r"book\.csv: unknown column 'note'"),
    (f"{HEADER}\n1,a,buy,1,1\n2,b,sell,-1,1\n", r"row 2, column 'quantity_kwh': negative"),
    (f"{HEADER}\n1,a,buy,1,1\n2,b,sell,NaN,1\n", r"row 2, column 'quantity_kwh': NaN"),
    (f"{HEADER}\n1,a,buy,1,1\n2,b,sell,nan,1\n", r"row 2, column 'quantity_kwh': NaN"),
    (f"{HEADER}\n1,a,buy,1,1\n2,b,sell,inf,1\n", r"row 2, column 'quantity_kwh': not finite"),
    (
        f"{HEADER}\n1,a,buy,1,1\n2,b,sell,two,1\n",
        r"row 2, column 'quantity_kwh': not a number: 'two'",
    ),
    (f"{HEADER}\n1,a,buy,1,1\n2,b,sell,,1\n", r"row 2, column 'quantity_kwh': missing value"),
    (
        f"{HEADER}\n1,a,buy,1,1\n2,b,bid,1,1\n",
        r"row 2, column 'side': unknown side 'bid'; expected 'buy' or 'sell'",
    ),
    (f"{HEADER}\n1,a,,1,1\n", r"row 1, column 'side': missing value"),
    (
        f"{HEADER}\n1,a,buy,1,1\n2,b,sell,1,1\n1,c,sell,1,1\n",
        r"row 3, column 'id': duplicate id 1 \(first used in row 1\)",
    ),
    (f"{HEADER}\n7,a,buy,1,1\n007,b,sell,1,1\n", r"row 2, column 'id': duplicate id 7"),
    (f"{HEADER}\nx,a,buy,1,1\nx,b,sell,1,1\n", r"row 2, column 'id': duplicate id 'x'"),
    (f"{HEADER}\n1,a,buy,1,1\n,b,sell,1,1\n", r"row 2, column 'id': missing value"),
    (f"{HEADER}\n1,a,buy,1,1\n2,,sell,1,1\n", r"row 2, column 'participant': missing value"),
    (f"{HEADER}\n1,a,buy,1,1\n2,b,sell,1,cheap\n", r"row 2, column 'price': not a number"),
    (f"{HEADER}\n1,a,buy,1,0.1\n2,b,sell,1,1,5\n", r"book\.csv: row 2: 6 fields, but the header"),
    (f"{HEADER}\n1,a,buy,1,0.1,9\n", r"book\.csv: row 1: more fields than the header"),
    (f"{HEADER}\n1,a,buy,1,1\n2,b,sell,1,\n", r"row 2, column 'price': missing value"),
    (f"{HEADER}\n1,a,buy,1,1\n2,b,sell,1,nan\n", r"row 2, column 'price': NaN is not allowed"),
    (f"{HEADER}\n1,a,buy,1,1\n2,b,sell,1,-inf\n", r"row 2, column 'price': not finite: -inf"),
    ("", r"book\.csv: empty file"),
]


@pytest.mark.parametrize(("text", "pattern"), ERRORS)
def test_errors_name_file_row_column_and_reason(tmp_path: Path, text: str, pattern: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=pattern) as excinfo:
        read_book(path)
    assert str(excinfo.value).startswith(str(path))
    assert excinfo.value.exit_code == 2


def test_the_first_bad_row_is_reported(tmp_path: Path) -> None:
    # row 3 has a bad side, row 2 a bad price: row 2 comes first; within a row, the column order
    path = write(tmp_path, f"{HEADER}\n1,a,buy,1,1\n2,b,buy,-1,x\n3,c,bid,1,1\n")
    with pytest.raises(InputError, match=r"row 2, column 'quantity_kwh'"):
        read_book(path)
    # within a column too: the NaN in row 2 before the text in row 3
    path = write(tmp_path, f"{HEADER}\n1,a,buy,1,1\n2,b,buy,1,nan\n3,c,buy,1,abc\n")
    with pytest.raises(InputError, match=r"row 2, column 'price': NaN is not allowed"):
        read_book(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        read_book(tmp_path / "nope.csv")


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(f"{HEADER}\n1,J\xfcrgen,buy,1,1\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.csv: cannot read"):
        read_book(path)


# --- frames and dicts --------------------------------------------------------------------------


def test_book_from_a_dict_of_arrays() -> None:
    book = book_from_frame(
        {
            "id": np.array([3, 1, 2]),
            "participant": ["ann", "bob", "ann"],
            "side": ["buy", "sell", "sell"],
            "quantity_kwh": np.array([1.0, 2.0, 0.5]),
            "price": [0.3, 0.1, 0.2],
        }
    )
    assert book.order_id.tolist() == [3, 1, 2]
    np.testing.assert_array_equal(book.id, [2, 0, 1])
    np.testing.assert_array_equal(book.participant, [0, 1, 0])
    np.testing.assert_array_equal(book.quantity_kwh, [1.0, 2.0, 0.5])


def test_book_from_a_frame_with_numbers_as_participants_and_float_ids() -> None:
    frame = pd.DataFrame(
        {
            "id": [2.0, 1.0],
            "participant": [7, 8],
            "side": ["sell", "buy"],
            "quantity_kwh": [1, 2],
            "price": [0.1, 0.2],
        },
        index=[10, 20],
    )
    book = book_from_frame(frame)
    assert book.order_id.tolist() == [2, 1]
    assert book.participant_name == ("7", "8")


@pytest.mark.parametrize(
    ("column", "values", "pattern"),
    [
        ("quantity_kwh", [1.0, np.nan], r"book: row 2, column 'quantity_kwh': missing value or"),
        ("quantity_kwh", [1.0, -2.0], r"row 2, column 'quantity_kwh': negative quantity"),
        ("quantity_kwh", [True, False], r"row 1, column 'quantity_kwh': expected numbers"),
        ("price", [1.0, "x"], r"row 2, column 'price': not a number: 'x'"),
        ("price", [None, 1.0], r"row 1, column 'price': missing value or NaN"),
        ("side", ["buy", "hold"], r"row 2, column 'side': unknown side 'hold'"),
        ("side", ["buy", None], r"row 2, column 'side': missing value"),
        ("id", [1, 1], r"row 2, column 'id': duplicate id 1"),
        ("id", [1.0, np.nan], r"row 2, column 'id': missing value"),
        ("id", [True, False], r"column 'id': ids must be integers or text"),
        ("participant", ["a", None], r"row 2, column 'participant': missing value"),
    ],
)
def test_frame_errors(column: str, values: list[object], pattern: str) -> None:
    data: dict[str, list[object]] = {
        "id": [1, 2],
        "participant": ["a", "b"],
        "side": ["buy", "sell"],
        "quantity_kwh": [1.0, 1.0],
        "price": [0.2, 0.1],
    }
    data[column] = values
    with pytest.raises(InputError, match=pattern):
        book_from_frame(pd.DataFrame(data))


def test_ragged_dict_is_an_error() -> None:
    with pytest.raises(InputError, match=r"mine: columns must be 1-D arrays of equal length"):
        book_from_frame(
            {
                "id": [1, 2],
                "participant": ["a"],
                "side": ["buy"],
                "quantity_kwh": [1],
                "price": [1],
            },
            source="mine",
        )
