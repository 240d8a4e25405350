#!/usr/bin/python3
"""Checks of tools/figures.py, tools/compare.py and tools/summary.py on short real runs, run
by meson test.

  check_tools.py figures   [TOOLS_DIR]   every family's PNG/PDF, the GIF, skipped families
  check_tools.py compare   [TOOLS_DIR]   table rows and values against the files, shape checks
  check_tools.py bad-files [TOOLS_DIR]   truncated, incomplete and damaged results: exit 2
  check_tools.py scaling   [TOOLS_DIR]   the scaling figure from a CSV, and a bad CSV
  check_tools.py summary   [TOOLS_DIR]   the summary table and CSV against the files, a run
                                         stopped by a signal, damaged files, usage errors

The executable and mpirun come from the environment (VARPRO_EXE, VARPRO_MPIRUN); ranks
from VARPRO_TOOLS_RANKS (default 1). TOOLS_DIR defaults to ../tools beside this file.
"""
import csv
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EXE, MPIRUN, check, write  # noqa: E402

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


def make_results(tmp, job_text=JOB):
    out = os.path.join(tmp, "results")
    job = os.path.join(tmp, "job.yaml")
    write(job, job_text.format(out=out))
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
                "final_risk": float(a["final_reduced_risk"]),
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
            mmd, risk = float(r["mmd"][-1]), r["final_risk"]
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

        with open(csv_path, newline="") as f:
            table = {row["name"]: row for row in csv.DictReader(f)}
        check(set(table) == set(runs), "the CSV has one row per run")
        for name, r in runs.items():
            row = table.get(name)
            if row is None:
                continue
            check(float(row["final_mmd"]) == float(r["mmd"][-1])
                  and float(row["final_risk"]) == r["final_risk"],
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
        write(csv_path, "ranks,nodes,time_per_step\n1,1,0.61\n2,1,0.32\n4,1,0.17\n8,2,0.095\n")
        proc = tool(tools, "figures.py", ["--scaling", csv_path, "--out", os.path.join(tmp, "fig")])
        print(proc.stdout, proc.stderr)
        check(proc.returncode == 0, f"figures.py --scaling exits 0 (status {proc.returncode})")
        for ext, magic in (("png", PNG), ("pdf", PDF)):
            check(magic_ok(os.path.join(tmp, "fig", "scaling-strong." + ext), magic),
                  f"scaling-strong.{ext} written")
        bad = os.path.join(tmp, "bad.csv")
        write(bad, "ranks,seconds\n1,0.5\n")
        proc = tool(tools, "figures.py", ["--scaling", bad, "--out", os.path.join(tmp, "fig")])
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        check(proc.returncode == 2 and len(lines) == 1 and "bad.csv" in lines[0]
              and "nodes" in lines[0] and "Traceback" not in proc.stderr,
              f"a CSV without the nodes and time_per_step columns: exit 2, one line ({lines})")


# ---- summary ---------------------------------------------------------------------------------

SUMMARY_JOB = """output: {out}
defaults: {{N: 128, teacher_width: 128, epochs: 60, saving_step: 10, mmd_points: 11}}
runs:
  - regularization: [unbiased, biased]
    student_width: [16, 8]
    lambda: 1.0e-3
  - regularization: unbiased
    student_width: 8
    lambda: 1.0e-2
    gamma: -1
"""

# A run long enough to be stopped by SIGUSR1 after its first progress line
STOPPED_JOB = """output: {out}
runs:
  - {{name: stopped, regularization: unbiased, student_width: 8, N: 64, teacher_width: 64,
      epochs: 400000, saving_step: 100, mmd_points: 11}}
"""
SUMMARY_COLUMNS = ["name", "regularization", "M", "lambda", "gamma", "steps", "epochs",
                   "final_reduced_risk", "final_mmd", "wall_time", "steps_per_second", "status",
                   "note"]


def stop_after_progress(job_path):
    """Runs the job, sends SIGUSR1 to mpirun (which forwards it) after the first progress
    line and returns the exit status."""
    cmd = [MPIRUN, "-n", RANKS, EXE, job_path, "--progress", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "%)" in line:
            proc.send_signal(signal.SIGUSR1)
            break
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    print(out[-600:], err[-600:])
    return proc.returncode


def summary_expected(results):
    """name -> CSV row (as strings) the summary must write for each complete result file."""
    rows = {}
    for fn in sorted(os.listdir(results)):
        if not fn.endswith(".h5"):
            continue
        try:
            f = h5py.File(os.path.join(results, fn), "r")
        except OSError:
            continue  # the damaged file
        with f:
            a = f.attrs
            rows[text_attr(a["name"])] = {
                "name": text_attr(a["name"]), "regularization": text_attr(a["regularization"]),
                "M": str(int(a["student_width"])), "lambda": repr(float(a["lambda"])),
                "gamma": repr(float(a["gamma"])), "steps": str(f["loss"].shape[0]),
                "epochs": str(int(a["epochs"])),
                "final_reduced_risk": repr(float(a["final_reduced_risk"])),
                "final_mmd": repr(float(a["final_mmd"])), "wall_time": repr(float(a["wall_time"])),
                "steps_per_second": repr(1.0 / float(a["time_per_step"])),
                "status": "complete", "note": "",
            }
    return rows


def parse_summary(stdout):
    """name -> the cells of the printed table (the note joined back into one cell)."""
    lines = stdout.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("name ")), len(lines))
    rows = []
    for ln in lines[start + 1:]:
        if not ln.strip():
            break
        cells = ln.split()
        rows.append(cells[:12] + [" ".join(cells[12:])])
    return rows


def test_summary(tools):
    with tempfile.TemporaryDirectory() as tmp:
        results = make_results(tmp, SUMMARY_JOB)
        expected = summary_expected(results)
        check(len(expected) == 5, f"the short job gave five results ({sorted(expected)})")

        # A real partial result: a run stopped by a signal, left as stopped.h5.partial
        stop_job = os.path.join(tmp, "stop.yaml")
        write(stop_job, STOPPED_JOB.format(out=results))
        code = stop_after_progress(stop_job)
        stopped = os.path.join(results, "stopped.h5.partial")
        check(code == 4 and os.path.isfile(stopped),
              f"the run stopped by SIGUSR1 exits 4 and leaves its partial file (status {code})")
        with h5py.File(stopped, "r") as f:
            stopped_steps = f["loss"].shape[0]
            stopped_snapshot = int(f["snapshot_steps"][-1])
            stopped_checkpoint = max(int(c) for c in f["checkpoint_steps"][()])
        check(0 < stopped_steps < 400000, f"the stopped run reached step {stopped_steps}")

        # A partial file that is not HDF5, and a complete result cut in half
        with open(os.path.join(results, "garbage.h5.partial"), "wb") as f:
            f.write(b"not HDF5: cut short before its first flush")
        good = os.path.join(results, "unbiased-M8-lambda0.001-gamma100-seed0.h5")
        truncated = os.path.join(results, "truncated.h5")
        with open(good, "rb") as f:
            data = f.read()
        with open(truncated, "wb") as f:
            f.write(data[: len(data) // 2])

        proc = tool(tools, "summary.py", [results])
        print(proc.stdout, proc.stderr)
        check(proc.returncode == 0,
              f"summary.py exits 0 with a damaged file (status {proc.returncode})")
        check("Traceback" not in proc.stdout + proc.stderr, "summary.py prints no traceback")
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        check(len(lines) == 1 and lines[0].startswith(f"summary.py: error: {truncated}: "),
              f"one error line naming the truncated file ({lines})")

        # The CSV, at full precision, against the files read back with h5py
        csv_path = os.path.join(results, "summary.csv")
        check(os.path.isfile(csv_path), "the CSV goes to RESULTS_DIR/summary.csv by default")
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            header, table = reader.fieldnames, list(reader)
        check(header == SUMMARY_COLUMNS, f"CSV columns {header}")
        names = [r["name"] for r in table]
        want_names = sorted(list(expected) + ["garbage", "stopped", "truncated"],
                            key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n) if t])
        check(names == want_names, f"one CSV row per file, sorted by name ({names})")
        by_name = {r["name"]: r for r in table}
        for name, want in expected.items():
            got = by_name.get(name)
            check(got == want, f"{name}: CSV row equals the file's values ({got} want {want})")
        got = by_name.get("stopped", {})
        check(got.get("status") == "partial" and got.get("steps") == str(stopped_steps)
              and got.get("epochs") == "400000" and got.get("M") == "8"
              and got.get("regularization") == "unbiased"
              and all(got.get(c) == "" for c in ("final_reduced_risk", "final_mmd", "wall_time",
                                                 "steps_per_second"))
              and got.get("note") == f"checkpoint at step {stopped_checkpoint}, last snapshot at step {stopped_snapshot}"
              and stopped_checkpoint == stopped_steps,
              f"stopped: partial at step {stopped_steps}, its checkpoint (the stop's) there, last snapshot "
              f"{stopped_snapshot} ({got})")
        got = by_name.get("garbage", {})
        check(got.get("status") == "partial" and got.get("steps") == ""
              and got.get("note", "").startswith("cannot be read: "),
              f"garbage: partial, step unknown, the reason in the note ({got})")
        got = by_name.get("truncated", {})
        check(got.get("status") == "unreadable" and got.get("steps") == ""
              and "truncated file" in got.get("note", ""),
              f"truncated: unreadable, with the reason ({got})")

        # The printed table: same rows, same order, values as formatted from the files
        rows = parse_summary(proc.stdout)
        check([c[0] for c in rows] == want_names,
              f"table rows sorted by name ({[c[0] for c in rows]})")
        for c in rows:
            want = expected.get(c[0])
            if want is None:
                continue
            risk, mmd = float(want["final_reduced_risk"]), float(want["final_mmd"])
            check(c[1:9] + [c[11]] == [want["regularization"], want["M"], f"{float(want['lambda']):g}",
                                       f"{float(want['gamma']):g}", want["steps"], want["epochs"],
                                       f"{risk:.4g}", f"{mmd:.4g}", "complete"],
                  f"{c[0]}: table cells {c[1:9] + [c[11]]}")
            check(math.isclose(float(c[9]), float(want["wall_time"]), rel_tol=1e-3)
                  and math.isclose(float(c[10]), float(want["steps_per_second"]), rel_tol=1e-2),
                  f"{c[0]}: wall time {c[9]} and steps/s {c[10]} from the file")
        stopped_row = next((c for c in rows if c[0] == "stopped"), [])
        check(stopped_row[5:6] == [str(stopped_steps)] and stopped_row[11:12] == ["partial"],
              f"stopped: table says partial at step {stopped_steps} ({stopped_row})")
        check(f"{len(want_names)} file(s): 5 complete, 2 partial, 1 unreadable" in proc.stdout,
              "the count line")

        # --csv - writes the same CSV to stdout, and nothing else
        proc = tool(tools, "summary.py", [results, "--csv", "-"])
        with open(csv_path, newline="") as f:
            check(proc.returncode == 0 and proc.stdout == f.read(),
                  "--csv - prints the CSV of RESULTS_DIR/summary.csv")

        # Usage errors: exit 2, one line naming the directory or file
        missing = os.path.join(tmp, "no-such-dir")
        empty = os.path.join(tmp, "empty")
        os.makedirs(empty)
        for args, what, needle in (([missing], "a missing directory", missing),
                                   ([empty], "a directory without results", empty),
                                   ([results, "--csv", os.path.join(missing, "x.csv")],
                                    "an unwritable CSV path", os.path.join(missing, "x.csv"))):
            proc = tool(tools, "summary.py", args)
            lines = [ln for ln in proc.stderr.splitlines()
                     if ln.strip() and truncated not in ln]
            check(proc.returncode == 2 and len(lines) == 1 and needle in lines[0]
                  and lines[0].startswith("summary.py: error: ") and "Traceback" not in proc.stderr,
                  f"{what}: exit 2, one line ({lines})")


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("figures", "compare", "bad-files", "scaling", "summary"):
        print(__doc__)
        return 2
    tools = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(
        os.path.abspath(__file__)), os.pardir, "tools")
    if sys.argv[1] != "scaling" and not (EXE and os.access(EXE, os.X_OK)):
        print("VARPRO_EXE must name the varpro-rbf executable")
        return 1
    {"figures": test_figures, "compare": test_compare, "bad-files": test_bad_files,
     "scaling": test_scaling, "summary": test_summary}[sys.argv[1]](tools)
    return harness.finish()


if __name__ == "__main__":
    sys.exit(main())
