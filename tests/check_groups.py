#!/usr/bin/python3
"""End-to-end checks of --groups G, run by meson test:

  check_groups.py        4 ranks in 2 groups: every configuration trained once, by either group, largest
                         first, with the trajectory it has alone on 2 ranks; a diverging configuration
                         fails alone; bad values of --groups

The executable and mpirun come from the environment (VARPRO_EXE, VARPRO_MPIRUN).
"""
import os
import re
import sys
import tempfile

import h5py
import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, run, write  # noqa: E402

# Five configurations of different sizes; cost N M (M + 50) grows with M
WIDTHS = [4, 12, 24, 36, 48]
JOB = """output: {out}
defaults: {{N: 256, teacher_width: 64, seed: 3, epochs: 300, saving_step: 50, mmd_points: 11}}
runs:
  - student_width: [{widths}]
"""


def name(m):
    return f"biased-M{m}-lambda0.001-gamma100-seed3"


def started(stdout):
    """(group, configuration name) of each 'training' line, in log order."""
    return [(int(g), n) for g, n in re.findall(r"^\[g(\d+)\] \[\d+/\d+\] (\S+): training \d+ steps$", stdout, re.M)]


def groups(tmp):
    """The job at 4 ranks in 2 groups against the same job at 2 ranks, one configuration after another."""
    job = os.path.join(tmp, "groups.yaml")
    write(job, JOB.format(out=f"{tmp}/groups", widths=", ".join(map(str, WIDTHS))))
    proc = run(4, [job, "--groups", "2"], timeout=240)
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    check(proc.returncode == 0, f"4 ranks, --groups 2: exit 0 (got {proc.returncode})")
    check("PETSC ERROR" not in proc.stderr and "varpro-rbf: error" not in proc.stderr, "no error line, no PETSc traceback")
    ref = run(2, [job, "--output", f"{tmp}/alone"], timeout=240)
    check(ref.returncode == 0, f"the same job at 2 ranks without groups exits 0 (got {ref.returncode})")
    if proc.returncode or ref.returncode:
        print(ref.stdout[-1500:], ref.stderr[-1500:])
        return

    # Every configuration complete, on 2 ranks, with the losses of its run alone on 2 ranks
    for m in WIDTHS:
        path, ref_path = f"{tmp}/groups/{name(m)}.h5", f"{tmp}/alone/{name(m)}.h5"
        if not os.path.exists(path):
            check(False, f"M = {m}: result file exists")
            continue
        with h5py.File(path, "r") as a, h5py.File(ref_path, "r") as b:
            info = a.attrs["run_info"]
            info = info.decode() if isinstance(info, bytes) else info
            check(int(a.attrs["complete"]) == 1 and a["loss"].shape == (300,), f"M = {m}: result complete, 300 losses")
            check(int(a.attrs["nranks"]) == 2 and "in 2 groups" in info,
                  f"M = {m}: trained by a group of 2 ranks, recorded ({a.attrs['nranks']}, '{info[:60]}')")
            dl = np.max(np.abs(a["loss"][:] - b["loss"][:]) / np.abs(b["loss"][:]))
            check(dl <= 1e-10, f"M = {m}: losses within 1e-10 relative of its run alone on 2 ranks (max {dl:.2e})")
    check(not any(f.endswith((".partial", ".claim")) for f in os.listdir(f"{tmp}/groups")),
          "no partial or claim file left")

    # Who trained what: each configuration once, both groups busy, largest first in each group
    log = started(proc.stdout)
    trained = sorted(n for _, n in log)
    check(trained == sorted(name(m) for m in WIDTHS), f"every configuration started exactly once ({log})")
    check({g for g, _ in log} == {0, 1}, "both groups trained configurations")
    firsts = {}
    for g, n in log:
        firsts.setdefault(g, n)
    check(name(WIDTHS[-1]) in firsts.values(),
          f"the largest configuration was the first its group started ({firsts})")
    for g in (0, 1):
        widths = [int(re.search(r"-M(\d+)-", n).group(1)) for h, n in log if h == g]
        check(widths == sorted(widths, reverse=True), f"group {g} took its configurations largest first ({widths})")

    # The closing table: every configuration, in index order, with the group that trained it
    table = proc.stdout[proc.stdout.index("\nconfiguration"):].splitlines()[2:]
    rows = [line.split() for line in table if line.strip()]
    check([r[0] for r in rows] == [name(m) for m in WIDTHS], f"closing table in index order ({[r[0] for r in rows]})")
    by_name = {n: g for g, n in log}
    check(all(r[1] == "300" and r[-1] == f"[g{by_name.get(r[0])}]" for r in rows),
          "each row shows 300 steps and the group that trained it")


def diverging(tmp):
    """One configuration of the job diverges: its group reports it and goes on; the others complete."""
    job = os.path.join(tmp, "diverging.yaml")
    write(job, f"""output: {tmp}/diverging
defaults: {{N: 64, teacher_width: 16, epochs: 20, mmd_points: 3}}
runs:
  - {{name: boom, student_width: 8, time_scale: 1.0e+308}}
  - student_width: [4, 6, 10]
""")
    proc = run(4, [job, "--groups", "2"], timeout=240)
    print(proc.stdout[-2000:], proc.stderr[-1500:])
    check(proc.returncode == 3, f"a diverging configuration among others: exit 3 (got {proc.returncode})")
    lines = [l for l in proc.stderr.splitlines() if l.startswith("varpro-rbf: error:")]
    check(len(lines) == 1 and re.search(r"step \d+: .*(NaN|-?Inf)( |$)", lines[0]) is not None,
          f"one error line naming the step ({lines})")
    check("PETSC ERROR" not in proc.stderr, "no PETSc traceback")
    check(re.search(r"^boom\s+failed: NaN or Inf", proc.stdout, re.M) is not None, "the table marks it failed")
    done = sorted(f for f in os.listdir(f"{tmp}/diverging") if f.endswith(".h5"))
    check(done == sorted(f"biased-M{m}-lambda0.001-gamma100-seed0.h5" for m in (4, 6, 10)),
          f"the other configurations completed ({done})")


def bad(tmp):
    """Bad values of --groups: exit 2, one clear line, nothing trained."""
    job = os.path.join(tmp, "bad.yaml")
    write(job, f"output: {tmp}/bad\nruns:\n  - {{student_width: 4, N: 16, teacher_width: 8, epochs: 3}}\n")
    cases = [(["--groups", "0"], r"option --groups: '0' is not a number of groups >= 1"),
             (["--groups", "5"], r"option --groups: 5 groups requested, but the job has only 4 rank"),
             (["--groups", "2", "--task", "0"], r"option --groups 2 cannot be combined with option --task 0")]
    for args, pattern in cases:
        proc = run(4, [job] + args, timeout=120)
        what = " ".join(args)
        lines = [l for l in proc.stderr.splitlines() if l.startswith("varpro-rbf: error:")]
        check(proc.returncode == 2, f"{what}: exit status 2 (got {proc.returncode})")
        check(len(lines) == 1 and re.search(pattern, lines[0]) is not None, f"{what}: one clear error line ({lines})")
        check("PETSC ERROR" not in proc.stderr, f"{what}: no PETSc traceback")
        check(not os.path.isdir(f"{tmp}/bad") or not os.listdir(f"{tmp}/bad"), f"{what}: nothing trained")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        groups(tmp)
        diverging(tmp)
        bad(tmp)
    sys.exit(harness.finish())


if __name__ == "__main__":
    main()
