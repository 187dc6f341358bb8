"""Pay-as-bid double auction for one slot (Grid Singularity's two-sided convention).

Matching is the uniform auction's, reused as is (`uniform.clear_uniform`): bids and asks in merit
order, the efficient volume Q*, pro-rata sharing at the marginal price, ties elsewhere by `id`,
self-matched volume washed out, and the bilateral pairing along the merit-order volume axis. Only
the prices differ: every matched pair trades at the **buyer's bid**.

- A buy order's price is its bid. A sell order's price is the volume-weighted mean of the bids of
  the buyers it was paired with.
- Each order's `filled_kwh` is the sum of its trades, clipped to its quantity (the pairing folds
  rounding residue of up to `merit_order.REL_TOL` x the book's volume into a neighbouring trade, so
  the sum can pass the quantity by that much). Energy and money add up trade by trade: sellers
  receive what buyers pay (`operator_surplus` = 0), up to that residue times a price.
- Individually rational: every accepted bid is at least the marginal bid, which is at least the
  marginal ask, which is at least every accepted ask, so no seller receives less than its ask
  (the seller's price is clipped to the range of its trades' prices, so the weighted mean's
  rounding cannot break this by an ulp).
- Pay-as-bid hands the whole surplus of each pair to the seller; it is not truthful (buyers gain
  by shading their bids), which is why the uniform and k-double rules exist.
- There is no single market price: `clearing_price` is NaN. `info` is the uniform matching's
  (`cleared_kwh`, `self_matched_kwh`, `marginal_bid_price`, `marginal_ask_price`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from peergrid.markets.base import (
    ClearingResult,
    Family,
    FloatArray,
    MarketContext,
    MechanismParams,
    OrderBook,
)
from peergrid.markets.uniform import clear_uniform


def clear_pay_as_bid(book: OrderBook) -> ClearingResult:
    """Clear one slot's book as a pay-as-bid double auction; see the module docstring.

    Args:
        book: a validated order book (quantities >= 0, finite prices, unique ids, sides 0/1).

    Returns:
        Fills (sums of the order's trades), per-order prices (bid for buyers, volume-weighted
        bids for sellers, NaN where not filled), the bilateral trades at the buyers' bids.
    """
    matched = clear_uniform(book)
    n = book.n_orders
    trade_buy, trade_sell, trade_kwh = matched.trade_buy, matched.trade_sell, matched.trade_kwh
    trade_price = book.price[trade_buy]
    bought = np.bincount(trade_buy, weights=trade_kwh, minlength=n)
    sold = np.bincount(trade_sell, weights=trade_kwh, minlength=n)
    revenue = np.bincount(trade_sell, weights=trade_kwh * trade_price, minlength=n)
    # the sum of an order's trades, which may pass its quantity by an ulp: clip it back
    filled_kwh: FloatArray = np.minimum(bought + sold, book.quantity_kwh)

    is_seller = sold > 0.0
    price = np.where(bought > 0.0, book.price, np.nan)
    seller_price = np.divide(revenue, sold, out=np.zeros(n), where=is_seller)
    # the weighted mean can leave the range of its prices by an ulp: clip it back
    lowest = np.full(n, np.inf)
    highest = np.full(n, -np.inf)
    np.minimum.at(lowest, trade_sell, trade_price)
    np.maximum.at(highest, trade_sell, trade_price)
    price[is_seller] = np.clip(seller_price[is_seller], lowest[is_seller], highest[is_seller])
    return ClearingResult(
        filled_kwh=filled_kwh,
        price=price,
        operator_surplus=0.0,
        trade_buy=trade_buy,
        trade_sell=trade_sell,
        trade_kwh=trade_kwh,
        trade_price=trade_price,
        info=matched.info,
    )


class PayAsBidParams(MechanismParams):
    """Pay-as-bid has no parameters: each pair trades at the buyer's bid."""


class PayAsBidAuction:
    """Pay-as-bid double auction over limit orders; see the module docstring."""

    name: ClassVar[str] = "pay-as-bid"
    family: ClassVar[Family] = "community"
    description: ClassVar[str] = (
        "Pay-as-bid double auction: merit-order matching as in the uniform auction, each "
        "matched pair trades at the buyer's bid (Grid Singularity's two-sided convention)."
    )
    Params: ClassVar[type[MechanismParams]] = PayAsBidParams
    uses_net_positions: ClassVar[bool] = False

    params: MechanismParams

    def __init__(self, params: PayAsBidParams | None = None) -> None:
        self.params = params if params is not None else PayAsBidParams()

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Clear one slot's book; the retail context is not used (limit prices decide)."""
        return clear_pay_as_bid(book)
