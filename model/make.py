"""`mapsolve make`: instances of the papers' workloads on the papers' machines (model/machines.py), with every
source and assumption in the description."""
from __future__ import annotations

from .cascades import CASCADES, cascade
from .machines import ARCHS, E45_SOURCE, MODELS
from .spec import Instance, Variant, Workload


class MakeError(ValueError):
    """A generator argument out of range: the message names it."""


def attention_workload(ranks: dict[str, int], names, batch_ranks=("H",), gqa: bool = False,
                       word_bits: int = 16) -> Workload:
    """The cascades `names` over `ranks` (keys split M1·M0): the 1-pass one first when offered, the others its
    variants."""
    names = list(names)
    first, *others = ["1pass", *[n for n in names if n != "1pass"]] if "1pass" in names else names
    return Workload(ranks=ranks, word_bits=word_bits, einsums=cascade(first, batch_ranks, gqa), base_variant=first,
                    variants=[Variant(name=n, einsums=cascade(n, batch_ranks, gqa)) for n in others])


def attention(model: str, seq: int, batch: int = 1, arch: str = "fusemax-cloud", cascades: str = "all",
              decode: bool = False, tile: int | None = None, objective: str = "energy") -> Instance:
    """One attention layer (all heads) of `model` at sequence length `seq`: prefill (P = M = seq) or decode (one
    query row against seq keys). Keys are split M = M1·M0 with M0 = `tile` (default: the 2-D array's side, or seq
    if smaller); `cascades` is one of 1pass, 2pass, 3pass or all (1pass with the others as variants)."""
    if model not in MODELS:
        raise MakeError(f"--model: unknown model {model!r} (one of {', '.join(MODELS)})")
    if arch not in ARCHS:
        raise MakeError(f"--arch: unknown architecture {arch!r} (one of {', '.join(ARCHS)})")
    if seq < 1 or batch < 1:
        raise MakeError("--seq and --batch must be positive")
    names = list(CASCADES) if cascades == "all" else [cascades]
    if any(n not in CASCADES for n in names):
        raise MakeError(f"--cascade: {cascades!r} is not one of 1pass, 2pass, 3pass, all")
    build, arch_text = ARCHS[arch]
    architecture = build()
    side = architecture.levels[next(i for i, lv in enumerate(architecture.levels) if lv.name == "PE")].mesh.x
    m0 = tile or min(side, seq)
    if seq % m0:
        raise MakeError(f"--seq {seq} is not a multiple of the key tile {m0} (set --tile)")
    heads, dim, kv, source = MODELS[model]
    gqa = kv != heads
    batch_ranks = ("B", "H") if not gqa else ("B",)
    ranks = {"B": batch, "E": dim, "F": dim, "P": 1 if decode else seq, "M1": seq // m0, "M0": m0}
    if gqa:
        ranks.update({"G": kv, "R": heads // kv})
    else:
        ranks["H"] = heads
    wl = attention_workload(ranks, names, batch_ranks, gqa)
    first, *others = [n for n, _ in wl.alternatives()]
    phase = "decode (one query row)" if decode else "prefill"
    text = (f"{source}, one attention layer, batch {batch}, sequence {seq}, {phase}; keys split M = M1·M0 with "
            f"M0 = {m0}; cascades {', '.join([first, *others])} (FuseMax's 1-, 2- and 3-pass; model/cascades.py). "
            f"Projections, masking and RoPE are not modelled. Architecture: {arch_text} Numbers: {E45_SOURCE}."
            if arch != "tpu-v4i" else
            f"{source}, one attention layer, batch {batch}, sequence {seq}, {phase}; keys split M = M1·M0 with "
            f"M0 = {m0}; cascades {', '.join([first, *others])}. Architecture: {arch_text}")
    name = f"{model}_{arch}_{'dec' if decode else 'seq'}{seq}_b{batch}_{cascades}"
    return Instance(name=name, description=text, workload=wl, architecture=architecture,
                    solver={"objective": objective})
