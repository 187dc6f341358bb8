"""`peergrid ledger …`: verify a run's ledger, prove entries, check proofs, show entries.

Exit codes: 0 when everything holds; 1 when a ledger or a proof fails its checks (the first
bad entry and what is wrong with it are named); 2 for input errors (no ledger, bad JSON, an
unknown participant or entry).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from peergrid.errors import InputError
from peergrid.ledger import encoding as enc
from peergrid.ledger import store
from peergrid.ledger.proof import ProofInvalid, check_proof, prove, prove_consistency
from peergrid.ledger.verify import LedgerInvalid, verify_ledger

LEDGER_FILE = "ledger.sqlite"


def _ledger_path(run_dir: str) -> Path:
    p = Path(run_dir)
    path = p if p.is_file() else p / LEDGER_FILE
    if not path.is_file():
        raise InputError(
            "no ledger here (expected a run directory with ledger.sqlite)", source=run_dir
        )
    return path


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    path = _ledger_path(args.run_dir)
    try:
        rep = verify_ledger(path)
    except LedgerInvalid as e:
        console.print(f"[bold red]FAILED[/] {path}: {e}", soft_wrap=True)
        return 1
    kinds = ", ".join(f"{v:,} {k.lower()}" for k, v in rep.kinds.items())
    console.print(f"[bold green]OK[/] {path}")
    console.print(f"  {rep.entries:,} entries ({kinds})", soft_wrap=True)
    console.print(
        f"  {rep.heads:,} signed tree heads, {rep.signatures:,} order signatures, "
        f"{rep.rejected:,} rejected submissions, {rep.postings:,} postings summing to zero",
        soft_wrap=True,
    )
    console.print(f"  root {rep.root}")
    console.print(f"  checked in {rep.seconds:.2f} s")
    return 0


def _print_proof(run_dir: str, make: Callable[[Path], dict[str, Any]]) -> int:
    """Print the proof `make` builds from the run's ledger as JSON; a proof that cannot be
    built (no such entry or head) is an input error."""
    path = _ledger_path(run_dir)
    try:
        doc = make(path)
    except ValueError as e:
        raise InputError(str(e), source=run_dir) from e
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


def cmd_prove(args: argparse.Namespace, console: Console) -> int:
    return _print_proof(args.run_dir, lambda p: prove(p, args.entry, args.tree_size))


def cmd_consistency(args: argparse.Namespace, console: Console) -> int:
    return _print_proof(args.run_dir, lambda p: prove_consistency(p, args.old_size, args.new_size))


def cmd_check_proof(args: argparse.Namespace, console: Console) -> int:
    try:
        text = Path(args.proof).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", source=args.proof) from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not JSON: line {e.lineno}: {e.msg}", source=args.proof) from e
    pinned = None
    if args.operator_key:
        try:
            pinned = bytes.fromhex(args.operator_key)
        except ValueError as e:
            raise InputError("--operator-key: not hex") from e
    try:
        what = check_proof(doc, pinned)
    except ProofInvalid as e:
        console.print(f"[bold red]INVALID[/] {args.proof}: {e}", soft_wrap=True)
        return 1
    console.print(f"[bold green]OK[/] {what}", soft_wrap=True)
    return 0


def _fmt_money(minor: int, exponent: int) -> str:
    return f"{minor / 10**exponent:,.{exponent}f}"


def _describe(kind: enc.Kind, r: enc.Reader, g: enc.Genesis, who: int | None) -> list[str]:
    """Readable lines of one entry (for one participant when `who` is set)."""
    names = list(g.names)
    e = g.minor_exponent
    if kind is enc.Kind.GENESIS:
        return [
            f"ledger {g.ledger_id.hex()} · {g.scenario} · {len(names)} participants · {g.currency}"
        ]
    if kind is enc.Kind.ORDERS:
        message, sig = enc.read_orders(r)
        m = enc.read_order_message(message)
        side = ["buy", "sell"]
        cols = zip(
            m.slot.tolist(), m.side.tolist(), m.quantity_kwh.tolist(), m.limit_price.tolist(),
            strict=True,
        )  # fmt: skip
        orders = "; ".join(
            f"slot {s} {side[int(d)]} {q:.4f} kWh {'≤' if d == 0 else '≥'} {p:.4f}"
            for s, d, q, p in cols
        )
        return [f"{names[m.participant]} signed: {orders or 'no orders'} (sig {sig.hex()[:16]}…)"]
    if kind is enc.Kind.REJECTED:
        p, reason, _, _ = enc.read_rejected(r)
        return [f"rejected submission of {enc.account_name(p, names)}: {reason}"]
    if kind is enc.Kind.CLEARING:
        c = enc.read_clearing(r)
        price = "" if math.isnan(c.clearing_price) else f" at {c.clearing_price:.4f}"
        line = (
            f"{c.mechanism} cleared {c.filled_kwh.sum() / 2:.3f} kWh{price}, "
            f"{c.trade_kwh.shape[0]} trades"
        )
        if who is not None:
            line += f"; {names[who]} committed {c.committed_kwh[who]:+.4f} kWh"
        return [line]
    if kind is enc.Kind.METER:
        net = enc.read_meter(r)
        if who is not None:
            return [f"meter {names[who]}: {net[who]:+.4f} kWh"]
        return [f"meters: {net.shape[0]} readings, community net {net.sum():+.3f} kWh"]
    postings: enc.Postings
    if kind is enc.Kind.SETTLEMENT:
        s = enc.read_settlement(r)
        head = f"settled ({s.rule}), retail {s.retail_price:.4f}, feed-in {s.feed_in_price:.4f}"
        if who is not None:
            head += f"; {names[who]} deviation {s.deviation_kwh[who]:+.4f} kWh"
        postings = s.postings
    elif kind is enc.Kind.CHARGES:
        last, _, _, postings = enc.read_charges(r)
        head = f"network and loss charges up to slot {last}"
    else:
        what, _, postings = enc.read_period(r)
        head = f"period settlement ({what})"
    lines = [head]
    for a, memo, m, wh in zip(
        postings.account.tolist(), postings.memo.tolist(), postings.amount_minor.tolist(),
        postings.energy_wh.tolist(), strict=True,
    ):  # fmt: skip
        if who is not None and a != who:
            continue
        if who is None and a >= 0:
            continue
        lines.append(
            f"  {enc.account_name(a, names):<18} {enc.Memo(memo).name.lower():<8} "
            f"{_fmt_money(m, e):>12} {g.currency}  {wh:+,} Wh"
        )
    if who is None:
        n = int((postings.account >= 0).sum())
        lines.append(f"  … and {n} participant postings (--participant to see one)")
    return lines


def _slots(spec: str | None) -> tuple[int, int] | None:
    if spec is None:
        return None
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            return int(a), int(b)
        s = int(spec)
    except ValueError as e:
        raise InputError(f"--slot: expected N or A:B, got {spec!r}") from e
    return s, s + 1


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    path = _ledger_path(args.run_dir)
    slots = _slots(args.slot)
    st = store.SqliteStore.open(path)
    shown = 0
    try:
        genesis: enc.Genesis | None = None
        who: int | None = None
        heads = {size: slot for size, slot, _, _ in st.heads()}
        for idx, data in store.iter_entries(st):
            kind, slot, r = enc.read_header(data)
            if genesis is None:
                genesis = enc.read_genesis(enc.read_header(data)[2])
                who = _participant(args.participant, list(genesis.names))
            if (
                slots is not None
                and not slots[0] <= slot < slots[1]
                and kind is not enc.Kind.GENESIS
            ):
                continue
            if slots is not None and kind is enc.Kind.GENESIS:
                continue
            if args.kind and kind.name.lower() != args.kind:
                continue
            if who is not None and kind in (enc.Kind.ORDERS, enc.Kind.REJECTED):
                if kind is enc.Kind.ORDERS:
                    msg = enc.read_order_message(enc.read_orders(enc.read_header(data)[2])[0])
                    if msg.participant != who:
                        continue
                elif enc.read_rejected(enc.read_header(data)[2])[0] != who:
                    continue
            lines = _describe(kind, r, genesis, who)
            console.print(
                f"[bold]#{idx}[/] {kind.name.lower()} slot {slot}: {lines[0]}",
                highlight=False,
                soft_wrap=True,
            )
            for line in lines[1:]:
                console.print(line, highlight=False, soft_wrap=True)
            if idx + 1 in heads:
                console.print(f"  [dim]tree head {idx + 1} signed[/]")
            shown += 1
            if args.limit and shown >= args.limit:
                break
    except (enc.FormatError, ValueError) as e:
        console.print(f"[bold red]unreadable[/]: {e} (run `peergrid ledger verify`)")
        return 1
    finally:
        st.close()
    if not shown:
        console.print("no entries match")
    return 0


def _participant(spec: str | None, names: list[str]) -> int | None:
    if spec is None:
        return None
    if spec in names:
        return names.index(spec)
    if spec.isdigit() and int(spec) < len(names):
        return int(spec)
    raise InputError(f"--participant: no participant {spec!r} in this ledger")


def add_parser(sub: Any) -> None:
    """The `ledger` command and its subcommands."""
    led = sub.add_parser("ledger", help="verify a run's ledger, prove entries, check proofs")
    lsub = led.add_subparsers(dest="ledger_command", required=True)
    v = lsub.add_parser("verify", help="check hashes, trees, signatures and conservation")
    v.add_argument("run_dir")
    v.set_defaults(func=cmd_verify)
    p = lsub.add_parser("prove", help="print an inclusion proof of one entry (JSON)")
    p.add_argument("run_dir")
    p.add_argument("entry", type=int)
    p.add_argument("--tree-size", type=int, help="against this signed head (default: latest)")
    p.set_defaults(func=cmd_prove)
    c = lsub.add_parser("consistency", help="print a consistency proof between two heads (JSON)")
    c.add_argument("run_dir")
    c.add_argument("old_size", type=int)
    c.add_argument("--new-size", type=int, help="default: the latest signed head")
    c.set_defaults(func=cmd_consistency)
    k = lsub.add_parser("check-proof", help="check a proof without the ledger")
    k.add_argument("proof")
    k.add_argument("--operator-key", help="pin the operator's public key (hex)")
    k.set_defaults(func=cmd_check_proof)
    s = lsub.add_parser("show", help="print entries readably")
    s.add_argument("run_dir")
    s.add_argument("--participant", help="name or index: only its orders and postings")
    s.add_argument("--slot", help="N or A:B (slots A … B−1)")
    s.add_argument("--kind", choices=[k.name.lower() for k in enc.Kind])
    s.add_argument("--limit", type=int, default=0, help="at most this many entries")
    s.set_defaults(func=cmd_show)
