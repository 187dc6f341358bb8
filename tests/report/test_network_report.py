"""The network section of the report: right counts and rankings, thin heat maps, sound HTML."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import struct
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from peergrid.engine.result import SimulationResult
from peergrid.engine.simulate import simulate
from peergrid.network.kpi import worst_buses
from peergrid.report import network as nw
from peergrid.report.network import NetworkCase, NetworkReportData, network_section
from peergrid.rundir import write_run
from peergrid.rundir.run import _network_report
from peergrid.scenario.load import load_scenario
from peergrid.scenario.schema import Scenario

V_MIN, V_MAX, MAX_LOADING = 0.94, 1.10, 100.0


def _case(
    v_pu: np.ndarray,
    loading_pct: np.ndarray,
    losses_kw: np.ndarray | None = None,
    curtailed_kwh: np.ndarray | None = None,
) -> NetworkCase:
    t = v_pu.shape[0]
    return NetworkCase(
        v_pu=np.asarray(v_pu, dtype=np.float32),
        loading_pct=np.asarray(loading_pct, dtype=np.float32),
        losses_kw=np.ones(t) if losses_kw is None else np.asarray(losses_kw, dtype=np.float64),
        curtailed_kwh=np.zeros(t) if curtailed_kwh is None else np.asarray(curtailed_kwh),
    )


def _data(
    p2p: NetworkCase,
    baseline: NetworkCase,
    *,
    bus_labels: list[str] | None = None,
    branch_labels: list[str] | None = None,
    feeder_name: str = "test-feeder",
    envelope_note: str | None = None,
    start: str = "2024-06-01",
    timezone: str = "Europe/Berlin",
) -> NetworkReportData:
    t, m = p2p.v_pu.shape
    k = p2p.loading_pct.shape[1]
    return NetworkReportData(
        feeder_name=feeder_name,
        bus_labels=bus_labels or [f"bus {i}" for i in range(m)],
        branch_labels=branch_labels or [f"line {j}" for j in range(k)],
        times_local=pd.date_range(start, periods=t, freq="15min", tz=timezone),
        dt_h=0.25,
        v_min_pu=V_MIN,
        v_max_pu=V_MAX,
        max_loading_pct=MAX_LOADING,
        p2p=p2p,
        baseline=baseline,
        envelope_note=envelope_note,
    )


def _known() -> NetworkReportData:
    """8 slots, 4 buses, 3 branches with hand-placed violations.

    P2P: over-voltage in slots 2 and 3 (bus 3 both, bus 1 in slot 3 only), under-voltage in
    slot 6 (bus 2) and slot 3 (bus 0, so slot 3 has both), overloads in slots 2 and 5.
    Baseline: one under-voltage slot (7, bus 3), no over-voltage, no overload.
    """
    v = np.full((8, 4), 1.0)
    v[2, 3], v[3, 3], v[3, 1] = 1.12, 1.15, 1.11
    v[3, 0], v[6, 2] = 0.93, 0.90
    v[5, 2] = 1.10  # on the limit: not a violation
    load = np.full((8, 3), 50.0)
    load[2, 0], load[5, 2], load[4, 1] = 120.0, 101.0, 100.0  # 100 % is on the limit
    vb = np.full((8, 4), 1.01)
    vb[7, 3] = 0.92
    lb = np.full((8, 3), 40.0)
    lb[1, 1] = 95.0
    curtailed = np.zeros(8)
    curtailed[4] = 0.5
    return _data(
        _case(v, load, losses_kw=np.full(8, 2.0), curtailed_kwh=curtailed),
        _case(vb, lb, losses_kw=np.full(8, 3.0)),
    )


class _Structure(HTMLParser):
    """Checks that every element is closed in order; collects ids, headings, tables and text."""

    VOID = frozenset({"br", "hr", "img", "meta", "input", "link", "wbr", "col", "source"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.headings: list[str] = []
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self.tables: list[list[list[str]]] = []  # table -> rows -> cells (text)
        self._in_heading = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        for key in ("href", "xlink:href", "src"):
            if values.get(key) is not None:
                self.hrefs.append(str(values[key]))
        if tag in ("h2", "h3"):
            self._in_heading = True
            self.headings.append("")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        for key in ("href", "xlink:href", "src"):
            if values.get(key) is not None:
                self.hrefs.append(str(values[key]))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()
        if tag in ("h2", "h3"):
            self._in_heading = False
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self.headings[-1] += data
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def known_fragment() -> str:
    """The section of `_known()`, rendered once for the tests that read it."""
    return network_section(_known())


def _parse(fragment: str) -> _Structure:
    parser = _Structure()
    parser.feed(fragment)
    parser.close()
    assert not parser.errors, parser.errors[:5]
    assert not parser.stack, parser.stack
    return parser


def _kpi(parsed: _Structure) -> dict[str, list[str]]:
    """Key-figure table: label -> [P2P, baseline, change, meaning]."""
    return {row[0]: row[1:] for row in parsed.tables[0][1:]}


def _table_after(parsed: _Structure, heading: str) -> list[list[str]]:
    """Body rows of the table under a heading (tables follow headings in order)."""
    order = {
        "Buses with the highest voltage": 1,
        "Buses with the lowest voltage": 2,
        "Most loaded branches": 3,
    }
    assert heading in parsed.headings
    return parsed.tables[order[heading]][1:]


# --- aggregates ------------------------------------------------------------------------------


def test_kpis_count_the_hand_placed_violations() -> None:
    data = _known()
    kpis = nw.case_kpis(data, data.p2p)
    assert kpis.overvoltage_slots == 2  # slots 2 and 3; 1.10 exactly is within the limit
    assert kpis.undervoltage_slots == 2  # slots 3 and 6
    assert kpis.voltage_violation_slots == 3  # slot 3 has both kinds: counted once
    assert kpis.overload_slots == 2  # slots 2 and 5; 100 % exactly is within the limit
    assert kpis.max_voltage_pu == pytest.approx(1.15)
    assert kpis.min_voltage_pu == pytest.approx(0.90)
    assert kpis.max_loading_pct == pytest.approx(120.0)
    assert kpis.losses_kwh == pytest.approx(8 * 2.0 * 0.25)
    assert kpis.curtailed_kwh == pytest.approx(0.5)


def test_kpi_table_shows_the_counts_and_changes(known_fragment: str) -> None:
    rows = _kpi(_parse(known_fragment))
    assert rows["Slots with over-voltage"][:3] == ["2 (25.0 %)", "0 (0.0 %)", "+2"]
    assert rows["Slots with under-voltage"][:3] == ["2 (25.0 %)", "1 (12.5 %)", "+1"]
    assert rows["Slots with a voltage violation"][:3] == ["3 (37.5 %)", "1 (12.5 %)", "+2"]
    assert rows["Slots with an overload"][:3] == ["2 (25.0 %)", "0 (0.0 %)", "+2"]
    assert rows["Highest voltage"][:3] == ["1.1500 p.u.", "1.0100 p.u.", "+0.1400 p.u."]
    assert rows["Lowest voltage"][:3] == ["0.9000 p.u.", "0.9200 p.u.", "\u22120.0200 p.u."]
    assert rows["Highest loading"][:3] == ["120.0 %", "95.0 %", "+25.0 pp"]
    # Losses 8 x 2 kW x 0.25 h = 4 kWh against 8 x 3 x 0.25 = 6 kWh.
    assert rows["Network losses"][:3] == ["4.00 kWh", "6.00 kWh", "\u22122.00 kWh (\u221233.3 %)"]
    assert rows["Curtailed generation"][:3] == ["0.50 kWh", "0 kWh", "+0.50 kWh"]


def test_worst_bus_and_branch_tables_follow_the_ranking(known_fragment: str) -> None:
    parsed = _parse(known_fragment)
    high = _table_after(parsed, "Buses with the highest voltage")
    # Max voltages with P2P: bus 3 1.15, bus 1 1.11, bus 2 1.10, bus 0 1.00.
    assert [row[1] for row in high] == ["bus 3", "bus 1", "bus 2", "bus 0"]
    assert high[0] == ["1", "bus 3", "1.1500", "2", "1.0100", "0"]
    assert high[2][3] == "0"  # 1.10 exactly is not above the limit
    low = _table_after(parsed, "Buses with the lowest voltage")
    assert [row[1] for row in low] == ["bus 2", "bus 0", "bus 1", "bus 3"]
    assert low[0] == ["1", "bus 2", "0.9000", "1", "1.0100", "0"]
    assert low[3][4:] == ["0.9200", "1"]  # bus 3's baseline under-voltage in slot 7
    branches = _table_after(parsed, "Most loaded branches")
    assert [row[1] for row in branches] == ["line 0", "line 2", "line 1"]
    assert branches[0][2] == "120.0"
    assert branches[0][4] == "1"  # line 0 is overloaded in one slot


def test_percentile_by_column_ignores_nan_without_warning() -> None:
    x = np.arange(200, dtype=np.float64).reshape(100, 2)
    np.testing.assert_allclose(nw.percentile_by_column(x, 99.0), np.percentile(x, 99.0, axis=0))
    x[:, 1] = np.nan
    x[0, 0] = np.nan
    out = nw.percentile_by_column(x, 50.0)
    assert out[0] == pytest.approx(np.percentile(x[1:, 0], 50.0))
    assert np.isnan(out[1])


# --- thinning --------------------------------------------------------------------------------


def test_columns_follow_the_clock_and_stay_below_the_cap() -> None:
    assert nw.slots_per_column(1, 0.25) == 1
    assert nw.slots_per_column(1500, 0.25) == 1
    assert nw.slots_per_column(1501, 0.25) == 2
    year = 366 * 96
    k = nw.slots_per_column(year, 0.25)
    assert k == 24  # 6 h: the smallest divisor of a day's 96 slots giving <= 1500 columns
    assert -(-year // k) <= nw.MAX_HEATMAP_COLUMNS
    assert nw.slots_per_column(year, 1.0) == 24  # hourly slots: one column per day
    assert nw.slots_per_column(5000, 0.3) == 4  # 80 slots per day is no whole day: the minimum


def test_one_slot_excursions_survive_thinning() -> None:
    v = np.full((96, 3), 1.02)
    v[37, 0] = 1.105  # one slot just above the upper limit
    v[50, 1] = 0.935  # one slot just below the lower limit, in a block whose max is 1.02
    v[10, 2], v[11, 2] = 1.09, 0.93  # same block: the under-voltage is the worse one
    cols = nw.heatmap_columns(v, 24, v_min_pu=V_MIN, v_max_pu=V_MAX)
    assert cols.shape == (4, 3)
    assert cols[1, 0] == pytest.approx(1.105)
    assert cols[2, 1] == pytest.approx(0.935)
    assert cols[0, 2] == pytest.approx(0.93)
    assert cols[3, 0] == pytest.approx(1.02)
    np.testing.assert_array_equal(nw.heatmap_columns(v, 1, v_min_pu=V_MIN, v_max_pu=V_MAX), v)


@settings(max_examples=60, deadline=None)
@given(
    v=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=30),
        elements=st.floats(0.85, 1.2),
    ),
    k=st.integers(1, 9),
)
def test_thinned_cells_are_block_extremes_and_keep_one_sided_violations(
    v: np.ndarray, k: int
) -> None:
    cols = nw.heatmap_columns(v, k, v_min_pu=V_MIN, v_max_pu=V_MAX)
    n_cols = -(-v.shape[0] // k)
    assert cols.shape == (n_cols, v.shape[1])
    for c in range(n_cols):
        block = v[c * k : (c + 1) * k]
        high, low = block.max(axis=0), block.min(axis=0)
        assert np.all((cols[c] == high) | (cols[c] == low))
        over, under = high > V_MAX, low < V_MIN
        assert np.all(cols[c][over & ~under] > V_MAX)
        assert np.all(cols[c][under & ~over] < V_MIN)


def test_days_and_slot_edges_follow_the_local_clock() -> None:
    # Berlin springs forward on 31 March 2024: that local day has 23 hours = 92 slots.
    times = pd.date_range("2024-03-30", periods=96 + 92 + 96, freq="15min", tz="Europe/Berlin")
    np.testing.assert_array_equal(nw.day_first_slots(times), [0, 96, 188])
    edges = nw.slot_edges(times, 0.25)
    assert edges.shape == (len(times) + 1,)
    np.testing.assert_allclose(np.diff(edges) * 24 * 60, 15.0, atol=1e-6)
    first, per = nw.series_bins(times, 0.25)
    assert per == ""  # three days: every slot
    assert first.shape == (len(times),)


# --- the HTML fragment -----------------------------------------------------------------------


def test_fragment_is_well_formed_and_self_contained(known_fragment: str) -> None:
    fragment = known_fragment
    assert fragment.startswith("<section>")
    assert fragment.endswith("</section>")
    parsed = _parse(fragment)
    assert parsed.headings == [
        "Network",
        "Voltage by bus and time",
        "Buses with the highest voltage",
        "Buses with the lowest voltage",
        "Branch loading",
        "Most loaded branches",
        "Losses and curtailment",
    ]
    assert len(parsed.ids) == len(set(parsed.ids))
    assert nw.ANCHOR in parsed.ids
    assert not parsed.tags & {"script", "link", "iframe", "img", "object", "embed"}
    lowered = fragment.lower()
    assert "http://" not in lowered
    assert "https://" not in lowered
    # In-page references, and rasters (the two heat maps, 8 slots x 4 buses, and the colour
    # bar) as embedded PNG data.
    rasters = [_png_size(h) for h in parsed.hrefs if h.startswith("data:")]
    assert rasters.count((8, 4)) == 2
    for href in parsed.hrefs:
        assert href.startswith(("#", "data:image/png;base64,")), href[:40]
        if href.startswith("#"):
            assert href[1:] in parsed.ids
    assert len(re.findall(r"<svg\b", fragment)) == 3


def test_long_tables_are_cut_to_ten_rows_and_labels_are_escaped() -> None:
    rng = np.random.default_rng(3)
    t, m, k = 20, 30, 25
    v = rng.uniform(0.93, 1.11, (t, m))
    v[4, 7], v[5, 0] = 1.2, 0.8  # bus 7 has the highest voltage, bus 0 the lowest
    load = rng.uniform(0.0, 120.0, (t, k))
    buses = [f"bus {i}" for i in range(m)]
    buses[0], buses[7] = '<b>"Bus" & $x$</b>', "<script>alert(1)</script>"
    branches = [f"line {j}" for j in range(k)]
    branches[0], branches[1] = "<i>line</i>", "trafo & co"
    data = _data(
        _case(v, load),
        _case(v, load),
        bus_labels=buses,
        branch_labels=branches,
        feeder_name="<feeder>",
        envelope_note="cap <5 kW> & more",
    )
    fragment = network_section(data)
    for raw in ("<script>", "<b>", "<i>", "<feeder>", "<5 kW>", "& co", "& more"):
        assert raw not in fragment
    assert "&lt;feeder&gt;" in fragment
    assert "cap &lt;5 kW&gt; &amp; more" in fragment
    parsed = _parse(fragment)
    for heading in (
        "Buses with the highest voltage",
        "Buses with the lowest voltage",
        "Most loaded branches",
    ):
        assert len(_table_after(parsed, heading)) == nw.N_WORST
    high = _table_after(parsed, "Buses with the highest voltage")
    assert high[0][1] == "<script>alert(1)</script>"  # the text a reader sees
    top = [float(row[2]) for row in high]
    assert top == sorted(top, reverse=True)
    assert top[0] == pytest.approx(1.2, abs=5e-5)
    assert top[-1] == pytest.approx(np.sort(v.max(axis=0))[-10], abs=5e-5)
    assert "&lt;b&gt;&quot;Bus&quot; &amp; $x$&lt;/b&gt;" in fragment
    assert _table_after(parsed, "Buses with the lowest voltage")[0][1] == buses[0]


def test_one_slot_without_violations_curtailment_or_branches() -> None:
    v = np.array([[1.0, 0.99, 0.98]])
    data = _data(_case(v, np.zeros((1, 0))), _case(v, np.zeros((1, 0))))
    parsed = _parse(network_section(data))
    rows = _kpi(parsed)
    assert rows["Slots with a voltage violation"][:3] == ["0 (0.0 %)", "0 (0.0 %)", "no change"]
    assert rows["Slots with an overload"][:3] == ["0 (0.0 %)", "0 (0.0 %)", "no change"]
    assert rows["Highest loading"][:3] == ["n/a", "n/a", "n/a"]
    assert rows["Curtailed generation"][:3] == ["0 kWh", "0 kWh", "no change"]
    assert rows["Highest voltage"][:3] == ["1.0000 p.u.", "1.0000 p.u.", "no change"]
    assert "Branch loading" not in parsed.headings
    assert "Losses" in parsed.headings  # no curtailment panel
    assert [r[1] for r in _table_after(parsed, "Buses with the lowest voltage")] == [
        "bus 2",
        "bus 1",
        "bus 0",
    ]


def test_non_converged_slots_are_ignored() -> None:
    data = _known()
    v = np.array(data.p2p.v_pu)
    v[0, :] = np.nan
    v[5, 1] = np.nan
    load = np.array(data.p2p.loading_pct)
    load[0, :] = np.nan
    p2p = NetworkCase(v, load, data.p2p.losses_kw, data.p2p.curtailed_kwh)
    kpis = nw.case_kpis(data, p2p)
    assert kpis.voltage_violation_slots == 3
    assert kpis.overload_slots == 2
    assert kpis.max_voltage_pu == pytest.approx(1.15)
    assert kpis.max_loading_pct == pytest.approx(120.0)
    np.testing.assert_array_equal(worst_buses(v, 4, high=True), [3, 1, 2, 0])
    cols = nw.heatmap_columns(v, 4, v_min_pu=V_MIN, v_max_pu=V_MAX)
    assert np.isfinite(cols).all()  # a block with some values keeps them


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("v_pu", np.ones((8, 3), dtype=np.float32), r"p2p\.v_pu: shape \(8, 3\)"),
        ("loading_pct", np.ones((7, 3), dtype=np.float32), r"p2p\.loading_pct"),
        ("losses_kw", np.ones(9), r"p2p\.losses_kw"),
    ],
)
def test_mismatched_shapes_are_named(field: str, value: np.ndarray, message: str) -> None:
    data = _known()
    fields = {f: getattr(data.p2p, f) for f in ("v_pu", "loading_pct", "losses_kw")}
    fields[field] = value
    bad = NetworkCase(**fields, curtailed_kwh=data.p2p.curtailed_kwh)
    with pytest.raises(ValueError, match=message):
        network_section(_data(bad, data.baseline, bus_labels=[f"b{i}" for i in range(4)]))


def _png_size(href: str) -> tuple[int, int]:
    png = base64.b64decode(href.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_a_year_on_130_buses_renders_fast_and_small() -> None:
    rng = np.random.default_rng(0)
    times = pd.date_range("2024-01-01", periods=366 * 96, freq="15min", tz="Europe/Berlin")
    t, m, k = len(times), 130, 129
    hour = (times.hour + times.minute / 60).to_numpy()
    sun = np.clip(np.cos((hour - 13.0) / 12.0 * np.pi), 0.0, None) ** 2
    evening = np.exp(-(((hour - 19.0) / 2.5) ** 2))
    depth = np.linspace(0.1, 1.0, m)

    def case(pv: float) -> NetworkCase:
        v = 1.0 + depth * (pv * 0.12 * sun[:, None] - 0.07 * evening[:, None])
        v = v + 0.002 * rng.standard_normal((t, m))  # noise: the worst case for PNG size
        load = 110 * np.abs(pv * sun - 0.6 * evening)[:, None] * np.linspace(1, 0.2, k)
        return NetworkCase(
            v.astype(np.float32),
            load.astype(np.float32),
            2.0 + 3.0 * sun,
            np.where(sun > 0.9, 0.1 * pv, 0.0),
        )

    data = NetworkReportData(
        feeder_name="simbench-lv-rural3",
        bus_labels=[f"LV4.101 Bus {i}" for i in range(m)],
        branch_labels=[f"line {j}" for j in range(k - 1)] + ["trafo 0"],
        times_local=times,
        dt_h=0.25,
        v_min_pu=V_MIN,
        v_max_pu=V_MAX,
        max_loading_pct=MAX_LOADING,
        p2p=case(1.0),
        baseline=case(0.8),
        envelope_note="dynamic operating envelopes",
    )
    start = time.perf_counter()
    fragment = network_section(data)
    elapsed = time.perf_counter() - start
    size = len(fragment.encode("utf-8"))
    assert elapsed < 10.0, elapsed  # about 2 s on a laptop; loose for shared CI runners
    assert size < 2_000_000, size  # about 1.0 MB
    parsed = _parse(fragment)
    rasters = [_png_size(h) for h in parsed.hrefs if h.startswith("data:")]
    assert [r for r in rasters if r[1] == m] == [(1464, m), (1464, m)]  # 6-h columns
    assert "Each column covers 24 slots (6 h)" in fragment
    assert "image-rendering:pixelated" not in fragment  # shrunk, not sampled, by browsers
    assert _kpi(parsed)["Slots with over-voltage"][0].startswith(
        f"{int(np.any(data.p2p.v_pu > V_MAX, axis=1).sum()):,} "
    )


# --- a run on a feeder: the report states summary.json's figures ---------------------------


@pytest.fixture(scope="module")
def feeder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, Path]:
    """The built-in high-PV feeder on its sunniest day without envelopes: both cases break the
    voltage and loading limits (one day, about a second)."""
    sc = load_scenario("high-pv")
    data = sc.model_dump(mode="python", exclude_none=True)
    data["time"] |= {"start": dt.date(2024, 6, 18), "days": 1}
    data["network"] |= {"envelopes": "none", "compare_unconstrained": False}
    result = simulate(Scenario.model_validate(data))
    return result, write_run(result, tmp_path_factory.mktemp("feeder") / "run")


def _first_number(cell: str) -> float:
    return float(cell.split(maxsplit=1)[0].replace(",", "").replace("\u2212", "-"))


def test_report_states_the_summary_figures_of_a_feeder_run(
    feeder_run: tuple[SimulationResult, Path],
) -> None:
    result, out = feeder_run
    net = json.loads((out / "summary.json").read_text())["network"]
    assert net["voltage_violation_slots"] > 0 and net["overload_slots"] > 0  # a real test
    page = (out / "report.html").read_text()
    start = page.index(f'<section><h2 id="{nw.ANCHOR}">')
    rows = _kpi(_parse(page[start : page.index("</section>", start) + len("</section>")]))
    for column, case in ((0, net), (1, net["baseline"])):
        for label, key in (
            ("Slots with over-voltage", "overvoltage_slots"),
            ("Slots with under-voltage", "undervoltage_slots"),
            ("Slots with a voltage violation", "voltage_violation_slots"),
            ("Slots with an overload", "overload_slots"),
        ):
            assert _first_number(rows[label][column]) == case[key], (label, column)
        for label, key, digits in (
            ("Lowest voltage", "min_voltage_pu", 4),
            ("Highest voltage", "max_voltage_pu", 4),
            ("Highest loading", "max_loading_pct", 1),
            ("Network losses", "losses_kwh", 1),
            ("Curtailed generation", "curtailed_kwh", 2),
        ):
            shown = _first_number(rows[label][column])
            assert shown == pytest.approx(case[key], abs=0.51 * 10**-digits), (label, column)
    # The arrays the report draws (float32) give the same counts through the same function.
    data = _network_report(result)
    for case, block in ((data.p2p, net), (data.baseline, net["baseline"])):
        kpis = nw.case_kpis(data, case).summary()
        for key in ("voltage_violation_slots", "undervoltage_slots", "overload_slots"):
            assert kpis[key] == block[key], key
        assert kpis["max_voltage_pu"] == pytest.approx(block["max_voltage_pu"], abs=2e-5)
