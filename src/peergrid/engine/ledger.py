"""A run's ledger: the lifecycle phases, as the simulator calls them, appended in order.

`RunLedger` is the `engine.loop.Journal` a run writes through. At each gate closure every
participant's EMS signs its orders of the gate (one message per participant, its
simulation-only key, `ledger.keys`) and the ledger verifies them on append; each cleared slot
adds its CLEARING (the book, fills, trades, commitments); each delivered slot its METER readings
and its SETTLEMENT (deviations, float costs and integer postings), then the operator signs the
tree head. After the run, `finish` posts what is settled later: the network operator's charges
per local day and an end-of-period settlement (bill sharing, allocation rules).

Money flows per entry (`ledger.postings`): each participant pays its slot cost (receives when
negative), the retailer receives its revenue, the market operator its surplus and penalty
spreads; the daily charge goes to the retailer on each local day's first slot; network and loss
charges to the network operator; a period settlement's adjustments to the community pool.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from peergrid.engine.lifecycle import Cleared
from peergrid.ledger import encoding as enc
from peergrid.ledger.keys import load_public_key, operator_key, participant_keys, public_bytes
from peergrid.ledger.log import Ledger, ledger_id_for, order_problem
from peergrid.ledger.postings import Accrual
from peergrid.ledger.store import LedgerStore
from peergrid.markets.base import OrderBook
from peergrid.settlement.slot import SlotSettlement

if TYPE_CHECKING:
    from peergrid.engine.community import Community

FloatArray = NDArray[np.float64]

#: Minor units per currency unit as a power of ten (ISO 4217 exponents of the usual ones).
_EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "KWD": 3, "BHD": 3, "OMR": 3, "JOD": 3, "TND": 3}


def minor_exponent(currency: str) -> int:
    """The ISO 4217 minor-unit exponent of a currency code (2 unless known otherwise)."""
    return _EXPONENTS.get(currency.upper(), 2)


def public_keys_hex(seed: int, n_participants: int) -> list[str]:
    """Every participant's simulation public key, hex of the 32 raw bytes."""
    return [public_bytes(k).hex() for k in participant_keys(seed, n_participants)]


def day_starts(community: Community) -> NDArray[np.int64]:
    """The first slot of every local day of the run."""
    day = community.grid.local_day
    first = np.ones(day.shape[0], dtype=bool)
    first[1:] = day[1:] != day[:-1]
    return np.flatnonzero(first)


#: Order messages per task of the worker processes.
_BATCH_MESSAGES = 2048
#: Runs with fewer order messages than this sign and check in the calling process.
_POOL_MIN_MESSAGES = 8192


def _sign_and_check(
    seed: int,
    n_participants: int,
    ledger_id: bytes,
    public_keys: tuple[bytes, ...],
    gates: list[tuple[int, list[int], list[bytes]]],
) -> list[tuple[list[bytes], list[str | None]]]:
    """In a worker process: every participant signs its message of each gate (its device's
    work), then the ledger's own check (`ledger.log.order_problem`) gives each verdict."""
    keys = participant_keys(seed, n_participants)
    public = [load_public_key(k) for k in public_keys]
    out = []
    for _, who, msgs in gates:
        sigs = [keys[p].sign(m) for p, m in zip(who, msgs, strict=True)]
        verdicts = [
            order_problem(public, ledger_id, p, m, sg)
            for p, m, sg in zip(who, msgs, sigs, strict=True)
        ]
        out.append((sigs, verdicts))
    return out


class _Segment:
    """A stretch of the journal waiting for its orders to be signed and checked by a worker:
    its actions in ledger order — gates (their orders), entries, tree heads — and the gates'
    work for the worker."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, Any]] = []
        self.gates: list[tuple[int, list[int], list[bytes]]] = []
        self.n_messages = 0
        self.future: Future[list[tuple[list[bytes], list[str | None]]]] | None = None


class RunLedger:
    """The journal that writes a run's ledger (module docstring).

    With a pool of worker processes (long runs), signing and checking the orders of a batch of
    gates runs on the other cores while the simulation goes on; everything else the journal
    appends waits in order behind them, so the ledger is exactly the one written in a single
    process (tested)."""

    def __init__(
        self,
        ledger: Ledger,
        keys: Sequence[Any],
        mechanism: str,
        rule: str,
        daily_charge: float,
        day_starts: NDArray[np.int64],
        accrual: Accrual | None = None,
        rejected: int = 0,
    ) -> None:
        self.ledger = ledger
        self._keys = list(keys)
        self._mechanism = mechanism
        self._rule = rule
        self._daily = daily_charge
        self._day_start = np.zeros(int(day_starts.max()) + 1 if day_starts.size else 0, dtype=bool)
        self._day_start[day_starts] = True
        self._day_starts = day_starts
        n = ledger.n_participants
        self._accrual = Accrual(n, ledger.genesis.minor_exponent) if accrual is None else accrual
        self.rejected = rejected
        self.seconds = 0.0
        self._seed = 0
        self._pool: ProcessPoolExecutor | None = None
        self._queue: deque[_Segment] = deque()
        self._open: _Segment | None = None
        self._running = 0

    def close_workers(self) -> None:
        """Stop the worker processes (idempotent; `finish` calls it, so does a failed run)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def use_workers(self, seed: int, workers: int) -> None:
        """Sign and check orders in `workers` processes (the keys derive from `seed`)."""
        if workers > 1:
            self._seed = seed
            self._pool = ProcessPoolExecutor(max_workers=workers)

    @classmethod
    def create(
        cls,
        path: str | Path | LedgerStore,
        community: Community,
        mechanism: str,
        rule: str,
        workers: int | None = None,
    ) -> RunLedger:
        """A new ledger for a run of `community`, in a new file at `path` or an empty store;
        `workers` processes sign and check the orders of long runs (default: one per core; 1:
        this process)."""
        t0 = time.perf_counter()
        sc = community.scenario
        grid = community.grid
        start = int(grid.starts_utc[0].timestamp())
        keys = participant_keys(sc.seed, community.n_participants)
        currency = sc.tariff.currency
        op = operator_key(sc.seed)
        ledger = Ledger.create(
            path,
            operator_key=op,
            genesis=enc.Genesis(
                ledger_id=ledger_id_for(sc.seed, sc.name, start),
                operator_public_key=public_bytes(op),
                currency=currency,
                minor_exponent=minor_exponent(currency),
                start_unix_s=start,
                slot_seconds=round(grid.dt_h * 3600),
                n_slots=grid.n_slots,
                scenario=sc.name,
                names=tuple(community.names),
                public_keys=tuple(public_bytes(k) for k in keys),
            ),
        )
        out = cls(ledger, keys, mechanism, rule, community.daily_charge, day_starts(community))
        if workers is None:
            workers = os.cpu_count() or 1
        if community.n_participants * grid.n_slots >= _POOL_MIN_MESSAGES:
            out.use_workers(sc.seed, workers)
        out.seconds = time.perf_counter() - t0
        return out

    # --- the journal -----------------------------------------------------------------------

    def gate(self, gate_slot: int, first_slot: int, books: Sequence[OrderBook]) -> None:
        """Every participant signs its orders of the gate; the ledger verifies and appends."""
        t0 = time.perf_counter()
        parts = [b.participant for b in books]
        if sum(p.size for p in parts):
            slots = np.concatenate(
                [np.full(b.n_orders, first_slot + k, dtype=np.int64) for k, b in enumerate(books)]
            )
            who, msgs = enc.order_messages(
                self.ledger.genesis.ledger_id,
                gate_slot,
                np.concatenate(parts).astype(np.int64),
                slots,
                np.concatenate([b.side for b in books]),
                np.concatenate([b.quantity_kwh for b in books]),
                np.concatenate([b.price for b in books]),
            )
            if self._pool is None:
                keys = self._keys
                sigs = [keys[p].sign(m) for p, m in zip(who.tolist(), msgs, strict=True)]
                self.signed(gate_slot, who.tolist(), msgs, sigs)
            else:
                self._add_gate(gate_slot, who.tolist(), msgs)
        self.seconds += time.perf_counter() - t0

    def signed(
        self,
        gate_slot: int,
        participants: Sequence[int],
        messages: Sequence[bytes],
        signatures: Sequence[bytes],
    ) -> list[int]:
        """Orders the participants signed themselves (the live platform's agents): the ledger
        verifies and appends them in the order given; returns the participants refused."""
        rejected = self.ledger.submit_orders_batch(gate_slot, participants, messages, signatures)
        self.rejected += len(rejected)
        return rejected

    # --- the pipeline to the workers ------------------------------------------------------------

    def _add_gate(self, gate_slot: int, who: list[int], msgs: list[bytes]) -> None:
        seg = self._open_segment()
        seg.actions.append(("gate", len(seg.gates)))
        seg.gates.append((gate_slot, who, msgs))
        seg.n_messages += len(msgs)
        if seg.n_messages >= _BATCH_MESSAGES:
            self._submit(seg)
        self._drain(block=False)
        while self._running > 4:  # bound what waits in memory
            self._drain(block=True, one=True)

    def _open_segment(self) -> _Segment:
        if self._open is None:
            self._open = _Segment()
            self._queue.append(self._open)
        return self._open

    def _submit(self, seg: _Segment) -> None:
        if seg is self._open:
            self._open = None
        if not seg.gates or self._pool is None:
            return
        led = self.ledger
        seg.future = self._pool.submit(
            _sign_and_check,
            self._seed,
            led.n_participants,
            led.genesis.ledger_id,
            led.genesis.public_keys,
            seg.gates,
        )
        self._running += 1

    def _put(self, kind: str, item: Any) -> None:
        """Append an entry ("entry") or sign a head ("head") now, or after the orders ahead."""
        if self._queue:
            self._open_segment().actions.append((kind, item))
        else:
            self._apply(kind, item)

    def _apply(self, kind: str, item: Any) -> None:
        if kind == "entry":
            self.ledger.append(item)
        else:
            self.ledger.sign_head(item)

    def _drain(self, block: bool, one: bool = False) -> None:
        """Write the segments at the front whose orders are signed and checked (`block`: wait
        for them; `one`: stop after one)."""
        while self._queue:
            seg = self._queue[0]
            results: list[tuple[list[bytes], list[str | None]]] = []
            if seg.gates:
                if seg.future is None:
                    if not block:
                        return
                    self._submit(seg)
                assert seg.future is not None
                if not block and not seg.future.done():
                    return
                results = seg.future.result()
                self._running -= 1
            elif seg is self._open:
                self._open = None
            for kind, item in seg.actions:
                if kind == "gate":
                    gate_slot, who, msgs = seg.gates[item]
                    sigs, verdicts = results[item]
                    rejected = self.ledger.submit_orders_batch(
                        gate_slot, who, msgs, sigs, checked=verdicts
                    )
                    self.rejected += len(rejected)
                else:
                    self._apply(kind, item)
            self._queue.popleft()
            if one:
                return

    def cleared(self, slot: int, cl: Cleared, mechanism: str | None = None) -> None:
        """The slot's CLEARING: fills (in the signed book's order), trades, commitments;
        `mechanism` names who cleared it when not the run's mechanism (a live slot's retail
        fallback)."""
        t0 = time.perf_counter()
        b, res, c = cl.book, cl.result, cl.commitment
        order = np.argsort(b.participant, kind="stable")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        rec = enc.ClearingRecord(
            mechanism=self._mechanism if mechanism is None else mechanism,
            clearing_price=float(res.clearing_price),
            buy_price=float(res.buy_price),
            sell_price=float(res.sell_price),
            operator_surplus=float(res.operator_surplus),
            filled_kwh=res.filled_kwh[order],
            price=res.price[order],
            trade_buy=inverse[res.trade_buy] if res.trade_buy.size else res.trade_buy,
            trade_sell=inverse[res.trade_sell] if res.trade_sell.size else res.trade_sell,
            trade_kwh=res.trade_kwh,
            trade_price=res.trade_price,
            committed_kwh=c.committed_kwh,
        )
        self._put("entry", enc.entry(enc.Kind.CLEARING, slot, rec.encode()))
        self.seconds += time.perf_counter() - t0

    def delivered(
        self,
        slot: int,
        metered_net_kwh: FloatArray,
        st: SlotSettlement,
        retail_price: float,
        feed_in_price: float,
    ) -> None:
        """The slot's METER readings and SETTLEMENT, then a signed tree head."""
        t0 = time.perf_counter()
        led = self.ledger
        self._put("entry", enc.entry(enc.Kind.METER, slot, enc.meter_body(metered_net_kwh)))
        postings = self._accrual.post(
            -st.cost,
            {enc.Account.RETAILER: st.retailer_revenue, enc.Account.OPERATOR: st.operator_revenue},
            enc.Memo.ENERGY,
            metered_net_kwh,
        )
        if self._daily and slot < self._day_start.size and self._day_start[slot]:
            n = led.n_participants
            daily = self._accrual.post(
                np.full(n, -self._daily), {enc.Account.RETAILER: self._daily * n}, enc.Memo.DAILY
            )
            postings = _concat(postings, daily)
        body = enc.settlement_body(
            self._rule, retail_price, feed_in_price, st.deviation_kwh, st.cost, postings
        )
        self._put("entry", enc.entry(enc.Kind.SETTLEMENT, slot, body))
        self._put("head", slot)
        self.seconds += time.perf_counter() - t0

    def head(self, slot: int) -> None:
        """Sign a tree head now (the live platform signs one after every market step, so what
        it has done is in the database before the step's transaction commits)."""
        self._put("head", slot)

    @property
    def accrual(self) -> Accrual:
        """The running totals behind the postings."""
        return self._accrual

    # --- after the run -----------------------------------------------------------------------

    def finish(
        self,
        network_charge: FloatArray | None,
        loss_charge: FloatArray | None,
        period_adjustment: FloatArray | None,
        period_name: str,
    ) -> dict[str, Any]:
        """Post the network operator's charges per local day and a period settlement, sign
        the last head, close the file; returns the ledger's figures for the summary."""
        t0 = time.perf_counter()
        self._drain(block=True)
        self.close_workers()
        led = self.ledger
        n = led.n_participants
        last = led.genesis.n_slots - 1
        if network_charge is not None or loss_charge is not None:
            zeros = np.zeros((led.genesis.n_slots, n))
            net = zeros if network_charge is None else network_charge
            loss = zeros if loss_charge is None else loss_charge
            bounds = [*self._day_starts.tolist(), led.genesis.n_slots]
            for a, b in itertools.pairwise(bounds):
                net_d, loss_d = net[a:b].sum(axis=0), loss[a:b].sum(axis=0)
                p1 = self._accrual.post(
                    -net_d, {enc.Account.NETWORK_OPERATOR: float(net_d.sum())}, enc.Memo.NETWORK
                )
                p2 = self._accrual.post(
                    -loss_d, {enc.Account.NETWORK_OPERATOR: float(loss_d.sum())}, enc.Memo.LOSS
                )
                body = enc.charges_body(b - 1, net_d, loss_d, _concat(p1, p2))
                led.append(enc.entry(enc.Kind.CHARGES, a, body))
            led.sign_head(last)
        if period_adjustment is not None:
            adj = np.asarray(period_adjustment, dtype=np.float64)
            p = self._accrual.post(-adj, {enc.Account.POOL: float(adj.sum())}, enc.Memo.PERIOD)
            led.append(enc.entry(enc.Kind.PERIOD, last, enc.period_body(period_name, adj, p)))
            led.sign_head(last)
        size = led.size
        root = led.root().hex()
        bills = self._accrual.participant_totals()
        led.close(last)
        self.seconds += time.perf_counter() - t0
        return {
            "entries": size,
            "root": root,
            "bytes": led.bytes_written,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
            "bill_minor": bills,
            "minor_exponent": led.genesis.minor_exponent,
        }


def _concat(a: enc.Postings, b: enc.Postings) -> enc.Postings:
    return enc.Postings(
        account=np.concatenate([a.account, b.account]),
        memo=np.concatenate([a.memo, b.memo]),
        amount_minor=np.concatenate([a.amount_minor, b.amount_minor]),
        energy_wh=np.concatenate([a.energy_wh, b.energy_wh]),
    )
