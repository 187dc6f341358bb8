"""Supply-demand-ratio (SDR) community pricing (Liu et al. 2017).

N. Liu, X. Yu, C. Wang, C. Li, L. Ma, J. Lei, "Energy-sharing model with price-based demand response
for microgrids of peer-to-peer prosumers", IEEE Trans. Power Systems 32(5), 2017. Worked example in
Zhou, Wu & Long, Applied Energy 222, 2018, App. B (see shared/reference/markets.md).

With TBP the community's total buying (Σ of the buyers' net deficits) [kWh], TSP its total selling
[kWh], λ_buy the retail price and λ_sell the feed-in tariff [currency/kWh]:

    SDR = TSP / TBP                                   (TBP = 0 → SDR = ∞)
    0 ≤ SDR ≤ 1:  p_sell = λ_sell·λ_buy / ((λ_buy − λ_sell)·SDR + λ_sell)
                  p_buy  = p_sell·SDR + λ_buy·(1 − SDR)
    SDR > 1:      p_sell = p_buy = λ_sell

p_sell falls from λ_buy at SDR = 0 to λ_sell at SDR = 1 (one public implementation swaps λ_buy and
λ_sell; the tests pin the published example). Both prices lie in [λ_sell, λ_buy] when
λ_buy ≥ λ_sell ≥ 0, the domain this module assumes.

Settlement as per-order fills (what `SupplyDemandRatio.clear` returns): the community's energy
changes hands at p_sell on both sides; the short side fills fully, the long side fills pro rata.
For SDR ≤ 1 every seller fills fully and each buyer fills SDR × its deficit, buying the rest from
the retailer at λ_buy, so its bill is exactly quantity × p_buy. For SDR > 1 every buyer fills fully
and each seller fills (1/SDR) × its surplus, exporting the rest at λ_sell = p_sell. Money balances
exactly: buyers pay p_sell·min(TBP, TSP), sellers receive the same.
"""

from __future__ import annotations

from math import isnan
from typing import ClassVar, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from peergrid.markets.base import (
    ClearingResult,
    Family,
    FloatArray,
    MarketContext,
    MechanismParams,
    OrderBook,
    pool_result,
    side_totals,
)


class SdrPrices(NamedTuple):
    """SDR's two published prices [currency/kWh], arrays broadcast over the inputs."""

    sell_price: FloatArray
    buy_price: FloatArray


def supply_demand_ratio(total_sell_kwh: ArrayLike, total_buy_kwh: ArrayLike) -> FloatArray:
    """SDR = TSP / TBP, with SDR = ∞ where TBP = 0 (also where TSP = TBP = 0) [-].

    Args:
        total_sell_kwh: TSP, the community's total surplus offered [kWh], >= 0.
        total_buy_kwh: TBP, the community's total deficit [kWh], >= 0.
    """
    tsp = np.asarray(total_sell_kwh, dtype=np.float64)
    tbp = np.asarray(total_buy_kwh, dtype=np.float64)
    tsp, tbp = np.broadcast_arrays(tsp, tbp)
    positive = tbp > 0.0
    out = np.full(tsp.shape, np.inf)
    np.divide(tsp, tbp, out=out, where=positive)
    return out


def sdr_prices(sdr: ArrayLike, retail_price: ArrayLike, feed_in_price: ArrayLike) -> SdrPrices:
    """SDR sell and buy prices, vectorised and broadcast over all arguments (e.g. 35,040 slots).

    Args:
        sdr: supply-demand ratio TSP/TBP [-], >= 0; ∞ where nobody buys.
        retail_price: λ_buy, the retailer's import price [currency/kWh].
        feed_in_price: λ_sell, the retailer's export price [currency/kWh], 0 <= λ_sell <= λ_buy.

    Returns:
        `SdrPrices(sell_price, buy_price)` [currency/kWh], both clipped to [λ_sell, λ_buy] so
        rounding never pushes them outside (the clip moves them by at most a few ulps).

    Edge cases: SDR = 0 (nobody sells) gives p_sell = p_buy = λ_buy; SDR ≥ 1 (including ∞, nobody
    buys) gives p_sell = p_buy = λ_sell. With λ_sell = 0 the formula is 0/0 at SDR = 0; this
    function returns λ_buy there, the formula's value for every λ_sell > 0 (no seller is paid it
    anyway). NaN in, NaN out.
    """
    s = np.asarray(sdr, dtype=np.float64)
    lam_buy = np.asarray(retail_price, dtype=np.float64)
    lam_sell = np.asarray(feed_in_price, dtype=np.float64)
    s, lam_buy, lam_sell = np.broadcast_arrays(s, lam_buy, lam_sell)

    short = s <= 1.0  # buyers outnumber sellers in energy terms: the formula branch
    s_short = np.where(short, s, 1.0)  # keeps ∞ out of the arithmetic (no warnings)
    denominator = (lam_buy - lam_sell) * s_short + lam_sell
    p_sell = np.array(lam_buy, dtype=np.float64, copy=True)  # the 0/0 case, see docstring
    np.divide(lam_sell * lam_buy, denominator, out=p_sell, where=denominator > 0.0)
    p_sell = np.clip(p_sell, lam_sell, lam_buy)
    p_buy = np.clip(p_sell * s_short + lam_buy * (1.0 - s_short), lam_sell, lam_buy)

    p_sell = np.where(short, p_sell, lam_sell)
    p_buy = np.where(short, p_buy, lam_sell)
    nan = np.isnan(s)
    if nan.any():
        p_sell = np.where(nan, np.nan, p_sell)
        p_buy = np.where(nan, np.nan, p_buy)
    return SdrPrices(sell_price=p_sell, buy_price=p_buy)


def _sdr_prices_scalar(
    sdr: float, retail_price: float, feed_in_price: float
) -> tuple[float, float]:
    """`sdr_prices` for one slot in plain floats: (p_sell, p_buy). The clearing hot path calls
    this (numpy's per-call overhead on 0-d arrays is ~10x the arithmetic); a test pins it to
    the vectorised function."""
    if isnan(sdr):
        return sdr, sdr
    if sdr > 1.0:
        return feed_in_price, feed_in_price
    denominator = (retail_price - feed_in_price) * sdr + feed_in_price
    p_sell = feed_in_price * retail_price / denominator if denominator > 0.0 else retail_price
    p_sell = min(max(p_sell, feed_in_price), retail_price)
    p_buy = p_sell * sdr + retail_price * (1.0 - sdr)
    p_buy = min(max(p_buy, feed_in_price), retail_price)
    return p_sell, p_buy


class SdrParams(MechanismParams):
    """SDR has no parameters: its prices follow from the book and the retail context."""


class SupplyDemandRatio:
    """Supply-demand-ratio pool pricing; see the module docstring for formulas and fills.

    Quantities are net positions: BUY orders are the participants' deficits, SELL orders their
    surpluses; limit prices are ignored. The book is assumed validated (one net order per
    participant, quantities >= 0); nothing is re-checked here.

    Result conventions: `pool=True`, no bilateral trades; `sell_price` = p_sell, `buy_price` =
    p_buy (published even when nothing trades); `clearing_price` = NaN (SDR publishes two
    prices, not one); per-order `price` = p_sell on both sides where the order fills, NaN where
    it does not; `operator_surplus` = 0. When TBP = 0 or TSP = 0 nothing trades. `info` holds
    `sdr` (∞ when TBP = 0), `total_buy_kwh` and `total_sell_kwh`.
    """

    name: ClassVar[str] = "sdr"
    family: ClassVar[Family] = "community"
    description: ClassVar[str] = (
        "Supply-demand-ratio pricing (Liu et al. 2017): pool prices from the ratio of the "
        "community's total surplus to its total deficit, between feed-in and retail."
    )
    Params: ClassVar[type[MechanismParams]] = SdrParams
    uses_net_positions: ClassVar[bool] = True

    params: MechanismParams

    def __init__(self, params: SdrParams | None = None) -> None:
        self.params = params if params is not None else SdrParams()

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Price one slot's net positions and fill them against the pool."""
        total_buy_kwh, total_sell_kwh = side_totals(book)
        sdr = total_sell_kwh / total_buy_kwh if total_buy_kwh > 0.0 else float("inf")
        p_sell, p_buy = _sdr_prices_scalar(sdr, ctx.retail_price, ctx.feed_in_price)
        info = {"sdr": sdr, "total_buy_kwh": total_buy_kwh, "total_sell_kwh": total_sell_kwh}
        # every shared kWh at p_sell: a buyer's all-in price is then exactly p_buy
        return pool_result(book, fill_price=p_sell, buy_price=p_buy, sell_price=p_sell, info=info)
