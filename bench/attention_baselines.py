"""Hand-written mappings of the attention papers, for bench_attention.py: FuseMax's 1-pass dataflow and FLAT's
fused 3-pass dataflow, built on `mapsolve make attention` instances (fusemax-cloud-like machines: DRAM, GLB, a PE
register per 2-D PE, a register per 1-D lane) and evaluated by our model.

FuseMax (Nayak et al., MICRO 2024, and its artifact): loops B, H, P2, M1 at DRAM; P1 at the global buffer, then the
full E (or F); spatially p0 = 256 on one side of the 2-D array (and on the 1-D array), m0 = 256 on the other. The 2-D
array runs QK, LM, SLN, SLD, SLNV; the 1-D array RMO, RM, PRM, SPD, RD, SPNV, RNV and AV. P1 is the largest divisor
of P/256 whose working set fits the buffer. Where our model differs: a fused intermediate lives at the fusion level
(GLB), so QK and SLN, which FuseMax keeps in PE registers, are written to and read from GLB here.

FLAT (Kao et al., ASPLOS 2023): the 3-pass cascade fused per block of query rows (shared loops B, H and P at DRAM),
each block holding whole rows of scores (all of M) at GLB; the block is the largest that fits.
"""
from __future__ import annotations

from mapsolve.model import MappingError, evaluate
from mapsolve.model.spec import (EinsumMapping, FusedGroup, Instance, LevelMapping, Loop, Mapping, SharedLoop,
                                 SpatialLoop)

TWO_D = {"QK", "LM", "SLN", "SLD", "SLNV", "MX", "SN", "SD", "AV3"}


def _member(inst: Instance, e, unit: str, glb_loops, inner_loops, spatial, keep_glb, keep_inner, keep_dram):
    arch = inst.architecture
    inner = "PE" if unit == "mac2d" else "VR"
    return EinsumMapping(einsum=e.name, compute_unit=unit, levels=[
        LevelMapping(level="DRAM", keep=sorted(keep_dram)),
        LevelMapping(level="GLB", keep=sorted(keep_glb), temporal=[Loop(rank=r, factor=f) for r, f in glb_loops if f > 1],
                     spatial=[SpatialLoop(rank=r, factor=f, axis=a) for r, f, a in spatial if f > 1]),
        LevelMapping(level=inner, keep=sorted(keep_inner),
                     temporal=[Loop(rank=r, factor=f) for r, f in inner_loops if f > 1])])


def _reused(e, inner) -> set[str]:
    """Tensors a PE keeps in its register: those the register loops (E or F) do not index (one element each, reused
    across them; an output over F streams to the buffer instead)."""
    loops = {r for r, _ in inner}
    return {t.tensor for t in (e.output, *e.inputs) if not loops & set(t.ranks)}


def _side(inst: Instance) -> int:
    return next(lv.mesh.x for lv in inst.architecture.levels if lv.name == "PE")


def fusemax(inst: Instance, p1: int) -> Mapping:
    """FuseMax's mapping of the 1-pass cascade with the given P1 (see the module docstring)."""
    wl = inst.workload
    r = wl.ranks
    side = _side(inst)
    p0 = min(side, r["P"])
    p2 = r["P"] // (p1 * p0)
    two_d = {"QK", "LM", "SLN", "SLD", "SLNV"}
    outside = {"Q", "K", "V", "AV"}
    batch = [x for x in ("B", "H", "G", "R") if x in r]
    ems = []
    for e in wl.einsums:
        unit = "mac2d" if e.name in two_d else "vec1d"
        sp = [("P", p0, "x")] + ([("M0", min(side, r["M0"]), "y")] if unit == "mac2d" and "M0" in e.space else [])
        inner = [(x, r[x]) for x in ("E", "F") if x in e.space]
        glb = [("P", p1)]
        if unit == "mac2d" and "M0" in e.space and r["M0"] > side:
            glb.append(("M0", r["M0"] // side))
        keep_dram = {t for t in e.tensors if t in outside}
        ems.append(_member(inst, e, unit, glb, inner, sp, set(e.tensors), _reused(e, inner), keep_dram))
    shared = [SharedLoop(level="DRAM", rank=x, factor=r[x]) for x in batch] + \
        [SharedLoop(level="DRAM", rank="P", factor=p2),
         SharedLoop(level="DRAM", rank="M1", factor=r["M1"], einsums=[e.name for e in wl.einsums[:-1]])]
    names = [e.name for e in wl.einsums]
    return Mapping(variant="1pass" if inst.workload.variants else None, einsums=ems,
                   groups=[FusedGroup(einsums=names, fusion_level="GLB", shared_loops=shared)])


def flat(inst: Instance, rows: int, variant: str | None = "3pass") -> Mapping:
    """FLAT's fused 3-pass dataflow: blocks of `rows` query rows (a multiple of the array side or all of P)."""
    from mapsolve.model.variants import select
    plain = select(inst, variant) if inst.workload.variants else inst
    wl = plain.workload
    r = wl.ranks
    side = _side(inst)
    p0 = min(side, rows)
    batch = [x for x in ("B", "H", "G", "R") if x in r]
    outside = {"Q", "K", "V", "AV"}
    ems = []
    for e in wl.einsums:
        unit = "mac2d" if e.op in ("mac",) or e.name in ("MX", "SN", "SD") else "vec1d"
        has_m0 = "M0" in e.space
        sp = [("P", p0, "x")] + ([("M0", min(side, r["M0"]), "y")] if unit == "mac2d" and has_m0 else [])
        glb = [("P", rows // p0)] + ([("M1", r["M1"])] if "M1" in e.space else []) + \
            ([("M0", r["M0"] // min(side, r["M0"]))] if has_m0 and unit == "mac2d" else
             [("M0", r["M0"])] if has_m0 else [])
        inner = [(x, r[x]) for x in ("E", "F") if x in e.space]
        ems.append(_member(plain, e, unit, glb, inner, sp, set(e.tensors), _reused(e, inner),
                           {t for t in e.tensors if t in outside}))
    shared = [SharedLoop(level="DRAM", rank=x, factor=r[x]) for x in batch] + \
        [SharedLoop(level="DRAM", rank="P", factor=r["P"] // rows)]
    return Mapping(variant=variant if inst.workload.variants else None, einsums=ems,
                   groups=[FusedGroup(einsums=[e.name for e in wl.einsums], fusion_level="GLB",
                                      shared_loops=shared)])


def _divisors_down(n: int):
    return [d for d in range(n, 0, -1) if n % d == 0]


def best_fitting(inst: Instance, build, sizes):
    """(mapping, result, size) for the largest size whose mapping fits, or None."""
    for s in sizes:
        m = build(inst, s)
        try:
            return m, evaluate(inst, m), s
        except MappingError:
            continue
    return None


def fusemax_mapping(inst: Instance):
    side = _side(inst)
    p0 = min(side, inst.workload.ranks["P"])
    return best_fitting(inst, fusemax, _divisors_down(inst.workload.ranks["P"] // p0))


def flat_mapping(inst: Instance):
    P = inst.workload.ranks["P"]
    side = _side(inst)
    return best_fitting(inst, flat, [d for d in _divisors_down(P) if d % min(side, P) == 0])
