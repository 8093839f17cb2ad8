"""The figures of ``mmhal report``: each function draws one figure from plain arrays and dicts and returns it
as PNG bytes.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas (``matplotlib.figure.Figure``,
never ``pyplot``): nothing opens a display, and the process's global backend is left as it was. matplotlib
is an optional dependency (``pip install "mmhal[report]"``); this module imports it, so import it only after
``report.require_plotting`` has checked that it is there.

Conventions shared by every figure: accuracies and differences are in percentage points; the teacher is
grey (it needs the privileged modalities, so it cannot be deployed); every other method keeps one colour
in every figure (``method_colors``).
"""
from __future__ import annotations

import io
import re
import warnings
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

TEACHER_COLOR = "0.45"
DPI = 100
MAX_ANNOTATED_CELLS = 12  # matrices with more rows or columns than this are drawn without numbers in the cells
MAX_CLASS_LABELS = 40  # more classes than this: class indices on the axes instead of names


def method_colors(names: Sequence[str]) -> dict[str, object]:
    """A fixed colour per method name: grey for the teacher, matplotlib's tab10/tab20 cycle for the rest, in order."""
    import matplotlib

    others = [n for n in names if n != "teacher"]
    cmap = matplotlib.colormaps["tab10" if len(others) <= 10 else "tab20"]
    colors: dict[str, object] = {"teacher": TEACHER_COLOR}
    for i, n in enumerate(others):
        colors[n] = cmap(i % cmap.N)
    return colors


#: the characters the figures drawn so far had no glyph for in matplotlib's font (a class name in Chinese under
#: DejaVu Sans): matplotlib warns of each, with a source line, once per figure; ``mmhal report`` says it once
MISSING_GLYPHS: set[str] = set()
_GLYPH_WARNING = re.compile(r"Glyph (\d+) .*missing from font")


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas, ``DPI`` dots per inch). matplotlib's warnings about characters its font
    lacks are kept back and their characters added to ``MISSING_GLYPHS``; any other warning is passed on."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(buf, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})  # fast; files ~10 % larger
    for w in caught:
        glyph = _GLYPH_WARNING.search(str(w.message))
        if glyph:
            MISSING_GLYPHS.add(chr(int(glyph[1])))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return buf.getvalue()


def _label(name: str, networks: int, recommended: Optional[str]) -> str:
    text = name + (f" ({networks} nets)" if networks > 1 else "")
    return ("\u2605 " + text) if name == recommended else text


def accuracy_figure(rows: list[dict], split: str, recommended: Optional[str], colors: dict) -> bytes:
    """Per-method accuracy with 95 % intervals, validation (left) and the evaluation split (right).

    ``rows``: ``{"name", "networks", "val": summary, "eval": summary}`` with summaries as results.json's
    (``mean``, ``ci95`` or None, ``per_seed``), fractions. A dot per seed, a bar for the interval, a dashed
    line at unimodal's mean."""
    n = len(rows)
    fig = Figure(figsize=(11, 1.2 + 0.42 * n), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(n)[::-1]
    for ax, key, title in ((axes[0], "val", "validation accuracy (chooses what to deploy)"),
                           (axes[1], "eval", f"{split} accuracy (reported)")):
        for yi, r in zip(y, rows):
            s, c = r[key], colors[r["name"]]
            seeds = 100 * np.asarray(s["per_seed"], dtype=float)
            ax.scatter(seeds, np.full(len(seeds), yi) + np.linspace(-0.12, 0.12, len(seeds)), s=12, color=c,
                       alpha=0.55, linewidths=0, zorder=2)
            if s.get("ci95") is not None:
                lo, hi = 100 * s["ci95"][0], 100 * s["ci95"][1]
                ax.plot([lo, hi], [yi, yi], color=c, lw=2.2, zorder=3)
            ax.plot([100 * s["mean"]], [yi], "D", color=c, ms=7, mec="black", mew=0.6, zorder=4)
            ax.annotate(f"{100 * s['mean']:.2f}", (100 * s["mean"], yi), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=8)
        uni = next((r for r in rows if r["name"] == "unimodal"), None)
        if uni is not None:
            ax.axvline(100 * uni[key]["mean"], color=colors["unimodal"], ls="--", lw=1, zorder=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("accuracy (%)")
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.7, n - 0.3)
    axes[0].set_yticks(y, [_label(r["name"], r["networks"], recommended) for r in rows])
    return png_bytes(fig)


def differences_figure(panels: list[dict], names: list[str], recommended: Optional[str], colors: dict) -> bytes:
    """Forest plot of paired differences against unimodal, one panel per comparison.

    ``panels``: ``{"title", "xlabel", "rows": {name: stats.paired dict or None}, "lower_is_better"}``
    (differences as fractions, plotted in points). Filled = significant (95 % interval excludes 0); hollow =
    not; a cross = one seed, no interval."""
    n = len(names)
    fig = Figure(figsize=(4.2 * len(panels) + 2.0, 1.2 + 0.42 * n), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    y = np.arange(n)[::-1]
    for ax, panel in zip(axes, panels):
        for yi, name in zip(y, names):
            vs = panel["rows"].get(name)
            if vs is None:
                continue
            c = colors[name]
            d = 100 * vs["mean_diff"]
            if vs.get("ci95") is None:
                ax.plot([d], [yi], "x", color=c, ms=8, mew=2)
                continue
            lo, hi = 100 * vs["ci95"][0], 100 * vs["ci95"][1]
            ax.plot([lo, hi], [yi, yi], color=c, lw=2.2)
            ax.plot([d], [yi], "o", ms=8, color=c, mfc=c if vs["significant"] else "white", mec=c, mew=2)
            ax.annotate(f"{d:+.2f}{' *' if vs['significant'] else ''}", (d, yi), xytext=(0, 7),
                        textcoords="offset points", ha="center", fontsize=8)
        ax.axvline(0, color="black", lw=1)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(panel["xlabel"])
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.7, n - 0.3)
    axes[0].set_yticks(y, [("\u2605 " + m) if m == recommended else m for m in names])
    return png_bytes(fig)


def _class_ticks(ax, class_names: Sequence[str], axis: str = "x") -> None:
    k = len(class_names)
    labels = list(class_names) if k <= MAX_CLASS_LABELS else [str(i) for i in range(k)]
    step = 1 if k <= MAX_CLASS_LABELS else max(1, k // MAX_CLASS_LABELS)
    pos = np.arange(0, k, step)
    shown = [labels[i] for i in pos]
    if axis == "x":
        rotate = k > 6 or max(map(len, shown), default=0) > 8
        ax.set_xticks(pos, shown, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                      rotation_mode="anchor", fontsize=8)
    else:
        ax.set_yticks(pos, shown, fontsize=8)


def per_class_figure(class_names: Sequence[str], acc: dict[str, np.ndarray], colors: dict) -> bytes:
    """Per-class accuracy (top) and per-class difference against unimodal (bottom).

    ``acc``: name -> (K,) per-class accuracy (fraction, mean over seeds; NaN for a class absent from the
    evaluation split), teacher and unimodal first. Bottom panel: grey bars = the teacher's margin over
    unimodal per class (the gap a student could close), markers = each method's difference."""
    k = len(class_names)
    names = list(acc)
    fig = Figure(figsize=(min(18, max(8, 0.55 * k * max(1, len(names)) / 3 + 3)), 7.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = np.arange(k)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        top.bar(x - 0.4 + width * (i + 0.5), 100 * acc[name], width, color=colors[name], label=name,
                edgecolor="black" if name == "teacher" else "none", linewidth=0.5)
    top.set_ylabel("accuracy (%)")
    top.set_ylim(0, 105)
    top.set_title("per-class accuracy, mean over seeds", fontsize=10)
    top.legend(fontsize=8, ncol=min(len(names), 6), loc="lower left", bbox_to_anchor=(0, 1.08), frameon=False)
    top.grid(axis="y", alpha=0.3)
    if "unimodal" in acc:
        base = acc["unimodal"]
        others = [n for n in names if n not in ("unimodal", "teacher")]
        if "teacher" in acc:
            bottom.bar(x, 100 * (acc["teacher"] - base), 0.8, color=TEACHER_COLOR, alpha=0.35,
                       label="teacher - unimodal (the gap)")
        markers = "osD^v<>PXh*"
        for i, name in enumerate(others):
            off = (i - (len(others) - 1) / 2) * min(0.12, 0.7 / max(1, len(others)))
            bottom.plot(x + off, 100 * (acc[name] - base), markers[i % len(markers)], color=colors[name], ms=6,
                        label=name, mec="black", mew=0.4)
        bottom.axhline(0, color="black", lw=1)
        bottom.set_ylabel("difference vs unimodal (points)")
        bottom.set_title("where the gap is (grey) and what each method recovers (markers)", fontsize=10)
        bottom.legend(fontsize=8, ncol=min(len(others) + 1, 6), loc="best")
        bottom.grid(axis="y", alpha=0.3)
    else:
        bottom.set_axis_off()
        bottom.text(0.5, 0.5, "no unimodal student in this run: no differences to show", ha="center",
                    transform=bottom.transAxes)
    _class_ticks(bottom if "unimodal" in acc else top, class_names)
    return png_bytes(fig)


def _matrix(ax, m: np.ndarray, vmin: float, vmax: float, cmap: str, fmt: str, annotate: bool, dark_top: bool = True):
    """A heat-map of ``m``; with ``annotate`` its values in the cells (white on the dark upper half of a
    sequential map with ``dark_top``, black otherwise)."""
    im = ax.imshow(m, vmin=vmin, vmax=vmax, cmap=cmap, aspect="equal" if m.shape[0] > 1 else "auto")
    if annotate:
        mid = (vmin + vmax) / 2
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v):
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=8,
                        color="white" if dark_top and v > mid else "black")
    return im


def confusion_figure(panels: list[tuple[str, np.ndarray]], class_names: Sequence[str]) -> bytes:
    """Row-normalised confusion matrices (rows = true class, columns = predicted; a row sums to 100 %).

    ``panels``: (title, (K, K) counts) pairs."""
    k = len(class_names)
    side = min(6.5, max(3.2, 0.45 * k + 1.5))
    fig = Figure(figsize=(side * len(panels) + 1.0, side + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    im = None
    for ax, (title, counts) in zip(axes, panels):
        rows = counts.sum(axis=1, keepdims=True)
        frac = np.where(rows > 0, counts / np.where(rows > 0, rows, 1), np.nan)
        im = _matrix(ax, 100 * frac, 0, 100, "Blues", ".0f", k <= MAX_ANNOTATED_CELLS)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        _class_ticks(ax, class_names, "x")
        _class_ticks(ax, class_names, "y")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="% of the true class")
    return png_bytes(fig)


def curves_figure(curves: list[dict], colors: dict) -> bytes:
    """Training and validation curves, one row per trained student job.

    ``curves``: ``{"name", "color_of", "histories": [per-seed list of epoch dicts], "best_epochs": [int]}``;
    an epoch dict holds ``epoch``, its training loss terms, ``val_loss`` and ``val_acc``. Columns: training
    loss terms (thin lines per seed, thick = mean over seeds), validation loss, validation accuracy; dotted
    vertical lines: the epoch each seed selected."""
    n = len(curves)
    height = 0.9 + 2.2 * n
    fig = Figure(figsize=(13, height))  # fixed margins (in inches): a constrained layout of many rows is slow
    fig.subplots_adjust(left=1.35 / 13, right=1 - 0.15 / 13, top=1 - 0.4 / height, bottom=0.55 / height,
                        hspace=0.22, wspace=0.2)
    axes = np.atleast_2d(fig.subplots(n, 3, squeeze=False, sharex=True))
    for row, cur in zip(axes, curves):
        hist = cur["histories"]
        color = colors.get(cur["color_of"], "C0")
        terms = [k for k in hist[0][0] if k not in ("epoch", "val_loss", "val_acc")]
        style = "-o" if max(len(h) for h in hist) <= 3 else "-"
        for j, term in enumerate(terms):
            _series(row[0], hist, term, f"C{j}", style, label=term)
        row[0].legend(fontsize=7, loc="upper right")
        _series(row[1], hist, "val_loss", color, style)
        _series(row[2], hist, "val_acc", color, style, scale=100)
        for ax in row:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            for b in cur["best_epochs"]:
                ax.axvline(b, color="black", ls=":", lw=0.8, alpha=0.6)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(cur["name"], fontsize=10, fontweight="bold")
    axes[0][0].set_title("training loss terms (per epoch)", fontsize=10)
    axes[0][1].set_title("validation loss", fontsize=10)
    axes[0][2].set_title("validation accuracy (%)", fontsize=10)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    return png_bytes(fig)


def _series(ax, histories, key: str, color, style: str, label: Optional[str] = None, scale: float = 1.0) -> None:
    """Thin per-seed lines and their mean (over the seeds that reached each epoch) in one colour."""
    length = max(len(h) for h in histories)
    grid = np.full((len(histories), length), np.nan)
    for i, h in enumerate(histories):
        for j, rec in enumerate(h):
            v = rec.get(key)
            grid[i, j] = np.nan if v is None else scale * float(v)
    epochs = np.arange(1, length + 1)
    for line in grid:
        ax.plot(epochs, line, style, color=color, lw=0.7, ms=2, alpha=0.35)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(grid, axis=0) if np.isfinite(grid).any() else grid[0]
    ax.plot(epochs, mean, style, color=color, lw=2, ms=4, label=label)


def regions_figure(blocks: list[dict], dims: int) -> bytes:
    """Per-region RAD weights and teacher/student agreement on the pyramid grid.

    ``blocks``: ``{"name", "weighting", "levels", "weights": [(rows, cols) per level], "agree": [(rows,
    cols) per level]}``; two rows of heat-maps per block, one column per pyramid level: the mean weight
    relative to uniform (mean weight x R: 1 = the uniform 1/R, 2 = twice it), on a diverging scale centred
    at 1, and the fraction of samples whose region argmax agrees between teacher and student. For 1-D data
    (``dims`` 1) a level is a 1 x n strip."""
    nl = max(len(b["levels"]) for b in blocks)
    fig = Figure(figsize=(3.1 * nl + 2.2, 0.4 + (1.6 if dims <= 1 else 2.9) * 2 * len(blocks)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(2 * len(blocks), nl, squeeze=False))
    relative = [[w * sum(m.size for m in b["weights"]) for w in b["weights"]] for b in blocks]
    spread = max(float(np.nanmax(np.abs(np.concatenate([w.ravel() for w in rel]) - 1))) for rel in relative)
    spread = max(spread, 0.05)
    percent = PercentFormatter(1.0, decimals=0)
    for bi, b in enumerate(blocks):
        for kind, row, mats, lo, hi, cmap, fmt in (
                ("weights", axes[2 * bi], relative[bi], 1 - spread, 1 + spread, "coolwarm", ".2f"),
                ("agree", axes[2 * bi + 1], b["agree"], 0.0, 1.0, "RdYlGn", ".2f")):
            im = None
            for li, ax in enumerate(row):
                if li >= len(mats):
                    ax.set_axis_off()
                    continue
                m = mats[li]
                im = _matrix(ax, m, lo, hi, cmap, fmt, m.size <= 16, dark_top=False)
                ax.set_xticks([])
                ax.set_yticks([])
                if kind == "weights":
                    ax.set_title(f"{b['name']}: level {b['levels'][li]} ({m.shape[0]} x {m.shape[1]})", fontsize=9)
            what = (f"weight / uniform\n({b['weighting']})" if kind == "weights" else "teacher/student\nargmax agreement")
            row[0].set_ylabel(what, fontsize=9)
            fig.colorbar(im, ax=list(row), shrink=0.9, format=percent if kind == "agree" else None)
    return png_bytes(fig)


def roc_det_figure(curves: list[dict], colors: dict) -> bytes:
    """ROC (left) and DET (right) curves of presentation-attack detection, with the operating point of the
    threshold chosen on validation marked on each curve.

    ``curves``: ``{"name", "apcer": (n,), "bpcer": (n,), "point": (apcer, bpcer) or None, "n_attack",
    "n_bona_fide"}`` with rates as fractions (APCER = attacks accepted = false positive rate with bona fide
    positive; BPCER = bona fide rejected = 1 - true positive rate). The DET axes are on the normal deviate
    scale (``scipy.stats.norm.ppf``); rates of 0 or 1 are drawn at half a sample from the edge."""
    from scipy.stats import norm

    fig = Figure(figsize=(12, 5.4), layout="constrained")
    roc, det = fig.subplots(1, 2)
    na = max(c["n_attack"] for c in curves)
    nb = max(c["n_bona_fide"] for c in curves)
    lo_a, lo_b = 0.5 / max(na, 1), 0.5 / max(nb, 1)

    def clip(v, lo):
        return np.clip(np.asarray(v, dtype=float), lo, 1 - lo)

    for c in curves:
        col = colors[c["name"]]
        lw = 2.2 if c.get("highlight") else 1.3
        roc.plot(c["apcer"], 1 - np.asarray(c["bpcer"]), color=col, lw=lw, label=c["name"])
        det.plot(norm.ppf(clip(c["apcer"], lo_a)), norm.ppf(clip(c["bpcer"], lo_b)), color=col, lw=lw,
                 label=c["name"])
        if c.get("point") is not None:
            a, b = c["point"]
            roc.plot([a], [1 - b], "o", color=col, mec="black", ms=7)
            det.plot(norm.ppf(clip([a], lo_a)), norm.ppf(clip([b], lo_b)), "o", color=col, mec="black", ms=7)
    roc.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    roc.set_xlim(-0.01, 1.01)
    roc.set_ylim(-0.01, 1.01)
    roc.set_xlabel("APCER (attacks accepted as bona fide)")
    roc.set_ylabel("1 - BPCER (bona fide accepted)")
    roc.set_title("ROC (dots: the threshold chosen on validation)", fontsize=10)
    roc.grid(alpha=0.3)
    roc.legend(fontsize=8, loc="lower right")
    ticks = np.array([0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99])
    for axis_ticks, lo in ((det.set_xticks, lo_a), (det.set_yticks, lo_b)):
        shown = ticks[(ticks >= lo) & (ticks <= 1 - lo)]
        axis_ticks(norm.ppf(shown), [f"{100 * t:g}" for t in shown])
    det.set_xlim(norm.ppf(lo_a) - 0.1, norm.ppf(1 - lo_a) + 0.1)
    det.set_ylim(norm.ppf(lo_b) - 0.1, norm.ppf(1 - lo_b) + 0.1)
    det.set_xlabel("APCER (%, normal deviate scale)")
    det.set_ylabel("BPCER (%, normal deviate scale)")
    det.set_title("DET (lower left is better)", fontsize=10)
    det.grid(alpha=0.3)
    return png_bytes(fig)
