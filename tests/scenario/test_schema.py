import tomllib
from pathlib import Path

import pytest

from peergrid.errors import InputError
from peergrid.scenario.load import builtin_names, builtin_text, load_scenario
from peergrid.scenario.resolve import expand_groups, resolve, to_toml

MINIMAL = """
schema_version = 1
name = "t"
[time]
start = 2024-06-03
days = 1
[[participants]]
name = "a"
[[participants]]
name = "b"
[[participants]]
name = "c"
[[participants]]
name = "d"
battery = {{ capacity_kwh = 5, power_kw = {power} }}
"""


def write(tmp_path: Path, text: str, name: str = "community.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtins_exist_and_validate() -> None:
    assert {"demo", "suburb-100-year"} <= set(builtin_names())
    for name in builtin_names():
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.base_dir is None


def test_demo_is_30_plus_mixed_households_one_week_15_min() -> None:
    s = load_scenario("demo")
    members = expand_groups(s)
    assert len(members) >= 30
    assert s.time.days == 7 and s.time.slot_minutes == 15
    kinds = {
        (p.pv is not None, p.battery is not None, p.ev is not None, p.heating is not None)
        for p in members
    }
    assert len(kinds) >= 4  # mixed kinds of households


def test_suburb_is_100_households_one_year() -> None:
    s = load_scenario("suburb-100-year")
    members = expand_groups(s)
    assert len(members) == 100
    assert s.time.days == 365 and s.time.slot_minutes == 15
    assert sum(p.pv is not None for p in members) > 50
    assert sum(p.battery is not None for p in members) > 30
    assert sum(p.ev is not None for p in members) > 30


def test_error_names_file_field_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.format(power=-5))
    with pytest.raises(InputError) as err:
        load_scenario(path)
    assert str(err.value) == (
        "community.toml: participants[3].battery.power_kw: must be > 0 (got -5)"
    )


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[time]\nstart = 2024-06-03\ndays = 0", "time.days: must be >= 1 (got 0)"),
        (
            "[time]\nstart = 2024-06-03\ndays = 1\nslot_minutes = 7",
            "time.slot_minutes: must be one of",
        ),
        (
            '[time]\nstart = 2024-06-03\ndays = 1\ntimezone = "Nowhere/X"',
            "time.timezone: unknown IANA",
        ),
        ("[time]\nstart = 2024-06-03\ndays = 1\nbogus = 3", "time.bogus: unknown field"),
        ("[time]\ndays = 1", "time.start: required field is missing"),
    ],
)
def test_time_errors(tmp_path: Path, snippet: str, expected: str) -> None:
    text = f'schema_version = 1\nname = "t"\n{snippet}\n[[participants]]\nname = "a"\n'
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_scenario(write(tmp_path, text))


def test_invalid_toml_and_version_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"community\.toml: invalid TOML"):
        load_scenario(write(tmp_path, "name = \n"))
    with pytest.raises(InputError, match="schema_version: this peergrid reads version 1"):
        load_scenario(write(tmp_path, 'schema_version = 9\nname = "x"'))
    with pytest.raises(InputError, match="file not found"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(InputError, match="unknown built-in scenario 'nope'"):
        load_scenario("nope")


def test_cross_field_rules(tmp_path: Path) -> None:
    base = 'schema_version = 1\nname = "t"\n[time]\nstart = 2024-06-03\ndays = 1\n'
    cases = [
        (
            "[tariff]\nretail_per_kwh = 0.1\nfeed_in_per_kwh = 0.2\n[[participants]]\nname='a'",
            "tariff: feed_in_per_kwh (0.2) must not exceed the lowest retail price (0.1)",
        ),
        (
            "[[participants]]\nname='a'\n"
            "battery = { capacity_kwh = 5, power_kw = 2, soc_min = 0.5, soc_max = 0.4 }",
            "participants[0].battery: soc_min (0.5) must be < soc_max (0.4)",
        ),
        (
            "[[participants]]\nname='a'\n[[participants]]\nname='a'",
            "participants[1].name: duplicate name 'a'",
        ),
        (
            "[[groups]]\nname_prefix='g'\ncount=2\npv = { kwp = [5, 3] }",
            "range low (5) must be <= high (3)",
        ),
        (
            "[[participants]]\nname='a'\nshiftable=[{appliance='wm', energy_kwh=1, "
            "duration_min=60, window_start='25:00'}]",
            "participants[0].shiftable[0].window_start: must be a local clock time 'HH:MM'",
        ),
    ]
    for snippet, expected in cases:
        with pytest.raises(InputError) as err:
            load_scenario(write(tmp_path, base + snippet))
        assert expected in str(err.value), str(err.value)
        assert str(err.value).startswith("community.toml: ")


def test_groups_expand_deterministically_and_respect_ranges() -> None:
    s = load_scenario("suburb-100-year")
    a, b = expand_groups(s), expand_groups(s)
    assert a == b
    for p in a:
        assert p.name.startswith("house-")
        assert 2200 <= p.demand.annual_kwh <= 6000
        if p.pv:
            assert 3 <= p.pv.kwp <= 10
    other = expand_groups(s.model_copy(update={"seed": s.seed + 1}))
    assert other != a


def test_resolved_toml_round_trips(tmp_path: Path) -> None:
    s = load_scenario("demo")
    r = resolve(s, (52.38, 13.07, 81.0))
    text = to_toml(r, "# resolved")
    raw = tomllib.loads(text)
    assert "groups" not in raw
    again = resolve(load_scenario(write(tmp_path, text, "resolved.toml")), None)
    assert again.model_dump() == r.model_dump()


def test_every_builtin_template_is_commented() -> None:
    text = builtin_text("demo")
    assert text.count("#") > 20
