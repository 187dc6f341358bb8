"""Settling one slot: commitments at gate closure, then what was metered.

Pure functions over arrays across participants (P,). `commit` turns a cleared book into each
participant's commitment (filled part in the community, the rest with the retailer);
`settle_slot` prices the commitment and the deviation metered − committed
(`settlement.deviation`). Money is in currency; energies in kWh per slot; prices in
currency/kWh. Cost is positive when the participant pays.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from peergrid.markets.base import BUY_CODE, SELL_CODE, ClearingResult, OrderBook
from peergrid.settlement.deviation import DeviationRule, reference_price, settle_deviations

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

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
        id=active,
        participant=active,
        side=is_sell.view(np.int8),  # Side.SELL = 1, Side.BUY = 0
        quantity_kwh=np.abs(net),
        price=np.where(is_sell, sell_limit_price[active], buy_limit_price[active]),
    )


@dataclass(frozen=True, eq=False)
class Commitment:
    """What every participant committed at gate closure for one slot, (P,) arrays.

    A participant's commitment is the net of its orders (sells − buys, export positive): the
    part the market filled trades in the community at the mechanism's prices, the rest with
    the retailer at the slot's tariff. The per-side prices are computed when asked for.

    Attributes:
        book: the slot's orders; result: their clearing.
        committed_kwh: net of the participant's orders [kWh].
        p2p_bought_kwh, p2p_sold_kwh: energy filled in the market [kWh].
        p2p_paid, p2p_received: money paid for fills bought / received for fills sold
            [currency].
        fill_price: price per kWh of the participant's fills, both sides together
            [currency/kWh]; NaN without a fill.
        retail_price, feed_in_price: the slot's tariff [currency/kWh].
    """

    book: OrderBook
    result: ClearingResult
    committed_kwh: FloatArray
    p2p_bought_kwh: FloatArray
    p2p_sold_kwh: FloatArray
    p2p_paid: FloatArray
    p2p_received: FloatArray
    fill_price: FloatArray
    retail_price: float
    feed_in_price: float

    @property
    def n_participants(self) -> int:
        return int(self.committed_kwh.shape[0])

    @property
    def operator_surplus(self) -> float:
        """Σ buyer payments − Σ seller receipts in the market [currency]."""
        return float(self.result.operator_surplus)

    @cached_property
    def p2p_buy_price(self) -> FloatArray:
        """Price paid per kWh bought in the market [currency/kWh]; NaN without a buy fill."""
        out: FloatArray = np.divide(
            self.p2p_paid,
            self.p2p_bought_kwh,
            out=np.full(self.n_participants, np.nan),
            where=self.p2p_bought_kwh > 0,
        )
        return out

    @cached_property
    def p2p_sell_price(self) -> FloatArray:
        """Price received per kWh sold in the market [currency/kWh]; NaN without a sell fill."""
        out: FloatArray = np.divide(
            self.p2p_received,
            self.p2p_sold_kwh,
            out=np.full(self.n_participants, np.nan),
            where=self.p2p_sold_kwh > 0,
        )
        return out

    def _limit(self, side: np.int8) -> FloatArray:
        b, n = self.book, self.n_participants
        mine = b.side == side
        q = _sum_by(b.participant[mine], b.quantity_kwh[mine], n)
        qp = _sum_by(b.participant[mine], b.quantity_kwh[mine] * b.price[mine], n)
        out: FloatArray = np.divide(qp, q, out=np.full(n, np.nan), where=q > 0)
        return out

    @cached_property
    def buy_limit_price(self) -> FloatArray:
        """Volume-weighted limit price of the participant's buy orders [currency/kWh]; NaN
        without a buy order."""
        return self._limit(BUY_CODE)

    @cached_property
    def sell_limit_price(self) -> FloatArray:
        """Volume-weighted limit price of the participant's sell orders [currency/kWh]; NaN
        without a sell order."""
        return self._limit(SELL_CODE)

    @property
    def reference_price(self) -> float:
        """The community's reference price of the slot (`deviation.reference_price`)."""
        return reference_price(
            self.result.clearing_price,
            self.result.filled_kwh,
            self.result.price,
            self.retail_price,
            self.feed_in_price,
        )


def _sum_by(who: IntArray, weights: FloatArray, n: int) -> FloatArray:
    """Σ of `weights` per participant, (n,)."""
    return np.asarray(np.bincount(who, weights=weights, minlength=n), dtype=np.float64)


def commit(
    book: OrderBook,
    result: ClearingResult,
    n_participants: int,
    retail_price: float,
    feed_in_price: float,
    position_kwh: FloatArray | None = None,
) -> Commitment:
    """Per-participant commitments from a cleared book (any number of orders per
    participant). `position_kwh` (P,), the planned net positions the book was made from:
    a participant without an order commits its position as it is (a position within
    `NET_EPS_KWH` of zero places no order and goes to the retailer)."""
    n = n_participants
    who = book.participant
    is_buy = book.side == BUY_CODE
    q = book.quantity_kwh
    filled = result.filled_kwh
    price = result.price
    if who.size < 2 or not np.count_nonzero(who[1:] <= who[:-1]):
        # one order per participant (the EMS's book): scatter, no sums and no rounding; the
        # commitment of a book made from positions is the positions themselves
        if position_kwh is None:
            committed = np.zeros(n)
            committed[who] = np.where(is_buy, -q, q)
        else:
            committed = position_kwh
        fill = np.zeros(n)
        fill[who] = filled
        fill_price = np.full(n, np.nan)
        fill_price[who] = price
        buyer = np.zeros(n, dtype=bool)
        buyer[who] = is_buy
        bought = fill * buyer
        sold = fill - bought
        pay = fill * fill_price
        pay[fill <= 0.0] = 0.0
        paid = pay * buyer
        received = pay - paid
    else:
        committed = _sum_by(who, np.where(is_buy, -q, q), n)
        if position_kwh is not None:
            no_order = np.ones(n, dtype=bool)
            no_order[who] = False
            committed = np.where(no_order, position_kwh, committed)
        has_fill = filled > 0
        b = is_buy & has_fill
        s = ~is_buy & has_fill
        bought = _sum_by(who[b], filled[b], n)
        sold = _sum_by(who[s], filled[s], n)
        paid = _sum_by(who[b], filled[b] * price[b], n)
        received = _sum_by(who[s], filled[s] * price[s], n)
        fill = bought + sold
        fill_price = np.divide(paid + received, fill, out=np.full(n, np.nan), where=fill > 0)
    return Commitment(
        book=book,
        result=result,
        committed_kwh=committed,
        p2p_bought_kwh=bought,
        p2p_sold_kwh=sold,
        p2p_paid=paid,
        p2p_received=received,
        fill_price=fill_price,
        retail_price=retail_price,
        feed_in_price=feed_in_price,
    )


@dataclass(frozen=True, eq=False)
class SlotSettlement:
    """One slot settled, per participant (P,) unless stated.

    Attributes:
        grid_import_kwh, grid_export_kwh: metered energy not traded in the community, i.e.
            what flows with the retailer (committed remainder and deviation together) [kWh].
        p2p_bought_kwh, p2p_sold_kwh: energy traded in the community [kWh].
        committed_kwh: the commitment made at gate closure (export positive) [kWh].
        deviation_kwh: metered − committed [kWh].
        deviation_cost: what the deviation cost under the rule [currency].
        cost: the slot's energy cost: fills at the market's prices, the schedule with the
            retailer (the unfilled part of the commitment) at the tariff, the deviation by the
            rule [currency], positive = pays.
        retailer_revenue: Σ what the retailer receives (negative: pays out) [currency].
        operator_revenue: Σ what the market operator receives: the mechanism's surplus and
            penalty spreads [currency].
    """

    grid_import_kwh: FloatArray
    grid_export_kwh: FloatArray
    p2p_bought_kwh: FloatArray
    p2p_sold_kwh: FloatArray
    committed_kwh: FloatArray
    deviation_kwh: FloatArray
    deviation_cost: FloatArray
    cost: FloatArray
    retailer_revenue: float
    operator_revenue: float


def settle_slot(
    commitment: Commitment,
    metered_net_kwh: FloatArray,
    retail_price: float,
    feed_in_price: float,
    rule: DeviationRule = "retail",
    penalty_per_kwh: float = 0.0,
) -> SlotSettlement:
    """Two-settlement of one slot: the commitment at the prices fixed at gate closure, the
    deviation metered − committed by `rule` (`settlement.deviation`)."""
    c = commitment
    p2p_net = c.p2p_sold_kwh - c.p2p_bought_kwh
    remainder = c.committed_kwh - p2p_net
    rem_import = np.maximum(-remainder, 0.0)
    rem_export = np.maximum(remainder, 0.0)
    rem_cost = rem_import * retail_price - rem_export * feed_in_price
    deviation = metered_net_kwh - c.committed_kwh
    cost = rem_cost + (c.p2p_paid - c.p2p_received)
    if np.count_nonzero(deviation):
        dev = settle_deviations(
            remainder,
            deviation,
            rule,
            retail_price,
            feed_in_price,
            # p_ref only prices the netted deviations (computing it costs a pass over the fills)
            reference_price=c.reference_price if rule == "net-then-causer" else float("nan"),
            penalty_per_kwh=penalty_per_kwh,
        )
        dev_cost, dev_retailer, dev_operator = dev.cost, dev.retailer_revenue, dev.operator_revenue
        cost = cost + dev_cost
        flow = metered_net_kwh - p2p_net
        grid_import, grid_export = np.maximum(-flow, 0.0), np.maximum(flow, 0.0)
    else:
        dev_cost, dev_retailer, dev_operator = deviation, 0.0, 0.0  # zeros
        grid_import, grid_export = rem_import, rem_export
    return SlotSettlement(
        grid_import_kwh=grid_import,
        grid_export_kwh=grid_export,
        p2p_bought_kwh=c.p2p_bought_kwh,
        p2p_sold_kwh=c.p2p_sold_kwh,
        committed_kwh=c.committed_kwh,
        deviation_kwh=deviation,
        deviation_cost=dev_cost,
        cost=cost,
        retailer_revenue=float(rem_cost.sum()) + dev_retailer,
        operator_revenue=c.operator_surplus + dev_operator,
    )


def retailer_only_cost(
    net_kwh: FloatArray, retail_price: FloatArray | float, feed_in_price: FloatArray | float
) -> FloatArray:
    """Energy cost without any market (the baseline): import at retail, export at feed-in.
    Works on any shape, e.g. (T, P) with prices (T, 1)."""
    return np.maximum(-net_kwh, 0.0) * retail_price - np.maximum(net_kwh, 0.0) * feed_in_price
