#!/usr/bin/python3
"""Damaged, hostile and odd input to the varpro-rbf executable and its tools, run by meson test.

  check_damaged.py partial   damaged partial results: started over with a line saying why, or refused
  check_damaged.py files     FIFOs, directories and symbolic links where files are read or written
                             (one appearing while a run trains), damaged complete results, claims
                             that are empty, from the future or directories, a write test in an
                             output directory full of symbolic links
  check_damaged.py options   command lines and option values
  check_damaged.py tools     tools/summary.py and tools/compare.py on awkward result files

Every refusal must be one line 'varpro-rbf: error: ...' naming the file and the problem, exit
status 2, no PETSc or HDF5 traceback and no result that looks complete; no run may hang (each has a
time limit). The executable and mpirun come from the environment (VARPRO_EXE, VARPRO_MPIRUN).
"""
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EXE, MPIRUN, check, write  # noqa: E402

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools")


class Result:
    def __init__(self, code, out, err):
        self.returncode, self.stdout, self.stderr = code, out, err

    def errors(self):
        return [line for line in self.stderr.splitlines() if line.startswith("varpro-rbf: error:")]


def run(np_, args, timeout=60, env=None):
    """The executable at np_ ranks; a run that outlives timeout is killed with its ranks and
    reported as exit status None (it hung)."""
    cmd = [MPIRUN, "--oversubscribe", "-n", str(np_), EXE] + args
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return Result(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Result(None, out, err)


def expect_refused(proc, what, pattern, status=2):
    """Exit status, one error line matching pattern, no traceback."""
    print(proc.stdout[-800:], proc.stderr[-1200:])
    lines = proc.errors()
    check(proc.returncode == status, f"{what}: exit status {status} (got {proc.returncode})")
    check(len(lines) == 1 and re.search(pattern, lines[0]) is not None,
          f"{what}: one error line matching /{pattern}/ (got {lines})")
    check("PETSC ERROR" not in proc.stderr and "HDF5-DIAG" not in proc.stderr, f"{what}: no traceback")


def complete_files(out):
    """The files of out that look like complete results: *.h5, or anything marked complete."""
    found = []
    for path in glob.glob(os.path.join(out, "*")):
        if path.endswith(".h5") or (os.path.isfile(path) and path.endswith(".partial") and marked_complete(path)):
            found.append(os.path.basename(path))
    return found


def marked_complete(path):
    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs.get("complete", 0)) == 1
    except OSError:
        return False


# A small configuration: N 64, T 16, M 4, a checkpoint every 5 steps
def job_text(out, epochs, name="p", extra=""):
    return f"""output: {out}
checkpoint: {{steps: 5}}
defaults: {{N: 64, teacher_width: 16, epochs: {epochs}, mmd_points: 5, saving_step: 10}}
runs:
  - {{name: {name}, student_width: 4{extra}}}
"""


def job_file(tmp, out, epochs, **keys):
    path = os.path.join(tmp, "job.yaml")
    write(path, job_text(out, epochs, **keys))
    return path


# ---- damaged partial results ---------------------------------------------------------------

def stopped_partial(tmp):
    """A partial result left by a run of a million steps stopped by SIGUSR1 after its first
    progress line, rewritten as the partial result of a run of 20 more steps (its configuration
    text and epochs attribute): returns (path, stop step s, epochs s + 20)."""
    out = os.path.join(tmp, "stopped")
    job = job_file(tmp, out, 1000000)
    cmd = [MPIRUN, "--oversubscribe", "-n", "1", EXE, job, "--progress", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stdout:
        if "%)" in line:
            os.kill(proc.pid, signal.SIGUSR1)
            break
    _, err = proc.communicate(timeout=120)
    check(proc.returncode == 4, f"template run stopped by SIGUSR1 exits 4 (got {proc.returncode}) {err[-300:]}")
    path = os.path.join(out, "p.h5.partial")
    with h5py.File(path, "r+") as f:
        s = int(f["loss"].shape[0])
        epochs = s + 20
        text = f.attrs["configuration"]
        text = text.decode() if isinstance(text, bytes) else text
        f.attrs["configuration"] = text.replace("epochs: 1000000\n", f"epochs: {epochs}\n")
        f.attrs["epochs"] = np.int64(epochs)
        check(s in list(f["checkpoint_steps"][:]), f"template: a checkpoint at the stop step {s}")
    return path, s, epochs


def replace_dataset(f, name, data, **kw):
    del f[name]
    f.create_dataset(name, data=data, **kw)


def resize_history(f, names, rows):
    for name in names:
        d = f[name]
        d.resize((rows,) + d.shape[1:])


def slot_of(f, step):
    return list(f["checkpoint_steps"][:]).index(step)


def nan_state(f, s):
    f["checkpoint_state"][slot_of(f, s), 0] = np.nan


def nan_checkpoint_features(f, s):
    f["checkpoint_features"][slot_of(f, s), 0, 0] = np.inf


def nan_snapshot(f, s):
    for name in ("checkpoint_features", "checkpoint_state", "checkpoint_steps"):
        del f[name]
    f["snapshot_features"][-1, 0, 1] = np.nan


def unsorted_snapshots(f, s):
    steps = f["snapshot_steps"][:]
    steps[[1, 2]] = steps[[2, 1]]
    f["snapshot_steps"][:] = steps


def unsorted_mmds(f, s):
    resize_history(f, ["mmd_steps", "mmd"], 2)
    f["mmd_steps"][:] = [5, 0]


# Damage that makes the file unusable: (what, damage(f, s, epochs), a word of the reason)
START_OVER = [
    ("loss longer than epochs", lambda f, s, e: resize_history(f, ["loss", "step_time"], e + 50), "loss"),
    ("a snapshot step past epochs", lambda f, s, e: f["snapshot_steps"].__setitem__(-1, e + 5), "snapshot_steps"),
    ("loss not extendible", lambda f, s, e: replace_dataset(f, "loss", f["loss"][:]), "extendible"),
    ("loss of strings", lambda f, s, e: replace_dataset(f, "loss", np.array([b"x"] * s), maxshape=(None,)), "loss"),
    ("NaN in the checkpoint state", lambda f, s, e: nan_state(f, s), "NaN or Inf"),
    ("Inf in the checkpoint features", lambda f, s, e: nan_checkpoint_features(f, s), "NaN or Inf"),
    ("NaN in the snapshot resumed from", lambda f, s, e: nan_snapshot(f, s), "NaN or Inf"),
    ("unsorted snapshot_steps", lambda f, s, e: unsorted_snapshots(f, s), "snapshot_steps"),
    ("unsorted mmd_steps", lambda f, s, e: unsorted_mmds(f, s), "mmd_steps"),
    ("no teacher_features", lambda f, s, e: f.__delitem__("teacher_features"), "teacher_features"),
    ("teacher_features of the wrong shape", lambda f, s, e: replace_dataset(f, "teacher_features", np.zeros((15, 2))),
     "teacher_features"),
]

# Checkpoints of another shape or type are dropped: the run resumes from its last snapshot
DROPPED = [
    ("checkpoint_steps of 100000 entries", lambda f, s, e: replace_dataset(f, "checkpoint_steps", np.full(100000, s))),
    ("checkpoint_steps as floats", lambda f, s, e: replace_dataset(f, "checkpoint_steps", np.array([s, -1.0]))),
    ("checkpoint_features of another width", lambda f, s, e: replace_dataset(f, "checkpoint_features",
                                                                           np.zeros((2, 3, 2)))),
]


def resume_case(tmp, template, epochs, what, damage, s):
    """Copies the template partial into a fresh output directory, damages it and runs the job there."""
    case = tempfile.mkdtemp(dir=tmp)
    out = os.path.join(case, "out")
    os.mkdir(out)
    partial = os.path.join(out, "p.h5.partial")
    shutil.copy(template, partial)
    with h5py.File(partial, "r+") as f:
        damage(f, s, epochs)
    proc = run(1, [job_file(case, out, epochs)])
    print(f"--- {what}\n", proc.stdout[-700:], proc.stderr[-1500:])
    return proc, out


def check_result(out, what, epochs, resumed):
    """The complete result: marked complete, epochs losses, resumed_from as expected, no partial left."""
    path = os.path.join(out, "p.h5")
    ok = os.path.exists(path) and not os.path.exists(path + ".partial")
    if ok:
        with h5py.File(path, "r") as f:
            got = f.attrs["resumed_from"]
            got = got.decode() if isinstance(got, bytes) else got
            ok = int(f.attrs["complete"]) == 1 and f["loss"].shape == (epochs,) and got == resumed
            ok = ok and bool(np.all(np.isfinite(f["loss"][:])))
    check(ok, f"{what}: a whole result of {epochs} steps, resumed_from '{resumed}'")


def partial():
    with tempfile.TemporaryDirectory() as tmp:
        template, s, epochs = stopped_partial(tmp)

        # The intact file resumes from its last checkpoint, the stop step
        proc, out = resume_case(tmp, template, epochs, "intact", lambda f, s, e: None, s)
        check(proc.returncode == 0 and f"resuming p from step {s}" in proc.stdout,
              f"intact partial: resumed from step {s} (exit {proc.returncode})")
        check_result(out, "intact partial", epochs, str(s))

        # A kill between the extensions of a history's columns leaves them of different lengths:
        # the rows they all hold are kept, and the run still resumes from its checkpoint
        for what, names in (("loss longer than step_time", ["loss"]),
                            ("snapshot_steps longer than the snapshot data", ["snapshot_steps"])):
            def extend(f, s, e, names=names):
                resize_history(f, names, f[names[0]].shape[0] + 3)
            proc, out = resume_case(tmp, template, epochs, what, extend, s)
            check(proc.returncode == 0 and f"resuming p from step {s}" in proc.stdout and "starting over" not in proc.stdout,
                  f"{what}: resumed from the checkpoint at step {s} (exit {proc.returncode})")
            check_result(out, what, epochs, str(s))

        for what, damage, word in START_OVER:
            proc, out = resume_case(tmp, template, epochs, what, damage, s)
            m = re.search(r"p\.h5\.partial: cannot resume \((.*)\); starting over", proc.stdout)
            check(proc.returncode == 0 and m is not None and word in m.group(1),
                  f"{what}: started over, saying why ({m and m.group(1)}; exit {proc.returncode})")
            check("PETSC ERROR" not in proc.stderr and not proc.errors(), f"{what}: no error, no traceback")
            check_result(out, what, epochs, "")

        for what, damage in DROPPED:
            proc, out = resume_case(tmp, template, epochs, what, damage, s)
            m = re.search(r"resuming p from step (\d+)", proc.stdout)
            step = int(m.group(1)) if m else -1
            check(proc.returncode == 0 and 0 < step < s and step % 10 == 0,
                  f"{what}: checkpoints dropped, resumed from the last snapshot (step {step}, exit {proc.returncode})")
            check("PETSC ERROR" not in proc.stderr, f"{what}: no traceback")
            check_result(out, what, epochs, str(step))

        # Not a file at all: refused before anything is trained, at 2 ranks
        for what, make in (("a directory", os.mkdir), ("a FIFO", os.mkfifo)):
            case = tempfile.mkdtemp(dir=tmp)
            out = os.path.join(case, "out")
            os.mkdir(out)
            make(os.path.join(out, "p.h5.partial"))
            proc = run(2, [job_file(case, out, epochs)])
            expect_refused(proc, f"partial result that is {what}",
                           rf"p\.h5\.partial: is not a regular file \({what}\).*remove it")
            check("training" not in proc.stdout and not complete_files(out), f"partial that is {what}: nothing trained")


# ---- files that are not regular files, symbolic links, claims ---------------------------------

def fifo_inputs(tmp):
    """A FIFO as job file, data file, result, partial result or claim: refused, no rank waits."""
    out = os.path.join(tmp, "out")
    os.makedirs(out, exist_ok=True)
    fifo_job = os.path.join(tmp, "fifo.yaml")
    os.mkfifo(fifo_job)
    expect_refused(run(2, [fifo_job], timeout=30), "job file that is a FIFO",
                   r"fifo\.yaml: cannot read the job file: is not a regular file")
    fifo_data = os.path.join(tmp, "fifo-data.h5")
    os.mkfifo(fifo_data)
    job = os.path.join(tmp, "data.yaml")
    write(job, f"output: {out}\nruns:\n  - {{name: d, data: {{file: {fifo_data}}}, epochs: 3}}\n")
    expect_refused(run(2, [job], timeout=30), "data file that is a FIFO", r"fifo-data\.h5: .*is not a regular file")
    for suffix in (".h5", ".h5.claim"):
        case = tempfile.mkdtemp(dir=tmp)
        os.mkfifo(os.path.join(case, "p" + suffix))
        proc = run(2, [job_file(case, case, 20)] + (["--force"] if suffix == ".h5" else []), timeout=30)
        expect_refused(proc, f"p{suffix} that is a FIFO", rf"p{re.escape(suffix)}: is not a regular file \(a FIFO\)")
        check("training" not in proc.stdout, f"p{suffix} that is a FIFO: nothing trained")


def forced_over_directory(tmp):
    """--force with a directory where the result goes: refused before training, no partial left."""
    case = tempfile.mkdtemp(dir=tmp)
    os.mkdir(os.path.join(case, "p.h5"))
    proc = run(1, [job_file(case, case, 20), "--force"])
    expect_refused(proc, "--force over a directory p.h5", r"p\.h5: is not a regular file \(a directory\)")
    check("training" not in proc.stdout and not os.path.exists(os.path.join(case, "p.h5.partial")),
          "--force over a directory: nothing trained, no partial file")


def directory_at_finish(tmp):
    """A directory that appears at p.h5 while the run trains: the run ends with exit 2 and one line
    saying so, its partial result is kept, not marked complete, and is resumed once the directory
    is gone."""
    case = tempfile.mkdtemp(dir=tmp)
    job = job_file(case, case, 60000)
    cmd = [MPIRUN, "--oversubscribe", "-n", "1", EXE, job, "--progress", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stdout:
        if "%)" in line:
            os.mkdir(os.path.join(case, "p.h5"))
            break
    out, err = proc.communicate(timeout=120)
    partial = os.path.join(case, "p.h5.partial")
    expect_refused(Result(proc.returncode, out, err), "a directory at p.h5 when the run finishes",
                   r"p\.h5: is not a regular file \(a directory\).*; the run is kept as \S+p\.h5\.partial$")
    check(os.path.isfile(partial) and not marked_complete(partial), "the partial result is kept, not marked complete")
    os.rmdir(os.path.join(case, "p.h5"))
    proc = run(1, [job])
    check(proc.returncode == 0 and "resuming p from step" in proc.stdout and marked_complete(os.path.join(case, "p.h5")),
          f"once the directory is gone, the run resumes and completes (exit {proc.returncode})")


def symbolic_links(tmp):
    """A result, partial result or claim that is a symbolic link: refused, its target untouched."""
    victim = os.path.join(tmp, "victim.txt")
    for name, args in (("p.h5.partial", []), ("p.h5", ["--force"]), ("p.h5", []), ("p.h5.claim", [])):
        write(victim, "precious\n")
        case = tempfile.mkdtemp(dir=tmp)
        os.symlink(victim, os.path.join(case, name))
        proc = run(1, [job_file(case, case, 20)] + args)
        expect_refused(proc, f"{name} that is a symbolic link {' '.join(args)}",
                       rf"{re.escape(name)}: is a symbolic link; remove it")
        with open(victim, "rb") as f:
            check(f.read() == b"precious\n" and os.path.islink(os.path.join(case, name)),
                  f"{name} that is a symbolic link: its target and the link untouched")


def write_test_links(tmp):
    """The output directory's write test never follows a symbolic link: links planted under the
    names it may try (for the next few thousand process ids) and their target stay as they were."""
    victim = os.path.join(tmp, "victim-probe.txt")
    write(victim, "precious\n")
    case = tempfile.mkdtemp(dir=tmp)
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    links = []
    for pid in range(last + 1, last + 3000):
        for name in (f".varpro-write-test-{pid}", f".varpro-write-test-{pid}-0"):
            links.append(os.path.join(case, name))
            os.symlink(victim, links[-1])
    proc = run(1, [job_file(case, case, 3)])
    print(proc.stdout[-400:], proc.stderr[-800:])
    with open(victim, "rb") as f:
        intact = f.read() == b"precious\n"
    check(proc.returncode == 0 and intact and all(os.path.islink(p) for p in links),
          f"write test among symbolic links: run exits 0 (got {proc.returncode}), links and target untouched")


def damaged_results(tmp):
    """A complete result without loss, or with loss of the wrong shape, is damaged: refused."""
    case = tempfile.mkdtemp(dir=tmp)
    job = job_file(case, case, 20)
    check(run(1, [job]).returncode == 0, "complete result of 20 steps written")
    good = os.path.join(case, "p.h5")
    shutil.copy(good, good + ".orig")
    proc = run(1, [job])
    check(proc.returncode == 0 and "complete result exists, skipped" in proc.stdout, "an intact result is skipped")
    for what, damage in (("without loss", lambda f: f.__delitem__("loss")),
                         ("with loss of 19 entries", lambda f: f["loss"].resize((19,))),
                         ("with snapshot_features of another width",
                          lambda f: replace_dataset(f, "snapshot_features", np.zeros((3, 5, 2))))):
        shutil.copy(good + ".orig", good)
        with h5py.File(good, "r+") as f:
            damage(f)
        expect_refused(run(2, [job]), f"complete result {what}",
                       r"p\.h5: damaged result file \(dataset '\w+' .*\); remove it or use --force")


def claims(tmp):
    """Claim messages: an empty claim names no owner but says so; a time stamp in the future counts
    as fresh (and says so) unless the owner is gone; a directory claim is refused and left alone."""
    case = tempfile.mkdtemp(dir=tmp)
    job = job_file(case, case, 20)
    claim = os.path.join(case, "p.h5.claim")
    write(claim, "")
    proc = run(1, [job])
    expect_refused(proc, "empty claim", r"left alone, another run is training it: an empty or unreadable claim "
                   r"\(claim file \S+p\.h5\.claim, refreshed \d+ s ago\)", status=5)

    dead = subprocess.Popen(["true"])
    dead.wait()
    future = time.time() + 3600
    write(claim, f"host {socket.gethostname()} pid {dead.pid} job - started x\n")
    os.utime(claim, (future, future))
    proc = run(1, [job])
    print(proc.stdout[-600:], proc.stderr[-600:])
    m = re.search(r"taking over the stale claim on p: .*\(claim file .*, (refreshed .*)\)", proc.stdout)
    check(proc.returncode == 0 and m is not None and "in the future" in m.group(1) and not os.path.exists(claim),
          f"claim of a gone process dated in the future: taken over, saying so ({m and m.group(1)})")

    write(claim, "host elsewhere.invalid pid 1 job 7 started x\n")
    os.utime(claim, (future, future))
    expect_refused(run(1, [job, "--force"]), "claim of another host dated in the future",
                   r"host elsewhere\.invalid pid 1 .*refreshed 3[56]\d\d s in the future\)", status=5)
    os.unlink(claim)

    os.mkdir(claim)
    os.utime(claim, (0, 0))
    proc = run(2, [job, "--force"])
    expect_refused(proc, "directory claim", r"p\.h5\.claim: is not a regular file \(a directory\).*remove it")
    check(os.path.isdir(claim) and not glob.glob(claim + ".stale.*"), "directory claim: left alone, nothing moved aside")


def files():
    with tempfile.TemporaryDirectory() as tmp:
        fifo_inputs(tmp)
        forced_over_directory(tmp)
        directory_at_finish(tmp)
        symbolic_links(tmp)
        write_test_links(tmp)
        damaged_results(tmp)
        claims(tmp)


# ---- command lines and option values ---------------------------------------------------------

def options():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        job = job_file(tmp, out, 3)

        # A bad SLURM_ARRAY_TASK_ID matters only to what is trained
        env = dict(os.environ, SLURM_ARRAY_TASK_ID="abc")
        for args, word in ((["--help"], "Usage:"), (["--version"], "varpro-rbf "), ([job, "--list"], "to do")):
            proc = run(1, args, env=env)
            check(proc.returncode == 0 and word in proc.stdout and not proc.errors(),
                  f"SLURM_ARRAY_TASK_ID=abc: {' '.join(args[-1:])} works (exit {proc.returncode})")
        expect_refused(run(1, [job], env=env), "SLURM_ARRAY_TASK_ID=abc when training",
                       r"SLURM_ARRAY_TASK_ID: 'abc' is not a configuration index")

        # The job file comes first
        expect_refused(run(1, ["-inner_ksp_type", "cg", job]), "job file after a PETSc option",
                       r"no job file given before the PETSc options \(the job file comes first; see --help\)")
        expect_refused(run(1, ["--output", job]), "job file taken as the value of --output",
                       r"no job file given \('\S+job\.yaml' was taken as the value of --output")

        # Seconds: finite, and in range; decimal
        for option, value, bound in (("-varpro_result_flush_seconds", "-1", ">= 0"),
                                     ("-varpro_result_flush_seconds", "nan", ">= 0"),
                                     ("-varpro_claim_stale_seconds", "1e-300", ">= 10"),
                                     ("-varpro_claim_stale_seconds", "inf", ">= 10"),
                                     ("-varpro_claim_stale_seconds", "0x100", ">= 10"),
                                     ("--progress", "0x10", ">= 0"),
                                     ("--progress", "inf", ">= 0")):
            proc = run(2, [job, option, value])
            expect_refused(proc, f"{option} {value}",
                           rf"option {re.escape(option)}: '{re.escape(value)}' is not a number of seconds {bound}")
            check(not os.path.exists(out) or not os.listdir(out), f"{option} {value}: nothing trained")
        proc = run(1, [job, "-varpro_result_flush_seconds", "0", "-varpro_claim_stale_seconds", "30",
                       "--progress", "0.5"])
        check(proc.returncode == 0, f"good values of the seconds options are accepted (exit {proc.returncode})")


# ---- the tools -------------------------------------------------------------------------------

def tool(name, *args):
    proc = subprocess.run(["/usr/bin/python3", os.path.join(TOOLS, name)] + list(args), capture_output=True,
                          timeout=120, env=dict(os.environ, PYTHONIOENCODING="utf-8"))
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    print(out[-1500:], err[-1500:])
    return proc.returncode, out, err


def tools():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        job = os.path.join(tmp, "tools.yaml")
        write(job, job_text(out, 0, name="zero") + "  - {name: short, student_width: 4, epochs: 20}\n")
        proc = run(1, [job])
        check(proc.returncode == 0, f"runs of 0 and 20 steps complete (exit {proc.returncode})")

        # A run of no steps: its final reduced risk is the attribute, not nan
        code, text, _ = tool("compare.py", out)
        with h5py.File(os.path.join(out, "zero.h5"), "r") as f:
            risk = float(f.attrs["final_reduced_risk"])
        row = [line for line in text.splitlines() if line.startswith("zero ")]
        check(code == 0 and len(row) == 1 and f" {risk:.4g} " in row[0] and "nan" not in row[0],
              f"compare.py: the run of 0 steps shows its final reduced risk {risk:.4g} ({row})")

        # A name attribute that is not UTF-8, then a damaged file whose name is not UTF-8 either
        with h5py.File(os.path.join(out, "zero.h5"), "r+") as f:
            f.attrs.create("name", data=b"zero-\xfe", dtype=h5py.string_dtype("utf-8"))
        code, text, err = tool("compare.py", out)
        check(code == 0 and "Traceback" not in err and "zero-\ufffd" in text,
              f"compare.py: a name attribute that is not UTF-8 shown with U+FFFD (exit {code})")
        with open(os.fsencode(out) + b"/caf\xe9-\xff.h5", "wb") as f:
            f.write(b"not HDF5\n")
        code, text, err = tool("summary.py", out)
        check(code == 0 and "Traceback" not in err, f"summary.py: exit 0, no traceback (exit {code})")
        check("caf\ufffd-\ufffd" in text and "zero-\ufffd" in text and "caf\ufffd-\ufffd.h5: " in err,
              "summary.py: bytes that are not UTF-8 shown as U+FFFD, in a file name and a name attribute")
        code, text, err = tool("compare.py", out)
        check(code == 2 and "Traceback" not in err and re.search(r"compare\.py: error: \S*caf\ufffd-\ufffd\.h5: ", err),
              f"compare.py: the damaged file named with U+FFFD, exit 2 (got {code})")


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    cases = {"partial": partial, "files": files, "options": options, "tools": tools}
    if what not in cases:
        raise SystemExit(__doc__)
    cases[what]()
    sys.exit(harness.finish())


if __name__ == "__main__":
    main()
