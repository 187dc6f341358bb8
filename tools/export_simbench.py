"""Export SimBench's pure low-voltage grids as gzipped pandapower JSON for peergrid.

SimBench (about 770 MB installed) is not a dependency of peergrid: this script is run once by a
developer, in a separate environment with ``pip install simbench``, and its output ships in
``src/peergrid/network/feeders/``. Profiles and results are dropped; only the network is kept.

    python tools/export_simbench.py src/peergrid/network/feeders
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pandapower as pp
import simbench as sb

CODES = {
    "simbench-lv-rural1": "1-LV-rural1--0-sw",
    "simbench-lv-rural2": "1-LV-rural2--0-sw",
    "simbench-lv-rural3": "1-LV-rural3--0-sw",
    "simbench-lv-semiurb4": "1-LV-semiurb4--0-sw",
    "simbench-lv-semiurb5": "1-LV-semiurb5--0-sw",
    "simbench-lv-urban6": "1-LV-urban6--0-sw",
}


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, code in CODES.items():
        net = sb.get_simbench_net(code)
        net.profiles = {}
        net.loadcases = net.loadcases.iloc[0:0] if hasattr(net.loadcases, "iloc") else net.loadcases
        net.name = f"SimBench {code} (simbench {sb.__version__})"
        text = pp.to_json(net)
        (out_dir / f"{name}.json.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
        print(name, len(net.bus), "buses")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
