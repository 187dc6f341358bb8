"""The text of the report pages: numbers in their units, changes against the baseline, escaping
and tables. One home for the run report, its network section and the comparison page, so that a
figure reads the same wherever it appears.

Units (the `unit` argument):

| unit | shown as |
|---|---|
| "frac" | a fraction, in % with 1 decimal (0.123 → "12.3", symbol "%") |
| "%" | a percentage, 1 decimal |
| "currency" | money, 2 decimals, symbol the run's currency |
| "count" | a whole number |
| "p.u." | a voltage, 4 decimals (the limits are a few hundredths apart) |
| "-", "" | dimensionless: integers whole, other numbers as physical values |
| anything else, e.g. "kWh", "currency/kWh" | fewer decimals for bigger magnitudes (`number`) |

Numbers have thousands separators; negatives carry a real minus sign (U+2212) and a value that
rounds to zero carries none; None, NaN and infinities read "n/a". Texts are not yet
HTML-escaped, except where a function returns HTML (`table`, `kpi_table`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import numpy as np

MINUS = "\u2212"
NA = "n/a"

KPI_HEADS = ("Figure", "With P2P", "Baseline (no P2P)", "Change", "Meaning")
"""Columns of a key-figure table: P2P next to the baseline without P2P trading."""

KpiRow = tuple[str, str, str, str, str]
"""(label, with P2P, baseline, change, meaning) of a key-figure table, as display text."""


def escape(text: object) -> str:
    """`text` as HTML text or attribute value."""
    return html.escape(str(text), quote=True)


def is_number(value: object) -> bool:
    """Whether `value` is an int or float (numpy's too), not a bool."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _has_digit(text: str) -> bool:
    return any(ch in "123456789" for ch in text)


def fixed(value: float, digits: int) -> str:
    """`value` with `digits` decimals and thousands separators; "n/a" if not finite."""
    if not np.isfinite(value):
        return NA
    text = f"{value:,.{digits}f}"
    if text.startswith("-") and not _has_digit(text):
        text = text[1:]  # no "-0.00"
    return text.replace("-", MINUS)


def number(value: float) -> str:
    """A readable number: fewer decimals for bigger magnitudes, 3 significant digits below
    0.01."""
    if value == 0:
        return "0"
    mag = abs(value)
    if not np.isfinite(mag):
        return NA
    if mag >= 1000:
        return fixed(value, 0)
    if mag >= 10:
        return fixed(value, 1)
    if mag >= 0.01:
        return fixed(value, 2)
    return f"{value:.3g}".replace("-", MINUS)


def signed(text: str, value: float) -> str:
    """`text` (the display of `value`) with a "+" when the value is positive and the text
    shows it as different from zero."""
    return "+" + text if value > 0 and _has_digit(text) else text


def number_text(value: object, unit: str) -> str:
    """A number in `unit` without the unit symbol; a non-number as its text (cut at 200
    characters), a bool as yes/no, None as "n/a"."""
    if value is None:
        return NA
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if not is_number(value):
        text = str(value)
        return text if len(text) <= 200 else text[:199] + "…"
    x = float(value)  # type: ignore[arg-type]
    if not np.isfinite(x):
        return NA
    if unit == "frac":
        return fixed(100 * x, 1)
    if unit == "%":
        return fixed(x, 1)
    if unit == "currency":
        return fixed(x, 2)
    if unit == "p.u.":
        return fixed(x, 4)
    if unit == "count" or (unit in ("", "-") and isinstance(value, int | np.integer)):
        return f"{int(x):,}".replace("-", MINUS)
    return number(x)


def unit_symbol(unit: str, currency: str) -> str:
    """What follows a number of `unit` on a page ("" for plain numbers)."""
    if unit in ("", "-", "count"):
        return ""
    if unit == "frac":
        return "%"
    return unit.replace("currency", currency)


def column_head(label: str, unit: str, currency: str) -> str:
    """A table column's head with its unit, e.g. "Bill [EUR]"; its cells carry bare numbers."""
    symbol = unit_symbol(unit, currency)
    return f"{label} [{symbol}]" if symbol else label


def format_value(value: object, unit: str, currency: str = "") -> str:
    """`value` in `unit` as display text with its unit symbol, e.g. "12.3 %", "4.00 kWh"."""
    text = number_text(value, unit)
    symbol = unit_symbol(unit, currency)
    if not symbol or not is_number(value) or text == NA:
        return text
    return f"{text} {symbol}"


def format_change(
    value: object, baseline: object, unit: str, currency: str = "", *, relative: bool = True
) -> str:
    """P2P minus baseline: percentage points for "frac" and "%", else the difference in `unit`
    with, if `relative` and the baseline is not 0, the change in % of the baseline's magnitude
    (never for "p.u.": a relative change of a voltage means nothing). "" when either is not a
    number, "no change" when they are equal."""
    if not (is_number(value) and is_number(baseline)):
        return ""
    v, b = float(value), float(baseline)  # type: ignore[arg-type]
    if not (np.isfinite(v) and np.isfinite(b)):
        return NA
    diff = v - b
    if diff == 0:
        return "no change"
    if unit in ("frac", "%"):
        return signed(f"{number_text(diff, unit)} pp", diff)
    absolute = signed(format_value(diff, unit, currency), diff)
    if b == 0 or not relative or unit == "p.u.":
        return absolute
    rel = 100 * diff / abs(b)
    return f"{absolute} ({signed(fixed(rel, 1), rel)} %)"


def duration(hours: float) -> str:
    """A slot length or block of slots: "15 min", "6 h"."""
    minutes = round(hours * 60)
    if minutes % 60:
        return f"{minutes} min"
    return f"{minutes // 60} h"


def table(heads: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool]) -> str:
    """An HTML table of display texts (escaped here); numeric columns are right-aligned."""

    def cells(tag: str, values: Sequence[object]) -> str:
        return "".join(
            f'<{tag} class="num">{escape(v)}</{tag}>' if num else f"<{tag}>{escape(v)}</{tag}>"
            for v, num in zip(values, numeric, strict=True)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', heads)}</tr></thead><tbody>{body}</tbody></table>"


def kpi_table(rows: Iterable[KpiRow | str]) -> str:
    """A key-figure table (`KPI_HEADS`) of display texts (escaped here); a str row is a
    heading across the columns."""
    head = "".join(
        f'<th class="num">{escape(h)}</th>' if i in (1, 2, 3) else f"<th>{escape(h)}</th>"
        for i, h in enumerate(KPI_HEADS)
    )
    body = []
    for row in rows:
        if isinstance(row, str):
            body.append(f'<tr><th colspan="{len(KPI_HEADS)}">{escape(row)}</th></tr>')
            continue
        label, value, base, change, meaning = (escape(c) for c in row)
        body.append(
            f'<tr><td>{label}</td><td class="num">{value}</td><td class="num">{base}</td>'
            f'<td class="num">{change}</td><td class="meaning">{meaning}</td></tr>'
        )
    return (
        f'<table class="kpi"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )
