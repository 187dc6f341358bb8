"""User meter data drive a run; bad meter data stop it with exit code 2 and nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from peergrid import load_scenario, simulate
from peergrid.cli import main

SCENARIO = """
schema_version = 1
name = "metered"
seed = 5
[time]
start = 2024-06-03
days = 1
slot_minutes = 15
timezone = "Europe/Berlin"
[data]
meter_file = "meters.csv"
unit = "kWh"
[[participants]]
name = "a"
[[participants]]
name = "b"
[[participants]]
name = "c"
pv = { kwp = 4 }
"""


def write_case(folder: Path, demand_b: float = 0.1) -> Path:
    stamps = pd.date_range("2024-06-03", periods=96, freq="15min", tz="Europe/Berlin")
    hours = np.arange(96) / 4
    gen_a = np.clip(np.sin((hours - 6) / 14 * np.pi), 0, None) * 1.2  # a sunny day
    rows = [
        {"timestamp": t.isoformat(), "participant": "a", "demand": 0.05, "generation": g}
        for t, g in zip(stamps, gen_a, strict=True)
    ] + [
        {"timestamp": t.isoformat(), "participant": "b", "demand": demand_b, "generation": 0.0}
        for t in stamps
    ]
    pd.DataFrame(rows).to_csv(folder / "meters.csv", index=False)
    path = folder / "community.toml"
    path.write_text(SCENARIO)
    return path


def test_meter_data_replace_synthetic_profiles(tmp_path: Path) -> None:
    result = simulate(load_scenario(write_case(tmp_path)))
    demand = result.series("demand_kwh")
    assert np.allclose(demand[:, 0], 0.05) and np.allclose(demand[:, 1], 0.1)
    assert result.series("generation_kwh")[:, 0].max() > 1.0
    assert result.series("generation_kwh")[:, 1].sum() == 0
    # c keeps its synthetic profile
    assert result.series("demand_kwh")[:, 2].std() > 0
    # a's midday surplus is sold to b inside the community
    assert result.summary["energy"]["p2p_traded_kwh"] > 0
    # the resolved scenario names the meter file absolutely, so it reruns from anywhere
    assert Path(result.scenario.data.meter_file).is_absolute()  # type: ignore[union-attr]


def test_bad_meter_data_exit_2_nothing_written(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write_case(tmp_path, demand_b=-0.1)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "meters.csv" in err and "demand" in err and "negative" in err.lower()
    assert not out.exists()
