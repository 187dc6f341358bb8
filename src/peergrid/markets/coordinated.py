"""The coordinated market: a community pool at the coordinator's internal price.

In a coordinated market a central coordinator schedules everyone (`ems/coordinated.py`,
`coordination/schedule.py`) and the community's energy changes hands at the internal marginal
price λ_t, the dual of the community balance in the coordinator's schedule. The coordinated
EMS sends that price as both limit prices of every order, so the mechanism reads it from the
book:

- **Price.** All limit prices equal → that price. Otherwise (orders from other EMS policies)
  the volume-weighted midpoint p = (p̄_buy + p̄_sell)/2 of the volume-weighted mean buy limit
  p̄_buy and mean sell limit p̄_sell; with one side empty, that side's mean alone. The price is
  clipped to [feed-in, retail].
- **Fills.** A pool, as in SDR: the orders that accept p (buy limit >= p, sell limit <= p; with
  equal limits, all of them) trade; the short side fills fully, the long side pro rata to its
  quantities. Every fill is at p on both sides, so the pool is budget balanced
  (`operator_surplus` = 0) and individually rational.

Parameter `allocation` ("marginal" default, "proportional", "shapley") is the rule that shares
the community's savings. Per slot only "marginal" prices energy (at λ_t, above); the other two
are period-level rules (`peergrid.sharing`): under them this slot clearing is
provisional (`info["provisional"]` = 1) and the period's settlement replaces the λ-priced
payments by the rule's shares (a budget-neutral transfer on top of these fills).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

if TYPE_CHECKING:
    from peergrid.sharing.games import CoreCheck

from peergrid.markets.base import (
    ClearingResult,
    Family,
    FloatArray,
    MarketContext,
    MechanismParams,
    OrderBook,
    pool_fills,
)

AllocationRule = Literal["marginal", "proportional", "shapley"]
_RULE_CODE: dict[str, float] = {"marginal": 0.0, "proportional": 1.0, "shapley": 2.0}


class CoordinatedMarketParams(MechanismParams):
    """Parameters of the coordinated market."""

    allocation: AllocationRule = Field(
        default="marginal",
        description=(
            "how the community's savings are shared: 'marginal' (net positions at the internal "
            "price λ, slot by slot), 'proportional' or 'shapley' (period-level rules; slot "
            "fills at λ are provisional)"
        ),
    )
    shapley_samples: int = Field(
        default=200,
        ge=10,
        le=100_000,
        description="Permutations sampled for the Shapley value beyond 15 participants.",
    )
    core_check_max_players: int = Field(
        default=12,
        ge=0,
        le=16,
        description="Check whether the period's allocation is in the core of the ex-post "
        "netting game (all 2^n coalitions) for communities up to this size; 0 disables it.",
    )


def netting_game(
    net_kwh: FloatArray, retail_price: FloatArray, feed_in_price: FloatArray
) -> tuple[FloatArray, Callable[[frozenset[int]], float]]:
    """The ex-post netting game of a period: each participant's stand-alone cost (its own net
    positions at retail / feed-in), (P,), and the savings v(S) = Σ_{i∈S} stand-alone_i − grid
    bill of Σ_{i∈S} net_i that a coalition S makes by netting its positions behind one meter."""
    net = np.asarray(net_kwh, dtype=np.float64)
    retail = np.asarray(retail_price, dtype=np.float64)
    feed_in = np.asarray(feed_in_price, dtype=np.float64)
    alone: FloatArray = (
        np.maximum(-net, 0.0) * retail[:, None] - np.maximum(net, 0.0) * feed_in[:, None]
    ).sum(axis=0)

    def savings(members: frozenset[int]) -> float:
        if not members:
            return 0.0
        idx = sorted(members)
        x = net[:, idx].sum(axis=1)
        bill = float(retail @ np.maximum(-x, 0.0) - feed_in @ np.maximum(x, 0.0))
        return float(alone[idx].sum()) - bill

    return alone, savings


def pool_price(book: OrderBook, ctx: MarketContext) -> float:
    """The pool's price [currency/kWh]: the common limit price, else the volume-weighted
    midpoint of the two sides' mean limits (module docstring); NaN for an empty book."""
    q, price = book.quantity_kwh, book.price
    if book.n_orders == 0:
        return float("nan")
    if price.min() == price.max():
        p = float(price[0])
    else:
        means = []
        for side in (book.is_buy, book.is_sell):
            volume = float(q[side].sum())
            if volume > 0.0:
                means.append(float(q[side] @ price[side]) / volume)
            elif np.count_nonzero(side):
                means.append(float(price[side].mean()))
        p = sum(means) / len(means)
    lo = min(ctx.feed_in_price, ctx.retail_price)
    hi = max(ctx.feed_in_price, ctx.retail_price)
    return min(max(p, lo), hi)


class CoordinatedMarket:
    """The `coordinated` mechanism (module docstring).

    Result: `pool=True`; `clearing_price` = `buy_price` = `sell_price` = p (published even when
    nothing trades; NaN for an empty book); per-order `price` = p where filled, NaN elsewhere;
    `info`: `total_buy_kwh`, `total_sell_kwh` (of the orders that accept p), `uniform_limits`
    (1 when all limit prices were equal), `allocation` (0 marginal, 1 proportional,
    2 shapley) and `provisional`.
    """

    name: ClassVar[str] = "coordinated"
    family: ClassVar[Family] = "coordinated"
    description: ClassVar[str] = (
        "Coordinated market: a pool at the central coordinator's internal marginal price "
        "(dual of the community balance), short side filled, long side pro rata."
    )
    Params: ClassVar[type[MechanismParams]] = CoordinatedMarketParams
    uses_net_positions: ClassVar[bool] = False
    #: The EMS policy the P2P run needs: the engine uses it instead of the homes' own EMS.
    ems_policy: ClassVar[str] = "coordinated"

    params: MechanismParams

    def ems_params(self) -> dict[str, Any] | None:
        """The central scheduler runs with its own defaults."""
        return None

    def __init__(self, params: CoordinatedMarketParams | None = None) -> None:
        validated = params if params is not None else CoordinatedMarketParams()
        self.params = validated
        self._rule: AllocationRule = validated.allocation
        self._shapley_samples: int = validated.shapley_samples

    def settle_period(
        self, net_kwh: FloatArray, retail_price: FloatArray, feed_in_price: FloatArray
    ) -> FloatArray | None:
        """The period's energy cost per participant under the allocation rule, (P,); None under
        "marginal", whose slot settlement at λ already is the allocation.

        Both period rules share the community's one grid bill for the coordinated dispatch
        (budget balanced): each participant's stand-alone cost of its own net positions (import
        at retail, export at feed-in) minus its share of the savings. "proportional" shares the
        savings by traded volume Σ_t |net|; "shapley" by the Shapley value of the ex-post netting
        game v(S) = Σ_{i∈S} stand-alone_i − grid bill of Σ_{i∈S} net_i (exact up to 15
        participants, sampled with a fixed seed beyond; `sharing.games.shapley_value`).
        """
        from peergrid.markets.bill_sharing import community_grid_bill
        from peergrid.sharing.games import shapley_value
        from peergrid.sharing.rules import proportional_allocation

        rule = self._rule
        if rule == "marginal":
            return None
        net = np.asarray(net_kwh, dtype=np.float64)
        alone, netting_savings = netting_game(net, retail_price, feed_in_price)
        community = float(community_grid_bill(net, retail_price, feed_in_price))
        if rule == "proportional":
            return proportional_allocation(alone, community, np.abs(net).sum(axis=0)).cost

        phi = shapley_value(
            netting_savings,
            net.shape[1],
            n_samples=self._shapley_samples,
            rng=np.random.default_rng(0),
        ).value
        cost: FloatArray = alone - phi
        return cost

    def core_check(
        self,
        net_kwh: FloatArray,
        retail_price: FloatArray,
        feed_in_price: FloatArray,
        energy_cost: FloatArray,
    ) -> CoreCheck | None:
        """Is the period's allocation (each participant's energy cost, (P,)) in the core of
        the ex-post netting game, i.e. does no coalition save more by netting on its own than
        the allocation gives its members? None beyond `core_check_max_players`."""
        from peergrid.sharing.games import core_check

        n = int(np.shape(net_kwh)[1])
        limit = self.params.core_check_max_players  # type: ignore[attr-defined]
        if n < 1 or n > limit:
            return None
        alone, savings = netting_game(net_kwh, retail_price, feed_in_price)
        x = alone - np.asarray(energy_cost, dtype=np.float64)
        scale = max(1.0, float(np.abs(alone).sum()))
        return core_check(x, savings, n, kind="profit", tol=1e-9 * scale)

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Fill the pool at the coordinator's price."""
        n = book.n_orders
        rule = self._rule
        p = pool_price(book, ctx)
        uniform = bool(n) and float(book.price.min()) == float(book.price.max())
        accept = np.where(book.is_buy, book.price >= p, book.price <= p) if n else np.zeros(0, bool)
        if uniform:
            accept = np.ones(n, dtype=bool)
        q = np.where(accept, book.quantity_kwh, 0.0)
        buy_kwh = float(q[book.is_buy].sum())
        sell_kwh = float(q[book.is_sell].sum())
        info = {
            "total_buy_kwh": buy_kwh,
            "total_sell_kwh": sell_kwh,
            "uniform_limits": 1.0 if uniform else 0.0,
            "allocation": _RULE_CODE[rule],
            "provisional": 0.0 if rule == "marginal" else 1.0,
        }
        if buy_kwh <= 0.0 or sell_kwh <= 0.0:
            return ClearingResult(
                filled_kwh=np.zeros(n),
                price=np.full(n, np.nan),
                clearing_price=p,
                buy_price=p,
                sell_price=p,
                pool=True,
                info=info,
            )
        filled = pool_fills(book.side, q, buy_kwh, sell_kwh)
        return ClearingResult(
            filled_kwh=filled,
            price=np.where(filled > 0.0, p, np.nan),
            clearing_price=p,
            buy_price=p,
            sell_price=p,
            operator_surplus=0.0,
            pool=True,
            info=info,
        )
