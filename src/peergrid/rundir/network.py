"""network.parquet and network.json of a run on a feeder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from peergrid.engine.network import NetworkSetup
from peergrid.network.powerflow import FlowResult
from peergrid.timegrid import epoch_ns

#: Slots per row group of network.parquet: bounds the memory of writing a year.
TABLE_CHUNK_SLOTS = 4096


def _dictionary(codes: NDArray[np.int32], values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(values))


def network_tables(
    setup: NetworkSetup, flows: dict[str, FlowResult], times: Any
) -> Iterator[pa.Table]:
    """network.parquet in long form, in chunks: one row per (case, slot, element).

    Buses (LV) carry `v_pu`, branches (lines, transformers) carry `loading_pct` and
    `p_from_kw`; the other columns are null. `case` is "p2p" or "baseline". Values are
    float32 (1e-7 relative; the summary is computed in float64)."""
    f = setup.feeder
    lv = f.lv_buses
    br = f.monitored_branches
    labels = [f"bus {int(b)}" for b in f.bus_ids[lv]] + [f.branch_labels[b] for b in br]
    kinds = ["bus", "line", "trafo", "switch"]
    kind_of = np.asarray(
        [0] * lv.size + [kinds.index(str(k)) for k in f.branch_kind[br]], dtype=np.int32
    )
    n_el = len(labels)
    t_ns = epoch_ns(pd.DatetimeIndex(times))
    cases = list(flows)
    nb = lv.size
    for c, case in enumerate(cases):
        flow = flows[case]
        for t0 in range(0, t_ns.size, TABLE_CHUNK_SLOTS):
            t1 = min(t_ns.size, t0 + TABLE_CHUNK_SLOTS)
            n_t = t1 - t0
            v = np.full((n_t, n_el), np.nan, dtype=np.float32)
            ld = np.full((n_t, n_el), np.nan, dtype=np.float32)
            pf = np.full((n_t, n_el), np.nan, dtype=np.float32)
            v[:, :nb] = flow.v_pu[t0:t1, lv]
            ld[:, nb:] = flow.loading_pct[t0:t1, br]
            pf[:, nb:] = flow.p_from_kw[t0:t1, br]
            yield pa.table(
                {
                    "case": _dictionary(np.full(n_t * n_el, c, dtype=np.int32), cases),
                    "time": pa.array(np.repeat(t_ns[t0:t1], n_el), pa.timestamp("ns", tz="UTC")),
                    "kind": _dictionary(np.tile(kind_of, n_t), kinds),
                    "element": _dictionary(np.tile(np.arange(n_el, dtype=np.int32), n_t), labels),
                    "v_pu": pa.array(v.ravel(), from_pandas=True),
                    "loading_pct": pa.array(ld.ravel(), from_pandas=True),
                    "p_from_kw": pa.array(pf.ravel(), from_pandas=True),
                }
            )


def write_network_parquet(
    path: Path, setup: NetworkSetup, flows: dict[str, FlowResult], times: Any
) -> None:
    """Write network.parquet chunk by chunk (zstd)."""
    import pyarrow.parquet as pq

    writer: Any = None
    try:
        for table in network_tables(setup, flows, times):
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def network_json(setup: NetworkSetup, names: list[str]) -> str:
    """The pandapower network actually used, as pandapower JSON: the source network's loads and
    static generators are replaced by one load per participant (named after it, at its bus,
    zero power), so `pandapower.from_json` gives the network with the participant → bus
    mapping in `net.load[["name", "bus"]]`."""
    import copy
    import warnings

    import pandapower as pp

    net = copy.deepcopy(setup.net)
    net.load.drop(net.load.index, inplace=True)
    for table in ("sgen", "storage"):
        if table in net and len(net[table]):
            net[table].drop(net[table].index, inplace=True)
    for name, bus in zip(names, setup.bus_of.tolist(), strict=True):
        pp.create_load(net, bus=int(setup.feeder.bus_ids[bus]), p_mw=0.0, name=name)
    for key in list(net.keys()):
        if key.startswith("res_") and hasattr(net[key], "drop"):
            net[key] = net[key].iloc[0:0]
    net["peergrid"] = pd.DataFrame(
        {
            "participant": names,
            "bus": setup.feeder.bus_ids[setup.bus_of],
            "v_min_pu": setup.spec.v_min_pu,
            "v_max_pu": setup.spec.v_max_pu,
            "max_loading_pct": setup.spec.max_loading_pct,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(pp.to_json(net))
