"""`mapsolve make`: instances of the papers' workloads on the papers' machines (model/machines.py), with every
source and assumption in the description."""
from __future__ import annotations

from .cascades import CASCADES, cascade
from .machines import ARCHS, E45_SOURCE, MODELS
from .spec import Instance, Variant, Workload


class MakeError(ValueError):
    """A generator argument out of range: the message names it."""


def machine(arch: str):
    """(the architecture named `arch`, its description with sources and assumptions)."""
    if arch not in ARCHS:
        raise MakeError(f"--arch: unknown architecture {arch!r} (one of {', '.join(ARCHS)})")
    build, text = ARCHS[arch]
    return build(), text


def attention_workload(ranks: dict[str, int], names, batch_ranks=("H",), gqa: bool = False,
                       word_bits: int = 16) -> Workload:
    """The cascades `names` over `ranks` (keys split M1·M0): the 1-pass one first when offered, the others its
    variants."""
    names = list(names)
    first, *others = ["1pass", *[n for n in names if n != "1pass"]] if "1pass" in names else names
    return Workload(ranks=ranks, word_bits=word_bits, einsums=cascade(first, batch_ranks, gqa), base_variant=first,
                    variants=[Variant(name=n, einsums=cascade(n, batch_ranks, gqa)) for n in others])


def key_tile(architecture, seq: int, tile: int | None = None) -> int:
    """M0, the keys per tile of the 1- and 2-pass cascades: `tile`, or the 2-D array's side (seq if smaller)."""
    side = architecture.levels[next(i for i, lv in enumerate(architecture.levels) if lv.name == "PE")].mesh.x
    m0 = tile or min(side, seq)
    if seq % m0:
        raise MakeError(f"--seq {seq} is not a multiple of the key tile {m0} (set --tile)")
    return m0


def attention(model: str, seq: int, batch: int = 1, arch: str = "fusemax-cloud", cascades: str = "all",
              decode: bool = False, tile: int | None = None, objective: str = "energy") -> Instance:
    """One attention layer (all heads) of `model` at sequence length `seq`: prefill (P = M = seq) or decode (one
    query row against seq keys). Keys are split M = M1·M0 with M0 = `tile` (default: the 2-D array's side, or seq
    if smaller); `cascades` is one of 1pass, 2pass, 3pass or all (1pass with the others as variants)."""
    if model not in MODELS:
        raise MakeError(f"--model: unknown model {model!r} (one of {', '.join(MODELS)})")
    architecture, arch_text = machine(arch)
    if seq < 1 or batch < 1:
        raise MakeError("--seq and --batch must be positive")
    names = list(CASCADES) if cascades == "all" else [cascades]
    if any(n not in CASCADES for n in names):
        raise MakeError(f"--cascade: {cascades!r} is not one of 1pass, 2pass, 3pass, all")
    m0 = key_tile(architecture, seq, tile)
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


MIXES = ("seq", "hidden", "both")


def butterfly_workload(n: int, batch: int, hidden: int, radix: int = 2, mix: str = "seq",
                       weights: str = "learned", word_bits: int = 16) -> Workload:
    """One butterfly mixing layer Y = B_s ⋯ B_1 X over the sequence (n points), the hidden dimension, or both
    (sequence stages, then hidden stages: FNet/FABNet-style 2-D mixing); model/butterfly.py."""
    from .butterfly import butterfly_stages, digits, stage_ranks
    if mix not in MIXES:
        raise MakeError(f"--mix: {mix!r} is not one of {', '.join(MIXES)}")
    if weights not in ("learned", "fft"):
        raise MakeError(f"--weights: {weights!r} is not learned or fft")
    if batch < 1 or hidden < 1 or n < 1:
        raise MakeError("--n, --batch and --hidden must be positive")
    try:
        seq = digits("N", n, radix) if mix in ("seq", "both") else None
        hid = digits("H", hidden, radix) if mix in ("hidden", "both") else None
    except ValueError as exc:
        raise MakeError(f"--n/--hidden/--radix: {exc}") from None
    ranks: dict[str, int] = {"B": batch}
    n_part = list(seq.names) if seq else ["P"]
    h_part = list(hid.names) if hid else ["D"]
    if not seq:
        ranks["P"] = n
    if not hid:
        ranks["D"] = hidden
    einsums = []
    if seq:
        ranks.update(stage_ranks(seq, weights))
        einsums += butterfly_stages("X", "Y" if not hid else "MS", "M", ["B"], seq, h_part, weights)
    if hid:
        ranks.update(stage_ranks(hid, weights))
        einsums += butterfly_stages("MS" if seq else "X", "Y", "M", ["B", *n_part], hid, [], weights)
    return Workload(ranks=ranks, word_bits=word_bits, einsums=einsums)


def butterfly(n: int, batch: int = 1, hidden: int = 64, radix: int = 2, arch: str = "dataflow-array",
              mix: str = "seq", weights: str = "learned", objective: str = "energy") -> Instance:
    """One butterfly layer (`butterfly_workload`) on one of the papers' machines."""
    architecture, arch_text = machine(arch)
    wl = butterfly_workload(n, batch, hidden, radix, mix, weights)
    stages = len(wl.einsums)
    what = {"seq": f"over the sequence ({n} points)", "hidden": f"over the hidden dimension ({hidden})",
            "both": f"over the sequence ({n}) and then the hidden dimension ({hidden})"}[mix]
    kind = ("learned butterfly: every R x R block its own weights, shared over batch and channels" if weights ==
            "learned" else "FFT with fixed twiddles: complex data as a rank C of 2 (real, imaginary), one complex "
            "MAC counted as 4 real MACs, twiddles depending on the digits below the stage")
    text = (f"One butterfly mixing layer {what}, batch {batch}, hidden {hidden}: {stages} stages of radix {radix} "
            f"(the index written as digits, stage l mixing digit l in independent blocks; {kind}). After the "
            f"butterfly-sparsity paper (Wu et al., arXiv 2411.00734, 2024; ../shared/notes/papers.md); "
            f"model/butterfly.py, docs/butterfly.md. Architecture: {arch_text} Numbers: {E45_SOURCE}.")
    name = f"butterfly_{mix}_n{n}_d{hidden}_b{batch}_r{radix}_{weights}_{arch}"
    return Instance(name=name, description=text, workload=wl, architecture=architecture,
                    solver={"objective": objective})


PLACES = ("bottom", "top", "middle")


def hybrid(blocks: int = 4, attention: int = 1, where: str = "bottom", seq: int = 256, hidden: int = 64,
           heads: int = 4, ffn: int = 256, radix: int = 16, batch: int = 1, arch: str = "dataflow-array",
           objective: str = "energy", ffn_mix: str = "dense", ffn_radix: int | None = None) -> Instance:
    """A stack of `blocks` blocks, `attention` of them softmax attention placed at the bottom, top or middle, the
    others butterfly token mixing (model/hybrid.py), mapped as one instance. `ffn_mix` "butterfly" factorises the
    FFNs (hidden digits of `ffn_radix`, default `radix`; --ffn a multiple of --hidden)."""
    from .butterfly import digits
    from .hybrid import hybrid_einsums, hybrid_ranks
    architecture, arch_text = machine(arch)
    if where not in PLACES:
        raise MakeError(f"--where: {where!r} is not one of {', '.join(PLACES)}")
    if not 1 <= blocks <= 64 or not 0 <= attention <= blocks:
        raise MakeError("--blocks must be 1..64 and --attention 0..--blocks")
    if min(batch, hidden, heads, ffn) < 1 or hidden % heads:
        raise MakeError("--batch, --hidden, --heads, --ffn must be positive and --heads must divide --hidden")
    try:
        sd = digits("N", seq, radix)
    except ValueError as exc:
        raise MakeError(f"--seq/--radix: {exc}") from None
    if ffn_mix not in ("dense", "butterfly"):
        raise MakeError(f"--ffn-mix: {ffn_mix!r} is not dense or butterfly")
    hd, ffn_radix = None, ffn_radix or radix
    if ffn_mix == "butterfly":
        if ffn % hidden:
            raise MakeError(f"--ffn {ffn} is not a multiple of --hidden {hidden} (a butterfly FFN stacks G/D "
                            f"butterflies)")
        try:
            hd = digits("D", hidden, ffn_radix)
        except ValueError as exc:
            raise MakeError(f"--hidden/--ffn-radix: {exc}") from None
    start = {"bottom": 0, "top": blocks - attention, "middle": (blocks - attention) // 2}[where]
    kinds = ["attention" if start <= i < start + attention else "butterfly" for i in range(blocks)]
    wl = Workload(ranks=hybrid_ranks(sd, batch, hidden, heads, ffn, attention > 0, hd), word_bits=16,
                  einsums=hybrid_einsums(kinds, sd, hd, ffn // hidden))
    ffn_text = (f"FFN {ffn} with a ReLU (one max per element)" if not hd else
                f"butterfly-factorised FFN {ffn} (hidden as {len(hd.names)} digits of radix {ffn_radix}, "
                f"{ffn // hidden} stacked learned butterflies per projection) with a ReLU (one max per element)")
    text = (f"A hybrid butterfly/attention stack after the butterfly paper's hybrid network (Wu et al., arXiv "
            f"2411.00734, 2024): {blocks} blocks bottom to top {', '.join(kinds)}; sequence {seq} as "
            f"{len(sd.names)} digits of radix {radix}, hidden {hidden}, {heads} heads of {hidden // heads}, "
            f"{ffn_text}, batch {batch}. Attention is FuseMax's 3-pass cascade; every "
            f"block has two residual adds. Not modelled: layer norms, biases, masking, positional encodings, "
            f"GELU. model/hybrid.py, docs/butterfly.md. Architecture: {arch_text} Numbers: {E45_SOURCE}.")
    name = f"hybrid_{blocks}x_att{attention}_{where}_n{seq}_d{hidden}_r{radix}{'_bffn' if hd else ''}_{arch}"
    return Instance(name=name, description=text, workload=wl, architecture=architecture,
                    solver={"objective": objective})
