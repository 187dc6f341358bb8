"""Continuous double auction: a hand-computed slot with partial fills and price-time priority,
arrival sequences, self-trade prevention, and properties on random books — volume and money
balance, individual rationality, determinism, and efficiency bounds checked against independent
brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.errors import InputError
from peergrid.markets.base import ClearingResult, MarketContext, OrderBook, Side
from peergrid.markets.cda import (
    Arrival,
    CdaParams,
    ContinuousDoubleAuction,
    arrival_sequence,
    clear_cda,
)
from peergrid.markets.registry import get_mechanism
from peergrid.markets.uniform import clear_uniform

CTX = MarketContext(retail_price=0.30, feed_in_price=0.05)
B, S = Side.BUY, Side.SELL


def make_book(
    orders: list[tuple[Side, float, float]], participant: list[int] | None = None
) -> OrderBook:
    """Orders (side, kWh, price) in arrival order: ids and participants 0..n-1 unless given."""
    n = len(orders)
    return OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64)
        if participant is None
        else np.array(participant, np.int64),
        side=np.array([o[0] for o in orders], np.int8),
        quantity_kwh=np.array([o[1] for o in orders], np.float64),
        price=np.array([o[2] for o in orders], np.float64),
    )


def trades(result: ClearingResult) -> list[tuple[int, int, float, float]]:
    return [
        (int(b), int(s), float(k), float(p))
        for b, s, k, p in zip(
            result.trade_buy, result.trade_sell, result.trade_kwh, result.trade_price, strict=True
        )
    ]


# --- hand-computed ------------------------------------------------------------------------------


def test_hand_computed_slot() -> None:
    book = make_book(
        [
            (S, 2.0, 0.10),  # 0 rests
            (S, 1.0, 0.08),  # 1 rests, now the best ask
            (S, 1.0, 0.10),  # 2 rests behind 0 at the same price (time priority)
            (B, 3.0, 0.12),  # 3 takes 1 @ 0.08 from 1, then 2 @ 0.10 from 0 (earlier than 2)
            (B, 2.0, 0.09),  # 4 best ask is 2 @ 0.10 > 0.09: rests
            (S, 0.5, 0.05),  # 5 sells 0.5 to 4 at the resting bid's 0.09
            (B, 1.0, 0.11),  # 6 takes 1 @ 0.10 from 2
            (S, 3.0, 0.09),  # 7 sells 4's remaining 1.5 @ 0.09; its 1.5 left is cancelled
        ]
    )
    result = ContinuousDoubleAuction(CdaParams(arrival="id")).clear(book, CTX)
    assert trades(result) == [
        (3, 1, 1.0, 0.08),
        (3, 0, 2.0, 0.10),
        (4, 5, 0.5, 0.09),
        (6, 2, 1.0, 0.10),
        (4, 7, 1.5, 0.09),
    ]
    np.testing.assert_array_equal(result.filled_kwh, [2.0, 1.0, 1.0, 3.0, 2.0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(
        result.price,
        [0.10, 0.08, 0.10, (0.08 + 2 * 0.10) / 3, 0.09, 0.09, 0.10, 0.09],
        rtol=1e-15,
    )
    assert result.traded_kwh == 6.0
    assert result.operator_surplus == 0.0
    assert result.info == {"n_trades": 5.0, "cancelled_kwh": 1.5}
    assert np.isnan([result.clearing_price, result.buy_price, result.sell_price]).all()


def test_arrival_follows_ids_not_rows() -> None:
    # Same orders, rows reversed, ids kept: the same trades (as ids).
    book = make_book([(S, 1.0, 0.05), (B, 1.0, 0.10), (S, 1.0, 0.02), (B, 1.0, 0.03)])
    rev = np.arange(book.n_orders)[::-1]
    reversed_rows = OrderBook(
        id=book.id[rev],
        participant=book.participant[rev],
        side=book.side[rev],
        quantity_kwh=book.quantity_kwh[rev],
        price=book.price[rev],
    )
    a, b = clear_cda(book), clear_cda(reversed_rows)
    as_ids = [(int(book.id[i]), int(book.id[j]), k, p) for i, j, k, p in trades(a)]
    assert as_ids == [
        (int(reversed_rows.id[i]), int(reversed_rows.id[j]), k, p) for i, j, k, p in trades(b)
    ]
    assert as_ids == [(1, 0, 1.0, 0.05), (3, 2, 1.0, 0.02)]


def test_random_arrival_is_a_seeded_permutation_of_the_id_order() -> None:
    ids = np.array([40, 10, 30, 20], np.int64)
    np.testing.assert_array_equal(arrival_sequence(ids), [1, 3, 2, 0])
    seq = arrival_sequence(ids, "random", seed=7)
    np.testing.assert_array_equal(seq, arrival_sequence(ids, "random", seed=7))
    expected = np.array([1, 3, 2, 0])[np.random.default_rng(7).permutation(4)]
    np.testing.assert_array_equal(seq, expected)
    # arrival decides who trades: bid 0.10 meets whichever ask arrives first
    book = make_book([(B, 1.0, 0.10), (S, 1.0, 0.02), (S, 1.0, 0.08)])
    prices = {
        clear_cda(book, "random", seed).trade_price[0]
        for seed in range(20)
        if clear_cda(book, "random", seed).trade_kwh.size
    }
    assert prices == {0.02, 0.08, 0.10}


def test_self_trades_are_skipped_and_keep_their_priority() -> None:
    book = make_book(
        [
            (S, 1.0, 0.05),  # 0, participant 0
            (S, 1.0, 0.07),  # 1, participant 1
            (B, 1.5, 0.10),  # 2, participant 0: skips its own ask, takes 1 @ 0.07, rests 0.5
            (B, 1.0, 0.06),  # 3, participant 2: the skipped ask still trades, @ 0.05
        ],
        participant=[0, 1, 0, 2],
    )
    result = clear_cda(book)
    assert trades(result) == [(2, 1, 1.0, 0.07), (3, 0, 1.0, 0.05)]
    np.testing.assert_array_equal(result.filled_kwh, [1.0, 1.0, 1.0, 1.0])


def test_zero_quantity_orders_never_trade() -> None:
    result = clear_cda(make_book([(S, 0.0, 0.01), (B, 1.0, 0.10), (S, 1.0, 0.05)]))
    assert trades(result) == [(1, 2, 1.0, 0.10)]
    assert np.isnan(result.price[0])


def test_volume_can_exceed_the_competitive_volume() -> None:
    # The CDA is not efficient, and it can trade more than the uniform auction's Q*: ask 5, bid 6,
    # ask 1, bid 2 trade two units (welfare 1 + 1), while Q* is one unit (bid 6 with ask 1,
    # welfare 5).
    book = make_book([(S, 1.0, 5.0), (B, 1.0, 6.0), (S, 1.0, 1.0), (B, 1.0, 2.0)])
    result = clear_cda(book)
    assert result.traded_kwh == 2.0
    assert clear_uniform(book).traded_kwh == 1.0
    assert welfare(book, result) == 2.0 < efficient_welfare(book) == 5.0


def test_registered() -> None:
    mech = get_mechanism("cda", {"arrival": "random", "seed": 3})
    assert isinstance(mech, ContinuousDoubleAuction)
    assert mech.params == CdaParams(arrival="random", seed=3)
    assert get_mechanism("cda").params == CdaParams(arrival="random", seed=0)
    with pytest.raises(InputError, match=r"'cda': parameter 'arrival'"):
        get_mechanism("cda", {"arrival": "time"})
    with pytest.raises(InputError, match=r"'cda': parameter 'seed'"):
        get_mechanism("cda", {"seed": -1})


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_books(n: int) -> None:
    book = make_book([(B, 1.0, 0.1)] * n)
    result = clear_cda(book)
    assert result.filled_kwh.shape == (n,)
    assert result.trade_kwh.size == 0


# --- independent references --------------------------------------------------------------------


def welfare(book: OrderBook, result: ClearingResult) -> float:
    """Σ (bid − ask) × kWh over the trades [currency]."""
    gap = book.price[result.trade_buy] - book.price[result.trade_sell]
    return float((gap * result.trade_kwh).sum())


def efficient_welfare(book: OrderBook) -> float:
    """The largest Σ (bid − ask) × kWh of any allocation: walk bids (descending) against asks
    (ascending) while the bid is at least the ask."""
    is_buy = book.side == Side.BUY
    bids = sorted(zip(book.price[is_buy], book.quantity_kwh[is_buy], strict=True), reverse=True)
    asks = sorted(zip(book.price[~is_buy], book.quantity_kwh[~is_buy], strict=True))
    total, i, j = 0.0, 0, 0
    left_b = bids[0][1] if bids else 0.0
    left_a = asks[0][1] if asks else 0.0
    while i < len(bids) and j < len(asks) and bids[i][0] >= asks[j][0]:
        piece = min(left_b, left_a)
        total += piece * (bids[i][0] - asks[j][0])
        left_b -= piece
        left_a -= piece
        if left_b <= 0.0:
            i += 1
            left_b = bids[i][1] if i < len(bids) else 0.0
        if left_a <= 0.0:
            j += 1
            left_a = asks[j][1] if j < len(asks) else 0.0
    return total


def max_crossing_kwh(book: OrderBook) -> float:
    """The largest volume of any set of trades with bid ≥ ask: each trade has its bid at or above
    some threshold p or its ask below p, so it is at most Σ bids ≥ p + Σ asks < p for every p
    (and this cut bound is attained: the bids' sets of acceptable asks are nested)."""
    is_buy = book.side == Side.BUY
    bid_p, bid_q = book.price[is_buy], book.quantity_kwh[is_buy]
    ask_p, ask_q = book.price[~is_buy], book.quantity_kwh[~is_buy]
    cuts = [float(bid_q[bid_p >= p].sum() + ask_q[ask_p < p].sum()) for p in book.price]
    return min([float(bid_q.sum()), float(ask_q.sum()), *cuts])


# --- properties on random books ----------------------------------------------------------------


@st.composite
def books(draw: st.DrawFn) -> OrderBook:
    n = draw(st.integers(0, 16))
    side = draw(st.lists(st.sampled_from([Side.BUY, Side.SELL]), min_size=n, max_size=n))
    kwh = st.one_of(st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.0, 2.5]), st.floats(0.0, 5.0))
    price = st.one_of(st.sampled_from([0.05, 0.1, 0.15, 0.2]), st.floats(0.0, 0.4))
    if draw(st.booleans()):
        participant = list(range(n))
    else:
        participant = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return OrderBook(
        id=np.array(draw(st.permutations(range(n))), np.int64),
        participant=np.array(participant, np.int64),
        side=np.array(side, np.int8),
        quantity_kwh=np.array(draw(st.lists(kwh, min_size=n, max_size=n)), np.float64),
        price=np.array(draw(st.lists(price, min_size=n, max_size=n)), np.float64),
    )


@settings(max_examples=200, deadline=None)
@given(book=books(), random_arrival=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_cda_properties(book: OrderBook, random_arrival: bool, seed: int) -> None:
    arrival: Arrival = "random" if random_arrival else "id"
    result = clear_cda(book, arrival, seed)
    n = book.n_orders
    fill, q = result.filled_kwh, book.quantity_kwh
    is_buy = book.side == Side.BUY
    filled = fill > 0.0
    assert fill.shape == result.price.shape == (n,)
    assert np.all(fill >= 0.0)
    assert np.all(fill <= q)
    # volume and money balance; budget balanced
    assert fill[is_buy].sum() == pytest.approx(fill[~is_buy].sum(), rel=0, abs=1e-9)
    paid = np.where(filled, fill * result.price, 0.0)
    assert paid[is_buy].sum() == pytest.approx(paid[~is_buy].sum(), rel=0, abs=1e-9)
    assert result.operator_surplus == 0.0
    # individual rationality, per trade and per order
    buy, sell = result.trade_buy, result.trade_sell
    assert np.all(book.side[buy] == Side.BUY)
    assert np.all(book.side[sell] == Side.SELL)
    assert np.all(result.trade_price <= book.price[buy])
    assert np.all(result.trade_price >= book.price[sell])
    assert np.isnan(result.price[~filled]).all()
    assert np.all(result.price[filled & is_buy] <= book.price[filled & is_buy])
    assert np.all(result.price[filled & ~is_buy] >= book.price[filled & ~is_buy])
    # each trade at the price of the order that arrived (and rested) first
    rank = np.empty(n, np.int64)
    rank[arrival_sequence(book.id, arrival, seed)] = np.arange(n)
    resting = np.where(rank[buy] < rank[sell], buy, sell)
    np.testing.assert_array_equal(result.trade_price, book.price[resting])
    # trades add up to the fills; nobody trades with itself
    assert np.all(result.trade_kwh > 0.0)
    per_order = np.bincount(buy, result.trade_kwh, minlength=n) + np.bincount(
        sell, result.trade_kwh, minlength=n
    )
    np.testing.assert_allclose(per_order, fill, rtol=0, atol=1e-9)
    assert np.all(book.participant[buy] != book.participant[sell])
    # at the end of the slot no two remainders of different participants cross
    left = (q - fill > 1e-9) & (q > 0.0)
    crossing = (
        is_buy[:, None]
        & ~is_buy[None, :]
        & left[:, None]
        & left[None, :]
        & (book.price[:, None] >= book.price[None, :])
    )
    assert np.all(
        book.participant[crossing.nonzero()[0]] == book.participant[crossing.nonzero()[1]]
    )
    # efficiency bounds: welfare at most the efficient welfare; volume at most the largest volume
    # of any crossing trades (it may exceed Q*; see test_volume_can_exceed_the_competitive_volume)
    assert welfare(book, result) <= efficient_welfare(book) + 1e-9
    assert result.traded_kwh <= max_crossing_kwh(book) + 1e-9
    assert result.info["cancelled_kwh"] == pytest.approx(float((q - fill).sum()), abs=1e-9)
    # deterministic for a fixed seed
    again = clear_cda(book, arrival, seed)
    np.testing.assert_array_equal(again.filled_kwh, result.filled_kwh)
    np.testing.assert_array_equal(again.price, result.price)
    assert trades(again) == trades(result)


def test_large_book_invariants() -> None:
    rng = np.random.default_rng(5)
    n = 10_000
    book = OrderBook(
        id=rng.permutation(n).astype(np.int64),
        participant=rng.integers(0, 3_000, n),
        side=rng.integers(0, 2, n).astype(np.int8),
        quantity_kwh=np.round(rng.uniform(0.0, 3.0, n), 3),
        price=np.round(rng.uniform(0.05, 0.35, n), 3),
    )
    result = clear_cda(book, "random", 1)
    is_buy = book.side == Side.BUY
    fill = result.filled_kwh
    assert fill[is_buy].sum() == pytest.approx(fill[~is_buy].sum(), rel=1e-12)
    assert np.all(fill <= book.quantity_kwh)
    assert welfare(book, result) <= efficient_welfare(book) + 1e-9
    assert np.all(book.participant[result.trade_buy] != book.participant[result.trade_sell])
