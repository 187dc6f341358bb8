"""McAfee trade-reduction double auction (truthful) for one slot, in a unit and a divisible form.

Unit form — R. P. McAfee, "A dominant strategy double auction", J. Econ. Theory 56, 1992. Every
order is one unit of the same size u [kWh]. Bids b_(1) ≥ b_(2) ≥ … and asks s_(1) ≤ s_(2) ≤ … in
merit order; k = number of efficient pairs (b_(i) ≥ s_(i) for i ≤ k). With
p0 = (b_(k+1) + s_(k+1))/2:

- if both (k+1)-th orders exist and s_(k) ≤ p0 ≤ b_(k), all k pairs trade at p0;
- otherwise (a missing (k+1)-th order fails the test) the k-th pair is excluded: k − 1 pairs trade,
  buyers pay b_(k), sellers receive s_(k) and the operator keeps (b_(k) − s_(k))·u per pair.

Published examples (tests): bids {17,14,13,9,6}, asks {1,4,5,8,11} → 4 trades at 8.5; bids {9,4},
asks {8,3} → 1 trade at 6; bids {9,8}, asks {3,4} → 1 trade, buyer pays 8, seller receives 4.

Divisible form — P. Huang, A. Scheller-Wolf, K. Sycara, "Design of a multi-unit double auction
e-market", Computational Intelligence 18(4), 2002. Orders have any quantity. Bids and asks are laid
out in merit order on one volume axis; the efficient volume Q* ends in the interval of the marginal
bid K and of the marginal ask L (the orders covering the last kWh of Q*). Both are excluded: the
bids before K win and pay b_K, the asks before L win and receive s_L. The side with more winning
volume is rationed to the other. There is no p0 test: on a unit book this form always reduces.

Properties, for traders with one order each:
- individually rational: every winning bid is at least b_K, every winning ask at most s_L;
- weakly budget balanced: b_K ≥ s_L, and `operator_surplus` = (b_K − s_L) × traded kWh ≥ 0;
- unit form: truthful in dominant strategies (McAfee's theorem); the tests try a grid of price
  misreports for a random trader on random books and find no gain;
- divisible form, quantities fixed: no gain from a price misreport was found by the same search.
  Why: a winner cannot move b_K or s_L without becoming the marginal order or losing (moving
  behind the marginal order only shortens the volume axis in front of it), and the pro-rata share
  does not depend on prices;
- divisible form, quantity misreports DO pay: with bids 9 x 3 and 8 x 3 kWh and asks 3 x 1 and
  3 x 1 kWh, the bid at 9 is marginal and nothing trades; bidding for 1 kWh instead, it wins 1 kWh
  at 8 (a test pins this example).

Conventions:
- `form`: "unit" (McAfee), "divisible" (Huang et al.) or "auto", which is "unit" when every order
  with a positive quantity has exactly the same quantity (e.g. all 1.0 kWh) and "divisible"
  otherwise. "unit" on a book with different quantities is an `InputError`.
- Zero-quantity orders never fill, never set a price and do not count as the (k+1)-th order.
- Rationing (divisible form, peergrid's choice): the side whose winners offer more volume is
  rationed pro rata to quantity, q_i × (short side volume / long side volume); the short side
  fills fully. Pro rata ignores price and arrival, so no winner buys a larger share by bidding
  higher.
- Ties: prices tie-break by order `id` in the merit order (as in `merit_order.merit_order`), and
  exactly one order per side is excluded — the one covering the last kWh of Q* (in the unit form
  the k-th bid and ask). Winners tied with the excluded order pay (or receive) their own limit and
  gain nothing; tied orders behind it do not trade. When Q* ends exactly where the marginal bid and
  ask both end, those two are excluded (never the first orders beyond Q*). When b_K = s_L buyers
  pay what sellers receive and the operator keeps nothing.
- Rounding: volume intervals on the merit-order axis of at most `tol_kwh` = 1e-12 × (total bid +
  ask volume) are rounding residue and never make an order marginal (as in `uniform`).
- Prices: buyers pay `buy_price` and sellers receive `sell_price` on every filled kWh;
  `clearing_price` is that single price where the two are equal (unit form, p0 case), else NaN.
- Bilateral trades: the winners' fills are paired in merit order on one volume axis (as in
  `uniform`). `trade_price` is what the buyer pays (`buy_price`); the seller of every pair receives
  `sell_price`, and the difference times `trade_kwh`, summed over trades, is `operator_surplus`.
- Self-trades: a participant whose buy and sell orders both win has min(Σ its buy fills, Σ its sell
  fills) removed from both sides pro rata, as in `uniform` (`info["self_matched_kwh"]`); prices and
  everyone else's fills are those of the full book.

`info`: `form_unit` (1.0 unit, 0.0 divisible), `reduced` (1.0 when the marginal pair was excluded),
`efficient_kwh` (Q*), `cleared_kwh` (volume the winners trade before self-match removal),
`self_matched_kwh`, `marginal_bid_price`, `marginal_ask_price` (b_(k) and s_(k), or b_K and s_L).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from peergrid.errors import InputError
from peergrid.markets.base import (
    BUY_CODE,
    ClearingResult,
    Family,
    FloatArray,
    IntArray,
    MarketContext,
    MechanismParams,
    OrderBook,
)
from peergrid.markets.merit_order import REL_TOL, merit_order, pair_fills, wash_self_matches

McAfeeForm = Literal["auto", "unit", "divisible"]


class McAfeeParams(MechanismParams):
    """Parameters of the McAfee trade-reduction auction."""

    form: McAfeeForm = Field(
        default="auto",
        description=(
            "'unit': McAfee (1992) for orders of one common quantity; 'divisible': Huang et al. "
            "(2002) for any quantities; 'auto': 'unit' when every positive quantity is equal."
        ),
    )


def _initial_info(form_unit: bool) -> dict[str, float]:
    nan = float("nan")
    return {
        "form_unit": float(form_unit),
        "reduced": 0.0,
        "efficient_kwh": 0.0,
        "cleared_kwh": 0.0,
        "self_matched_kwh": 0.0,
        "marginal_bid_price": nan,
        "marginal_ask_price": nan,
    }


def _nothing(n_orders: int, info: dict[str, float]) -> ClearingResult:
    return ClearingResult(filled_kwh=np.zeros(n_orders), price=np.full(n_orders, np.nan), info=info)


def _settle(
    book: OrderBook,
    bids: IntArray,
    bid_fill: FloatArray,
    asks: IntArray,
    ask_fill: FloatArray,
    *,
    buy_price: float,
    sell_price: float,
    tol_kwh: float,
    info: dict[str, float],
) -> ClearingResult:
    """The result once the winners (positions in merit order, at least one per side) and their
    fills are known: self-match removal, per-order prices, pairing and the operator's surplus."""
    n = book.n_orders
    winners = np.concatenate((bids, asks))
    is_bid = np.arange(winners.size) < bids.size
    fill, self_matched_kwh = wash_self_matches(
        book.participant[winners], np.concatenate((bid_fill, ask_fill)), is_bid
    )
    bid_fill, ask_fill = fill[: bids.size], fill[bids.size :]
    filled_kwh = np.zeros(n)
    filled_kwh[winners] = fill
    price = np.where(is_bid, buy_price, sell_price)
    prices = np.full(n, np.nan)
    prices[winners] = np.where(fill > 0.0, price, np.nan)
    trade_buy, trade_sell, trade_kwh = pair_fills(bids, bid_fill, asks, ask_fill, tol_kwh)
    # (b − s) × volume rather than Σ payments − Σ receipts: never negative through rounding.
    operator_surplus = (buy_price - sell_price) * float(ask_fill.sum())
    return ClearingResult(
        filled_kwh=filled_kwh,
        price=prices,
        clearing_price=buy_price if buy_price == sell_price else float("nan"),
        buy_price=buy_price,
        sell_price=sell_price,
        operator_surplus=operator_surplus,
        trade_buy=trade_buy,
        trade_sell=trade_sell,
        trade_kwh=trade_kwh,
        trade_price=np.full(trade_kwh.size, buy_price),
        info=info | {"self_matched_kwh": self_matched_kwh},
    )


def _clear_unit(
    book: OrderBook, bids: IntArray, asks: IntArray, unit_kwh: float, tol_kwh: float
) -> ClearingResult:
    """McAfee (1992) on unit orders; `bids` and `asks` are positions in merit order."""
    bid_price, ask_price = book.price[bids], book.price[asks]
    m = min(bids.size, asks.size)
    # b_(i) − s_(i) falls along the merit order, so the efficient pairs are a prefix.
    k = int(np.count_nonzero(bid_price[:m] >= ask_price[:m]))
    info = _initial_info(form_unit=True)
    if k == 0:
        return _nothing(book.n_orders, info)
    b_k, s_k = float(bid_price[k - 1]), float(ask_price[k - 1])
    info |= {"efficient_kwh": k * unit_kwh, "marginal_bid_price": b_k, "marginal_ask_price": s_k}
    if k < bids.size and k < asks.size:
        p0 = 0.5 * (float(bid_price[k]) + float(ask_price[k]))
        if s_k <= p0 <= b_k:
            info["cleared_kwh"] = k * unit_kwh
            fill = np.full(k, unit_kwh)
            return _settle(
                book,
                bids[:k],
                fill,
                asks[:k],
                fill.copy(),
                buy_price=p0,
                sell_price=p0,
                tol_kwh=tol_kwh,
                info=info,
            )
    info["reduced"] = 1.0
    if k == 1:
        return _nothing(book.n_orders, info)
    info["cleared_kwh"] = (k - 1) * unit_kwh
    fill = np.full(k - 1, unit_kwh)
    return _settle(
        book,
        bids[: k - 1],
        fill,
        asks[: k - 1],
        fill.copy(),
        buy_price=b_k,
        sell_price=s_k,
        tol_kwh=tol_kwh,
        info=info,
    )


def _margin(
    bid_price: FloatArray,
    bid_cum: FloatArray,
    ask_price: FloatArray,
    ask_cum: FloatArray,
    tol_kwh: float,
) -> tuple[int, int, float] | None:
    """The marginal bid and ask (indices in merit order) and Q* [kWh], or None if nothing crosses.

    The two sides' cumulative volumes cut the volume axis into intervals, each served by one bid
    and one ask; the crossing intervals (bid ≥ ask) form a prefix, because bid prices fall and ask
    prices rise along the axis. Q* is the end of the last crossing interval longer than `tol_kwh`,
    and its bid and ask are the marginal orders. Every cumulative volume is > 0 (zero-quantity
    orders were dropped).
    """
    end_kwh = min(float(bid_cum[-1]), float(ask_cum[-1]))
    points = np.concatenate((bid_cum, ask_cum))
    points.sort()
    points = points[: int(points.searchsorted(end_kwh, side="right"))]
    start = np.concatenate(([0.0], points[:-1]))
    length = points - start
    real = (length > tol_kwh).nonzero()[0]
    # The middle of an interval lies strictly inside it, so the first order whose cumulative
    # volume reaches it is the one covering the interval.
    middle = start[real] + 0.5 * length[real]
    bid_at = bid_cum.searchsorted(middle)
    ask_at = ask_cum.searchsorted(middle)
    n_crossing = int(np.count_nonzero(bid_price[bid_at] >= ask_price[ask_at]))
    if n_crossing == 0:
        return None
    last = n_crossing - 1
    return int(bid_at[last]), int(ask_at[last]), float(points[real[last]])


def _clear_divisible(
    book: OrderBook, bids: IntArray, asks: IntArray, tol_kwh: float
) -> ClearingResult:
    """Huang, Scheller-Wolf & Sycara (2002); `bids` and `asks` are positions in merit order."""
    bid_price, ask_price = book.price[bids], book.price[asks]
    bid_q, ask_q = book.quantity_kwh[bids], book.quantity_kwh[asks]
    bid_cum, ask_cum = np.add.accumulate(bid_q), np.add.accumulate(ask_q)
    info = _initial_info(form_unit=False)
    margin = _margin(bid_price, bid_cum, ask_price, ask_cum, tol_kwh)
    if margin is None:
        return _nothing(book.n_orders, info)
    k_bid, k_ask, efficient_kwh = margin
    b_k, s_k = float(bid_price[k_bid]), float(ask_price[k_ask])
    info |= {
        "reduced": 1.0,
        "efficient_kwh": efficient_kwh,
        "marginal_bid_price": b_k,
        "marginal_ask_price": s_k,
    }
    if k_bid == 0 or k_ask == 0:
        return _nothing(book.n_orders, info)
    demand_kwh, supply_kwh = float(bid_cum[k_bid - 1]), float(ask_cum[k_ask - 1])
    cleared_kwh = min(demand_kwh, supply_kwh)
    info["cleared_kwh"] = cleared_kwh
    bid_fill = bid_q[:k_bid] * min(1.0, supply_kwh / demand_kwh)
    ask_fill = ask_q[:k_ask] * min(1.0, demand_kwh / supply_kwh)
    return _settle(
        book,
        bids[:k_bid],
        bid_fill,
        asks[:k_ask],
        ask_fill,
        buy_price=b_k,
        sell_price=s_k,
        tol_kwh=tol_kwh,
        info=info,
    )


def clear_mcafee(book: OrderBook, form: McAfeeForm = "auto") -> ClearingResult:
    """Clear one slot's book by McAfee trade reduction; see the module docstring.

    Args:
        book: a validated order book (quantities >= 0, finite prices, unique ids, sides 0/1).
        form: "unit" (McAfee 1992), "divisible" (Huang et al. 2002) or "auto".

    Returns:
        Fills, per-order prices (`buy_price` for filled bids, `sell_price` for filled asks, NaN
        elsewhere), bilateral trades priced at what the buyer pays, the operator's surplus
        [currency] and `info` (see the module docstring).

    Raises:
        InputError: `form` is "unit" but the positive quantities differ.
    """
    quantity_kwh = book.quantity_kwh
    order = merit_order(book.side, book.price, book.id)
    order = order[quantity_kwh[order] > 0.0]
    n_bids = int(np.count_nonzero(book.side[order] == BUY_CODE))  # bids come first
    positive_kwh = quantity_kwh[order]
    is_unit = positive_kwh.size == 0 or bool((positive_kwh == positive_kwh[0]).all())
    if form == "unit" and not is_unit:
        raise InputError(
            "market mechanism 'mcafee': form 'unit' needs every order with a positive "
            f"quantity_kwh to have the same quantity; got {np.unique(positive_kwh).size} "
            "different quantities (use form 'divisible' or 'auto')"
        )
    unit_form = is_unit and form != "divisible"
    if n_bids in (0, order.size):
        return _nothing(book.n_orders, _initial_info(unit_form))
    bids, asks = order[:n_bids], order[n_bids:]
    tol_kwh = REL_TOL * float(positive_kwh.sum())
    if unit_form:
        return _clear_unit(book, bids, asks, float(positive_kwh[0]), tol_kwh)
    return _clear_divisible(book, bids, asks, tol_kwh)


class McAfeeTradeReduction:
    """McAfee trade-reduction double auction, unit and divisible forms; see the module docstring."""

    name: ClassVar[str] = "mcafee"
    family: ClassVar[Family] = "community"
    description: ClassVar[str] = (
        "McAfee trade reduction (truthful): the marginal pair is excluded and sets the prices; "
        "the operator keeps the bid-ask difference (unit orders: McAfee 1992, divisible: "
        "Huang et al. 2002)."
    )
    Params: ClassVar[type[MechanismParams]] = McAfeeParams
    uses_net_positions: ClassVar[bool] = False

    params: MechanismParams

    def __init__(self, params: McAfeeParams | None = None) -> None:
        self.params = params if params is not None else McAfeeParams()

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Clear one slot's book; the retail context is not used (limit prices decide)."""
        params = self.params
        if not isinstance(params, McAfeeParams):
            raise TypeError(f"mcafee needs McAfeeParams, got {type(params).__name__}")
        return clear_mcafee(book, params.form)
