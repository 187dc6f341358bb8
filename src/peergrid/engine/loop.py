"""The simulation loop: `slot_step` for every slot, recorded into preallocated (T, P) arrays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from peergrid.assets.params import THERMAL_NONE
from peergrid.ems.base import EmsPolicy, slot_view
from peergrid.engine.community import Community
from peergrid.engine.step import slot_step
from peergrid.markets.base import Mechanism, NetworkView, Side

FloatArray = NDArray[np.float64]

#: Per-participant series recorded every slot, (T, P) each.
SERIES = (
    "demand_kwh",
    "generation_kwh",
    "battery_charge_kwh",
    "battery_discharge_kwh",
    "ev_charge_kwh",
    "ev_discharge_kwh",
    "thermal_kwh",
    "shiftable_kwh",
    "ev_unserved_kwh",
    "net_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "p2p_bought_kwh",
    "p2p_sold_kwh",
    "p2p_buy_price",
    "p2p_sell_price",
    "cost",
    "battery_soc_end_kwh",
    "ev_soc_end_kwh",
    "indoor_temp_end_c",
)

#: Per-slot market series, (T,) each.
MARKET_SERIES = ("clearing_price", "buy_price", "sell_price", "p2p_traded_kwh", "operator_surplus")

ProgressFn = Callable[[int, int], None]


@dataclass(eq=False)
class Trades:
    """Trade rows gathered over a run, as arrays (pool fills have −1 as the pool's index)."""

    slot: list[NDArray[np.int64]] = field(default_factory=list)
    buyer: list[NDArray[np.int64]] = field(default_factory=list)
    seller: list[NDArray[np.int64]] = field(default_factory=list)
    quantity_kwh: list[FloatArray] = field(default_factory=list)
    price: list[FloatArray] = field(default_factory=list)

    def arrays(self) -> dict[str, NDArray[np.generic]]:
        def cat(parts: list[NDArray[np.generic]], dtype: type) -> NDArray[np.generic]:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        return {
            "slot": cat(self.slot, np.int64),  # type: ignore[arg-type]
            "buyer": cat(self.buyer, np.int64),  # type: ignore[arg-type]
            "seller": cat(self.seller, np.int64),  # type: ignore[arg-type]
            "quantity_kwh": cat(self.quantity_kwh, np.float64),  # type: ignore[arg-type]
            "price": cat(self.price, np.float64),  # type: ignore[arg-type]
        }


@dataclass(frozen=True, eq=False)
class Recorded:
    series: dict[str, FloatArray]
    market: dict[str, FloatArray]
    trades: Trades
    info: dict[str, FloatArray]  # mechanism diagnostics per slot, NaN where it did not clear
    final_state: Any = None  # the EMS state after the last slot (carries policy diagnostics)


POOL = -1


def run_slots(
    community: Community,
    policy: EmsPolicy,
    mechanism: Mechanism | None,
    on_progress: ProgressFn | None = None,
    progress_every: int = 512,
    network: NetworkView | None = None,
) -> Recorded:
    """Run every slot of the community's grid and record what happened. `network` is passed to
    the market in every slot (see `slot_step`)."""
    grid = community.grid
    prof = community.profiles
    assets = community.assets
    n_t, n_p = grid.n_slots, community.n_participants
    dt_h = grid.dt_h
    horizon = max(1, round(policy.horizon_h / dt_h))
    series = {name: np.zeros((n_t, n_p)) for name in SERIES}
    market = {name: np.full(n_t, np.nan) for name in MARKET_SERIES}
    trades = Trades()
    retail = community.retail_price
    feed_in = community.feed_in_price
    info: dict[str, FloatArray] = {}
    state = policy.init_state(assets)
    s = series  # short local names: this is the hot loop
    for t in range(n_t):
        inputs, forecast = slot_view(prof, retail, feed_in, t, horizon, dt_h)
        state, out = slot_step(policy, mechanism, state, inputs, forecast, assets, network)
        d, st, cl = out.dispatch, out.settlement, out.clearing
        s["demand_kwh"][t] = d.demand_kwh
        s["generation_kwh"][t] = d.generation_kwh
        s["battery_charge_kwh"][t] = d.battery_charge_kwh
        s["battery_discharge_kwh"][t] = d.battery_discharge_kwh
        s["ev_charge_kwh"][t] = d.ev_charge_kwh
        s["ev_discharge_kwh"][t] = d.ev_discharge_kwh
        s["thermal_kwh"][t] = d.thermal_kwh
        s["shiftable_kwh"][t] = d.shiftable_kwh
        s["ev_unserved_kwh"][t] = d.ev_unserved_kwh
        s["net_kwh"][t] = out.net_kwh
        s["grid_import_kwh"][t] = st.grid_import_kwh
        s["grid_export_kwh"][t] = st.grid_export_kwh
        s["p2p_bought_kwh"][t] = st.p2p_bought_kwh
        s["p2p_sold_kwh"][t] = st.p2p_sold_kwh
        s["p2p_buy_price"][t] = st.p2p_buy_price
        s["p2p_sell_price"][t] = st.p2p_sell_price
        s["cost"][t] = st.cost
        s["battery_soc_end_kwh"][t] = state.battery_soc_kwh
        s["ev_soc_end_kwh"][t] = state.ev_soc_kwh
        s["indoor_temp_end_c"][t] = state.indoor_temp_c
        if mechanism is not None and out.book.n_orders:
            market["clearing_price"][t] = cl.clearing_price
            market["buy_price"][t] = cl.buy_price
            market["sell_price"][t] = cl.sell_price
            market["operator_surplus"][t] = cl.operator_surplus
            _record_trades(trades, t, out.book.participant, out.book.side, cl)
            for key, value in cl.info.items():
                if key not in info:
                    info[key] = np.full(n_t, np.nan)
                info[key][t] = value
        if on_progress is not None and (t + 1) % progress_every == 0:
            on_progress(t + 1, n_t)
    market["p2p_traded_kwh"] = series["p2p_bought_kwh"].sum(axis=1)
    # a home without a heat pump or air conditioner has no modelled indoor temperature
    series["indoor_temp_end_c"][:, assets.thermal.kind == THERMAL_NONE] = np.nan
    if on_progress is not None:
        on_progress(n_t, n_t)
    return Recorded(series=series, market=market, trades=trades, info=info, final_state=state)


def _record_trades(
    trades: Trades,
    t: int,
    participant: NDArray[np.int64],
    side: NDArray[np.int8],
    cl: object,
) -> None:
    from peergrid.markets.base import ClearingResult

    assert isinstance(cl, ClearingResult)
    if cl.pool:
        filled = np.flatnonzero(cl.filled_kwh > 0)
        if filled.size == 0:
            return
        who = participant[filled]
        is_buy = side[filled] == Side.BUY
        trades.slot.append(np.full(filled.size, t, dtype=np.int64))
        trades.buyer.append(np.where(is_buy, who, POOL))
        trades.seller.append(np.where(is_buy, POOL, who))
        trades.quantity_kwh.append(cl.filled_kwh[filled])
        trades.price.append(cl.price[filled])
    elif cl.trade_kwh.size:
        k = cl.trade_kwh.size
        trades.slot.append(np.full(k, t, dtype=np.int64))
        trades.buyer.append(participant[cl.trade_buy])
        trades.seller.append(participant[cl.trade_sell])
        trades.quantity_kwh.append(cl.trade_kwh)
        trades.price.append(cl.trade_price)
