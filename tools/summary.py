#!/usr/bin/python3
"""One table of the runs in a varpro-rbf results directory.

    tools/summary.py RESULTS_DIR [--csv FILE]

Reads every result file RESULTS_DIR/*.h5 and every partial result RESULTS_DIR/*.h5.partial
and prints one row per file, sorted by configuration name (numbers in names in numerical order,
M32 before M128): name, regularization, M, lambda,
gamma, steps done, epochs, final reduced risk (attribute `final_reduced_risk`), final MMD
(`final_mmd`), wall time in seconds (`wall_time`), steps per second (1 / `time_per_step`),
status and a note (names and file names that are not valid UTF-8 are shown with U+FFFD in
place of the bytes that are not). The status is

  complete    a result file marked complete and whole (checked as tools/compare.py does);
  partial     a run cut short or still going: steps is the length of its `loss` history
              (else its last saved snapshot step) and the note gives its latest checkpoint
              and its last snapshot, where the next run of the job resumes (the checkpoint;
              the later of the two with the direct inner solve); the final values and times are
              only written when a run completes, so they show as '-'. A partial file that
              cannot be read (one cut short while its file was created, say) shows '-' and
              the reason;
  unreadable  a damaged, truncated or incomplete *.h5 file: one line
              'summary.py: error: FILE: problem' on stderr, its row keeps what could be
              read (the file name stands for the name when nothing could).

The same table goes, at full precision, to FILE as CSV (default RESULTS_DIR/summary.csv);
'--csv -' writes the CSV to stdout instead of the table.

Exit status 0 when the table was written, unreadable files included (they are reported
on stderr and in the table); 2 for bad usage: RESULTS_DIR missing, not a directory or
holding no result file, or a CSV file that cannot be written.
"""
import argparse
import csv
import glob
import math
import os
import re
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import varpro_results as vr  # noqa: E402

PROG = "summary.py"
PARTIAL_SUFFIX = ".h5.partial"

COLUMNS = ["name", "regularization", "M", "lambda", "gamma", "steps", "epochs",
           "final_reduced_risk", "final_mmd", "wall_time", "steps_per_second", "status", "note"]


def attr_value(attrs, key, kind):
    """The single value of attribute key as kind (int, float or str), or None."""
    if key not in attrs:
        return None
    try:
        value = np.asarray(attrs[key]).reshape(-1)[0]
        if kind is str:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else vr.printable(value)
        return kind(value)
    except Exception:
        return None


def new_row(path, status):
    """A row with only the name (the file name without its suffix) and the status."""
    base = vr.printable(os.path.basename(path))
    stem = base[:-len(PARTIAL_SUFFIX)] if base.endswith(PARTIAL_SUFFIX) else os.path.splitext(base)[0]
    row = dict.fromkeys(COLUMNS)
    row.update(name=stem, status=status, note="", path=path)
    return row


def fill_identity(row, attrs):
    """Name and parameters from the root attributes, where present."""
    for col, key, kind in (("name", "name", str), ("regularization", "regularization", str),
                           ("M", "student_width", int), ("lambda", "lambda", float),
                           ("gamma", "gamma", float), ("epochs", "epochs", int)):
        value = attr_value(attrs, key, kind)
        if value is not None and value != "":
            row[col] = value


def complete_row(path):
    """Row of a *.h5 file; raises vr.BadFile when it is not a whole, complete result."""
    run = vr.load_run(path)
    row = new_row(path, "complete")
    fill_identity(row, run.attrs)
    row["steps"] = int(run.loss.size)
    for col, key in (("final_reduced_risk", "final_reduced_risk"), ("final_mmd", "final_mmd"),
                     ("wall_time", "wall_time")):
        row[col] = attr_value(run.attrs, key, float)
    time_per_step = attr_value(run.attrs, "time_per_step", float)
    if time_per_step is not None and time_per_step > 0:
        row["steps_per_second"] = 1.0 / time_per_step
    return row


def open_unlocked(path):
    """Opens read-only without taking HDF5's file lock, which a run still writing the file holds."""
    import h5py
    try:
        return h5py.File(path, "r", locking=False)
    except TypeError:  # h5py older than 3.5
        return h5py.File(path, "r")


def unreadable_row(path, error):
    """Row of a *.h5 file that failed its checks: what its attributes still say, and why."""
    row = new_row(path, "unreadable")
    text = str(error)
    prefix = f"{error.path}: "
    row["note"] = vr.one_line(text[len(prefix):] if text.startswith(prefix) else text)
    try:
        with open_unlocked(path) as f:
            fill_identity(row, f.attrs)
    except Exception:
        pass
    return row


def resume_note(f, steps_done):
    """Where a resumed run of a partial file starts: its latest valid checkpoint (one whose losses
    are all in the file) and its last snapshot."""
    parts = []
    if "checkpoint_steps" in f and f["checkpoint_steps"].shape == (2,):
        valid = [int(c) for c in f["checkpoint_steps"][()] if 0 <= c <= (steps_done or 0)]
        if valid:
            parts.append(f"checkpoint at step {max(valid)}")
    snaps = f["snapshot_steps"][()] if "snapshot_steps" in f else np.zeros(0)
    if snaps.size:
        parts.append(f"last snapshot at step {int(snaps[-1])}")
    return ", ".join(parts)


def partial_row(path):
    """Row of a *.h5.partial file: parameters and the step reached, if it can be read."""
    row = new_row(path, "partial")
    try:
        with open_unlocked(path) as f:
            fill_identity(row, f.attrs)
            snaps = f["snapshot_steps"][()] if "snapshot_steps" in f else np.zeros(0)
            if "loss" in f and len(f["loss"].shape) == 1:
                row["steps"] = int(f["loss"].shape[0])
            elif snaps.size:
                row["steps"] = int(snaps[-1])
            row["note"] = resume_note(f, row["steps"])
            if not row["note"] and row["steps"] is None:
                row["note"] = "no loss history or snapshot yet"
    except Exception as exc:
        row["note"] = "cannot be read: " + vr.one_line(exc)
    return row


def natural_key(text):
    """Sorts M32 before M128: runs of digits compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def collect(results_dir):
    """(rows sorted by name, errors): one row per *.h5 and *.h5.partial file."""
    if not os.path.isdir(results_dir):
        raise vr.UsageError(f"{results_dir}: " + ("not a directory" if os.path.exists(results_dir)
                                                  else "no such directory"))
    complete = sorted(p for p in glob.glob(os.path.join(results_dir, "*.h5")) if os.path.isfile(p))
    partial = sorted(p for p in glob.glob(os.path.join(results_dir, "*" + PARTIAL_SUFFIX))
                     if os.path.isfile(p))
    if not complete and not partial:
        raise vr.UsageError(f"{results_dir}: no result files (*.h5, *.h5.partial)")
    rows, errors = [], []
    for p in complete:
        try:
            rows.append(complete_row(p))
        except vr.BadFile as exc:
            errors.append(exc)
            rows.append(unreadable_row(p, exc))
    rows += [partial_row(p) for p in partial]
    rank = {"complete": 0, "partial": 1, "unreadable": 2}
    rows.sort(key=lambda r: (natural_key(r["name"]), rank[r["status"]], r["path"]))
    return rows, errors


# ---- output --------------------------------------------------------------------------------

def plain(v, digits):
    """v to `digits` significant digits, without an exponent from 1 up."""
    if v is None or math.isnan(v) or abs(v) < 1 or abs(v) >= 1e15:
        return vr.fmt(v, f".{digits}g")
    whole = len(str(int(abs(v))))
    return format(v, f".{max(digits - whole, 0)}f")


def print_table(rows, out):
    head = ["name", "reg", "M", "lambda", "gamma", "steps", "epochs", "risk", "MMD", "wall s",
            "steps/s", "status", "note"]
    body = [[r["name"], r["regularization"] or "-", vr.fmt(r["M"], "d"), vr.fmt(r["lambda"], "g"),
             vr.fmt(r["gamma"], "g"), vr.fmt(r["steps"], "d"), vr.fmt(r["epochs"], "d"),
             vr.fmt(r["final_reduced_risk"], ".4g"), vr.fmt(r["final_mmd"], ".4g"),
             plain(r["wall_time"], 4), plain(r["steps_per_second"], 3), r["status"], r["note"]]
            for r in rows]
    right = {2, 3, 4, 5, 6, 7, 8, 9, 10}
    for text in vr.table_lines(head, body, right):
        print(text, file=out)


def write_csv(rows, out):
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow(["" if r[c] is None else (repr(r[c]) if isinstance(r[c], float) else r[c])
                    for c in COLUMNS])


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description="One table of the runs in a results directory.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("results_dir", metavar="RESULTS_DIR")
    ap.add_argument("--csv", metavar="FILE",
                    help="write the table as CSV to FILE (default RESULTS_DIR/summary.csv; - for stdout)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    try:
        rows, errors = collect(args.results_dir)
    except vr.UsageError as exc:
        print(f"{PROG}: error: {vr.one_line(exc)}", file=sys.stderr)
        return 2
    for e in errors:
        print(f"{PROG}: error: {e}", file=sys.stderr)

    # The table on stdout, or the CSV there with --csv -
    if args.csv == "-":
        write_csv(rows, sys.stdout)
        return 0
    print_table(rows, sys.stdout)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("complete", "partial", "unreadable")}
    print(f"\n{len(rows)} file(s): {counts['complete']} complete, {counts['partial']} partial, "
          f"{counts['unreadable']} unreadable")
    csv_path = args.csv or os.path.join(args.results_dir, "summary.csv")
    try:
        with open(csv_path, "w", newline="") as f:
            write_csv(rows, f)
    except OSError as exc:
        print(f"{PROG}: error: {vr.printable(csv_path)}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print("wrote", vr.printable(csv_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
