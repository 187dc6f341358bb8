"""The command line: exit codes, messages, nothing written on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peergrid.cli import main


def test_scenarios_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "suburb-100-year" in out
    assert main(["scenario", "show", "demo"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("# peergrid scenario") and "schema_version = 1" in shown


def test_listings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["markets"]) == 0
    out = capsys.readouterr().out
    assert "sdr" in out and "uniform" in out
    assert main(["ems"]) == 0
    out = capsys.readouterr().out
    assert "self-consumption" in out and "price-aware" in out
    assert main(["weather"]) == 0
    assert "dwd-try-2010" in capsys.readouterr().out


def test_bad_scenario_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "community.toml"
    bad.write_text(
        'schema_version = 1\nname = "x"\n[time]\nstart = 2024-06-03\ndays = 1\n'
        '[[participants]]\nname = "a"\nbattery = { capacity_kwh = 5, power_kw = -5 }\n'
    )
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "community.toml: participants[0].battery.power_kw: must be > 0 (got -5)" in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["community.toml"]


def test_unknown_market_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "demo", "--market", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_run_small_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "tiny.toml"
    sc.write_text(
        'schema_version = 1\nname = "tiny"\nseed = 3\n[time]\nstart = 2024-06-03\ndays = 1\n'
        '[[participants]]\nname = "a"\npv = { kwp = 6 }\n[[participants]]\nname = "b"\n'
    )
    out = tmp_path / "run"
    assert main(["run", str(sc), "--out", str(out), "--market", "uniform"]) == 0
    printed = capsys.readouterr().out
    assert "self-sufficiency" in printed and str(out / "report.html") in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["market"] == "uniform" and summary["participants"] == 2


def test_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "demo"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "valid (36 participants, 7 days, market sdr, gate intraday 4, forecast persistence" in out
    )


def test_progress_is_reported_to_the_end() -> None:
    from peergrid import simulate

    from .engine.conftest import small_scenario

    calls: list[tuple[int, int]] = []
    simulate(
        small_scenario(n=2, days=6), on_progress=lambda done, total: calls.append((done, total))
    )
    assert calls[-1] == (576, 576)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) >= 2


BOOK = "id,participant,side,quantity_kwh,price\n" + "".join(
    f"{i},{p},{side},1,{price}\n"
    for i, (p, side, price) in enumerate(
        [
            ("a", "buy", 17),
            ("b", "buy", 14),
            ("c", "buy", 13),
            ("d", "buy", 9),
            ("e", "buy", 6),
            ("f", "sell", 1),
            ("g", "sell", 4),
            ("h", "sell", 5),
            ("i", "sell", 8),
            ("j", "sell", 11),
        ],
        start=1,
    )
)


def test_clear_prints_json_for_the_mcafee_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = tmp_path / "book.csv"
    book.write_text(BOOK)
    assert main(["clear", str(book), "--mechanism", "mcafee"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mechanism"] == "mcafee" and out["traded_kwh"] == 4.0
    assert out["clearing_price"] == 8.5
    assert {f["id"] for f in out["fills"] if f["filled_kwh"] > 0} == {1, 2, 3, 4, 6, 7, 8, 9}
    assert main(["clear", str(book), "--mechanism", "k-double", "--param", "k=0.25"]) == 0
    assert json.loads(capsys.readouterr().out)["mechanism"] == "k-double"
    assert (
        main(["clear", str(book), "--mechanism", "sdr", "--retail", "0.3", "--feed-in", "0.1"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["trades"] is None


def test_clear_malformed_book_exits_2_naming_row_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = tmp_path / "book.csv"
    book.write_text(BOOK.replace("3,c,buy,1,13", "3,c,buy,-1,13"))
    assert main(["clear", str(book), "--mechanism", "uniform"]) == 2
    err = capsys.readouterr().err
    assert "book.csv" in err and "row 3" in err and "quantity_kwh" in err
    book.write_text(BOOK.replace("3,c,buy,1,13", "3,c,hold,1,13"))
    assert main(["clear", str(book), "--mechanism", "uniform"]) == 2
    assert "side" in capsys.readouterr().err


def test_validate_names_the_feeder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "high-pv"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "feeder kerber-landnetz-freileitung-1: 13 buses used" in out


def test_feeders_lists_the_built_ins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feeders"]) == 0
    out = capsys.readouterr().out
    for name in ("simbench-lv-rural3", "cigre-lv", "kerber-dorfnetz"):
        assert name in out
