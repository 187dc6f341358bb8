"""The one interface every market mechanism implements.

A mechanism is a pure function of one slot's order book and the retail context: `clear(book, ctx)`
returns a `ClearingResult`. It knows nothing of files, clocks or databases, so the simulator's slot
loop, `peergrid clear` and a live server all call the same code.

Conventions (see docs/nomenclature.md):
- order sides are `Side.BUY` / `Side.SELL`; quantities are never signed;
- prices are in currency per kWh; `ctx.retail_price` is what the retailer charges for import
  (λ_buy), `ctx.feed_in_price` what it pays for export (λ_sell);
- whatever an order does not fill inside the community settles with the retailer, outside the
  mechanism.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Final, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

Family = Literal["coordinated", "decentralized", "community"]


class Side(IntEnum):
    """Order side. Stored as int8 in arrays."""

    BUY = 0
    SELL = 1


#: The sides as numpy int8 scalars, for comparisons with `OrderBook.side` in hot paths (an
#: IntEnum member costs numpy an object conversion on every comparison: 3 µs instead of 0.6).
BUY_CODE: Final = np.int8(Side.BUY)
SELL_CODE: Final = np.int8(Side.SELL)


@dataclass(frozen=True, eq=False)
class OrderBook:
    """One slot's orders, as parallel arrays of length n_orders.

    Attributes:
        id: unique order id (ties break by id where a rule needs it).
        participant: index of the participant who placed the order.
        side: `Side` values as int8.
        quantity_kwh: energy offered or wanted in the slot [kWh], >= 0.
        price: limit price [currency/kWh]: the most a buyer pays, the least a seller accepts.
    """

    id: IntArray
    participant: IntArray
    side: NDArray[np.int8]
    quantity_kwh: FloatArray
    price: FloatArray

    @property
    def n_orders(self) -> int:
        return int(self.id.shape[0])

    @property
    def is_buy(self) -> NDArray[np.bool_]:
        return np.equal(self.side, BUY_CODE)

    @property
    def is_sell(self) -> NDArray[np.bool_]:
        return np.equal(self.side, SELL_CODE)

    @staticmethod
    def empty() -> OrderBook:
        return OrderBook(
            id=np.zeros(0, np.int64),
            participant=np.zeros(0, np.int64),
            side=np.zeros(0, np.int8),
            quantity_kwh=np.zeros(0),
            price=np.zeros(0),
        )


@dataclass(frozen=True, eq=False)
class NetworkView:
    """What a mechanism may know of the distribution network in one slot.

    Built by the engine when the scenario has a network; `MarketContext.network` is None
    otherwise. Indices: P participants (`OrderBook.participant` values), N buses, M monitored
    buses, K monitored branches. Sensitivities are those of the linearised feeder
    (`peergrid.network.linear`), per kW of power injected during the slot.

    Attributes:
        bus_of: bus of every participant, (P,).
        pair_fee_per_kwh: network usage charge for one kWh sold by participant i to participant
            j [currency/kWh], (P, P); zeros without network charges.
        dv_dp_pu_per_kw: ∂v/∂p of the monitored buses, (M, N) [pu/kW].
        ptdf: ∂(branch flow)/∂p of the monitored branches, (K, N) [kW/kW].
        v_base_pu: voltages of the monitored buses before any order is executed, (M,).
        flow_base_kw: flows of the monitored branches before any order is executed, (K,).
        rating_kw: active-power limit of every monitored branch [kW], (K,).
        v_min_pu, v_max_pu: voltage limits [pu].
    """

    bus_of: IntArray
    pair_fee_per_kwh: FloatArray
    dv_dp_pu_per_kw: FloatArray
    ptdf: FloatArray
    v_base_pu: FloatArray
    flow_base_kw: FloatArray
    rating_kw: FloatArray
    v_min_pu: float
    v_max_pu: float


@dataclass(frozen=True)
class MarketContext:
    """What a mechanism may know besides the book, for one slot.

    Attributes:
        retail_price: retailer's import price λ_buy [currency/kWh].
        feed_in_price: retailer's export price λ_sell [currency/kWh].
        dt_h: slot length [h].
        slot: index of the slot on the run's grid (0 for a lone book); lets a stateless
            mechanism draw different seeded randomness in every slot.
        network: the network as the operator shows it to the market, or None.
    """

    retail_price: float
    feed_in_price: float
    dt_h: float = 0.25
    slot: int = 0
    network: NetworkView | None = None


@dataclass(frozen=True, eq=False)
class ClearingResult:
    """Outcome of clearing one book.

    Attributes:
        filled_kwh: energy each order trades inside the community [kWh], (n_orders,).
        price: price each order pays (buy) or receives (sell) per kWh of its filled energy
            [currency/kWh], (n_orders,); NaN where nothing was filled.
        clearing_price: the single market price where the mechanism has one, else NaN.
        buy_price: the mechanism's published buy price (e.g. SDR's p_buy), else NaN.
        sell_price: the mechanism's published sell price, else NaN.
        operator_surplus: Σ buyer payments − Σ seller receipts [currency]; 0 for a
            budget-balanced mechanism.
        trade_buy, trade_sell: positions (into the book's arrays) of the buy and sell order of
            each bilateral trade, (n_trades,); empty for pool mechanisms.
        trade_kwh, trade_price: energy [kWh] and price [currency/kWh] of each bilateral trade.
        pool: True when orders trade with the community pool rather than with named peers.
        info: mechanism diagnostics (iterations, residuals, ...), numbers only.
    """

    filled_kwh: FloatArray
    price: FloatArray
    clearing_price: float = float("nan")
    buy_price: float = float("nan")
    sell_price: float = float("nan")
    operator_surplus: float = 0.0
    trade_buy: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    trade_sell: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    trade_kwh: FloatArray = field(default_factory=lambda: np.zeros(0))
    trade_price: FloatArray = field(default_factory=lambda: np.zeros(0))
    pool: bool = False
    info: dict[str, float] = field(default_factory=dict)

    @property
    def traded_kwh(self) -> float:
        """Energy traded inside the community (= energy bought = energy sold) [kWh]."""
        return float(self.filled_kwh.sum()) / 2.0

    @staticmethod
    def nothing(n_orders: int) -> ClearingResult:
        """A result in which no order fills."""
        return ClearingResult(filled_kwh=np.zeros(n_orders), price=np.full(n_orders, np.nan))


#: Relative difference below which the two sides of a pool count as equal [-]: sums of the same
#: quantities in another order differ by a few ulps, and such a tie must fill both sides fully
#: instead of leaving one 1e-17 kWh short.
POOL_TIE_REL = 1e-12


def pool_fills(
    side: NDArray[np.int8], quantity_kwh: FloatArray, total_buy_kwh: float, total_sell_kwh: float
) -> FloatArray:
    """Fills of a community pool [kWh], (n_orders,): the short side fills fully, the long side
    pro rata to its quantities, so that Σ buy fills = Σ sell fills = min(totals). The totals are
    the book's buy and sell volumes that take part (both > 0). Totals equal to within
    `POOL_TIE_REL` are a tie: both sides fill fully."""
    if abs(total_buy_kwh - total_sell_kwh) <= POOL_TIE_REL * max(total_buy_kwh, total_sell_kwh):
        return np.array(quantity_kwh, dtype=np.float64, copy=True)
    buy_frac = min(total_sell_kwh / total_buy_kwh, 1.0)
    sell_frac = min(total_buy_kwh / total_sell_kwh, 1.0)
    fills: FloatArray = quantity_kwh * np.where(side == SELL_CODE, sell_frac, buy_frac)
    return fills


def side_totals(book: OrderBook) -> tuple[float, float]:
    """Total buy and total sell quantity of a book [kWh]."""
    totals = np.bincount(book.side, weights=book.quantity_kwh, minlength=2)
    return float(totals[Side.BUY]), float(totals[Side.SELL])


def pool_result(
    book: OrderBook,
    *,
    fill_price: float,
    buy_price: float,
    sell_price: float,
    info: dict[str, float],
    clearing_price: float = float("nan"),
) -> ClearingResult:
    """The result of a budget-balanced community pool (SDR, MMR, bill sharing).

    Every filled kWh changes hands at `fill_price` on both sides (`pool_fills`: short side full,
    long side pro rata); nothing trades when either side is empty. The published prices are
    reported in both cases, `clearing_price` only when energy trades.
    """
    total_buy_kwh, total_sell_kwh = side_totals(book)
    if total_buy_kwh <= 0.0 or total_sell_kwh <= 0.0:
        return ClearingResult(
            filled_kwh=np.zeros(book.n_orders),
            price=np.full(book.n_orders, np.nan),
            buy_price=buy_price,
            sell_price=sell_price,
            pool=True,
            info=info,
        )
    filled_kwh = pool_fills(book.side, book.quantity_kwh, total_buy_kwh, total_sell_kwh)
    return ClearingResult(
        filled_kwh=filled_kwh,
        price=np.where(filled_kwh > 0.0, fill_price, np.nan),
        clearing_price=clearing_price,
        buy_price=buy_price,
        sell_price=sell_price,
        operator_surplus=0.0,
        pool=True,
        info=info,
    )


class MechanismParams(BaseModel):
    """Base of every mechanism's parameter model: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Mechanism(Protocol):
    """What every market mechanism provides. One module per mechanism under `markets/`."""

    name: ClassVar[str]
    family: ClassVar[Family]
    description: ClassVar[str]
    Params: ClassVar[type[MechanismParams]]
    #: True when quantities are net positions and limit prices are ignored (SDR, MMR, ...).
    uses_net_positions: ClassVar[bool]

    @property
    def params(self) -> MechanismParams:
        """The validated parameters this instance clears with."""
        ...

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult: ...


@runtime_checkable
class PeriodSettled(Protocol):
    """Optional capability: a mechanism that prices the whole billing period after the fact
    (bill sharing, the coordinated market's allocation rules). The engine then bills each
    participant `settle_period(...)` of the metered net positions instead of the sum of its
    provisional per-slot costs."""

    def settle_period(
        self, net_kwh: FloatArray, retail_price: FloatArray, feed_in_price: FloatArray
    ) -> FloatArray | None:
        """Energy cost per participant for the period [currency], (P,), from net positions
        (T, P) export positive and tariffs (T,); None keeps the per-slot settlement."""
        ...


def make_params(cls: type[MechanismParams], raw: dict[str, Any] | None) -> MechanismParams:
    """Validate raw parameters (from TOML or CLI) for a mechanism."""
    return cls.model_validate({} if raw is None else raw)


@runtime_checkable
class ImposesPolicy(Protocol):
    """Optional capability: a mechanism whose P2P run needs its own EMS policy for every home
    (the coordinated market's central scheduler, the Stackelberg game's leader and followers);
    the baseline keeps each home's own EMS."""

    ems_policy: ClassVar[str]

    def ems_params(self) -> dict[str, Any] | None:
        """Parameters for that policy (None: its defaults)."""
        ...


@runtime_checkable
class CoreChecked(Protocol):
    """Optional capability: a mechanism that can check whether the period's allocation is in
    the core of the community's cooperative game (the coordinated market)."""

    def core_check(
        self,
        net_kwh: FloatArray,
        retail_price: FloatArray,
        feed_in_price: FloatArray,
        energy_cost: FloatArray,
    ) -> Any:
        """The check's result (`coordination.allocation.CoreCheck`), or None where the
        community is too large to check."""
        ...
