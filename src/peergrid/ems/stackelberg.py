"""Stackelberg game between the community manager (leader) and the prosumers (followers).

After N. Liu, X. Yu, C. Wang, C. Li, L. Ma, J. Lei, "Energy-sharing model with price-based demand
response for microgrids of peer-to-peer prosumers", IEEE Trans. Power Systems 32(5), 2017,
Algorithm 1. Over each planning horizon (a day ahead by default):

1. the leader announces internal buy and sell prices for every slot, starting from the tariff;
2. every follower answers with its best response: its own EMS (the `price-aware` policy) plans
   battery, EV, heat pump and appliances against those prices, which gives every participant's
   net position in every slot;
3. the leader re-prices each slot with the supply-demand-ratio rule (`markets/sdr.py`) from the
   followers' net positions;
4. repeat from 2 with averaged prices p_{k+1} = p_k + (p_new − p_k)/(k + 2) (fictitious play)
   until the mean price residual |p_new − p| over the horizon's slots is below
   `tolerance_per_kwh`, or `max_iterations` is reached. A horizon that does not converge is
   reported and falls back to the retailer's prices (the followers then plan against the tariff).

Why averaging and a mean residual: Liu et al.'s followers have concave utilities and answer
continuously; peergrid's followers are rule-based EMSs that move a whole appliance run or EV
charge to the cheapest slot, so their answer jumps and an exact fixed point need not exist.
Measured on the demo's first day: a damped iteration (0.5 or 0.2) oscillates with a worst-slot
residual of 0.05-0.1 EUR/kWh forever; averaging brings the mean residual down like 1/k (0.005
EUR/kWh after about 25 iterations) while a few slots keep flipping. The plan is therefore an
ε-equilibrium in the mean; the worst-slot residual is reported next to it.

The followers' answers in steps 2-4 are simulated from the current state with the forecast
window; trip energies of EVs are not in the forecast and are taken as zero in the simulation
(the real trips are applied when they happen). The slot itself is then run by the follower
policy against the converged prices; the market clears the realised net positions with SDR.

Diagnostics (plans made, iterations, plans that did not converge) travel in the state, so that
`step` stays a pure function.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import Field

from peergrid.assets.params import AssetParams, FloatArray, IntArray
from peergrid.ems.base import Dispatch, EmsParams, Forecast, PhysicalState, SlotInputs
from peergrid.ems.price_aware import PriceAware, PriceAwareParams, PriceAwareState
from peergrid.markets.sdr import sdr_prices


class StackelbergParams(EmsParams):
    """Parameters of the leader-follower iteration (followers use `price-aware` defaults)."""

    horizon_h: float = Field(24.0, gt=0.0, le=168.0, description="planning horizon [h]")
    max_iterations: int = Field(60, ge=1, le=10_000, description="leader updates per horizon")
    tolerance_per_kwh: float = Field(
        5e-3,
        gt=0.0,
        description="converged when the mean price residual is below this [currency/kWh]",
    )
    follower: dict[str, Any] = Field(
        default_factory=dict, description="parameters of the followers' price-aware EMS"
    )


@dataclass(frozen=True, eq=False)
class StackelbergState:
    """The followers' own state plus the leader's current price plan."""

    inner: PriceAwareState
    plan_start: int  # slot index at which the current price plan starts (-1: none yet)
    plan_buy: FloatArray  # internal buy price per planned slot [currency/kWh]
    plan_sell: FloatArray  # internal sell price per planned slot [currency/kWh]
    plans: int
    iterations: int
    max_iterations_used: int
    not_converged: int
    last_mean_residual: float
    last_max_residual: float

    @property
    def battery_soc_kwh(self) -> FloatArray:
        return self.inner.battery_soc_kwh

    @property
    def ev_soc_kwh(self) -> FloatArray:
        return self.inner.ev_soc_kwh

    @property
    def indoor_temp_c(self) -> FloatArray:
        return self.inner.indoor_temp_c

    def with_physical(self, physical: PhysicalState) -> Self:
        """This state with the followers' physical state replaced."""
        return dataclasses.replace(self, inner=self.inner.with_physical(physical))

    def job_start_slot(self) -> IntArray:
        """Start slot of every shiftable job (−1: not started), from the followers' state."""
        return self.inner.job_start_slot()

    @property
    def diagnostics(self) -> dict[str, float]:
        return {
            "plans": float(self.plans),
            "iterations": float(self.iterations),
            "iterations_per_plan": self.iterations / self.plans if self.plans else 0.0,
            "max_iterations_used": float(self.max_iterations_used),
            "not_converged": float(self.not_converged),
            "last_mean_residual_per_kwh": self.last_mean_residual,
            "last_max_residual_per_kwh": self.last_max_residual,
        }


def _with_prices(forecast: Forecast, buy: FloatArray, sell: FloatArray) -> Forecast:
    return dataclasses.replace(forecast, retail_price=buy, feed_in_price=sell)


class Stackelberg:
    """The `stackelberg` policy (module docstring)."""

    name: ClassVar[str] = "stackelberg"
    description: ClassVar[str] = (
        "Stackelberg game (Liu et al. 2017): the community manager iterates internal SDR "
        "prices with the homes' price-aware best responses to a fixed point"
    )
    Params: ClassVar[type[EmsParams]] = StackelbergParams
    observes_market: ClassVar[bool] = False
    reads_energy_forecast: ClassVar[bool] = True

    def __init__(
        self, params: StackelbergParams, n_participants: int, rng: np.random.Generator
    ) -> None:
        self.params = params
        self.horizon_h = params.horizon_h
        follower = PriceAwareParams.model_validate(
            {"horizon_h": params.horizon_h, **params.follower}
        )
        self.follower = PriceAware(follower, n_participants, rng)

    def init_state(self, assets: AssetParams) -> StackelbergState:
        return StackelbergState(
            inner=self.follower.init_state(assets),
            plan_start=-1,
            plan_buy=np.zeros(0),
            plan_sell=np.zeros(0),
            plans=0,
            iterations=0,
            max_iterations_used=0,
            not_converged=0,
            last_mean_residual=0.0,
            last_max_residual=0.0,
        )

    def _answer(
        self,
        inner: Any,
        inputs: SlotInputs,
        forecast: Forecast,
        assets: AssetParams,
        buy: FloatArray,
        sell: FloatArray,
    ) -> FloatArray:
        """The followers' net positions over the window (H, P) against prices (buy, sell)."""
        n_rows = forecast.retail_price.shape[0]
        net = np.empty((n_rows, assets.n_participants))
        state = inner
        zeros = np.zeros(assets.n_participants)
        for k in range(n_rows):
            window = Forecast(
                base_demand_kwh=forecast.base_demand_kwh[k:],
                pv_kwh=forecast.pv_kwh[k:],
                temp_out_c=forecast.temp_out_c[k:],
                ev_plugged=forecast.ev_plugged[k:],
                retail_price=buy[k:],
                feed_in_price=sell[k:],
            )
            slot = SlotInputs(
                t=inputs.t + k,
                dt_h=inputs.dt_h,
                base_demand_kwh=forecast.base_demand_kwh[k],
                pv_kwh=forecast.pv_kwh[k],
                temp_out_c=float(forecast.temp_out_c[k]),
                ev_plugged=forecast.ev_plugged[k],
                ev_trip_kwh=inputs.ev_trip_kwh if k == 0 else zeros,
                retail_price=float(buy[k]),
                feed_in_price=float(sell[k]),
            )
            state, d = self.follower.step(state, slot, window, assets)
            net[k] = d.net_kwh
        return net

    def _plan(
        self,
        state: StackelbergState,
        inputs: SlotInputs,
        forecast: Forecast,
        assets: AssetParams,
    ) -> StackelbergState:
        p = self.params
        retail = np.asarray(forecast.retail_price, dtype=np.float64)
        feed_in = np.asarray(forecast.feed_in_price, dtype=np.float64)
        buy, sell = retail.copy(), feed_in.copy()
        converged = False
        used = 0
        mean_res = max_res = 0.0
        for used in range(1, p.max_iterations + 1):
            net = self._answer(state.inner, inputs, forecast, assets, buy, sell)
            tbp = np.maximum(-net, 0.0).sum(axis=1)
            tsp = np.maximum(net, 0.0).sum(axis=1)
            ratio = np.divide(tsp, tbp, out=np.full_like(tbp, np.inf), where=tbp > 0)
            new = sdr_prices(ratio, retail, feed_in)
            d_buy, d_sell = new.buy_price - buy, new.sell_price - sell
            mean_res = float(np.abs(d_buy).mean() + np.abs(d_sell).mean()) / 2.0
            max_res = float(max(np.abs(d_buy).max(), np.abs(d_sell).max()))
            if mean_res < p.tolerance_per_kwh:
                converged = True
                break
            step = 1.0 / (used + 1)  # fictitious-play averaging
            buy = buy + step * d_buy
            sell = sell + step * d_sell
        if not converged:  # honest fallback: the followers plan against the tariff alone
            buy, sell = retail.copy(), feed_in.copy()
        return dataclasses.replace(
            state,
            plan_start=inputs.t,
            plan_buy=buy,
            plan_sell=sell,
            plans=state.plans + 1,
            iterations=state.iterations + used,
            max_iterations_used=max(state.max_iterations_used, used),
            not_converged=state.not_converged + (0 if converged else 1),
            last_mean_residual=mean_res,
            last_max_residual=max_res,
        )

    def step(
        self,
        state: StackelbergState,
        inputs: SlotInputs,
        forecast: Forecast,
        assets: AssetParams,
    ) -> tuple[StackelbergState, Dispatch]:
        horizon = forecast.retail_price.shape[0]
        plan_len = state.plan_buy.shape[0]
        if state.plan_start < 0 or inputs.t >= state.plan_start + plan_len:
            state = self._plan(state, inputs, forecast, assets)
            plan_len = state.plan_buy.shape[0]
        offset = inputs.t - state.plan_start
        # the converged internal prices for the planned slots, the tariff beyond the plan
        buy = np.array(forecast.retail_price, dtype=np.float64)
        sell = np.array(forecast.feed_in_price, dtype=np.float64)
        n = min(horizon, plan_len - offset)
        buy[:n] = state.plan_buy[offset : offset + n]
        sell[:n] = state.plan_sell[offset : offset + n]
        inner, dispatch = self.follower.step(
            state.inner,
            dataclasses.replace(inputs, retail_price=float(buy[0]), feed_in_price=float(sell[0])),
            _with_prices(forecast, buy, sell),
            assets,
        )
        return dataclasses.replace(state, inner=inner), dispatch
