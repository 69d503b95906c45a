"""Accelerators and attention workloads of the papers mapsolve is measured against (../shared/notes/papers.md),
as spec objects for `mapsolve make`. Every number says where it comes from; what the papers do not give is an
assumption stated in the description the instance carries.
"""
from __future__ import annotations

from fractions import Fraction

from .spec import Architecture, ComputeUnit, Level, Mesh, OpCost

# 45 nm per-access and per-op energies of FuseMax's artifact (pJ); exp = 6 MACs + 1 add
E45 = {"dram": "62.4", "glb_r": "1.894", "glb_w": "1.763", "reg_r": "0.653", "reg_w": "0.570",
       "mac": "17.16", "add": "8.34", "max": "0.028", "div": "36.25", "exp": "111.3"}
E45_SOURCE = ("energies (45 nm, pJ) from FuseMax's artifact (Nayak et al., MICRO 2024): DRAM 62.4/word; global "
              "buffer 484.97/256 = 1.894 read, 451.30/256 = 1.763 write per word; register 0.653 read, 0.570 "
              "write; MAC 17.16, add 8.34, max 0.028, div 36.25, mul = MAC, exp = 6 MACs + 1 add = 111.3 at 1/7 "
              "per cycle (7 cycles per element, as FuseMax counts it); copy 0 (a register move: its data movement "
              "is counted by the model)")


def words_per_cycle(bytes_per_s: int, mhz: int, word_bits: int) -> Fraction:
    """A bandwidth in bytes per second as words per cycle, exactly."""
    return Fraction(bytes_per_s * 8, word_bits * mhz * 10**6)


def _units(e, lanes2d, lanes1d):
    two = ComputeUnit(name="mac2d", mesh=Mesh(), ops={
        "mac": OpCost(energy_pj=e["mac"]), "add": OpCost(energy_pj=e["add"]), "max": OpCost(energy_pj=e["max"]),
        "exp": OpCost(energy_pj=e["exp"], per_cycle=Fraction(1, 7))})
    one = ComputeUnit(name="vec1d", mesh=Mesh(), ops={
        "max": OpCost(energy_pj=e["max"]), "add": OpCost(energy_pj=e["add"]), "sub": OpCost(energy_pj=e["add"]),
        "mul": OpCost(energy_pj=e["mac"]), "div": OpCost(energy_pj=e["div"]),
        "exp": OpCost(energy_pj=e["exp"], per_cycle=Fraction(1, 7)), "copy": OpCost(energy_pj="0")})
    return [two, one]


def _two_arrays(side: int, lanes: int, glb_words: int, dram_bw: Fraction, glb_bw: int, reg_words: int,
                mhz: int | None, e=E45, cores: int = 1, core_words: int | None = None) -> Architecture:
    """DRAM, a global buffer, optionally `cores` core buffers, and per core a side x side 2-D array (unit mac2d,
    a register file per PE) beside a 1-D array of `lanes` PEs (unit vec1d, a register per lane)."""
    levels = [Level(name="DRAM", read_pj=e["dram"], write_pj=e["dram"], bandwidth=dram_bw),
              Level(name="GLB", read_pj=e["glb_r"], write_pj=e["glb_w"], bandwidth=glb_bw,
                    capacity_words=glb_words)]
    if cores > 1:
        levels.append(Level(name="CORE", read_pj=e["glb_r"], write_pj=e["glb_w"], bandwidth=glb_bw,
                            capacity_words=core_words, mesh=Mesh(x=cores)))
    levels += [Level(name="PE", read_pj=e["reg_r"], write_pj=e["reg_w"], capacity_words=reg_words,
                     mesh=Mesh(x=side, y=side), serves=["mac2d"]),
               Level(name="VR", read_pj=e["reg_r"], write_pj=e["reg_w"], capacity_words=reg_words,
                     mesh=Mesh(x=lanes), serves=["vec1d"])]
    return Architecture(frequency_mhz=mhz, levels=levels, compute_units=_units(e, side, lanes))


GIB = 2**30
ARCHS = {
    "fusemax-cloud": (lambda: _two_arrays(256, 256, 8 * 2**20, words_per_cycle(400 * GIB, 940, 16), 1024, 64, 940),
                      "FuseMax cloud (Nayak et al., MICRO 2024): 256x256 2-D PE array (unit mac2d) beside a 256-PE "
                      "1-D array (unit vec1d), 16 MiB global buffer, 400 GiB/s DRAM at 940 MHz, 16-bit words. "
                      "Assumed: global buffer 1024 words/cycle, 64-word register per PE and lane."),
    "flat-cloud": (lambda: _two_arrays(256, 256, 16 * 2**20, words_per_cycle(400 * GIB, 940, 16), 1024, 64, 940),
                   "FLAT cloud (Kao et al., ASPLOS 2023): 256x256 PE array, 32 MiB on-chip buffer, 400 GiB/s, "
                   "940 MHz, 16-bit words. Assumed: a 256-lane vector unit (vec1d) for softmax (FLAT's SFU), "
                   "FuseMax's energies and buffer bandwidth, 64-word registers."),
    "flat-edge": (lambda: _two_arrays(32, 32, 256 * 2**10, words_per_cycle(50 * GIB, 1000, 16), 128, 64, 1000),
                  "FLAT edge (Kao et al., ASPLOS 2023): 32x32 PE array, 512 KiB buffer, 50 GiB/s, 16-bit words. "
                  "Assumed: 1 GHz clock (not given), a 32-lane vector unit, FuseMax's energies, 128 words/cycle "
                  "buffer bandwidth, 64-word registers."),
    "tileflow-edge": (lambda: _two_arrays(32, 32, 256 * 2**10, Fraction(4), 128, 64, None, cores=4,
                                          core_words=32 * 2**10),
                      "TileFlow edge (Zheng et al., MICRO 2023): 4 cores of 32x32 PEs, 4 x 64 KB core buffers, "
                      "DRAM 4 words/cycle, 16-bit words. Assumed: a 512 KiB shared buffer above the cores, a "
                      "32-lane vector unit per core, FuseMax's energies (core buffers priced as the global "
                      "buffer), 128 words/cycle buffers, 64-word registers."),
    "tileflow-cloud": (lambda: _two_arrays(64, 64, 16 * 2**20, Fraction(4), 512, 64, None, cores=16,
                                           core_words=2**20),
                       "TileFlow cloud (Zheng et al., MICRO 2023): 16 cores of 64x64 PEs, 16 x 2 MB core "
                       "buffers, DRAM 4 words/cycle, 16-bit words. Assumed: a 32 MiB shared buffer above the "
                       "cores, a 64-lane vector unit per core, FuseMax's energies, 512 words/cycle buffers."),
}


def tpu_v4i() -> Architecture:
    """TPU v4i-like (as FFM models it): 4 cores of 128x128 MACs, 128 MB global + 4 MB per core, 614 GB/s at
    1.05 GHz, 8-bit words, 7 nm energies."""
    e = {"dram": "7.03", "glb_r": "1.88", "glb_w": "2.36", "reg_r": "0.249", "reg_w": "0.293", "mac": "0.084",
         "add": "0.084", "max": "0.084", "div": "0.336", "exp": "0.588"}
    arch = _two_arrays(128, 128, 128 * 10**6, words_per_cycle(614 * 10**9, 1050, 8), 2048, 64, 1050, e, cores=4,
                       core_words=4 * 10**6)
    return arch


ARCHS["tpu-v4i"] = (tpu_v4i, "TPU v4i-like as FFM models it (Sheng et al.; FFM arXiv 2602.15166): 4 cores of "
                    "128x128 MACs, 128 MB global buffer + 4 x 4 MB core buffers, 614 GB/s DRAM at 1.05 GHz, 8-bit "
                    "words; 7 nm energies (pJ per 8-bit word) DRAM 7.03, global 1.88 read / 2.36 write, local "
                    "0.249 / 0.293, MAC 0.084. Assumed: add and max cost a MAC, div 4 MACs, exp 7 MACs (at 1/7 "
                    "per cycle), 2048 words/cycle buffers, 64-word registers, a 128-lane vector unit per core.")

def dataflow_array() -> Architecture:
    """A reconfigurable dataflow array in the spirit of the butterfly paper (arXiv 2411.00734): 16 PE groups, each
    with a local buffer, an 8x8 MAC array and an 8-lane vector unit, under a shared buffer and LPDDR4x DRAM."""
    return _two_arrays(8, 8, 2**19, words_per_cycle(51_200_000_000, 1000, 16), 256, 64, 1000, cores=16,
                       core_words=2**14)


ARCHS["dataflow-array"] = (dataflow_array, "A reconfigurable dataflow array after the butterfly paper (Wu et al., "
                           "'Multilayer Dataflow: Orchestrate Butterfly Sparsity to Accelerate Attention "
                           "Computation', arXiv 2411.00734, 2024), whose array parameters are not public: every "
                           "number here is an assumption. 16 PE groups (level CORE, a 32 KiB local buffer each) of "
                           "8x8 MAC PEs (unit mac2d, 64-word registers) beside an 8-lane vector unit (unit vec1d) "
                           "per group: 1024 MACs, 2.05 TMAC/s at 1 GHz; a 1 MiB shared buffer (GLB, 256 "
                           "words/cycle); LPDDR4x DRAM at 51.2 GB/s (the memory of the Jetson Xavier NX the paper "
                           "compares against), 16-bit words. Streaming between PE groups is not modelled as such: "
                           "a fused group's intermediates stay in a buffer (a group's local buffer, or the shared "
                           "one), and cross-group forwarding counts as traffic of that buffer.")

#: name -> (heads, head dim, KV heads, source)
MODELS = {
    "bert": (12, 64, 12, "BERT-base (hidden 768, 12 heads, head dim 64)"),
    "trxl": (16, 64, 16, "Transformer-XL (hidden 1024, 16 heads, head dim 64)"),
    "t5": (8, 64, 8, "T5 (hidden 512, 8 heads, head dim 64)"),
    "xlm": (16, 128, 16, "XLM (hidden 2048, 16 heads, head dim 128)"),
    "gpt3-6.7b": (32, 128, 32, "GPT-3 6.7B (hidden 4096, 32 heads, head dim 128)"),
    "llama2-7b": (32, 128, 32, "Llama-2-7B (32 heads, head dim 128)"),
    "llama3-8b": (32, 128, 8, "Llama-3-8B (32 query heads in 8 groups sharing 8 KV heads, head dim 128)"),
}
