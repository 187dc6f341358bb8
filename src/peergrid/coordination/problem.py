"""What the coordinator's schedule LP is given: the community's problem over a horizon, and
how to schedule it (`coordination.schedule`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from peergrid.assets.params import AssetParams, BoolArray, FloatArray, IntArray, Profiles
from peergrid.coordination.network import NetworkConstraints

ShiftableMode = Literal["relaxed", "milp"]
SolverChoice = Literal["auto", "ipm", "simplex"]


@dataclass(frozen=True)
class ScheduleOptions:
    """How the coordinator schedules.

    Attributes:
        wear_per_kwh: cost per kWh of battery and EV throughput (charge + discharge), a
            tie-breaker [currency/kWh].
        penalty_factor: soft constraints cost this multiple of the dearest way to meet them
            (`coordination.schedule`) [-], > 1.
        penalty_per_kwh: price of a kWh of EV shortfall at departure, unserved trip energy,
            v2h reserve below soc_min, and energy beyond the import/export limits
            [currency/kWh]; None: scaled from the prices (`coordination.schedule`).
        comfort_penalty_per_k: price of one kelvin of virtual heat in one slot [currency/K];
            None: scaled per building from the prices and its heating effect.
        import_limit_kw, export_limit_kw: community connection limits on G⁺ and G⁻ [kW];
            None for none.
        shiftable: "relaxed" (LP relaxation of the runs' blocks) or "milp" (one start per run).
        mip_time_limit_s: time limit of the MILP [s]; the best start found by then is used.
        ev_target_at_horizon_end: an EV plugged in at the last slot must reach its target by
            the horizon's end (its departure is beyond the look-ahead; the assumption of
            `ev.session_slots`).
        solver: "ipm" (interior point), "simplex" (dual simplex), or "auto": IPM for models of
            at least `ipm_min_cols` columns of which home batteries make at least
            `ipm_min_battery_share`, simplex otherwise. Measured on 50–200 households × 96
            slots (2 cores): IPM solves battery-dominated LPs 2–7× faster than simplex (200
            homes with batteries: 1.8 s against 9–13 s), while with an EV and a heat pump in
            every home simplex is 2–3× faster (200 homes: 5 s against 8 s). With a feeder's
            rows in the LP (`ScheduleProblem.network`) "auto" picks IPM from `ipm_min_cols`
            on whatever the assets: where voltage or flow limits bind, simplex took 2–6× as
            long (100 homes on a 129-bus feeder: 4 s against 20–40 s).
        ipm_min_cols: model size [columns] from which "auto" may pick IPM.
        ipm_min_battery_share: share of battery columns from which "auto" picks IPM [-].
        crossover: run crossover after IPM (a vertex solution with exact complementary duals;
            costs time on large models).
    """

    wear_per_kwh: float = 1e-4
    penalty_factor: float = 4.0
    penalty_per_kwh: float | None = None
    comfort_penalty_per_k: float | None = None
    import_limit_kw: float | None = None
    export_limit_kw: float | None = None
    shiftable: ShiftableMode = "relaxed"
    mip_time_limit_s: float = 30.0
    ev_target_at_horizon_end: bool = True
    solver: SolverChoice = "auto"
    ipm_min_cols: int = 20_000
    ipm_min_battery_share: float = 0.5
    crossover: bool = False


@dataclass(frozen=True, eq=False)
class ScheduleProblem:
    """What the coordinator knows: assets, the horizon's profiles and prices, the initial state.

    Arrays are (H, P) unless stated; row 0 is slot `t0` of the run (job windows in `assets.jobs`
    are on the run's slot grid, so `t0` places them).

    Attributes:
        assets: the community's assets.
        base_demand_kwh, pv_kwh: inflexible demand and PV generation per slot [kWh].
        temp_out_c: outdoor temperature, (H,) [°C].
        ev_plugged: EV plugged in at home during the slot.
        ev_trip_kwh: trip energy booked at the first slot of each return [kWh].
        retail_price, feed_in_price: (H,) [currency/kWh].
        dt_h: slot length [h].
        battery_soc_kwh, ev_soc_kwh, indoor_temp_c: states at the start of slot 0, (P,).
        t0: run slot index of row 0.
        job_start_slot: (J,) run slot at which each run started or is fixed to start; −1 where
            the coordinator chooses. None: all free.
        job_done_kwh: (J,) energy the free runs already drew (relaxed rolling plans); None: 0.
        network: the feeder's limits and the per-participant limits, or None. Its
            per-participant limits are on the run's slot grid: the schedule uses their rows
            t0..t0 + H − 1.
        export_limit_kwh, import_limit_kwh: the operator's per-participant limits for the
            horizon's slots as known when the plan is made, (H, P) [kWh per slot], +inf for
            none; where given they replace the network's run-long limits.
    """

    assets: AssetParams
    base_demand_kwh: FloatArray
    pv_kwh: FloatArray
    temp_out_c: FloatArray
    ev_plugged: BoolArray
    ev_trip_kwh: FloatArray
    retail_price: FloatArray
    feed_in_price: FloatArray
    dt_h: float
    battery_soc_kwh: FloatArray
    ev_soc_kwh: FloatArray
    indoor_temp_c: FloatArray
    t0: int = 0
    job_start_slot: IntArray | None = None
    job_done_kwh: FloatArray | None = None
    network: NetworkConstraints | None = None
    export_limit_kwh: FloatArray | None = None
    import_limit_kwh: FloatArray | None = None

    @property
    def n_slots(self) -> int:
        return int(self.base_demand_kwh.shape[0])

    @property
    def n_participants(self) -> int:
        return self.assets.n_participants

    @staticmethod
    def from_profiles(
        assets: AssetParams,
        profiles: Profiles,
        retail_price: FloatArray,
        feed_in_price: FloatArray,
        dt_h: float,
        *,
        start: int = 0,
        stop: int | None = None,
        network: NetworkConstraints | None = None,
    ) -> ScheduleProblem:
        """The problem for run slots [start, stop) from the assets' initial states."""
        sl = slice(start, stop)
        return ScheduleProblem(
            assets=assets,
            base_demand_kwh=profiles.base_demand_kwh[sl],
            pv_kwh=profiles.pv_kwh[sl],
            temp_out_c=profiles.temp_out_c[sl],
            ev_plugged=profiles.ev_plugged[sl],
            ev_trip_kwh=profiles.ev_trip_kwh[sl],
            retail_price=np.asarray(retail_price[sl], dtype=np.float64),
            feed_in_price=np.asarray(feed_in_price[sl], dtype=np.float64),
            dt_h=dt_h,
            battery_soc_kwh=np.asarray(assets.battery.soc_initial_kwh, dtype=np.float64),
            ev_soc_kwh=np.asarray(assets.ev.soc_initial_kwh, dtype=np.float64),
            indoor_temp_c=np.asarray(assets.thermal.t_initial_c, dtype=np.float64),
            t0=start,
            network=network,
        )
