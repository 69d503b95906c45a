"""AccelForge's workload section → mapsolve's Workload, plus what the arch needs to evaluate its expressions.

An AccelForge Einsum string `K[h, M: p, e] = I[M: p, d] * WK[h, e, d]` names each tensor dimension by a rank
(upper case, `M`) indexed by a rank variable (lower case, `p`; `e` alone is `E: e`). mapsolve's ranks are the
rank variables (their bound is the size of the rank they index), and a tensor's dimensions are positional, so
`I[M: p, d]` is a view of `I[m, d]`. The Einsum is named after its output, as in AccelForge.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

from .accelforge_expr import INF, Context, TensorSet, number, tensor_set
from .accelforge_yaml import Refused

_TENSOR = re.compile(r"([A-Za-z_]\w*)\[([^\]]*)\]")
_IDENT = re.compile(r"[A-Za-z_]\w*")

#: Keys of an Einsum entry and of the workload the importer converts.
EINSUM_KEYS = {"einsum", "renames"}
WORKLOAD_KEYS = {"rank_sizes", "bits_per_value", "einsums"}


@dataclass
class Access:
    tensor: str
    ranks: list[str]       # AccelForge rank names (M, D)
    variables: list[str]   # rank variables indexing them (p, d): mapsolve's ranks


@dataclass
class AfEinsum:
    name: str
    output: Access
    inputs: list[Access]
    renames: dict          # role -> TensorSet
    sets: dict = field(default_factory=dict)   # every name an expression in this Einsum's context may use

    @property
    def tensors(self) -> list[str]:
        return [self.output.tensor, *(a.tensor for a in self.inputs)]

    @property
    def variables(self) -> set[str]:
        return {v for a in (self.output, *self.inputs) for v in a.variables}

    @property
    def op(self) -> str:
        reduced = self.variables - set(self.output.variables)
        if len(self.inputs) == 1:
            return "add" if reduced else "copy"
        return "mac" if reduced else "mul"


@dataclass
class AfWorkload:
    einsums: list[AfEinsum]
    bounds: dict[str, int]      # rank variable -> bound
    bits: dict[str, int]        # tensor -> bits per value
    notes: list[str]

    def context(self, e: AfEinsum, nodes=frozenset()) -> Context:
        return Context(sets=e.sets, bits=self.bits, nodes=frozenset(nodes))


def _projection(text: str, where: str) -> tuple[list[str], list[str]]:
    ranks, variables = [], []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise Refused(f"{where}: empty projection entry")
        if ":" in part:
            rank, _, var = (s.strip() for s in part.partition(":"))
            if not _IDENT.fullmatch(rank) or not rank[0].isupper():
                raise Refused(f"{where}: rank name {rank!r} must be an identifier starting in upper case")
        else:
            rank, var = part.upper(), part
            if not part[0].islower():
                raise Refused(f"{where}: rank variable {part!r} must start in lower case")
        if not _IDENT.fullmatch(var):
            raise Refused(f"{where}: index expression {var!r} is not supported (only a rank variable per "
                          f"dimension, no arithmetic)")
        ranks.append(rank)
        variables.append(var)
    if len(set(ranks)) != len(ranks):
        raise Refused(f"{where}: a rank appears twice")
    if len(set(variables)) != len(variables):
        raise Refused(f"{where}: rank variable indexing two dimensions of one tensor is not supported")
    return ranks, variables


def _parse_einsum(text: str, where: str) -> tuple[Access, list[Access]]:
    s = re.sub(r"\s+", "", text)
    m = re.fullmatch(rf"{_TENSOR.pattern}=(.+)", s)
    if not m:
        raise Refused(f"{where}: cannot parse Einsum {text!r} (expected OUT[...] = IN[...] * IN[...])")
    out = Access(m.group(1), *_projection(m.group(2), where))
    rhs = m.group(3)
    pieces = [p for p in rhs.split("*")]
    inputs = []
    for p in pieces:
        pm = _TENSOR.fullmatch(p)
        if not pm:
            raise Refused(f"{where}: right-hand side {rhs!r}: only a product of tensors (A[...] * B[...]) is "
                          f"supported, not {p!r}")
        inputs.append(Access(pm.group(1), *_projection(pm.group(2), where)))
    if len(inputs) > 2:
        raise Refused(f"{where}: an Einsum of {len(inputs)} input tensors is not supported (at most 2)")
    names = [a.tensor for a in (out, *inputs)]
    if len(set(names)) != len(names):
        raise Refused(f"{where}: a tensor appears twice in one Einsum")
    return out, inputs


def convert_workload(doc, source: str) -> AfWorkload:
    if not isinstance(doc, dict) or set(doc) != {"workload"}:
        extra = sorted(set(doc) - {"workload"}) if isinstance(doc, dict) else None
        raise Refused(f"{source}: top-level key {extra[0]!r} is not supported (a workload file holds `workload:`)"
                      if extra else f"{source}: expected a mapping with the key `workload`")
    wl = doc["workload"]
    if not isinstance(wl, dict):
        raise Refused(f"{source}: workload must be a mapping")
    for k in wl:
        if k not in WORKLOAD_KEYS:
            raise Refused(f"{source}: workload.{k} is not supported (the importer converts "
                          f"{', '.join(sorted(WORKLOAD_KEYS))})")
    empty = Context(sets={}, bits={})
    sizes_doc = wl.get("rank_sizes") or {}
    if not isinstance(sizes_doc, dict):
        raise Refused(f"{source}: workload.rank_sizes must be a mapping")
    sizes = {}
    for r, v in sizes_doc.items():
        n = number(v, empty, f"{source}: workload.rank_sizes.{r}")
        if not isinstance(n, (int, Fraction)) or n != int(n) or n < 1:
            raise Refused(f"{source}: workload.rank_sizes.{r}: {v!r} is not a positive integer")
        sizes[str(r)] = int(n)
    entries = wl.get("einsums")
    if not isinstance(entries, list) or not entries:
        raise Refused(f"{source}: workload.einsums must be a non-empty list")
    parsed = []
    for i, entry in enumerate(entries):
        where = f"{source}: workload.einsums[{i}]"
        if not isinstance(entry, dict) or "einsum" not in entry:
            raise Refused(f"{where}: only entries of the form {{einsum: \"OUT[...] = ...\", renames: {{...}}}} "
                          f"are supported")
        for k in entry:
            if k not in EINSUM_KEYS:
                raise Refused(f"{where}.{k} is not supported (the importer converts einsum and renames)")
        if not isinstance(entry["einsum"], str):
            raise Refused(f"{where}.einsum must be a string")
        out, inputs = _parse_einsum(entry["einsum"], where)
        parsed.append((where, out, inputs, entry.get("renames") or {}))

    names = [out.tensor for _, out, _, _ in parsed]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise Refused(f"{source}: tensor {dup[0]} is written by two Einsums (Einsums are named after outputs)")
    produced = set(names)
    consumed = {a.tensor for _, _, ins, _ in parsed for a in ins}
    intermediates = produced & consumed
    users: dict[str, int] = Counter(t for _, out, ins, _ in parsed for t in {out.tensor, *(a.tensor for a in ins)})

    bounds: dict[str, int] = {}
    tensor_ranks: dict[str, list[str]] = {}
    einsums = []
    for where, out, inputs, renames_doc in parsed:
        for a in (out, *inputs):
            seen = tensor_ranks.setdefault(a.tensor, a.ranks)
            if seen != a.ranks:
                raise Refused(f"{where}: tensor {a.tensor} has ranks {a.ranks} here but {seen} elsewhere")
            for rank, var in zip(a.ranks, a.variables):
                if rank not in sizes:
                    raise Refused(f"{where}: rank {rank} of tensor {a.tensor} has no entry in rank_sizes")
                b = bounds.setdefault(var, sizes[rank])
                if b != sizes[rank]:
                    raise Refused(f"{where}: rank variable {var} indexes ranks of sizes {b} and {sizes[rank]} "
                                  f"(mapsolve's ranks have one bound; AccelForge would take the intersection)")
        tensors = [out.tensor, *(a.tensor for a in inputs)]
        universe = frozenset(tensors)

        def ts(items):
            return TensorSet(frozenset(items) & universe, universe)
        sets = {"All": ts(tensors), "Tensors": ts(tensors), "Nothing": ts(()), "Inputs": ts(tensors[1:]),
                "Outputs": ts(tensors[:1]), "Intermediates": ts(t for t in tensors if t in intermediates),
                "Shared": ts(t for t in tensors if users[t] > 1), **{t: ts((t,)) for t in tensors}}
        if not isinstance(renames_doc, dict):
            raise Refused(f"{where}.renames must be a mapping (role: tensor expression)")
        renames = {}
        for role, expr in renames_doc.items():
            if not isinstance(role, str) or not _IDENT.fullmatch(role):
                raise Refused(f"{where}.renames: {role!r} is not a name")
            val = tensor_set(expr, Context(sets=sets, bits={}), f"{where}.renames.{role}")
            if not isinstance(val, TensorSet):
                raise Refused(f"{where}.renames.{role}: X.tensors is not supported in a rename")
            renames[role] = val
        sets.update(renames)
        einsums.append(AfEinsum(out.tensor, out, inputs, renames, sets))

    bits = _bits(wl.get("bits_per_value"), einsums, source)
    return AfWorkload(einsums, bounds, bits, [])


def _bits(doc, einsums: list[AfEinsum], source: str) -> dict[str, int]:
    if doc is None:
        raise Refused(f"{source}: workload.bits_per_value is missing (give e.g. {{All: 16}})")
    if not isinstance(doc, dict):
        raise Refused(f"{source}: workload.bits_per_value must be a mapping (tensor expression: bits)")
    bits: dict[str, int] = {}
    for e in einsums:
        ctx = Context(sets=e.sets, bits={})
        mine: dict[str, int] = {}
        for key, val in doc.items():
            where = f"{source}: workload.bits_per_value.{key}"
            s = tensor_set(str(key), ctx, where)
            if not isinstance(s, TensorSet):
                raise Refused(f"{where}: X.tensors is not supported here")
            n = number(val, ctx, where)
            if n == INF or n != int(n) or not 1 <= n <= 1024:
                raise Refused(f"{where}: {val!r} is not a whole number of bits between 1 and 1024")
            for t in s.items:
                mine[t] = int(n)   # later keys override earlier ones, as in AccelForge's dict order
        for t in e.tensors:
            if t not in mine:
                raise Refused(f"{source}: workload.bits_per_value gives no width for tensor {t}")
            if bits.setdefault(t, mine[t]) != mine[t]:
                raise Refused(f"{source}: workload.bits_per_value gives tensor {t} two widths")
    return bits
