"""The slot step: EMS decisions → orders → clearing → settlement, for one slot.

A pure function of explicit state and inputs. The simulator's loop calls it once per slot; a live
server calls it when a slot closes, with the inputs its meters and agents reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peergrid.assets.params import AssetParams
from peergrid.ems.base import Dispatch, EmsPolicy, Forecast, SlotInputs
from peergrid.markets.base import ClearingResult, MarketContext, Mechanism, NetworkView, OrderBook
from peergrid.settlement.slot import FloatArray, SlotSettlement, orders_from_net, settle_slot


@dataclass(frozen=True, eq=False)
class SlotOutcome:
    """Everything that happened in one slot."""

    dispatch: Dispatch
    net_kwh: FloatArray
    book: OrderBook
    clearing: ClearingResult
    settlement: SlotSettlement


def slot_step(
    policy: EmsPolicy,
    mechanism: Mechanism | None,
    state: Any,
    inputs: SlotInputs,
    forecast: Forecast,
    assets: AssetParams,
    network: NetworkView | None = None,
) -> tuple[Any, SlotOutcome]:
    """Advance one slot. `mechanism=None` means no market: everyone deals with the retailer.
    `network` is what the network operator shows the market (None without a feeder)."""
    state, dispatch = policy.step(state, inputs, forecast, assets)
    net = dispatch.net_kwh
    book = orders_from_net(net, dispatch.buy_limit_price, dispatch.sell_limit_price)
    if mechanism is None or book.n_orders == 0:
        clearing = ClearingResult.nothing(book.n_orders)
    else:
        ctx = MarketContext(
            retail_price=inputs.retail_price,
            feed_in_price=inputs.feed_in_price,
            dt_h=inputs.dt_h,
            slot=inputs.t,
            network=network,
        )
        clearing = mechanism.clear(book, ctx)
    settlement = settle_slot(net, book, clearing, inputs.retail_price, inputs.feed_in_price)
    return state, SlotOutcome(dispatch, net, book, clearing, settlement)
