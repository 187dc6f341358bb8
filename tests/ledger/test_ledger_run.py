"""A run's ledger end to end: it verifies, its bills are the run's to the cent, proofs check,
and any changed byte or value, any deleted, inserted or reordered entry is found."""

from __future__ import annotations

import itertools
import json
import shutil
import sqlite3
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid.cli import main
from peergrid.engine.simulate import simulate
from peergrid.ledger import encoding as enc
from peergrid.ledger import store
from peergrid.ledger.keys import operator_key, participant_keys, public_bytes
from peergrid.ledger.log import Ledger, OrderRejected
from peergrid.ledger.proof import ProofInvalid, check_proof, prove, prove_consistency
from peergrid.ledger.verify import LedgerInvalid, verify_ledger
from tests.engine.conftest import small_scenario


@pytest.fixture(scope="module")
def run_ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    d = tmp_path_factory.mktemp("ledger")
    path = d / "ledger.sqlite"
    sc = small_scenario(n=6, days=1, forecast="persistence", gate_closure="intraday 2")
    result = simulate(sc, ledger_path=path)
    return path, result


def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / "copy.sqlite"
    shutil.copy(src, dst)
    return dst


def test_run_ledger_verifies_and_bills_agree_to_the_cent(run_ledger: tuple[Path, object]) -> None:
    path, result = run_ledger
    rep = verify_ledger(path)
    n_t = 96
    assert rep.kinds["METER"] == n_t and rep.kinds["SETTLEMENT"] == n_t
    assert rep.kinds["CLEARING"] == n_t
    assert rep.signatures == rep.kinds["ORDERS"] > 0
    assert rep.heads >= n_t
    parts = result.participants  # type: ignore[attr-defined]
    bill = parts["bill"].to_numpy()
    ledger_bill = np.array([-rep.balances_minor[i] for i in range(len(bill))]) / 100
    np.testing.assert_array_equal(ledger_bill, parts["ledger_bill"].to_numpy())
    assert np.all(np.abs(ledger_bill - bill) <= 0.005 + 1e-9)
    np.testing.assert_array_equal(np.round(ledger_bill * 100), np.round(bill * 100))
    # every account's balance: money is only moved, never made
    assert sum(rep.balances_minor.values()) == 0
    assert sum(rep.energy_wh.values()) == 0
    assert result.summary["ledger"]["entries"] == rep.entries  # type: ignore[attr-defined]
    keys = participant_keys(sc_seed(), 6)
    assert list(parts["public_key"]) == [public_bytes(k).hex() for k in keys]


def sc_seed() -> int:
    return small_scenario().seed


def _blocks(path: Path) -> list[tuple[int, int, bytes, bytes]]:
    conn = sqlite3.connect(path)
    rows = list(conn.execute("SELECT first, n, lengths, data FROM blocks ORDER BY first"))
    conn.close()
    return rows


def _rewrite_block(path: Path, first: int, entries: list[bytes]) -> None:
    lengths, data = store.pack_block(entries)
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE blocks SET n = ?, lengths = ?, data = ? WHERE first = ?",
        (len(entries), lengths, data, first),
    )
    conn.commit()
    conn.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(block=st.integers(0, 10**6), offset=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_any_changed_bit_of_any_entry_is_found(
    run_ledger: tuple[Path, object], tmp_path: Path, block: int, offset: int, bit: int
) -> None:
    path = _copy(run_ledger[0], tmp_path)
    rows = _blocks(path)
    first, n, lengths, data = rows[block % len(rows)]
    entries = store.unpack_block(n, lengths, data)
    raw = bytearray(b"".join(entries))
    pos = offset % len(raw)
    raw[pos] ^= 1 << bit
    sizes = [len(e) for e in entries]
    cut = np.cumsum([0, *sizes]).tolist()
    changed = [bytes(raw[a:b]) for a, b in itertools.pairwise(cut)]
    _rewrite_block(path, first, changed)
    with pytest.raises(LedgerInvalid) as err:
        verify_ledger(path)
    hit = first + int(np.searchsorted(cut, pos, side="right")) - 1
    # found at the changed entry, or at the tree head that covers it
    last_of_block = first + n - 1
    assert err.value.entry is not None and hit <= err.value.entry <= last_of_block


def _sql(path: Path, statement: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(statement, params)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "tamper",
    [
        "delete_block",
        "delete_entry",
        "insert_entry",
        "swap_entries",
        "head_root",
        "head_signature",
        "delete_last_head",
        "meta_key",
        "meta_version",
        "compressed_byte",
        "lengths",
    ],
)
def test_structural_tampering_is_found(
    run_ledger: tuple[Path, object], tmp_path: Path, tamper: str
) -> None:
    path = _copy(run_ledger[0], tmp_path)
    rows = _blocks(path)
    first, n, lengths, data = rows[len(rows) // 2]
    entries = store.unpack_block(n, lengths, data)
    if tamper == "delete_block":
        _sql(path, "DELETE FROM blocks WHERE first = ?", first)
    elif tamper == "delete_entry":
        _rewrite_block(path, first, entries[1:])
    elif tamper == "insert_entry":
        _rewrite_block(path, first, [entries[0], *entries])
    elif tamper == "swap_entries":
        _rewrite_block(path, first, [entries[1], entries[0], *entries[2:]])
    elif tamper == "head_root":
        conn = sqlite3.connect(path)
        size, head = conn.execute("SELECT tree_size, head FROM heads LIMIT 1 OFFSET 10").fetchone()
        conn.close()
        bad = bytearray(head)
        bad[-1] ^= 1
        _sql(path, "UPDATE heads SET head = ? WHERE tree_size = ?", bytes(bad), size)
    elif tamper == "head_signature":
        conn = sqlite3.connect(path)
        size, sig = conn.execute(
            "SELECT tree_size, signature FROM heads LIMIT 1 OFFSET 10"
        ).fetchone()
        conn.close()
        bad = bytearray(sig)
        bad[0] ^= 1
        _sql(path, "UPDATE heads SET signature = ? WHERE tree_size = ?", bytes(bad), size)
    elif tamper == "delete_last_head":
        _sql(path, "DELETE FROM heads WHERE tree_size = (SELECT MAX(tree_size) FROM heads)")
    elif tamper == "meta_key":
        other = public_bytes(operator_key(999))
        _sql(path, "UPDATE meta SET value = ? WHERE key = 'operator_public_key'", other)
    elif tamper == "meta_version":
        _sql(path, "UPDATE meta SET value = ? WHERE key = 'format_version'", b"2")
    elif tamper == "compressed_byte":
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0x10
        _sql(path, "UPDATE blocks SET data = ? WHERE first = ?", bytes(bad), first)
    elif tamper == "lengths":
        sizes = np.frombuffer(lengths, dtype=">u4").copy()
        sizes[0] += 1
        sizes[1] -= 1
        _sql(path, "UPDATE blocks SET lengths = ? WHERE first = ?", sizes.tobytes(), first)
    with pytest.raises(LedgerInvalid):
        verify_ledger(path)


def test_inclusion_and_consistency_proofs(run_ledger: tuple[Path, object]) -> None:
    path = run_ledger[0]
    rep = verify_ledger(path)
    for entry in (0, 1, rep.entries // 2, rep.entries - 1):
        doc = prove(path, entry)
        assert check_proof(doc).startswith("included")
        # a proof survives JSON and checks without the database
        assert check_proof(json.loads(json.dumps(doc)))
    doc = prove(path, 3)
    for field, value in [
        ("leaf_index", 4),
        ("root_hash", "00" * 32),
        ("payload_b64", doc["payload_b64"][:-4] + "AAA="),
        ("audit_path", doc["audit_path"][1:]),
        ("tree_size", doc["tree_size"] + 1),
    ]:
        with pytest.raises(ProofInvalid):
            check_proof({**doc, field: value})
    with pytest.raises(ProofInvalid):
        check_proof(doc, operator_public_key=public_bytes(operator_key(999)))
    st = store.SqliteStore.open(path)
    sizes = [h[0] for h in st.heads()]
    st.close()
    for old in (sizes[0], sizes[len(sizes) // 3], sizes[-2]):
        c = prove_consistency(path, old)
        assert check_proof(c).startswith("consistent")
        with pytest.raises(ProofInvalid):
            check_proof({**c, "old_root": "11" * 32})


def _tiny_ledger(tmp_path: Path) -> tuple[Ledger, list[object]]:
    keys = participant_keys(7, 3)
    op = operator_key(7)
    genesis = enc.Genesis(
        ledger_id=b"\x01" * 16,
        operator_public_key=public_bytes(op),
        currency="EUR",
        minor_exponent=2,
        start_unix_s=0,
        slot_seconds=900,
        n_slots=4,
        scenario="tiny",
        names=("a", "b", "c"),
        public_keys=tuple(public_bytes(k) for k in keys),
    )
    led = Ledger.create(tmp_path / "t.sqlite", operator_key=op, genesis=genesis)
    return led, list(keys)


def _message(p: int, gate: int = 0) -> bytes:
    return enc.order_message(
        b"\x01" * 16,
        p,
        gate,
        np.array([gate + 1]),
        np.array([0], dtype=np.int8),
        np.array([0.5]),
        np.array([0.25]),
    )


def test_a_bad_signature_is_rejected_and_the_rejection_logged(tmp_path: Path) -> None:
    led, keys = _tiny_ledger(tmp_path)
    good = keys[0].sign(_message(0))  # type: ignore[attr-defined]
    led.submit_orders(0, 0, _message(0), good)
    with pytest.raises(OrderRejected, match="bad signature"):
        led.submit_orders(1, 0, _message(1), good)  # participant 0's signature
    with pytest.raises(OrderRejected, match="another participant"):
        led.submit_orders(2, 0, _message(1), keys[2].sign(_message(1)))  # type: ignore[attr-defined]
    led.close(0)
    rep = verify_ledger(tmp_path / "t.sqlite")
    assert rep.kinds == {"GENESIS": 1, "ORDERS": 1, "REJECTED": 2}
    assert rep.rejected == 2 and rep.signatures == 1


def test_rejecting_valid_orders_is_itself_found(tmp_path: Path) -> None:
    led, keys = _tiny_ledger(tmp_path)
    m = _message(1)
    sig = keys[1].sign(m)  # type: ignore[attr-defined]
    led.append(enc.entry(enc.Kind.REJECTED, 0, enc.rejected_body(1, "bad signature", m, sig)))
    led.close(0)
    with pytest.raises(LedgerInvalid, match="valid, correctly signed orders were rejected"):
        verify_ledger(tmp_path / "t.sqlite")


def test_cli_verify_prove_check_show(
    run_ledger: tuple[Path, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = run_ledger[0]
    assert main(["ledger", "verify", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["ledger", "prove", str(path), "7"]) == 0
    proof = tmp_path / "proof.json"
    proof.write_text(capsys.readouterr().out, encoding="utf-8")
    assert main(["ledger", "check-proof", str(proof)]) == 0
    st = store.SqliteStore.open(path)
    old_size = st.heads()[10][0]
    st.close()
    capsys.readouterr()
    assert main(["ledger", "consistency", str(path), str(old_size)]) == 0
    consistency = tmp_path / "consistency.json"
    consistency.write_text(capsys.readouterr().out, encoding="utf-8")
    assert main(["ledger", "check-proof", str(consistency)]) == 0
    assert "consistent" in capsys.readouterr().out
    assert main(["ledger", "consistency", str(path), str(old_size + 1)]) == 2
    doc = json.loads(proof.read_text(encoding="utf-8"))
    doc["leaf_index"] = 8
    proof.write_text(json.dumps(doc), encoding="utf-8")
    assert main(["ledger", "check-proof", str(proof)]) == 1
    assert "INVALID" in capsys.readouterr().out
    proof.write_text("{not json", encoding="utf-8")
    assert main(["ledger", "check-proof", str(proof)]) == 2
    assert main(["ledger", "verify", str(tmp_path)]) == 2
    assert "no ledger here" in capsys.readouterr().err
    assert main(["ledger", "show", str(path), "--participant", "h2", "--slot", "10:20"]) == 0
    out = capsys.readouterr().out
    assert "h2 signed" in out and "meter h2" in out and "energy" in out
    assert main(["ledger", "show", str(path), "--participant", "nobody"]) == 2
    bad = _copy(path, tmp_path)
    rows = _blocks(bad)
    first, n, lengths, data = rows[5]
    entries = store.unpack_block(n, lengths, data)
    raw = bytearray(entries[-1])
    raw[-20] ^= 4
    _rewrite_block(bad, first, [*entries[:-1], bytes(raw)])
    capsys.readouterr()
    assert main(["ledger", "verify", str(bad)]) == 1
    assert f"entry {first + n - 1}" in capsys.readouterr().out


def test_block_data_are_compressed(run_ledger: tuple[Path, object]) -> None:
    _, _, lengths, data = _blocks(run_ledger[0])[3]
    raw = zlib.decompress(data)
    assert len(raw) == int(np.frombuffer(lengths, dtype=">u4").sum())


@pytest.mark.parametrize("workers", [1, 2])
def test_a_forged_signature_is_found_by_the_worker_processes(
    run_ledger: tuple[Path, object], tmp_path: Path, workers: int
) -> None:
    path = _copy(run_ledger[0], tmp_path)
    assert verify_ledger(path, workers=workers, batch=40).signatures > 80
    rows = _blocks(path)
    first, n, lengths, data = rows[len(rows) // 2]
    entries = store.unpack_block(n, lengths, data)
    k = next(i for i, e in enumerate(entries) if enc.read_header(e)[0] is enc.Kind.ORDERS)
    raw = bytearray(entries[k])
    raw[-1] ^= 0x01  # the signature's last byte
    _rewrite_block(path, first, [*entries[:k], bytes(raw), *entries[k + 1 :]])
    with pytest.raises(LedgerInvalid, match="bad signature") as err:
        verify_ledger(path, workers=workers, batch=40)
    assert err.value.entry == first + k


def test_worker_processes_write_the_same_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peergrid.engine.ledger as run_ledger_module

    sc = small_scenario(n=6, days=1, forecast="persistence", gate_closure="intraday 2")
    monkeypatch.setattr(run_ledger_module, "_POOL_MIN_MESSAGES", 10**12)
    alone = simulate(sc, ledger_path=tmp_path / "alone.sqlite").summary["ledger"]
    monkeypatch.setattr(run_ledger_module, "_POOL_MIN_MESSAGES", 0)
    monkeypatch.setattr(run_ledger_module, "_BATCH_MESSAGES", 50)
    pooled = simulate(sc, ledger_path=tmp_path / "pooled.sqlite").summary["ledger"]
    assert pooled["root"] == alone["root"] and pooled["entries"] == alone["entries"]
    assert _blocks(tmp_path / "alone.sqlite") == _blocks(tmp_path / "pooled.sqlite")
    verify_ledger(tmp_path / "pooled.sqlite")


def test_the_genesis_names_the_signing_operator(tmp_path: Path) -> None:
    led, _ = _tiny_ledger(tmp_path)
    genesis = led.genesis
    led.close(0)
    with pytest.raises(ValueError, match="operator key"):
        Ledger.create(tmp_path / "other.sqlite", operator_key=operator_key(8), genesis=genesis)
    assert not (tmp_path / "other.sqlite").exists()  # nothing written
