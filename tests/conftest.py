"""Suite-wide test settings.

Hypothesis profiles: `ci` (selected by `HYPOTHESIS_PROFILE=ci`, as `make test` does) is
derandomised, keeps no example database and prints the blob of a failing example, so CI is
deterministic and a failure can be reproduced with `@reproduce_failure`; `dev` (the default)
draws fresh examples on every run.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
