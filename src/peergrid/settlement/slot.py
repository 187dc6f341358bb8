"""Settling one slot: market fills first, the unmatched rest with the retailer.

Pure functions over arrays across participants (P,). Money is in currency; energies in kWh per
slot; prices in currency/kWh. Cost is positive when the participant pays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from peergrid.markets.base import ClearingResult, OrderBook, Side

FloatArray = NDArray[np.float64]

#: Net positions smaller than this are treated as zero (no order is placed) [kWh].
NET_EPS_KWH = 1e-12


def orders_from_net(
    net_kwh: FloatArray, buy_limit_price: FloatArray, sell_limit_price: FloatArray
) -> OrderBook:
    """One order per participant with a non-zero net position: a deficit (net < 0) is a buy of
    −net at its buy limit, a surplus a sell of net at its sell limit. The order id is the
    participant index."""
    active = np.flatnonzero(np.abs(net_kwh) > NET_EPS_KWH)
    net = net_kwh[active]
    is_sell = net > 0
    return OrderBook(
        id=active.astype(np.int64),
        participant=active.astype(np.int64),
        side=np.where(is_sell, np.int8(Side.SELL), np.int8(Side.BUY)).astype(np.int8),
        quantity_kwh=np.abs(net),
        price=np.where(is_sell, sell_limit_price[active], buy_limit_price[active]),
    )


@dataclass(frozen=True, eq=False)
class SlotSettlement:
    """Per participant (P,): what was traded where, and at what price."""

    grid_import_kwh: FloatArray
    grid_export_kwh: FloatArray
    p2p_bought_kwh: FloatArray
    p2p_sold_kwh: FloatArray
    p2p_buy_price: FloatArray  # price paid per kWh bought in the market; NaN if none
    p2p_sell_price: FloatArray  # price received per kWh sold in the market; NaN if none
    cost: FloatArray  # energy cost of the slot [currency], positive = pays


def settle_slot(
    net_kwh: FloatArray,
    book: OrderBook,
    result: ClearingResult,
    retail_price: float,
    feed_in_price: float,
) -> SlotSettlement:
    """Market fills at the mechanism's prices; whatever is left with the retailer."""
    n = net_kwh.shape[0]
    bought = np.zeros(n)
    sold = np.zeros(n)
    buy_price = np.full(n, np.nan)
    sell_price = np.full(n, np.nan)
    filled = result.filled_kwh
    is_buy = book.side == Side.BUY
    who = book.participant
    has_fill = filled > 0
    b = is_buy & has_fill
    s = ~is_buy & has_fill
    bought[who[b]] = filled[b]
    sold[who[s]] = filled[s]
    buy_price[who[b]] = result.price[b]
    sell_price[who[s]] = result.price[s]
    deficit = np.maximum(-net_kwh, 0.0)
    surplus = np.maximum(net_kwh, 0.0)
    grid_import = np.maximum(deficit - bought, 0.0)
    grid_export = np.maximum(surplus - sold, 0.0)
    cost = (
        grid_import * retail_price
        - grid_export * feed_in_price
        + bought * np.nan_to_num(buy_price)
        - sold * np.nan_to_num(sell_price)
    )
    return SlotSettlement(
        grid_import_kwh=grid_import,
        grid_export_kwh=grid_export,
        p2p_bought_kwh=bought,
        p2p_sold_kwh=sold,
        p2p_buy_price=buy_price,
        p2p_sell_price=sell_price,
        cost=cost,
    )


def retailer_only_cost(
    net_kwh: FloatArray, retail_price: FloatArray | float, feed_in_price: FloatArray | float
) -> FloatArray:
    """Energy cost without any market (the baseline): import at retail, export at feed-in.
    Works on any shape, e.g. (T, P) with prices (T, 1)."""
    return np.maximum(-net_kwh, 0.0) * retail_price - np.maximum(net_kwh, 0.0) * feed_in_price
