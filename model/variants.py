"""Instances whose workload offers variants (alternative cascades, spec.Variant): one plain instance per variant.

The mapspace of an instance with variants is the union of its variants' mapspaces; a mapping maps one of them
(`Mapping.variant`, default the base cascade). Every cost question is asked of that variant's plain instance, so
the evaluator, the solver and the enumerator need no notion of variants below this module."""
from __future__ import annotations

from .result import MappingError
from .spec import Instance


def alternatives(inst: Instance) -> list[tuple[str, Instance]]:
    """(name, plain instance) for the base cascade and every variant; one pair when there are no variants."""
    if not inst.workload.variants:
        return [(inst.workload.base_variant, inst)]
    return [(name, inst.model_copy(update={"workload": wl})) for name, wl in inst.workload.alternatives()]


def select(inst: Instance, name: str | None) -> Instance:
    """The plain instance of variant `name` (None: the base cascade)."""
    if not inst.workload.variants:
        if name is not None and name != inst.workload.base_variant:
            raise MappingError(f"mapping.variant: {name!r}, but the instance has no variants")
        return inst
    for n, alt in alternatives(inst):
        if n == (name or inst.workload.base_variant):
            return alt
    known = [n for n, _ in alternatives(inst)]
    raise MappingError(f"mapping.variant: unknown variant {name!r} (the instance offers {', '.join(known)})")
