"""Settling deviations: metered − committed energy, by the market's deviation rule.

A participant's deviation in a slot is d = metered net − committed net [kWh] (export positive):
d < 0 means it delivered less or took more than it committed (short), d > 0 the opposite
(long). Three rules (`../shared/reference/settlement.md`; Zhang et al. 2018's Elecbay settles
failed promises with suppliers at less favourable prices and may penalise them):

- ``retail`` — each deviation with the retailer: a short participant buys |d| at the retail
  price λ_buy, a long one sells d at the feed-in price λ_sell. What a household's supplier does
  with energy it did not trade in the community.
- ``penalty`` — ``retail`` plus a spread s: short pays λ_buy + s, long receives λ_sell − s
  (which may be negative). The retailer gets its tariff, the market operator the spread.
- ``net-then-causer`` — deviations are netted inside the community first: with S = Σ short |d|
  and L = Σ long d, min(S, L) kWh flow between participants at the slot's community reference
  price p_ref (so deviations that offset each other cost no imbalance), and only the residual
  R = L − S goes to the retailer. The residual's cost (|R|·λ_buy when the community is short,
  −R·λ_sell when long) is borne by the participants whose deviation has the residual's sign,
  pro rata to their deviation (causer pays): short participants together pay p_ref·L + λ_buy·|R|
  and long ones receive p_ref·L when R < 0; long participants receive p_ref·S + λ_sell·R and
  short ones pay p_ref·S when R > 0. The community price p_ref is the market's clearing price,
  else the volume-weighted price of the slot's fills, else the midpoint of λ_buy and λ_sell.

Every rule conserves money: Σ cost = retailer revenue + operator revenue (the netted part moves
between participants). Costs are positive when the participant pays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

DeviationRule = Literal["retail", "net-then-causer", "penalty"]
DEVIATION_RULES: tuple[DeviationRule, ...] = ("retail", "net-then-causer", "penalty")


@dataclass(frozen=True, eq=False)
class DeviationSettlement:
    """What the deviations of one slot cost.

    Attributes:
        cost: each participant's deviation cost (P,) [currency], positive = pays.
        retailer_revenue: what the retailer receives for the energy it supplies or takes
            [currency] (negative when it pays out more than it receives).
        operator_revenue: what the market operator receives (penalty spreads) [currency].
        netted_kwh: deviation energy exchanged inside the community [kWh].
    """

    cost: FloatArray
    retailer_revenue: float
    operator_revenue: float
    netted_kwh: float


def settle_deviations(
    deviation_kwh: FloatArray,
    rule: DeviationRule,
    retail_price: float,
    feed_in_price: float,
    *,
    reference_price: float,
    penalty_per_kwh: float = 0.0,
) -> DeviationSettlement:
    """Settle one slot's deviations (module docstring).

    Args:
        deviation_kwh: metered − committed net of each participant, (P,) [kWh].
        rule: "retail", "net-then-causer" or "penalty".
        retail_price, feed_in_price: the slot's tariff [currency/kWh].
        reference_price: the community reference price p_ref [currency/kWh]
            (`reference_price`); used by "net-then-causer".
        penalty_per_kwh: the spread s of "penalty" [currency/kWh], >= 0.
    """
    d = np.asarray(deviation_kwh, dtype=np.float64)
    short = np.maximum(-d, 0.0)
    long = np.maximum(d, 0.0)
    if rule in ("retail", "penalty"):
        s = penalty_per_kwh if rule == "penalty" else 0.0
        to_retailer = short * retail_price - long * feed_in_price
        cost = to_retailer + s * (short + long)
        return DeviationSettlement(
            cost=cost,
            retailer_revenue=float(to_retailer.sum()),
            operator_revenue=float(s * (short.sum() + long.sum())),
            netted_kwh=0.0,
        )
    if rule != "net-then-causer":
        raise ValueError(f"unknown deviation rule {rule!r}")
    total_short = float(short.sum())
    total_long = float(long.sum())
    p = reference_price
    if total_short >= total_long:  # community short (or balanced): shorts pay for everything
        residual = total_short - total_long
        bill = p * total_long + retail_price * residual
        share = np.divide(short, total_short, out=np.zeros_like(short), where=total_short > 0)
        cost = share * bill - long * p
        retailer = retail_price * residual
    else:  # community long: longs receive for everything
        residual = total_long - total_short
        revenue = p * total_short + feed_in_price * residual
        share = np.divide(long, total_long, out=np.zeros_like(long), where=total_long > 0)
        cost = short * p - share * revenue
        retailer = -feed_in_price * residual
    return DeviationSettlement(
        cost=cost,
        retailer_revenue=float(retailer),
        operator_revenue=0.0,
        netted_kwh=min(total_short, total_long),
    )


def reference_price(
    clearing_price: float,
    fill_kwh: FloatArray,
    fill_price: FloatArray,
    retail_price: float,
    feed_in_price: float,
) -> float:
    """The slot's community reference price [currency/kWh]: the mechanism's clearing price if
    it has one, else the volume-weighted price of the fills, else the tariff midpoint."""
    if np.isfinite(clearing_price):
        return float(clearing_price)
    filled = fill_kwh > 0.0
    volume = float(fill_kwh[filled].sum())
    if volume > 0.0:
        return float(fill_kwh[filled] @ fill_price[filled]) / volume
    return 0.5 * (retail_price + feed_in_price)
