"""k-double auction for one slot: one price p = L + k·(U − L) on the competitive interval [L, U].

Matching (volume, fills, pairing, ties, self-match washing, rounding tolerance) is the uniform
auction's, reused as is (`uniform.clear_uniform`); only the price rule differs. k = 0 favours the
buyers, k = 1 the sellers, k = ½ is the average rule (L + U)/2. (Rustichini, Satterthwaite &
Williams, Econometrica 62(5), 1994, for unit orders.)

The competitive interval for divisible orders
---------------------------------------------
Let D⁺(p) = Σ q over bids with limit >= p and D⁻(p) = Σ q over bids with limit > p (the
demand curve's two sides at p), S⁺(p) = Σ q over asks with limit <= p, S⁻(p) over asks with
limit < p; orders of zero quantity count for nothing. A price p supports the efficient allocation
of volume Q* when every trader is content with its fill at p: a bid above p wants all its
quantity, one below p none, one at p anything in between; likewise for asks. In terms of the
curves, D⁻(p) <= Q* <= D⁺(p) and S⁻(p) <= Q* <= S⁺(p): the competitive (Walrasian) prices of the
book, a closed interval [L, U] whose ends are limit prices. In terms of orders, with the
allocation in merit order (those strictly better than the margin fill fully, the tie group at the
margin shares pro rata):

- every filled bid needs p <= its limit, so p <= b_m, the marginal (lowest) accepted bid;
- every filled ask needs p >= its limit, so p >= a_m, the marginal (highest) accepted ask;
- every bid left with unfilled quantity needs p >= its limit, so p >= b_r, the highest such bid
  (the "first rejected bid"): b_r = b_m when the marginal tie group is only partly filled, else
  the best bid below b_m, and −∞ when every bid fills;
- every ask left with unfilled quantity needs p <= its limit, so p <= a_r (the "first rejected
  ask"): a_r = a_m when the marginal ask group is only partly filled, else the best ask above
  a_m, and +∞ when every ask fills.

Hence L = max(a_m, b_r) and U = min(b_m, a_r). L <= U because Q* is efficient: a rejected bid above
a rejected ask would leave surplus on the table. Both ends are finite whenever anything trades
(a_m <= L, U <= b_m). With divisible orders a partly filled marginal order pins the price to its
limit: a partial marginal bid gives L = U = b_m, a partial marginal ask L = U = a_m. The uniform
auction's default midpoint (a_m + b_m)/2 need not lie in [L, U]: with bids 10 and 7 against asks
2 and 9 (1 kWh each) one unit trades, [L, U] = [7, 9], but the midpoint 6 would leave the
rejected buyer at 7 wanting to buy.

Conventions:
- p = (1 − k)·L + k·U, clipped to [L, U]; at k = ½ this is bit for bit (L + U)/2.
- "Partly filled" means a tie group with more than `merit_order.REL_TOL` × the book's volume left
  unfilled, and orders smaller than that bound nothing (the uniform auction's rounding rule).
- Prices are those of the book as submitted, before self-matched volume is washed out (as in
  `uniform`); if washing removes everything the price is still reported.
- Nothing trades: every price NaN, also `interval_low_price` / `interval_high_price` in `info`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from pydantic import Field

from peergrid.markets.base import (
    BUY_CODE,
    ClearingResult,
    Family,
    MarketContext,
    MechanismParams,
    OrderBook,
)
from peergrid.markets.merit_order import REL_TOL
from peergrid.markets.uniform import clear_uniform


def competitive_interval(
    book: OrderBook, cleared_kwh: float, bid_marginal: float, ask_marginal: float
) -> tuple[float, float]:
    """[L, U] of the module docstring for a book whose efficient volume and marginal accepted
    prices are known (from `clear_uniform`'s `info`) [currency/kWh]."""
    q, price = book.quantity_kwh, book.price
    is_bid = book.side == BUY_CODE
    tol_kwh = REL_TOL * float(q.sum())
    live = q > tol_kwh  # smaller orders are rounding residue to the matching, too
    bids = is_bid & live
    asks = ~is_bid & live

    if float(q[bids & (price >= bid_marginal)].sum()) > cleared_kwh + tol_kwh:
        bid_rejected = bid_marginal
    else:
        below = price[bids & (price < bid_marginal)]
        bid_rejected = float(below.max()) if below.size else -np.inf
    if float(q[asks & (price <= ask_marginal)].sum()) > cleared_kwh + tol_kwh:
        ask_rejected = ask_marginal
    else:
        above = price[asks & (price > ask_marginal)]
        ask_rejected = float(above.min()) if above.size else np.inf
    low = max(ask_marginal, bid_rejected)
    high = min(bid_marginal, ask_rejected)
    if low > high:
        # Not reachable in exact arithmetic (Q* is efficient); a guard against rounding residue.
        # Both ends lie in [a_m, b_m], so their midpoint keeps every fill individually rational.
        low = high = 0.5 * (low + high)
    return low, high


def k_price(low: float, high: float, k: float) -> float:
    """p = (1 − k)·L + k·U, clipped to [L, U] so rounding never leaves the interval."""
    return min(max((1.0 - k) * low + k * high, low), high)


def clear_k_double(book: OrderBook, k: float = 0.5) -> ClearingResult:
    """Clear one slot's book as a k-double auction; see the module docstring.

    Args:
        book: a validated order book (quantities >= 0, finite prices, unique ids, sides 0/1).
        k: position of the price in the competitive interval [L, U], in [0, 1].

    Returns:
        The uniform matching's fills and trades, all at p; `info` adds `interval_low_price` (L)
        and `interval_high_price` (U) [currency/kWh] and `k`.
    """
    matched = clear_uniform(book)
    info = dict(matched.info)
    if "marginal_bid_price" not in info:
        info |= {"interval_low_price": np.nan, "interval_high_price": np.nan, "k": k}
        return dataclasses.replace(matched, info=info)
    low, high = competitive_interval(
        book, info["cleared_kwh"], info["marginal_bid_price"], info["marginal_ask_price"]
    )
    p = k_price(low, high, k)
    info |= {"interval_low_price": low, "interval_high_price": high, "k": k}
    return dataclasses.replace(
        matched,
        price=np.where(matched.filled_kwh > 0.0, p, np.nan),
        clearing_price=p,
        trade_price=np.full(matched.trade_kwh.size, p),
        info=info,
    )


class KDoubleParams(MechanismParams):
    """Parameters of the k-double auction."""

    k: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Position of the price in the competitive interval [L, U]: p = L + k(U − L) "
            "[-]; 0 favours buyers, 1 sellers, 0.5 is the average rule."
        ),
    )


class KDoubleAuction:
    """k-double auction over limit orders; see the module docstring."""

    name: ClassVar[str] = "k-double"
    family: ClassVar[Family] = "community"
    description: ClassVar[str] = (
        "k-double auction: merit-order matching of the efficient volume at one price "
        "p = L + k(U − L) in the competitive interval [L, U] of market-clearing prices."
    )
    Params: ClassVar[type[MechanismParams]] = KDoubleParams
    uses_net_positions: ClassVar[bool] = False

    params: MechanismParams

    def __init__(self, params: KDoubleParams | None = None) -> None:
        self.params = params if params is not None else KDoubleParams()

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Clear one slot's book; the retail context is not used (limit prices decide)."""
        params = self.params
        if not isinstance(params, KDoubleParams):
            raise TypeError(f"k-double needs KDoubleParams, got {type(params).__name__}")
        return clear_k_double(book, params.k)
