"""Network charges on P2P trades: pair volumes from clearings, electrical distance, zones, fees
and who pays them (hand-worked cases, a built-in feeder against pandapower's own line data, and
property tests)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydantic import ValidationError

from peergrid.errors import InputError
from peergrid.markets.base import ClearingResult, MarketContext, OrderBook, Side
from peergrid.markets.registry import get_mechanism
from peergrid.markets.uniform import clear_uniform
from peergrid.network.charges import (
    NetworkTariff,
    electrical_distance,
    feeder_zones,
    network_charges,
    pair_fees_per_kwh,
    pair_volumes_kwh,
)
from peergrid.network.feeder import Feeder
from peergrid.network.feeders import load_network

CTX = MarketContext(retail_price=0.30, feed_in_price=0.05)
#: Ohm per pu on 1 MVA at 0.4 kV.
Z_BASE_LV_OHM = 0.16


def tree_feeder(
    parent: list[int],
    r_pu: list[float],
    x_pu: list[float] | None = None,
    vn_kv: list[float] | None = None,
    kind: list[str] | None = None,
) -> Feeder:
    """A radial feeder by hand: bus 0 is the slack, branch k−1 joins parent[k−1] → bus k
    (parents precede their children); 0.4 kV lines unless told."""
    n = len(parent) + 1
    frm = np.asarray(parent, dtype=np.int64)
    to = np.arange(1, n, dtype=np.int64)
    path = np.zeros((n - 1, n), dtype=bool)
    for b in range(n - 1):
        path[:, b + 1] = path[:, parent[b]]
        path[b, b + 1] = True
    vn = np.full(n, 0.4) if vn_kv is None else np.asarray(vn_kv, dtype=np.float64)
    return Feeder(
        name="hand",
        bus_ids=np.arange(n, dtype=np.int64),
        bus_names=np.asarray([f"bus {i}" for i in range(n)], dtype=np.str_),
        vn_kv=vn,
        slack=0,
        v_slack_pu=1.0,
        v0_pu=np.ones(n),
        branch_kind=np.asarray(kind or ["line"] * (n - 1), dtype=np.str_),
        branch_ids=np.arange(n - 1, dtype=np.int64),
        branch_from=frm,
        branch_to=to,
        r_pu=np.asarray(r_pu, dtype=np.float64),
        x_pu=np.zeros(n - 1) if x_pu is None else np.asarray(x_pu, dtype=np.float64),
        rating_kva=np.full(n - 1, 100.0),
        path=path,
        conn_bus=np.arange(1, n, dtype=np.int64),
        conn_type=np.asarray(["household"] * (n - 1), dtype=np.str_),
        conn_name=np.asarray([f"load {i}" for i in range(n - 1)], dtype=np.str_),
    )


def substation() -> Feeder:
    """MV slack 0 —trafo→ LV busbar 1; cable A: 1 → 2 → 3; cable B: 1 → 4."""
    return tree_feeder(
        parent=[0, 1, 2, 1],
        r_pu=[0.01, 0.3, 0.4, 0.6],
        x_pu=[0.04, 0.4, 0.3, 0.8],
        vn_kv=[20.0, 0.4, 0.4, 0.4, 0.4],
        kind=["trafo", "line", "line", "line"],
    )


def book_of(orders: list[tuple[int, Side, float, float]]) -> OrderBook:
    """Orders (participant, side, kWh, price)."""
    return OrderBook(
        id=np.arange(len(orders), dtype=np.int64),
        participant=np.array([o[0] for o in orders], np.int64),
        side=np.array([o[1] for o in orders], np.int8),
        quantity_kwh=np.array([o[2] for o in orders], dtype=np.float64),
        price=np.array([o[3] for o in orders], dtype=np.float64),
    )


# --- pair volumes -------------------------------------------------------------------------------


def test_pair_volumes_from_bilateral_trades() -> None:
    # Participant 3 sells 2 kWh at 0.10 and participant 1 at 0.12; buyers 0 (1.5) and 2 (2).
    book = book_of(
        [
            (0, Side.BUY, 1.5, 0.25),
            (3, Side.SELL, 2.0, 0.10),
            (2, Side.BUY, 2.0, 0.20),
            (1, Side.SELL, 2.0, 0.12),
        ]
    )
    result = clear_uniform(book)
    assert result.trade_kwh.size > 0 and not result.pool
    q = pair_volumes_kwh(book, result, 5)
    expected = np.zeros((5, 5))
    np.add.at(
        expected,
        (book.participant[result.trade_sell], book.participant[result.trade_buy]),
        result.trade_kwh,
    )
    np.testing.assert_array_equal(q, expected)
    sold = np.bincount(book.participant, np.where(book.is_sell, result.filled_kwh, 0.0), 5)
    bought = np.bincount(book.participant, np.where(book.is_buy, result.filled_kwh, 0.0), 5)
    np.testing.assert_allclose(q.sum(axis=1), sold, atol=1e-12)
    np.testing.assert_allclose(q.sum(axis=0), bought, atol=1e-12)
    # Merit order: the cheapest seller (3) serves the highest bid (0) first.
    assert q[3, 0] == pytest.approx(1.5)
    assert q[:, 4].sum() == 0.0 and q[4].sum() == 0.0


def test_pair_volumes_of_a_pool_are_pro_rata() -> None:
    # SDR pool: sellers 0 (2 kWh) and 1 (1 kWh) sell everything; buyers 2 (1.5) and 3 (3.0)
    # get 3/4.5 of their demand: 1 and 2 kWh.
    book = book_of(
        [
            (0, Side.SELL, 2.0, 0.0),
            (1, Side.SELL, 1.0, 0.0),
            (2, Side.BUY, 1.5, 0.0),
            (3, Side.BUY, 3.0, 0.0),
        ]
    )
    result = get_mechanism("sdr").clear(book, CTX)
    assert result.pool
    q = pair_volumes_kwh(book, result, 4)
    expected = np.zeros((4, 4))
    expected[0, 2:] = [2.0 / 3.0, 4.0 / 3.0]
    expected[1, 2:] = [1.0 / 3.0, 2.0 / 3.0]
    np.testing.assert_allclose(q, expected, atol=1e-12)


def test_pair_volumes_of_nothing_and_bad_index() -> None:
    book = book_of([(0, Side.SELL, 2.0, 0.2), (1, Side.BUY, 1.0, 0.1)])
    assert not pair_volumes_kwh(book, ClearingResult.nothing(2), 2).any()
    with pytest.raises(InputError, match="participant index 1"):
        pair_volumes_kwh(book, ClearingResult.nothing(2), 1)


# --- electrical distance ------------------------------------------------------------------------


def test_distance_hand_worked() -> None:
    f = substation()
    # participants: 0, 1 on bus 3; 2 on bus 2; 3 on bus 4; 4 on the busbar 1
    d = electrical_distance(f, np.array([3, 3, 2, 4, 1]))
    z = np.hypot(f.r_pu, f.x_pu) * Z_BASE_LV_OHM  # trafo, 1→2, 2→3, 1→4 [Ω]
    assert z[1] == pytest.approx(0.08)  # |0.3 + 0.4j| pu · 0.16 Ω
    assert d[0, 1] == 0.0
    assert d[0, 2] == pytest.approx(z[2])
    assert d[0, 3] == pytest.approx(z[1] + z[2] + z[3])
    assert d[2, 4] == pytest.approx(z[1])
    assert d[3, 4] == pytest.approx(z[3])
    np.testing.assert_array_equal(d, d.T)
    # The transformer is on every LV path to the slack and never between two LV buses.
    assert d[0, 3] < z[0] + z[1] + z[2] + z[3]


def test_distance_on_a_builtin_feeder_matches_the_line_data() -> None:
    net, f = load_network("simbench-lv-rural3")
    d = electrical_distance(f, f.conn_bus)
    assert np.all(np.diag(d) == 0.0)
    np.testing.assert_array_equal(d, d.T)
    # triangle inequality over every triple: d[i, j] <= d[i, k] + d[k, j]
    assert np.all(d[:, None, :] <= d[:, :, None] + d[None, :, :] + 1e-12)
    assert d.max() > 0.1  # ends of different cables are a tenth of an ohm or more apart
    # Two buses joined by one line: |r + jx| · length from pandapower's table [Ω].
    lines = np.flatnonzero(f.branch_kind == "line")
    for b in lines[:5].tolist():
        row = net.line.loc[f.branch_ids[b]]
        ohm = np.hypot(row.r_ohm_per_km, row.x_ohm_per_km) * row.length_km / row.parallel
        pair = electrical_distance(f, np.array([f.branch_from[b], f.branch_to[b]]))
        assert pair[0, 1] == pytest.approx(ohm, rel=1e-9)


@st.composite
def random_trees(draw: st.DrawFn) -> tuple[Feeder, np.ndarray]:
    n = draw(st.integers(2, 12))
    parent = [draw(st.integers(0, k)) for k in range(n - 1)]
    r = draw(hnp.arrays(np.float64, n - 1, elements=st.floats(0.0, 1.0)))
    x = draw(hnp.arrays(np.float64, n - 1, elements=st.floats(0.0, 1.0)))
    bus_of = draw(hnp.arrays(np.int64, st.integers(1, 8), elements=st.integers(0, n - 1)))
    return tree_feeder(parent, r.tolist(), x.tolist()), bus_of


@settings(max_examples=60, deadline=None)
@given(random_trees())
def test_distance_is_a_metric_on_random_trees(tree: tuple[Feeder, np.ndarray]) -> None:
    f, bus_of = tree
    d = electrical_distance(f, bus_of)
    z = np.hypot(f.r_pu, f.x_pu) * Z_BASE_LV_OHM
    for i, j in itertools.product(range(bus_of.size), repeat=2):
        # brute force: the branches on exactly one of the two paths
        one = f.path[:, bus_of[i]] ^ f.path[:, bus_of[j]]
        assert d[i, j] == pytest.approx(z[one].sum(), abs=1e-12)
        for k in range(bus_of.size):
            assert d[i, j] <= d[i, k] + d[k, j] + 1e-12
    assert np.all(d[bus_of[:, None] == bus_of[None, :]] == 0.0)
    np.testing.assert_array_equal(d, d.T)


# --- zones --------------------------------------------------------------------------------------


def test_zones_hand_worked() -> None:
    zones = feeder_zones(substation(), np.array([2, 3, 4, 1, 0, 3]))
    # cable A (branch 1) is zone 0, cable B (branch 3) zone 1, the busbar 2, the MV side 3
    np.testing.assert_array_equal(zones, [0, 0, 1, 2, 3, 0])
    user = feeder_zones(substation(), np.array([2, 4]), zone_of_bus=np.array([9, 9, 7, 7, 5]))
    np.testing.assert_array_equal(user, [7, 5])
    with pytest.raises(InputError):
        feeder_zones(substation(), np.array([2]), zone_of_bus=np.array([1, 2]))


def test_zones_are_the_cables_of_the_busbar() -> None:
    _, f = load_network("simbench-lv-rural3")
    trafo = int(np.flatnonzero(f.branch_kind == "trafo")[0])
    busbar = int(f.branch_to[trafo])
    cables = np.flatnonzero(f.branch_from == busbar)
    zones = feeder_zones(f, f.conn_bus)
    assert np.unique(zones).size == cables.size == 9
    for c, label in zip(cables.tolist(), range(cables.size), strict=True):
        below = f.path[c, f.conn_bus]
        assert np.all(zones[below] == label)


def test_zones_of_a_multi_substation_feeder() -> None:
    _, f = load_network("cigre-lv")
    zones = feeder_zones(f, f.conn_bus)
    names = f.bus_names[f.conn_bus]
    # residential, industrial and commercial subnetworks hang off different transformers
    by_net = {net: set(zones[np.char.startswith(names, f"Bus {net}")].tolist()) for net in "RIC"}
    assert all(by_net.values())
    assert not (by_net["R"] & by_net["I"]) and not (by_net["R"] & by_net["C"])
    assert not (by_net["I"] & by_net["C"])


# --- tariffs and charges ------------------------------------------------------------------------


def test_tariff_validation() -> None:
    assert NetworkTariff().kind == "none" and NetworkTariff().payer == "split"
    with pytest.raises(ValidationError):
        NetworkTariff(kind="uniform", fee_per_kwh=-0.01)
    with pytest.raises(ValidationError):
        NetworkTariff.model_validate({"kind": "flat"})
    with pytest.raises(ValidationError):
        NetworkTariff.model_validate({"kind": "uniform", "fee": 0.01})


def test_pair_fees_of_each_kind() -> None:
    d = np.array([[0.0, 0.2, 0.5], [0.2, 0.0, 0.3], [0.5, 0.3, 0.0]])
    zones = np.array([0, 0, 1])
    none = pair_fees_per_kwh(NetworkTariff(), n_participants=3)
    assert none.shape == (3, 3) and not none.any()
    uniform = pair_fees_per_kwh(NetworkTariff(kind="uniform", fee_per_kwh=0.02), d, zones)
    np.testing.assert_array_equal(uniform, 0.02 * (1.0 - np.eye(3)))
    distance = pair_fees_per_kwh(
        NetworkTariff(kind="distance", fee_per_kwh=0.001, fee_per_kwh_per_ohm=0.1), d
    )
    np.testing.assert_allclose(distance, (0.001 + 0.1 * d) * (1.0 - np.eye(3)))
    zonal = pair_fees_per_kwh(
        NetworkTariff(kind="zonal", fee_per_kwh=0.03, intra_zone_fee_per_kwh=0.005),
        zones=zones,
    )
    np.testing.assert_array_equal(
        zonal, [[0.0, 0.005, 0.03], [0.005, 0.0, 0.03], [0.03, 0.03, 0.0]]
    )
    with pytest.raises(InputError, match="distance"):
        pair_fees_per_kwh(NetworkTariff(kind="distance"), zones=zones)
    with pytest.raises(InputError, match="zones"):
        pair_fees_per_kwh(NetworkTariff(kind="zonal"), d)
    with pytest.raises(InputError, match="participant count"):
        pair_fees_per_kwh(NetworkTariff(kind="uniform"))
    with pytest.raises(InputError, match="participant count"):
        pair_fees_per_kwh(NetworkTariff(kind="uniform"), d, np.array([0, 1]))


def test_network_charges_hand_worked() -> None:
    # 0 sells 2 kWh to 1 (fee 0.02) and 1 kWh to 2 (fee 0.05); 2 sells 4 kWh to 1 (fee 0.01).
    q = np.array([[0.0, 2.0, 1.0], [0.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    fee = np.array([[0.0, 0.02, 0.05], [0.02, 0.0, 0.03], [0.05, 0.01, 0.0]])
    # pair charges: (0→1) 0.04, (0→2) 0.05, (2→1) 0.04; revenue 0.13
    seller, revenue = network_charges(q, fee, "seller")
    np.testing.assert_allclose(seller, [0.09, 0.0, 0.04])
    assert revenue == pytest.approx(0.13)
    buyer, _ = network_charges(q, fee, "buyer")
    np.testing.assert_allclose(buyer, [0.0, 0.08, 0.05])
    split, revenue = network_charges(q, fee)
    np.testing.assert_allclose(split, [0.045, 0.04, 0.045])
    assert revenue == pytest.approx(0.13)
    with pytest.raises(InputError):
        network_charges(q, fee[:2, :2])


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float64, (n, n), elements=st.floats(0.0, 50.0)),
            hnp.arrays(np.float64, (n, n), elements=st.floats(0.0, 0.2)),
        )
    ),
    st.sampled_from(["buyer", "seller", "split"]),
)
def test_charges_balance_the_operator_revenue(
    arrays: tuple[np.ndarray, np.ndarray], payer: str
) -> None:
    q, fee = arrays
    charges, revenue = network_charges(q, fee, payer)  # type: ignore[arg-type]
    assert np.all(charges >= 0.0)
    assert charges.sum() == revenue  # exactly: the revenue is the sum of the charges
    assert revenue == pytest.approx(float((fee * q).sum()), rel=1e-12, abs=1e-12)
    if payer == "split":
        by_seller, _ = network_charges(q, fee, "seller")
        by_buyer, _ = network_charges(q, fee, "buyer")
        np.testing.assert_allclose(charges, 0.5 * (by_seller + by_buyer), rtol=1e-14)


def test_charges_are_linear_over_slots() -> None:
    rng = np.random.default_rng(3)
    q = rng.uniform(0.0, 2.0, (24, 6, 6))
    fee = rng.uniform(0.0, 0.05, (6, 6))
    per_slot = sum(network_charges(q_t, fee)[0] for q_t in q)
    total, _ = network_charges(q.sum(axis=0), fee)
    np.testing.assert_allclose(per_slot, total, rtol=1e-12)
