"""The layered graph layout (:mod:`mlms_ir.report.layout`).

``python tests/test_layout.py`` times the layout of a 6,000-node transformer-like graph (printed, not asserted).
"""

from __future__ import annotations

import time
from itertools import pairwise

import numpy as np
import pytest

from mlms_ir.report.layout import Layout, layered_layout

EPS = 1e-6


# ---------------------------------------------------------------------------------------- graph builders


def random_dag(n: int = 300, seed: int = 0) -> tuple[list[tuple[str, float, float]], list[tuple[str, str]]]:
    """A random DAG in topological order with varied box sizes, mostly local edges and a few long ones."""
    rng = np.random.default_rng(seed)
    nodes = [(f"n{i}", float(rng.integers(30, 160)), float(rng.choice([20.0, 28.0, 40.0]))) for i in range(n)]
    edges: list[tuple[str, str]] = []
    for j in range(1, n):
        for _ in range(int(rng.integers(0, 3))):
            i = j - 1 - int(rng.geometric(0.3)) if rng.random() < 0.9 else int(rng.integers(0, j))
            if i >= 0:
                edges.append((f"n{i}", f"n{j}"))
    return nodes, edges


def resnet_like(blocks: int = 8) -> tuple[list[tuple[str, float, float]], list[tuple[str, str]]]:
    """Input, stem, then residual blocks (conv-relu-conv + skip, every other block with a projection conv)."""
    nodes: list[tuple[str, float, float]] = [("input:x", 60.0, 24.0), ("stem", 50.0, 24.0)]
    edges = [("input:x", "stem")]
    prev = "stem"
    for b in range(blocks):
        names = [f"b{b}.conv1", f"b{b}.relu1", f"b{b}.conv2", f"b{b}.add", f"b{b}.relu2"]
        nodes += [(m, 40.0 + 4 * len(m), 24.0) for m in names]
        edges += [(prev, names[0]), (names[0], names[1]), (names[1], names[2]), (names[2], names[3]), (names[3], names[4])]
        if b % 2:
            nodes.append((f"b{b}.proj", 70.0, 24.0))
            edges += [(prev, f"b{b}.proj"), (f"b{b}.proj", names[3])]
        else:
            edges.append((prev, names[3]))
        prev = names[4]
    nodes.append(("output:y", 60.0, 24.0))
    edges.append((prev, "output:y"))
    return nodes, edges


def transformer_like(blocks: int = 48) -> tuple[list[tuple[str, float, float]], list[tuple[str, str]]]:
    """Blocks of 125 nodes resembling a transformer export (LayerNorm decomposed, Q/K/V branches, GELU MLP,
    Constant shape nodes, residual edges spanning ~10-20 layers) and one mask tensor read by every block."""
    nodes: list[tuple[str, float, float]] = []
    edges: list[tuple[str, str]] = []
    count = 0

    def node(op: str, *inputs: str, w: float | None = None) -> str:
        nonlocal count
        nid = f"{op}_{count}"
        count += 1
        nodes.append((nid, w if w is not None else 44.0 + 7.0 * len(op), 24.0))
        edges.extend((i, nid) for i in inputs)
        return nid

    def const() -> str:
        return node("Constant")

    def layer_norm(x: str) -> str:  # 9 nodes + 3 constants
        mean = node("ReduceMean", x)
        d = node("Sub", x, mean)
        var = node("ReduceMean", node("Pow", d, const()))
        return node("Add", node("Mul", node("Div", d, node("Sqrt", node("Add", var, const()))), const()), const())

    def shape_of(x: str) -> str:  # dynamic target shape of a Reshape: 4 nodes + 3 constants
        dim = node("Unsqueeze", node("Gather", node("Shape", x), const()))
        return node("Concat", dim, const(), const())

    def head(x: str) -> str:  # 9 nodes + 5 constants
        return node("Transpose", node("Reshape", node("Add", node("MatMul", x, const()), const()), shape_of(x)))

    x = node("input:input_ids", w=110.0)
    mask = node("Unsqueeze", node("Cast", node("input:attention_mask", w=140.0)))
    x = node("Gather", const(), x)
    while count < blocks * 125:
        start = count
        h = layer_norm(x)
        q, k, v = head(h), head(h), head(h)
        s = node("Softmax", node("Add", node("Div", node("MatMul", q, node("Transpose", k)), const()), mask))
        o = node("Reshape", node("Transpose", node("MatMul", s, v)), shape_of(s))
        x = node("Add", x, node("Add", node("MatMul", o, const()), const()))
        h = layer_norm(x)
        f = node("Add", node("MatMul", h, const()), const())
        g = node("Mul", node("Mul", f, node("Add", node("Erf", node("Div", f, const())), const())), const())
        x = node("Add", x, node("Add", node("MatMul", g, const()), const()))
        while count - start < 125 and count < blocks * 125:  # pad with a chain of Identity nodes
            x = node("Identity", x)
    return nodes, edges


# ---------------------------------------------------------------------------------------- invariant checks


def check_layout(lay: Layout, nodes: list[tuple[str, float, float]], gap: float = 16.0) -> None:
    """Inside the box, no overlap within a layer, every edge from a bottom border to a top border, strictly down."""
    assert set(lay.nodes) == {nid for nid, _, _ in nodes}
    for x, y, w, h in lay.nodes.values():
        assert x - w / 2 >= -EPS and x + w / 2 <= lay.width + EPS
        assert y - h / 2 >= -EPS and y + h / 2 <= lay.height + EPS
    rows: dict[float, list[tuple[float, float]]] = {}
    for x, y, w, _ in lay.nodes.values():
        rows.setdefault(y, []).append((x - w / 2, x + w / 2))
    for boxes in rows.values():
        boxes.sort()
        for (_, right), (left, _) in pairwise(boxes):
            assert left - right >= gap - EPS
    for s, d, pts in lay.edges:
        sx, sy, _, sh = lay.nodes[s]
        dx, dy, _, dh = lay.nodes[d]
        assert pts[0] == pytest.approx((sx, sy + sh / 2))
        assert pts[-1] == pytest.approx((dx, dy - dh / 2))
        assert all(b[1] > a[1] for a, b in pairwise(pts)), (s, d, pts)
        assert all(0 <= px <= lay.width + EPS and 0 <= py <= lay.height + EPS for px, py in pts)


def layer_of(lay: Layout) -> dict[str, int]:
    """Layer index of every node (layers are the distinct y centres)."""
    ys = sorted({y for _, y, _, _ in lay.nodes.values()})
    rank = {y: i for i, y in enumerate(ys)}
    return {k: rank[v[1]] for k, v in lay.nodes.items()}


def crossings(lay: Layout) -> int:
    """Crossings between segments joining adjacent layers (edges left without dummies are not counted)."""
    layers = layer_of(lay)
    segments: dict[int, list[tuple[float, float]]] = {}
    for s, d, pts in lay.edges:
        if layers[d] - layers[s] != len(pts) - 1:
            continue  # a long edge without dummies
        for k, (a, b) in enumerate(pairwise(pts)):
            segments.setdefault(layers[s] + k, []).append((a[0], b[0]))
    count = 0
    for segs in segments.values():
        for i, (a0, a1) in enumerate(segs):
            count += sum(1 for b0, b1 in segs[i + 1:] if (a0 - b0) * (a1 - b1) < -EPS)
    return count


# ---------------------------------------------------------------------------------------- tests


def test_empty() -> None:
    lay = layered_layout([], [])
    assert lay == Layout(0.0, 0.0, {}, [])
    assert layered_layout([], [("a", "b")]).nodes == {}


def test_single_node() -> None:
    lay = layered_layout([("a", 50.0, 20.0)], [])
    assert lay.nodes == {"a": (25.0, 10.0, 50.0, 20.0)}
    assert (lay.width, lay.height) == (50.0, 20.0)


def test_vertical_chain() -> None:
    nodes = [(k, 60.0, 24.0) for k in "abcde"]
    lay = layered_layout(nodes, [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")], rank_gap=36.0)
    xs = {v[0] for v in lay.nodes.values()}
    assert xs == {30.0}
    assert [lay.nodes[k][1] for k in "abcde"] == [12.0, 72.0, 132.0, 192.0, 252.0]
    assert lay.width == 60.0 and lay.height == 5 * 24 + 4 * 36
    for _, _, pts in lay.edges:
        assert len(pts) == 2 and pts[0][0] == pts[1][0] == 30.0
    check_layout(lay, nodes)


def test_layer_height_is_tallest_node() -> None:
    nodes = [("a", 40.0, 20.0), ("b", 40.0, 60.0), ("c", 40.0, 20.0), ("d", 40.0, 20.0)]
    lay = layered_layout(nodes, [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], rank_gap=10.0)
    assert lay.nodes["b"][1] == lay.nodes["c"][1] == 20 + 10 + 30
    assert lay.nodes["d"][1] == 20 + 10 + 60 + 10 + 10
    assert lay.height == 20 + 60 + 20 + 2 * 10
    check_layout(lay, nodes)


def test_diamond_centred() -> None:
    nodes = [(k, 50.0, 24.0) for k in "abcd"]
    lay = layered_layout(nodes, [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    ax, bx, cx, dx = (lay.nodes[k][0] for k in "abcd")
    assert dx == pytest.approx(ax)
    assert (bx + cx) / 2 == pytest.approx(ax)
    assert abs(cx - bx) == pytest.approx(50.0 + 16.0)
    check_layout(lay, nodes)


def test_random_dag_no_overlaps() -> None:
    nodes, edges = random_dag(300, seed=0)
    lay = layered_layout(nodes, edges)
    check_layout(lay, nodes)
    assert len(lay.edges) == len(set(edges))
    layers = layer_of(lay)
    assert all(layers[s] < layers[d] for s, d in edges)


def test_resnet_like_no_overlaps() -> None:
    nodes, edges = resnet_like(8)
    lay = layered_layout(nodes, edges)
    check_layout(lay, nodes)
    # the main path stays on one vertical line when nothing pulls it aside
    assert lay.nodes["b0.conv1"][0] == pytest.approx(lay.nodes["b0.relu1"][0])
    # a skip connection over conv1-relu-conv2 bends around them through its dummies
    skip = next(pts for s, d, pts in lay.edges if (s, d) == ("stem", "b0.add"))
    assert len(skip) == 5


def test_transformer_like_small() -> None:
    nodes, edges = transformer_like(blocks=3)
    lay = layered_layout(nodes, edges)
    check_layout(lay, nodes)
    assert len(lay.edges) == len(edges)


def test_source_placed_above_its_consumer() -> None:
    chain = [f"c{i}" for i in range(10)]
    nodes = [("const", 60.0, 24.0)] + [(k, 60.0, 24.0) for k in chain]
    edges = [(a, b) for a, b in pairwise(chain)] + [("const", "c7")]
    lay = layered_layout(nodes, edges)
    layers = layer_of(lay)
    assert layers["const"] == layers["c7"] - 1 == 6
    pts = next(p for s, d, p in lay.edges if s == "const")
    assert len(pts) == 2
    check_layout(lay, nodes)


def test_source_with_several_consumers_sits_above_the_earliest() -> None:
    chain = [f"c{i}" for i in range(8)]
    nodes = [(k, 60.0, 24.0) for k in chain] + [("input:mask", 60.0, 24.0)]
    edges = [(a, b) for a, b in pairwise(chain)] + [("input:mask", "c3"), ("input:mask", "c6")]
    layers = layer_of(layered_layout(nodes, edges))
    assert layers["input:mask"] == 2


def test_leaf_source_beside_its_consumer_without_pulling_it() -> None:
    chain = [f"c{i}" for i in range(10)]
    nodes = [("const", 60.0, 24.0)] + [(k, 60.0, 24.0) for k in chain]
    edges = [(a, b) for a, b in pairwise(chain)] + [("const", "c7")]
    lay = layered_layout(nodes, edges)
    assert len({lay.nodes[k][0] for k in chain}) == 1  # the chain stays straight
    assert abs(lay.nodes["const"][0] - lay.nodes["c6"][0]) == pytest.approx(60.0 + 16.0)


def test_resnet_like_no_crossings() -> None:
    nodes, edges = resnet_like(8)
    lay = layered_layout(nodes, edges)
    assert crossings(lay) == 0
    assert lay.nodes["input:x"][0] == lay.nodes["stem"][0]


def test_sweeps_reduce_crossings() -> None:
    nodes, edges = transformer_like(blocks=3)
    assert crossings(layered_layout(nodes, edges, sweeps=4)) < crossings(layered_layout(nodes, edges, sweeps=0))
    nodes = [(k, 40.0, 20.0) for k in ("a", "b", "y", "x")]
    lay = layered_layout(nodes, [("a", "x"), ("b", "y")])  # listed crossed: a sweep uncrosses them
    assert crossings(lay) == 0


def test_dummies_route_long_edges() -> None:
    chain = [f"c{i}" for i in range(6)]
    nodes = [(k, 60.0, 24.0) for k in chain]
    edges = [(a, b) for a, b in pairwise(chain)] + [("c0", "c5")]
    lay = layered_layout(nodes, edges)
    pts = next(p for s, d, p in lay.edges if (s, d) == ("c0", "c5"))
    assert len(pts) == 6  # four crossed layers
    # the long edge goes around the chain, not through its boxes
    for (px, py) in pts[1:-1]:
        for k in chain[1:5]:
            x, y, w, _ = lay.nodes[k]
            if y == py:
                assert abs(px - x) >= w / 2
    check_layout(lay, nodes)


def test_dummy_cap_honoured() -> None:
    nodes, edges = random_dag(200, seed=3)
    for cap in (0, 5, 50):
        lay = layered_layout(nodes, edges, max_dummies=cap)
        check_layout(lay, nodes)
        assert sum(len(p) - 2 for _, _, p in lay.edges) <= cap
        if cap == 0:
            assert all(len(p) == 2 for _, _, p in lay.edges)
    free = layered_layout(nodes, edges, max_dummies=10**9)
    assert sum(len(p) - 2 for _, _, p in free.edges) > 50


def test_dummy_cap_prefers_short_spans() -> None:
    chain = [f"c{i}" for i in range(8)]
    nodes = [(k, 60.0, 24.0) for k in chain]
    edges = [(a, b) for a, b in pairwise(chain)] + [("c0", "c7"), ("c1", "c3")]
    lay = layered_layout(nodes, edges, max_dummies=3)
    npts = {(s, d): len(p) for s, d, p in lay.edges}
    assert npts[("c1", "c3")] == 3 and npts[("c0", "c7")] == 2


def test_default_cap_is_four_per_node() -> None:
    chain = [f"c{i}" for i in range(20)]
    nodes = [(k, 60.0, 24.0) for k in chain] + [("src", 40.0, 24.0)]
    edges = [(a, b) for a, b in pairwise(chain)] + [("c0", "src")] + [("src", c) for c in chain[2:]]
    lay = layered_layout(nodes, edges)
    assert sum(len(p) - 2 for _, _, p in lay.edges) <= 4 * len(nodes)
    check_layout(lay, nodes)


def test_bad_edges_ignored() -> None:
    nodes = [(k, 40.0, 20.0) for k in "abcd"]
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "c"), ("a", "b"), ("x", "a"), ("b", "zz"), ("c", "d"), ("d", "b")]
    lay = layered_layout(nodes, edges)
    assert [(s, d) for s, d, _ in lay.edges] == [("a", "b"), ("b", "c"), ("c", "d")]
    assert [layer_of(lay)[k] for k in "abcd"] == [0, 1, 2, 3]
    check_layout(lay, nodes)


def test_backward_edge_without_cycle_kept() -> None:
    nodes = [(k, 40.0, 20.0) for k in "abc"]
    lay = layered_layout(nodes, [("c", "a"), ("a", "b")])  # input order not topological, but acyclic
    assert [(s, d) for s, d, _ in lay.edges] == [("c", "a"), ("a", "b")]
    assert [layer_of(lay)[k] for k in "cab"] == [0, 1, 2]
    check_layout(lay, nodes)


def test_duplicate_node_ids_keep_first() -> None:
    lay = layered_layout([("a", 40.0, 20.0), ("b", 40.0, 20.0), ("a", 99.0, 99.0)], [("a", "b")])
    assert lay.nodes["a"][2:] == (40.0, 20.0)
    assert len(lay.nodes) == 2


def test_isolated_nodes_and_components() -> None:
    nodes = [(k, 30.0 + 5 * i, 20.0) for i, k in enumerate("abcdefg")]
    lay = layered_layout(nodes, [("a", "b"), ("c", "d"), ("d", "e")])
    check_layout(lay, nodes)
    assert layer_of(lay)["f"] == 0


def test_zero_sizes_and_gaps() -> None:
    nodes = [(k, 0.0, 0.0) for k in "abc"]
    lay = layered_layout(nodes, [("a", "b"), ("a", "c")], node_gap=0.0, rank_gap=5.0)
    check_layout(lay, nodes, gap=0.0)
    assert lay.width == 0.0 and lay.height == 5.0


def test_deterministic() -> None:
    nodes, edges = random_dag(300, seed=7)
    a = layered_layout(nodes, edges)
    b = layered_layout(list(nodes), list(edges))
    assert a == b


# ---------------------------------------------------------------------------------------- timing (not a test)


def main() -> None:
    """Time the layout of a 6,000-node transformer-like graph."""
    nodes, edges = transformer_like(48)
    layered_layout(nodes[:500], edges)  # warm-up
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        lay = layered_layout(nodes, edges)
        best = min(best, time.perf_counter() - t0)
    dummies = sum(len(p) - 2 for _, _, p in lay.edges)
    print(f"{len(nodes)} nodes, {len(edges)} edges, {len(layer_of(lay))} placed, {dummies} dummies, "
          f"{len({y for _, y, _, _ in lay.nodes.values()})} layers, {lay.width:.0f} x {lay.height:.0f}: best of 3 {best:.3f} s")


if __name__ == "__main__":
    main()
