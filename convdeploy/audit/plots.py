"""The audit's figures (matplotlib, headless): PNG bytes the HTML page embeds.

- accuracy vs batch-1 latency, per model, one marker per target, colour per scheme, 95%
  interval bars, the Pareto front drawn through its cells;
- model file size vs accuracy;
- quantized / float speed-up per target (batch 1);
- thread scaling: batch-1 latency against thread count.
"""
from __future__ import annotations

import io

MARKERS = "osD^v<>pP*Xh"


def figure(ncols: int, width: float = 5.2, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _styles(cells: list[dict]) -> tuple[dict, dict]:
    """One colour per scheme and one marker per target, the same in every figure."""
    import matplotlib

    schemes = list(dict.fromkeys(c["scheme"] for c in cells))
    targets = list(dict.fromkeys(c["target"] for c in cells if not c.get("auto")))
    palette = matplotlib.colormaps["tab10"]
    return ({s: palette(i % 10) for i, s in enumerate(schemes)},
            {t: MARKERS[i % len(MARKERS)] for i, t in enumerate(targets)})


def _models(cells: list[dict]) -> list[str]:
    return list(dict.fromkeys(c["model"] for c in cells))


def _legend(ax, colours: dict, markers: dict) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", ls="", label=s) for s, c in colours.items()]
    handles += [Line2D([], [], color="0.3", marker=m, ls="", label=t, mfc="none")
                for t, m in markers.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.85)


def _per_model(cells: list[dict], keep):
    """A figure with one panel per model over the cells ``keep`` accepts (None: no such cell),
    and the colours and markers every figure shares."""
    rows = [c for c in cells if keep(c)]
    if not rows:
        return None
    colours, markers = _styles(cells)
    models = _models(rows)
    fig, axes = figure(len(models))
    panels = [(ax, model, [c for c in rows if c["model"] == model])
              for ax, model in zip(axes, models)]
    return fig, panels, colours, markers


def accuracy_vs_latency(cells: list[dict]) -> bytes | None:
    made = _per_model(cells, lambda c: c.get("batch_size") == 1 and c.get("latency_median_ms")
                      and c.get("accuracy") is not None)
    if made is None:
        return None
    fig, panels, colours, markers = made
    for ax, model, mine in panels:
        for c in mine:
            low, high = c["accuracy_ci95"]
            y = 100 * c["accuracy"]
            ax.errorbar(c["latency_median_ms"], y, yerr=[[y - 100 * low], [100 * high - y]],
                        fmt=markers[c["target"]], color=colours[c["scheme"]], ms=6,
                        mfc=colours[c["scheme"]] if c.get("threads") == max(
                            x.get("threads") or 1 for x in mine) else "none",
                        elinewidth=0.8, capsize=2, alpha=0.9)
        front = sorted((c for c in mine if c.get("pareto")), key=lambda c: c["latency_median_ms"])
        if front:
            ax.step([c["latency_median_ms"] for c in front], [100 * c["accuracy"] for c in front],
                    where="post", color="black", lw=1.2, ls="--", label="Pareto front")
            for c in front:
                ax.annotate(f"{c['target']} {c['scheme']} {c['threads']}t",
                            (c["latency_median_ms"], 100 * c["accuracy"]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("batch-1 latency, median (ms, log)")
        ax.set_ylabel("top-1 accuracy (%), 95% interval")
        ax.set_title(f"{model}: accuracy vs latency (filled: most threads)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        _legend(ax, colours, markers)
    return png(fig)


def size_vs_accuracy(cells: list[dict]) -> bytes | None:
    made = _per_model(cells, lambda c: c.get("model_size_bytes") and not c.get("auto")
                      and c.get("accuracy") is not None)
    if made is None:
        return None
    fig, panels, colours, markers = made
    for ax, model, mine in panels:
        seen = set()
        for c in mine:
            if (c["scheme"], c["target"]) in seen:
                continue
            seen.add((c["scheme"], c["target"]))
            ax.plot(c["model_size_bytes"] / 1024, 100 * c["accuracy"], markers[c["target"]],
                    color=colours[c["scheme"]], ms=6)
        ax.set_xlabel("model file size (KiB)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{model}: size vs accuracy", fontsize=9)
        ax.grid(alpha=0.3)
        _legend(ax, colours, markers)
    return png(fig)


def speedups(cells: list[dict]) -> bytes | None:
    made = _per_model(cells, lambda c: c.get("speedup_vs_float") and c.get("batch_size") == 1
                      and c["preset"] != "float")
    if made is None:
        return None
    fig, panels, colours, _ = made
    for ax, model, mine in panels:
        groups = list(dict.fromkeys((c["target"], c["threads"]) for c in mine))
        schemes = list(dict.fromkeys(c["scheme"] for c in mine))
        width = 0.8 / max(1, len(schemes))
        for j, scheme in enumerate(schemes):
            xs, ys = [], []
            for i, g in enumerate(groups):
                c = next((c for c in mine if (c["target"], c["threads"]) == g
                          and c["scheme"] == scheme), None)
                if c:
                    xs.append(i + j * width)
                    ys.append(c["speedup_vs_float"])
            ax.bar(xs, ys, width, color=colours[scheme], label=scheme)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
        ax.set_xticklabels([f"{t}\n{n}t" for t, n in groups], fontsize=7)
        ax.set_ylabel("float latency / quantized latency (batch 1)")
        ax.set_title(f"{model}: speed-up over float", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    return png(fig)


def thread_scaling(cells: list[dict]) -> bytes | None:
    if len({c.get("threads") for c in cells if c.get("latency_median_ms")}) < 2:
        return None
    made = _per_model(cells, lambda c: c.get("batch_size") == 1 and c.get("latency_median_ms"))
    if made is None:
        return None
    fig, panels, colours, markers = made
    for ax, model, mine in panels:
        for scheme, target in dict.fromkeys((c["scheme"], c["target"]) for c in mine):
            line = sorted((c for c in mine if c["scheme"] == scheme and c["target"] == target),
                          key=lambda c: c["threads"])
            ax.plot([c["threads"] for c in line], [c["latency_median_ms"] for c in line],
                    marker=markers[target], color=colours[scheme], lw=1)
        ax.set_xlabel("threads")
        ax.set_ylabel("batch-1 latency, median (ms)")
        ax.set_yscale("log")
        ax.set_xticks(sorted({c["threads"] for c in mine}))
        ax.set_title(f"{model}: thread scaling", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        _legend(ax, colours, markers)
    return png(fig)


FIGURES = (("accuracy_vs_latency", "Accuracy vs batch-1 latency, Pareto front dashed",
            accuracy_vs_latency),
           ("size_vs_accuracy", "Model file size vs accuracy", size_vs_accuracy),
           ("speedup", "Quantized / float speed-up per target (batch 1)", speedups),
           ("thread_scaling", "Thread scaling (batch 1)", thread_scaling))
