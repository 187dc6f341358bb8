"""Settling deviations: metered − committed energy, by the market's deviation rule.

A participant's commitment c (the net of its orders, export positive) splits at gate closure
into its fills in the community f (sold − bought, firm, at the market's prices) and a schedule
with the retailer r = c − f. Delivery meters m; the deviation is d = m − c (d < 0: short, it
delivered less or took more than committed; d > 0: long). The retailer meets what reaches the
meter beyond the fills, x = m − f = r + d, per meter as households' supply contracts do: the
deviation changes the participant's import from the retailer by
Δimport = max(−x, 0) − max(−r, 0) and its export by Δexport = max(x, 0) − max(r, 0). Three rules
(`../shared/reference/settlement.md`; Zhang et al. 2018's Elecbay: peers that fail to deliver
trade the difference with suppliers at less favourable prices and may be penalised):

- ``retail`` — the deviation with the retailer: Δimport at the retail price λ_buy, Δexport at
  the feed-in price λ_sell. A seller that delivers less than it sold buys the shortfall at
  retail; a buyer that takes less than it bought sells the excess at feed-in.
- ``penalty`` — ``retail`` plus a spread s on every kWh of |d|, kept by the market operator (an
  imbalance fee for not delivering the commitment).
- ``net-then-causer`` — deviations are netted inside the community first: the extra imports
  (Δimport > 0) and extra exports (Δexport > 0) that deviations cause offset each other, so
  min(Σ extra import, Σ extra export) kWh change hands inside the community at the slot's
  community reference price p_ref instead of going through the retailer. Only the residual
  reaches the retailer, and it is borne pro rata by those whose deviation caused it (causer
  pays): with more extra import than export, every participant with extra import gets the same
  share of it at p_ref and pays retail for the rest; every extra export earns p_ref. Reductions
  of a participant's own scheduled import or export (Δ < 0) settle at the tariff, as under
  ``retail``: they have no counterparty. p_ref is the market's clearing price, else the
  volume-weighted price of the slot's fills, else the midpoint of λ_buy and λ_sell.

Every rule conserves money: Σ cost = retailer revenue + operator revenue (what moves inside the
community balances). Costs are positive when the participant pays. With no deviation every
rule costs nothing.
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
        retailer_revenue: what the retailer receives for the deviations [currency]
            (negative when it pays out more than it receives).
        operator_revenue: what the market operator receives (penalty spreads) [currency].
        netted_kwh: deviation energy exchanged inside the community [kWh].
    """

    cost: FloatArray
    retailer_revenue: float
    operator_revenue: float
    netted_kwh: float


def settle_deviations(
    schedule_kwh: FloatArray,
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
        schedule_kwh: each participant's schedule with the retailer r = committed − fills,
            (P,) [kWh], export positive.
        deviation_kwh: metered − committed, (P,) [kWh].
        rule: "retail", "net-then-causer" or "penalty".
        retail_price, feed_in_price: the slot's tariff [currency/kWh].
        reference_price: the community reference price p_ref [currency/kWh]
            (`reference_price`); used by "net-then-causer".
        penalty_per_kwh: the spread s of "penalty" [currency/kWh], >= 0.
    """
    r = np.asarray(schedule_kwh, dtype=np.float64)
    d = np.asarray(deviation_kwh, dtype=np.float64)
    x = r + d
    extra_import = np.maximum(-x, 0.0) - np.maximum(-r, 0.0)
    extra_export = np.maximum(x, 0.0) - np.maximum(r, 0.0)
    if rule in ("retail", "penalty"):
        to_retailer = extra_import * retail_price - extra_export * feed_in_price
        if rule == "retail":
            return DeviationSettlement(
                cost=to_retailer,
                retailer_revenue=float(to_retailer.sum()),
                operator_revenue=0.0,
                netted_kwh=0.0,
            )
        spread = penalty_per_kwh * np.abs(d)
        return DeviationSettlement(
            cost=to_retailer + spread,
            retailer_revenue=float(to_retailer.sum()),
            operator_revenue=float(spread.sum()),
            netted_kwh=0.0,
        )
    if rule != "net-then-causer":
        raise ValueError(f"unknown deviation rule {rule!r}")
    more_import = np.maximum(extra_import, 0.0)
    more_export = np.maximum(extra_export, 0.0)
    total_import = float(more_import.sum())
    total_export = float(more_export.sum())
    netted = min(total_import, total_export)
    # the share of each extra import and export that is met inside the community
    share_i = netted / total_import if total_import > 0.0 else 0.0
    share_e = netted / total_export if total_export > 0.0 else 0.0
    inside_i = more_import * share_i
    inside_e = more_export * share_e
    # reductions of the own schedule (Δ < 0) and the residual go through the retailer
    via_retailer = (extra_import - inside_i) * retail_price - (
        extra_export - inside_e
    ) * feed_in_price
    p = reference_price
    cost = via_retailer + (inside_i - inside_e) * p
    return DeviationSettlement(
        cost=cost,
        retailer_revenue=float(via_retailer.sum()),
        operator_revenue=0.0,
        netted_kwh=netted,
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
