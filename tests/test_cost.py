"""Trip-count-correct cost (profiler/measurement/cost.py) on real compiled programs, tiny sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from profiler.measurement.cost import loop_corrected
from profiler.measurement.measure import measure
from profiler.models.program import Program
from profiler.spec import Point
from profiler.storage.record import make_row
from profiler.workloads import build
from tests.conftest import TINY_FORWARD as TINY

M, K, N = 8, 16, 16
X = jax.ShapeDtypeStruct((M, K), jnp.float32)
W = jax.ShapeDtypeStruct((K, N), jnp.float32)
MATMUL_FLOPS = 2 * M * K * N


def compile_(fn, *args):
    return jax.jit(fn).lower(*args).compile()


def step(x, w):
    return jnp.tanh(x @ w)


@pytest.fixture(scope="module")
def forward_costs(measure_forward) -> dict[tuple[str, int], dict]:
    return {(mode, layers): measure_forward(mode, layers)
            for layers in (1, 4, 13) for mode in ("loop", "scan", "scan_shared")}


@pytest.mark.parametrize("layers", [1, 4, 13])
@pytest.mark.parametrize("mode", ["scan", "scan_shared"])
def test_scan_modes_cost_what_the_loop_costs(forward_costs, mode, layers):
    loop, scanned = forward_costs["loop", layers], forward_costs[mode, layers]
    assert scanned["cost_exact"]
    assert scanned["cost_flops"] == pytest.approx(loop["cost_flops"], rel=0.02)
    assert scanned["cost_transcendentals"] == pytest.approx(loop["cost_transcendentals"], rel=0.02)
    if layers > 1:  # the raw numbers really do undercount by about the layer count
        assert scanned["cost_xla_flops"] < loop["cost_xla_flops"] / (layers - 0.5)


@pytest.mark.parametrize("layers", [1, 4, 13])
def test_loop_mode_has_nothing_to_correct(forward_costs, layers):
    loop = forward_costs["loop", layers]
    assert loop["size_hlo_while_loops"] == 0
    assert loop["cost_exact"]
    for key in ("flops", "transcendentals", "bytes_accessed"):
        assert loop[f"cost_{key}"] == loop[f"cost_xla_{key}"]


def test_partial_unroll_with_remainder_counts_every_layer(forward_costs, measure_forward):
    unrolled = measure_forward("scan", 13, unroll=3)  # 4 trips over 3 layers, 1 layer outside
    assert unrolled["size_hlo_while_loops"] == 1
    assert unrolled["cost_flops"] == pytest.approx(forward_costs["scan", 13]["cost_flops"], rel=0.02)
    assert unrolled["cost_transcendentals"] == pytest.approx(
        forward_costs["scan", 13]["cost_transcendentals"], rel=0.02)


def test_analytic_matmul_flops_match_measured_forward_flops(forward_costs, measure_forward):
    # Element-wise work (biases, softmax, residual adds: about 10 FLOPs per activation
    # element) is in XLA's count and not in the analytic one: about 10 / (10 hidden) of
    # the total, 1.5% at hidden 64.
    for mode in ("loop", "scan"):
        m = measure_forward(mode, 4, hidden=64)
        assert m["cost_analytic_flops"] <= m["cost_flops"] <= 1.03 * m["cost_analytic_flops"]
    # the same relation holds on the measurements at hidden 32 within its larger gap
    small = forward_costs["scan", 13]
    assert small["cost_analytic_flops"] <= small["cost_flops"] <= 1.05 * small["cost_analytic_flops"]


def test_gradient_of_scan_costs_what_the_gradient_of_the_loop_costs():
    # Two loops in one program (forward and backward scans). Taking the gradient with
    # respect to the input too keeps the programs comparable: otherwise the unrolled
    # loop drops the first layer's input gradient, which the scan body still computes.
    costs = {}
    for mode in ("loop", "scan"):
        point = Point(mode=mode, layers=4, **TINY)
        (program,) = build(point)

        def loss(params, x, apply=program.fn):
            return (apply(params, x)[0] ** 2).sum()

        compiled = compile_(jax.grad(loss, argnums=(0, 1)), *program.args)
        assert compiled.as_text().count(" while(") == (2 if mode == "scan" else 0)
        costs[mode] = loop_corrected(compiled)
    assert costs["scan"].flops == pytest.approx(costs["loop"].flops, rel=0.02)
    assert costs["scan"].transcendentals == pytest.approx(costs["loop"].transcendentals, rel=0.02)


def test_fori_loop_counts_every_matmul():
    trips = 7

    def looped(x, w):
        return jax.lax.fori_loop(0, trips, lambda i, x: step(x, w), x)

    def unrolled(x, w):
        for _ in range(trips):
            x = step(x, w)
        return x

    counted, reference = loop_corrected(compile_(looped, X, W)), loop_corrected(compile_(unrolled, X, W))
    assert counted.exact
    assert counted.raw["flops"] < 2 * MATMUL_FLOPS  # XLA's own: one trip
    # + the counter: one add per trip, one compare per test of the condition (trips + 1)
    assert counted.flops == trips * MATMUL_FLOPS + trips + (trips + 1)
    assert counted.flops == pytest.approx(reference.flops, rel=0.02)
    assert counted.transcendentals == reference.transcendentals == trips * M * N


def test_a_loop_in_a_program_with_a_donated_argument_is_counted():
    # The donation's alias table names the entry's outputs; a module cut out around the
    # loop body must not keep it.
    trips = 4
    looped = jax.jit(lambda w, x: (w.sum(), jax.lax.fori_loop(0, trips, lambda i, x: step(x, w), x)),
                     donate_argnums=1)
    counted = loop_corrected(looped.lower(W, X).compile())
    assert counted.exact
    assert counted.flops == pytest.approx(trips * MATMUL_FLOPS + K * N, rel=1e-2)  # + w.sum()


def test_nested_scans_multiply_trip_counts():
    outer_trips, inner_trips = 3, 5

    def nested(x, w):
        def outer(x, _):
            inner = jax.lax.scan(lambda x, _: (step(x, w), None), x, None, length=inner_trips)
            return inner[0], None
        return jax.lax.scan(outer, x, None, length=outer_trips)[0]

    counted = loop_corrected(compile_(nested, X, W))
    assert counted.exact
    assert counted.flops == pytest.approx(outer_trips * inner_trips * MATMUL_FLOPS, rel=1e-2)
    assert counted.transcendentals == outer_trips * inner_trips * M * N


def test_loop_inside_a_branch_is_counted_per_trip():
    trips = 6

    def branchy(p, x, w):
        return jax.lax.cond(p, lambda x: jax.lax.fori_loop(0, trips, lambda i, x: step(x, w), x),
                            lambda x: x * 2, x)

    counted = loop_corrected(compile_(branchy, jax.ShapeDtypeStruct((), jnp.bool_), X, W))
    assert counted.flops == pytest.approx(trips * MATMUL_FLOPS, rel=1e-2)


# Hand-computed references: the matmul of `step` is 2·M·K·N FLOPs (a multiply and an add
# per term) and M·N tanh; the loops' counters add a few FLOPs per trip, inside 1%.
PREDICATE = jax.ShapeDtypeStruct((), jnp.bool_)


def test_a_branch_costs_its_costliest_branch_not_the_sum_of_both():
    # Both branches loop, 10 and 6 trips: the program runs one of them, so it costs at most
    # 10 trips (XLA's own convention for a conditional: the costliest branch). The sum of
    # both, 16 trips, is 60% more: far past the tolerance.
    def two_loops(p, x, w):
        return jax.lax.cond(p, lambda x: jax.lax.fori_loop(0, 10, lambda i, x: step(x, w), x),
                            lambda x: jax.lax.fori_loop(0, 6, lambda i, x: step(x, w), x), x)

    counted = loop_corrected(compile_(two_loops, PREDICATE, X, W))
    assert counted.exact
    assert counted.flops == pytest.approx(10 * 2 * M * K * N, rel=1e-2)
    assert counted.transcendentals == 10 * M * N
    assert counted.raw["flops"] == pytest.approx(2 * M * K * N, rel=1e-2)  # XLA's: one trip


def test_a_cond_without_loops_keeps_xla_s_costliest_branch():
    # tanh(x @ w) or (x @ w) @ w: 2·M·K·N or 2·M·K·N + 2·M·N·N FLOPs, and M·N tanh or none;
    # each cost is its costliest branch's.
    def plain(p, x, w):
        return jax.lax.cond(p, lambda x: step(x, w), lambda x: (x @ w) @ w, x)

    counted = loop_corrected(compile_(plain, PREDICATE, X, W))
    assert counted.flops == pytest.approx(2 * M * K * N + 2 * M * N * N, rel=1e-3)
    assert counted.transcendentals == M * N


def test_a_nested_loop_with_work_at_both_levels():
    # 3 outer trips, each one step and then an inner loop of 4: 3 · (1 + 4) steps.
    def nested(x, w):
        def outer(i, x):
            return jax.lax.fori_loop(0, 4, lambda j, x: step(x, w), step(x, w))
        return jax.lax.fori_loop(0, 3, outer, x)

    counted = loop_corrected(compile_(nested, X, W))
    assert counted.exact
    assert counted.flops == pytest.approx(3 * (1 + 4) * 2 * M * K * N, rel=1e-2)
    assert counted.transcendentals == 3 * (1 + 4) * M * N


def test_a_scan_over_a_cond_counts_the_costliest_branch_per_trip():
    # 5 trips, each a step or a doubling (M·K FLOPs): at most 5 steps.
    def scan_cond(x, w, flags):
        def body(x, p):
            return jax.lax.cond(p, lambda x: step(x, w), lambda x: x * 2, x), None
        return jax.lax.scan(body, x, flags)[0]

    counted = loop_corrected(compile_(scan_cond, X, W, jax.ShapeDtypeStruct((5,), jnp.bool_)))
    assert counted.exact
    assert counted.flops == pytest.approx(5 * 2 * M * K * N, rel=1e-2)
    assert counted.transcendentals == 5 * M * N


def test_a_scan_over_a_cond_of_loops_multiplies_the_costliest_branch():
    # 4 scan trips over a cond of a 3-trip and a 5-trip loop: 4 · 5 steps (4 · 8 if both
    # branches were counted).
    def scan_cond_loops(x, w, flags):
        def body(x, p):
            return jax.lax.cond(p, lambda x: jax.lax.fori_loop(0, 3, lambda i, x: step(x, w), x),
                                lambda x: jax.lax.fori_loop(0, 5, lambda i, x: step(x, w), x), x), None
        return jax.lax.scan(body, x, flags)[0]

    counted = loop_corrected(compile_(scan_cond_loops, X, W, jax.ShapeDtypeStruct((4,), jnp.bool_)))
    assert counted.exact
    assert counted.flops == pytest.approx(4 * 5 * 2 * M * K * N, rel=1e-2)
    assert counted.transcendentals == 4 * 5 * M * N


def test_loops_in_a_row_each_counted_inside_an_uncounted_loop_and_a_branch():
    # One computation holding a counted loop (3 steps), a data-dependent while loop (counted
    # once, as XLA does) whose body holds a 4-trip loop of steps and whose condition a
    # 5-trip loop of x @ (w + i) summed (a matmul, K·N adds, M·N - 1 adds and one more per
    # trip), then a cond of a 6-trip and a 2-trip loop: 3 + 4 + 6 steps besides.
    def in_a_row(x, w):
        x = jax.lax.fori_loop(0, 3, lambda i, x: step(x, w), x)
        x = jax.lax.while_loop(lambda x: jax.lax.fori_loop(0, 5, lambda i, s: s + (x @ (w + i)).sum(), 0.0) < 1e9,
                               lambda x: jax.lax.fori_loop(0, 4, lambda i, x: step(x, w), x) + 1.0, x)
        return jax.lax.cond(x.sum() > 0, lambda x: jax.lax.fori_loop(0, 6, lambda i, x: step(x, w), x),
                            lambda x: jax.lax.fori_loop(0, 2, lambda i, x: step(x, w), x), x)

    counted = loop_corrected(compile_(in_a_row, X, W))
    assert counted.exact is False
    condition = 5 * (MATMUL_FLOPS + K * N + M * N)
    assert counted.flops == pytest.approx((3 + 4 + 6) * MATMUL_FLOPS + condition, rel=1e-2)
    assert counted.transcendentals == (3 + 4 + 6) * M * N


def test_data_dependent_while_loop_is_marked_inexact():
    def until_large(x, w):
        return jax.lax.while_loop(lambda x: x.sum() < 100.0, lambda x: step(x, w) + 1.0, x)

    counted = loop_corrected(compile_(until_large, X, W))
    assert counted.exact is False
    assert counted.flops == counted.raw["flops"]  # no trip count: counted once, as XLA does


def test_new_columns_are_documented_record_columns(forward_costs):
    point = Point(mode="scan", layers=4, **TINY)
    measured = forward_costs["scan", 4]
    row = make_row(point, **measured)  # raises on an undocumented column
    # the row holds what was measured, each column its own value (none dropped or swapped)
    for column in ("cost_flops", "cost_transcendentals", "cost_bytes_accessed", "cost_analytic_flops",
                   "mem_footprint_bytes"):
        assert isinstance(row[column], int | float) and row[column] > 0 and row[column] == measured[column]
    assert row["cost_exact"] is True
    assert len({row[c] for c in ("cost_flops", "cost_transcendentals", "cost_bytes_accessed")}) == 3


def test_footprint_adds_temp_that_the_cpu_peak_leaves_out():
    def with_temporaries(x):
        y = jnp.sin(x) @ jnp.cos(x).T  # 64x64 temporaries, one scalar out
        return (y @ y).sum()

    m = measure(Program(fn=with_temporaries, args=(jax.ShapeDtypeStruct((64, 64), jnp.float32),),
                        make_args=lambda: ()))
    # Independent of the formula: the argument is one 64x64 float32 array, the output one
    # float32, nothing is donated, and y (64x64) must exist before y @ y is computed.
    argument, output = 64 * 64 * 4, 4
    assert (m["mem_argument_bytes"], m["mem_output_bytes"], m["mem_alias_bytes"]) == (argument, output, 0)
    assert m["mem_temp_bytes"] >= 64 * 64 * 4
    assert m["mem_footprint_bytes"] == m["mem_generated_code_bytes"] + argument + output + m["mem_temp_bytes"]
    if jax.default_backend() == "cpu":
        assert m["mem_xla_peak_bytes"] < m["mem_footprint_bytes"]


def test_footprint_counts_a_donated_buffer_once():
    args = (jax.ShapeDtypeStruct((64, 64), jnp.float32),)
    m = measure(Program(fn=lambda x: x * 2, args=args, make_args=lambda: (), donate_argnums=(0,)))
    assert m["mem_alias_bytes"] == m["mem_argument_bytes"] == 64 * 64 * 4
    assert m["mem_footprint_bytes"] == m["mem_generated_code_bytes"] + 64 * 64 * 4 + m["mem_temp_bytes"]
