"""McAfee trade reduction: the published examples (McAfee 1992), the divisible form (Huang et al.
2002) by hand, conventions, and properties on random books — individual rationality, weak budget
balance, volume balance, determinism and truthfulness (no single trader gains by misreporting its
price)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.errors import InputError
from peergrid.markets.base import ClearingResult, MarketContext, OrderBook, Side
from peergrid.markets.mcafee import (
    McAfeeForm,
    McAfeeParams,
    McAfeeTradeReduction,
    clear_mcafee,
)
from peergrid.markets.registry import get_mechanism
from peergrid.markets.uniform import clear_uniform

CTX = MarketContext(retail_price=0.30, feed_in_price=0.05)


def make_book(
    bids: list[float],
    asks: list[float],
    quantity_kwh: list[float] | None = None,
    participant: list[int] | None = None,
) -> OrderBook:
    """Bids then asks by price; 1 kWh each unless given; ids and participants 0..n-1 unless
    given."""
    n = len(bids) + len(asks)
    return OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64)
        if participant is None
        else np.array(participant, np.int64),
        side=np.array([Side.BUY] * len(bids) + [Side.SELL] * len(asks), np.int8),
        quantity_kwh=np.ones(n) if quantity_kwh is None else np.array(quantity_kwh, np.float64),
        price=np.array(bids + asks, dtype=np.float64),
    )


def trades(result: ClearingResult) -> list[tuple[int, int, float]]:
    return [
        (int(b), int(s), float(k))
        for b, s, k in zip(result.trade_buy, result.trade_sell, result.trade_kwh, strict=True)
    ]


def clear(book: OrderBook, form: str = "auto") -> ClearingResult:
    return McAfeeTradeReduction(McAfeeParams.model_validate({"form": form})).clear(book, CTX)


# --- published examples (McAfee 1992, unit orders) ---------------------------------------------


def test_all_efficient_pairs_trade_at_p0() -> None:
    # k = 4 (9 ≥ 8, 6 < 11); p0 = (6 + 11)/2 = 8.5 lies in [s_4, b_4] = [8, 9].
    result = clear(make_book([17, 14, 13, 9, 6], [1, 4, 5, 8, 11]))
    np.testing.assert_array_equal(result.filled_kwh, [1, 1, 1, 1, 0, 1, 1, 1, 1, 0])
    assert result.clearing_price == result.buy_price == result.sell_price == 8.5
    np.testing.assert_array_equal(result.price[result.filled_kwh > 0], 8.5)
    assert trades(result) == [(0, 5, 1.0), (1, 6, 1.0), (2, 7, 1.0), (3, 8, 1.0)]
    np.testing.assert_array_equal(result.trade_price, 8.5)
    assert result.operator_surplus == 0.0
    assert result.info["reduced"] == 0.0
    assert result.info["form_unit"] == 1.0


def test_one_trade_at_p0_when_the_next_pair_brackets_it() -> None:
    # bids {9, 4}, asks {8, 3}: k = 1, p0 = (4 + 8)/2 = 6 in [3, 9].
    result = clear(make_book([9, 4], [8, 3]))
    np.testing.assert_array_equal(result.filled_kwh, [1, 0, 0, 1])
    assert result.clearing_price == 6.0
    assert trades(result) == [(0, 3, 1.0)]
    assert result.operator_surplus == 0.0


def test_trade_reduction_when_the_next_pair_is_missing() -> None:
    # bids {9, 8}, asks {3, 4}: k = 2 and no third order, so the 2nd pair is excluded;
    # the buyer pays b_2 = 8, the seller receives s_2 = 4, the operator keeps 4.
    result = clear(make_book([9, 8], [3, 4]))
    np.testing.assert_array_equal(result.filled_kwh, [1, 0, 1, 0])
    assert (result.buy_price, result.sell_price) == (8.0, 4.0)
    assert math.isnan(result.clearing_price)
    np.testing.assert_array_equal(result.price, [8.0, np.nan, 4.0, np.nan])
    assert trades(result) == [(0, 2, 1.0)]
    np.testing.assert_array_equal(result.trade_price, [8.0])  # what the buyer pays
    assert result.operator_surplus == 4.0
    assert result.info["reduced"] == 1.0


def test_trade_reduction_when_p0_falls_outside() -> None:
    # bids {9, 8, 1}, asks {3, 4, 20}: k = 2, p0 = (1 + 20)/2 = 10.5 > b_2 = 8, so one pair trades:
    # the buyer pays 8, the seller receives 4.
    result = clear(make_book([9, 8, 1], [3, 4, 20]))
    np.testing.assert_array_equal(result.filled_kwh, [1, 0, 0, 1, 0, 0])
    assert (result.buy_price, result.sell_price, result.operator_surplus) == (8.0, 4.0, 4.0)


def test_a_single_efficient_pair_never_trades_after_reduction() -> None:
    result = clear(make_book([9], [3]))
    np.testing.assert_array_equal(result.filled_kwh, [0, 0])
    assert result.trade_kwh.size == 0
    assert result.info["reduced"] == 1.0
    assert result.info["efficient_kwh"] == 1.0


def test_unit_size_other_than_one() -> None:
    # Same as the first example with 0.5 kWh units: 4 × 0.5 kWh at 8.5.
    result = clear(make_book([17, 14, 13, 9, 6], [1, 4, 5, 8, 11], [0.5] * 10))
    assert result.traded_kwh == 2.0
    assert result.clearing_price == 8.5


# --- divisible form (Huang, Scheller-Wolf & Sycara 2002) --------------------------------------


def test_divisible_hand_computed_with_pro_rata_rationing() -> None:
    # bids 12 x 1, 10 x 2, 9 x 1, 7 x 2 kWh; asks 1 x 1, 2 x 1, 3 x 2, 8 x 3 kWh.
    # Volume axis: (0,1] 12|1, (1,2] 10|2, (2,3] 10|3, (3,4] 9|3, (4,6] 7|8 does not cross:
    # Q* = 4, marginal bid 9 and marginal ask 3 are excluded. Winners: bids 12 and 10 (3 kWh)
    # against asks 1 and 2 (2 kWh): buyers are long and get 2/3 of their quantity, at 9;
    # sellers receive 3. Operator: 2 kWh × (9 − 3) = 12.
    book = make_book([12, 10, 9, 7], [1, 2, 3, 8], [1, 2, 1, 2, 1, 1, 2, 3])
    result = clear(book)
    np.testing.assert_allclose(
        result.filled_kwh, [2 / 3, 4 / 3, 0, 0, 1, 1, 0, 0], rtol=0, atol=1e-15
    )
    np.testing.assert_array_equal(result.price, [9, 9, np.nan, np.nan, 3, 3, np.nan, np.nan])
    assert (result.buy_price, result.sell_price) == (9.0, 3.0)
    assert math.isnan(result.clearing_price)
    assert result.operator_surplus == pytest.approx(12.0, abs=1e-12)
    assert [(b, s) for b, s, _ in trades(result)] == [(0, 4), (1, 4), (1, 5)]
    np.testing.assert_allclose(result.trade_kwh, [2 / 3, 1 / 3, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(result.trade_price, [9.0, 9.0, 9.0])
    assert result.info["efficient_kwh"] == 4.0
    assert result.info["cleared_kwh"] == 2.0
    assert result.info["form_unit"] == 0.0
    # for comparison, the uniform auction trades all 4 kWh at (9 + 3)/2
    assert clear_uniform(book).traded_kwh == 4.0


def test_the_long_side_is_rationed_pro_rata() -> None:
    # Buyers long: bids 10 x 2, 8 x 1; asks 1 x 1, 2 x 3, 5 x 2. Axis: (0,1] 10|1, (1,2] 10|2,
    # (2,3] 8|2, then no bid left: Q* = 3 ends inside bid 8 and ask 2 (1, 4], both excluded.
    # Bid 10 (2 kWh) against ask 1 (1 kWh): the bid fills half.
    result = clear(make_book([10, 8], [1, 2, 5], [2, 1, 1, 3, 2]))
    np.testing.assert_array_equal(result.filled_kwh, [1, 0, 1, 0, 0])
    assert (result.buy_price, result.sell_price) == (8.0, 2.0)
    # Sellers long: bids 10 x 2, 9 x 3; asks 1 x 1 (id 2), 1 x 3 (id 3), 1.5 x 5. Axis: (0,1] 10|1,
    # (1,2] 10|1, (2,4] 9|1, (4,5] 9|1.5: Q* = 5, bid 9 and ask 1.5 excluded. Bid 10 (2 kWh)
    # against the asks at 1 (4 kWh): each ask sells half its quantity.
    result = clear(make_book([10, 9], [1, 1, 1.5], [2, 3, 1, 3, 5]))
    np.testing.assert_array_equal(result.filled_kwh, [2, 0, 0.5, 1.5, 0])
    assert (result.buy_price, result.sell_price) == (9.0, 1.5)
    assert trades(result) == [(0, 2, 0.5), (0, 3, 1.5)]
    assert result.operator_surplus == 15.0


def test_divisible_form_on_a_unit_book_always_reduces() -> None:
    # No p0 test in Huang et al.: the first McAfee example loses its 4th pair; buyers pay b_4 = 9,
    # sellers receive s_4 = 8.
    result = clear(make_book([17, 14, 13, 9, 6], [1, 4, 5, 8, 11]), form="divisible")
    np.testing.assert_array_equal(result.filled_kwh, [1, 1, 1, 0, 0, 1, 1, 1, 0, 0])
    assert (result.buy_price, result.sell_price, result.operator_surplus) == (9.0, 8.0, 3.0)


def test_ties_at_the_margin_exclude_one_order_by_id() -> None:
    # Bids 9 (id 0), 9 (id 1); asks 1, 2, 3 (1 kWh each). Q* = 2 ends in bid id 1 and ask 2:
    # bid id 0 wins and pays its own limit 9; ask 1 receives 2.
    result = clear(make_book([9, 9], [1, 2, 3], [1, 1, 1, 1, 1]), form="divisible")
    np.testing.assert_array_equal(result.filled_kwh, [1, 0, 1, 0, 0])
    assert (result.buy_price, result.sell_price) == (9.0, 2.0)


def test_crossing_at_a_shared_boundary_excludes_the_last_orders_inside_q_star() -> None:
    # bids 10 x 1, 9 x 1, 1 x 1; asks 1 x 1, 2 x 1, 11 x 1: Q* = 2 ends where bid 9 and ask 2
    # both end; those two are excluded (not bid 1 / ask 11 beyond Q*).
    result = clear(make_book([10, 9, 1], [1, 2, 11], [1, 1, 1, 1, 1, 1]), form="divisible")
    np.testing.assert_array_equal(result.filled_kwh, [1, 0, 0, 1, 0, 0])
    assert (result.buy_price, result.sell_price) == (9.0, 2.0)


def test_bid_equal_to_ask_at_the_margin_leaves_no_surplus() -> None:
    result = clear(make_book([10, 5], [1, 5], [2, 1, 2, 1]), form="divisible")
    assert (result.buy_price, result.sell_price) == (5.0, 5.0)
    assert result.clearing_price == 5.0
    assert result.operator_surplus == 0.0
    assert result.traded_kwh == 2.0


# --- form selection, zero quantities, self-trades, registry -----------------------------------


def test_auto_picks_the_form_from_the_quantities() -> None:
    assert clear(make_book([9, 8], [3, 4])).info["form_unit"] == 1.0
    assert clear(make_book([9, 8], [3, 4], [1, 1, 1, 2])).info["form_unit"] == 0.0
    # zero-quantity orders do not break a unit book, and are not the (k+1)-th order
    book = make_book([9, 8, 7], [3, 4, 5], [1, 1, 0, 1, 1, 0])
    result = clear(book)
    assert result.info["form_unit"] == 1.0
    np.testing.assert_array_equal(result.filled_kwh, [1, 0, 0, 1, 0, 0])
    assert np.isnan(result.price[[2, 5]]).all()


def test_unit_form_rejects_different_quantities() -> None:
    with pytest.raises(InputError, match=r"form 'unit' needs .* same quantity"):
        clear(make_book([9, 8], [3, 4], [1, 1, 1, 2]), form="unit")


@pytest.mark.parametrize("form", ["auto", "unit", "divisible"])
@pytest.mark.parametrize(
    ("bids", "asks"),
    [([], []), ([5.0], []), ([], [5.0]), ([1.0], [2.0]), ([1.0, 1.0], [2.0, 2.0])],
)
def test_books_that_trade_nothing(form: str, bids: list[float], asks: list[float]) -> None:
    book = make_book(bids, asks)
    result = clear(book, form=form)
    np.testing.assert_array_equal(result.filled_kwh, np.zeros(book.n_orders))
    assert np.isnan(result.price).all()
    assert result.trade_kwh.size == 0
    assert result.operator_surplus == 0.0


def test_self_match_is_washed() -> None:
    # Participant 0 holds the bid 17 and the ask 1 of the first example: both win at 8.5; its
    # own unit is removed from both sides; the others keep their trades.
    book = make_book(
        [17, 14, 13, 9, 6], [1, 4, 5, 8, 11], participant=[0, 1, 2, 3, 4, 0, 6, 7, 8, 9]
    )
    result = clear(book)
    np.testing.assert_array_equal(result.filled_kwh, [0, 1, 1, 1, 0, 0, 1, 1, 1, 0])
    assert result.info["self_matched_kwh"] == 1.0
    assert all(book.participant[b] != book.participant[s] for b, s, _ in trades(result))


def test_registered() -> None:
    mech = get_mechanism("mcafee", {"form": "divisible"})
    assert isinstance(mech, McAfeeTradeReduction)
    assert isinstance(mech.params, McAfeeParams)
    assert mech.params.form == "divisible"
    assert get_mechanism("mcafee").params == McAfeeParams(form="auto")
    with pytest.raises(InputError, match=r"'mcafee': parameter 'form'"):
        get_mechanism("mcafee", {"form": "multi"})


# --- properties on random books ----------------------------------------------------------------

#: Integer-like prices make ties (at and away from the margin) frequent.
prices = st.one_of(st.integers(0, 12).map(float), st.floats(0.0, 12.0))


@st.composite
def unit_books(draw: st.DrawFn) -> OrderBook:
    n_bids, n_asks = draw(st.integers(0, 7)), draw(st.integers(0, 7))
    n = n_bids + n_asks
    unit_kwh = draw(st.sampled_from([1.0, 0.5, 2.5]))
    ids = draw(st.permutations(range(n))) if draw(st.booleans()) else list(range(n))
    return OrderBook(
        id=np.array(ids, np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=np.array([Side.BUY] * n_bids + [Side.SELL] * n_asks, np.int8),
        quantity_kwh=np.full(n, unit_kwh),
        price=np.array(draw(st.lists(prices, min_size=n, max_size=n)), np.float64),
    )


@st.composite
def divisible_books(draw: st.DrawFn, shared_participants: bool = True) -> OrderBook:
    n = draw(st.integers(0, 14))
    side = draw(st.lists(st.sampled_from([Side.BUY, Side.SELL]), min_size=n, max_size=n))
    kwh = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]), st.floats(0.0, 5.0))
    if shared_participants and draw(st.booleans()):
        participant = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    else:
        participant = list(range(n))
    return OrderBook(
        id=np.array(draw(st.permutations(range(n))), np.int64),
        participant=np.array(participant, np.int64),
        side=np.array(side, np.int8),
        quantity_kwh=np.array(draw(st.lists(kwh, min_size=n, max_size=n)), np.float64),
        price=np.array(draw(st.lists(prices, min_size=n, max_size=n)), np.float64),
    )


def check_invariants(book: OrderBook, result: ClearingResult) -> None:
    n = book.n_orders
    fill, q = result.filled_kwh, book.quantity_kwh
    is_buy = book.side == Side.BUY
    filled = fill > 0.0
    assert fill.shape == result.price.shape == (n,)
    assert np.all(fill >= 0.0)
    assert np.all(fill <= q)
    # volume balance
    assert fill[is_buy].sum() == pytest.approx(fill[~is_buy].sum(), rel=0, abs=1e-9)
    # prices: buyers pay buy_price, sellers receive sell_price, NaN where nothing filled
    assert np.isnan(result.price[~filled]).all()
    assert np.all(result.price[filled & is_buy] == result.buy_price)
    assert np.all(result.price[filled & ~is_buy] == result.sell_price)
    # individual rationality
    assert np.all(result.price[filled & is_buy] <= book.price[filled & is_buy])
    assert np.all(result.price[filled & ~is_buy] >= book.price[filled & ~is_buy])
    # weak budget balance, and the surplus is what the money flows leave over
    assert result.operator_surplus >= 0.0
    paid = np.where(filled, fill * result.price, 0.0)
    assert paid[is_buy].sum() == pytest.approx(
        paid[~is_buy].sum() + result.operator_surplus, rel=0, abs=1e-9
    )
    # trades: buy vs sell, positive, at the buyer's price, summing to each order's fill
    assert np.all(book.side[result.trade_buy] == Side.BUY)
    assert np.all(book.side[result.trade_sell] == Side.SELL)
    assert np.all(result.trade_kwh > 0.0)
    assert np.all(result.trade_price == result.buy_price)
    per_order = np.bincount(result.trade_buy, result.trade_kwh, minlength=n) + np.bincount(
        result.trade_sell, result.trade_kwh, minlength=n
    )
    np.testing.assert_allclose(per_order, fill, rtol=0, atol=1e-9)
    assert np.all(book.participant[result.trade_buy] != book.participant[result.trade_sell])
    # never more than the efficient volume
    assert result.info["cleared_kwh"] <= result.info["efficient_kwh"] + 1e-9


@settings(max_examples=200, deadline=None)
@given(book=unit_books())
def test_unit_properties(book: OrderBook) -> None:
    result = clear_mcafee(book, "unit")
    check_invariants(book, result)
    # Q* equals the uniform auction's efficient volume; at most one unit pair is given up
    uniform = clear_uniform(book)
    assert result.info["efficient_kwh"] == pytest.approx(uniform.info["cleared_kwh"], abs=1e-12)
    if book.n_orders:
        unit_kwh = float(book.quantity_kwh[0])
        assert result.traded_kwh >= result.info["efficient_kwh"] - unit_kwh - 1e-12
    again = clear_mcafee(book)
    np.testing.assert_array_equal(again.filled_kwh, result.filled_kwh)
    np.testing.assert_array_equal(again.price, result.price)
    assert trades(again) == trades(result)


@settings(max_examples=200, deadline=None)
@given(book=divisible_books())
def test_divisible_properties(book: OrderBook) -> None:
    result = clear_mcafee(book, "divisible")
    check_invariants(book, result)
    uniform = clear_uniform(book)
    assert result.info["efficient_kwh"] == pytest.approx(uniform.info["cleared_kwh"], abs=1e-9)
    again = clear_mcafee(book, "divisible")
    np.testing.assert_array_equal(again.filled_kwh, result.filled_kwh)
    np.testing.assert_array_equal(again.price, result.price)
    assert trades(again) == trades(result)


# --- truthfulness -------------------------------------------------------------------------------


def utility(book: OrderBook, result: ClearingResult, i: int, value: float) -> float:
    """Order i's gain [currency] at true value `value`: (value − price) × fill for a buyer,
    (price − value) × fill for a seller, 0 if it does not trade."""
    fill = float(result.filled_kwh[i])
    if fill == 0.0:
        return 0.0
    margin = float(result.price[i]) - value
    return fill * (-margin if book.side[i] == Side.BUY else margin)


def misreports(book: OrderBook) -> list[float]:
    """Every distinct price of the book, the points just around and between them, and beyond."""
    levels = np.unique(book.price)
    between = 0.5 * (levels[1:] + levels[:-1])
    grid = np.concatenate((levels, levels - 1e-6, levels + 1e-6, between, [-1.0, 13.0, 100.0]))
    return [float(p) for p in np.unique(grid)]


def with_price(book: OrderBook, i: int, price: float) -> OrderBook:
    new_price = book.price.copy()
    new_price[i] = price
    return OrderBook(
        id=book.id,
        participant=book.participant,
        side=book.side,
        quantity_kwh=book.quantity_kwh,
        price=new_price,
    )


def assert_no_gain_from_misreport(book: OrderBook, i: int, form: McAfeeForm) -> None:
    value = float(book.price[i])
    truthful = utility(book, clear_mcafee(book, form), i, value)
    for report in misreports(book):
        lied = utility(book, clear_mcafee(with_price(book, i, report), form), i, value)
        assert lied <= truthful + 1e-12, (i, value, report, lied, truthful)


@settings(max_examples=200, deadline=None)
@given(book=unit_books(), data=st.data())
def test_unit_form_is_truthful(book: OrderBook, data: st.DataObject) -> None:
    if book.n_orders == 0:
        return
    i = data.draw(st.integers(0, book.n_orders - 1), label="trader")
    assert_no_gain_from_misreport(book, i, "unit")


@settings(max_examples=200, deadline=None)
@given(book=divisible_books(shared_participants=False), data=st.data())
def test_divisible_form_price_misreports_do_not_pay(book: OrderBook, data: st.DataObject) -> None:
    if book.n_orders == 0:
        return
    i = data.draw(st.integers(0, book.n_orders - 1), label="trader")
    assert_no_gain_from_misreport(book, i, "divisible")


def test_truthfulness_examples() -> None:
    # The p0 case of the first example: buyer 9 (k-th) bidding 6.5 would lower p0 but drop out;
    # seller 8 asking 5.5 likewise. Both earn 0.5 truthfully.
    book = make_book([17, 14, 13, 9, 6], [1, 4, 5, 8, 11])
    for i in (3, 8):
        assert utility(book, clear_mcafee(book), i, float(book.price[i])) == 0.5
        assert_no_gain_from_misreport(book, i, "unit")


def test_the_misreport_search_finds_a_manipulable_rule() -> None:
    # The same search against the uniform price (not truthful): a buyer worth 10 facing an ask at
    # 2 pays 6 truthfully, but bidding 2 makes the price 2.
    book = make_book([10], [2])
    value = 10.0
    truthful = utility(book, clear_uniform(book), 0, value)
    gains = [
        utility(book, clear_uniform(with_price(book, 0, report)), 0, value) - truthful
        for report in misreports(book)
    ]
    assert truthful == 4.0
    assert max(gains) == pytest.approx(4.0)


def test_divisible_form_is_not_truthful_in_quantity() -> None:
    # bids 9 x 3 and 8 x 3 kWh, asks 3 x 1 and 3 x 1 kWh. Truthfully Q* = 2 lies in the bid at 9,
    # which is excluded: nothing trades. Bidding for 1 kWh instead, the bid at 8 becomes marginal
    # and the bid at 9 wins 1 kWh at 8: a gain of 1 for a buyer who values 3 kWh at 9.
    truthful = clear(make_book([9, 8], [3, 3], [3, 3, 1, 1]), form="divisible")
    assert truthful.traded_kwh == 0.0
    shaded = clear(make_book([9, 8], [3, 3], [1, 3, 1, 1]), form="divisible")
    assert (shaded.filled_kwh[0], shaded.price[0]) == (1.0, 8.0)
