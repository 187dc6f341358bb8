"""The built-in feeders and the loading of a user's pandapower network.

Built-ins (all offline): SimBench's six pure low-voltage grids, exported once from the
`simbench` package (tools/export_simbench.py) and shipped here as gzipped pandapower JSON
(SimBench data: ODbL 1.0, © University of Kassel, TU Dortmund, RWTH Aachen, Fraunhofer IEE);
pandapower's own CIGRE LV and Kerber network builders. A user's network is a pandapower JSON
file (`pandapower.to_json`), optionally gzipped.
"""

from __future__ import annotations

import functools
import gzip
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from peergrid.errors import InputError
from peergrid.network.feeder import Feeder, feeder_from_pandapower

EXTRA_HINT = "the network layer needs the 'network' extra: pip install 'peergrid[network]'"


@dataclass(frozen=True)
class FeederInfo:
    name: str
    source: str
    description: str


def _pp() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pandapower
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise InputError(EXTRA_HINT) from exc
    return pandapower


def _simbench(name: str) -> Callable[[], Any]:
    def load() -> Any:
        data = resources.files("peergrid.network").joinpath("feeders", f"{name}.json.gz")
        text = gzip.decompress(data.read_bytes()).decode()
        return _from_json_string(text, name)

    return load


def _builder(func: str) -> Callable[[], Any]:
    def load() -> Any:
        _pp()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pandapower.networks as pn

            return getattr(pn, func)()

    return load


_BUILTINS: dict[str, tuple[FeederInfo, Callable[[], Any]]] = {}


def _register(name: str, source: str, description: str, load: Callable[[], Any]) -> None:
    _BUILTINS[name] = (FeederInfo(name, source, description), load)


_SIMBENCH = (
    ("simbench-lv-rural1", "rural LV, 15 buses, 13 loads"),
    ("simbench-lv-rural2", "rural LV, 97 buses, 99 loads"),
    ("simbench-lv-rural3", "rural LV, 129 buses, 118 loads"),
    ("simbench-lv-semiurb4", "semi-urban LV, 44 buses, 41 loads"),
    ("simbench-lv-semiurb5", "semi-urban LV, 111 buses, 104 loads"),
    ("simbench-lv-urban6", "urban LV, 59 buses, 111 loads"),
)
_PANDAPOWER = (
    ("cigre-lv", "create_cigre_network_lv", "CIGRE LV benchmark, 44 buses, R/I/C sub-feeders"),
    (
        "kerber-landnetz-freileitung-1",
        "create_kerber_landnetz_freileitung_1",
        "Kerber rural overhead line, 15 buses, 13 loads",
    ),
    ("kerber-landnetz-kabel-1", "create_kerber_landnetz_kabel_1", "Kerber rural cable, 18 buses"),
    ("kerber-dorfnetz", "create_kerber_dorfnetz", "Kerber village, 116 buses, 57 loads"),
    (
        "kerber-vorstadtnetz-kabel-1",
        "create_kerber_vorstadtnetz_kabel_1",
        "Kerber suburban cable, 294 buses, 146 loads",
    ),
)
for _name, _desc in _SIMBENCH:
    _code = "1-LV-" + _name.removeprefix("simbench-lv-") + "--0-sw"
    _register(_name, f"SimBench {_code}", _desc, _simbench(_name))
for _name, _func, _desc in _PANDAPOWER:
    _register(_name, f"pandapower.networks.{_func}", _desc, _builder(_func))


def builtin_feeders() -> list[FeederInfo]:
    """Every built-in feeder, in catalogue order."""
    return [info for info, _ in _BUILTINS.values()]


def _from_json_string(text: str, source: str) -> Any:
    pp = _pp()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pp.from_json_string(text)
    except Exception as exc:  # pandapower raises many kinds for a broken file
        raise InputError(f"not a pandapower network JSON ({exc})", source=source) from exc


def load_network(feeder: str | None = None, file: Path | None = None) -> tuple[Any, Feeder]:
    """The pandapower network and its `Feeder`, from a built-in name or a user's JSON file."""
    if (feeder is None) == (file is None):
        raise InputError("give exactly one of a built-in feeder name or a network file")
    if file is not None:
        source = str(file)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            reason = f"cannot read the network file ({exc.strerror})"
            raise InputError(reason, source=source) from exc
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            raise InputError("the network file is not UTF-8 JSON", source=source) from exc
        net = _from_json_string(text, source)
        if not hasattr(net, "bus") or len(net.bus) == 0:
            raise InputError("the network has no buses", source=source)
        return net, feeder_from_pandapower(net, file.name, source)
    assert feeder is not None
    if feeder not in _BUILTINS:
        known = ", ".join(_BUILTINS)
        raise InputError(f"unknown feeder '{feeder}' (built-in: {known})")
    return _load_builtin(feeder)


@functools.lru_cache(maxsize=4)
def _load_builtin(name: str) -> tuple[Any, Feeder]:
    """A built-in feeder, parsed once per process (1–2 s each). Callers must not modify the
    returned network: whoever changes it works on a deep copy."""
    _pp()
    net = _BUILTINS[name][1]()
    return net, feeder_from_pandapower(net, name, f"feeder {name}")
