"""The simulator's loop: the lifecycle phases in time order, recorded into (T, P) arrays.

`run_lifecycle` walks the run's slots; before delivering slot s it holds every gate that closes
at or before s (`bid`, then `clear` for each slot the gate closes), then it delivers and
settles s. `run_realtime` is a community without a market: each home's EMS decides every slot on
its actual inputs (the no-P2P baseline). Everything inside a phase is vectorised across
participants; nothing in the loop touches pandas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from peergrid.assets.params import THERMAL_NONE, AssetParams
from peergrid.ems.base import EmsPolicy, EmsState, physical_of
from peergrid.ems.common import build_constants
from peergrid.ems.driver import energy_forecast_slots, horizon_slots
from peergrid.engine.feed import ForecastFeed
from peergrid.engine.lifecycle import (
    Cleared,
    EmsRuntime,
    GateInputs,
    bid,
    clear,
    deliver,
    init_runtime,
    settle,
    step_realtime,
)
from peergrid.engine.series import MARKET, RECORDED
from peergrid.markets.base import (
    BUY_CODE,
    ClearingResult,
    MarketContext,
    Mechanism,
    NetworkView,
    OrderBook,
)
from peergrid.markets.gate import GateSchedule
from peergrid.settlement.deviation import DeviationRule
from peergrid.settlement.slot import SlotSettlement

FloatArray = NDArray[np.float64]
ProgressFn = Callable[[int, int], None]

#: The buyer or seller index of a trade with the community pool.
POOL = -1


class Journal(Protocol):
    """What a run reports phase by phase, in lifecycle order (the run's ledger,
    `engine.ledger.RunLedger`)."""

    def gate(self, gate_slot: int, first_slot: int, books: Sequence[OrderBook]) -> None:
        """A gate closed: the books of the slots it closes, from `first_slot` on."""

    def cleared(self, slot: int, cl: Cleared) -> None:
        """A slot cleared."""

    def delivered(
        self,
        slot: int,
        metered_net_kwh: FloatArray,
        st: SlotSettlement,
        retail_price: float,
        feed_in_price: float,
    ) -> None:
        """A slot delivered, metered and settled."""


@dataclass(eq=False)
class Trades:
    """Every slot's clearing, kept by reference and turned into trade rows once, after the run
    (pool fills have `POOL` as counterparty)."""

    _pool: list[tuple[int, NDArray[np.int64], NDArray[np.int8], FloatArray, FloatArray]] = field(
        default_factory=list
    )
    _pairs: list[tuple[int, NDArray[np.int64], ClearingResult]] = field(default_factory=list)

    def add(
        self,
        t: int,
        book_participant: NDArray[np.int64],
        side: NDArray[np.int8],
        cl: ClearingResult,
    ) -> None:
        """The trades of slot t's clearing (stored as they are; `arrays` makes the rows)."""
        if cl.pool:
            self._pool.append((t, book_participant, side, cl.filled_kwh, cl.price))
        elif cl.trade_kwh.size:
            self._pairs.append((t, book_participant, cl))

    def arrays(self) -> dict[str, NDArray[np.generic]]:
        """One row per trade, in slot order: slot, buyer, seller, quantity_kwh, price."""
        parts: list[tuple[NDArray[np.int64], ...]] = []
        floats: list[tuple[FloatArray, FloatArray]] = []
        if self._pool:
            t = np.concatenate([np.full(p[1].size, p[0], dtype=np.int64) for p in self._pool])
            who = np.concatenate([p[1] for p in self._pool])
            side = np.concatenate([p[2] for p in self._pool])
            filled = np.concatenate([p[3] for p in self._pool])
            price = np.concatenate([p[4] for p in self._pool])
            keep = filled > 0
            is_buy = side[keep] == BUY_CODE
            who = who[keep]
            parts.append((t[keep], np.where(is_buy, who, POOL), np.where(is_buy, POOL, who)))
            floats.append((filled[keep], price[keep]))
        for t_, who, cl in self._pairs:
            k = cl.trade_kwh.size
            parts.append((np.full(k, t_, dtype=np.int64), who[cl.trade_buy], who[cl.trade_sell]))
            floats.append((cl.trade_kwh, cl.trade_price))
        if not parts:
            empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0)
            return {
                "slot": empty_i,
                "buyer": empty_i,
                "seller": empty_i.copy(),
                "quantity_kwh": empty_f,
                "price": empty_f.copy(),
            }
        slot = np.concatenate([p[0] for p in parts])
        order = np.argsort(slot, kind="stable")
        return {
            "slot": slot[order],
            "buyer": np.concatenate([p[1] for p in parts])[order],
            "seller": np.concatenate([p[2] for p in parts])[order],
            "quantity_kwh": np.concatenate([f[0] for f in floats])[order],
            "price": np.concatenate([f[1] for f in floats])[order],
        }


@dataclass(frozen=True, eq=False)
class Recorded:
    """What a run recorded.

    Attributes:
        series: per-participant series (T, P) by name (`engine.series.RECORDED`).
        market: per-slot market series (T,) by name (`engine.series.MARKET`).
        trades: every trade.
        info: mechanism diagnostics per slot, NaN where it did not clear.
        final_state: the EMS state after the last slot (carries policy diagnostics).
        curtailed_kwh: PV curtailed below the actual generation, (T, P) [kWh].
    """

    series: dict[str, FloatArray]
    market: dict[str, FloatArray]
    trades: Trades
    info: dict[str, FloatArray]
    final_state: EmsState | None
    curtailed_kwh: FloatArray


def run_lifecycle(
    feed: ForecastFeed,
    assets: AssetParams,
    policy: EmsPolicy[Any],
    mechanism: Mechanism | None,
    gates: GateSchedule,
    *,
    network: NetworkView | None = None,
    deviation_rule: DeviationRule = "retail",
    penalty_per_kwh: float = 0.0,
    on_progress: ProgressFn | None = None,
    progress_every: int = 512,
    journal: Journal | None = None,
) -> Recorded:
    """Simulate every slot through the lifecycle (module docstring); `journal` hears every
    phase's result in order."""
    n_t, n_p = feed.profiles.base_demand_kwh.shape
    dt_h = feed.dt_h
    horizon = horizon_slots(policy, dt_h)
    energy = energy_forecast_slots(policy, dt_h)
    series = {s.name: np.zeros((n_t, n_p)) for s in RECORDED}
    market = {s.name: np.full(n_t, np.nan) for s in MARKET}
    order = ("dispatch", "settlement", "end", "plan", "commitment")
    record = [(series[s.name], order.index(s.source), s.attr) for s in RECORDED]
    trades = Trades()
    info: dict[str, FloatArray] = {}
    retail, feed_in = feed.retail_price, feed.feed_in_price
    c = build_constants(assets, dt_h, 0.0)
    runtime: EmsRuntime[Any] = init_runtime(policy, assets)
    cleared: dict[int, Cleared] = {}
    gate_slot, first, stop = gates.gate_slot, gates.first_slot, gates.stop_slot
    n_gates, gi = gates.n_gates, 0
    for t in range(n_t):
        while gi < n_gates and gate_slot[gi] <= t:
            a, n = int(first[gi]), int(stop[gi] - first[gi])
            rows = min(n_t - a, n + horizon - 1)
            gate = GateInputs(
                gate_slot=int(gate_slot[gi]),
                first_slot=a,
                n_slots=n,
                dt_h=dt_h,
                forecast=feed.window(int(gate_slot[gi]), a, rows, n + energy - 1),
                horizon_slots=horizon,
                ev_returns=feed.returns[a : a + rows],
                ev_trip_kwh=feed.trips(a, rows),
            )
            runtime, bids = bid(policy, runtime, gate, assets, clip=c)
            if journal is not None:
                journal.gate(int(gate_slot[gi]), a, bids.books)
            for k in range(n):
                s = a + k
                ctx = MarketContext(
                    retail_price=float(retail[s]),
                    feed_in_price=float(feed_in[s]),
                    dt_h=dt_h,
                    slot=s,
                    network=network,
                )
                position = bids.plans[k].dispatch.net_kwh
                cl = clear(mechanism, bids.books[k], ctx, n_p, position)
                cleared[s] = cl
                if journal is not None:
                    journal.cleared(s, cl)
                if mechanism is not None and cl.book.n_orders:
                    res = cl.result
                    market["clearing_price"][s] = res.clearing_price
                    market["buy_price"][s] = res.buy_price
                    market["sell_price"][s] = res.sell_price
                    market["operator_surplus"][s] = res.operator_surplus
                    trades.add(s, cl.book.participant, cl.book.side, res)
                    for key, value in res.info.items():
                        if key not in info:
                            info[key] = np.full(n_t, np.nan)
                        info[key][s] = value
            gi += 1
        cl = cleared.pop(t)
        plan = runtime.pending[0]
        exp, imp = feed.limits(t)
        runtime, dl = deliver(
            runtime,
            t,
            feed.actual(t),
            cl.commitment.committed_kwh,
            c=c,
            ev_slots_to_departure=feed.departure[t],
            export_limit_kwh=exp,
            import_limit_kwh=imp,
        )
        st = settle(
            cl.commitment, dl, float(retail[t]), float(feed_in[t]), deviation_rule, penalty_per_kwh
        )
        if journal is not None:
            journal.delivered(t, dl.dispatch.net_kwh, st, float(retail[t]), float(feed_in[t]))
        market["retailer_revenue"][t] = st.retailer_revenue
        market["operator_revenue"][t] = st.operator_revenue
        sources = (dl.dispatch, st, dl.end, plan, cl.commitment)
        for arr, source, attr in record:
            arr[t] = getattr(sources[source], attr)
        if on_progress is not None and (t + 1) % progress_every == 0:
            on_progress(t + 1, n_t)
    _no_indoor_temperature(series, assets)
    if on_progress is not None:
        on_progress(n_t, n_t)
    curtailed = np.maximum(feed.profiles.pv_kwh - series["generation_kwh"], 0.0)
    return Recorded(series, market, trades, info, runtime.plan, curtailed)


def run_realtime(
    feed: ForecastFeed,
    assets: AssetParams,
    policy: EmsPolicy[Any],
    record: tuple[str, ...] | None = None,
) -> Recorded:
    """A community without a market: each home's EMS decides every slot on its actual inputs,
    with the forecasts issued at the slot for the slots ahead; everything with the retailer.
    `record` names the dispatch and end-state series to keep (default: all of them)."""
    n_t, n_p = feed.profiles.base_demand_kwh.shape
    dt_h = feed.dt_h
    horizon = horizon_slots(policy, dt_h)
    energy = energy_forecast_slots(policy, dt_h)
    names = [
        s
        for s in RECORDED
        if s.source in ("dispatch", "end") and (record is None or s.name in record)
    ]
    series = {s.name: np.zeros((n_t, n_p)) for s in names}
    curtailed = np.zeros((n_t, n_p))
    state: Any = policy.init_state(assets)
    for t in range(n_t):
        inputs = feed.actual(t)
        window = feed.window(t, t, min(horizon, n_t - t), energy)
        exp, imp = feed.limits(t)
        state, d = step_realtime(policy, state, inputs, window, assets, exp, imp)
        end = physical_of(state)
        for s in names:
            series[s.name][t] = getattr(d if s.source == "dispatch" else end, s.attr)
        curtailed[t] = np.maximum(inputs.pv_kwh - d.generation_kwh, 0.0)
    _no_indoor_temperature(series, assets)
    empty_market = {s.name: np.full(n_t, np.nan) for s in MARKET}
    return Recorded(series, empty_market, Trades(), {}, state, curtailed)


def _no_indoor_temperature(series: dict[str, FloatArray], assets: AssetParams) -> None:
    """A home without a heat pump or air conditioner has no modelled indoor temperature."""
    if "indoor_temp_end_c" in series:
        series["indoor_temp_end_c"][:, assets.thermal.kind == THERMAL_NONE] = np.nan
