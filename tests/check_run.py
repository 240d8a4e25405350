#!/usr/bin/python3
"""End-to-end checks of the varpro-rbf executable, run by meson test.

  check_run.py fixture FIXTURE.h5 NP   replay a cross-check fixture through data.file
  check_run.py ranks [P]               the same seeded job at 1 and P ranks (default 2)
  check_run.py paths NP                the matrix-free inner solve against the direct one
  check_run.py tasks                   --list and one configuration per --task or SLURM_ARRAY_TASK_ID
  check_run.py stop NP PATH            stopped twice by signals, resumed: the same result bit for bit
  check_run.py kill NP PATH            killed (SIGKILL) mid-run, resumed from the last snapshot
  check_run.py checkpoint NP PATH      killed between snapshots and mid-checkpoint, resumed from checkpoints

PATH is the inner solve: matfree (the default, which carries state from step to step) or
scalapack (the direct solve, which carries none).
  check_run.py claim                   two runs of one configuration at once; stale claims taken over
  check_run.py bad CASE                one kind of bad input: exit status 2, message, no result

The executable and mpirun come from the environment (VARPRO_EXE, VARPRO_MPIRUN).
"""
import os
import re
import signal
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EXE, MPIRUN, check, run, write  # noqa: E402

DATA = os.environ.get("VARPRO_TEST_DATA", os.path.join(os.path.dirname(__file__), "data"))
FIXTURE = os.path.join(DATA, "xcheck_biased_M64_N512.h5")


def wrap(a):
    return (a + 2.0) % 4.0 - 2.0


# ---- fixture replay ----------------------------------------------------------------------

def fixture(path, np_):
    with h5py.File(path, "r") as fx, tempfile.TemporaryDirectory() as tmp:
        a = fx.attrs
        reg = a["regularization"]
        reg = reg.decode() if isinstance(reg, bytes) else reg
        job = os.path.join(tmp, "replay.yaml")
        write(job, f"""output: {tmp}/out
runs:
  - name: replay
    regularization: {reg}
    lambda: {float(a['lambda'])!r}
    gamma: {float(a['gamma'])!r}
    epochs: {int(a['steps'])}
    time_scale: {float(a['time_scale'])!r}
    saving_step: 1
    data: {{file: {os.path.abspath(path)}}}
""")
        proc = run(np_, [job])
        print(proc.stdout[-2000:], proc.stderr[-2000:])
        check(proc.returncode == 0, f"varpro-rbf exits 0 at {np_} rank(s)")
        if proc.returncode:
            return
        with h5py.File(os.path.join(tmp, "out", "replay.h5"), "r") as res:
            compare_fixture(fx, res)


def compare_fixture(fx, res):
    loss, ref_loss = res["loss"][:], fx["loss"][:]
    check(loss.shape == ref_loss.shape, f"loss has {ref_loss.size} entries")
    rel = np.max(np.abs(loss - ref_loss) / np.abs(ref_loss))
    check(rel <= 1e-10, f"loss within 1e-10 relative (max {rel:.2e})")

    steps = list(res["snapshot_steps"][:])
    mmd_steps = list(res["mmd_steps"][:])
    for k, step in enumerate(fx["checkpoint_steps"][:]):
        s = steps.index(step)
        dw = np.max(np.abs(wrap(res["snapshot_features"][s] - fx["student_features_at_checkpoints"][k])))
        check(dw <= 1e-9, f"features at step {step} within 1e-9 (max {dw:.2e})")
        u, ref_u = res["snapshot_outer_weights"][s], fx["outer_weights_at_checkpoints"][k]
        du = np.max(np.abs(u - ref_u) / np.maximum(np.abs(ref_u), 1e-3 * np.max(np.abs(ref_u))))
        check(du <= 1e-9, f"outer weights at step {step} within 1e-9 relative (max {du:.2e})")
        m = res["mmd"][mmd_steps.index(step)]
        dm = abs(m - fx["mmd_to_teacher_at_checkpoints"][k])
        check(dm <= 1e-10, f"MMD at step {step} within 1e-10 ({m:.12f}, diff {dm:.2e})")
    check(res.attrs["complete"] == 1, "result marked complete")


# ---- rank-count independence -------------------------------------------------------------

def ranks(other):
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for np_ in (1, other):
            job = os.path.join(tmp, f"np{np_}.yaml")
            write(job, f"""output: {tmp}/np{np_}
runs:
  - regularization: [biased, unbiased]
    student_width: 25
    N: 301
    teacher_width: 64
    seed: 7
    epochs: 200
    saving_step: 20
""")
            proc = run(np_, [job])
            check(proc.returncode == 0, f"seeded job at {np_} rank(s) exits 0")
            if proc.returncode:
                print(proc.stdout, proc.stderr)
                return
            results[np_] = os.path.join(tmp, f"np{np_}")
        for name in sorted(os.listdir(results[1])):
            with h5py.File(os.path.join(results[1], name)) as a, h5py.File(os.path.join(results[other], name)) as b:
                dl = np.max(np.abs(a["loss"][:] - b["loss"][:]) / np.abs(a["loss"][:]))
                dw = np.max(np.abs(wrap(a["snapshot_features"][:] - b["snapshot_features"][:])))
                dm = np.max(np.abs(a["mmd"][:] - b["mmd"][:]))
                check(a["loss"].size == 200 and dl <= 1e-10, f"{name}: 1 vs {other} ranks, losses within 1e-10 (max {dl:.2e})")
                check(dw <= 1e-10, f"{name}: 1 vs {other} ranks, features within 1e-10 (max {dw:.2e})")
                check(dm <= 1e-10, f"{name}: 1 vs {other} ranks, MMD within 1e-10 (max {dm:.2e})")
                check(a.attrs["nranks"] == 1 and b.attrs["nranks"] == other, f"{name}: rank counts recorded")


# ---- matrix-free against direct inner solves ----------------------------------------------

def paths(np_):
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "paths.yaml")
        write(job, f"""output: {tmp}/out
runs:
  - regularization: [biased, unbiased]
    student_width: 48
    N: 400
    teacher_width: 64
    seed: 11
    epochs: 300
    saving_step: 25
""")
        for path, opts in (("direct", ["-inner_kernel_mat_type", "scalapack"]), ("matfree", [])):
            proc = run(np_, [job, "--output", f"{tmp}/{path}"] + opts)
            check(proc.returncode == 0, f"{path} inner solve at {np_} rank(s) exits 0")
            if proc.returncode:
                print(proc.stdout, proc.stderr)
                return
        for name in sorted(os.listdir(f"{tmp}/direct")):
            with h5py.File(f"{tmp}/direct/{name}") as a, h5py.File(f"{tmp}/matfree/{name}") as b:
                dl = np.max(np.abs(a["loss"][:] - b["loss"][:]) / np.abs(a["loss"][:]))
                dw = np.max(np.abs(wrap(a["snapshot_features"][:] - b["snapshot_features"][:])))
                du = np.max(np.abs(a["snapshot_outer_weights"][:] - b["snapshot_outer_weights"][:]))
                du /= np.max(np.abs(a["snapshot_outer_weights"][:]))
                check(dl <= 1e-9, f"{name}: losses within 1e-9 relative (max {dl:.2e})")
                check(dw <= 1e-9, f"{name}: features within 1e-9 over 300 steps (max {dw:.2e})")
                check(du <= 1e-9, f"{name}: outer weights within 1e-9 relative (max {du:.2e})")
                refreshes = int(b.attrs["kernel_assemblies"])
                check(0 < refreshes < 300, f"{name}: matrix-free path refactored {refreshes} times, not every step")


# ---- listing and single tasks ----------------------------------------------------------------

def tasks():
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "grid.yaml")
        write(job, f"""output: {tmp}/out
defaults: {{N: 32, teacher_width: 8, epochs: 4, mmd_points: 2}}
runs:
  - regularization: [biased, unbiased]
    student_width: [4, 6]
""")
        names = ["biased-M4-lambda0.001-gamma100-seed0", "biased-M6-lambda0.001-gamma100-seed0",
                 "unbiased-M4-lambda0.001-gamma100-seed0", "unbiased-M6-lambda0.001-gamma100-seed0"]
        proc = run(2, [job, "--task", "1"])
        check(proc.returncode == 0 and sorted(os.listdir(f"{tmp}/out")) == [names[1] + ".h5"],
              "--task 1 trains configuration 1 only")
        env = dict(os.environ, SLURM_ARRAY_TASK_ID="3")
        proc = subprocess.run([MPIRUN, "--oversubscribe", "-n", "1", EXE, job], env=env, capture_output=True, text=True)
        check(proc.returncode == 0 and os.path.exists(f"{tmp}/out/{names[3]}.h5"), "SLURM_ARRAY_TASK_ID=3 trains configuration 3")
        write(f"{tmp}/out/{names[2]}.h5.partial", "cut short\n")
        proc = run(2, [job, "--list"])
        rows = [line.split() for line in proc.stdout.splitlines()[1:] if line.strip()]
        check(proc.returncode == 0 and [r[:3] for r in rows] == [["0", names[0], "to"], ["1", names[1], "done"],
                                                                  ["2", names[2], "partial"], ["3", names[3], "done"]],
              f"--list shows indices, names and status in grid order: {rows}")
        proc = run(1, [job, "--task", "4"])
        check(proc.returncode == 2 and "configuration 4 requested" in proc.stderr, "--task 4 of 4 is bad input")


# ---- claims: one live run per configuration ------------------------------------------------

CLAIM_JOB = """output: {tmp}/out
defaults: {{N: 512, teacher_width: 256, epochs: {epochs}, saving_step: 50, mmd_points: 11}}
runs:
  - {{name: c, student_width: 64}}
"""


def claim():
    import socket
    import time
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "claim.yaml")
        out = os.path.join(tmp, "out")
        claim_file = os.path.join(out, "c.h5.claim")
        write(job, CLAIM_JOB.format(tmp=tmp, epochs=20000))

        # Two runs started together: one trains, the other leaves the configuration alone
        cmd = [MPIRUN, "--oversubscribe", "-n", "1", EXE, job]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        res = [p.communicate(timeout=300) for p in procs]
        codes = sorted(p.returncode for p in procs)
        for out_, err in res:
            print(out_[-800:], err[-800:])
        check(codes == [0, 5], f"one run exits 0, the other 5 (got {codes})")
        refused = [err for p, (_, err) in zip(procs, res) if p.returncode == 5]
        if refused:
            lines = [l for l in refused[0].splitlines() if l.startswith("varpro-rbf: error:")]
            check(len(lines) == 1 and re.search(r"\bc: left alone, another run is training it: host \S+ pid \d+",
                                                lines[0]) is not None,
                  f"the refused run says who holds the claim ({lines})")
            check("PETSC ERROR" not in refused[0], "no PETSc traceback")
        check(os.path.exists(os.path.join(out, "c.h5")) and not os.path.exists(claim_file),
              "the result is complete and the claim file is gone")
        with h5py.File(os.path.join(out, "c.h5"), "r") as f:
            check(int(f.attrs["complete"]) == 1 and f["loss"].shape == (20000,)
                  and f.attrs["resumed_from"] in ("", b""),
                  "the result is one uninterrupted run of 20000 steps")

        # Claims whose owner is gone, or not refreshed in time, are taken over; a fresh one is not
        write(job, CLAIM_JOB.format(tmp=tmp, epochs=50))
        dead = subprocess.Popen(["true"])
        dead.wait()
        host = socket.gethostname()
        cases = [("a dead process on this host", f"host {host} pid {dead.pid} job - started x\n", 0, True),
                 ("another host, refreshed long ago", "host elsewhere.invalid pid 1 job 7 started x\n", 3600, True),
                 ("another host, refreshed just now", "host elsewhere.invalid pid 1 job 7 started x\n", 0, False)]
        for what, text, age, stale in cases:
            write(claim_file, text)
            os.utime(claim_file, (time.time() - age, time.time() - age))
            proc = run(1, [job, "--force", "-varpro_claim_stale_seconds", "600"], timeout=120)
            print(proc.stdout[-600:], proc.stderr[-600:])
            if stale:
                check(proc.returncode == 0 and "taking over the stale claim on c" in proc.stdout,
                      f"claim of {what}: taken over (exit {proc.returncode})")
                check(not os.path.exists(claim_file), f"claim of {what}: released after the run")
            else:
                check(proc.returncode == 5 and "elsewhere.invalid" in proc.stderr,
                      f"claim of {what}: refused with exit 5, naming the owner (exit {proc.returncode})")
                with open(claim_file) as f:
                    check(f.read() == text, f"claim of {what}: left untouched")
                listing = run(1, [job, "--list"], timeout=60).stdout
                check(re.search(r"\bc\s+running\b", listing) is not None, f"--list shows it running ({listing})")


# ---- stop by signal, kill, resume -----------------------------------------------------------

RESUME_FIELDS = ["loss", "snapshot_steps", "snapshot_features", "snapshot_outer_weights", "mmd_steps", "mmd",
                 "teacher_features"]


def rank_pids(mpirun_pid):
    """The processes mpirun started: its children."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == mpirun_pid:
                        pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def run_signalled(np_, args, deliver, after_lines=3):
    """Runs the executable and, once it has printed after_lines progress lines, calls
    deliver(mpirun process). Returns (exit status, stdout, stderr)."""
    cmd = [MPIRUN, "--oversubscribe", "-n", str(np_), EXE] + args + ["--progress", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines, seen = [], 0
    for line in proc.stdout:
        lines.append(line)
        seen += "%)" in line
        if seen == after_lines:
            deliver(proc)
            break
    out, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + out, err


def signal_ranks(sig):
    def deliver(proc):
        for pid in rank_pids(proc.pid):
            os.kill(pid, sig)
    return deliver


def signal_mpirun(sig):
    return lambda proc: os.kill(proc.pid, sig)


def resume_job(tmp, epochs, saving_step=10, top=""):
    job = os.path.join(tmp, "resume.yaml")
    write(job, f"""output: {tmp}/out
{top}runs:
  - name: resumed
    student_width: 24
    N: 301
    teacher_width: 64
    seed: 9
    epochs: {epochs}
    saving_step: {saving_step}
""")
    return job


def compare_resumed(ref_path, path, what, exact=True):
    """The resumed run against the uninterrupted one: bit for bit, or (not exact) the same steps
    with values within 1e-9, as a solve of tolerance 1e-12 restarted cold gives."""
    with h5py.File(ref_path, "r") as a, h5py.File(path, "r") as b:
        for field in RESUME_FIELDS:
            x, y = a[field][:], b[field][:]
            if exact:
                check(np.array_equal(x, y), f"{what}: {field} equal bit for bit to the uninterrupted run")
            elif x.dtype.kind != "f":
                check(np.array_equal(x, y), f"{what}: {field} equal to the uninterrupted run's")
            else:
                d = np.max(np.abs(wrap(x - y) if "features" in field else (x - y) / np.maximum(np.abs(x), 1e-3)))
                check(x.shape == y.shape and d <= 1e-9, f"{what}: {field} within 1e-9 of the uninterrupted run (max {d:.1e})")
        check(b.attrs["complete"] == 1, f"{what}: result marked complete")
        resumed = b.attrs["resumed_from"]
        return resumed.decode() if isinstance(resumed, bytes) else resumed


SOLVERS = {"matfree": [], "scalapack": ["-inner_kernel_mat_type", "scalapack"]}


def interrupted(np_, solver, interruptions, flush_args, epochs, exact=True, **job_keys):
    """Reference run, then a run interrupted once per entry of interruptions (a deliver function and
    the expected exit status), then the run that completes, all with the inner solve solver. Returns
    None when a run finished before its signal (the caller lengthens it), else the list of stdouts."""
    with tempfile.TemporaryDirectory() as tmp:
        job = resume_job(tmp, epochs, **job_keys)
        final, partial = f"{tmp}/out/resumed.h5", f"{tmp}/out/resumed.h5.partial"
        opts = SOLVERS[solver]
        proc = run(np_, [job, "--output", f"{tmp}/ref"] + opts)
        check(proc.returncode == 0, f"uninterrupted run of {epochs} steps at {np_} rank(s) exits 0")
        logs = []
        for deliver, status in interruptions:
            code, out, err = run_signalled(np_, [job] + flush_args + opts, deliver)
            if code == 0:
                print(f"run of {epochs} steps finished before the signal: lengthening it")
                return None
            print(out[-600:], err[-1500:])
            if status is None:
                check(code != 0, f"killed run exits non-zero (got {code})")
            else:
                check(code == status, f"interrupted run exits {status} (got {code})")
            check(os.path.exists(partial) and not os.path.exists(final), "only the .partial file exists")
            logs.append((out, err))
        proc = run(np_, [job] + opts)
        print(proc.stdout[-600:], proc.stderr[-600:])
        check(proc.returncode == 0 and not os.path.exists(partial), "resumed run completes")
        if proc.returncode:
            return []
        logs.append((proc.stdout, proc.stderr))
        resumed = compare_resumed(f"{tmp}/ref/resumed.h5", final,
                                  f"{solver}, {np_} rank(s), {len(interruptions)} interruptions", exact)
        steps = re.findall(r"resuming resumed from step (\d+)", "".join(out for out, _ in logs))
        check(len(steps) == len(interruptions) and resumed == " ".join(steps),
              f"resumed {len(interruptions)} times, from steps {steps}, recorded as resumed_from '{resumed}'")
        with h5py.File(final, "r") as f:
            sessions = f.attrs["sessions"]
        sessions = (sessions.decode() if isinstance(sessions, bytes) else sessions).split("\n")
        starts = [re.match(r"from step (\d+): varpro-rbf \S+ on \S+ at \S+Z, mpi ranks: (\d+); command: .*"
                           + re.escape(os.path.basename(job)), line) for line in sessions]
        check(all(starts) and [m.group(1) for m in starts] == ["0"] + steps
              and all(int(m.group(2)) == np_ for m in starts),
              f"one line per session in 'sessions', from steps 0 and {steps} on {np_} rank(s): {sessions}")
        return logs


def stop(np_, solver):
    """SIGTERM to every rank (as a batch system sends it), then SIGUSR1 to mpirun, which forwards it."""
    for epochs in (2300, 9200, 36800):
        logs = interrupted(np_, solver, [(signal_ranks(signal.SIGTERM), 4), (signal_mpirun(signal.SIGUSR1), 4)], [],
                           epochs)
        if logs is not None:
            break
    for k, (out, err) in enumerate((logs or [])[:2]):
        lines = [l for l in err.splitlines() if l.startswith("varpro-rbf:")]
        check(len(lines) == 1 and re.fullmatch(r"varpro-rbf: stopped by signal at step \d+; run again to resume", lines[0])
              is not None, f"stop {k + 1}: one line 'stopped by signal at step k; run again to resume' ({lines})")
        check("PETSC ERROR" not in err, f"stop {k + 1}: no PETSc traceback")


def kill(np_, solver):
    """SIGKILL to every rank, with no checkpoints: the next run resumes from the last snapshot
    flushed to the file, bit for bit with the direct solve; the matrix-free solve, whose state a
    snapshot does not hold, restarts cold and says so."""
    flush = ["-varpro_result_flush_seconds", "0"]
    exact = solver == "scalapack"
    for epochs in (2300, 9200, 36800):
        logs = interrupted(np_, solver, [(signal_ranks(signal.SIGKILL), None)], flush, epochs, exact,
                           top="checkpoint: {minutes: 0}\n")
        if logs is not None:
            break
    if logs:
        step = re.search(r"resuming resumed from step (\d+)(.*)", logs[1][0])
        check(step is not None and int(step.group(1)) > 0, "killed run resumed from a snapshot after step 0")
        cold = step is not None and "the inner solve starts afresh" in step.group(2)
        check(cold != exact, f"the resume line says whether the inner solve starts afresh ({step and step.group(0)})")


def checkpoint(np_, solver):
    """Checkpoints between snapshots: a run killed (SIGKILL) resumes from the last one, and a kill
    in the middle of a checkpoint (one every step, so most kills land in one) leaves the previous."""
    sparse = dict(saving_step=5000, top="checkpoint: {steps: 7}\n")
    for epochs in (20000, 80000, 320000):
        logs = interrupted(np_, solver, [(signal_ranks(signal.SIGKILL), None)], [], epochs, **sparse)
        if logs is not None:
            break
    if logs:
        step = re.search(r"resuming resumed from step (\d+)", logs[1][0])
        s = int(step.group(1)) if step else -1
        check(s > 0 and s % 7 == 0 and s % 5000 != 0,
              f"killed run resumed from a checkpoint (a multiple of 7 between snapshots), step {s}")
    every = dict(saving_step=5000, top="checkpoint: {steps: 1}\n")
    kills = [(signal_ranks(signal.SIGKILL), None)] * 3
    for epochs in (8000, 32000, 128000):
        logs = interrupted(np_, solver, kills, [], epochs, **every)
        if logs is not None:
            break
    if logs:
        steps = [int(m) for out, _ in logs for m in re.findall(r"resuming resumed from step (\d+)", out)]
        check(len(steps) == 3 and all(s > 0 and s % 5000 for s in steps) and steps == sorted(steps),
              f"each of three kills resumed from a checkpoint after the previous one: {steps}")
        check(not any("starting over" in out for out, _ in logs), "no kill left a file that had to be started over")


# ---- bad input -----------------------------------------------------------------------------

GOOD_RUN = "  - {student_width: 4, N: 16, teacher_width: 8, epochs: 3}\n"


def make_data(path, shapes):
    with h5py.File(path, "w") as f:
        for name, shape in shapes.items():
            f[name] = np.zeros(shape)


def bad_case(case, tmp):
    """Returns (job file, extra args, ranks, message regex) for one kind of bad input."""
    out = os.path.join(tmp, "out")
    job = os.path.join(tmp, "job.yaml")
    head = f"output: {out}\nruns:\n"
    args, np_ = [], 2
    if case == "malformed-yaml":
        write(job, f"output: '{out}\nruns:\n" + GOOD_RUN)
        pattern = r"job\.yaml:\d+:\d+: "
    elif case == "unknown-key":
        write(job, head + "  - {student_width: 4, N: 16, learning_rate: 3}\n")
        pattern = r"job\.yaml:3:\d+: .*learning_rate"
    elif case == "wrong-type":
        write(job, head + "  - {student_width: four, N: 16}\n")
        pattern = r"job\.yaml:3:\d+: .*student_width"
    elif case in ("lambda", "student_width", "N", "epochs", "time_scale"):
        fields = {"student_width": "4", "N": "16", "teacher_width": "8"}
        fields[case] = {"lambda": "0", "student_width": "0", "N": "0", "epochs": "-1", "time_scale": "-0.5"}[case]
        write(job, head + "  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}\n")
        pattern = rf"job\.yaml:3:\d+: .*{case}"
    elif case == "fewer-points-than-ranks":
        write(job, head + "  - {student_width: 4, N: 1, teacher_width: 8, epochs: 3}\n")
        pattern = r"job\.yaml:3: run .*N: 1 data points is fewer than the 2 ranks"
    elif case == "missing-data-file":
        write(job, head + f"  - {{data: {{file: {tmp}/nothere.h5}}, epochs: 3}}\n")
        pattern = r"nothere\.h5"
    elif case == "data-missing-dataset":
        make_data(os.path.join(tmp, "d.h5"), {"inputs": (16, 2), "targets": (16,), "teacher_features": (8, 2)})
        write(job, head + f"  - {{data: {{file: {tmp}/d.h5}}, epochs: 3}}\n")
        pattern = r"d\.h5.*student_features_init"
    elif case == "data-wrong-shape":
        make_data(os.path.join(tmp, "d.h5"), {"inputs": (16, 2), "targets": (15,), "teacher_features": (8, 2),
                                              "student_features_init": (4, 2)})
        write(job, head + f"  - {{data: {{file: {tmp}/d.h5}}, epochs: 3}}\n")
        pattern = r"d\.h5.*targets"
    elif case == "unwritable-output":
        write(os.path.join(tmp, "afile"), "not a directory\n")
        write(job, f"output: {tmp}/afile/out\nruns:\n" + GOOD_RUN)
        pattern = r"afile/out"
    elif case == "unknown-option":
        write(job, head + GOOD_RUN)
        args = ["--frobnicate"]
        pattern = r"--frobnicate"
    elif case == "diverging":
        write(job, head + "  - {student_width: 4, N: 16, teacher_width: 8, epochs: 5, time_scale: 1.0e+308}\n")
        pattern = r"step \d+: .*(outer weight|reduced risk|gradient|feature).* (NaN|-?Inf)( |$)"
    elif case == "unknown-solver":
        write(job, head + GOOD_RUN)
        args = ["-inner_kernel_mat_type", "bogus"]
        pattern = r"-inner_kernel_mat_type: 'bogus'"
    elif case == "petsc-type":
        write(job, head + GOOD_RUN)
        args = ["-inner_ksp_type", "cgg"]
        pattern = r"option -inner_ksp_type: 'cgg' is not a KSP type"
    elif case == "petsc-number":
        write(job, head + GOOD_RUN)
        args = ["-inner_factor_ksp_rtol", "1e-3x"]
        pattern = r"option -inner_factor_ksp_rtol: '1e-3x' is not a relative tolerance in \[0, 1\)"
    elif case == "petsc-range":
        write(job, head + GOOD_RUN)
        args = ["-inner_ksp_max_it", "99999999999"]
        pattern = r"option -inner_ksp_max_it: '99999999999' is not an iteration count from 1 to 1000000000"
    elif case == "matfree-pc":
        write(job, head + GOOD_RUN)
        args = ["-inner_pc_type", "jacobi"]
        pattern = r"option -inner_pc_type jacobi: the matfree inner solve has no matrix entries"
    elif case == "many-options":
        write(job, head + GOOD_RUN)
        args = ["--progress", "5"] * 200 + ["--frobnicate"]
        pattern = r"--frobnicate"
    elif case == "bad-second-run":
        write(job, head + GOOD_RUN + f"  - {{name: second, data: {{file: {tmp}/nothere.h5}}}}\n")
        pattern = r"nothere\.h5"
    elif case == "two-job-files":
        write(job, head + GOOD_RUN)
        args = [job]
        pattern = r"unexpected argument"
    elif case == "partial-other-config":
        write(job, head + "  - {name: x, student_width: 4, N: 16, teacher_width: 8, epochs: 3}\n")
        run(1, [job])
        os.rename(f"{out}/x.h5", f"{out}/x.h5.partial")
        write(job, head + "  - {name: x, student_width: 4, N: 16, teacher_width: 8, epochs: 4}\n")
        pattern = r"x\.h5\.partial: a partial result of a different configuration; remove it or use --force"
    elif case == "missing-job-file":
        job = os.path.join(tmp, "absent.yaml")
        pattern = r"absent\.yaml"
    else:
        raise SystemExit(f"unknown case {case}")
    return job, args, np_, pattern


def bad(case):
    with tempfile.TemporaryDirectory() as tmp:
        job, args, np_, pattern = bad_case(case, tmp)
        proc = run(np_, [job] + args, timeout=120)
        print(proc.stdout[-1500:], proc.stderr[-1500:])
        status = 3 if case == "diverging" else 2
        check(proc.returncode == status, f"{case}: exit status {status} (got {proc.returncode})")
        lines = [l for l in proc.stderr.splitlines() if l.startswith("varpro-rbf: error:")]
        check(len(lines) == 1, f"{case}: exactly one error line (got {len(lines)})")
        check(any(re.search(pattern, l) for l in lines), f"{case}: message matches /{pattern}/")
        check("PETSC ERROR" not in proc.stderr, f"{case}: no PETSc traceback")
        out = os.path.join(tmp, "out")
        leftovers = [f for f in os.listdir(out)] if os.path.isdir(out) else []
        check(not any(f.endswith(".h5") for f in leftovers), f"{case}: no complete result file written")


def main():
    what = sys.argv[1]
    if what == "fixture":
        fixture(sys.argv[2], int(sys.argv[3]))
    elif what == "ranks":
        ranks(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    elif what == "paths":
        paths(int(sys.argv[2]))
    elif what == "tasks":
        tasks()
    elif what == "stop":
        stop(int(sys.argv[2]), sys.argv[3])
    elif what == "kill":
        kill(int(sys.argv[2]), sys.argv[3])
    elif what == "checkpoint":
        checkpoint(int(sys.argv[2]), sys.argv[3])
    elif what == "claim":
        claim()
    elif what == "bad":
        bad(sys.argv[2])
    else:
        raise SystemExit(__doc__)
    sys.exit(harness.finish())


if __name__ == "__main__":
    main()
