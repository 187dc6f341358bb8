"""Reading scenarios from a TOML file or a built-in name; errors name the field and the reason."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from peergrid.errors import InputError
from peergrid.scenario.schema import SCHEMA_VERSION, Scenario

_BUILTIN_PACKAGE = "peergrid.scenario.builtin"
_TYPE_TAGS = {"float", "int", "str", "bool", "dict", "list", "tuple", "none"}


def builtin_names() -> list[str]:
    """Names of the scenarios shipped inside the package."""
    folder = resources.files(_BUILTIN_PACKAGE)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def builtin_text(name: str) -> str:
    """The commented TOML template of a built-in scenario."""
    if name not in builtin_names():
        raise InputError(
            f"unknown built-in scenario {name!r}; built-in scenarios: {', '.join(builtin_names())}"
        )
    return (resources.files(_BUILTIN_PACKAGE) / f"{name}.toml").read_text(encoding="utf-8")


def builtin_descriptions() -> dict[str, str]:
    """Built-in scenario name → its one-line description."""
    out = {}
    for name in builtin_names():
        raw = tomllib.loads(builtin_text(name))
        out[name] = str(raw.get("description", ""))
    return out


_NAMED = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: ")


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        if item in _TYPE_TAGS or "[" in item or item.startswith("function-"):
            continue  # pydantic's union/type tags are not part of the user's field path
        parts.append(f".{item}" if parts else item)
    return "".join(parts) or "(top level)"


def _reason(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx", {}) or {}
    got = err.get("input")
    shown = repr(got) if isinstance(got, str) else got
    ops = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if kind in ops:
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {ops[kind]} {bound} (got {shown})"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; see `peergrid scenario show demo`)"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {shown})"
    if kind == "value_error":
        msg = str(err["msg"])
        return msg.removeprefix("Value error, ")
    if kind in {"float_parsing", "int_parsing", "float_type", "int_type", "int_from_float"}:
        return f"must be a {'whole ' if kind.startswith('int') else ''}number (got {shown})"
    if kind == "string_pattern_mismatch":
        return (
            "must start with a letter or digit and use only letters, digits, '_', '.', '-' "
            f"(got {shown})"
        )
    return f"{err['msg']} (got {shown})"


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per distinct field: `source: path.to.field: reason`."""
    lines: list[str] = []
    seen: set[str] = set()
    for err in exc.errors():
        path = _loc_to_path(tuple(err["loc"]))
        if path in seen:
            continue
        seen.add(path)
        reason = _reason(err)
        if path == "(top level)" and _NAMED.match(reason):
            lines.append(f"{source}: {reason}")  # a whole-scenario check names its field
        else:
            lines.append(f"{source}: {path}: {reason}")
    return "\n".join(lines)


def parse_scenario(raw: dict[str, Any], source: str) -> Scenario:
    """Validate a parsed TOML document. `source` names the file in error messages."""
    version = raw.get("schema_version")
    if version is None:
        raise InputError(
            f"schema_version: required field is missing (this peergrid reads "
            f"version {SCHEMA_VERSION})",
            source=source,
        )
    if version != SCHEMA_VERSION:
        raise InputError(
            f"schema_version: this peergrid reads version {SCHEMA_VERSION} (got {version!r})",
            source=source,
        )
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, source)) from None


def load_scenario(path_or_name: str | Path) -> Scenario:
    """Load a scenario file, or a built-in scenario by name.

    A file's relative data paths are read from the file's folder (`Scenario.base_dir`).
    """
    candidate = Path(path_or_name)
    is_file = candidate.suffix == ".toml" or candidate.exists()
    if not is_file:
        text = builtin_text(str(path_or_name))
        return parse_scenario(tomllib.loads(text), f"{path_or_name} (built-in)")
    source = candidate.name
    try:
        text = candidate.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", source=str(candidate)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", source=str(candidate)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", source=source) from None
    return parse_scenario(raw, source).with_base_dir(candidate.resolve().parent)
