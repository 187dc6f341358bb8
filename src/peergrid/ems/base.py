"""The energy-management-system (EMS) interface: one step per slot, for all participants at once.

An EMS policy decides, for every participant in one slot, how its battery, EV, heat pump and
shiftable appliances run, and at what limit prices it bids its resulting deficit or offers its
surplus. `step` is a pure function of explicit state and inputs, so the simulator's slot loop and a
live server (where the inputs come from smart meters and forecasts) call the same code.

Arrays are across participants, length P; forecast arrays are (H, P) with row 0 = this slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from peergrid.assets.params import AssetParams, Profiles

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class SlotInputs:
    """What is known about the current slot when the EMS decides.

    Attributes:
        t: slot index on the run's grid (a live server counts slots the same way).
        dt_h: slot length [h].
        base_demand_kwh: inflexible consumption in this slot, (P,).
        pv_kwh: PV generation in this slot, (P,).
        temp_out_c: outdoor temperature [°C].
        ev_plugged: EV plugged in at home during this slot, (P,).
        ev_trip_kwh: energy a just-finished trip took from the EV battery, (P,).
        retail_price: retail import price in this slot [currency/kWh].
        feed_in_price: feed-in export price in this slot [currency/kWh].
    """

    t: int
    dt_h: float
    base_demand_kwh: FloatArray
    pv_kwh: FloatArray
    temp_out_c: float
    ev_plugged: BoolArray
    ev_trip_kwh: FloatArray
    retail_price: float
    feed_in_price: float


@dataclass(frozen=True, eq=False)
class Forecast:
    """What the EMS expects from this slot on: H rows, row 0 = this slot (H may shrink at the end
    of a run), as known at the gate closure the plan is made for: demand, PV and temperature
    from the run's forecaster (`forecast/`), the EV plug-in schedule as the users declared it,
    the tariff, and the network operator's limits where it sets any.

    Attributes:
        base_demand_kwh: expected inflexible consumption, (H', P) [kWh]; H' = H for a
            policy that `reads_energy_forecast`, else it may cover only the slots being
            planned (at least row 0).
        pv_kwh: expected PV generation, (H', P) [kWh].
        temp_out_c: expected outdoor temperature, (H',) [°C].
        ev_plugged: EV plugged in at home, (H, P).
        retail_price, feed_in_price: the tariff, (H,) [currency/kWh].
        export_limit_kwh, import_limit_kwh: the operator's limits at each connection point,
            (H, P) [kWh per slot], +inf for none; None without limits.
    """

    base_demand_kwh: FloatArray
    pv_kwh: FloatArray
    temp_out_c: FloatArray
    ev_plugged: BoolArray
    retail_price: FloatArray
    feed_in_price: FloatArray
    export_limit_kwh: FloatArray | None = None
    import_limit_kwh: FloatArray | None = None


@dataclass(frozen=True, eq=False)
class Dispatch:
    """What every participant does in one slot, all arrays (P,) in kWh per slot (AC side).

    `demand_kwh` is all household consumption except EV charging: base + thermal + shiftable.
    Net export = generation + battery/EV discharge − demand − battery/EV charge.
    """

    demand_kwh: FloatArray
    generation_kwh: FloatArray
    battery_charge_kwh: FloatArray
    battery_discharge_kwh: FloatArray
    ev_charge_kwh: FloatArray
    ev_discharge_kwh: FloatArray
    thermal_kwh: FloatArray
    shiftable_kwh: FloatArray
    ev_unserved_kwh: FloatArray  # trip energy the EV battery could not supply (charged elsewhere)
    buy_limit_price: FloatArray  # most the participant pays in the market [currency/kWh]
    sell_limit_price: FloatArray  # least it accepts [currency/kWh]

    @cached_property
    def net_kwh(self) -> FloatArray:
        """Net export at the connection point (export positive) [kWh]."""
        return (
            self.generation_kwh
            + self.battery_discharge_kwh
            + self.ev_discharge_kwh
            - self.demand_kwh
            - self.battery_charge_kwh
            - self.ev_charge_kwh
        )


@dataclass(frozen=True, eq=False)
class PhysicalState:
    """The measurable state of every participant's assets at a slot boundary, (P,) each.

    Attributes:
        battery_soc_kwh: home-battery state of charge [kWh].
        ev_soc_kwh: EV state of charge [kWh].
        indoor_temp_c: indoor temperature [°C].
    """

    battery_soc_kwh: FloatArray
    ev_soc_kwh: FloatArray
    indoor_temp_c: FloatArray


@runtime_checkable
class EmsState(Protocol):
    """State a policy carries from slot to slot: a frozen value. Every policy's state exposes
    the physical state it believes in and can be re-anchored to a measured one."""

    @property
    def battery_soc_kwh(self) -> FloatArray: ...
    @property
    def ev_soc_kwh(self) -> FloatArray: ...
    @property
    def indoor_temp_c(self) -> FloatArray: ...

    def with_physical(self, physical: PhysicalState) -> Self:
        """The same state with these states of charge and indoor temperatures (the measured
        ones, or a plan re-anchored to them); plans and queues are kept."""
        ...


def physical_of(state: EmsState) -> PhysicalState:
    """The physical part of a policy state."""
    return PhysicalState(state.battery_soc_kwh, state.ev_soc_kwh, state.indoor_temp_c)


class EmsParams(BaseModel):
    """Base of every policy's parameter model: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=EmsState)


class EmsPolicy(Protocol[S]):
    """An EMS policy with state type `S`. One module per policy under `ems/`, registered in
    `ems/registry.py`."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[EmsParams]]
    #: True if decisions depend on past market outcomes; the engine then simulates the
    #: no-P2P baseline in a second pass instead of reusing the dispatch.
    observes_market: ClassVar[bool]
    #: True if decisions read the forecast demand, PV and temperature of slots after the one
    #: being decided; False if the look-ahead reads only the plug-in schedule and the tariff,
    #: so the engine asks the forecaster only for the slots being planned.
    reads_energy_forecast: ClassVar[bool]
    #: How many hours of forecast the policy wants (e.g. 24); the engine passes at least 1 slot.
    horizon_h: float

    @property
    def params(self) -> EmsParams:
        """The validated parameters this policy runs with."""
        ...

    def init_state(self, assets: AssetParams) -> S: ...

    def step(
        self, state: S, inputs: SlotInputs, forecast: Forecast, assets: AssetParams
    ) -> tuple[S, Dispatch]: ...


@runtime_checkable
class ReportsDiagnostics(Protocol):
    """Optional capability of a policy state: numbers about how the policy decided (the
    Stackelberg game's plans, iterations and residuals), for summary.json."""

    @property
    def diagnostics(self) -> dict[str, float]: ...


@runtime_checkable
class PlansWithNetwork(Protocol):
    """Optional capability of a policy: it schedules with the feeder's constraints (the
    coordinated scheduler). `with_network` returns a configured copy."""

    def with_network(self, network: Any) -> Self: ...


def slot_view(
    profiles: Profiles,
    retail_price: FloatArray,
    feed_in_price: FloatArray,
    t: int,
    horizon_slots: int,
    dt_h: float,
) -> tuple[SlotInputs, Forecast]:
    """Slot t's inputs and the forecast window [t, t + horizon) as views of run-long arrays
    (perfect foresight), as the simulator hands them to a policy."""
    end = t + horizon_slots
    inputs = SlotInputs(
        t=t,
        dt_h=dt_h,
        base_demand_kwh=profiles.base_demand_kwh[t],
        pv_kwh=profiles.pv_kwh[t],
        temp_out_c=float(profiles.temp_out_c[t]),
        ev_plugged=profiles.ev_plugged[t],
        ev_trip_kwh=profiles.ev_trip_kwh[t],
        retail_price=float(retail_price[t]),
        feed_in_price=float(feed_in_price[t]),
    )
    forecast = Forecast(
        base_demand_kwh=profiles.base_demand_kwh[t:end],
        pv_kwh=profiles.pv_kwh[t:end],
        temp_out_c=profiles.temp_out_c[t:end],
        ev_plugged=profiles.ev_plugged[t:end],
        retail_price=retail_price[t:end],
        feed_in_price=feed_in_price[t:end],
    )
    return inputs, forecast
