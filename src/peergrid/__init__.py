"""peergrid: peer-to-peer energy sharing in connected communities.

The Python API mirrors the CLI::

    import peergrid
    scenario = peergrid.load_scenario("demo")          # a built-in name or a TOML file
    result = peergrid.simulate(scenario, market="sdr")  # P2P run and no-P2P baseline
    result.summary, result.participants, result.timeseries
    peergrid.write_run(result, "out/demo")              # the run directory
    peergrid.write_comparison(peergrid.compare(scenario, ["sdr", "uniform"]), "out/cmp")
    peergrid.clear(book_dataframe, mechanism="mcafee").to_dict()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peergrid.engine.compare import Comparison, compare
    from peergrid.engine.result import SimulationResult
    from peergrid.engine.simulate import simulate
    from peergrid.markets.api import ClearReport, clear
    from peergrid.rundir import write_comparison, write_run
    from peergrid.scenario.load import load_scenario
    from peergrid.scenario.schema import Scenario

__version__ = "0.1.0"

# The API is imported when first used, so that `import peergrid.server` or a command that
# needs none of it does not pay for pvlib, pandas and the engine (≈ 1.5 s).
_WHERE = {
    "Comparison": "peergrid.engine.compare",
    "compare": "peergrid.engine.compare",
    "SimulationResult": "peergrid.engine.result",
    "simulate": "peergrid.engine.simulate",
    "ClearReport": "peergrid.markets.api",
    "clear": "peergrid.markets.api",
    "write_comparison": "peergrid.rundir",
    "write_run": "peergrid.rundir",
    "load_scenario": "peergrid.scenario.load",
    "Scenario": "peergrid.scenario.schema",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'peergrid' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


__all__ = [
    "ClearReport",
    "Comparison",
    "Scenario",
    "SimulationResult",
    "__version__",
    "clear",
    "compare",
    "load_scenario",
    "simulate",
    "write_comparison",
    "write_run",
]
