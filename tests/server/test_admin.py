"""The platform's database and its participant registry, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select

from peergrid.cli import main
from peergrid.errors import InputError
from peergrid.ledger.keys import participant_keys, public_bytes
from peergrid.server.admin import add_participant, authenticate, list_participants, token_digest
from peergrid.server.db import current_revision, downgrade, engine_for, migrate
from peergrid.server.schema import participants

KEYS = [public_bytes(k).hex() for k in participant_keys(7, 3)]


def test_migrations_create_and_remove_the_schema(db_url: str) -> None:
    engine = engine_for(db_url)
    assert current_revision(engine) is None
    migrate(engine)
    assert current_revision(engine) == "0003"
    assert {"participants", "ledger_blocks", "ledger_heads"} <= set(
        inspect(engine).get_table_names()
    )
    migrate(engine)  # idempotent
    downgrade(engine, "base")
    assert "participants" not in inspect(engine).get_table_names()
    migrate(engine)
    assert current_revision(engine) == "0003"
    engine.dispose()


def test_tokens_are_stored_hashed_and_authenticate(db_url: str) -> None:
    engine = engine_for(db_url)
    migrate(engine)
    a = add_participant(engine, "house-1", "participant", KEYS[0])
    op = add_participant(engine, "operator", "operator")
    assert a.token != op.token and len(a.token) >= 43
    with engine.connect() as conn:
        stored = conn.execute(select(participants.c.token_sha256, participants.c.public_key)).all()
    assert {r.token_sha256 for r in stored} == {token_digest(a.token), token_digest(op.token)}
    assert all(a.token not in str(r) for r in stored)
    assert authenticate(engine, a.token) == {"id": a.id, "name": "house-1", "role": "participant"}
    assert authenticate(engine, a.token + "x") is None
    rows = list_participants(engine)
    assert [r["name"] for r in rows] == ["house-1", "operator"]
    assert rows[0]["public_key"] == KEYS[0] and rows[1]["public_key"] == ""
    assert all("token" not in k for r in rows for k in r)
    engine.dispose()


@pytest.mark.parametrize(
    ("name", "role", "key", "field"),
    [
        ("house 1", "participant", KEYS[0], "--name"),
        ("house-1", "admin", KEYS[0], "--role"),
        ("house-1", "participant", None, "--public-key"),
        ("house-1", "participant", "zz" * 32, "--public-key"),
        ("house-1", "participant", KEYS[0][:-2], "--public-key"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    db_url: str, name: str, role: str, key: str | None, field: str
) -> None:
    engine = engine_for(db_url)
    migrate(engine)
    with pytest.raises(InputError, match=field):
        add_participant(engine, name, role, key)
    assert list_participants(engine) == []
    engine.dispose()


def test_a_name_is_registered_once(db_url: str) -> None:
    engine = engine_for(db_url)
    migrate(engine)
    add_participant(engine, "house-1", "participant", KEYS[0])
    with pytest.raises(InputError, match="already registered"):
        add_participant(engine, "house-1", "participant", KEYS[1])
    assert len(list_participants(engine)) == 1
    engine.dispose()


def test_admin_commands(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["admin", "add-participant", "--db", db_url, "--name", "house-2"]
    assert main([*args, "--public-key", KEYS[1]]) == 0
    out = capsys.readouterr().out
    assert "added house-2 (participant)" in out and "API token" in out
    assert main([*args, "--public-key", KEYS[2]]) == 2
    assert "already registered" in capsys.readouterr().err
    assert main(["admin", "list", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "house-2" in out and "1 accounts" in out


def test_bad_databases_are_input_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "list", "--db", "mysql://root@127.0.0.1/test"]) == 2
    assert "unsupported database" in capsys.readouterr().err
    assert main(["admin", "list", "--db", "postgresql://postgres@127.0.0.1:1/none"]) == 2
    assert "cannot open the database" in capsys.readouterr().err
