"""Continuous double auction (CDA) within one slot.

Orders arrive one at a time. An arriving order trades with the best resting orders on the other side
while prices cross (a bid at or above the best ask, an ask at or below the best bid), each trade at
the resting order's price; what is left of it then rests in the book. At the end of the slot every
resting remainder is cancelled: it settles with the retailer, outside the mechanism.

Conventions:
- Arrival: `arrival="random"` (default) takes the orders in a random permutation of the id order
  drawn from `numpy.random.default_rng` seeded with `seed` and the context's slot index, so the
  sequence depends only on the ids, the seed and the slot, not on row positions, and differs from
  slot to slot (a fixed order would favour the same participants in every slot of a simulation);
  `arrival="id"` takes the book's orders by ascending `id`.
- Price-time priority: among resting orders the best price trades first, and among equal prices
  the earliest arrival.
- Trade price: the resting order's limit. `trade_price` is what the buyer pays and the seller
  receives (one price per pair); each order's `price` is the volume-weighted average over its
  trades (clamped to its own limit, which only removes rounding of the last ulp), NaN where it
  did not trade. The mechanism is budget balanced: `operator_surplus` is 0.
- Self-trades: an arriving order skips the resting orders of its own participant (they keep their
  place and priority) and trades with the next best; a participant never trades with itself.
- Zero-quantity orders, and remainders of at most `tol_kwh` = 1e-12 × the book's total volume
  (rounding residue), never rest and never trade.
- No clearing price, buy price or sell price: NaN.

Efficiency: a CDA is not efficient. Its trades always cross (every pair has bid ≥ ask), so its
welfare Σ (bid − ask) × kWh never exceeds the efficient welfare, and its volume never exceeds the
largest volume of any set of crossing trades, min over prices p of [Σ bids ≥ p + Σ asks < p]. Its
volume can exceed the competitive volume Q* of the uniform-price auction: arrivals (ask 5, bid 6,
ask 1, bid 2) trade two units in the CDA, but Q* is one unit (bid 6 with ask 1).

`info`: `n_trades`, `cancelled_kwh` (Σ quantity left unfilled at the end of the slot, including
orders that never traded).

The arrival loop is Python (a CDA is sequential by nature); each side's resting book is a binary
heap keyed by (price, arrival), so an arrival costs O((1 + trades) log n).
"""

from __future__ import annotations

import heapq
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from peergrid.markets.base import (
    ClearingResult,
    Family,
    IntArray,
    MarketContext,
    MechanismParams,
    OrderBook,
    Side,
)
from peergrid.markets.uniform import REL_TOL

Arrival = Literal["id", "random"]


class CdaParams(MechanismParams):
    """Parameters of the continuous double auction."""

    arrival: Arrival = Field(
        default="random",
        description=(
            "Arrival sequence of the orders: 'random' (default) a permutation of the id order "
            "drawn with `seed` and the slot index, 'id' by ascending order id."
        ),
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="Seed of the random arrival permutation; used only with arrival 'random'.",
    )


def arrival_sequence(
    order_id: IntArray, arrival: Arrival = "id", seed: int = 0, slot: int = 0
) -> IntArray:
    """Positions of the orders in the sequence they arrive in; see the module docstring."""
    sequence = np.argsort(order_id, kind="stable")
    if arrival == "random":
        rng = np.random.default_rng(seed if slot == 0 else [seed, slot])
        sequence = sequence[rng.permutation(sequence.size)]
    return sequence


def clear_cda(
    book: OrderBook, arrival: Arrival = "id", seed: int = 0, slot: int = 0
) -> ClearingResult:
    """Run one slot's continuous double auction; see the module docstring.

    Args:
        book: a validated order book (quantities >= 0, finite prices, unique ids, sides 0/1).
        arrival: "id" or "random" (see the module docstring).
        seed: seed of the random arrival permutation [-].
        slot: slot index, mixed into the random permutation so every slot gets its own sequence.

    Returns:
        Fills, volume-weighted prices per order, one bilateral trade per match (at the resting
        order's price) and `info` with `n_trades` and `cancelled_kwh`.
    """
    n = book.n_orders
    quantity_kwh = book.quantity_kwh
    tol_kwh = REL_TOL * float(quantity_kwh.sum())
    limit = book.price.tolist()
    is_buy = (book.side == Side.BUY).tolist()
    participant = book.participant.tolist()
    left_kwh = quantity_kwh.tolist()  # unfilled remainder of every order

    # Heap entries (key, arrival, position); the key is the price for asks and −price for bids,
    # so the best resting order is at the top and ties go to the earliest arrival.
    resting: tuple[list[tuple[float, int, int]], list[tuple[float, int, int]]] = ([], [])
    trade_buy: list[int] = []
    trade_sell: list[int] = []
    trade_kwh: list[float] = []
    trade_price: list[float] = []
    heappush, heappop = heapq.heappush, heapq.heappop

    for t, i in enumerate(arrival_sequence(book.id, arrival, seed, slot).tolist()):
        want = left_kwh[i]
        if want <= tol_kwh:
            continue
        buying = is_buy[i]
        own, other = (resting[0], resting[1]) if buying else (resting[1], resting[0])
        # A resting order crosses when its key is at most this bound (ask ≤ bid, −bid ≤ −ask).
        bound = limit[i] if buying else -limit[i]
        who = participant[i]
        skipped: list[tuple[float, int, int]] = []
        while other and other[0][0] <= bound:
            j = other[0][2]
            if participant[j] == who:
                skipped.append(heappop(other))
                continue
            avail = left_kwh[j]
            qty = want if want < avail else avail
            if buying:
                trade_buy.append(i)
                trade_sell.append(j)
            else:
                trade_buy.append(j)
                trade_sell.append(i)
            trade_kwh.append(qty)
            trade_price.append(limit[j])
            want -= qty
            left_kwh[j] = avail - qty
            if left_kwh[j] <= tol_kwh:
                heappop(other)
            if want <= tol_kwh:
                break
        for entry in skipped:
            heappush(other, entry)
        left_kwh[i] = want
        if want > tol_kwh:
            heappush(own, (-limit[i] if buying else limit[i], t, i))

    filled_kwh = quantity_kwh - np.array(left_kwh, np.float64)
    buy = np.array(trade_buy, np.int64)
    sell = np.array(trade_sell, np.int64)
    kwh = np.array(trade_kwh, np.float64)
    money = kwh * np.array(trade_price, np.float64)
    traded = np.bincount(buy, kwh, minlength=n) + np.bincount(sell, kwh, minlength=n)
    amount = np.bincount(buy, money, minlength=n) + np.bincount(sell, money, minlength=n)
    price = np.full(n, np.nan)
    np.divide(amount, traded, out=price, where=traded > 0.0)
    # The average of prices within the limit is within it; clamp away the last ulp of rounding.
    buy_side = book.side == Side.BUY
    price = np.where(buy_side, np.fmin(price, book.price), np.fmax(price, book.price))
    price[traded <= 0.0] = np.nan
    filled_kwh[traded <= 0.0] = 0.0
    return ClearingResult(
        filled_kwh=filled_kwh,
        price=price,
        operator_surplus=0.0,
        trade_buy=buy,
        trade_sell=sell,
        trade_kwh=kwh,
        trade_price=np.array(trade_price, np.float64),
        info={
            "n_trades": float(kwh.size),
            "cancelled_kwh": float((quantity_kwh - filled_kwh).sum()),
        },
    )


class ContinuousDoubleAuction:
    """Continuous double auction within a slot; see the module docstring."""

    name: ClassVar[str] = "cda"
    family: ClassVar[Family] = "community"
    description: ClassVar[str] = (
        "Continuous double auction: orders arrive in sequence and trade with the best resting "
        "orders at the resting price (price-time priority); leftovers are cancelled at slot end."
    )
    Params: ClassVar[type[MechanismParams]] = CdaParams
    uses_net_positions: ClassVar[bool] = False

    params: MechanismParams

    def __init__(self, params: CdaParams | None = None) -> None:
        self.params = params if params is not None else CdaParams()

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Run the slot's auction; the retail context is not used (limit prices decide)."""
        params = self.params
        if not isinstance(params, CdaParams):
            raise TypeError(f"cda needs CdaParams, got {type(params).__name__}")
        return clear_cda(book, params.arrival, params.seed, ctx.slot)
