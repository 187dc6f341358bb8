"""The text of numbers on every report page (`peergrid.report.format`)."""

from __future__ import annotations

from peergrid.report.format import (
    duration,
    fixed,
    format_change,
    format_value,
    kpi_table,
    number_text,
    signed,
    table,
)


def test_format_value_and_change() -> None:
    assert format_value(1234.567, "kWh", "EUR") == "1,235 kWh"
    assert format_value(12.34, "kW", "EUR") == "12.3 kW"
    assert format_value(-3.5, "currency", "EUR") == "\u22123.50 EUR"
    assert format_value(0.7345, "frac", "EUR") == "73.5 %"
    assert format_value(float("nan"), "kWh", "EUR") == "n/a"
    assert format_value(None, "kWh", "EUR") == "n/a"
    assert format_value(True, "", "EUR") == "yes"
    assert format_value(7, "count", "EUR") == "7"
    assert format_change(80.0, 100.0, "kWh", "EUR") == "\u221220.0 kWh (\u221220.0 %)"
    assert format_change(0.5, 0.4, "frac", "EUR") == "+10.0 pp"
    assert format_change(5.0, 0.0, "kW", "EUR") == "+5.00 kW"
    assert format_change(5.0, 5.0, "kW", "EUR") == "no change"
    assert format_value(-0.004, "currency", "EUR") == "0.00 EUR"
    assert format_value(0.25, "currency/kWh", "EUR") == "0.25 EUR/kWh"
    assert format_value("dist-flow", "kWh", "EUR") == "dist-flow"


def test_one_rule_per_unit_where_the_pages_used_to_differ() -> None:
    # voltages: 4 decimals everywhere (the summary's table showed 2, hiding 1.0999 vs 1.10)
    assert format_value(1.09991, "p.u.") == "1.0999 p.u."
    assert format_change(1.15, 1.01, "p.u.") == "+0.1400 p.u."  # no relative change
    # small energies keep 3 significant digits (the network section showed "0.00 kWh")
    assert format_value(0.004, "kWh") == "0.004 kWh"
    # percentages and counts with thousands separators and a real minus, no negative zero
    assert number_text(1234.56, "%") == "1,234.6"
    assert number_text(-1200, "count") == "\u22121,200"
    assert fixed(-0.00001, 4) == "0.0000"
    assert format_change(3, 1, "count", relative=False) == "+2"
    assert format_change(3, 1, "count") == "+2 (+200.0 %)"


def test_signs_durations_and_tables() -> None:
    assert signed("0.00", 0.001) == "0.00" and signed("n/a", 1.0) == "n/a"
    assert signed("1.5", 1.5) == "+1.5" and signed("\u22121.5", -1.5) == "\u22121.5"
    assert (duration(0.25), duration(6.0)) == ("15 min", "6 h")
    html = table(("A", "B <b>"), [("x&y", "1.0")], (False, True))
    assert html == (
        '<table><thead><tr><th>A</th><th class="num">B &lt;b&gt;</th></tr></thead>'
        '<tbody><tr><td>x&amp;y</td><td class="num">1.0</td></tr></tbody></table>'
    )
    kpis = kpi_table(["Energy", ("Demand", "1 kWh", "2 kWh", "\u22121 kWh", "Used")])
    assert '<tr><th colspan="5">Energy</th></tr>' in kpis
    assert '<td class="meaning">Used</td>' in kpis
