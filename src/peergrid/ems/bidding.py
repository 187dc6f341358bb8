"""Limit prices with which participants bid their deficit and offer their surplus.

Every price lies between the feed-in price λ_sell and the retail price λ_buy of the slot, since
no participant pays more for community energy than the retailer charges, nor sells it for less
than the retailer pays:

    buy limit  = λ_sell + a_n·(λ_buy − λ_sell),   a_n ~ U[buy_low, buy_high]
    sell limit = λ_sell + b_n·(λ_buy − λ_sell),   b_n ~ U[sell_low, sell_high]

The factors a_n, b_n are drawn once per run and participant (its "bidding temperament"), so a
run is reproducible from its seed. With the defaults (a ∈ [0.5, 1], b ∈ [0, 0.5]) every buyer's
limit is at least every seller's, so the community market can always match them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
from pydantic import BaseModel, Field, model_validator

from peergrid.assets.params import FloatArray


class BiddingParams(BaseModel):
    """Ranges of the per-participant bidding factors (fractions of the retail/feed-in spread)."""

    bid_buy_low: float = Field(0.5, ge=0.0, le=1.0, description="lowest buy factor a_n [-]")
    bid_buy_high: float = Field(1.0, ge=0.0, le=1.0, description="highest buy factor a_n [-]")
    bid_sell_low: float = Field(0.0, ge=0.0, le=1.0, description="lowest sell factor b_n [-]")
    bid_sell_high: float = Field(0.5, ge=0.0, le=1.0, description="highest sell factor b_n [-]")

    @model_validator(mode="after")
    def _ranges_ordered(self) -> Self:
        if self.bid_buy_low > self.bid_buy_high:
            raise ValueError(
                f"bid_buy_low must be <= bid_buy_high (got {self.bid_buy_low} > "
                f"{self.bid_buy_high})"
            )
        if self.bid_sell_low > self.bid_sell_high:
            raise ValueError(
                f"bid_sell_low must be <= bid_sell_high (got {self.bid_sell_low} > "
                f"{self.bid_sell_high})"
            )
        return self


@dataclass(frozen=True, eq=False, slots=True)
class BidFactors:
    """Per-participant bidding factors a_n (buy) and b_n (sell), (P,) [-]."""

    buy: FloatArray
    sell: FloatArray


def draw_factors(
    params: BiddingParams, n_participants: int, rng: np.random.Generator
) -> BidFactors:
    """Draw a_n then b_n, uniformly in their ranges, one per participant."""
    buy = rng.uniform(params.bid_buy_low, params.bid_buy_high, size=n_participants)
    sell = rng.uniform(params.bid_sell_low, params.bid_sell_high, size=n_participants)
    # uniform(low, high) may return high itself by rounding; clip so the range is closed.
    buy = np.clip(buy, params.bid_buy_low, params.bid_buy_high)
    sell = np.clip(sell, params.bid_sell_low, params.bid_sell_high)
    buy.flags.writeable = False
    sell.flags.writeable = False
    return BidFactors(buy=buy, sell=sell)


def limit_prices(
    factors: BidFactors, retail_price: float, feed_in_price: float
) -> tuple[FloatArray, FloatArray]:
    """Buy and sell limit prices of every participant in one slot, (P,) [currency/kWh]."""
    spread = retail_price - feed_in_price
    return feed_in_price + factors.buy * spread, feed_in_price + factors.sell * spread
