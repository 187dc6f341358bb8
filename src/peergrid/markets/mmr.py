"""Mid-market-rate (MMR) community pricing (Long et al. 2017).

C. Long, J. Wu, C. Zhang, L. Thomas, M. Cheng, N. Jenkins, "Peer-to-peer energy trading in a
community microgrid", IEEE PES General Meeting 2017. Compared with SDR and bill sharing in Zhou,
Wu & Long, Applied Energy 222, 2018 (see shared/reference/markets.md).

With G the community's total surplus (Σ of the sellers' net surpluses) [kWh], D its total deficit
[kWh], λ_buy the retail price and λ_sell the feed-in tariff [currency/kWh], and
p_mid = (λ_buy + λ_sell)/2:

    G = D:  p_sell = p_buy = p_mid
    G < D:  p_sell = p_mid,  p_buy  = [G·p_mid + (D − G)·λ_buy] / D
    G > D:  p_buy  = p_mid,  p_sell = [D·p_mid + (G − D)·λ_sell] / G

p_buy is a volume-weighted mix of p_mid and λ_buy, p_sell one of p_mid and λ_sell, so both lie in
[λ_sell, λ_buy] whenever λ_sell <= λ_buy. The quantities must be the netted positions (the ones
the meters bill): the rule prices each participant's whole net position.

Settlement as per-order fills (what `MidMarketRate.clear` returns), as in `sdr`: the short side
fills fully, the long side pro rata, and every filled kWh changes hands at p_mid on both sides.
This is the only per-kWh price that makes the published all-in prices exact: for G < D a buyer
with deficit q fills q·G/D, and fill·x + (q − fill)·λ_buy = q·p_buy holds for x = p_mid; a
seller fills q, so x = p_sell = p_mid. For G > D symmetrically x = p_mid with the rest exported
at λ_sell.

Budget balance (checked, and pinned by the property tests): at the pool level MMR is exactly
budget balanced. Buyers pay p_mid·min(G, D) for their fills and sellers receive the same, so
`operator_surplus` = 0; and the all-in bills add up to the community's grid bill,
D·p_buy − G·p_sell = λ_buy·max(D − G, 0) − λ_sell·max(G − D, 0), in each of the three cases. The
balance is lost only when the rule is applied to gross flows that the meter nets (a participant
importing and exporting in one slot), which is why the book must hold one net order per
participant.
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


class MmrPrices(NamedTuple):
    """MMR's two published prices [currency/kWh], arrays broadcast over the inputs."""

    sell_price: FloatArray
    buy_price: FloatArray


def mmr_prices(
    total_sell_kwh: ArrayLike,
    total_buy_kwh: ArrayLike,
    retail_price: ArrayLike,
    feed_in_price: ArrayLike,
) -> MmrPrices:
    """MMR sell and buy prices, vectorised and broadcast over all arguments (e.g. 35,040 slots).

    Args:
        total_sell_kwh: G, the community's total surplus [kWh], >= 0.
        total_buy_kwh: D, the community's total deficit [kWh], >= 0.
        retail_price: λ_buy, the retailer's import price [currency/kWh].
        feed_in_price: λ_sell, the retailer's export price [currency/kWh], <= λ_buy.

    Returns:
        `MmrPrices(sell_price, buy_price)` [currency/kWh], clipped to [λ_sell, λ_buy] so that
        rounding never pushes them outside (the clip moves them by at most a few ulps).

    Edge cases: G = 0 < D gives p_sell = p_mid (no seller is paid it), p_buy = λ_buy; D = 0 < G
    gives p_buy = p_mid, p_sell = λ_sell; G = D = 0 gives both p_mid. NaN in, NaN out.
    """
    g = np.asarray(total_sell_kwh, dtype=np.float64)
    d = np.asarray(total_buy_kwh, dtype=np.float64)
    lam_buy = np.asarray(retail_price, dtype=np.float64)
    lam_sell = np.asarray(feed_in_price, dtype=np.float64)
    g, d, lam_buy, lam_sell = np.broadcast_arrays(g, d, lam_buy, lam_sell)
    p_mid = 0.5 * (lam_buy + lam_sell)

    short = g < d  # undersupply: sellers get p_mid, buyers a mix of p_mid and retail
    long = g > d  # oversupply: buyers pay p_mid, sellers a mix of p_mid and feed-in
    # The published formulas in the equivalent form p_mid ± (1 − ratio)·(spread to the tariff):
    # no product of an energy and a price (which can underflow) and p_sell <= p_mid <= p_buy
    # survives rounding. where=... keeps 0/0 out (the masks guarantee a positive denominator).
    unmet = 1.0 - np.divide(g, d, out=np.ones(g.shape), where=short)
    unsold = 1.0 - np.divide(d, g, out=np.ones(g.shape), where=long)
    p_buy = np.where(short, p_mid + unmet * (lam_buy - p_mid), p_mid)
    p_sell = np.where(long, p_mid - unsold * (p_mid - lam_sell), p_mid)
    p_buy = np.clip(p_buy, lam_sell, lam_buy)
    p_sell = np.clip(p_sell, lam_sell, lam_buy)
    nan = np.isnan(g) | np.isnan(d)
    if nan.any():
        p_sell = np.where(nan, np.nan, p_sell)
        p_buy = np.where(nan, np.nan, p_buy)
    return MmrPrices(sell_price=p_sell, buy_price=p_buy)


def _mmr_prices_scalar(
    total_sell_kwh: float, total_buy_kwh: float, retail_price: float, feed_in_price: float
) -> tuple[float, float]:
    """`mmr_prices` for one slot in plain floats: (p_sell, p_buy). The clearing hot path calls
    this (numpy's per-call overhead on 0-d arrays dwarfs the arithmetic); a test pins it to the
    vectorised function."""
    g, d = total_sell_kwh, total_buy_kwh
    if isnan(g) or isnan(d):
        return float("nan"), float("nan")
    p_mid = 0.5 * (retail_price + feed_in_price)
    p_sell = p_buy = p_mid
    if g < d:
        p_buy = p_mid + (1.0 - g / d) * (retail_price - p_mid)
    elif g > d:
        p_sell = p_mid - (1.0 - d / g) * (p_mid - feed_in_price)
    p_buy = min(max(p_buy, feed_in_price), retail_price)
    p_sell = min(max(p_sell, feed_in_price), retail_price)
    return p_sell, p_buy


class MmrParams(MechanismParams):
    """MMR has no parameters: its prices follow from the book and the retail context."""


class MidMarketRate:
    """Mid-market-rate pool pricing; see the module docstring for formulas, fills and budget
    balance.

    Quantities are net positions: BUY orders are the participants' deficits, SELL orders their
    surpluses; limit prices are ignored. The book is assumed validated (one net order per
    participant, quantities >= 0); nothing is re-checked here.

    Result conventions: `pool=True`, no bilateral trades; `sell_price` = p_sell, `buy_price` =
    p_buy (published even when nothing trades); `clearing_price` = p_mid when energy is shared,
    NaN otherwise; per-order `price` = p_mid on both sides where the order fills, NaN where it
    does not; `operator_surplus` = 0. When G = 0 or D = 0 nothing trades. `info` holds
    `total_buy_kwh`, `total_sell_kwh` and `mid_price`.
    """

    name: ClassVar[str] = "mmr"
    family: ClassVar[Family] = "community"
    description: ClassVar[str] = (
        "Mid-market rate (Long et al. 2017): shared energy trades at the mean of retail and "
        "feed-in; the long side's remainder settles with the retailer, averaged into its price."
    )
    Params: ClassVar[type[MechanismParams]] = MmrParams
    uses_net_positions: ClassVar[bool] = True

    params: MechanismParams

    def __init__(self, params: MmrParams | None = None) -> None:
        self.params = params if params is not None else MmrParams()

    def clear(self, book: OrderBook, ctx: MarketContext) -> ClearingResult:
        """Price one slot's net positions and fill them against the pool."""
        total_buy_kwh, total_sell_kwh = side_totals(book)
        p_sell, p_buy = _mmr_prices_scalar(
            total_sell_kwh, total_buy_kwh, ctx.retail_price, ctx.feed_in_price
        )
        p_mid = 0.5 * (ctx.retail_price + ctx.feed_in_price)
        info = {
            "total_buy_kwh": total_buy_kwh,
            "total_sell_kwh": total_sell_kwh,
            "mid_price": p_mid,
        }
        # every shared kWh at p_mid: the only price giving each side its all-in MMR price
        return pool_result(
            book,
            fill_price=p_mid,
            buy_price=p_buy,
            sell_price=p_sell,
            info=info,
            clearing_price=p_mid,
        )
