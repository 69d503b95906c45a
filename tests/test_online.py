"""Online reductions, the attention cascades, pass analysis and variants (docs/model.md §3, "Recurrences").

What each test pins down: the three attention cascades compute the same tensor (a numpy interpreter, tests/
values.py); the spec refuses running reads that cannot be executed; the evaluator refuses mappings that break
lock step; `passes` gives FuseMax's 1, 2, 3; the solver's optimum over variants equals the enumerators' (pruned
and brute force) on generated instances; the 1-pass cascade fuses over the key tiles on a small FuseMax-like
machine and beats the best 3-pass mapping there.
"""
from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parent))

from mapsolve.model import MappingError, analyze  # noqa: E402
from mapsolve.model.cascades import cascade, one_pass, three_pass, two_pass  # noqa: E402
from mapsolve.model.make import attention, attention_workload  # noqa: E402
from mapsolve.model.passes import analyze_passes  # noqa: E402
from mapsolve.model.spec import (Architecture, ComputeUnit, Einsum, EinsumMapping, FusedGroup, Instance, Level,  # noqa: E402
                                 LevelMapping, Loop, Mapping, Mesh, OpCost, SharedLoop, SpatialLoop, TensorRef,
                                 Variant, Workload)
from mapsolve.solver import enumerate as en  # noqa: E402
from mapsolve.solver import solve  # noqa: E402
from strategies import architectures, variant_workloads  # noqa: E402
from test_enumerator import _solver_equals_enumeration  # noqa: E402
from values import run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def ref(t, ranks, running=None):
    return TensorRef(tensor=t, ranks=list(ranks), running=running)


# ------------------------------------------------------------------------------------------------------------
# The cascades compute the same thing
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gqa", [False, True])
def test_one_two_and_three_pass_attention_agree_with_softmax(gqa):
    rng = np.random.default_rng(1)
    if gqa:
        ranks = dict(B=2, G=2, R=2, E=3, F=3, P=4, M1=3, M0=4)
        q_shape, kv = (2, 2, 2, 3, 4), (2, 2)
    else:
        ranks = dict(B=2, H=2, E=3, F=3, P=4, M1=3, M0=4)
        q_shape, kv = (2, 2, 3, 4), (2, 2)
    batch = ("B",) if gqa else ("B", "H")
    Q = rng.normal(size=q_shape)
    K = rng.normal(size=(*kv, 3, 3, 4))
    V = rng.normal(size=(*kv, 3, 3, 4))
    outs = {}
    for name in ("1pass", "2pass", "3pass"):
        wl = Workload(ranks=ranks, einsums=cascade(name, batch, gqa))
        outs[name] = run(wl, dict(Q=Q, K=K, V=V))["AV"]
    k, v = K.reshape(*kv, 3, 12), V.reshape(*kv, 3, 12)
    if gqa:
        s = np.einsum("bgrep,bgem->bgrmp", Q, k)
        s = np.exp(s - s.max(3, keepdims=True))
        want = np.einsum("bgrmp,bgfm->bgrfp", s / s.sum(3, keepdims=True), v)
    else:
        s = np.einsum("bhep,bhem->bhmp", Q, k)
        s = np.exp(s - s.max(2, keepdims=True))
        want = np.einsum("bhmp,bhfm->bhfp", s / s.sum(2, keepdims=True), v)
    for name, got in outs.items():
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12), name


def test_operation_counts_are_the_papers():
    """Per Einsum, the operations of FuseMax's 1-pass cascade: QK P·M·E MACs, the tile statistics P·M1, the
    numerator updates P·M1·F, the division P·F."""
    r = dict(H=1, E=4, F=4, P=8, M1=3, M0=2)
    wl = Workload(ranks=r, einsums=one_pass())
    ops = {e.name: int(np.prod([r[x] for x in e.space])) for e in wl.einsums}
    P, M, E, F, M1 = 8, 6, 4, 4, 3
    assert ops == {"QK": P * M * E, "LM": P * M, "RMO": P * M1, "RM": P * M1, "SLN": P * M, "PRM": P * M1,
                   "SLD": P * M, "SPD": P * M1, "RD": P * M1, "SLNV": P * M * F, "SPNV": P * M1 * F,
                   "RNV": P * M1 * F, "AV": P * F}


# ------------------------------------------------------------------------------------------------------------
# Spec rules
# ------------------------------------------------------------------------------------------------------------
def _wl(einsums, ranks=None):
    return Workload(ranks=ranks or {"r": 3, "p": 2}, einsums=einsums)


@pytest.mark.parametrize("einsums, message", [
    ([Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp")], op="add"),
      Einsum(name="C", output=ref("C", "rp"), inputs=[ref("X", "rp"), ref("S", "p", "current")], op="sub")],
     "only the output of a recurrence"),
    ([Einsum(name="C", output=ref("C", "rp"), inputs=[ref("X", "rp"), ref("S", "p", "current")], op="sub"),
      Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp")], op="add", recurrence="r")],
     "produced by a later Einsum"),
    ([Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp")], op="add", recurrence="r"),
      Einsum(name="C", output=ref("C", "rp"), inputs=[ref("X", "rp"), ref("S", "p", "previous")], op="sub")],
     "previous value is gone"),
    ([Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp"), ref("S", "p")], op="add", recurrence="r")],
     "a tensor appears twice"),
    ([Einsum(name="S", output=ref("S", "rp"), inputs=[ref("X", "rp")], op="add", recurrence="r")],
     "must be a rank of its inputs that the output lacks"),
    ([Einsum(name="S", output=ref("S", []), inputs=[ref("X", "rp")], op="add", recurrence="r")],
     "has every rank but the carried one"),
    ([Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp")], op="add", recurrence="r"),
      Einsum(name="C", output=ref("C", "p"), inputs=[ref("S", "p", "current")], op="copy")],
     "must iterate the carried rank"),
])
def test_spec_refuses_running_reads_that_cannot_run(einsums, message):
    with pytest.raises(ValidationError, match=message):
        _wl(einsums)


def test_recurrence_state_has_no_accumulator_width():
    with pytest.raises(ValidationError, match="recurrence's state is held at its bits"):
        Workload(ranks={"r": 3, "p": 2}, tensors={"S": {"accumulator_bits": 32}}, einsums=[
            Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp"), ref("S", "p", "previous")], op="add",
                   recurrence="r")])


# ------------------------------------------------------------------------------------------------------------
# Mapping rules (lock step)
# ------------------------------------------------------------------------------------------------------------
def small_arch(buffer_words=64) -> Architecture:
    return Architecture(levels=[
        Level(name="DRAM", read_pj="10", write_pj="10"),
        Level(name="GLB", read_pj="1", write_pj="1", capacity_words=buffer_words),
        Level(name="REG", read_pj="0.1", write_pj="0.1", capacity_words=8, mesh=Mesh(x=2))],
        compute_units=[ComputeUnit(name="U", ops={op: OpCost(energy_pj="1") for op in
                                                  ("add", "mul", "sub", "copy", "max", "exp", "mac", "div")})])


def lock_step_case(shared_factor=3, spatial_r=False, fused=True):
    """T = exp(X); S = recurrence add over r of (T, S previous); C = T - S current."""
    wl = _wl([Einsum(name="T", output=ref("T", "rp"), inputs=[ref("X", "rp")], op="exp"),
              Einsum(name="S", output=ref("S", "p"), inputs=[ref("T", "rp"), ref("S", "p", "previous")], op="add",
                     recurrence="r"),
              Einsum(name="C", output=ref("C", "rp"), inputs=[ref("T", "rp"), ref("S", "p", "current")], op="sub")])
    inst = Instance(name="lock", workload=wl, architecture=small_arch())

    def em(e):
        own = [Loop(rank=r, factor=(3 // shared_factor if r == "r" else 2)) for r in e.space
               if not (r == "r" and shared_factor == 3)]
        sp = [SpatialLoop(rank="r", factor=1 if not spatial_r else 2, axis="x")] if False else []
        keep0 = [t for t in e.tensors if t in ("X", "C")] if fused else list(e.tensors)
        return EinsumMapping(einsum=e.name, compute_unit="U", levels=[
            LevelMapping(level="DRAM", keep=keep0),
            LevelMapping(level="GLB", keep=list(e.tensors), temporal=own, spatial=sp),
            LevelMapping(level="REG")])
    groups = [FusedGroup(einsums=["T", "S", "C"], fusion_level="GLB",
                         shared_loops=[SharedLoop(level="DRAM", rank="r", factor=shared_factor)])] if fused else []
    return inst, Mapping(einsums=[em(e) for e in wl.einsums], groups=groups)


def test_lock_step_mapping_is_valid():
    inst, m = lock_step_case()
    res = analyze(inst, m)
    assert res.energy_fj > 0


def test_reader_not_fused_with_the_recurrence_is_refused():
    wl = _wl([Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp"), ref("S", "p", "previous")], op="add",
                     recurrence="r"),
              Einsum(name="C", output=ref("C", "rp"), inputs=[ref("X", "rp"), ref("S", "p", "current")], op="sub")])
    inst = Instance(name="lock", workload=wl, architecture=small_arch())
    ems = [EinsumMapping(einsum=e.name, compute_unit="U", levels=[
        LevelMapping(level="DRAM", keep=list(e.tensors), temporal=[Loop(rank=r, factor=wl.ranks[r]) for r in e.space]),
        LevelMapping(level="GLB"), LevelMapping(level="REG")]) for e in wl.einsums]
    with pytest.raises(MappingError, match="fuse them into one group"):
        analyze(inst, Mapping(einsums=ems))


def test_carried_rank_partly_in_members_own_loops_is_refused():
    wl = _wl([Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp"), ref("S", "p", "previous")], op="add",
                     recurrence="r"),
              Einsum(name="C", output=ref("C", "rp"), inputs=[ref("X", "rp"), ref("S", "p", "current")], op="sub")],
             {"r": 4, "p": 2})
    inst = Instance(name="lock", workload=wl, architecture=small_arch())
    ems = [EinsumMapping(einsum=e.name, compute_unit="U", levels=[
        LevelMapping(level="DRAM", keep=[t for t in e.tensors if t in ("X", "C")]),
        LevelMapping(level="GLB", keep=list(e.tensors), temporal=[Loop(rank=r, factor=2) for r in e.space]),
        LevelMapping(level="REG")]) for e in wl.einsums]
    group = FusedGroup(einsums=["S", "C"], fusion_level="GLB", shared_loops=[SharedLoop(level="DRAM", rank="r",
                                                                                         factor=2)])
    with pytest.raises(MappingError, match="multiply to 2, not its bound 4"):
        analyze(inst, Mapping(einsums=ems, groups=[group]))


def test_spatial_loop_over_a_carried_rank_is_refused():
    wl = _wl([Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp"), ref("S", "p", "previous")], op="max",
                     recurrence="r")], {"r": 2, "p": 2})
    inst = Instance(name="sp", workload=wl, architecture=small_arch())
    em = EinsumMapping(einsum="S", compute_unit="U", levels=[
        LevelMapping(level="DRAM", keep=["S", "X"], temporal=[Loop(rank="p", factor=2)]),
        LevelMapping(level="GLB", spatial=[SpatialLoop(rank="r", factor=2, axis="x")]), LevelMapping(level="REG")])
    with pytest.raises(MappingError, match="spatial loop over r"):
        analyze(inst, Mapping(einsums=[em]))


# ------------------------------------------------------------------------------------------------------------
# Pass analysis
# ------------------------------------------------------------------------------------------------------------
def test_passes_are_fusemaxs_one_two_three():
    wl = attention_workload(dict(B=1, H=2, E=4, F=4, P=8, M1=4, M0=2), ["1pass", "2pass", "3pass"], ("B", "H"))
    got = {name: analyze_passes(w, name).passes for name, w in wl.alternatives()}
    assert got == {"1pass": 1, "2pass": 2, "3pass": 3}
    three = dict(wl.alternatives())["3pass"]
    crossing = {c.tensor: c for c in analyze_passes(three).crossings}
    assert set(crossing) == {"QK", "SN"} and crossing["QK"].along == 8      # a whole row of scores per query
    one = analyze_passes(dict(wl.alternatives())["1pass"])
    assert one.crossings == [] and one.ranks["M0"] == 2 and one.ranks["M1"] == 1   # a tile, not the sequence


def test_passes_cli_json(tmp_path):
    out = tmp_path / "bert.json"
    subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "make", "attention", "--model", "bert", "--seq",
                    "4096", "--batch", "64", "-o", str(out)], check=True, capture_output=True, cwd=ROOT)
    r = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "passes", str(out), "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {c["variant"]: c["passes"] for c in doc["cascades"]} == {"1pass": 1, "2pass": 2, "3pass": 3}


# ------------------------------------------------------------------------------------------------------------
# Variants
# ------------------------------------------------------------------------------------------------------------
def test_variant_with_other_outputs_is_refused():
    base = [Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp")], op="add")]
    other = [Einsum(name="S", output=ref("S2", "p"), inputs=[ref("X", "rp")], op="add")]
    with pytest.raises(ValidationError, match="produces"):
        Workload(ranks={"r": 2, "p": 2}, einsums=base, variants=[Variant(name="v", einsums=other)])


def test_mapping_of_an_unknown_variant_is_refused():
    inst = Instance(name="v", workload=Workload(ranks={"r": 2, "p": 2}, einsums=[
        Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp")], op="add")], variants=[
        Variant(name="online", einsums=[Einsum(name="S", output=ref("S", "p"), inputs=[
            ref("X", "rp"), ref("S", "p", "previous")], op="add", recurrence="r")])]), architecture=small_arch())
    em = EinsumMapping(einsum="S", compute_unit="U", levels=[
        LevelMapping(level="DRAM", keep=["S", "X"], temporal=[Loop(rank="r", factor=2), Loop(rank="p", factor=2)]),
        LevelMapping(level="GLB"), LevelMapping(level="REG")])
    assert analyze(inst, Mapping(einsums=[em])).energy_fj == analyze(inst, Mapping(variant="base", einsums=[em])).energy_fj
    assert analyze(inst, Mapping(variant="online", einsums=[em])).energy_fj > 0
    with pytest.raises(MappingError, match="unknown variant 'nope'"):
        analyze(inst, Mapping(variant="nope", einsums=[em]))


VARIANTS_SEEN = {"cases": 0, "online_wins": 0}


@st.composite
def small_variant_instances(draw) -> Instance:
    wl = draw(variant_workloads())
    arch = draw(architectures(wl))
    if draw(st.integers(0, 3)):     # mostly a single-instance first on-chip level: lock-step groups can fuse there
        levels = list(arch.levels)
        levels[1] = levels[1].model_copy(update={"mesh": Mesh(), "may_keep": None, "must_keep": []})
        arch = arch.model_copy(update={"levels": levels})
    objective = draw(st.sampled_from(["energy", "latency", "energy,latency"]))
    inst = Instance(name="variants", workload=wl, architecture=arch, solver={"objective": objective})
    assume(en.estimate(inst, False, 12000) <= 12000)
    return inst


@settings(max_examples=100, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(small_variant_instances())
def test_solver_equals_enumeration_over_variants(inst):
    """CP-SAT per variant, combined (solver/variants.py), against the pruned enumerator and brute force over the
    union of the variants' mapspaces: the same optimum, and the winner named consistently."""
    res = _solver_equals_enumeration(inst)
    if res is None:
        return
    assert res.variant in [n for n, _ in inst.workload.alternatives()]
    assert res.mapping.variant == res.variant
    assert analyze(inst, res.mapping).energy_fj == res.energy_fj
    VARIANTS_SEEN["cases"] += 1
    VARIANTS_SEEN["online_wins"] += res.variant != inst.workload.base_variant


def test_variant_cases_were_exercised():
    """Guard: the property test above must have compared real optima (not only infeasible instances)."""
    if VARIANTS_SEEN["cases"] == 0:
        pytest.skip("run with test_solver_equals_enumeration_over_variants")
    assert VARIANTS_SEEN["cases"] >= 60


def test_shipped_fusemax_instance_passes_and_cascades():
    """instances/fusemax_bert_4k.json offers the three cascades; `mapsolve passes` says 1 for the online one and 3
    for the stable one."""
    r = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "passes", str(ROOT / "instances" /
                        "fusemax_bert_4k.json")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "cascade 1pass: 1 pass over its inputs" in r.stdout
    assert "cascade 3pass: 3 passes over its inputs" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "gpt5", "--seq", "1024"], "--model: unknown model 'gpt5'"),
    (["--model", "bert", "--seq", "1000"], "--seq 1000 is not a multiple of the key tile 256"),
    (["--model", "bert", "--seq", "1024", "--cascade", "4pass"], "--cascade: '4pass'"),
    (["--model", "bert", "--seq", "1024", "--arch", "tpu-v9"], "--arch: unknown architecture"),
])
def test_make_attention_refuses_bad_arguments(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "make", "attention", *args, "-o",
                        str(tmp_path / "x.json")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("arch", ["fusemax-cloud", "flat-edge", "flat-cloud", "tileflow-edge", "tileflow-cloud",
                                  "tpu-v4i"])
def test_make_attention_machines_validate(arch):
    """Every machine and model builds a valid instance (prefill and decode, grouped-query heads)."""
    for model, decode in (("bert", False), ("llama3-8b", True)):
        inst = attention(model, 1024, 2, arch, "all", decode)
        assert [n for n, _ in inst.workload.alternatives()] == ["1pass", "2pass", "3pass"]
        assert (inst.workload.ranks["P"] == 1) == decode


def test_a_recurrence_state_tile_counts_against_capacity():
    """Regression (BERT-4K on FuseMax cloud): the CP-SAT model skipped the capacity of a recurrence's own levels,
    and returned a mapping holding RD's 3072-element state tile in a 64-word register. Here the cheap register
    holds 2 words; the state over p = 8 must be tiled to fit, and the optimum must equal the enumerators'."""
    wl = Workload(ranks={"r": 4, "p": 8}, einsums=[
        Einsum(name="S", output=ref("S", "p"), inputs=[ref("X", "rp"), ref("S", "p", "previous")], op="add",
               recurrence="r")])
    arch = Architecture(levels=[Level(name="DRAM", read_pj="100", write_pj="100"),
                                Level(name="REG", read_pj="0.1", write_pj="0.1", capacity_words=2)],
                        compute_units=[ComputeUnit(name="U", ops={"add": OpCost(energy_pj="1")})])
    inst = Instance(name="state-capacity", workload=wl, architecture=arch)
    res = _solver_equals_enumeration(inst)
    assert res is not None and res.evaluation.capacity_required["REG"] <= 2


def test_batch_replication_of_a_variant_mapping_keeps_its_cascade():
    """Regression (fusemax_bert_4k at --time-limit 2 exited 5, then crashed in the report): the one-copy mapping of
    batch replication was rebuilt without its `variant`, and the constructive lock-step groups carried one-iteration
    shared loops over the batch rank, so prepending the batch loop made two loops over B at DRAM."""
    from mapsolve.model import evaluate
    from mapsolve.model.load import load_instance
    from mapsolve.model.variants import alternatives
    from mapsolve.solver.certify import replicate, with_rank_bound
    from mapsolve.solver.construct import constructive_mapping
    inst = load_instance(ROOT / "instances" / "fusemax_bert_4k.json")
    copy = with_rank_bound(inst, "B", 1)
    for name, alt in alternatives(copy):
        built = constructive_mapping(alt, "latency")
        assert all(sl.factor > 1 for g in built.groups for sl in g.shared_loops)
        one = built.model_copy(update={"variant": name})
        many = replicate(one, "B", inst.workload.ranks["B"])
        assert many.variant == name
        assert evaluate(inst, many).latency_cycles >= evaluate(copy, one).latency_cycles


def _variant_result(status, objective, bound):
    from mapsolve.solver.results import SolveResult
    return SolveResult(status, objective, bound, None, None, None, None, "latency", 0.0, 0.0, [])


def test_a_variant_whose_bound_ties_the_winner_leaves_it_optimal():
    """Over variants, the winner is proven when every other variant is proven or bounded at or above it (one
    objective: a tie cannot beat it); a lexicographic tie on the first component is not a proof."""
    from mapsolve.solver.variants import combine_variants
    win = _variant_result("OPTIMAL", [100], [100])
    tie = _variant_result("FEASIBLE", [120], [100])
    low = _variant_result("FEASIBLE", [120], [99])
    assert combine_variants([("a", win), ("b", tie)]).status == "OPTIMAL"
    got = combine_variants([("a", win), ("b", low)])
    assert (got.status, got.best_bound) == ("FEASIBLE", [99])
    lex_win = _variant_result("OPTIMAL", [100, 7], [100, 7])
    lex_tie = _variant_result("FEASIBLE", [120, 1], [100])
    assert combine_variants([("a", lex_win), ("b", lex_tie)]).status == "FEASIBLE"


def test_a_second_run_of_an_open_variant_keeps_the_better_of_both():
    """What variants proven early leave over goes to a second run of the open ones (solver/variants.py): the better
    mapping, the higher proven bound, OPTIMAL when the two meet; a variant bounded above the best value is not
    open."""
    from mapsolve.solver.variants import _open, better_run
    first = _variant_result("FEASIBLE", [120], [90])
    second = _variant_result("FEASIBLE", [110], [80])
    got = better_run(first, second)
    assert (got.status, got.objective, got.best_bound) == ("FEASIBLE", [110], [90])
    closed = better_run(first, _variant_result("FEASIBLE", [125], [120]))
    assert (closed.status, closed.objective, closed.best_bound) == ("OPTIMAL", [120], [120])
    proven = better_run(first, _variant_result("OPTIMAL", [100], [100]))
    assert (proven.status, proven.objective, proven.best_bound) == ("OPTIMAL", [100], [100])
    lex = better_run(_variant_result("FEASIBLE", [120, 5], [90]), _variant_result("FEASIBLE", [130, 1], [120]))
    assert lex.status == "FEASIBLE" and lex.objective == [120, 5]   # a lexicographic tie on the first is no proof
    winner = _variant_result("OPTIMAL", [100], [100])
    assert _open(first, [("a", first), ("b", winner)])
    assert not _open(_variant_result("FEASIBLE", [130], [101]), [("a", winner)])
    assert not _open(winner, [("a", winner)])


@st.composite
def _online_one_word_per_cycle(draw):
    """An online cascade whose every level moves one word per cycle (a level's cycles are its words, so the floor
    is tested tightly) and a valid mapping of it, flat or nested."""
    from fractions import Fraction
    from strategies import mappings, online_instances
    inst = draw(online_instances())
    levels = [lv.model_copy(update={"bandwidth": Fraction(1), "read_bandwidth": None, "write_bandwidth": None})
              for lv in inst.architecture.levels]
    inst = inst.model_copy(update={"architecture": inst.architecture.model_copy(update={"levels": levels})})
    return inst, draw(mappings(inst, allow_invalid=False, online=True, nested=draw(st.booleans())))


@settings(max_examples=300, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(_online_one_word_per_cycle())
def test_recurrence_states_move_once_per_step_in_the_transfer_floor(case):
    """solver/bounds.py fewest_words counts a recurrence's state at the fusion level once per step of its carried
    rank, for the recurrence and each running reader: never more than a valid mapping moves."""
    from mapsolve.model import evaluate
    from test_solver import assert_transfer_floors_hold
    inst, mapping = case
    try:
        res = evaluate(inst, mapping)
    except MappingError:
        assume(False)
    assert_transfer_floors_hold(inst, res, lambda: (inst.model_dump_json(), mapping.model_dump_json()))


def test_the_running_max_per_step_traffic_closes_bert_4k():
    """Regression (fusemax_bert_4k, 1-pass, latency): the running max RM is written and read by four members once
    per key tile; the transfer floor of QK..RNV at the global buffer is now the optimum found (88,866,816 cycles),
    where it was 230,400 cycles below it and the proof never closed (the whole instance stuck at a 0.254 % gap)."""
    from mapsolve.model.evaluate import port_words
    from mapsolve.model.load import load_instance
    from mapsolve.model.variants import alternatives
    from mapsolve.solver.bounds import fewest_words
    inst = dict(alternatives(load_instance(ROOT / "instances" / "fusemax_bert_4k.json")))["1pass"]
    names = [e.name for e in inst.workload.einsums][:-1]   # all but the final division AV
    glb = next(i for i, lv in enumerate(inst.architecture.levels) if lv.name == "GLB")
    lv = inst.architecture.levels[glb]
    reads, writes = fewest_words(inst, names, glb)[glb]
    cycles = max(-(-port_words(port, reads, writes) * bw.denominator // (bw.numerator * lv.word(inst.workload.word_bits)))
                 for port, bw in lv.ports)
    assert cycles == 88_866_816
