"""The coordinated community's cooperative game: v(S) from the schedule LP of coalition S.

The coordinator minimises the community's cost c(N) (`coordination.schedule`); each participant
alone would pay c({i}). `CommunityGame` computes v(S) by solving the schedule LP for coalition S
alone (members' assets and profiles, the same prices and limits), memoised: for small
communities and short horizons (2^n LPs for an exact Shapley value). The rules that share the
savings, and the Shapley value and core of such a game, are `peergrid.sharing`.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Literal, TypeVar

import numpy as np

from peergrid.assets.params import (
    AssetParams,
    BatteryParams,
    EvParams,
    FloatArray,
    IntArray,
    ShiftableJobs,
    ThermalParams,
)
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.coordination.schedule import schedule

_Params = TypeVar("_Params", BatteryParams, EvParams, ThermalParams)


def _subset(obj: _Params, members: IntArray) -> _Params:
    """A params dataclass with every per-participant array restricted to `members`."""
    return replace(obj, **{f.name: getattr(obj, f.name)[members] for f in fields(obj)})


def restrict(problem: ScheduleProblem, members: IntArray) -> ScheduleProblem:
    """The schedule problem of a coalition: its members' assets, profiles and states (members
    renumbered 0..|S|−1 in the given order), the same prices and time."""
    members = np.asarray(members, dtype=np.int64)
    a = problem.assets
    jobs = a.jobs
    keep = np.isin(jobs.participant, members)
    renumber = np.full(a.n_participants, -1, dtype=np.int64)
    renumber[members] = np.arange(members.size)
    sub_jobs = ShiftableJobs(
        participant=renumber[jobs.participant[keep]],
        earliest_start=jobs.earliest_start[keep],
        latest_end=jobs.latest_end[keep],
        duration_slots=jobs.duration_slots[keep],
        p_kw=jobs.p_kw[keep],
        appliance=jobs.appliance[keep],
    )
    assets = AssetParams(
        n_participants=int(members.size),
        battery=_subset(a.battery, members),
        ev=_subset(a.ev, members),
        thermal=_subset(a.thermal, members),
        jobs=sub_jobs,
    )

    def cols(x: np.ndarray) -> np.ndarray:
        return x[:, members]

    return replace(
        problem,
        assets=assets,
        base_demand_kwh=cols(problem.base_demand_kwh),
        pv_kwh=cols(problem.pv_kwh),
        ev_plugged=cols(problem.ev_plugged),
        ev_trip_kwh=cols(problem.ev_trip_kwh),
        battery_soc_kwh=problem.battery_soc_kwh[members],
        ev_soc_kwh=problem.ev_soc_kwh[members],
        indoor_temp_c=problem.indoor_temp_c[members],
        job_start_slot=None if problem.job_start_slot is None else problem.job_start_slot[keep],
        job_done_kwh=None if problem.job_done_kwh is None else problem.job_done_kwh[keep],
    )


class CommunityGame:
    """The community's cooperative game, v(S) from the schedule LP of coalition S (memoised).

    `kind="cost"`: v(S) = c(S), the LP's optimal cost of S alone (c(∅) = 0).
    `kind="savings"`: v(S) = Σ_{i∈S} c({i}) − c(S), what S saves by coordinating (a profit
    game with v({i}) = 0).
    """

    def __init__(
        self,
        problem: ScheduleProblem,
        options: ScheduleOptions | None = None,
        kind: Literal["savings", "cost"] = "savings",
    ) -> None:
        self.problem = problem
        self.options = options or ScheduleOptions()
        self.kind = kind
        self.n_players = problem.n_participants
        self._cost: dict[frozenset[int], float] = {frozenset(): 0.0}

    @property
    def n_solves(self) -> int:
        """LPs solved so far."""
        return len(self._cost) - 1

    def cost(self, coalition: frozenset[int]) -> float:
        """c(S) [currency]."""
        if coalition not in self._cost:
            members = np.array(sorted(coalition), dtype=np.int64)
            s = schedule(restrict(self.problem, members), self.options)
            self._cost[coalition] = s.objective
        return self._cost[coalition]

    def baseline_cost(self) -> FloatArray:
        """c({i}) for every participant, (P,) [currency]."""
        return np.array([self.cost(frozenset([i])) for i in range(self.n_players)])

    def __call__(self, coalition: frozenset[int]) -> float:
        if self.kind == "cost":
            return self.cost(coalition)
        alone = sum(self.cost(frozenset([i])) for i in coalition)
        return alone - self.cost(coalition)


def community_value(
    problem: ScheduleProblem,
    coalition: frozenset[int],
    *,
    kind: Literal["savings", "cost"] = "savings",
    options: ScheduleOptions | None = None,
) -> float:
    """v(S) of one coalition (`CommunityGame`; use the class to reuse LP solutions)."""
    return CommunityGame(problem, options, kind)(coalition)
