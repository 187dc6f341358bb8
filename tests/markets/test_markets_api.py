"""`clear` on one book: the report's fields, the JSON, tariff and parameter checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.errors import InputError
from peergrid.markets.api import ClearReport, clear, parse_params, welfare
from peergrid.markets.base import ClearingResult
from peergrid.markets.book import book_from_frame, read_book

# bids 0.30 x 2 kWh, 0.25 x 1; asks 0.10 x 1, 0.20 x 3 (the uniform auction's worked example)
AUCTION = {
    "id": ["b1", "b2", "s1", "s2"],
    "participant": ["ann", "bob", "cyd", "dan"],
    "side": ["buy", "buy", "sell", "sell"],
    "quantity_kwh": [2.0, 1.0, 1.0, 3.0],
    "price": [0.30, 0.25, 0.10, 0.20],
}
# net positions: deficits 1 + 3 = 4, surpluses 1 + 2 = 3 (the MMR example G = 3, D = 4)
NET = {
    "id": [1, 2, 3, 4],
    "participant": ["a", "b", "c", "d"],
    "side": ["buy", "buy", "sell", "sell"],
    "quantity_kwh": [1.0, 3.0, 1.0, 2.0],
    "price": [15.0, 15.0, 5.0, 5.0],
}
JSON_FIELDS = {
    "mechanism",
    "clearing_price",
    "buy_price",
    "sell_price",
    "traded_kwh",
    "welfare",
    "operator_surplus",
    "fills",
    "trades",
    "info",
}


def test_uniform_report() -> None:
    report = clear(AUCTION, "uniform")
    assert isinstance(report, ClearReport)
    assert report.mechanism == "uniform"
    assert report.clearing_price == pytest.approx(0.225, abs=1e-15)
    assert report.buy_price is None
    assert report.sell_price is None
    assert report.traded_kwh == 3.0
    assert report.operator_surplus == 0.0
    # (0.30 − 0.10)·1 + (0.30 − 0.20)·1 + (0.25 − 0.20)·1
    assert report.welfare == pytest.approx(0.35, abs=1e-15)
    assert [f["id"] for f in report.fills] == ["b1", "b2", "s1", "s2"]
    assert [f["filled_kwh"] for f in report.fills] == [2.0, 1.0, 1.0, 2.0]
    assert report.trades is not None
    assert [(t["buy_id"], t["sell_id"], t["quantity_kwh"]) for t in report.trades] == [
        ("b1", "s1", 1.0),
        ("b1", "s2", 1.0),
        ("b2", "s2", 1.0),
    ]
    data = json.loads(report.to_json())
    assert set(data) == JSON_FIELDS
    assert data["fills"][0] == {"id": "b1", "filled_kwh": 2.0, "price": report.clearing_price}
    assert data["trades"][2]["price"] == report.clearing_price


def test_a_dataframe_and_a_csv_give_the_same_report(tmp_path: Path) -> None:
    frame = pd.DataFrame(AUCTION)
    path = tmp_path / "book.csv"
    frame.to_csv(path, index=False)
    a = clear(frame, "k-double", k=0.0)
    b = clear(read_book(path), "k-double", k=0.0)
    assert a.to_dict() == b.to_dict()
    assert a.clearing_price == 0.20  # L = max(0.20, first rejected bid: none) = 0.20


def test_integer_ids_stay_integers_in_the_json() -> None:
    report = clear(NET, "mmr", retail=15.0, feed_in=5.0)
    assert [f["id"] for f in json.loads(report.to_json())["fills"]] == [1, 2, 3, 4]


def test_mmr_report_is_a_pool() -> None:
    report = clear(NET, "mmr", retail=15.0, feed_in=5.0)
    assert (report.sell_price, report.buy_price) == (10.0, 11.25)
    assert report.clearing_price == 10.0
    assert report.trades is None
    assert report.traded_kwh == pytest.approx(3.0)
    # pool welfare: Σ buy fills·bid − Σ sell fills·ask = 3·15 − 3·5, the spread saved
    assert report.welfare == pytest.approx(30.0)
    assert json.loads(report.to_json())["trades"] is None


def test_sdr_info_infinity_becomes_null() -> None:
    buyers_only = {**NET, "side": ["sell"] * 4}
    report = clear(buyers_only, "sdr", retail=15.0, feed_in=5.0)
    assert report.info["sdr"] is None  # TBP = 0: SDR = ∞
    assert math.isfinite(report.welfare)
    json.loads(report.to_json())  # strict JSON: no Infinity


def test_bill_sharing_report() -> None:
    report = clear(NET, "bill-sharing", retail=15.0, feed_in=5.0)
    # one slot: p_import = 15·(1 − 3/4) = 3.75, nobody exports to the grid
    assert report.buy_price == 3.75
    assert report.sell_price == 0.0
    assert {f["price"] for f in report.fills} == {0.0}


def test_pay_as_bid_report_has_per_pair_prices() -> None:
    report = clear(AUCTION, "pay-as-bid")
    assert report.clearing_price is None
    assert report.trades is not None
    assert [t["price"] for t in report.trades] == [0.30, 0.30, 0.25]
    assert report.welfare == pytest.approx(0.35, abs=1e-15)  # payments cancel out


@pytest.mark.parametrize("name", ["sdr", "mmr", "bill-sharing"])
def test_net_position_mechanisms_need_the_tariff(name: str) -> None:
    with pytest.raises(InputError, match=r"give retail \(--retail\) and feed_in \(--feed-in\)"):
        clear(NET, name)
    with pytest.raises(InputError, match=r"give feed_in \(--feed-in\) \[currency/kWh\]"):
        clear(NET, name, retail=0.3)
    with pytest.raises(InputError, match=r"0 <= feed_in <= retail"):
        clear(NET, name, retail=0.1, feed_in=0.3)
    with pytest.raises(InputError, match=r"retail must be finite"):
        clear(NET, name, retail=math.inf, feed_in=0.1)
    with pytest.raises(InputError, match=r"feed_in must be a number"):
        clear(NET, name, retail=0.3, feed_in="0.1")  # type: ignore[arg-type]


def test_net_position_mechanisms_need_one_order_per_participant() -> None:
    twice = {**NET, "participant": ["a", "b", "a", "d"]}
    with pytest.raises(InputError, match=r"participant 'a' has 2 orders"):
        clear(twice, "sdr", retail=15.0, feed_in=5.0)
    clear(twice, "uniform")  # auctions accept several orders per participant


def test_numpy_numbers_are_tariffs_booleans_are_not() -> None:
    report = clear(NET, "mmr", retail=np.float64(15.0), feed_in=np.int64(5))  # type: ignore[arg-type]
    assert report.sell_price == 10.0
    with pytest.raises(InputError, match=r"retail must be a number"):
        clear(NET, "mmr", retail=True, feed_in=0.0)


def test_auctions_do_not_need_the_tariff() -> None:
    assert clear(AUCTION, "uniform", retail=0.3, feed_in=0.05).clearing_price == pytest.approx(
        0.225
    )


def test_bad_mechanism_params_and_books() -> None:
    with pytest.raises(InputError, match=r"unknown market mechanism 'vickrey'"):
        clear(AUCTION, "vickrey")
    with pytest.raises(InputError, match=r"'k-double': parameter 'k'"):
        clear(AUCTION, "k-double", k=2.0)
    with pytest.raises(InputError, match=r"parameter 'k': Extra inputs"):
        clear(AUCTION, "uniform", k=0.5)
    with pytest.raises(InputError, match=r"book: row 2, column 'side'"):
        clear({**AUCTION, "side": ["buy", "bid", "sell", "sell"]}, "uniform")


def test_welfare_definitions_agree_where_both_exist() -> None:
    book = book_from_frame(AUCTION)
    report = clear(book, "uniform")
    pooled = ClearingResult(
        filled_kwh=report.result.filled_kwh, price=report.result.price, pool=True
    )
    assert welfare(book, pooled) == pytest.approx(welfare(book, report.result), abs=1e-15)
    assert welfare(book, pooled) == pytest.approx(report.welfare, abs=1e-15)


def test_parse_params() -> None:
    assert parse_params(["k=0.25", "price_rule=midpoint", "n=3", "flag=TRUE", " x = -2 "]) == {
        "k": 0.25,
        "price_rule": "midpoint",
        "n": 3,
        "flag": True,
        "x": -2,
    }
    assert parse_params(["e=1e-3", "off=false", "empty="]) == {"e": 1e-3, "off": False, "empty": ""}
    assert parse_params([]) == {}
    with pytest.raises(InputError, match=r"--param 'k': expected key=value"):
        parse_params(["k"])
    with pytest.raises(InputError, match=r"expected key=value"):
        parse_params(["=3"])
    with pytest.raises(InputError, match=r"--param 'k' given twice"):
        parse_params(["k=1", "k=2"])
    report = clear(AUCTION, "k-double", **parse_params(["k=1"]))
    assert report.info["k"] == 1.0


# --- properties over random books --------------------------------------------------------------

names = st.sampled_from(["uniform", "pay-as-bid", "k-double", "sdr", "mmr", "bill-sharing"])


@st.composite
def books(draw: st.DrawFn) -> dict[str, list[object]]:
    n = draw(st.integers(0, 10))
    return {
        "id": draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n, unique=True)),
        "participant": [f"p{i}" for i in range(n)],
        "side": draw(st.lists(st.sampled_from(["buy", "sell"]), min_size=n, max_size=n)),
        "quantity_kwh": draw(st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n)),
        "price": draw(st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n)),
    }


@settings(max_examples=150, deadline=None)
@given(data=books(), name=names)
def test_report_invariants(data: dict[str, list[object]], name: str) -> None:
    report = clear(data, name, retail=0.30, feed_in=0.05)
    again = clear(data, name, retail=0.30, feed_in=0.05)
    assert report.to_json() == again.to_json()  # deterministic
    parsed = json.loads(report.to_json())
    assert set(parsed) == JSON_FIELDS
    assert [f["id"] for f in parsed["fills"]] == data["id"]
    is_buy = np.array([s == "buy" for s in data["side"]], bool)
    fill = np.array([f["filled_kwh"] for f in report.fills])
    price = np.array([np.nan if f["price"] is None else f["price"] for f in report.fills])
    if fill.size:
        assert fill[is_buy].sum() == pytest.approx(fill[~is_buy].sum(), rel=0, abs=1e-9)
        assert report.traded_kwh == pytest.approx(fill[is_buy].sum(), rel=0, abs=1e-9)
        paid = np.where(fill > 0, fill * price, 0.0)
        assert paid[is_buy].sum() == pytest.approx(
            paid[~is_buy].sum() + report.operator_surplus, rel=0, abs=1e-9
        )
    assert report.welfare >= -1e-9 or name in ("sdr", "mmr", "bill-sharing")
    if report.trades is not None:
        ids = set(data["id"])
        assert all(t["buy_id"] in ids and t["sell_id"] in ids for t in report.trades)
        assert sum(t["quantity_kwh"] for t in report.trades) == pytest.approx(
            report.traded_kwh, rel=0, abs=1e-9
        )
