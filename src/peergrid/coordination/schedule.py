"""The coordinator's schedule: one linear programme that co-schedules a whole community.

A central coordinator knows every participant's assets and profiles over a horizon of H slots
and chooses all batteries, EVs, heat pumps / air conditioners and shiftable appliance runs at
once to minimise the community's cost with its retailer (markets.md, "Coordinated market"):

    min  Σ_t [λ_buy,t·G⁺_t − λ_sell,t·G⁻_t]                       energy cost  [currency]
       + wear·Σ (battery and EV charge + discharge)                 tie-breaker
       + penalties on the soft constraints (below)

    s.t. Σ_n (base − pv + bat_ch − bat_dis + ev_ch − ev_dis + thermal + shiftable)_n,t
           = G⁺_t − G⁻_t                                             community balance [kWh]

Energy flows live in slots (H values), states at slot boundaries (H + 1 points, row 0 the given
initial state). All energies are AC-side kWh per slot, prices currency/kWh, temperatures °C.

The problem and its options are `coordination.problem`, the result `coordination.result`. The
LP is built block by block (`coordination.blocks`), each with the physics of `peergrid.assets`
(so a schedule is executable slot by slot with the asset functions) and its own docstring: the
community's connection, balance and import / export limits (`grid`), home batteries
(`battery`), EVs (`ev`), heat pumps and air conditioners (`thermal`), shiftable appliance runs
(`shiftable`: relaxed, or one start per run by MILP), and optionally the feeder's LinDistFlow
rows, PV curtailment and the participants' limits (`lindistflow`, for `ScheduleProblem.network`,
`coordination/network.py`). `coordination.model` puts them together for one horizon; this
module chooses how to solve it (the MILP's two steps, the feeder's row generation), and
`coordination.rolling` plans a long run by a rolling horizon and rounds relaxed runs to blocks.

Penalties are scaled to the data, not fixed numbers (a 30× spread between costs and penalties
doubled the interior-point iterations): a kWh of EV shortfall, unserved trip energy, v2h reserve
or limit excess (community, participant or network) costs `penalty_factor` (4) × the dearest
price in the horizon / the EV's charge efficiency; a kelvin of virtual heat costs
`penalty_factor` × that price / the building's smallest ±COP·g [K/kWh], i.e. more than heating
it for real at the dearest price. So a soft constraint gives way only where it cannot be met.

The dual of the community balance is the community's internal marginal price λ_t [currency/kWh].
Without binding import/export limits λ_buy,t ≥ λ_t ≥ λ_sell,t: G⁺ and G⁻ are free to move, so
their reduced costs λ_buy − λ ≥ 0 and λ − λ_sell ≥ 0 hold at the optimum. A binding import limit
lifts λ above retail (scarcity), a binding export limit pushes it below the feed-in price; the
EMS clips it to [feed-in, retail] for the market. In a slot with λ_sell > λ_buy the coordinator
values export at λ_buy (`feed_in` is clipped to retail): importing and exporting at once would
otherwise be an unbounded arbitrage.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from peergrid.assets.params import BoolArray
from peergrid.coordination.blocks.shiftable import jobs_of
from peergrid.coordination.model import solve_lp
from peergrid.coordination.network import NetworkConstraints
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.result import Schedule
from peergrid.errors import InputError

# the feeder's rows start in the slots whose inflexible injections come this near a limit
# (voltage [pu], share of a rating): measured, the closest that mostly spares a second round
_PREDICT_WITHIN_PU = 0.02
_PREDICT_WITHIN_FRAC = 0.2


def schedule(problem: ScheduleProblem, options: ScheduleOptions | None = None) -> Schedule:
    """Co-schedule every participant over the problem's horizon (module docstring).

    Raises:
        ScheduleError (`coordination.model`): the solver returned no solution (it never should:
            every constraint that data can make infeasible is soft).
    """
    opts = options or ScheduleOptions()
    if opts.shiftable == "milp":
        return _schedule_milp(problem, opts)
    return _solve(problem, opts)


def _schedule_milp(problem: ScheduleProblem, opts: ScheduleOptions) -> Schedule:
    """MILP for the run starts, then the LP with those starts fixed (for λ and clean flows)."""
    mip = _solve(problem, opts)
    if not np.count_nonzero(mip.job_placed):
        return replace(mip, solver="simplex" if mip.solver == "mip" else mip.solver)
    starts = mip.job_start_slot.copy()
    fixed = replace(problem, job_start_slot=starts)
    lp = _solve(fixed, replace(opts, shiftable="relaxed"))
    return replace(
        lp,
        job_ids=mip.job_ids,
        job_energy_kwh=mip.job_energy_kwh,
        job_placed=mip.job_placed,
        status=mip.status if mip.status != "Optimal" else lp.status,
        build_s=mip.build_s + lp.build_s,
        solve_s=mip.solve_s + lp.solve_s,
        solver="mip",
    )


def _solve(problem: ScheduleProblem, opts: ScheduleOptions) -> Schedule:
    if problem.network is None:
        return solve_lp(problem, opts, None)
    return _solve_network(problem, opts, problem.network)


def _solve_network(
    problem: ScheduleProblem, opts: ScheduleOptions, net: NetworkConstraints
) -> Schedule:
    """The LP with the feeder's rows, generated slot by slot (row generation).

    The feeder's rows enter the LP only for the slots that need them: first those in which
    the inflexible injections alone come near a limit (`_PREDICT_WITHIN_*`), then, round by
    round, every slot in which the optimum found breaks one (checked on the same linear
    model); each with its two neighbours, where the assets move energy to when a slot is
    constrained. An optimum that breaks no omitted row is the optimum of the LP with all of
    them, so the result is the full LP's. Most slots of a day never come near a limit; leaving
    them out saves most of the feeder's cost (100 homes with PV and batteries on a 129-bus
    feeder, a June day: 0.9 s instead of 3.3 s with no limit near, 2.5 s instead of 3.2 s with
    v_max binding at noon), and one or two rounds usually suffice.
    """
    if net.n_participants != problem.n_participants:
        raise InputError(
            f"the network places {net.n_participants} participants; the schedule has "
            f"{problem.n_participants}"
        )
    const_kw = (
        problem.pv_kwh - problem.base_demand_kwh - jobs_of(problem).fixed_kwh
    ) / problem.dt_h
    inj = np.zeros((problem.n_slots, net.n_bus))
    np.add.at(inj.T, net.bus_of, const_kw.T)
    active = _with_neighbours(
        net.violated_slots(inj, within_pu=_PREDICT_WITHIN_PU, within_frac=_PREDICT_WITHIN_FRAC)
    )
    build_s = solve_s = 0.0
    rounds = 0
    while True:
        s = solve_lp(problem, opts, active)
        build_s += s.build_s
        solve_s += s.solve_s
        rounds += 1
        assert s.network is not None
        new = net.violated_slots(s.network.bus_injection_kw) & ~active
        if not new.any():
            break
        active = active | _with_neighbours(new)
    return replace(s, build_s=build_s, solve_s=solve_s, network=replace(s.network, rounds=rounds))


def _with_neighbours(slots: BoolArray) -> BoolArray:
    """The slots (H,) and the one before and after each."""
    out = slots.copy()
    out[1:] |= slots[:-1]
    out[:-1] |= slots[1:]
    return out
