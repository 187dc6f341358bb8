"""Resolving a scenario: groups expanded into explicit participants, every default made explicit.

`resolve(scenario)` returns an equivalent scenario with no groups; `to_toml(resolved)` writes it so
that running the written file repeats the run exactly (the seed is kept: demand, mobility and
appliance draws still come from it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tomli_w

from peergrid.errors import InputError
from peergrid.rng import child_rng
from peergrid.scenario.schema import (
    BatterySpec,
    DemandSpec,
    EvSpec,
    GroupSpec,
    LocationSpec,
    ParticipantSpec,
    PvSpec,
    Scenario,
    ShiftableSpec,
    ThermalSpec,
)


def _draw(rng: np.random.Generator, value: Any, *, digits: int = 2) -> Any:
    """A fixed value, a [low, high] range (uniform) or a list of choices."""
    if isinstance(value, tuple):
        low, high = value
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            return int(rng.integers(low, high + 1))
        return round(float(rng.uniform(low, high)), digits)
    if isinstance(value, list):
        return value[int(rng.integers(len(value)))]
    return value


def _member(group: GroupSpec, name: str, rng: np.random.Generator) -> ParticipantSpec:
    d = group.demand
    demand = DemandSpec(
        annual_kwh=_draw(rng, d.annual_kwh, digits=0),
        occupants=_draw(rng, d.occupants),
        kind=_draw(rng, d.kind),
    )
    pv = bat = ev = heating = None
    # Each optional asset consumes the same number of draws whether or not the member gets it,
    # so that changing one share does not reshuffle the other assets of the group.
    if group.pv is not None:
        g = group.pv
        has = rng.random() < g.share
        spec = PvSpec(
            kwp=_draw(rng, g.kwp),
            tilt_deg=_draw(rng, g.tilt_deg, digits=0),
            azimuth_deg=_draw(rng, g.azimuth_deg, digits=0),
        )
        pv = spec if has else None
    if group.battery is not None:
        b = group.battery
        has = rng.random() < b.share
        spec_b = BatterySpec(
            capacity_kwh=_draw(rng, b.capacity_kwh, digits=1),
            power_kw=_draw(rng, b.power_kw, digits=1),
            round_trip_efficiency=_draw(rng, b.round_trip_efficiency),
            soc_min=b.soc_min,
            soc_max=b.soc_max,
            soc_initial=b.soc_initial,
        )
        bat = spec_b if has else None
    if group.ev is not None:
        e = group.ev
        has = rng.random() < e.share
        spec_e = EvSpec(
            capacity_kwh=_draw(rng, e.capacity_kwh, digits=0),
            power_kw=_draw(rng, e.power_kw, digits=1),
            round_trip_efficiency=_draw(rng, e.round_trip_efficiency),
            v2h=e.v2h,
            soc_min=e.soc_min,
            target_soc=e.target_soc,
            soc_initial=_draw(rng, e.soc_initial),
            daily_km=_draw(rng, e.daily_km, digits=0),
            kwh_per_km=_draw(rng, e.kwh_per_km, digits=3),
        )
        ev = spec_e if has else None
    if group.heating is not None:
        h = group.heating
        has = rng.random() < h.share
        spec_h = ThermalSpec(
            kind=h.kind,
            power_kw=_draw(rng, h.power_kw, digits=1),
            cop=_draw(rng, h.cop),
            ua_kw_per_k=_draw(rng, h.ua_kw_per_k, digits=3),
            capacity_kwh_per_k=_draw(rng, h.capacity_kwh_per_k, digits=1),
            comfort_min_c=h.comfort_min_c,
            comfort_max_c=h.comfort_max_c,
        )
        heating = spec_h if has else None
    shiftable = []
    for s in group.shiftable:
        has = rng.random() < s.share
        spec_s = ShiftableSpec(
            appliance=s.appliance,
            energy_kwh=_draw(rng, s.energy_kwh),
            duration_min=s.duration_min,
            window_start=s.window_start,
            window_end=s.window_end,
            runs_per_week=_draw(rng, s.runs_per_week, digits=1),
        )
        if has:
            shiftable.append(spec_s)
    return ParticipantSpec(
        name=name, demand=demand, pv=pv, battery=bat, ev=ev, heating=heating, shiftable=shiftable
    )


def expand_groups(scenario: Scenario) -> list[ParticipantSpec]:
    """Explicit participants first, then each group's members, drawn with the scenario seed."""
    rng = child_rng(scenario.seed, "groups")
    out = list(scenario.participants)
    taken = {p.name for p in out}
    for gi, group in enumerate(scenario.groups):
        width = max(2, len(str(group.count)))
        for i in range(group.count):
            name = f"{group.name_prefix}-{i + 1:0{width}d}"
            if name in taken:
                raise InputError(f"groups[{gi}]: member name {name!r} is already a participant")
            taken.add(name)
            out.append(_member(group, name, rng))
    return out


def _explicit_heating(member: ParticipantSpec) -> ParticipantSpec:
    """Start a heated home in the middle of its comfort band unless told otherwise."""
    h = member.heating
    if h is None or h.initial_c is not None:
        return member
    mid = round((h.comfort_min_c + h.comfort_max_c) / 2, 2)
    return member.model_copy(update={"heating": h.model_copy(update={"initial_c": mid})})


def resolve(scenario: Scenario, station: tuple[float, float, float] | None) -> Scenario:
    """The same scenario with groups expanded and defaults explicit.

    `station` is the weather source's own (latitude, longitude, altitude_m), used where the
    scenario leaves the location open.
    """
    loc = scenario.location
    if station is not None:
        loc = LocationSpec(
            weather=loc.weather,
            latitude=loc.latitude if loc.latitude is not None else station[0],
            longitude=loc.longitude if loc.longitude is not None else station[1],
            altitude_m=loc.altitude_m if loc.altitude_m is not None else station[2],
        )
    participants = [_explicit_heating(member) for member in expand_groups(scenario)]
    return scenario.model_copy(update={"location": loc, "participants": participants, "groups": []})


def to_toml(scenario: Scenario, header: str = "") -> str:
    """The scenario as TOML (None fields left out, as TOML has no null)."""
    data = scenario.model_dump(mode="python", exclude_none=True)
    if not data.get("groups"):
        data.pop("groups", None)
    text = tomli_w.dumps(data)
    return (header + "\n" if header else "") + text
