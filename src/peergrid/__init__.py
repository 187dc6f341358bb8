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

from peergrid.engine.compare import Comparison, compare
from peergrid.engine.result import SimulationResult
from peergrid.engine.simulate import simulate
from peergrid.markets.api import ClearReport, clear
from peergrid.rundir import write_comparison, write_run
from peergrid.scenario.load import load_scenario
from peergrid.scenario.schema import Scenario

__version__ = "0.1.0"

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
