"""`peergrid privacy …`: further DP releases from a finished run, within its stored budget.

`peergrid privacy release RUN_DIR --series NAME --epsilon E` releases one community profile of
the run with differential privacy (OpenDP; `privacy.dp`), spending E from the budget stored in the
run's `privacy.json`. A release that would exceed the budget is refused (exit 2) and nothing is
written; otherwise the release is written to `release-K-NAME.parquet` and `privacy.json` is
replaced atomically with the budget that records it. `peergrid privacy budget RUN_DIR` prints
what has been spent.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from peergrid.errors import InputError

PRIVACY_FILE = "privacy.json"


def _load(run_dir: str) -> tuple[Path, dict[str, Any]]:
    d = Path(run_dir)
    path = d / PRIVACY_FILE
    if not path.is_file():
        raise InputError("no privacy.json here (expected a run directory)", source=run_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"not JSON: line {e.lineno}: {e.msg}", source=str(path)) from e
    if not isinstance(doc, dict) or "budget" not in doc:
        raise InputError("no privacy budget in this file", source=str(path))
    return d, doc


def _budget(doc: dict[str, Any], path: Path) -> Any:
    from peergrid.privacy.budget import PrivacyBudget

    try:
        return PrivacyBudget.from_json(json.dumps(doc["budget"]))
    except ValueError as e:
        raise InputError(f"budget: {e}", source=str(path)) from e


def _series(d: Path, source: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
    ts = d / "timeseries.parquet"
    if not ts.is_file():
        raise InputError("no timeseries.parquet here", source=str(d))
    table = pd.read_parquet(ts, columns=["slot_start", "participant", source])
    wide = table.pivot(index="slot_start", columns="participant", values=source)
    return pd.DatetimeIndex(wide.index), wide.to_numpy(dtype=np.float64)


def cmd_budget(args: argparse.Namespace, console: Console) -> int:
    d, doc = _load(args.run_dir)
    b = _budget(doc, d / PRIVACY_FILE)
    console.print(
        f"ε {b.epsilon_spent:g} of {b.epsilon_total:g} spent ({b.epsilon_remaining:g} left), "
        f"δ {b.delta_spent:g} of {b.delta_total:g}",
        soft_wrap=True,
    )
    for r in b.releases:
        console.print(f"  {r.label}: ε {r.epsilon:g}, δ {r.delta:g}, {r.mechanism}", soft_wrap=True)
    return 0


def cmd_release(args: argparse.Namespace, console: Console) -> int:
    from peergrid.engine.publish import PUBLISHED
    from peergrid.privacy.budget import BudgetExceeded

    sources = {name: source for name, source, _ in PUBLISHED}
    if args.series not in sources:
        raise InputError(f"--series: one of {', '.join(sources)}, got {args.series!r}")
    d, doc = _load(args.run_dir)
    path = d / PRIVACY_FILE
    budget = _budget(doc, path)
    try:
        from peergrid.privacy.dp import release_with_budget
    except ImportError as e:
        raise InputError(f"{e}") from e
    slot_start, values = _series(d, sources[args.series])
    dt_h = (
        float((slot_start[1] - slot_start[0]).total_seconds() / 3600)
        if len(slot_start) > 1
        else 0.25
    )
    label = f"{args.series} (release {len(budget.releases) + 1})"
    try:
        release, spent = release_with_budget(
            budget,
            values,
            label=label,
            epsilon=args.epsilon,
            delta=args.delta,
            lower_kwh=0.0,
            upper_kwh=args.clip_kw * dt_h,
            mechanism=args.mechanism,
        )
    except BudgetExceeded as e:
        raise InputError(str(e), source=str(path)) from e
    except ValueError as e:
        raise InputError(str(e)) from e
    k = len(spent.releases)
    out = d / f"release-{k}-{args.series}.parquet"
    pd.DataFrame({"slot_start": slot_start, args.series: release.total_kwh}).to_parquet(
        out, index=False
    )
    doc["budget"] = spent.to_dict()
    doc.setdefault("later_releases", []).append(
        {"file": out.name, "series": args.series, **release.describe()}
    )
    fd, tmp = tempfile.mkstemp(prefix=".privacy-", dir=d)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    console.print(
        f"released {args.series} with ε {release.epsilon:g} ({release.mechanism}, noise std "
        f"{release.noise_std_kwh:.3f} kWh per slot) → {out}; ε left "
        f"{spent.epsilon_remaining:g} of {spent.epsilon_total:g}",
        soft_wrap=True,
    )
    return 0


def add_parser(sub: Any) -> None:
    """The `privacy` command and its subcommands."""
    p = sub.add_parser("privacy", help="DP releases from a run, within its privacy budget")
    psub = p.add_subparsers(dest="privacy_command", required=True)
    b = psub.add_parser("budget", help="print the run's privacy budget and its releases")
    b.add_argument("run_dir")
    b.set_defaults(func=cmd_budget)
    r = psub.add_parser("release", help="release a community profile with DP (spends budget)")
    r.add_argument("run_dir")
    r.add_argument("--series", required=True, help="community_demand_kwh, … (public.parquet)")
    r.add_argument("--epsilon", type=float, required=True)
    r.add_argument("--delta", type=float, default=0.0)
    r.add_argument("--mechanism", choices=["laplace", "gaussian"], default="laplace")
    r.add_argument("--clip-kw", type=float, default=10.0, help="per-household clip [kW]")
    r.set_defaults(func=cmd_release)
