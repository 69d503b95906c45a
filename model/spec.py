"""The instance spec: one self-contained JSON or YAML file describing a workload, an architecture and an objective.

Every model rejects unknown fields, so a typo in a JSON key is an error naming the key, never a silent default.
Numbers that feed the cost model are exact: energies are decimals with at most 3 places (converted to integer
femtojoules), bandwidths and throughputs are fractions ("425/1", 0.5 or 2). A file may write them with units
("50 GiB/s", "1.88 pJ/bit"): model/quantities.py converts those exactly before this spec validates the document.
"""
from __future__ import annotations

from collections import Counter
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Literal, Optional

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints,
                      ValidationError, field_validator, model_validator)

#: Operations that may reduce ranks, and how contributions combine (mac, add: sum; max: max).
REDUCING_OPS = ("mac", "add", "max")
#: The operations the shipped machines name; any other name (gelu, silu, rsqrt, ...) is a custom element-wise op.
KNOWN_OPS = ("mac", "add", "mul", "max", "exp", "sub", "div", "copy")
OP_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

MAX_BOUND = 2**40  # one rank; larger is surely a typo and would overflow the solver's integer tables
MAX_CAPACITY_WORDS = 2**50
MAX_ENERGY_PJ = Decimal(10**9)
MAX_NAME = 200          # characters of a name; longer is surely not a name (and would flood messages)
MAX_RATE_TERM = 2**40   # numerator and denominator of a bandwidth or throughput


def _not_bool(value):
    """JSON's true/false are not numbers here (pydantic would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true or false")
    return value


def _bounded_rate(value: Fraction) -> Fraction:
    """A rate's exact fraction must stay small enough for exact ceilings in 64-bit integers."""
    if value.numerator > MAX_RATE_TERM or value.denominator > MAX_RATE_TERM:
        raise ValueError(f"{_short(str(value))} has a numerator or denominator above 2^40 (use a rate between "
                         f"1/2^40 and 2^40 with terms of at most 2^40, e.g. 1000000007/999999937)")
    return value


class JsonNumber(str):
    """A JSON number with a fraction or exponent, kept as its exact text (model/load.py) so that decimals and
    fractions stay exact; a name field refuses it (else 1.5 would be a tensor named "1.5")."""


def _not_a_number(value):
    if isinstance(value, JsonNumber):
        raise ValueError("a name (a JSON string) is expected, not a number")
    return value


def _unique(items: list) -> list:
    seen: set = set()
    for t in items:
        if t in seen:
            raise ValueError(f"{t} is listed twice")
        seen.add(t)
    return items


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


#: An integer field: JSON true/false are refused.
Int = Annotated[int, BeforeValidator(_not_bool)]
#: A real number field (seconds): true/false refused.
Float = Annotated[float, BeforeValidator(_not_bool)]
#: An exact rate such as a bandwidth: "1/2", 0.5 or 2; true/false refused, terms at most 2^40.
Rate = Annotated[Fraction, BeforeValidator(_not_bool), AfterValidator(_bounded_rate)]
#: A yes/no field: only JSON true or false (not 1, 0 or "yes").
Flag = Annotated[bool, Strict()]
#: A name of a tensor, rank, Einsum, level, unit or variant: non-empty, at most 200 characters.
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME), BeforeValidator(_not_a_number)]
#: Free text (a description): a JSON string, not a number.
Text = Annotated[str, StringConstraints(max_length=100_000), BeforeValidator(_not_a_number)]
#: An operation by name: one of KNOWN_OPS or any custom element-wise op (a letter or _, then letters, digits, _),
#: costed by the compute units' `ops`; only REDUCING_OPS reduce ranks.
Op = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=OP_PATTERN),
               BeforeValidator(_not_a_number)]
#: A list of names that is a set: no name twice.
Names = Annotated[list[Name], AfterValidator(_unique)]


class Strict(BaseModel):
    """Base for every spec model: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Picojoules = Field(ge=0, le=MAX_ENERGY_PJ, decimal_places=3)


# ----------------------------------------------------------------------------------------------------------
# Workload
# ----------------------------------------------------------------------------------------------------------
class TensorRef(Strict):
    """A tensor as one Einsum sees it."""

    tensor: Name = Field(description="Tensor name; the same name in two Einsums is the same data.")
    ranks: list[Name] = Field(description="Ranks indexing the tensor's dimensions, in order (each a workload "
                             "rank, no repeats). An empty list is a scalar. Dimensions are positional: another "
                             "Einsum may name them with other ranks of equal bounds (a view), e.g. K[H,E,P] "
                             "written over P and read by QK as K[H,E,M].")

    running: Optional[Literal["current", "previous"]] = Field(None, description="Only for an input that is the "
                                                             "state of a recurrence (docs/model.md §3, online "
                                                             "reductions): read the state as it is at the current "
                                                             "step of the carried rank, \"current\" (after this "
                                                             "step's update: the producer comes earlier in the "
                                                             "cascade) or \"previous\" (before it: the producer "
                                                             "comes later, or is this Einsum). Omit to read the "
                                                             "final value.")

    @field_validator("ranks")
    @classmethod
    def _no_repeats(cls, ranks: list[str]) -> list[str]:
        if len(set(ranks)) != len(ranks):
            raise ValueError(f"rank repeated in {ranks}")
        return ranks


class Einsum(Strict):
    """One step of the cascade: output[out ranks] = op over the ranks only inputs carry (reduced ranks)."""

    name: Name = Field(description="Unique Einsum name.")
    output: TensorRef = Field(description="The tensor this Einsum writes.")
    inputs: list[TensorRef] = Field(min_length=1, description="Tensors read; a tensor another Einsum writes "
                                    "earlier in the cascade is an intermediate.")
    op: Op = Field(description="Operation per point of the iteration space: mac, add, mul, max, exp, sub, div, "
                   "copy, or any other name (gelu, silu, rsqrt, ...), an element-wise op costed by the compute "
                   "units' `ops`. For ranks the output lacks, the op is also the reduction (mac/add: sum, max: "
                   "max; no other op reduces); element-wise ops have no reduced ranks.")
    recurrence: Optional[Name] = Field(None, description="A rank the output carries state across (an online "
                                      "reduction, docs/model.md §3): the output lacks it, and each step of it "
                                      "replaces the output (the state) with the step's result, which may read "
                                      "the state before the step (an input of the output tensor itself with "
                                      "running \"previous\"). The rank's loops must be temporal (steps run in "
                                      "order); the output has every other rank of the Einsum.")

    @property
    def tensors(self) -> dict[str, list[str]]:
        """Tensor name -> its ranks, output first."""
        return {t.tensor: t.ranks for t in (self.output, *self.inputs)}

    @property
    def space(self) -> list[str]:
        """The iteration space: every rank of any of its tensors, sorted."""
        return sorted(set().union(*(set(r) for r in self.tensors.values())))

    @property
    def reduced(self) -> set[str]:
        """Ranks the output lacks: summed or maxed over, or, for a recurrence, the carried rank."""
        return set(self.space) - set(self.output.ranks)

    def running_inputs(self) -> list[TensorRef]:
        return [t for t in self.inputs if t.running is not None]


class TensorFormat(Strict):
    """How one tensor's elements are stored (docs/model.md §1): e.g. int8 operands with 32-bit partial sums."""

    bits: Optional[Int] = Field(None, ge=1, le=1024, description="Width of an element in bits; omit for the "
                                "workload's word_bits.")
    accumulator_bits: Optional[Int] = Field(None, ge=1, le=1024, description="Width of an output's partial sums: "
                                            "a level that holds partial sums of it stores them at this width; "
                                            "final values narrow to `bits`. Omit for `bits`.")


def _reads_from_outside(einsums) -> dict[str, list[str]]:
    """Tensors a run of Einsums reads that none of them produces (ordinary reads), with their ranks."""
    produced = {e.output.tensor for e in einsums}
    return {t.tensor: t.ranks for e in einsums for t in e.inputs if t.tensor not in produced}


def _produces_for(einsums, after) -> dict[str, list[str]]:
    """Tensors a run produces that the Einsums `after` it read or that nothing in the run reads (final outputs)."""
    read_after = {t.tensor for e in after for t in e.inputs}
    read_inside = {t.tensor for e in einsums for t in e.inputs if t.tensor != e.output.tensor}  # not its own state
    return {e.output.tensor: e.output.ranks for e in einsums
            if e.output.tensor in read_after or e.output.tensor not in read_inside}


class Variant(Strict):
    """Another way to compute part of the cascade (e.g. attention's 1-pass online softmax instead of the 3-pass
    stable one): the mapper proves the optimum over every variant and says which won (docs/model.md §3)."""

    name: Name = Field(description="Name results give this cascade (unique, not base_variant).")
    replaces: Optional[Names] = Field(None, min_length=1, description="A contiguous run of the workload's "
                                          "Einsums this variant replaces; omit for all of them. The run and the "
                                          "replacement read the same tensors from outside and produce the same "
                                          "tensors for the rest of the cascade (and the final outputs).")
    einsums: list[Einsum] = Field(min_length=1, description="The replacement Einsums, in execution order.")


class Workload(Strict):
    """A cascade of Einsums over named ranks with integer bounds."""

    ranks: dict[Name, Int] = Field(description="Rank name -> bound (a positive integer).")
    word_bits: Int = Field(16, ge=1, le=1024, description="Default width of a tensor element in bits, and of a "
                           "level's word (access) unless the level gives access_bits.")
    tensors: dict[Name, TensorFormat] = Field(default_factory=dict, description="Per-tensor widths, where they "
                                             "differ from word_bits (e.g. 8-bit operands, 32-bit accumulators).")
    einsums: list[Einsum] = Field(min_length=1, description="Einsums in execution order (a topological order).")
    variants: list[Variant] = Field(default_factory=list, description="Alternative cascades for a run of the "
                                    "Einsums (or all of them); the mapper proves the optimum over all of them.")
    base_variant: Name = Field("base", description="The name results give the cascade written in "
                              "`einsums` when variants offer others.")

    def alternatives(self) -> list[tuple[str, "Workload"]]:
        """(name, workload without variants) for the base cascade and every variant, in that order."""
        if not self.variants:
            return [(self.base_variant, self)]
        out = [(self.base_variant, self.model_copy(update={"variants": []}))]
        return out + [(v.name, self._substituted(v)) for v in self.variants]

    def _substituted(self, v: "Variant") -> "Workload":
        names = [e.name for e in self.einsums]
        run = v.replaces if v.replaces is not None else names
        for n in run:
            if n not in names:
                raise ValueError(f"replaces unknown einsum {n!r}")
        i = names.index(run[0])
        if names[i:i + len(run)] != list(run):
            raise ValueError(f"replaces must be a contiguous run of einsums in cascade order, got {run}")
        einsums = [*self.einsums[:i], *v.einsums, *self.einsums[i + len(run):]]
        used = {t for e in einsums for t in e.tensors}
        wl = Workload(ranks=dict(self.ranks), word_bits=self.word_bits, einsums=einsums,
                      tensors={t: f for t, f in self.tensors.items() if t in used}, base_variant=v.name)
        after = self.einsums[i + len(run):]
        for what, a, b in (("reads", _reads_from_outside(self.einsums[i:i + len(run)]), _reads_from_outside(v.einsums)),
                           ("produces", _produces_for(self.einsums[i:i + len(run)], after),
                            _produces_for(v.einsums, after))):
            if {t: self._bounds(ranks) for t, ranks in a.items()} != {t: self._bounds(ranks) for t, ranks in b.items()}:
                raise ValueError(f"the variant {what} {sorted(b)} where the Einsums it replaces {what} "
                                 f"{sorted(a)} (same tensors, same bounds)")
        return wl

    def _bounds(self, ranks: list[str]) -> list[int]:
        return [self.ranks[r] for r in ranks]

    def bits(self, tensor: str) -> int:
        """Width of a (final) element of `tensor`."""
        f = self.tensors.get(tensor)
        return f.bits if f is not None and f.bits is not None else self.word_bits

    def accumulator_bits(self, tensor: str) -> int:
        """Width of a partial sum of `tensor`."""
        f = self.tensors.get(tensor)
        return f.accumulator_bits if f is not None and f.accumulator_bits is not None else self.bits(tensor)

    @model_validator(mode="before")
    @classmethod
    def _same_names_same_dimensions(cls, data):
        """A tensor listed with the same rank names in another order names the same dimensions (matched by name,
        as they always were): put every such listing in the order the tensor was first listed, so dimensions are
        positional from here on. Different names are a view, matched by position."""
        if not isinstance(data, dict) or not isinstance(data.get("einsums"), list):
            return data
        first: dict[str, list] = {}

        def fix(ref):
            is_model = isinstance(ref, TensorRef)
            name = ref.tensor if is_model else ref.get("tensor") if isinstance(ref, dict) else None
            ranks = ref.ranks if is_model else ref.get("ranks") if isinstance(ref, dict) else None
            if not isinstance(name, str) or not isinstance(ranks, list):
                return ref
            seen = first.setdefault(name, list(ranks))
            if ranks != seen and sorted(map(str, ranks)) == sorted(map(str, seen)) and len(set(map(str, ranks))) == len(ranks):
                return ref.model_copy(update={"ranks": list(seen)}) if is_model else {**ref, "ranks": list(seen)}
            return ref

        einsums = []
        for e in data["einsums"]:
            if isinstance(e, Einsum):
                e = e.model_copy(update={"output": fix(e.output), "inputs": [fix(i) for i in e.inputs]})
            elif isinstance(e, dict):
                e = {**e, **({"output": fix(e["output"])} if "output" in e else {}),
                     **({"inputs": [fix(i) for i in e["inputs"]]} if isinstance(e.get("inputs"), list) else {})}
            einsums.append(e)
        return {**data, "einsums": einsums}

    @field_validator("ranks")
    @classmethod
    def _positive_bounds(cls, ranks: dict[str, int]) -> dict[str, int]:
        if not ranks:
            raise ValueError("at least one rank is needed")
        for name, bound in ranks.items():
            if bound < 1:
                raise ValueError(f"rank {name}: bound {bound} must be >= 1")
            if bound > MAX_BOUND:
                raise ValueError(f"rank {name}: bound {bound} is too big (max 2^40)")
        return ranks

    @model_validator(mode="after")
    def _consistent(self) -> "Workload":
        names = [e.name for e in self.einsums]
        dup = {n for n, c in Counter(names).items() if c > 1}
        if dup:
            raise ValueError(f"einsum name repeated: {sorted(dup)[0]}")
        tensor_ranks: dict[str, list[str]] = {}
        produced: set[str] = set()
        written_at = {}   # tensor -> index of the (first) Einsum writing it: linear, not a scan per Einsum
        for k, e in enumerate(self.einsums):
            written_at.setdefault(e.output.tensor, k)
        for k, e in enumerate(self.einsums):
            refs = [e.output, *e.inputs]
            for ref in refs:
                for r in ref.ranks:
                    if r not in self.ranks:
                        raise ValueError(f"einsum {e.name}: tensor {ref.tensor} uses rank {r!r}, "
                                         f"which is not in workload.ranks")
                seen = tensor_ranks.setdefault(ref.tensor, ref.ranks)
                if seen is not ref.ranks:   # a view: dimensions are positional, names may differ, bounds not
                    here = [self.ranks[r] for r in ref.ranks]
                    there = [self.ranks[r] for r in seen]
                    if here != there:
                        raise ValueError(f"einsum {e.name}: tensor {ref.tensor} is read as {ref.ranks} (bounds "
                                         f"{here}) but is {seen} (bounds {there}) elsewhere; a tensor's "
                                         f"dimensions are positional and must have equal bounds")
            in_names = [i.tensor for i in e.inputs]
            self_read = [i for i in e.inputs if i.tensor == e.output.tensor]
            if len(set(in_names)) != len(in_names) or any(i.running != "previous" for i in self_read):
                raise ValueError(f"einsum {e.name}: a tensor appears twice" + (
                    " (a recurrence reads its own state with running \"previous\")" if self_read else ""))
            if e.output.running is not None:
                raise ValueError(f"einsum {e.name}: output.running: only an input may read a running state")
            if e.output.tensor in produced:
                raise ValueError(f"einsum {e.name}: tensor {e.output.tensor} is written by two Einsums")
            for i in e.inputs:
                if written_at.get(i.tensor, -1) > k and i.running != "previous":
                    raise ValueError(f"einsum {e.name}: input {i.tensor} is produced by a later Einsum "
                                     f"(einsums must be in execution order; only a running \"previous\" read "
                                     f"of a recurrence may come before it)")
            produced.add(e.output.tensor)
            space = set().union(*(set(r.ranks) for r in refs))
            reduced = space - set(e.output.ranks)
            if e.recurrence is not None:
                if e.recurrence not in space or e.recurrence in e.output.ranks:
                    raise ValueError(f"einsum {e.name}: recurrence rank {e.recurrence!r} must be a rank of its "
                                     f"inputs that the output lacks")
                if reduced != {e.recurrence}:
                    raise ValueError(f"einsum {e.name}: a recurrence's output has every rank but the carried one "
                                     f"{e.recurrence}; it also lacks {sorted(reduced - {e.recurrence})}")
                reduced = set()
            if reduced and e.op not in REDUCING_OPS:
                raise ValueError(f"einsum {e.name}: op {e.op} cannot reduce ranks {sorted(reduced)} "
                                 f"(only mac, add and max reduce)")
            points = 1
            for r in space:
                points *= self.ranks[r]
            if points > 2**62:
                raise ValueError(f"einsum {e.name}: {points} operations is too big (max 2^62)")
        self._check_running(names)
        reducing = {e.output.tensor for e in self.einsums if e.reduced and e.recurrence is None}
        names_v = [v.name for v in self.variants]
        if len(set(names_v)) != len(names_v) or self.base_variant in names_v:
            raise ValueError("variants: names must be unique and differ from base_variant")
        for k, v in enumerate(self.variants):
            try:
                alt = self._substituted(v)
            except ValueError as exc:   # a ValidationError of the substituted cascade too: its first message
                msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                raise ValueError(f"variants[{k}] ({v.name}): {msg.removeprefix('Value error, ')}") from None
            for e in alt.einsums:
                tensor_ranks.update({t.tensor: t.ranks for t in (e.output, *e.inputs)})
                if e.reduced and e.recurrence is None:
                    reducing.add(e.output.tensor)
        for t, f in self.tensors.items():
            if t not in tensor_ranks:
                raise ValueError(f"tensors.{t}: no Einsum uses a tensor {t!r}")
            if f.accumulator_bits is not None and t not in reducing:
                raise ValueError(f"tensors.{t}: accumulator_bits is for outputs of a reduction, and no Einsum "
                                 f"reduces into {t} (a recurrence's state is held at its bits)")
        return self

    def _check_running(self, names: list[str]) -> None:
        """A running read names the state of a recurrence, in an Einsum that iterates the carried rank; "current"
        comes after the producer in the cascade, "previous" before it (or is the producer's own read)."""
        producer = {e.output.tensor: (i, e) for i, e in enumerate(self.einsums)}
        for i, e in enumerate(self.einsums):
            for ref in e.running_inputs():
                j, p = producer.get(ref.tensor, (None, None))
                where = f"einsum {e.name}: input {ref.tensor} (running {ref.running})"
                if p is None or p.recurrence is None:
                    raise ValueError(f"{where}: only the output of a recurrence has a running value")
                if p.recurrence not in e.space:
                    raise ValueError(f"{where}: {e.name} must iterate the carried rank {p.recurrence}")
                if ref.ranks != p.output.ranks:
                    raise ValueError(f"{where}: read as {ref.ranks}, but the state is {p.output.ranks}")
                if ref.running == "current" and j >= i:
                    raise ValueError(f"{where}: the current state is read after its producer {p.name} in the "
                                     f"cascade (use \"previous\" before it)")
                if ref.running == "previous" and j < i:
                    raise ValueError(f"{where}: after {p.name} has updated the state its previous value is gone; "
                                     f"copy it before the update (an Einsum before {p.name} reading it "
                                     f"\"previous\") or read \"current\"")


# ----------------------------------------------------------------------------------------------------------
# Architecture
# ----------------------------------------------------------------------------------------------------------
class Mesh(Strict):
    """A spatial fanout: X x Y instances of the thing below, per instance of the storage level above."""

    x: Int = Field(1, ge=1, le=2**20, description="Instances along the X axis.")
    y: Int = Field(1, ge=1, le=2**20, description="Instances along the Y axis.")
    multicast: Flag = Field(True, description="One read of the parent can feed every instance that needs the "
                            "same data (inputs along an axis the tensor does not depend on).")
    reduction: Flag = Field(True, description="Outputs of instances that share an output element are summed in "
                            "the network and arrive at the parent as one update.")

    @property
    def size(self) -> int:
        return self.x * self.y


class Level(Strict):
    """A storage level. Levels are listed from DRAM inward; each Einsum uses the levels serving its unit."""

    name: Name = Field(description="Unique level name.")
    capacity_words: Optional[Int] = Field(None, ge=0, le=MAX_CAPACITY_WORDS, description="Capacity per "
                                          "instance in words of access_bits; omit both capacities for unbounded "
                                          "(DRAM).")
    capacity_bits: Optional[Int] = Field(None, ge=0, le=MAX_CAPACITY_WORDS * 64, description="Capacity per "
                                         "instance in bits; alternative to words. Tiles of several widths "
                                         "share it bit for bit.")
    access_bits: Optional[Int] = Field(None, ge=1, le=4096, description="Width of one access, the level's word: "
                                       "read_pj and write_pj are per access, capacity_words and bandwidths count "
                                       "such words. Omit for the workload's word_bits. An access carries "
                                       "access_bits // element bits whole elements (docs/model.md §6).")
    read_pj: Decimal = Field(ge=0, le=MAX_ENERGY_PJ, decimal_places=3,
                             description="Energy of reading one word, pJ (at most 3 decimals).")
    write_pj: Decimal = Field(ge=0, le=MAX_ENERGY_PJ, decimal_places=3,
                              description="Energy of writing one word, pJ (at most 3 decimals).")
    bandwidth: Optional[Rate] = Field(None, gt=0, description="Words per cycle per instance, reads and "
                                          "writes together through one port (a fraction such as \"1/2\"); "
                                          "omit for unlimited.")
    read_bandwidth: Optional[Rate] = Field(None, gt=0, description="Words read per cycle per instance "
                                               "through a read port of its own; with write_bandwidth the level "
                                               "has two ports and its transfer time is the slower port's. "
                                               "Omitted (with bandwidth omitted too): reads are unlimited.")
    write_bandwidth: Optional[Rate] = Field(None, gt=0, description="Words written per cycle per "
                                                "instance through a write port of its own (see read_bandwidth).")
    mesh: Mesh = Field(default_factory=Mesh, description="Instances of this level per instance of the level "
                       "above it on an Einsum's path (the spatial fanout from the parent into this level).")
    may_keep: Optional[Names] = Field(None, description="Tensors this level may hold; omit for all.")
    must_keep: Names = Field(default_factory=list, description="Tensors every Einsum using them must keep "
                                 "here (unless fused on chip and this level is outside the fusion level).")
    serves: Optional[Names] = Field(None, description="Compute units whose Einsums use this level; omit "
                                        "for all. Lets a 2-D array and a 1-D array have their own registers.")

    @model_validator(mode="after")
    def _one_capacity(self) -> "Level":
        if self.capacity_words is not None and self.capacity_bits is not None:
            raise ValueError(f"level {self.name}: give capacity_words or capacity_bits, not both")
        if self.bandwidth is not None and (self.read_bandwidth is not None or self.write_bandwidth is not None):
            raise ValueError(f"level {self.name}: give bandwidth (one port for reads and writes) or "
                             f"read_bandwidth/write_bandwidth (separate ports), not both")
        return self

    @property
    def ports(self) -> list[tuple[str, Fraction]]:
        """The bandwidth-limited ports: ("rw", bandwidth) for one port shared by reads and writes, else ("r", …)
        and/or ("w", …) for separate ones. A port named with "r" carries the reads, with "w" the writes."""
        if self.bandwidth is not None:
            return [("rw", self.bandwidth)]
        return [(k, bw) for k, bw in (("r", self.read_bandwidth), ("w", self.write_bandwidth)) if bw is not None]

    def word(self, word_bits: int) -> int:
        """Bits of one access (the level's word): access_bits, or the workload's word_bits."""
        return self.access_bits if self.access_bits is not None else word_bits

    def capacity(self, word_bits: int) -> Optional[int]:
        """Capacity per instance in bits, or None for unbounded (`word_bits`: the workload's default width)."""
        if self.capacity_words is not None:
            return self.capacity_words * self.word(word_bits)
        if self.capacity_bits is not None:
            return self.capacity_bits
        return None


class OpCost(Strict):
    """What one operation costs on a compute unit."""

    energy_pj: Decimal = Field(ge=0, le=MAX_ENERGY_PJ, decimal_places=3, description="Energy per operation, pJ.")
    per_cycle: Rate = Field(Fraction(1), gt=0, description="Operations per cycle per instance "
                                "(a fraction: exp at 1/7 per cycle is \"1/7\").")


class ComputeUnit(Strict):
    """An array of identical arithmetic units below the innermost level that serves it."""

    name: Name = Field(description="Unique unit name.")
    mesh: Mesh = Field(default_factory=Mesh, description="Units per instance of the innermost level serving "
                       "this unit (e.g. 256x256 when the MACs read the global buffer directly).")
    ops: dict[Op, OpCost] = Field(min_length=1, description="Operations this unit can run, by name (custom "
                                  "element-wise ops such as gelu included), with their cost.")


class Architecture(Strict):
    """Storage levels from DRAM inward, and the compute units below them."""

    frequency_mhz: Optional[Decimal] = Field(None, ge=Decimal("0.001"), le=10**6, decimal_places=6,
                                             description="Clock in MHz (0.001 to 10^6, at most 6 decimals), only "
                                             "used to print times.")
    levels: list[Level] = Field(min_length=1, description="From DRAM (index 0, unbounded) inward.")
    compute_units: list[ComputeUnit] = Field(min_length=1, description="Compute units.")

    @model_validator(mode="after")
    def _consistent(self) -> "Architecture":
        names = [lv.name for lv in self.levels]
        if len(set(names)) != len(names):
            raise ValueError("architecture.levels: level names must be unique")
        units = [u.name for u in self.compute_units]
        if len(set(units)) != len(units):
            raise ValueError("architecture.compute_units: unit names must be unique")
        root = self.levels[0]
        if root.capacity_words is not None or root.capacity_bits is not None:
            raise ValueError(f"architecture.levels[0] ({root.name}): the outermost level is the backing store "
                             f"and must be unbounded (omit its capacity)")
        if root.serves is not None:
            raise ValueError(f"architecture.levels[0] ({root.name}): the backing store serves every unit")
        for lv in self.levels:
            for u in lv.serves or []:
                if u not in units:
                    raise ValueError(f"level {lv.name}: serves unknown compute unit {u!r}")
        return self

    def path(self, unit: str) -> list[int]:
        """Indices of the levels an Einsum on `unit` passes through, outermost first."""
        return [i for i, lv in enumerate(self.levels) if lv.serves is None or unit in lv.serves]

    def unit(self, name: str) -> ComputeUnit:
        return next(u for u in self.compute_units if u.name == name)

    def level_index(self, name: str) -> int:
        return next(i for i, lv in enumerate(self.levels) if lv.name == name)


# ----------------------------------------------------------------------------------------------------------
# Objective and solver options
# ----------------------------------------------------------------------------------------------------------
Objective = Literal["energy", "latency", "energy,latency", "latency,energy", "edp"]


class SolverOptions(Strict):
    """Defaults for `mapsolve INSTANCE`; command-line flags override them."""

    objective: Objective = Field("energy", description="What to minimise; pairs are lexicographic.")
    time_limit_s: Float = Field(60.0, gt=0, le=86400, description="Wall-clock limit of the search, seconds.")
    workers: Int = Field(1, ge=1, le=64, description="CP-SAT workers; 1 is deterministic.")
    seed: Int = Field(0, ge=0, le=2**31 - 1, description="CP-SAT random seed.")
    nesting: Literal["tree", "flat"] = Field("tree", description="Fused groups the mapper considers: \"tree\", "
                                             "shared loops may enclose any contiguous run of a group's members "
                                             "(nested fusion, docs/model.md §3); \"flat\", every shared loop "
                                             "encloses the whole group (a smaller mapspace: faster, and small "
                                             "enough to enumerate on more instances).")


class Instance(Strict):
    """A mapping problem: workload, architecture, objective."""

    name: Name = Field(description="Short name.")
    description: Text = Field("", description="Where the numbers come from (cite sources).")
    workload: Workload
    architecture: Architecture
    solver: SolverOptions = Field(default_factory=SolverOptions)

    @model_validator(mode="after")
    def _units_can_run(self) -> "Instance":
        every = [e for _, wl in self.workload.alternatives() for e in wl.einsums]
        for lv in self.architecture.levels:
            known = {t.tensor for e in every for t in (e.output, *e.inputs)}
            for field, names in (("may_keep", lv.may_keep or []), ("must_keep", lv.must_keep)):
                for t in names:
                    if t not in known:
                        raise ValueError(f"level {lv.name}: {field} names unknown tensor {t!r}")
        for e in every:
            if not any(e.op in u.ops for u in self.architecture.compute_units):
                raise ValueError(f"einsum {e.name}: no compute unit can run op {e.op!r}")
        return self


# ----------------------------------------------------------------------------------------------------------
# Mapping
# ----------------------------------------------------------------------------------------------------------
class Loop(Strict):
    """A temporal loop: iterate `factor` times over tiles of `rank`."""

    rank: Name
    factor: Int = Field(ge=1, le=MAX_BOUND)


class SpatialLoop(Strict):
    """A spatial loop: `factor` tiles of `rank` side by side along one mesh axis."""

    rank: Name
    factor: Int = Field(ge=1, le=MAX_BOUND)
    axis: Literal["x", "y"]


class LevelMapping(Strict):
    """What one Einsum does at one storage level of its path."""

    level: Name = Field(description="Level name (every level on the Einsum's path, outermost first).")
    keep: Names = Field(default_factory=list, description="Tensors kept (resident) here; others bypass.")

    temporal: list[Loop] = Field(default_factory=list, description="Temporal loops at this level, outermost "
                                 "first; at most one per rank.")
    spatial: list[SpatialLoop] = Field(default_factory=list, description="Spatial loops (at most one per rank and axis) distributing this "
                                       "level's tile over the instances below it (next level or compute mesh).")


class EinsumMapping(Strict):
    """The loop nest of one Einsum."""

    einsum: Name
    compute_unit: Name
    levels: list[LevelMapping] = Field(description="One entry per level on the unit's path, outermost first. "
                                       "In a fused group, levels above the fusion level carry no loops of their "
                                       "own: the group's shared loops are there.")


class SharedLoop(Strict):
    """A loop Einsums of a fused group run around their own nests, at a level above the fusion level.

    By default every member runs under it. `einsums` narrows it to a contiguous run of members (nested fusion,
    docs/model.md §3): the group's shared loops then form a tree, each loop enclosing a run of members that the
    loops inside it split further."""

    level: Name
    rank: Name = Field(description="The rank the loop iterates in every member not listed in `renames`.")
    factor: Int = Field(ge=1, le=MAX_BOUND)
    renames: dict[Name, Name] = Field(default_factory=dict, description="Member Einsum -> the rank it iterates "
                                    "for this loop, where it names the shared dimension otherwise (a view: "
                                    "QK's M is the key projection's P).")

    einsums: Optional[Names] = Field(None, min_length=1, description="The members this loop encloses: a "
                                         "contiguous run of the group in cascade order. Omit for every member. "
                                         "A loop listed after another that shares a member must enclose a subset "
                                         "of its members (the loops form a tree).")

    def rank_of(self, einsum: str) -> str:
        """The rank this loop iterates in member `einsum`."""
        return self.renames.get(einsum, self.rank)

    def encloses(self, einsum: str) -> bool:
        return self.einsums is None or einsum in self.einsums


class FusedGroup(Strict):
    """Consecutive Einsums run tile by tile under shared outer loops; intermediates stay on chip."""

    einsums: Names = Field(min_length=1, description="Consecutive Einsums in cascade order.")
    fusion_level: Name = Field(description="The on-chip level where the group's intermediates live.")
    shared_loops: list[SharedLoop] = Field(default_factory=list, description="Loops above the fusion level, "
                                           "outermost first (levels in path order), each shared by every member "
                                           "or by the run of members it lists.")


class Mapping(Strict):
    """A complete mapping: one loop nest per Einsum, and the fused groups (Einsums not listed run alone)."""

    variant: Optional[Name] = Field(None, description="For an instance whose workload has variants: the cascade "
                                   "this mapping maps (omit for the base cascade).")
    einsums: list[EinsumMapping]
    groups: list[FusedGroup] = Field(default_factory=list)
