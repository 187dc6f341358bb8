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

Operator permissioning (Guerrero, Chapman & Verbič, IEEE Trans. Smart Grid 10(5), 2019): when the
context carries a `NetworkView` and `permissioning` is on (the default; off ignores the network),
the network operator vets every match before it executes. It keeps a running operating point x of
the monitored bus voltages v (M,) [pu] and branch flows f (K,) [kW], starting from `v_base_pu` and
`flow_base_kw` (the state before any order executes). A match of q kWh in which the participant at
bus a sells to the participant at bus b is a bilateral transfer of P = q / dt_h kW, which moves
the state linearly:

    Δv = (∂v/∂p[:, a] − ∂v/∂p[:, b]) · P,      Δf = (PTDF[:, a] − PTDF[:, b]) · P.

Each limit (v ≤ v_max, v ≥ v_min, f ≤ rating, −f ≤ rating) must stay satisfied if it is satisfied,
and must not get worse if it is already violated. Since the state is linear in P, the largest
permitted transfer is closed form: with d the change of a limited quantity per kW (sign taken so
that d > 0 moves it towards its limit) and room ≥ 0 its distance to that limit (0 when violated),
P_max = min over d > 0 of room / d (∞ when no limit is approached). The match executes up to
P_max · dt_h and the operating point moves by the executed part; the rest of the match is refused
(blocked). As for remainders, amounts within `tol_kwh` are rounding: a match short of its full
quantity by at most that executes in full, and one permitted at most that is refused. A partly
or fully blocked resting order keeps its place in the book for other counterparties, and the
arriving order goes on to the next best resting order (it may sit at a bus where the transfer is
harmless, e.g. the same bus: Δ = 0). So up to rounding the final state violates no limit that
the base state satisfied, and no violated limit ends up worse than at the base.

Blocking is not monotone in volume: refusing one match leaves both orders in play, and the CDA is
not efficient, so a permissioned slot can trade more than the same slot without the network
(asks 1 and 5, bids 6 and 2 arriving in the order ask 1, bid 6, ask 5, bid 2 trade one unit;
block ask 1 → bid 6 and they trade two). Only the bounds of every CDA hold (volume at most the
largest crossing volume).

With permissioning, `info` adds `blocked_kwh` (Σ over matches of the energy refused, so the same
unfilled energy counts once per counterparty that was refused), `blocked_trades` (matches refused
in whole or in part), and the monitored state after the slot: `v_min_after_pu`, `v_max_after_pu`
and `loading_max_after_pct` (max |f| / rating; NaN when nothing is monitored). Without a network
or with `permissioning=False`, the auction is exactly the one above: same trades, same `info`.

The arrival loop is Python (a CDA is sequential by nature); each side's resting book is a binary
heap keyed by (price, arrival), so an arrival costs O((1 + trades) log n). A permission check is
O(M + K) numpy on two rows of a sensitivity matrix built once per call; a match far from every
limit passes on one max against a running lower bound of the room, and within an arrival a
counterparty bus refused in full is not checked again until a trade moves the state. Measured
on SimBench rural3 (128 monitored buses and branches), 300 orders: ~0.35 ms without the network,
~2 ms with it, ~25 ms when a limit right above the base state refuses most matches.
"""

from __future__ import annotations

import heapq
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from peergrid.markets.base import (
    BUY_CODE,
    ClearingResult,
    Family,
    FloatArray,
    IntArray,
    MarketContext,
    MechanismParams,
    NetworkView,
    OrderBook,
)
from peergrid.markets.merit_order import REL_TOL

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
    permissioning: bool = Field(
        default=True,
        description=(
            "When the slot has a network view, let the operator block matches that would breach "
            "a voltage or loading limit (Guerrero et al. 2019); False ignores the network."
        ),
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


class _Operator:
    """The network operator's running operating point for permissioning (module docstring).

    Wires a `NetworkView` to the closed-form permission rule; the state is local to one call
    of `clear_cda`. Each limit (v ≤ v_max, v ≥ v_min, f ≤ rating, −f ≤ rating) is one entry of
    `room`, its distance to the limit (negative when violated), and a kWh sent from bus a to bus
    b uses `use[a] − use[b]` of it. Entries are scaled by the width of their limit band (any
    positive scale leaves the rule unchanged), so that one lower bound `floor` of every
    max(room, 0) lets most matches pass with a single max instead of the full ratio test.
    """

    def __init__(self, network: NetworkView, dt_h: float) -> None:
        n_v = network.v_base_pu.shape[0]
        self.n_v = n_v
        self.rating_kw = np.asarray(network.rating_kw, np.float64)
        self.base = np.concatenate([network.v_base_pu, network.flow_base_kw]).astype(np.float64)
        # How one kWh injected during the slot at bus n moves each monitored quantity, (N, M + K).
        self.per_kwh: FloatArray = (
            np.concatenate([network.dv_dp_pu_per_kw, network.ptdf], axis=0).T / dt_h
        )
        band = np.concatenate(
            [np.full(n_v, network.v_max_pu - network.v_min_pu), 2.0 * self.rating_kw]
        )
        scale = 1.0 / np.where(np.isfinite(band) & (band > 0.0), band, 1.0)
        scaled = self.per_kwh * scale
        self.use: FloatArray = np.ascontiguousarray(np.concatenate([scaled, -scaled], axis=1))
        upper = np.concatenate([np.full(n_v, network.v_max_pu), self.rating_kw])
        lower = np.concatenate([np.full(n_v, network.v_min_pu), -self.rating_kw])
        self.room: FloatArray = np.concatenate([upper - self.base, self.base - lower]) * np.tile(
            scale, 2
        )
        self.no_ratio: FloatArray = np.full(self.room.shape, np.inf)
        self.injected_kwh = [0.0] * self.per_kwh.shape[0]
        self.room_pos: FloatArray = np.maximum(self.room, 0.0)
        self.floor = float(self.room_pos.min()) if self.room.size else np.inf
        self.exact = True  # room_pos and floor are up to date, not just bounds

    def permit(
        self, seller_bus: int, buyer_bus: int, kwh: float
    ) -> tuple[float, FloatArray, float]:
        """The part of a `kwh` transfer from the seller's bus to the buyer's bus the operator
        permits now [kWh] (≤ kwh), the room it uses per kWh, and the largest of those uses."""
        use = self.use[seller_bus] - self.use[buyer_bus]
        if not use.size:
            return kwh, use, 0.0
        most = float(use.max())
        if most * kwh <= self.floor:
            return kwh, use, most  # every limit it approaches has room to spare
        if not self.exact:
            np.maximum(self.room, 0.0, out=self.room_pos)
            self.floor = float(self.room_pos.min())
            self.exact = True
            if most * kwh <= self.floor:
                return kwh, use, most
        ratio = np.divide(self.room_pos, use, out=self.no_ratio.copy(), where=use > 0.0)
        return min(kwh, float(ratio.min())), use, most

    def execute(
        self, seller_bus: int, buyer_bus: int, kwh: float, use: FloatArray, most: float
    ) -> None:
        """Move the operating point by a permitted transfer (`use`, `most` from `permit`)."""
        self.room -= use * kwh
        # No entry of max(room, 0) fell by more than max(use) · kwh.
        self.floor -= max(most, 0.0) * kwh
        self.exact = False
        self.injected_kwh[seller_bus] += kwh
        self.injected_kwh[buyer_bus] -= kwh

    def info(self, blocked_kwh: float, blocked_trades: int) -> dict[str, float]:
        state = self.base + np.array(self.injected_kwh) @ self.per_kwh
        v, flow = state[: self.n_v], state[self.n_v :]
        with np.errstate(divide="ignore", invalid="ignore"):
            loading_pct = 100.0 * np.abs(flow) / self.rating_kw
        return {
            "blocked_kwh": blocked_kwh,
            "blocked_trades": float(blocked_trades),
            "v_min_after_pu": float(v.min()) if v.size else float("nan"),
            "v_max_after_pu": float(v.max()) if v.size else float("nan"),
            "loading_max_after_pct": float(loading_pct.max()) if flow.size else float("nan"),
        }


def clear_cda(
    book: OrderBook,
    arrival: Arrival = "id",
    seed: int = 0,
    slot: int = 0,
    network: NetworkView | None = None,
    dt_h: float = 0.25,
) -> ClearingResult:
    """Run one slot's continuous double auction; see the module docstring.

    Args:
        book: a validated order book (quantities >= 0, finite prices, unique ids, sides 0/1).
        arrival: "id" or "random" (see the module docstring).
        seed: seed of the random arrival permutation [-].
        slot: slot index, mixed into the random permutation so every slot gets its own sequence.
        network: the operator's view of the network; when given, every match is permissioned
            against its voltage and loading limits (module docstring). Its `bus_of` must cover
            every participant of the book.
        dt_h: slot length [h], turning a match's energy into the power it transfers; used only
            with a network.

    Returns:
        Fills, volume-weighted prices per order, one bilateral trade per match (at the resting
        order's price) and `info` with `n_trades` and `cancelled_kwh` (and, with a network,
        the permissioning figures of the module docstring).
    """
    n = book.n_orders
    quantity_kwh = book.quantity_kwh
    tol_kwh = REL_TOL * float(quantity_kwh.sum())
    limit = book.price.tolist()
    is_buy = (book.side == BUY_CODE).tolist()
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
    operator = _Operator(network, dt_h) if network is not None else None
    bus = network.bus_of[book.participant].tolist() if network is not None else []
    blocked_kwh = 0.0
    blocked_trades = 0

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
        # Counterparty buses refused in full since the state last moved (permissioning only).
        refused: set[int] = set()
        while other and other[0][0] <= bound:
            j = other[0][2]
            if participant[j] == who:
                skipped.append(heappop(other))
                continue
            avail = left_kwh[j]
            qty = want if want < avail else avail
            cut = False
            if operator is not None and bus[i] != bus[j]:
                if bus[j] in refused:
                    blocked_kwh += qty
                    blocked_trades += 1
                    skipped.append(heappop(other))
                    continue
                seller_bus, buyer_bus = (bus[j], bus[i]) if buying else (bus[i], bus[j])
                permitted_kwh, use, most = operator.permit(seller_bus, buyer_bus, qty)
                if permitted_kwh < qty - tol_kwh:  # a shortfall within rounding is ignored
                    blocked_kwh += qty - permitted_kwh if permitted_kwh > tol_kwh else qty
                    blocked_trades += 1
                    if permitted_kwh <= tol_kwh:
                        refused.add(bus[j])
                        skipped.append(heappop(other))
                        continue
                    qty, cut = permitted_kwh, True
                operator.execute(seller_bus, buyer_bus, qty, use, most)
                refused.clear()
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
            elif cut:
                # The operator cut the match at a limit: leave this order for other arrivals.
                skipped.append(heappop(other))
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
    buy_side = book.side == BUY_CODE
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
        }
        | ({} if operator is None else operator.info(blocked_kwh, blocked_trades)),
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
        """Run the slot's auction; the retail prices are not used (limit prices decide), the
        network view permissions matches unless `permissioning` is off."""
        params = self.params
        if not isinstance(params, CdaParams):
            raise TypeError(f"cda needs CdaParams, got {type(params).__name__}")
        network = ctx.network if params.permissioning else None
        return clear_cda(book, params.arrival, params.seed, ctx.slot, network, ctx.dt_h)
