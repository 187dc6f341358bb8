"""Small random communities for end-to-end tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

from peergrid.scenario.schema import Scenario


def small_scenario(
    *,
    n: int = 6,
    days: int = 1,
    slot_minutes: int = 15,
    market: str = "sdr",
    ems: str = "self-consumption",
    seed: int = 1,
    start: dt.date = dt.date(2024, 5, 20),
    tou: bool = False,
    weather: str = "dwd-try-2010:4",
    forecast: str = "perfect",
    gate_closure: str | None = None,
) -> Scenario:
    """A small community; with `perfect` forecasts by default, so that the market's own
    properties (parts 1–3) are tested apart from forecast error (test_lifecycle.py tests
    delivery under forecast error)."""
    participants: list[dict[str, Any]] = []
    for i in range(n):
        p: dict[str, Any] = {"name": f"h{i}", "demand": {"annual_kwh": 2500 + 300 * i}}
        if i % 2 == 0:
            p["pv"] = {"kwp": 3.0 + i}
        if i % 3 == 0:
            p["battery"] = {"capacity_kwh": 8.0, "power_kw": 4.0}
        if i % 4 == 1:
            p["ev"] = {"capacity_kwh": 50.0, "power_kw": 7.4, "v2h": i % 8 == 1}
        if i % 5 == 2:
            p["heating"] = {"kind": "heat-pump"}
        if i % 3 == 1:
            p["shiftable"] = [
                {"appliance": "wm", "energy_kwh": 1.0, "duration_min": 90, "runs_per_week": 7}
            ]
        participants.append(p)
    tariff: dict[str, Any] = {"retail_per_kwh": 0.30, "feed_in_per_kwh": 0.07}
    if tou:
        tariff["retail_tou"] = [
            {"start": "17:00", "end": "21:00", "price_per_kwh": 0.45},
            {"start": "00:00", "end": "06:00", "price_per_kwh": 0.18},
        ]
    return Scenario.model_validate(
        {
            "schema_version": 1,
            "name": "small",
            "seed": seed,
            "time": {
                "start": start,
                "days": days,
                "slot_minutes": slot_minutes,
                "timezone": "Europe/Berlin",
            },
            "location": {"weather": weather},
            "tariff": tariff,
            "market": {"mechanism": market, "gate_closure": gate_closure},
            "forecast": {"method": forecast},
            "ems": {"policy": ems},
            "participants": participants,
        }
    )


@st.composite
def random_scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 9))
    participants = []
    for i in range(n):
        p: dict[str, Any] = {
            "name": f"p{i}",
            "demand": {
                "annual_kwh": draw(st.floats(800, 9000)),
                "occupants": draw(st.integers(1, 5)),
                "kind": draw(st.sampled_from(["working", "family", "retired", "student"])),
            },
        }
        if draw(st.booleans()):
            p["pv"] = {"kwp": draw(st.floats(0.5, 15)), "azimuth_deg": draw(st.floats(90, 270))}
        if draw(st.booleans()):
            p["battery"] = {
                "capacity_kwh": draw(st.floats(1, 20)),
                "power_kw": draw(st.floats(0.5, 8)),
                "round_trip_efficiency": draw(st.floats(0.7, 1.0)),
            }
        if draw(st.booleans()):
            p["ev"] = {
                "capacity_kwh": draw(st.floats(20, 90)),
                "power_kw": draw(st.floats(2, 22)),
                "v2h": draw(st.booleans()),
            }
        if draw(st.booleans()):
            p["heating"] = {"kind": draw(st.sampled_from(["heat-pump", "air-conditioner"]))}
        participants.append(p)
    retail = draw(st.floats(0.1, 0.6))
    month = draw(st.integers(1, 12))
    return Scenario.model_validate(
        {
            "schema_version": 1,
            "name": "random",
            "seed": draw(st.integers(0, 2**32)),
            "time": {
                "start": dt.date(2024, month, 10),
                "days": 1,
                "slot_minutes": draw(st.sampled_from([15, 30, 60])),
                "timezone": "Europe/Berlin",
            },
            "tariff": {
                "retail_per_kwh": retail,
                "feed_in_per_kwh": retail * draw(st.floats(0.0, 0.9)),
            },
            "market": {
                "mechanism": draw(st.sampled_from(["sdr", "uniform"])),
                "gate_closure": draw(
                    st.sampled_from(["intraday 0", "intraday 4", "day-ahead 12:00"])
                ),
            },
            "forecast": {
                "method": draw(st.sampled_from(["perfect", "persistence", "seasonal-naive"]))
            },
            "ems": {"policy": draw(st.sampled_from(["self-consumption", "price-aware"]))},
            "participants": participants,
        }
    )
