"""The CP-SAT mapper against the exhaustive enumerator (solver/enumerate.py): optimum == pruned enumeration ==
brute force, on hypothesis-generated small instances; the enumerator's matrix costs against `analyze`; and
`mapsolve verify` on the small shipped instances."""
from __future__ import annotations

import json
from decimal import Decimal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from mapsolve.model import analyze, load_instance  # noqa: E402
from mapsolve.model.spec import Instance, Mapping, Workload  # noqa: E402
from mapsolve.solver import solve  # noqa: E402
from mapsolve.solver import enum_template as et  # noqa: E402
from mapsolve.solver import enumerate as en  # noqa: E402
from mapsolve.solver.segment_solve import flat as flat_of  # noqa: E402
from mapsolve.solver.enum_space import buckets, plan_info, plans, tiling_rows  # noqa: E402
from strategies import architectures, workloads  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).parent / "cases"
BRUTE_LIMIT = 4000       # estimated brute-force work per instance: keeps every example well under a second
NESTED_LIMIT = 12000     # the same for the nested-fusion cases


@st.composite
def small_instances(draw) -> Instance:
    wl = draw(workloads())
    bounds = {r: draw(st.sampled_from([1, 2, 2, 3, 5, 7, 4, 6])) for r in wl.ranks}
    wl = wl.model_copy(update={"ranks": bounds})
    arch = draw(architectures(wl))
    objective = draw(st.sampled_from(["energy", "latency", "energy,latency", "latency,energy"]))
    inst = Instance(name="small", workload=wl, architecture=arch,
                    solver={"objective": objective, "time_limit_s": 30})
    assume(en.estimate(inst, False, BRUTE_LIMIT) <= BRUTE_LIMIT)
    return inst


@st.composite
def small_fused_instances(draw) -> Instance:
    """Small instances of two or three Einsums whose fused plans have runs a shared loop may enclose alone (the
    nested-fusion mapspace), with a buffer sometimes too small for flat fusion."""
    wl = draw(workloads().filter(lambda w: 2 <= len(w.einsums) <= 3))
    bounds = {r: draw(st.sampled_from([1, 2, 2, 3, 4, 4])) for r in wl.ranks}
    wl = wl.model_copy(update={"ranks": bounds})
    arch = draw(architectures(wl))
    if draw(st.integers(0, 2)) > 0:   # a small first on-chip buffer and a dear DRAM: fusion, and how, matter
        levels = list(arch.levels)
        levels[0] = levels[0].model_copy(update={"read_pj": Decimal(draw(st.integers(50, 200))),
                                                 "write_pj": Decimal(draw(st.integers(50, 200)))})
        levels[1] = levels[1].model_copy(update={"capacity_words": draw(st.integers(3, 24)), "capacity_bits": None,
                                                 "access_bits": None})
        arch = arch.model_copy(update={"levels": levels})
    return _fusable(draw, "small", wl, arch)


def _fusable(draw, name: str, wl, arch) -> Instance:
    """The instance with a drawn objective, if some plan fuses and brute force stays within NESTED_LIMIT."""
    objective = draw(st.sampled_from(["energy", "energy", "latency", "energy,latency"]))
    inst = Instance(name=name, workload=wl, architecture=arch, solver={"objective": objective, "time_limit_s": 30})
    assume(any(p.fusion is not None for p in plans(inst)))
    assume(en.estimate(inst, False, NESTED_LIMIT) <= NESTED_LIMIT)
    return inst


def _run_enum(inst: Instance, prune: bool):
    try:
        return en.enumerate_optimum(inst, prune=prune, max_candidates=None)
    except en.EnumerationError as exc:
        assert "infeasible" in str(exc), exc
        return None


def _save_mismatch(inst, objective, cp_mapping, enum_mapping) -> Path:
    CASES.mkdir(exist_ok=True)
    doc = {"instance": inst.model_dump(mode="json", exclude_defaults=True), "objective": objective,
           "cpsat_mapping": cp_mapping.model_dump(mode="json") if cp_mapping else None,
           "enumerator_mapping": enum_mapping.model_dump(mode="json") if enum_mapping else None}
    path = CASES / f"solver_mismatch_{abs(hash(json.dumps(doc, sort_keys=True))) % 10**8}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(small_instances())
def test_solver_equals_enumeration(inst: Instance):
    _solver_equals_enumeration(inst)


def _solver_equals_enumeration(inst: Instance):
    """CP-SAT's optimum == pruned enumeration == brute force (or all infeasible); the solver's result, or None."""
    objective = inst.solver.objective
    pruned = _run_enum(inst, True)
    brute = _run_enum(inst, False)
    res = solve(inst, objective, workers=1, seed=0, deterministic_time=30)
    if pruned is None:
        assert brute is None and res.status == "INFEASIBLE", (res.status, brute and brute.objective)
        return None
    assert brute is not None and brute.objective == pruned.objective, (brute.objective, pruned.objective)
    assert res.status == "OPTIMAL", res.status
    if res.objective != pruned.objective:
        path = _save_mismatch(inst, objective, res.mapping, pruned.mapping)
        pytest.fail(f"CP-SAT {res.objective} != enumerator {pruned.objective}; case saved to {path}")
    return res


NESTED_SEEN = {"cases": 0, "tree_wins": 0}


@settings(max_examples=100, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(small_fused_instances())
def test_solver_equals_enumeration_nested(inst: Instance):
    """Nested fusion (solver.nesting "tree", the default): CP-SAT, the pruned enumerator and brute force find the
    same optimum over trees of shared loops; and it is never worse than the flat mapspace's (which it contains)."""
    res = _solver_equals_enumeration(inst)
    if res is None:
        return
    flat = solve(flat_of(inst), inst.solver.objective, workers=1, seed=0, deterministic_time=30)
    assert flat.status in ("OPTIMAL", "INFEASIBLE")
    if flat.status == "OPTIMAL":
        assert res.objective <= flat.objective
        NESTED_SEEN["tree_wins"] += res.objective < flat.objective
    NESTED_SEEN["cases"] += 1


@settings(max_examples=40, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(small_instances(), st.integers(0, 2**31))
def test_matrix_costs_equal_analyze(inst: Instance, seed: int):
    """Sample templates and tilings: the matrix evaluation gives exactly what `analyze` gives for the mapping."""
    rng = np.random.default_rng(seed)
    layout = et.Layout(True, [u.name for u in inst.architecture.compute_units],
                       [(i, port) for i, lv in enumerate(inst.architecture.levels) for port, _ in lv.ports])
    for plan in plans(inst):
        if plan.fusion is not None:
            continue
        info = plan_info(inst, plan)
        if not info.units[plan.names[0]]:
            continue
        e = info.members[0]
        bucket = next(buckets(inst, info, True))
        tpls = list(et.member_templates(inst, info, bucket, e, True))
        for k in rng.choice(len(tpls), size=min(3, len(tpls)), replace=False):
            tpl = tpls[int(k)]
            comp = et.Compiled(inst, info, tpl, 0, False, layout)
            lo, X, ok = next(tiling_rows(tpl.us, tpl.variables, tpl.per_rank, 10**6))
            Xs = et.shared_columns(X, bucket, False)
            V, r, c = et.vectors(comp, tpl, Xs, comp.pm.values(Xs), ok, layout, False)
            for _ in range(min(3, len(V))):
                i = int(rng.integers(len(V)))
                maps, _ = en._decode(inst, info, bucket, [[tpl]], [(0, int(r[i]), int(c[i]))])
                sub = inst.model_copy(update={"workload": inst.workload.model_copy(update={"einsums": [e]})})
                res = analyze(sub, Mapping(einsums=maps))
                assert V[i][0] == res.energy_fj
                g = res.groups[0]
                for j, u in enumerate(layout.units):
                    assert V[i][1 + j] == g.unit_cycles.get(u, 0)


# every small instance shipped (~4 min). Their tree mapspaces (nested fusion) are beyond 10^8 candidates for the
# enumerator, so the multi-Einsum ones are verified flat (--nesting flat); tiny_nested is verified as a tree.
SMALL = [("doc_example", "tree"), ("tiny_matmul", "tree"), ("tiny_chain", "flat"), ("tiny_attention", "flat"),
         ("tiny_online", "tree"), ("tiny_variants", "tree")]


def _verify(name: str, objective: str, nesting: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "verify", str(ROOT / "instances" /
                           f"{name}.json"), "-o", objective, "-q", "--deterministic-time", "300",
                           "--nesting", nesting, "--brute-max", "0" if nesting == "tree" else "20000000"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified" in proc.stdout


@pytest.mark.parametrize("name, nesting", SMALL)
@pytest.mark.parametrize("objective", ["energy", "latency"])
def test_verify_shipped(name: str, nesting: str, objective: str):
    _verify(name, objective, nesting)


@pytest.mark.parametrize("name", ["tiny_block", "tiny_int8"])
def test_verify_shipped_model_fidelity(name: str):
    """tiny_block: projections read by QK and AV through views, fusable with them; tiny_int8: 8-bit operands,
    32-bit partial sums, 64-bit DRAM words. Energy only (~1.5 min each); latency was verified by hand."""
    _verify(name, "energy", "flat")


def test_verify_shipped_nested():
    """tiny_nested: the block's tail (QK, AV, Z) where the key loop encloses QK and AV only. The tree optimum is
    verified against the pruned enumerator (brute force skipped: ~2 min more), and it beats the flat one."""
    _verify("tiny_nested", "energy", "tree")
    inst = load_instance(ROOT / "instances" / "tiny_nested.json")
    tree = solve(inst, "energy", workers=1, seed=0, deterministic_time=60)
    flat = solve(flat_of(inst), "energy", workers=1, seed=0, deterministic_time=60)
    assert tree.status == flat.status == "OPTIMAL"
    assert tree.objective[0] < flat.objective[0]
    assert any(sl.einsums is not None for g in tree.mapping.groups for sl in g.shared_loops)


def test_refuses_big_mapspace():
    inst = load_instance(ROOT / "instances" / "llm_4k.json")
    with pytest.raises(en.MapspaceTooLarge):
        en.enumerate_optimum(inst, "energy", max_candidates=10**6)


# --------------------------------------------------------------------------------------------------------------
# verify's verdict: only a proven optimum that every enumerator equals is "verified"
# --------------------------------------------------------------------------------------------------------------
def _cp(status: str, value: int, bound: int):
    return SimpleNamespace(status=status, objective=[value], best_bound=[bound])


def _en(value: int):
    return SimpleNamespace(objective=[value])


@pytest.mark.parametrize("cp, enumerated, verdict", [
    (_cp("OPTIMAL", 10, 10), [_en(10), _en(10)], "verified"),
    (_cp("OPTIMAL", 11, 11), [_en(10)], "disagree"),          # claimed optimum above the true one
    (_cp("OPTIMAL", 9, 9), [_en(10)], "disagree"),            # a mapping better than exhaustive search: a bug
    (_cp("OPTIMAL", 10, 10), [_en(10), _en(12)], "disagree"),  # pruning lost the optimum
    (_cp("FEASIBLE", 10, 7), [_en(10)], "unproven"),          # out of time, found it, bound consistent
    (_cp("FEASIBLE", 12, 7), [_en(10)], "unproven"),
    (_cp("FEASIBLE", 12, 11), [_en(10)], "disagree"),         # a bound above the optimum is wrong
    (_cp("INTERRUPTED", 9, 7), [_en(10)], "disagree"),
])
def test_verify_verdict(cp, enumerated, verdict):
    from mapsolve.cli.verify_cmd import judge
    assert judge(cp, enumerated)[0] == verdict


def test_verify_refuses_big_mapspace_before_solving():
    proc = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "verify", str(ROOT / "instances" /
                           "llm_4k.json"), "-q"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "mapspace too large" in proc.stderr
    assert "CP-SAT" not in proc.stdout


def test_packed_poly_exact():
    """Packed monomials: negative intermediate exponents stay exact, and evaluation (int64, float64 fast path and
    exact Python ints) gives the integer values."""
    from mapsolve.solver.enum_poly import Poly, PolyMatrix, decode_key
    x, y, z = Poly.var(0), Poly.var(1), Poly.var(2)
    p = (x * x * y * 3 - y // z + 5) * z           # 3x²yz - y + 5z; y // z holds z^-1 on the way
    assert decode_key(next(iter((y // z).terms)), 3) == [0, 1, -1]
    assert (p - p).is_zero() and (x - 1 + 1 - x).is_zero()
    X = np.array([[2, 3, 4], [7, 1, 1], [3000, 5000, 7000], [20000, 50000, 70000]], dtype=np.int64)  # last: > 2**52
    for rows in (X[:3], X):                          # all rows < 2**52: float64 path; else int64
        want = [3 * a * a * b * c - b + 5 * c for a, b, c in rows.tolist()]
        for obj in (False, True):
            pm = PolyMatrix([p, x], 3, obj, np.array([[1, 1], [0, 1]]))   # outputs: p, p + x
            got = pm.values(rows.astype(object) if obj else rows)
            assert [int(v) for v in got[:, 0]] == want
            assert [int(v) for v in got[:, 1]] == [w + int(a) for w, a in zip(want, rows[:, 0])]


def test_plans_enumerated_in_parallel_give_the_same_answer():
    """Worker processes per segment plan (the default above PARALLEL_MIN_WORK) change nothing: the same optimum,
    the same mapping (ties broken in plan order) and the same counts as one process."""
    inst = load_instance(ROOT / "instances" / "tiny_chain.json")
    inst = inst.model_copy(update={"workload": inst.workload.model_copy(
        update={"ranks": {r: min(b, 2) for r, b in inst.workload.ranks.items()}})})
    inst = flat_of(Instance.model_validate(inst.model_dump()))
    for objective in ("energy,latency",):
        one = en.enumerate_optimum(inst, objective, workers=1)
        two = en.enumerate_optimum(inst, objective, workers=2)
        assert (one.objective, one.candidates, one.evaluated, one.kept, one.plans) == \
               (two.objective, two.candidates, two.evaluated, two.kept, two.plans)
        assert one.mapping == two.mapping


@st.composite
def small_butterfly_instances(draw) -> Instance:
    """Butterfly layers of 4 points (two radix-2 stages, each reading the other's output as a view) with 1 or 2
    hidden channels (or 2-D mixing of 4 x 2), learned blocks, on small random architectures where fusing the
    stages is possible. (FFT layers add two ranks: too many candidates for brute force; the simulator test
    covers them.)"""
    from mapsolve.model.make import butterfly_workload
    mix = draw(st.sampled_from(["seq", "seq", "both"]))
    wl = butterfly_workload(4, 1, draw(st.sampled_from([1, 2])) if mix == "seq" else 2, 2, mix, "learned")
    return _fusable(draw, "small-butterfly", wl, draw(architectures(wl)))


@settings(max_examples=15, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(small_butterfly_instances())
def test_solver_equals_enumeration_butterfly(inst: Instance):
    """Butterfly stages (digit ranks, views between stages, fusion over the digits a run leaves alone): CP-SAT, the
    pruned enumerator and brute force agree."""
    _solver_equals_enumeration(inst)


@st.composite
def small_butterfly_ffn_instances(draw) -> Instance:
    """Butterfly-factorised FFNs (model/hybrid.py `butterfly_ffn`): two stacked butterflies over a hidden digit of
    2 or 4, the ReLU, and the down stage summing the copies, for 1 or 2 tokens, where the stages can fuse."""
    from mapsolve.model.butterfly import Digits, digits, stage_ranks
    from mapsolve.model.hybrid import butterfly_ffn
    tokens, hd = draw(st.sampled_from([1, 2])), draw(st.sampled_from([2, 4]))
    hid = digits("D", hd, hd)
    wl = Workload(ranks={"B": 1, "N0": tokens, **stage_ranks(hid, "learned"), "FX": 2}, word_bits=16,
                  einsums=butterfly_ffn("F", "X", Digits(("N0",), (tokens,)), hid, 2))
    return _fusable(draw, "small-butterfly-ffn", wl, draw(architectures(wl)))


@settings(max_examples=8, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(small_butterfly_ffn_instances())
def test_solver_equals_enumeration_butterfly_ffn(inst: Instance):
    """The up stage broadcasting to the copies and the down stage reducing over them and a digit at once: CP-SAT,
    the pruned enumerator and brute force agree."""
    _solver_equals_enumeration(inst)
