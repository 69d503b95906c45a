"""A sweep's plots: each metric against each swept parameter, and latency against energy over all points."""
from __future__ import annotations

from pathlib import Path


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def plot_rows(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if r.get("energy_fj") is not None]
    params = []
    for r in rows:
        params += [k for k in r if k.startswith("param:") and k not in params]
    written = []
    for p in params:
        others = [q for q in params if q != p]
        for metric, unit in (("energy_fj", "energy (fJ)"), ("latency_cycles", "latency (cycles)")):
            fig, ax = plt.subplots(figsize=(6, 4))
            series: dict = {}
            for r in ok:
                if _num(r.get(p)) is None:
                    continue
                label = ", ".join([r["objective"]] + [f"{q[6:]}={r.get(q)}" for q in others])
                series.setdefault(label, []).append((_num(r[p]), r[metric]))
            for label, pts in series.items():
                pts.sort()
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(p[6:])
            ax.set_ylabel(unit)
            if len(series) <= 8:
                ax.legend(fontsize=7)
            fig.tight_layout()
            path = out / f"{metric.split('_')[0]}_vs_{p[6:].replace('.', '_')}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    if ok:
        fig, ax = plt.subplots(figsize=(6, 4))
        pts = [(r["latency_cycles"], r["energy_fj"]) for r in ok]
        front = [a for a in pts if not any(b != a and b[0] <= a[0] and b[1] <= a[1] for b in pts)]
        ax.scatter([x for x, _ in pts], [y for _, y in pts], color="0.6", label="points")
        ax.scatter([x for x, _ in front], [y for _, y in front], color="C3", label="non-dominated")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("latency (cycles)")
        ax.set_ylabel("energy (fJ)")
        ax.legend()
        fig.tight_layout()
        path = out / "pareto_scatter.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
