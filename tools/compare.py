#!/usr/bin/python3
"""Compare varpro-rbf results with the paper's values at step 32000.

    tools/compare.py RESULTS_DIR [--csv FILE]

Reads every complete result RESULTS_DIR/*.h5 (*.h5.partial files are ignored) and prints
one row per run: its identity (regularization, M, lambda, gamma), the families it belongs
to in this directory (grouped by the files' own parameters, as tools/figures.py does), its
final MMD (last `mmd` value, at the final features) and final reduced risk (attribute
`final_reduced_risk`, at the same features, after the last step), the paper's values
for the same (regularization, M, lambda, gamma) and the ratio run / paper. A run shorter
than the paper's 32000 steps is marked "short (compared at step E)"; a run whose N, T,
seed or time scale differ from the paper's says so too.

Then it checks the shapes of the curves described in the paper, each PASS, FAIL or SKIP
(no run it applies to):

  unbiased-fast-then-flat  every unbiased run: more than half of the total decrease of the
                           MMD happens in the first 15% of the steps
  biased-rises-after-min   every biased run with lambda >= 1e-2: the MMD has its minimum
                           inside the run and ends at least 5% above it
  width-monotone           every width family with several unbiased widths: the final
                           unbiased MMD decreases strictly as the width grows

--csv FILE also writes the table, at full precision, as CSV. Exit status 0 (whatever the
checks say), 2 for bad input: a damaged, truncated or incomplete result file gives one
line 'compare.py: error: FILE: problem' on stderr.
"""
import argparse
import csv
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import varpro_results as vr  # noqa: E402

PROG = "compare.py"

# The paper's reference values at step 32000, read off the published figures of
# arXiv:2504.18208, Appendix B (implementations differ in their seeds, so read them as
# +-30%). All the paper's runs use seed 0, 32000 steps, N = T = 4096 (T = 2 for the two
# Diracs) and tau = 2^-10. gamma = -1 stands for the two Diracs.
# Rows: (family, regularization, M, lambda, gamma, MMD, reduced risk or None)
REFERENCE = [
    ("width", "biased", 32, 1e-3, 100, 0.088, 0.57),
    ("width", "biased", 128, 1e-3, 100, 0.021, 0.50),
    ("width", "biased", 512, 1e-3, 100, 0.012, 0.48),
    ("width", "biased", 1024, 1e-3, 100, 0.012, 0.48),
    ("width", "unbiased", 32, 1e-3, 100, 0.10, 0.09),
    ("width", "unbiased", 128, 1e-3, 100, 0.022, 4.5e-3),
    ("width", "unbiased", 512, 1e-3, 100, 0.0078, 1.5e-4),
    ("width", "unbiased", 1024, 1e-3, 100, 0.0056, 3.5e-5),
    ("strength", "biased", 1024, 1e-1, 100, 0.14, None),
    ("strength", "biased", 1024, 1e-2, 100, 0.029, None),
    ("strength", "biased", 1024, 1e-3, 100, 0.012, None),
    ("strength", "unbiased", 1024, 1e-1, 100, 0.011, None),
    ("strength", "unbiased", 1024, 1e-2, 100, 0.0075, None),
    ("strength", "unbiased", 1024, 1e-3, 100, 0.0056, None),
    ("shape", "unbiased", 1024, 1e-2, 100, 0.0075, 1.2e-5),
    ("shape", "unbiased", 1024, 1e-2, -1, 0.12, 2e-2),
]
PAPER_STEPS = 32000
PAPER_N = 4096
PAPER_T = 4096
PAPER_SEED = 0

# Shape checks
EARLY_FRACTION = 0.15     # "falls fast until about step 5000" of 32000
EARLY_SHARE = 0.5         # more than this share of the total MMD decrease by then
STRONG_LAMBDA = 1e-2      # biased runs at this lambda or larger rise after their minimum
RISE_MARGIN = 0.05        # final MMD at least 5% above the minimum

COLUMNS = ["name", "regularization", "M", "lambda", "gamma", "steps", "family",
           "final_mmd", "paper_mmd", "mmd_ratio", "final_risk", "paper_risk", "risk_ratio", "note"]


def same(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def reference_for(run):
    """(paper MMD, paper risk) for the run's (regularization, M, lambda, gamma), or Nones."""
    mmd = risk = None
    for _fam, reg, M, lam, gamma, ref_mmd, ref_risk in REFERENCE:
        if reg != run.regularization or M != run.M or not same(lam, run.lam):
            continue
        if not ((gamma < 0 and run.gamma < 0) or (gamma >= 0 and same(gamma, run.gamma))):
            continue
        mmd = ref_mmd if mmd is None else mmd
        risk = ref_risk if risk is None else risk
    return mmd, risk


def note_for(run, has_ref):
    notes = []
    if run.epochs < PAPER_STEPS:
        notes.append(f"short (compared at step {run.epochs})")
    elif run.epochs > PAPER_STEPS:
        notes.append(f"long (compared at step {run.epochs})")
    if has_ref:
        T_paper = 2 if run.gamma < 0 else PAPER_T
        diff = []
        if run.N != PAPER_N:
            diff.append(f"N={run.N}")
        if run.T != T_paper:
            diff.append(f"T={run.T}")
        if run.seed != PAPER_SEED:
            diff.append(f"seed={run.seed}")
        if run.time_scale != vr.DEFAULT_TIME_SCALE:
            diff.append(f"tau={run.time_scale:g}")
        if run.data_file:
            diff.append("data file")
        if diff:
            notes.append(" ".join(diff) + " (paper: N=T=4096, seed 0)")
    return "; ".join(notes)


def order(r):
    """Rows and checks: gamma >= 0 first, then regularization, lambda, M."""
    return (r.gamma < 0, r.regularization, r.lam, r.M, r.gamma, r.N, r.epochs, r.seed, r.name)


def table_rows(runs):
    fams = {"width": vr.width_families(runs), "strength": vr.strength_families(runs),
            "shape": vr.shape_families(runs)}
    member = {id(r): [] for r in runs}
    for kind in ("width", "strength", "shape"):
        for _tag, group in fams[kind]:
            for r in group:
                if kind not in member[id(r)]:
                    member[id(r)].append(kind)
    rows = []
    for r in sorted(runs, key=order):
        ref_mmd, ref_risk = reference_for(r)
        has_ref = ref_mmd is not None
        rows.append({
            "name": r.name, "regularization": r.regularization, "M": r.M, "lambda": r.lam,
            "gamma": r.gamma, "steps": r.epochs, "family": "+".join(member[id(r)]) or "-",
            "final_mmd": r.final_mmd, "paper_mmd": ref_mmd,
            "mmd_ratio": r.final_mmd / ref_mmd if has_ref else None,
            "final_risk": r.final_risk, "paper_risk": ref_risk,
            "risk_ratio": r.final_risk / ref_risk if ref_risk is not None else None,
            "note": note_for(r, has_ref),
        })
    return rows


def print_table(rows):
    head = ["run", "reg", "M", "lambda", "gamma", "steps", "family",
            "MMD", "paper", "ratio", "risk", "paper", "ratio", "note"]
    body = [[r["name"], r["regularization"], str(r["M"]), f"{r['lambda']:g}", f"{r['gamma']:g}",
             str(r["steps"]), r["family"], vr.fmt(r["final_mmd"], ".4g"), vr.fmt(r["paper_mmd"], "g"),
             vr.fmt(r["mmd_ratio"], ".2f"), vr.fmt(r["final_risk"], ".4g"), vr.fmt(r["paper_risk"], "g"),
             vr.fmt(r["risk_ratio"], ".2f"), r["note"]] for r in rows]
    right = {2, 3, 4, 5, 7, 8, 9, 10, 11, 12}
    for text in vr.table_lines(head, body, right):
        print(text)


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(["" if r[c] is None else (repr(r[c]) if isinstance(r[c], float) else r[c])
                        for c in COLUMNS])


# ---- shape checks ----------------------------------------------------------------------------

def check_fast_then_flat(runs):
    out = []
    for r in sorted((r for r in runs if r.unbiased), key=order):
        if r.mmd.size < 3 or r.epochs < 1:
            out.append(("SKIP", r.name, f"only {r.mmd.size} MMD values"))
            continue
        m0, mE = r.mmd[0], r.mmd[-1]
        k = min(int(np.searchsorted(r.mmd_steps, math.ceil(EARLY_FRACTION * r.epochs))),
                r.mmd.size - 1)
        step = int(r.mmd_steps[k])
        if not mE < m0:
            out.append(("FAIL", r.name, f"the MMD does not decrease ({m0:.4g} -> {mE:.4g})"))
            continue
        share = (m0 - r.mmd[k]) / (m0 - mE)
        verdict = "PASS" if share > EARLY_SHARE else "FAIL"
        out.append((verdict, r.name, f"{100 * share:.0f}% of the decrease {m0:.4g} -> {mE:.4g} "
                    f"by step {step} ({100 * EARLY_FRACTION:.0f}% of {r.epochs})"))
    return out


def check_rises_after_min(runs):
    out = []
    strong = [r for r in runs if not r.unbiased and (r.lam >= STRONG_LAMBDA or same(r.lam, STRONG_LAMBDA))]
    for r in sorted(strong, key=order):
        i = int(np.argmin(r.mmd))
        lo, fin = float(r.mmd[i]), r.final_mmd
        rise = (fin - lo) / lo if lo > 0 else math.inf
        ok = 0 < i < r.mmd.size - 1 and fin >= (1 + RISE_MARGIN) * lo
        out.append(("PASS" if ok else "FAIL", r.name,
                    f"minimum {lo:.4g} at step {int(r.mmd_steps[i])}, final {fin:.4g} "
                    f"({100 * rise:+.1f}%, needs >= +{100 * RISE_MARGIN:.0f}%)"))
    return out


def check_width_monotone(runs):
    out = []
    for tag, group in vr.width_families(runs):
        unb = sorted((r for r in group if r.unbiased), key=lambda r: r.M)
        if len({r.M for r in unb}) < 2:
            continue
        finals = [r.final_mmd for r in unb]
        ok = all(b < a for a, b in zip(finals, finals[1:]))
        out.append(("PASS" if ok else "FAIL", tag,
                    "M = " + "/".join(str(r.M) for r in unb) + ": final MMD "
                    + " / ".join(f"{v:.4g}" for v in finals)))
    return out


CHECKS = [
    ("unbiased-fast-then-flat", "unbiased MMD falls fast, then flattens", check_fast_then_flat,
     "no unbiased run"),
    ("biased-rises-after-min", "biased MMD at lambda >= 1e-2 rises again after its minimum",
     check_rises_after_min, "no biased run with lambda >= 1e-2"),
    ("width-monotone", "a larger width gives a lower final unbiased MMD", check_width_monotone,
     "no width family with several unbiased widths"),
]


def run_checks(runs):
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    short = sum(1 for r in runs if r.epochs < PAPER_STEPS)
    print()
    print("Shape checks")
    if short:
        print(f"  ({short} run(s) shorter than the paper's {PAPER_STEPS} steps: the checks judge them at their own "
              "length, and the paper's shapes need its length, so a FAIL there is expected)")
    for key, what, fn, none in CHECKS:
        results = fn(runs)
        print(f"  {what}:")
        if not results:
            results = [("SKIP", "-", none)]
        for verdict, who, detail in results:
            counts[verdict] += 1
            print(f"    {verdict}  {key}  {who}  {detail}")
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description="Compare results with the paper.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("results_dir", metavar="RESULTS_DIR")
    ap.add_argument("--csv", metavar="FILE", help="also write the table to this CSV file")
    args = ap.parse_args(argv)
    try:
        runs, errors = vr.load_dir(args.results_dir)
        if errors:
            for e in errors:
                print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
        rows = table_rows(runs)
        if args.csv:
            write_csv(rows, args.csv)
    except (vr.BadFile, vr.UsageError) as exc:
        print(f"{PROG}: error: {vr.one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: {vr.printable(exc.filename)}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"Final values beside the paper's at step {PAPER_STEPS} "
          f"(read off the figures of arXiv:2504.18208, App. B; read as +-30%); ratio = run / paper")
    print()
    print_table(rows)
    counts = run_checks(runs)
    refs = sum(1 for r in rows if r["paper_mmd"] is not None)
    print()
    print(f"{len(rows)} run(s), {refs} with a paper value; shape checks: {counts['PASS']} PASS, "
          f"{counts['FAIL']} FAIL, {counts['SKIP']} SKIP")
    if args.csv:
        print("wrote", args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
