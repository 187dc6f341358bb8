"""Export and import limits per connection point: static limits and dynamic operating envelopes.

A *dynamic operating envelope* (DOE), as Australian distribution networks publish them, gives
every connection point and slot an export bound and an import bound such that ANY combination
of operating points inside the envelopes keeps the feeder within its voltage and thermal
limits. On a radial feeder the linearised voltages rise with every injection (∂v/∂p ≥ 0) and a
branch carries the sum of the injections below it, so it suffices that two *corners* hold:

- everyone exporting at its export envelope at once (unity power factor): the highest voltages
  and the largest reverse flows;
- everyone importing at its import envelope at once (at `load_power_factor`, lagging): the
  lowest voltages and the largest forward flows. Between the corners the apparent power of a
  branch never exceeds the larger corner's (its square is convex in the injections and the
  mixed vertices are below both corners for tan φ < 1).

A branch's thermal limit is a current limit, and the current of a given apparent power grows
as the voltage sags; a point inside the envelopes may have a lower voltage than the export
corner (others importing). The thermal rows therefore bound the apparent power at the lowest
voltage the envelopes allow: |S_b| ≤ rating_b · max_loading · v_min (conservative by v/v_min
where the voltage is higher).

Allocation ("fair", per slot): one level E_t shared by everyone, capped by each participant's
capability, export_kw = min(capability, E_t). A participant that cannot export in a slot
(capability 0) gets 0 and leaves the hosting capacity to the others. The largest E_t is found
on the LinDistFlow model (`linear.py`) for all slots at once: the constraint rows are concave,
non-decreasing, piecewise-linear functions of E with breakpoints at the capabilities, so a
bisection over the sorted capabilities (log2 P steps, one matrix product over all slots each)
finds the segment and a closed form the level in it. Slots in which the full capabilities fit
are not constrained (level +inf, envelope = capability).

The linearisation errs by up to ~5e-3 pu near the voltage limits (it overestimates the rise
at high voltage and underestimates the drop at low voltage), so both corners are then checked
with the AC power flow (`PgmPowerFlow`, batches over all slots) and the slots that violate a
limit are tightened: the AC-minus-linear error of each row at that slot's corner is taken off
the row's limit and the level solved again (a fixed-point iteration that converges in one or
two rounds). With `refine`, the first round also raises the binding slots whose corner has AC
slack the same way. Only the slots changed in a round are checked again in the next; a slot
whose last change could not be checked keeps its last checked level.

Capabilities are the caller's: export capability = what a participant could inject in the
slot at most (PV + battery discharge power + v2h discharge power), import capability = what it
could draw at most (demand + battery and EV charging powers), both [kW], ≥ 0. The envelope of
a participant never exceeds its capability, so a capability of +inf is not allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.errors import InputError
from peergrid.network.feeder import Feeder, FloatArray, IntArray
from peergrid.network.linear import LinearFeeder
from peergrid.network.powerflow import FlowResult, PgmPowerFlow

#: Slots per matrix product in the level search (bounds memory: ~20 MB for 250 rows).
CHUNK_SLOTS = 8192
_MARGIN_V_PU = 1e-4  # voltage margin added when an AC-violating slot is tightened [pu]
_MARGIN_THERMAL = 1e-3  # thermal margin, as a fraction of the row's limit [-]
_SHRINK = 1e-3  # a tightened level drops by at least this fraction [-]
_REFINE_GAIN = 0.01  # a slot with AC slack is raised only if its level gains this much [-]
_TOL = 1e-9  # an AC limit counts as violated beyond this (relative to the limit) [-]


@dataclass(frozen=True, eq=False)
class Envelopes:
    """Export and import limits of every participant in every slot, with diagnostics.

    Attributes:
        export_kw: largest export allowed, (T, P) [kW], ≥ 0 (+inf: unlimited).
        import_kw: largest import allowed, (T, P) [kW], ≥ 0 (+inf: unlimited).
        export_level_kw: the fair export level E_t of each slot, (T,) [kW]; +inf where the
            network does not bind (export_kw = capability).
        import_level_kw: the fair import level of each slot, (T,) [kW]; +inf likewise.
        ac_rounds: AC power-flow rounds run to check (and tighten) the corners.
        worst_v_max_pu: highest LV voltage in the all-exporting corners (AC) [pu].
        worst_v_min_pu: lowest LV voltage in the all-importing corners (AC) [pu].
        worst_loading_pct: highest branch loading in either corner (AC) [%].
        unresolved_slots: slots with a corner that never passed the AC check (the network
            breaks a limit even at zero injection, or the rounds ran out); the envelope of
            the failed corner is 0 there, and such slots are not in the worst values.
    """

    export_kw: FloatArray
    import_kw: FloatArray
    export_level_kw: FloatArray
    import_level_kw: FloatArray
    ac_rounds: int
    worst_v_max_pu: float
    worst_v_min_pu: float
    worst_loading_pct: float
    unresolved_slots: int

    @property
    def n_slots(self) -> int:
        return int(self.export_kw.shape[0])

    @property
    def n_participants(self) -> int:
        return int(self.export_kw.shape[1])

    def per_slot_kwh(self, dt_h: float) -> tuple[FloatArray, FloatArray]:
        """The limits as energies per slot [kWh], (T, P) each: (export, import)."""
        return self.export_kw * dt_h, self.import_kw * dt_h


def static_envelopes(
    n_slots: int,
    n_participants: int,
    export_limit_kw: float | None,
    import_limit_kw: float | None,
) -> Envelopes:
    """The same export and import limit for everyone in every slot (None: unlimited, +inf)."""
    if n_slots < 0 or n_participants < 0:
        raise InputError(f"envelopes: negative shape ({n_slots}, {n_participants})")
    limits = []
    for what, value in (("export", export_limit_kw), ("import", import_limit_kw)):
        v = np.inf if value is None else float(value)
        if not v >= 0.0:  # also rejects nan
            raise InputError(f"{what}_limit_kw: must be >= 0 or None (got {value!r})")
        limits.append(v)
    shape = (n_slots, n_participants)
    return Envelopes(
        export_kw=np.full(shape, limits[0]),
        import_kw=np.full(shape, limits[1]),
        export_level_kw=np.full(n_slots, limits[0]),
        import_level_kw=np.full(n_slots, limits[1]),
        ac_rounds=0,
        worst_v_max_pu=float("nan"),
        worst_v_min_pu=float("nan"),
        worst_loading_pct=float("nan"),
        unresolved_slots=0,
    )


@dataclass(frozen=True, eq=False)
class _Corner:
    """One corner's linear rows a · min(capability, E) ≤ limit: (M, P) and (M,), a ≥ 0.

    The rows are the LV buses' voltage rise (export corner) or drop (import corner) [pu],
    then the monitored branches' active flow from (export) or towards (import) the slack [kW].
    `_ac_measure` puts an AC result of the corner in the same units, so AC − linear is the
    linearisation error of each row.
    """

    export: bool
    a: FloatArray
    limit: FloatArray
    margin: FloatArray
    bus: IntArray  # voltage rows → bus
    branch: IntArray  # thermal rows → branch
    q_per_p: float  # reactive per active injection of the corner [kvar/kW]
    solve_rows: IntArray  # rows no other row dominates: enough for the level with `limit`


def _undominated_rows(a: FloatArray, limit: FloatArray) -> IntArray:
    """Rows that no other row makes redundant: row i implies row j when a_i ≥ a_j everywhere
    and limit_i ≤ limit_j (with a ≥ 0, meeting i meets j). Of identical rows the first stays.
    A bus's voltage row implies its parent's, an upstream branch with a lower rating implies
    the ones below it: on a radial feeder most rows go (rural3: 256 → 29)."""
    n_rows = a.shape[0]
    keep = np.ones(n_rows, dtype=bool)
    for i in range(n_rows):
        implies = (a[i] >= a).all(axis=1) & (limit[i] <= limit)
        same = implies & (a[i] <= a).all(axis=1) & (limit[i] >= limit)
        implies[i] = False
        implies[same & (np.arange(n_rows) < i)] = False  # an earlier twin stays
        keep &= ~implies
    return np.flatnonzero(keep).astype(np.int64)


def _corners(
    feeder: Feeder,
    lin: LinearFeeder,
    bus_of: IntArray,
    *,
    v_min_pu: float,
    v_max_pu: float,
    max_loading_pct: float,
    load_power_factor: float,
) -> tuple[_Corner, _Corner]:
    tan_phi = float(np.sqrt(1.0 / load_power_factor**2 - 1.0))
    lv = feeder.lv_buses
    v0 = lin.v0_pu[lv]
    dv_dp = lin.dv_dp_pu_per_kw[np.ix_(lv, bus_of)]  # (N_lv, P)
    # a kW imported at power factor cos φ (lagging) also draws tan φ kvar
    dv_imp = dv_dp + tan_phi * lin.dv_dq_pu_per_kvar[np.ix_(lv, bus_of)]
    mon = feeder.monitored_branches
    below = feeder.path[np.ix_(mon, bus_of)].astype(np.float64)  # (B_mon, P)
    keep_b = below.any(axis=1)
    # apparent power at the lowest voltage allowed (module docstring), as active power
    s_max_kva = feeder.rating_kva[mon[keep_b]] * (max_loading_pct / 100.0) * v_min_pu
    out = []
    for export, dv, v_room, p_per_s, q_per_p in (
        (True, dv_dp, v_max_pu - v0, 1.0, 0.0),
        (False, dv_imp, v0 - v_min_pu, load_power_factor, tan_phi),
    ):
        keep_v = dv.any(axis=1)
        p_max_kw = s_max_kva * p_per_s
        a = np.vstack([dv[keep_v], below[keep_b]])
        limit = np.concatenate([v_room[keep_v], p_max_kw])
        out.append(
            _Corner(
                export=export,
                a=a,
                limit=limit,
                margin=np.concatenate(
                    [np.full(int(keep_v.sum()), _MARGIN_V_PU), _MARGIN_THERMAL * p_max_kw]
                ),
                bus=lv[keep_v],
                branch=mon[keep_b],
                q_per_p=q_per_p,
                solve_rows=_undominated_rows(a, limit),
            )
        )
    return out[0], out[1]


def _ac_measure(
    c: _Corner,
    res: FlowResult,
    feeder: Feeder,
    lin: LinearFeeder,
    *,
    v_min_pu: float,
    load_power_factor: float,
) -> FloatArray:
    """An AC result of corner c in the units of its rows, (T, M).

    Thermal rows [kW], chosen so that measure ≤ limit is the robust loading limit:
    import corner: its voltages are the lowest any point inside the envelopes has, so its AC
    loading itself must stay ≤ max_loading (scaled by rating · v_min · power factor as the
    row's limit is); export corner: the apparent power at the corner (loading · rating · v at
    the branch's higher end), which must stay ≤ rating · max_loading · v_min so that the
    current holds even where the voltage sags to v_min.
    """
    v = res.v_pu[:, c.bus]
    rise = v - lin.v0_pu[c.bus] if c.export else lin.v0_pu[c.bus] - v
    loading = res.loading_pct[:, c.branch]
    per_pct = feeder.rating_kva[c.branch] / 100.0
    if c.export:
        v_end = np.maximum(
            res.v_pu[:, feeder.branch_from[c.branch]], res.v_pu[:, feeder.branch_to[c.branch]]
        )
        flow = loading * per_pct * v_end
    else:
        flow = loading * per_pct * (v_min_pu * load_power_factor)
    return np.concatenate([rise, flow], axis=1)


def fair_level_kw(capability_kw: FloatArray, a: FloatArray, limit: FloatArray) -> FloatArray:
    """Per slot, the largest level E with a · min(capability, E) ≤ limit in every row.

    Args:
        capability_kw: (T, P) [kW], ≥ 0.
        a: (M, P), ≥ 0: the effect of a kW of participant p on row m.
        limit: (M,) or (T, M): each row's room.

    Returns:
        (T,) [kW]: +inf where the full capabilities fit, 0 where even E = 0 does not (a
        negative limit). Each row is concave, non-decreasing and piecewise linear in E with
        breakpoints at the capabilities: a bisection over the sorted capabilities finds the
        last feasible breakpoint, and the row-wise closed form the level in the next segment.
    """
    n_slots, n_part = capability_kw.shape
    lim_all = np.broadcast_to(limit, (n_slots, a.shape[0]))
    level = np.full(n_slots, np.inf)
    a_t = np.ascontiguousarray(a.T)
    for s in range(0, n_slots, CHUNK_SLOTS):
        cap = capability_kw[s : s + CHUNK_SLOTS]
        lim = lim_all[s : s + CHUNK_SLOTS]
        binds = np.flatnonzero(~(cap @ a_t <= lim).all(axis=1))
        if binds.size == 0:
            continue
        out = level[s : s + CHUNK_SLOTS]
        cap, lim = cap[binds], lim[binds]
        hopeless = ~(lim >= 0.0).all(axis=1)
        out[binds[hopeless]] = 0.0
        keep = np.flatnonzero(~hopeless)
        if keep.size == 0:
            continue
        binds, cap, lim = binds[keep], cap[keep], lim[keep]
        rows = np.arange(binds.size)
        sorted_cap = np.sort(cap, axis=1)
        lo = np.full(binds.size, -1)  # last breakpoint known feasible (−1: E = 0)
        hi = np.full(binds.size, n_part - 1)  # first known infeasible (the full capability)
        open_ = np.flatnonzero(hi - lo > 1)
        while open_.size:
            mid = (lo[open_] + hi[open_]) // 2
            e_mid = sorted_cap[open_, mid]
            f = np.minimum(cap[open_], e_mid[:, None]) @ a_t
            ok = (f <= lim[open_]).all(axis=1)
            lo[open_] = np.where(ok, mid, lo[open_])
            hi[open_] = np.where(ok, hi[open_], mid)
            open_ = open_[hi[open_] - lo[open_] > 1]
        e_lo = np.where(lo >= 0, sorted_cap[rows, np.maximum(lo, 0)], 0.0)
        e_hi = sorted_cap[rows, hi]
        capped = cap <= e_lo[:, None]
        fixed = np.where(capped, cap, 0.0) @ a_t  # rows at E: fixed + E·slope in the segment
        slope = (~capped).astype(np.float64) @ a_t
        room = np.divide(
            lim - fixed, slope, out=np.full_like(fixed, np.inf), where=slope > 0.0
        ).min(axis=1)
        out[binds] = np.clip(room, e_lo, e_hi)
    return level


def _validate(
    feeder: Feeder,
    bus_of: IntArray,
    export_capability_kw: FloatArray,
    import_capability_kw: FloatArray,
    v_min_pu: float,
    v_max_pu: float,
    max_loading_pct: float,
    load_power_factor: float,
) -> None:
    shape = export_capability_kw.shape
    if len(shape) != 2 or import_capability_kw.shape != shape:
        raise InputError(
            "envelopes: export and import capabilities must both be (slots, participants) "
            f"(got {export_capability_kw.shape} and {import_capability_kw.shape})"
        )
    if bus_of.shape != (shape[1],):
        raise InputError(f"envelopes: bus_of must have one bus per participant ({shape[1]})")
    if bus_of.size and (bus_of.min() < 0 or bus_of.max() >= feeder.n_bus):
        raise InputError(f"envelopes: bus_of must lie in 0..{feeder.n_bus - 1}")
    for what, cap in (("export", export_capability_kw), ("import", import_capability_kw)):
        if not (np.isfinite(cap).all() and (cap >= 0.0).all()):
            raise InputError(f"envelopes: {what} capabilities must be finite and >= 0 [kW]")
    if not 0.0 < v_min_pu < v_max_pu:
        raise InputError(f"envelopes: need 0 < v_min_pu < v_max_pu (got {v_min_pu}, {v_max_pu})")
    if not max_loading_pct > 0.0:
        raise InputError(f"envelopes: max_loading_pct must be > 0 (got {max_loading_pct})")
    if not 0.0 < load_power_factor <= 1.0:
        raise InputError(
            f"envelopes: load_power_factor must be in (0, 1] (got {load_power_factor})"
        )


def operating_envelopes(
    feeder: Feeder,
    lin: LinearFeeder,
    flow: PgmPowerFlow,
    bus_of: IntArray,
    export_capability_kw: FloatArray,
    import_capability_kw: FloatArray,
    *,
    v_min_pu: float = 0.94,
    v_max_pu: float = 1.10,
    max_loading_pct: float = 100.0,
    load_power_factor: float = 0.95,
    max_ac_rounds: int = 8,
    refine: bool = True,
) -> Envelopes:
    """Dynamic operating envelopes with a fair (equal, capability-capped) allocation.

    Args:
        feeder, lin, flow: the feeder, its `linearise`d model and its AC power flow.
        bus_of: bus of every participant, (P,).
        export_capability_kw: most each participant could export in each slot, (T, P) [kW]
            (PV + battery + v2h discharge power).
        import_capability_kw: most each could import, (T, P) [kW] (demand + battery and EV
            charging power).
        v_min_pu, v_max_pu: voltage limits at the LV buses [pu].
        max_loading_pct: branch loading limit [%] (current-based, as pandapower's).
        load_power_factor: power factor of imports (lagging); exports are at unity.
        max_ac_rounds: AC check-and-tighten rounds at most (0: the linear envelopes only,
            unchecked; the worst-corner diagnostics are then nan).
        refine: in the first AC round, also correct the binding slots whose corner has AC
            slack (the linear model overestimates the voltage rise at high voltage) and raise
            their level where that gains more than `_REFINE_GAIN`; later rounds verify them.

    Returns:
        `Envelopes`; see the module docstring for the method.
    """
    bus_of = np.asarray(bus_of, dtype=np.int64)
    cap_exp = np.asarray(export_capability_kw, dtype=np.float64)
    cap_imp = np.asarray(import_capability_kw, dtype=np.float64)
    _validate(
        feeder, bus_of, cap_exp, cap_imp, v_min_pu, v_max_pu, max_loading_pct, load_power_factor
    )
    n_part = cap_exp.shape[1]
    exp_c, imp_c = _corners(
        feeder,
        lin,
        bus_of,
        v_min_pu=v_min_pu,
        v_max_pu=v_max_pu,
        max_loading_pct=max_loading_pct,
        load_power_factor=load_power_factor,
    )
    to_bus = np.zeros((n_part, feeder.n_bus))
    to_bus[np.arange(n_part), bus_of] = 1.0
    runs = [
        _CornerRun(c, cap, fair_level_kw(cap, c.a[c.solve_rows], c.limit[c.solve_rows]))
        for c, cap in ((exp_c, cap_exp), (imp_c, cap_imp))
    ]
    rounds = 0
    while rounds < max_ac_rounds and any(r.todo.size for r in runs):
        rounds += 1
        for r in runs:
            r.check_and_tighten(
                feeder,
                lin,
                flow,
                to_bus,
                v_min_pu=v_min_pu,
                load_power_factor=load_power_factor,
                refine=refine and rounds == 1,
            )
    for r in runs:
        if max_ac_rounds > 0:  # changed in the last round, not verified: last verified level
            r.level[r.todo] = r.verified[r.todo]
            r.unresolved[r.todo] |= np.isnan(r.verified[r.todo])
        r.level[r.unresolved] = 0.0
    exp_r, imp_r = runs
    checked = max_ac_rounds > 0

    def _worst(values: FloatArray, reduce: str) -> float:
        values = values[~np.isnan(values)]
        if not checked or values.size == 0:
            return float("nan")
        return float(getattr(np, reduce)(values))

    return Envelopes(
        export_kw=np.minimum(cap_exp, exp_r.level[:, None]),
        import_kw=np.minimum(cap_imp, imp_r.level[:, None]),
        export_level_kw=exp_r.level,
        import_level_kw=imp_r.level,
        ac_rounds=rounds,
        worst_v_max_pu=_worst(exp_r.worst_v_pu, "max"),
        worst_v_min_pu=_worst(imp_r.worst_v_pu, "min"),
        worst_loading_pct=_worst(
            np.concatenate([exp_r.worst_loading_pct, imp_r.worst_loading_pct]), "max"
        ),
        unresolved_slots=int((exp_r.unresolved | imp_r.unresolved).sum()),
    )


class _CornerRun:
    """The AC check of one corner: its levels, the slots still to check, the worst results.

    Local bookkeeping of `operating_envelopes` (mutable, never leaves it).
    """

    def __init__(self, corner: _Corner, capability_kw: FloatArray, level_kw: FloatArray) -> None:
        n_slots = capability_kw.shape[0]
        self.corner = corner
        self.cap = capability_kw
        self.level = level_kw
        self.todo: IntArray = np.arange(n_slots, dtype=np.int64)
        # results of the last corner that passed the AC check (nan: none yet)
        self.verified = np.full(n_slots, np.nan)
        self.worst_v_pu = np.full(n_slots, np.nan)
        self.worst_loading_pct = np.full(n_slots, np.nan)
        self.unresolved = np.zeros(n_slots, dtype=bool)

    def check_and_tighten(
        self,
        feeder: Feeder,
        lin: LinearFeeder,
        flow: PgmPowerFlow,
        to_bus: FloatArray,
        *,
        v_min_pu: float,
        load_power_factor: float,
        refine: bool,
    ) -> None:
        """One round: AC flow of the corner in every slot still to check (in chunks, to bound
        memory); tighten the slots that violate a limit (and with `refine`, raise binding
        slots with slack); the changed slots are the next round's."""
        c = self.corner
        sign = 1.0 if c.export else -1.0
        tol = _TOL * np.maximum(np.abs(c.limit), 1.0)
        lv = feeder.lv_buses
        mon = feeder.monitored_branches
        next_todo = []
        for s in range(0, self.todo.size, CHUNK_SLOTS):
            slots = self.todo[s : s + CHUNK_SLOTS]
            x = np.minimum(self.cap[slots], self.level[slots, None])
            p_inj = sign * (x @ to_bus)
            res = flow.run(p_inj, p_inj * c.q_per_p)
            measure = _ac_measure(
                c, res, feeder, lin, v_min_pu=v_min_pu, load_power_factor=load_power_factor
            )
            bad = (measure > c.limit + tol).any(axis=1)
            ok = slots[~bad]
            v_lv = res.v_pu[~bad][:, lv]
            self.verified[ok] = self.level[ok]
            self.worst_v_pu[ok] = v_lv.max(axis=1) if c.export else v_lv.min(axis=1)
            self.worst_loading_pct[ok] = res.loading_pct[~bad][:, mon].max(axis=1, initial=0.0)
            stuck = bad & (self.level[slots] <= 0.0)  # violated at zero: nothing to tighten
            self.unresolved[slots[stuck]] = True
            bad &= ~stuck
            # AC − linear error of every row at this corner: the next solve's correction
            fix = bad | (refine & np.isfinite(self.level[slots]))
            changed = slots[:0]
            if fix.any():
                mend = slots[fix]
                error = measure[fix] - x[fix] @ c.a.T
                new = fair_level_kw(self.cap[mend], c.a, c.limit - c.margin - error)
                old = self.level[mend]
                old = np.where(np.isinf(old), self.cap[mend].max(axis=1), old)
                was_bad = bad[fix]
                # violators drop (at least by _SHRINK); slots with slack rise if it pays
                lower = was_bad
                higher = ~was_bad & (new > old * (1.0 + _REFINE_GAIN))
                self.level[mend[lower]] = np.minimum(new[lower], old[lower] * (1.0 - _SHRINK))
                self.level[mend[higher]] = new[higher]
                changed = mend[lower | higher]
            next_todo.append(changed)
        self.todo = np.concatenate(next_todo) if next_todo else self.todo[:0]
