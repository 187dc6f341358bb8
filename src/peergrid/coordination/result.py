"""What the coordinator's schedule LP returns: the `Schedule`, and its network side."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from peergrid.assets.params import BoolArray, FloatArray, IntArray
from peergrid.coordination.problem import ScheduleProblem


@dataclass(frozen=True, eq=False)
class NetworkSchedule:
    """The network side of a schedule with `ScheduleProblem.network`: H slots, N buses,
    B branches, P participants.

    Attributes:
        bus_injection_kw: injection at every bus as the LP's network rows see it: the nets of
            its participants (after curtailment) plus the load shed there
            (`network_import_excess_kwh`), (H, N) [kW], export positive.
        p_from_kw: active power entering every branch at its parent end, (H, B) [kW] (the
            network layer's direction: positive towards the buses below).
        voltage_pu: the LP's linear voltages with q = 0, which the upper limit bounds, (H, N).
        voltage_low_pu: the LP's linear voltages with q = load_tan_phi·p, which the lower
            limit bounds, (H, N); equal to `voltage_pu` without reactive power.
        bus_price: λ_t + μ_t,n, the marginal cost of one more kWh of demand at each bus (μ the
            dual of the bus's flow conservation), (H, N) [currency/kWh]; NaN without duals.
        voltage_shadow_price: what one pu more of room at the binding voltage limit would save,
            (H, N) [currency/pu], ≥ 0.
        voltage_binding: +1 where the upper voltage limit binds, −1 the lower, 0 neither, (H, N).
        flow_shadow_price: what one kW more of branch rating would save, (H, B)
            [currency/kW], ≥ 0.
        flow_binding: +1 where a branch's limit binds towards the buses below (they import),
            −1 towards the slack (they export), 0 neither, (H, B).
        pv_curtailment_kwh: PV generation the schedule curtails, (H, P) [kWh].
        network_import_excess_kwh: load the network could not carry at each bus, (H, N)
            [kWh]: what would have to be shed (penalised).
        participant_export_excess_kwh, participant_import_excess_kwh: net export (import)
            beyond each participant's limit, (H, P) [kWh].
        network_slots: slots whose feeder rows were in the LP, (H,) (`coordination.schedule`); in
            the others no limit binds, and flows and voltages are the same linear model of
            the injections.
        rounds: LP solves it took to find the slots (for a rolling schedule: the most any
            plan took).
    """

    bus_injection_kw: FloatArray
    p_from_kw: FloatArray
    voltage_pu: FloatArray
    voltage_low_pu: FloatArray
    bus_price: FloatArray
    voltage_shadow_price: FloatArray
    voltage_binding: NDArray[np.int8]
    flow_shadow_price: FloatArray
    flow_binding: NDArray[np.int8]
    pv_curtailment_kwh: FloatArray
    network_import_excess_kwh: FloatArray
    participant_export_excess_kwh: FloatArray
    participant_import_excess_kwh: FloatArray
    network_slots: BoolArray
    rounds: int = 1


@dataclass(frozen=True, eq=False)
class Schedule:
    """The coordinator's optimal schedule over H slots for P participants.

    Attributes:
        battery_charge_kwh, battery_discharge_kwh, ev_charge_kwh, ev_discharge_kwh,
        thermal_kwh, shiftable_kwh: (H, P) [kWh per slot].
        battery_soc_kwh, ev_soc_kwh: (H + 1, P) [kWh]; row 0 the initial state (the EV's before
            the trip of slot 0).
        indoor_temp_c: (H + 1, P) [°C]; participants without a controllable thermal asset drift
            freely.
        grid_import_kwh, grid_export_kwh: G⁺, G⁻, (H,) [kWh].
        marginal_price: λ_t, the dual of the community balance, (H,) [currency/kWh].
        objective: the LP's optimal value [currency]: energy (export valued at
            min(feed-in, retail)) + wear + penalties.
        energy_cost_per_slot: retail·G⁺ − feed_in·G⁻ with the actual feed-in price, (H,)
            [currency].
        wear_cost_per_slot, penalty_cost_per_slot: the objective's other two parts, (H,)
            [currency]; a departure shortfall counts in the slot before the departure. With a
            network, curtailed PV costs `wear_per_kwh` too (counted as wear).
        own_cost_per_slot: each participant's own part of the objective (its wear and its
            soft-constraint penalties, its own limits' included), (H, P) [currency]; the energy
            cost and the penalties of the community's and the network's limits are the
            community's.
        ev_shortfall_kwh: (H + 1, P) missing energy at departures [kWh].
        ev_unserved_kwh: (H, P) trip energy the EV battery could not supply [kWh].
        ev_reserve_shortfall_kwh: (H + 1, P) v2h EV below soc_min while plugged in [kWh].
        comfort_violation_k: (H + 1, P) distance outside the comfort band [K].
        import_excess_kwh, export_excess_kwh: (H,) energy beyond the limits [kWh].
        job_ids: runs that draw energy inside the horizon, (J',).
        job_energy_kwh: (J', H) energy each of them draws per slot [kWh].
        job_placed: (J',) the run was placed by the coordinator (its start was free); the
            others had started or were fixed.
        job_start_slot: (J,) run slot of each run's start where fixed or chosen by the MILP,
            −1 elsewhere.
        status: HiGHS model status ("Optimal", or e.g. "Time limit reached" for a MILP).
        build_s, solve_s: model build and solver time [s].
        n_cols, n_rows, n_nonzeros: LP size.
        solver: "ipm", "simplex" or "mip".
        network: flows, voltages, network prices and excesses (`NetworkSchedule`) when the
            problem has a network; None otherwise.
    """

    battery_charge_kwh: FloatArray
    battery_discharge_kwh: FloatArray
    ev_charge_kwh: FloatArray
    ev_discharge_kwh: FloatArray
    thermal_kwh: FloatArray
    shiftable_kwh: FloatArray
    battery_soc_kwh: FloatArray
    ev_soc_kwh: FloatArray
    indoor_temp_c: FloatArray
    grid_import_kwh: FloatArray
    grid_export_kwh: FloatArray
    marginal_price: FloatArray
    objective: float
    energy_cost_per_slot: FloatArray
    wear_cost_per_slot: FloatArray
    penalty_cost_per_slot: FloatArray
    own_cost_per_slot: FloatArray
    ev_shortfall_kwh: FloatArray
    ev_unserved_kwh: FloatArray
    ev_reserve_shortfall_kwh: FloatArray
    comfort_violation_k: FloatArray
    import_excess_kwh: FloatArray
    export_excess_kwh: FloatArray
    job_ids: IntArray
    job_energy_kwh: FloatArray
    job_placed: BoolArray
    job_start_slot: IntArray
    status: str
    build_s: float
    solve_s: float
    n_cols: int
    n_rows: int
    n_nonzeros: int
    solver: str
    network: NetworkSchedule | None = None

    @property
    def energy_cost(self) -> float:
        """Σ_t retail·G⁺ − feed_in·G⁻ [currency]."""
        return float(self.energy_cost_per_slot.sum())

    @property
    def wear_cost(self) -> float:
        return float(self.wear_cost_per_slot.sum())

    @property
    def penalty_cost(self) -> float:
        return float(self.penalty_cost_per_slot.sum())

    @property
    def own_cost(self) -> FloatArray:
        """Each participant's wear and penalties over the horizon, (P,) [currency]."""
        out: FloatArray = self.own_cost_per_slot.sum(axis=0)
        return out


def net_kwh_of(problem: ScheduleProblem, s: Schedule) -> FloatArray:
    """Net export of every participant under a schedule, (H, P) [kWh] (export positive)."""
    curtailed = 0.0 if s.network is None else s.network.pv_curtailment_kwh
    out: FloatArray = (
        net_before_curtailment_kwh(
            problem,
            battery_charge_kwh=s.battery_charge_kwh,
            battery_discharge_kwh=s.battery_discharge_kwh,
            ev_charge_kwh=s.ev_charge_kwh,
            ev_discharge_kwh=s.ev_discharge_kwh,
            thermal_kwh=s.thermal_kwh,
            shiftable_kwh=s.shiftable_kwh,
        )
        - curtailed
    )
    return out


def net_before_curtailment_kwh(
    problem: ScheduleProblem,
    *,
    battery_charge_kwh: FloatArray,
    battery_discharge_kwh: FloatArray,
    ev_charge_kwh: FloatArray,
    ev_discharge_kwh: FloatArray,
    thermal_kwh: FloatArray,
    shiftable_kwh: FloatArray,
) -> FloatArray:
    """Net export of every participant for the given asset energies, before any PV
    curtailment, (H, P) [kWh] (export positive)."""
    out: FloatArray = (
        problem.pv_kwh
        + battery_discharge_kwh
        + ev_discharge_kwh
        - problem.base_demand_kwh
        - thermal_kwh
        - shiftable_kwh
        - battery_charge_kwh
        - ev_charge_kwh
    )
    return out
