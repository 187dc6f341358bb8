"""Comparing market designs on one community."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from peergrid.cli import main
from peergrid.engine.compare import compare
from peergrid.errors import InputError
from peergrid.rundir import write_comparison

from .conftest import small_scenario


def test_designs_share_community_data_and_baseline(tmp_path: Path) -> None:
    comp = compare(small_scenario(n=6), ["sdr", "uniform"])
    sdr, uni = comp.results["sdr"], comp.results["uniform"]
    assert sdr.community.profiles is uni.community.profiles  # built once
    assert np.array_equal(sdr.series("net_kwh"), uni.series("net_kwh"))
    assert np.allclose(sdr.participants["baseline_bill"], uni.participants["baseline_bill"])
    table = comp.table()
    assert list(table["market"]) == ["sdr", "uniform"]
    assert set(table["family"]) == {"community"}
    out = write_comparison(comp, tmp_path / "cmp")
    for name in (
        "compare.html",
        "kpis.csv",
        "summary.json",
        "sdr/summary.json",
        "uniform/participants.csv",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["designs"]) == {"sdr", "uniform"}
    kpis = pd.read_csv(out / "kpis.csv")
    assert len(kpis) == 2 and "fairness_jain" in kpis.columns
    page = (out / "compare.html").read_text()
    assert page.count("<svg") == 2 and "https://" not in page


def test_bad_design_lists_fail_before_any_work() -> None:
    with pytest.raises(InputError, match="unknown market mechanism 'nope'"):
        compare(small_scenario(n=2), ["sdr", "nope"])
    with pytest.raises(InputError, match="named twice"):
        compare(small_scenario(n=2), ["sdr", "sdr"])


def test_cli_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c"
    assert main(["compare", "demo", "--markets", "sdr,uniform", "--out", str(out)]) == 0
    assert "market designs compared" in capsys.readouterr().out
    assert (out / "compare.html").is_file()
    assert main(["compare", "demo", "--markets", "sdr,bogus", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
