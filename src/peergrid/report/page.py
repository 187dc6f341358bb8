"""The report pages' one stylesheet and document skeleton (run report and comparison).

Every page is one self-contained HTML5 document: the style is inline, nothing is loaded from
elsewhere. Fragments (the network section) use the classes defined here: `num` (right-aligned
numbers), `meaning`, `kpi`, `meta`, `muted`, `note`, `wide` (a table that scrolls sideways).
"""

from __future__ import annotations

from peergrid.report.format import escape

PAGE_CSS = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:#1a1a1a;background:#fff;max-width:1080px;margin:2rem auto;padding:0 1rem;line-height:1.45}
h1{font-size:1.7rem;margin:0 0 .3rem}
h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.5rem 0}
th,td{padding:.28rem .7rem;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6;font-weight:600}
td.num,th.num{text-align:right;white-space:nowrap}
td.meaning{color:#555;font-size:.9rem}
table.meta th{background:none;font-weight:600;white-space:nowrap}
.wide{overflow-x:auto}
figure{margin:1.2rem 0 2rem}
figcaption{color:#444;font-size:.92rem;max-width:60rem}
svg.figure{width:100%;height:auto;display:block}
nav a{margin-right:.9rem}
.muted{color:#666}
.note{background:#f6f6f6;padding:.6rem .9rem;border-left:3px solid #bbb}
details summary{cursor:pointer;font-weight:600}
footer{margin-top:3rem;color:#777;font-size:.85rem}
"""


def document(title: str, body: list[str]) -> str:
    """A whole page: `title` (escaped here) and the `body` fragments (HTML), one per line."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )
