"""The run-directory writer: a face of the engine that writes what a run and a comparison
computed, atomically. `write_run(result, dir)`, `write_comparison(comparison, dir)`."""

from peergrid.rundir.comparison import write_comparison
from peergrid.rundir.run import write_run

__all__ = ["write_comparison", "write_run"]
