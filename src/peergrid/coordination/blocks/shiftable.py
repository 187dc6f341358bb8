"""Shiftable appliance runs in the schedule LP (the runs of `assets/shiftable.py`).

A run needs duration·p·Δt inside its window [earliest_start, latest_start + duration). In the
default `"relaxed"` mode the LP draws that energy anywhere in the window at no more than p·Δt per
slot: this **relaxes the fixed-duration block** (the energy may be split over non-adjacent slots,
at part power), so the LP's cost is a lower bound on every schedule with real blocks. `"milp"`
chooses one start per run with binaries (exact, with a time limit); λ then comes from the LP
re-solved with the starts fixed (`coordination.schedule`). Runs already started
(`job_start_slot`) are fixed loads. `coordination.rolling.block_starts` rounds relaxed runs to
blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.assets import shiftable
from peergrid.assets.params import FloatArray, IntArray
from peergrid.coordination.blocks.base import NetTerm, add_to_balance
from peergrid.coordination.problem import ScheduleProblem
from peergrid.optim.highs import LpModel


@dataclass(frozen=True, eq=False)
class Jobs:
    """The runs of one schedule: fixed loads, and the free runs the LP places."""

    fixed_kwh: FloatArray  # (H, P)
    fixed: IntArray  # ids of the started runs that draw energy in the horizon
    fixed_energy_kwh: FloatArray  # (len(fixed), H)
    free: IntArray  # job ids
    free_es: IntArray  # first usable row of each free run
    free_end: IntArray  # row after its effective window (may exceed H)
    free_e_kwh: FloatArray  # energy still to draw
    free_slot_kwh: FloatArray  # p·Δt
    free_latest: IntArray  # latest start row
    start_slot: IntArray  # (J,) fixed start slot on the run grid, −1 for free


def jobs_of(problem: ScheduleProblem) -> Jobs:
    """The runs of `problem`: started ones as fixed loads, the others free to place."""
    jobs = problem.assets.jobs
    h, p, t0, dt = problem.n_slots, problem.n_participants, problem.t0, problem.dt_h
    n_jobs = jobs.n_jobs
    start = (
        np.full(n_jobs, shiftable.NOT_STARTED, dtype=np.int64)
        if problem.job_start_slot is None
        else np.asarray(problem.job_start_slot, dtype=np.int64).copy()
    )
    done = np.zeros(n_jobs) if problem.job_done_kwh is None else problem.job_done_kwh
    latest = shiftable.latest_start_slot(jobs.earliest_start, jobs.latest_end, jobs.duration_slots)
    # a free run past its latest start starts now, as `shiftable.must_start` would have it
    overdue = (start == shiftable.NOT_STARTED) & (latest < t0) & (done <= 0.0)
    start[overdue] = t0
    fixed = np.zeros((h, p))
    started = np.flatnonzero(start != shiftable.NOT_STARTED)
    if started.size:
        d = jobs.duration_slots[started]
        rep = np.repeat(np.arange(started.size), d)
        offs = np.arange(rep.size) - np.repeat(np.cumsum(d) - d, d)
        row = start[started][rep] + offs - t0
        ok = (row >= 0) & (row < h)
        j = started[rep[ok]]
        np.add.at(fixed, (row[ok], jobs.participant[j]), jobs.p_kw[j] * dt)
        in_horizon, local = np.unique(rep[ok], return_inverse=True)
        fixed_ids = started[in_horizon]
        fixed_energy = np.zeros((fixed_ids.size, h))
        np.add.at(fixed_energy, (local, row[ok]), jobs.p_kw[j] * dt)
    else:
        fixed_ids, fixed_energy = started, np.zeros((0, h))
    slot_kwh = jobs.p_kw * dt
    energy = slot_kwh * jobs.duration_slots - done
    free_mask = (
        (start == shiftable.NOT_STARTED)
        & (energy > 1e-12)
        & (jobs.earliest_start < t0 + h)
        & (latest + jobs.duration_slots > t0)
    )
    free = np.flatnonzero(free_mask).astype(np.int64)
    return Jobs(
        fixed_kwh=fixed,
        fixed=fixed_ids.astype(np.int64),
        fixed_energy_kwh=fixed_energy,
        free=free,
        free_es=np.maximum(jobs.earliest_start[free] - t0, 0),
        free_end=latest[free] + jobs.duration_slots[free] - t0,
        free_e_kwh=energy[free],
        free_slot_kwh=slot_kwh[free],
        free_latest=latest[free] - t0,
        start_slot=start,
    )


def ranges(first: IntArray, stop: IntArray) -> tuple[IntArray, IntArray]:
    """Flattened ranges [first_i, stop_i): (group index, value) per element."""
    n = np.maximum(stop - first, 0)
    group = np.repeat(np.arange(n.size), n)
    value = np.arange(group.size) - np.repeat(np.cumsum(n) - n, n) + first[group]
    return group.astype(np.int64), value.astype(np.int64)


@dataclass(frozen=True, eq=False)
class RunColumns:
    """The free runs' columns.

    Attributes:
        jobs: the runs of the problem.
        milp: one binary per start (True) or the relaxation's energy per slot (False).
        x: the columns: a start's binary, or a slot's energy [kWh].
        x_grp: the free run (index into `jobs.free`) of each column.
        x_row: the slot of each column (MILP: the start).
        terms: the runs' net export.
    """

    jobs: Jobs
    milp: bool
    x: IntArray
    x_grp: IntArray
    x_row: IntArray
    terms: list[NetTerm]

    def read(
        self, x: FloatArray, problem: ScheduleProblem
    ) -> tuple[FloatArray, FloatArray, IntArray]:
        """Of a solution `x`: every participant's run energy (H, P) [kWh], each free run's
        energy per slot (J_free, H) [kWh] and every run's start slot (J,) (−1 where free and
        relaxed)."""
        jobs, h = self.jobs, problem.n_slots
        a = problem.assets
        n_free = jobs.free.size
        shift = jobs.fixed_kwh.copy()
        job_energy = np.zeros((n_free, h))
        job_start = jobs.start_slot.copy()
        if self.milp:
            yv = x[self.x]
            dur = a.jobs.duration_slots[jobs.free][self.x_grp]
            rep = np.repeat(np.arange(self.x_grp.size), dur)
            row = self.x_row[rep] + (np.arange(rep.size) - np.repeat(np.cumsum(dur) - dur, dur))
            inside = row < h
            g = self.x_grp[rep[inside]]
            np.add.at(job_energy, (g, row[inside]), yv[rep[inside]] * jobs.free_slot_kwh[g])
            chosen = yv > 0.5
            job_start[jobs.free[self.x_grp[chosen]]] = self.x_row[chosen] + problem.t0
        else:
            np.add.at(job_energy, (self.x_grp, self.x_row), x[self.x])
        if n_free:
            np.add.at(shift.T, a.jobs.participant[jobs.free], job_energy)
        return shift, job_energy, job_start


def add_runs(
    m: LpModel, problem: ScheduleProblem, jobs: Jobs, milp: bool, balance: IntArray
) -> RunColumns:
    """The free runs' columns and rows: per run one start (`milp`) or its energy within its
    window (relaxed)."""
    h = problem.n_slots
    n_free = jobs.free.size
    job_owner = problem.assets.jobs.participant[jobs.free]
    terms: list[NetTerm]
    if milp:
        # one binary per feasible start inside the horizon, one for "later"
        s_grp, s_row = ranges(
            jobs.free_es, np.minimum(jobs.free_latest, h - 1) + 1
        )  # starts in the horizon
        later = jobs.free_latest >= h
        y = m.cols(np.ones(s_grp.size, dtype=bool), 0.0, 1.0, 0.0, integer=True)
        y_later = m.cols(later, 0.0, 1.0, 0.0, integer=True)
        one = m.rows(np.ones(n_free, dtype=bool), 1.0, 1.0)
        m.coef(one[s_grp], y, 1.0)
        m.coef(one, y_later, 1.0)
        dur = problem.assets.jobs.duration_slots[jobs.free][s_grp]
        rep = np.repeat(np.arange(s_grp.size), dur)
        row = s_row[rep] + (np.arange(rep.size) - np.repeat(np.cumsum(dur) - dur, dur))
        inside = row < h
        g_in = s_grp[rep[inside]]
        terms = [(row[inside], job_owner[g_in], y[rep[inside]], -jobs.free_slot_kwh[g_in])]
        add_to_balance(m, balance, terms)
        return RunColumns(jobs, milp, y, s_grp, s_row, terms)
    x_grp, x_row = ranges(jobs.free_es, np.minimum(jobs.free_end, h))
    x = m.cols(np.ones(x_grp.size, dtype=bool), 0.0, jobs.free_slot_kwh[x_grp], 0.0)
    beyond = np.maximum(jobs.free_end - h, 0) * jobs.free_slot_kwh
    need = m.rows(
        np.ones(n_free, dtype=bool),
        np.maximum(jobs.free_e_kwh - beyond, 0.0),
        jobs.free_e_kwh,
    )
    m.coef(need[x_grp], x, 1.0)
    terms = [(x_row, job_owner[x_grp], x, -1.0)]
    add_to_balance(m, balance, terms)
    return RunColumns(jobs, milp, x, x_grp, x_row, terms)
