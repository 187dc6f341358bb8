"""A home's smart meter: import and export registers and the readings it reports.

A register counts energy since the meter was installed [kWh]; it never decreases. Each slot the
home's metered net energy (export positive, `engine.lifecycle.deliver`) adds its import part to
the import register and its export part to the export register. The server reads a slot's net
energy as Δexport − Δimport between the readings at its two boundaries (`POST /v1/readings`,
docs/live.md "Meter data").

A new meter does not read zero: `initial_registers_kwh` draws a plausible reading of a meter a
few years old, from a stream of the scenario's seed and the home's name (reproducible, and
different for two homes with the same profile).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from peergrid.rng import child_rng

FloatArray = NDArray[np.float64]

#: The range of a seeded import register [kWh].
IMPORT_START_KWH = (2_000.0, 9_000.0)
#: The range of a seeded export register of a home with PV [kWh] (0 without).
EXPORT_START_KWH = (300.0, 4_000.0)


def initial_registers_kwh(
    seed: int, names: Sequence[str], pv_kwp: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Seeded import and export registers of each home's meter, (P,) each [kWh], to the Wh
    (module docstring); a home without PV has exported nothing."""
    imp = np.empty(len(names))
    exp = np.empty(len(names))
    for i, name in enumerate(names):
        rng = child_rng(seed, f"meter-register/{name}")
        imp[i] = rng.uniform(*IMPORT_START_KWH)
        exp[i] = rng.uniform(*EXPORT_START_KWH) if pv_kwp[i] > 0.0 else 0.0
    return np.round(imp, 3), np.round(exp, 3)


def advance_registers(
    import_kwh: FloatArray, export_kwh: FloatArray, net_kwh: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The registers after a slot whose metered net energy (export positive) was `net_kwh`,
    (P,) each [kWh]."""
    return import_kwh + np.maximum(-net_kwh, 0.0), export_kwh + np.maximum(net_kwh, 0.0)


def reading_body(at: dt.datetime, import_kwh: float, export_kwh: float) -> dict[str, Any]:
    """The JSON body of `POST /v1/readings` for one reading at the slot boundary `at` (UTC)."""
    return {
        "readings": [
            {
                "timestamp": at.astimezone(dt.UTC).isoformat(),
                "import_register": float(import_kwh),
                "export_register": float(export_kwh),
                "unit": "kWh",
            }
        ]
    }
