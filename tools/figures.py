#!/usr/bin/python3
"""Figures of the paper's RBF experiments from varpro-rbf result files.

    tools/figures.py RESULTS_DIR [--out DIR] [--animate NAME [--frames K]]
    tools/figures.py --scaling CSV [--out DIR]

Reads every complete result RESULTS_DIR/*.h5 (*.h5.partial files are ignored), groups the
runs into families by the parameters stored in the files, and writes a PNG and a PDF of
each figure to DIR (default RESULTS_DIR/figures):

  width-risk-<tag>     reduced risk against steps per width M: biased (log-log) and
                       unbiased (log-y) side by side
  width-mmd-<tag>      MMD to the teacher against steps per width (unbiased solid,
                       biased dashed, log-y)
  strength-mmd-<tag>   MMD against steps per lambda at the largest width with several
                       lambdas (unbiased solid, biased dashed, log-y)
  shape-<tag>          unbiased runs with gamma >= 0 and gamma < 0 (two Diracs): reduced
                       risk and MMD side by side
  teacher-<tag>        the teacher's features and its output y(x) as a surface on [-2, 2]^2
  animate-<name>.gif   with --animate NAME: the run's saved features over training, as
                       points and as a periodic Gaussian density estimate, K frames

--scaling CSV plots time per step, speedup and parallel efficiency against the rank count
from a CSV file with a header row and the columns

  ranks          MPI ranks (integer >= 1)
  nodes          nodes used (integer >= 1)
  time_per_step  seconds per step (e.g. the result files' time_per_step attribute)
  speedup        optional: computed as t(r0) / t(r) if absent, r0 the smallest rank count
  efficiency     optional: computed as speedup * r0 / r if absent
  label          optional: one curve per label (e.g. the width), each with its own r0

Exit status 0 on success, 2 for bad input (a damaged, truncated or incomplete result
file, a missing directory or run, a bad CSV): one line 'figures.py: error: ...' per
problem on stderr.
"""
import argparse
import csv
import importlib.util
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

import varpro_results as vr  # noqa: E402

PROG = "figures.py"
MAX_POINTS = 4000  # points per curve; longer histories are thinned for drawing


def fmt_real(x):
    """1e-3 as 10^{-3} in mathtext, other numbers with %g."""
    m, e = f"{x:.0e}".split("e")
    if float(m) == 1.0 and float(f"1e{int(e)}") == x:
        return f"10^{{{int(e)}}}"
    return f"{x:g}"


def gamma_label(g):
    return "two Diracs" if g < 0 else rf"$\gamma = {g:g}$"


def thin_linear(n, max_points=MAX_POINTS):
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def thin_log(first, n, max_points=MAX_POINTS):
    """Indices first..n-1, about evenly spaced on a log scale of (index)."""
    if n - first <= max_points:
        return np.arange(first, n)
    return np.unique(np.geomspace(first, n - 1, max_points).round().astype(int))


def positive(y):
    y = np.asarray(y, dtype=float).copy()
    y[~(y > 0)] = np.nan
    return y


def colours(n, cmap="viridis"):
    cm = plt.get_cmap(cmap)
    return [cm(0.1 + 0.75 * i / max(n - 1, 1)) for i in range(n)]


def save(fig, out_dir, stem, written):
    for ext in ("png", "pdf"):
        path = os.path.join(out_dir, f"{stem}.{ext}")
        fig.savefig(path, dpi=150 if ext == "png" else None)
        written.append(path)
    plt.close(fig)


def setting_text(r, with_T=True):
    text = f"N = {r.N}" + (f", T = {r.T}" if with_T else "") + f", {r.epochs} steps"
    if r.seed:
        text += f", seed {r.seed}"
    if r.time_scale != vr.DEFAULT_TIME_SCALE:
        text += rf", $\tau$ = {r.time_scale:g}"
    return text


def plot_risk(ax, r, colour, loglog, label):
    n = r.loss.size
    if n == 0:
        return
    if loglog:  # step 0 has no place on a log axis
        idx = thin_log(1, n)
    else:
        idx = thin_linear(n)
    if idx.size:
        ax.plot(idx, positive(r.loss[idx]), color=colour, label=label, lw=1.4)


def plot_mmd(ax, r, colour, label=None):
    idx = thin_linear(r.mmd.size)
    ax.plot(r.mmd_steps[idx], positive(r.mmd[idx]), color=colour,
            ls="-" if r.unbiased else "--", lw=1.4, label=label)


def style_legend(ax, entries, regs):
    """Colour entries (label, colour) plus line-style entries for the regularizations."""
    handles = [Line2D([], [], color=c, lw=2, label=lab) for lab, c in entries]
    if "unbiased" in regs:
        handles.append(Line2D([], [], color="0.3", ls="-", lw=1.4, label="unbiased"))
    if "biased" in regs:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1.4, label="biased"))
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)


def width_figures(tag, runs, out_dir, written):
    widths = sorted({r.M for r in runs})
    col = dict(zip(widths, colours(len(widths))))
    r0 = runs[0]
    where = rf"$\lambda = {fmt_real(r0.lam)}$, {gamma_label(r0.gamma)}, {setting_text(r0)}"

    regs = [g for g in ("biased", "unbiased") if any(r.regularization == g for r in runs)]
    fig, axes = plt.subplots(1, len(regs), figsize=(5.2 * len(regs), 4.2), squeeze=False)
    for ax, reg in zip(axes[0], regs):
        loglog = reg == "biased"
        for r in runs:
            if r.regularization == reg:
                plot_risk(ax, r, col[r.M], loglog, f"M = {r.M}")
        ax.set_yscale("log")
        if loglog:
            ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("reduced risk")
        ax.set_title(f"{reg} ({'log-log' if loglog else 'log-y'})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Reduced risk by width: " + where, fontsize=10)
    fig.tight_layout()
    save(fig, out_dir, f"width-risk-{tag}", written)

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for r in runs:
        plot_mmd(ax, r, col[r.M])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("MMD to the teacher")
    ax.grid(True, which="both", alpha=0.3)
    style_legend(ax, [(f"M = {M}", col[M]) for M in widths], regs)
    ax.set_title("MMD by width: " + where, fontsize=9)
    fig.tight_layout()
    save(fig, out_dir, f"width-mmd-{tag}", written)


def strength_figure(tag, runs, out_dir, written):
    lams = sorted({r.lam for r in runs})
    col = dict(zip(lams, colours(len(lams), "plasma")))
    r0 = runs[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for r in runs:
        plot_mmd(ax, r, col[r.lam])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("MMD to the teacher")
    ax.grid(True, which="both", alpha=0.3)
    regs = {r.regularization for r in runs}
    style_legend(ax, [(rf"$\lambda = {fmt_real(lam)}$", col[lam]) for lam in lams], regs)
    ax.set_title(f"MMD by regularization strength: M = {r0.M}, {gamma_label(r0.gamma)}, "
                 + setting_text(r0), fontsize=9)
    fig.tight_layout()
    save(fig, out_dir, f"strength-mmd-{tag}", written)


def shape_figure(tag, runs, out_dir, written):
    r0 = runs[0]
    col = colours(len(runs), "coolwarm")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.4, 4.2))
    for r, c in zip(runs, col):
        label = gamma_label(r.gamma) + f" (T = {r.T})"
        plot_risk(ax1, r, c, False, label)
        plot_mmd(ax2, r, c, label)
    for ax, what in ((ax1, "reduced risk"), (ax2, "MMD to the teacher")):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_title("reduced risk (log-y)")
    ax2.set_title("MMD (log-y)")
    fig.suptitle(f"Teacher shape, unbiased: M = {r0.M}, $\\lambda = {fmt_real(r0.lam)}$, "
                 + setting_text(r0, with_T=False), fontsize=10)
    fig.tight_layout()
    save(fig, out_dir, f"shape-{tag}", written)


def teacher_figure(tag, r, out_dir, written, grid=61):
    w = vr.wrap(r.teacher_features)
    xs = np.linspace(-2.0, 2.0, grid)
    X, Y = np.meshgrid(xs, xs)
    Z = vr.teacher_output(w, np.column_stack([X.ravel(), Y.ravel()])).reshape(X.shape)

    fig = plt.figure(figsize=(11, 4.8))
    ax1 = fig.add_subplot(1, 2, 1)
    size = 40 if r.T <= 16 else max(0.5, 400.0 / np.sqrt(r.T))
    ax1.scatter(w[:, 0], w[:, 1], s=size, c="tab:red", alpha=0.6 if r.T > 16 else 1.0,
                edgecolors="none")
    ax1.set_xlim(-2, 2)
    ax1.set_ylim(-2, 2)
    ax1.set_aspect("equal")
    ax1.set_xlabel("$w_1$")
    ax1.set_ylabel("$w_2$")
    ax1.grid(True, alpha=0.3)
    ax1.set_title(f"teacher features (T = {r.T})")

    ax2 = fig.add_subplot(1, 2, 2, projection="3d")
    ax2.plot_surface(X, Y, Z, cmap="viridis", linewidth=0, antialiased=True,
                     rstride=1, cstride=1)
    ax2.set_xlabel("$x_1$")
    ax2.set_ylabel("$x_2$")
    ax2.set_zlabel("$y(x)$")
    ax2.set_title("teacher output y(x)")
    ax2.view_init(elev=35, azim=-60)
    fig.suptitle(f"Teacher: {gamma_label(r.gamma)}, seed {r.seed} (from {r.name})", fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.97, wspace=0.15)
    save(fig, out_dir, f"teacher-{tag}", written)


def periodic_kde(points, grid, bandwidth):
    """Gaussian density on the torus [-2, 2)^2 (minimum-image distances), on grid x grid."""
    xs = -2.0 + 4.0 * (np.arange(grid) + 0.5) / grid
    X, Y = np.meshgrid(xs, xs)
    g = np.column_stack([X.ravel(), Y.ravel()])
    dens = np.zeros(g.shape[0])
    for s in range(0, points.shape[0], 256):
        d = vr.wrap(points[s:s + 256, None, :] - g[None, :, :])
        dens += np.exp(-(d[..., 0] ** 2 + d[..., 1] ** 2) / (2 * bandwidth ** 2)).sum(axis=0)
    dens /= points.shape[0] * 2 * np.pi * bandwidth ** 2
    return dens.reshape(grid, grid)


def animate(run, frames, out_dir, written, bandwidth=0.15, fps=5):
    from matplotlib.animation import PillowWriter
    if importlib.util.find_spec("PIL") is None:
        raise vr.UsageError("--animate needs Pillow (Debian package python3-pil)")
    S = run.snapshot_steps.size
    idx = np.unique(np.linspace(0, S - 1, max(1, min(frames, S))).round().astype(int))
    feats = vr.wrap(run.read_snapshots(idx))
    dens = [periodic_kde(p, 80, bandwidth) for p in feats]
    vmax = max(float(np.percentile(d, 99.5)) for d in dens)
    teacher = vr.wrap(run.teacher_features)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.8))
    ax1.scatter(teacher[:, 0], teacher[:, 1], s=4 if run.T > 16 else 60, c="0.75",
                marker="o" if run.T > 16 else "x", label="teacher", zorder=1)
    pts = ax1.scatter(feats[0][:, 0], feats[0][:, 1], s=max(2.0, 300.0 / np.sqrt(run.M)),
                      c="tab:blue", edgecolors="none", label="student", zorder=2)
    ax1.set_xlim(-2, 2)
    ax1.set_ylim(-2, 2)
    ax1.set_aspect("equal")
    ax1.set_xlabel("$w_1$")
    ax1.set_ylabel("$w_2$")
    ax1.legend(loc="upper left", fontsize=8)
    ax1.set_title("student features")
    im = ax2.imshow(dens[0], origin="lower", extent=(-2, 2, -2, 2), cmap="magma",
                    vmin=0, vmax=vmax, interpolation="bilinear")
    ax2.set_xlabel("$w_1$")
    ax2.set_ylabel("$w_2$")
    ax2.set_title(f"density (periodic Gaussian KDE, h = {bandwidth:g})")
    fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.04)
    title = fig.suptitle("")
    fig.subplots_adjust(left=0.07, right=0.95, top=0.86, wspace=0.25)

    path = os.path.join(out_dir, f"animate-{run.name}.gif")
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, path, dpi=90):
        for k, i in enumerate(idx):
            pts.set_offsets(feats[k])
            im.set_data(dens[k])
            title.set_text(f"{run.name}: step {int(run.snapshot_steps[i])} of {run.epochs}")
            writer.grab_frame()
    plt.close(fig)
    written.append(path)
    return len(idx)


# ---- scaling -------------------------------------------------------------------------------

def read_scaling(path):
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = [(c or "").strip() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except OSError as exc:
        raise vr.UsageError(f"{path}: {exc.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise vr.UsageError(f"{path}: not a CSV file ({vr.one_line(exc)})") from None
    missing = [c for c in ("ranks", "nodes", "time_per_step") if c not in fields]
    if missing:
        raise vr.UsageError(f"{path}: missing column(s) {', '.join(missing)}"
                            " (expected ranks,nodes,time_per_step[,speedup,efficiency,label])")
    if not rows:
        raise vr.UsageError(f"{path}: no data rows")
    out = []
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        try:
            rec = {"ranks": int(row["ranks"]), "nodes": int(row["nodes"]),
                   "time": float(row["time_per_step"]), "label": row.get("label", ""),
                   "speedup": float(row["speedup"]) if row.get("speedup") else None,
                   "efficiency": float(row["efficiency"]) if row.get("efficiency") else None}
        except ValueError:
            raise vr.UsageError(f"{path}:{line}: ranks and nodes must be integers, "
                                "time_per_step, speedup, efficiency numbers") from None
        if rec["ranks"] < 1 or rec["nodes"] < 1 or not rec["time"] > 0:
            raise vr.UsageError(f"{path}:{line}: ranks and nodes must be >= 1, time_per_step > 0")
        out.append(rec)
    return out


def scaling_figure(path, out_dir, written):
    rows = read_scaling(path)
    labels = sorted({r["label"] for r in rows})
    col = dict(zip(labels, colours(len(labels), "tab10" if len(labels) > 1 else "viridis")))
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 4.2))
    ef_max = 1.0
    for lab in labels:
        rs = sorted((r for r in rows if r["label"] == lab), key=lambda r: r["ranks"])
        p = np.array([r["ranks"] for r in rs], dtype=float)
        t = np.array([r["time"] for r in rs])
        p0 = p[0]
        t0 = float(np.median(t[p == p0]))
        sp = np.array([r["speedup"] if r["speedup"] is not None else t0 / r["time"] for r in rs])
        ef = np.array([r["efficiency"] if r["efficiency"] is not None
                       else (t0 / r["time"]) * p0 / r["ranks"] for r in rs])
        name = lab or None
        c = col[lab]
        a1.plot(p, t, "o-", color=c, label=name)
        for r in rs:
            a1.annotate(f"{r['nodes']} node{'s' if r['nodes'] > 1 else ''}", (r["ranks"], r["time"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7, color="0.35")
        a1.plot(p, t0 * p0 / p, ":", color=c, lw=1)
        a2.plot(p, sp, "o-", color=c, label=name)
        a2.plot(p, p / p0, ":", color=c, lw=1)
        a3.plot(p, ef, "o-", color=c, label=name)
        ef_max = max(ef_max, float(np.max(ef)))
    a2.plot([], [], ":", color="0.4", label="ideal")
    a3.axhline(1.0, ls=":", color="0.4", label="ideal")
    a1.set_xscale("log", base=2)
    a1.set_yscale("log")
    a1.set_ylabel("time per step [s]")
    a1.set_title("time per step (dotted: ideal)")
    a2.set_xscale("log", base=2)
    a2.set_yscale("log", base=2)
    a2.set_ylabel("speedup")
    a2.set_title("speedup relative to the smallest rank count", fontsize=11)
    a3.set_xscale("log", base=2)
    a3.set_ylim(0, 1.1 * ef_max)
    a3.set_ylabel("parallel efficiency")
    a3.set_title("parallel efficiency")
    ticks = sorted({r["ranks"] for r in rows})
    a1.yaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    a1.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
    a1.yaxis.set_minor_formatter(mticker.NullFormatter())
    a2.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
    for ax in (a1, a2, a3):
        if len(ticks) <= 12:
            ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        ax.set_xlabel("MPI ranks")
        ax.grid(True, which="both", alpha=0.3)
        if ax is not a1 or len(labels) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    stem = "scaling-" + os.path.splitext(os.path.basename(path))[0]
    save(fig, out_dir, stem, written)


# ---- main ------------------------------------------------------------------------------------

def error(msg):
    print(f"{PROG}: error: {vr.one_line(msg)}", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description="Figures from varpro-rbf result files.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("results_dir", nargs="?", metavar="RESULTS_DIR")
    ap.add_argument("--out", metavar="DIR",
                    help="output directory (default RESULTS_DIR/figures, or the CSV's directory)")
    ap.add_argument("--animate", metavar="NAME", help="also write a GIF of this run's features")
    ap.add_argument("--frames", metavar="K", type=int, default=40,
                    help="frames of the GIF, evenly over the snapshots (default 40)")
    ap.add_argument("--bandwidth", type=float, default=0.15,
                    help="bandwidth of the density estimate in the GIF (default 0.15)")
    ap.add_argument("--scaling", metavar="CSV", help="plot a scaling CSV (see below)")
    args = ap.parse_args(argv)
    if args.results_dir is None and args.scaling is None:
        ap.error("give RESULTS_DIR, --scaling CSV, or both")
    if args.animate and args.results_dir is None:
        ap.error("--animate needs RESULTS_DIR")
    if args.frames < 1 or not args.bandwidth > 0:
        ap.error("--frames must be >= 1 and --bandwidth > 0")

    written = []
    try:
        out_dir = args.out or (os.path.join(args.results_dir, "figures") if args.results_dir
                               else os.path.dirname(os.path.abspath(args.scaling)))
        if args.results_dir is not None:
            runs, errors = vr.load_dir(args.results_dir)
            if errors:
                for e in errors:
                    error(e)
                return 2
            target = None
            if args.animate:
                target = [r for r in runs if r.name == args.animate
                          or os.path.basename(r.path) in (args.animate, args.animate + ".h5")]
                if not target:
                    raise vr.UsageError(f"{args.results_dir}: no complete result named '{args.animate}'")
            os.makedirs(out_dir, exist_ok=True)
            families = [("width", vr.width_families(runs), width_figures),
                        ("strength", vr.strength_families(runs), strength_figure),
                        ("shape", vr.shape_families(runs), shape_figure),
                        ("teacher", vr.teacher_representatives(runs), teacher_figure)]
            for kind, fams, draw in families:
                if not fams:
                    print(f"{kind}: no family in {args.results_dir}, skipped")
                for tag, group in fams:
                    draw(tag, group, out_dir, written)
            if target:
                n = animate(target[0], args.frames, out_dir, written, bandwidth=args.bandwidth)
                print(f"animation: {n} frame(s) of {target[0].name}")
        if args.scaling is not None:
            os.makedirs(out_dir, exist_ok=True)
            scaling_figure(args.scaling, out_dir, written)
    except (vr.BadFile, vr.UsageError) as exc:
        error(exc)
        return 2
    except OSError as exc:
        error(f"{exc.filename or out_dir}: {exc.strerror or exc}")
        return 2
    for p in written:
        print("wrote", p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
