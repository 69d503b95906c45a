"""A mapsolve mapping as Timeloop input files, one problem and one mapping per Einsum (docs/interop.md, Timeloop).

Timeloop maps one Einsum at a time, so each Einsum becomes its own Timeloop problem: the Einsum's own rank names
(a view's renamed ranks included) are the problem's dimensions and each tensor projects positionally onto them.
Its nest is taken from `build_nests` (the evaluator's own flattening, so a fused member's shared loops are already
the outer loops of its nest at their levels). Timeloop allows one factor per dimension, level and kind (temporal,
spatial); where mapsolve has two (a rank spread over both mesh axes at one level, or two shared loops over one rank
at one level), the rank is written as several sub-dimensions, `rank = d1 * C1 + d2` with `C1` the bound of d2, which
index the same elements in the same order. Timeloop's factor and permutation syntax takes dimension names of one
letter, so every dimension gets a letter; the file's header says which rank it is.

The architecture is written in the `architecture:` tree form (version 0.3, `subtree` and `local`), the one
timeloop-model reads without the Python front end, one tree per compute unit (a Timeloop tree is a single chain).
An ERT (energy reference table) per Einsum carries mapsolve's per-access and per-operation energies, so
timeloop-model uses them instead of calling Accelergy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from math import prod

import yaml

from mapsolve.model.nest import Nest, NestLoop, build_nests
from mapsolve.model.spec import Instance, Mapping
from mapsolve.model.variants import select

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class ExportError(ValueError):
    """The mapping cannot be written for Timeloop (a one-line reason)."""


@dataclass
class SubDim:
    """One Timeloop dimension: a contiguous run of a rank's loops (outermost first), or the whole rank."""

    rank: str
    letter: str
    loops: list[NestLoop]

    @property
    def bound(self) -> int:
        return prod(lp.factor for lp in self.loops)


@dataclass
class EinsumExport:
    """What one Einsum became: file names and the facts tests and the docs check."""

    einsum: str
    unit: str
    problem_file: str
    mapping_file: str
    arch_file: str
    ert_file: str
    dims: dict[str, list[SubDim]] = field(default_factory=dict)   # rank -> its sub-dimensions, outermost first
    data_spaces: dict[str, str] = field(default_factory=dict)     # Timeloop data-space name -> mapsolve tensor
    fused_with: tuple[str, ...] = ()
    intermediates: frozenset[str] = frozenset()
    levels: dict[str, str] = field(default_factory=dict)          # Timeloop level name -> mapsolve level


def safe_name(name: str) -> str:
    """A name Timeloop's parsers take whole: letters, digits and underscores (`[`, `.` and spaces have meanings
    there: instance ranges, hierarchy, separators)."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if out and not out[0].isdigit() else "n" + out


def file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "einsum"


def _unique(names: list, make) -> dict:
    """name -> made name, numbered where two names make the same one (a name may be a (kind, name) pair, made
    from its second item: levels and compute units share Timeloop's one namespace)."""
    out: dict = {}
    used: set[str] = set()
    for n in names:
        base = make(n[1] if isinstance(n, tuple) else n)
        cand, k = base, 2
        while cand.lower() in used:   # file names: case-insensitive file systems too
            cand, k = f"{base}_{k}", k + 1
        used.add(cand.lower())
        out[n] = cand
    return out


# ------------------------------------------------------------------------------------------------------------
# Dimensions
# ------------------------------------------------------------------------------------------------------------
def _sub_dims(nest: Nest) -> dict[str, list[list[NestLoop]]]:
    """Per rank, its loops cut into runs in which no (level, kind) repeats: a new run starts where the current run
    already has a loop at the same level and of the same kind (temporal, or spatial on a mesh)."""
    runs: dict[str, list[list[NestLoop]]] = {r: [[]] for r in nest.space}
    for lp in nest.loops:
        cur = runs[lp.rank][-1]
        if any(o.pos == lp.pos and o.spatial == lp.spatial for o in cur):
            runs[lp.rank].append([])
            cur = runs[lp.rank][-1]
        cur.append(lp)
    return runs


#: The key of the extra dimension of bound 1 that scalar tensors project onto (no rank name is empty): Timeloop
#: v3.0.3 fails on an empty projection.
SCALAR = ""


def _letters(nest: Nest, runs: dict[str, list[list[NestLoop]]]) -> dict[str, list[SubDim]]:
    """A letter per dimension: the rank's own name where it is one letter and not split, else a free letter; and
    a dimension of bound 1 (key SCALAR) when a tensor of the Einsum has no ranks."""
    scalar = any(not ranks for ranks in nest.tensors.values())
    count = sum(len(v) for v in runs.values()) + scalar
    if count > len(LETTERS):
        raise ExportError(f"einsum {nest.einsum.name}: {count} Timeloop dimensions needed, more than the "
                          f"{len(LETTERS)} one-letter names Timeloop's permutation syntax allows")
    taken = {r for r, v in runs.items() if len(r) == 1 and r in LETTERS and len(v) == 1}
    free = iter(c for c in LETTERS if c not in taken)
    out: dict[str, list[SubDim]] = {}
    for r in nest.space:   # sorted: the same letters on every run
        if r in taken:
            out[r] = [SubDim(r, r, runs[r][0])]
        else:
            out[r] = [SubDim(r, next(free), loops) for loops in runs[r]]
    if scalar:
        out[SCALAR] = [SubDim(SCALAR, next(free), [])]
    return out


def _projection(subs: list[SubDim], coeff_names: dict[str, int]) -> list[list[list[str]]]:
    """One data-space dimension: rank = d1 * C1 + d2 * C2 + ... + dk (C_i the product of the later bounds)."""
    terms = []
    for i, sd in enumerate(subs):
        scale = prod(s.bound for s in subs[i + 1:])
        if scale == 1:
            terms.append([sd.letter])
        else:
            name = f"C{sd.letter}"
            coeff_names[name] = scale
            terms.append([sd.letter, name])
    return terms


# ------------------------------------------------------------------------------------------------------------
# The files
# ------------------------------------------------------------------------------------------------------------
def _data_space_names(nest: Nest) -> dict[str, tuple[str, str]]:
    """Timeloop data-space name -> (tensor, role): a recurrence's read of its own previous state is a data space
    of its own beside the output (Timeloop's data spaces have distinct names)."""
    e = nest.einsum
    out: dict[str, tuple[str, str]] = {}
    for t, role in [(t.tensor, "input") for t in e.inputs] + [(e.output.tensor, "output")]:
        base = safe_name(t) + ("_previous" if role == "input" and t == e.output.tensor else "")
        cand, k = base, 2
        while cand in out:
            cand, k = f"{base}_{k}", k + 1
        out[cand] = (t, role)
    return out


def problem_doc(nest: Nest, dims: dict[str, list[SubDim]], spaces: dict[str, tuple[str, str]]) -> dict:
    e = nest.einsum
    coeffs: dict[str, int] = {}
    refs = {("output", e.output.tensor): e.output, **{("input", t.tensor): t for t in e.inputs}}
    data_spaces = []
    for name, (tensor, role) in spaces.items():
        ref = refs[(role, tensor)]
        ds = {"name": name, "projection": [_projection(dims[r], coeffs) for r in ref.ranks or [SCALAR]]}
        if role == "output":
            ds["read-write"] = True
        data_spaces.append(ds)
    shape = {"name": safe_name(e.name), "dimensions": [sd.letter for subs in dims.values() for sd in subs]}
    if coeffs:
        shape["coefficients"] = [{"name": n, "default": v} for n, v in coeffs.items()]
    shape["data-spaces"] = data_spaces
    instance = {sd.letter: sd.bound for subs in dims.values() for sd in subs}
    instance.update(coeffs)
    return {"problem": {"shape": shape, "instance": instance}}


def _factor_string(letters: list[str], factor: dict[str, int]) -> str:
    return " ".join(f"{c}={factor.get(c, 1)}" for c in letters)


def mapping_doc(inst: Instance, nest: Nest, dims: dict[str, list[SubDim]], spaces: dict[str, tuple[str, str]],
                level_names: dict[str, str], axes: dict[int, str]) -> dict:
    """Timeloop's `mapping:` list: per level, outermost first, a temporal directive, a spatial one where the level
    fans out, and a datatype directive with the level's keep and bypass sets."""
    arch = inst.architecture
    letter_of = {id(lp): sd.letter for subs in dims.values() for sd in subs for lp in sd.loops}
    letters = [sd.letter for subs in dims.values() for sd in subs]
    unit = arch.unit(nest.unit)
    directives = []
    for pos, li in enumerate(nest.path):
        level = arch.levels[li]
        target = level_names[level.name]
        here = [lp for lp in nest.loops if lp.pos == pos]
        temporal = [lp for lp in here if not lp.spatial]
        # Timeloop lists a level's loops innermost first; dimensions without a loop here have factor 1
        order = [letter_of[id(lp)] for lp in reversed(temporal)]
        order += [c for c in letters if c not in order]
        directives.append({"target": target, "type": "temporal",
                           "factors": _factor_string(letters, {letter_of[id(lp)]: lp.factor for lp in temporal}),
                           "permutation": "".join(order)})
        below = arch.levels[nest.path[pos + 1]].mesh if pos + 1 < len(nest.path) else unit.mesh
        if below.size > 1:
            spatial = [lp for lp in here if lp.spatial]
            xs = [letter_of[id(lp)] for lp in spatial if axes[id(lp)] == "x"]
            ys = [letter_of[id(lp)] for lp in spatial if axes[id(lp)] == "y"]
            rest = [c for c in letters if c not in xs and c not in ys]
            # the first `split` letters of the permutation spread along X, the others along Y
            directives.append({"target": target, "type": "spatial",
                               "factors": _factor_string(letters, {letter_of[id(lp)]: lp.factor for lp in spatial}),
                               "permutation": "".join(xs + ys + rest), "split": len(xs)})
        keep = [n for n, (t, _) in spaces.items() if pos in nest.keep[t]]
        directives.append({"target": target, "type": "datatype", "keep": keep,
                           "bypass": [n for n in spaces if n not in keep]})
    return {"mapping": directives}


def _rate(value: Fraction) -> float | int:
    return int(value) if value.denominator == 1 else float(value)


def arch_doc(inst: Instance, unit_name: str, level_names: dict[str, str], unit_names: dict[str, str]) -> dict:
    """The `architecture:` tree of one compute unit's path: a subtree per level holding that level (and, in the
    innermost, the compute units), instance counts in the subtree names, meshX the running product of X."""
    arch, wl = inst.architecture, inst.workload
    wb = wl.word_bits
    unit = arch.unit(unit_name)
    path = arch.path(unit_name)
    nodes = []
    mesh_x = 1
    for k, li in enumerate(path):
        lv = arch.levels[li]
        mesh_x *= lv.mesh.x
        attrs: dict = {"word-bits": wb, "block-size": max(1, lv.word(wb) // wb)}
        cap = lv.capacity(wb)
        if cap is not None:
            attrs["entries"] = cap // wb
        for key, value in (("shared_bandwidth", lv.bandwidth), ("read_bandwidth", lv.read_bandwidth),
                           ("write_bandwidth", lv.write_bandwidth)):
            if value is not None:
                attrs[key] = _rate(value)
        attrs["meshX"] = mesh_x   # always: without it Timeloop puts every instance on X
        cls = "DRAM" if k == 0 else "SRAM"
        name = f"{level_names[lv.name]}_tile" + (f"[0..{lv.mesh.size - 1}]" if lv.mesh.size > 1 else "")
        nodes.append({"name": name, "local": [{"name": level_names[lv.name], "class": cls, "attributes": attrs}]})
    compute_attrs: dict = {"datawidth": wb, "meshX": mesh_x * unit.mesh.x}
    compute_name = unit_names[unit.name] + (f"[0..{unit.mesh.size - 1}]" if unit.mesh.size > 1 else "")
    nodes[-1]["local"].append({"name": compute_name, "class": "intmac", "attributes": compute_attrs})
    for outer, inner in zip(reversed(nodes[:-1]), reversed(nodes[1:])):
        outer["subtree"] = [inner]
    return {"architecture": {"version": 0.3, "subtree": [nodes[0]]}}


def ert_doc(inst: Instance, nest: Nest, level_names: dict[str, str], unit_names: dict[str, str]) -> dict:
    """Energy per action, pJ: a level's read and write (Timeloop's fills and updates are writes) per access of
    the level's word, and the Einsum's operation on its unit."""
    arch = inst.architecture
    tables = [{"name": level_names[arch.levels[li].name],
               "actions": [{"name": "read", "energy": float(arch.levels[li].read_pj)},
                           {"name": "write", "energy": float(arch.levels[li].write_pj)}]} for li in nest.path]
    op = arch.unit(nest.unit).ops[nest.einsum.op]
    tables.append({"name": unit_names[nest.unit], "actions": [{"name": "compute", "energy": float(op.energy_pj)}]})
    return {"ERT": {"version": 0.3, "tables": tables}}


def _header(lines: list[str]) -> str:
    """YAML comment lines; a name holding a line break stays inside its comment."""
    return "".join("# " + " ".join(ln.splitlines()) + "\n" for ln in lines)


def _dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120)


def export(inst: Instance, mapping: Mapping) -> tuple[dict[str, str], list[EinsumExport]]:
    """(file name -> text, what each Einsum became). Raises MappingError for a mapping the model refuses and
    ExportError for one Timeloop cannot express."""
    inst = select(inst, mapping.variant)
    nests = build_nests(inst, mapping)
    arch = inst.architecture
    made = _unique([("level", lv.name) for lv in arch.levels] + [("unit", u.name) for u in arch.compute_units],
                   safe_name)
    level_names = {n: v for (kind, n), v in made.items() if kind == "level"}
    unit_names = {n: v for (kind, n), v in made.items() if kind == "unit"}
    units = sorted({n.unit for n in nests})
    unit_stems = _unique(units, file_stem)
    arch_files = {u: "arch.yaml" if len(units) == 1 else f"arch.{unit_stems[u]}.yaml" for u in units}
    stems = _unique([n.einsum.name for n in nests], file_stem)
    files: dict[str, str] = {}
    for u in units:
        head = [f"mapsolve instance {inst.name}: the path of compute unit {u} as a Timeloop architecture tree "
                f"(version 0.3).",
                f"Levels: {', '.join(f'{lv} -> {level_names[lv]}' for lv in level_names)}.",
                "word-bits is the workload's word_bits; block-size = access_bits / word_bits; "
                "entries = capacity in bits / word_bits."]
        files[arch_files[u]] = _header(head) + _dump(arch_doc(inst, u, level_names, unit_names))
    exports = []
    for n in nests:
        axes = _axes(mapping, n)
        dims = _letters(n, _sub_dims(n))
        spaces = _data_space_names(n)
        stem = stems[n.einsum.name]
        ex = EinsumExport(n.einsum.name, n.unit, f"{stem}.problem.yaml", f"{stem}.mapping.yaml", arch_files[n.unit],
                          f"{stem}.ert.yaml", dims, {k: t for k, (t, _) in spaces.items()},
                          n.group.einsums if n.group.multi else (), n.group.intermediates,
                          {level_names[arch.levels[li].name]: arch.levels[li].name for li in n.path})
        legend = [f"{sd.letter} = {r or '(bound 1: the dimension of scalar tensors)'}"
                  + (f" (loops {i + 1} of {len(subs)}, bound {sd.bound})" if len(subs) > 1 else "")
                  for r, subs in dims.items() for i, sd in enumerate(subs)]
        head = [f"mapsolve instance {inst.name}, einsum {n.einsum.name} ({n.einsum.op} on {n.unit}).",
                "Dimensions: " + "; ".join(legend) + ".",
                "Data spaces: " + "; ".join(f"{k} = {t}" for k, t in ex.data_spaces.items()) + "."]
        if ex.fused_with:
            head.append(f"Fused in mapsolve with {', '.join(ex.fused_with)} at "
                        f"{arch.levels[n.group.fusion_level].name}: the shared loops are this nest's outer loops; "
                        f"the group's intermediates {', '.join(sorted(ex.intermediates)) or '(none)'} bypass "
                        f"{arch.levels[0].name} (docs/interop.md).")
        run = f"Run: timeloop-model {ex.arch_file} {ex.problem_file} {ex.mapping_file} {ex.ert_file}"
        files[ex.problem_file] = _header(head) + _dump(problem_doc(n, dims, spaces))
        files[ex.mapping_file] = _header(head + [run]) + _dump(mapping_doc(inst, n, dims, spaces, level_names,
                                                                           axes))
        files[ex.ert_file] = (_header([f"Energies (pJ) of einsum {n.einsum.name} from mapsolve instance {inst.name}."])
                              + _dump(ert_doc(inst, n, level_names, unit_names)))
        exports.append(ex)
    return files, exports


def _axes(mapping: Mapping, nest: Nest) -> dict[int, str]:
    """id(spatial loop) -> its mesh axis (NestLoop keeps the mesh, not the axis), matched in mapping order."""
    em = next(m for m in mapping.einsums if m.einsum == nest.einsum.name)
    axes: dict[int, str] = {}
    for pos, lm in enumerate(em.levels):
        mine = [lp for lp in nest.loops if lp.pos == pos and lp.spatial]
        for lp, sp in zip(mine, lm.spatial):
            axes[id(lp)] = sp.axis
    return axes
