#!/usr/bin/python3
"""Checks of tools/figures.py and tools/compare.py on short real runs, run by meson test.

  check_tools.py figures   [TOOLS_DIR]   every family's PNG/PDF, the GIF, skipped families
  check_tools.py compare   [TOOLS_DIR]   table rows and values against the files, shape checks
  check_tools.py bad-files [TOOLS_DIR]   truncated, incomplete and damaged results: exit 2
  check_tools.py scaling   [TOOLS_DIR]   the scaling figure from a CSV, and a bad CSV

The executable and mpirun come from the environment (VARPRO_EXE, VARPRO_MPIRUN); ranks
from VARPRO_TOOLS_RANKS (default 1). TOOLS_DIR defaults to ../tools beside this file.
"""
import math
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

EXE = os.environ.get("VARPRO_EXE", "")
MPIRUN = os.environ.get("VARPRO_MPIRUN", "mpirun")
RANKS = os.environ.get("VARPRO_TOOLS_RANKS", "1")
PY = "/usr/bin/python3"
EPOCHS = 300

# The short runs: width family (M = 8, 16, 32 at lambda 1e-3), strength family (M = 32,
# lambda 1e-3 and 1e-1), shape family (unbiased M = 32, gamma 100 and two Diracs).
JOB = f"""output: {{out}}
defaults: {{{{N: 256, teacher_width: 256, epochs: {EPOCHS}, saving_step: 10, mmd_points: 101}}}}
runs:
  - regularization: [biased, unbiased]
    student_width: [8, 16, 32]
    lambda: 1.0e-3
    gamma: 100
  - regularization: [biased, unbiased]
    student_width: 32
    lambda: 1.0e-1
    gamma: 100
  - regularization: unbiased
    student_width: 32
    lambda: 1.0e-3
    gamma: -1
"""

# Families each run belongs to, as compare.py must report them
EXPECTED_FAMILIES = {
    "biased-M8-lambda0.001-gamma100-seed0": "width",
    "biased-M16-lambda0.001-gamma100-seed0": "width",
    "biased-M32-lambda0.001-gamma100-seed0": "width+strength",
    "biased-M32-lambda0.1-gamma100-seed0": "strength",
    "unbiased-M8-lambda0.001-gamma100-seed0": "width",
    "unbiased-M16-lambda0.001-gamma100-seed0": "width",
    "unbiased-M32-lambda0.001-gamma100-seed0": "width+strength+shape",
    "unbiased-M32-lambda0.1-gamma100-seed0": "strength",
    "unbiased-M32-lambda0.001-gamma-1-seed0": "shape",
}
# The paper's reference values (MMD, reduced risk) that apply to these runs
EXPECTED_PAPER = {
    "biased-M32-lambda0.001-gamma100-seed0": (0.088, 0.57),
    "unbiased-M32-lambda0.001-gamma100-seed0": (0.10, 0.09),
}
TAG = f"N256-T256-E{EPOCHS}"
EXPECTED_STEMS = [
    f"width-risk-lambda0.001-gamma100-{TAG}",
    f"width-mmd-lambda0.001-gamma100-{TAG}",
    f"strength-mmd-M32-gamma100-{TAG}",
    f"shape-M32-lambda0.001-N256-E{EPOCHS}",
    "teacher-gamma100-T256-seed0",
    "teacher-gamma-1-T2-seed0",
]
ANIMATED = "unbiased-M32-lambda0.001-gamma100-seed0"

failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures += 1
    return ok


def make_results(tmp, job_text=JOB):
    out = os.path.join(tmp, "results")
    job = os.path.join(tmp, "job.yaml")
    with open(job, "w") as f:
        f.write(job_text.format(out=out))
    proc = subprocess.run([MPIRUN, "-n", RANKS, EXE, job], capture_output=True, text=True,
                          timeout=240)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        check(False, f"varpro-rbf exits 0 on the short job (status {proc.returncode})")
        sys.exit(1)
    return out


def tool(tools, name, args):
    proc = subprocess.run([PY, os.path.join(tools, name)] + args, capture_output=True, text=True,
                          timeout=240)
    return proc


def text_attr(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def read_back(results):
    """name -> the values the tools must report, read directly with h5py."""
    runs = {}
    for fn in sorted(os.listdir(results)):
        if not fn.endswith(".h5"):
            continue
        with h5py.File(os.path.join(results, fn), "r") as f:
            a = f.attrs
            runs[text_attr(a["name"])] = {
                "regularization": text_attr(a["regularization"]),
                "M": int(a["student_width"]), "lambda": float(a["lambda"]),
                "gamma": float(a["gamma"]), "epochs": int(a["epochs"]),
                "mmd": f["mmd"][()], "mmd_steps": f["mmd_steps"][()], "loss": f["loss"][()],
                "snapshots": f["snapshot_steps"].shape[0],
            }
    return runs


def magic_ok(path, magic):
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return False
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


PNG = b"\x89PNG\r\n\x1a\n"
PDF = b"%PDF"


# ---- figures ---------------------------------------------------------------------------------

def test_figures(tools):
    with tempfile.TemporaryDirectory() as tmp:
        results = make_results(tmp)
        with open(os.path.join(results, "killed-run.h5.partial"), "wb") as f:
            f.write(b"not HDF5: a partial result must be ignored")
        figdir = os.path.join(tmp, "fig")
        frames = 6
        proc = tool(tools, "figures.py", [results, "--out", figdir, "--animate", ANIMATED,
                                          "--frames", str(frames)])
        print(proc.stdout, proc.stderr)
        check(proc.returncode == 0, f"figures.py exits 0 (status {proc.returncode})")
        check("Traceback" not in proc.stderr, "figures.py prints no traceback")
        for stem in EXPECTED_STEMS:
            check(magic_ok(os.path.join(figdir, stem + ".png"), PNG), f"{stem}.png is a PNG")
            check(magic_ok(os.path.join(figdir, stem + ".pdf"), PDF), f"{stem}.pdf is a PDF")
        gif = os.path.join(figdir, f"animate-{ANIMATED}.gif")
        check(magic_ok(gif, b"GIF8"), "the animation is a GIF")
        expected = {s + e for s in EXPECTED_STEMS for e in (".png", ".pdf")} | {os.path.basename(gif)}
        found = set(os.listdir(figdir)) if os.path.isdir(figdir) else set()
        check(found == expected, f"exactly the expected figures (extra {sorted(found - expected)}, "
                                 f"missing {sorted(expected - found)})")
        try:
            from PIL import Image
        except ImportError:
            print("(python3-pil not importable: GIF frame count not checked)")
        else:
            if os.path.isfile(gif):
                with Image.open(gif) as im:
                    check(im.n_frames == frames, f"the GIF has {frames} frames (has {im.n_frames})")
            with Image.open(os.path.join(figdir, EXPECTED_STEMS[0] + ".png")) as im:
                check(im.size[0] > 1000 and im.size[1] > 400,
                      f"the side-by-side risk figure is wide ({im.size})")

        # Grouping comes from the files' attributes: misleading file names change nothing.
        sub = os.path.join(tmp, "subset")
        os.makedirs(sub)
        for i, name in enumerate(["unbiased-M32-lambda0.1-gamma100-seed0",
                                  "biased-M8-lambda0.001-gamma100-seed0",
                                  "biased-M16-lambda0.001-gamma100-seed0"]):
            shutil.copy(os.path.join(results, name + ".h5"),
                        os.path.join(sub, f"unbiased-M{1024 * (i + 1)}-gamma-1-{i}.h5"))
        figdir2 = os.path.join(tmp, "fig2")
        proc = tool(tools, "figures.py", [sub, "--out", figdir2])
        print(proc.stdout, proc.stderr)
        check(proc.returncode == 0, "figures.py exits 0 on a subset")
        found = sorted(os.listdir(figdir2)) if os.path.isdir(figdir2) else []
        expected = sorted(f"{s}.{e}" for s in (f"width-risk-lambda0.001-gamma100-{TAG}",
                                                f"width-mmd-lambda0.001-gamma100-{TAG}",
                                                "teacher-gamma100-T256-seed0")
                          for e in ("png", "pdf"))
        check(found == expected, f"subset: width and teacher figures only ({found})")
        for kind in ("strength", "shape"):
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(kind + ":")]
            check(len(lines) == 1 and "skipped" in lines[0], f"subset: one line says {kind} is skipped")


# ---- compare ---------------------------------------------------------------------------------

def parse_table(stdout):
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("run "))
    rows = {}
    for ln in lines[start + 1:]:
        if not ln.strip():
            break
        cells = ln.split()
        rows[cells[0]] = {"cells": cells[:13], "note": " ".join(cells[13:])}
    return rows


def parse_checks(stdout):
    out = []
    for ln in stdout.splitlines():
        cells = ln.split()
        if cells and cells[0] in ("PASS", "FAIL", "SKIP"):
            out.append((cells[0], cells[1], cells[2]))
    return sorted(out)


def expected_checks(runs):
    out = []
    for name, r in runs.items():
        m, steps = r["mmd"], r["mmd_steps"]
        if r["regularization"] == "unbiased":
            k = int(np.argmax(steps >= math.ceil(0.15 * r["epochs"])))
            ok = m[-1] < m[0] and (m[0] - m[k]) / (m[0] - m[-1]) > 0.5
            out.append(("PASS" if ok else "FAIL", "unbiased-fast-then-flat", name))
        elif r["lambda"] >= 1e-2:
            i = int(np.argmin(m))
            ok = 0 < i < m.size - 1 and m[-1] >= 1.05 * m[i]
            out.append(("PASS" if ok else "FAIL", "biased-rises-after-min", name))
    finals = [runs[f"unbiased-M{M}-lambda0.001-gamma100-seed0"]["mmd"][-1] for M in (8, 16, 32)]
    ok = finals[0] > finals[1] > finals[2]
    out.append(("PASS" if ok else "FAIL", "width-monotone", f"lambda0.001-gamma100-{TAG}"))
    return sorted(out)


def test_compare(tools):
    with tempfile.TemporaryDirectory() as tmp:
        results = make_results(tmp)
        with open(os.path.join(results, "killed-run.h5.partial"), "wb") as f:
            f.write(b"not HDF5")
        csv_path = os.path.join(tmp, "table.csv")
        proc = tool(tools, "compare.py", [results, "--csv", csv_path])
        print(proc.stdout, proc.stderr)
        check(proc.returncode == 0, f"compare.py exits 0 (status {proc.returncode})")
        runs = read_back(results)
        check(set(runs) == set(EXPECTED_FAMILIES), "the short job gave the nine expected runs")
        rows = parse_table(proc.stdout)
        check(set(rows) == set(runs), f"one table row per result file ({sorted(rows)})")
        for name, r in runs.items():
            if name not in rows:
                continue
            c, note = rows[name]["cells"], rows[name]["note"]
            check(c[1:7] == [r["regularization"], str(r["M"]), f"{r['lambda']:g}",
                             f"{r['gamma']:g}", str(r["epochs"]), EXPECTED_FAMILIES[name]],
                  f"{name}: identity and family {c[1:7]}")
            mmd, risk = float(r["mmd"][-1]), float(r["loss"][-1])
            check(c[7] == f"{mmd:.4g}", f"{name}: final MMD {c[7]} is the file's {mmd:.4g}")
            check(c[10] == f"{risk:.4g}", f"{name}: final risk {c[10]} is the file's {risk:.4g}")
            paper = EXPECTED_PAPER.get(name)
            if paper:
                want = [f"{paper[0]:g}", f"{mmd / paper[0]:.2f}", f"{risk:.4g}", f"{paper[1]:g}",
                        f"{risk / paper[1]:.2f}"]
                check(c[8:13] == want, f"{name}: paper values and ratios {c[8:13]} (want {want})")
            else:
                check(c[8] == "-" and c[9] == "-" and c[11] == "-" and c[12] == "-",
                      f"{name}: no paper value")
            check(f"short (compared at step {EPOCHS})" in note, f"{name}: marked short")

        import csv
        with open(csv_path, newline="") as f:
            table = {row["name"]: row for row in csv.DictReader(f)}
        check(set(table) == set(runs), "the CSV has one row per run")
        for name, r in runs.items():
            row = table.get(name)
            if row is None:
                continue
            check(float(row["final_mmd"]) == float(r["mmd"][-1])
                  and float(row["final_risk"]) == float(r["loss"][-1]),
                  f"{name}: CSV values equal the file's exactly")
            if name in EXPECTED_PAPER:
                check(float(row["paper_mmd"]) == EXPECTED_PAPER[name][0]
                      and math.isclose(float(row["mmd_ratio"]), r["mmd"][-1] / EXPECTED_PAPER[name][0],
                                       rel_tol=1e-12), f"{name}: CSV paper MMD and ratio")

        got, want = parse_checks(proc.stdout), expected_checks(runs)
        check(got == want, f"shape checks {got} match those computed from the files {want}")


# ---- bad files -------------------------------------------------------------------------------

BAD_JOB = """output: {out}
runs:
  - regularization: unbiased
    student_width: 8
    lambda: 1.0e-3
    N: 128
    teacher_width: 128
    epochs: 50
    saving_step: 10
"""


def expect_bad(tools, directory, bad_path, what):
    for name in ("figures.py", "compare.py"):
        args = [directory] + (["--out", os.path.join(directory, "fig")] if name == "figures.py" else [])
        proc = tool(tools, name, args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        check(proc.returncode == 2, f"{name} on {what}: exit 2 (status {proc.returncode})")
        check("Traceback" not in proc.stderr and "Traceback" not in proc.stdout,
              f"{name} on {what}: no traceback")
        check(len(lines) == 1 and bad_path in lines[0] and lines[0].startswith(name + ": error: "),
              f"{name} on {what}: one line naming the file: {lines}")


def test_bad_files(tools):
    with tempfile.TemporaryDirectory() as tmp:
        results = make_results(tmp, BAD_JOB)
        good = os.path.join(results, os.listdir(results)[0])

        def case(label):
            d = os.path.join(tmp, label)
            os.makedirs(d)
            shutil.copy(good, os.path.join(d, "good.h5"))
            return d, os.path.join(d, label + ".h5")

        d, bad = case("truncated")
        with open(good, "rb") as f:
            data = f.read()
        with open(bad, "wb") as f:
            f.write(data[: len(data) // 2])
        expect_bad(tools, d, bad, "a truncated file")

        d, bad = case("incomplete")
        shutil.copy(good, bad)
        with h5py.File(bad, "a") as f:
            del f.attrs["complete"]
        expect_bad(tools, d, bad, "a file without 'complete'")

        d, bad = case("no-mmd")
        shutil.copy(good, bad)
        with h5py.File(bad, "a") as f:
            del f["mmd"]
        expect_bad(tools, d, bad, "a file without the mmd dataset")

        d, bad = case("garbage")
        with open(bad, "wb") as f:
            f.write(b"\0" * 1000)
        expect_bad(tools, d, bad, "a file of zeros")

        # a partial result next to a good one is ignored
        d = os.path.join(tmp, "partial")
        os.makedirs(d)
        shutil.copy(good, os.path.join(d, "good.h5"))
        with open(os.path.join(d, "killed.h5.partial"), "wb") as f:
            f.write(data[: len(data) // 2])
        proc = tool(tools, "compare.py", [d])
        check(proc.returncode == 0 and "killed" not in proc.stdout + proc.stderr,
              f"compare.py ignores *.h5.partial (status {proc.returncode})")


# ---- scaling ---------------------------------------------------------------------------------

def test_scaling(tools):
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = os.path.join(tmp, "strong.csv")
        with open(csv_path, "w") as f:
            f.write("ranks,nodes,time_per_step\n1,1,0.61\n2,1,0.32\n4,1,0.17\n8,2,0.095\n")
        proc = tool(tools, "figures.py", ["--scaling", csv_path, "--out", os.path.join(tmp, "fig")])
        print(proc.stdout, proc.stderr)
        check(proc.returncode == 0, f"figures.py --scaling exits 0 (status {proc.returncode})")
        for ext, magic in (("png", PNG), ("pdf", PDF)):
            check(magic_ok(os.path.join(tmp, "fig", "scaling-strong." + ext), magic),
                  f"scaling-strong.{ext} written")
        bad = os.path.join(tmp, "bad.csv")
        with open(bad, "w") as f:
            f.write("ranks,seconds\n1,0.5\n")
        proc = tool(tools, "figures.py", ["--scaling", bad, "--out", os.path.join(tmp, "fig")])
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        check(proc.returncode == 2 and len(lines) == 1 and "bad.csv" in lines[0]
              and "nodes" in lines[0] and "Traceback" not in proc.stderr,
              f"a CSV without the nodes and time_per_step columns: exit 2, one line ({lines})")


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("figures", "compare", "bad-files", "scaling"):
        print(__doc__)
        return 2
    tools = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(
        os.path.abspath(__file__)), os.pardir, "tools")
    if sys.argv[1] != "scaling" and not (EXE and os.access(EXE, os.X_OK)):
        print("VARPRO_EXE must name the varpro-rbf executable")
        return 1
    {"figures": test_figures, "compare": test_compare, "bad-files": test_bad_files,
     "scaling": test_scaling}[sys.argv[1]](tools)
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
