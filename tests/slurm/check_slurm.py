#!/usr/bin/python3
"""The batch scripts of jobs/ on a real single-node SLURM cluster, run by meson test.

  check_slurm.py SOURCE_DIR

Starts munged (as user munge), slurmctld and slurmd on loopback in a scratch directory, with
slurm.conf.in beside this file filled in, and submits with sbatch:

  array        tools/submit-array.sh on configs/slurm-test.yaml: two configurations, two array
               tasks of 2 ranks, started by mpirun (VARPRO_LAUNCHER=mpirun)
  debug        jobs/debug.sbatch on the same job file: 1 rank, srun --mpi=pmix
  scaling      jobs/scaling.sbatch on its first configuration at 1 and 2 ranks, srun
  stop-srun,   jobs/train.sbatch on a long run, 1 rank by srun or mpirun, with a two-minute time
  stop-mpirun  limit and the warning signal 75 s before it (--signal=B:USR1@75): the run stops at
               a step boundary, exits 4 and leaves only its partial result

then waits for the queue to empty and checks each job's (each array task's) state and exit code
(scontrol), result files, job log and the scaling CSV (also read back by tools/figures.py
--scaling). On failure it prints the job logs and the daemons' logs. Every daemon is stopped by
its PID at the end, failure or not, and any process left under them (job steps) after it.
Needs root, munge and SLURM (munge, slurmctld, slurmd, slurm-client): exits 77 (skipped)
without them. VARPRO_EXE names the executable.
"""
import csv
import ctypes
import glob
import math
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

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import harness  # noqa: E402
from harness import EXE, check, write  # noqa: E402

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
MUNGE_KEY = "/etc/munge/munge.key"
PROGRAMS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel",
            "sinfo", "srun")
START_TIMEOUT = 60   # seconds for the node to come up
JOBS_TIMEOUT = 400   # seconds for every job to end, from the first submission
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
CSV_COLUMNS = ["ranks", "nodes", "time_per_step", "speedup", "efficiency", "label"]

# A run far longer than its job's time limit; the warning signal stops it
STOP_JOB = """output: results/stop
defaults: {N: 64, teacher_width: 64, epochs: 20000000, saving_step: 1000000, mmd_points: 3}
runs:
  - {regularization: biased, student_width: 8, lambda: 1.0e-3, gamma: 100}
"""


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(f"interrupted by signal {signum}")


def run(cmd, env=None, cwd=None, timeout=60):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def free_ports(count):
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ensure_munge_key():
    """The key munged needs: created when missing, owned by munge, mode 400."""
    if not os.path.exists(MUNGE_KEY):
        os.makedirs(os.path.dirname(MUNGE_KEY), mode=0o700, exist_ok=True)
        shutil.chown(os.path.dirname(MUNGE_KEY), "munge", "munge")
        if shutil.which("mungekey"):
            subprocess.run(["mungekey", "--create", "--keyfile=" + MUNGE_KEY], check=True)
        else:
            with open(MUNGE_KEY, "wb") as f:
                f.write(os.urandom(1024))
        print(f"created {MUNGE_KEY}")
    shutil.chown(MUNGE_KEY, "munge", "munge")
    os.chmod(MUNGE_KEY, 0o400)


def children_of(root):
    """Every process under root (a pid), from /proc."""
    parent = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(stat.split("/")[2])] = int(fields[1])
        except (OSError, IndexError, ValueError):
            pass
    found, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


class Cluster:
    """munged, slurmctld and slurmd of one scratch directory, each started in the foreground as
    a child of this process and stopped by its PID."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.conf = os.path.join(tmp, "slurm.conf")
        self.socket = os.path.join(tmp, "munge", "munge.socket")
        self.host = socket.gethostname().split(".")[0]
        self.daemons = []   # (name, Popen)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))}
        self.env.update({"SLURM_CONF": self.conf, "OMPI_ALLOW_RUN_AS_ROOT": "1",
                         "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OPENBLAS_NUM_THREADS": "1"})

    def log(self, name):
        return os.path.join(self.tmp, name)

    def spawn(self, name, cmd, **kw):
        out = open(self.log(name + ".out"), "w")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kw)
        out.close()
        self.daemons.append((name, proc))
        print(f"started {name}, pid {proc.pid}", flush=True)
        return proc

    def exited(self):
        return [f"{n} (exit {p.returncode})" for n, p in self.daemons if p.poll() is not None]

    def write_conf(self):
        # The CPU layout as slurmd sees it: "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 ..."
        probe = run(["slurmd", "-C"])
        layout = dict(re.findall(r"(\w+)=(\S+)", probe.stdout.splitlines()[0] if probe.stdout else ""))
        keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        if not all(k in layout for k in keys):
            raise RuntimeError(f"slurmd -C: no CPU layout in {probe.stdout!r} {probe.stderr!r}")
        ctld_port, slurmd_port = free_ports(2)
        with open(os.path.join(HERE, "slurm.conf.in")) as f:
            text = f.read()
        for key, value in (("DIR", self.tmp), ("HOST", self.host), ("SLURMCTLD_PORT", str(ctld_port)),
                           ("SLURMD_PORT", str(slurmd_port)),
                           ("CPU_LAYOUT", " ".join(f"{k}={layout[k]}" for k in keys))):
            text = text.replace(f"@{key}@", value)
        write(self.conf, text)
        self.cpus = int(layout["CPUs"])

    def start(self):
        for d in ("state", "spool", "munge"):
            os.makedirs(os.path.join(self.tmp, d))
        os.chmod(self.tmp, 0o755)   # munged checks every directory on the way to its socket
        munge_dir = os.path.join(self.tmp, "munge")
        shutil.chown(munge_dir, "munge", "munge")
        os.chmod(munge_dir, 0o755)
        self.write_conf()

        # munged as user munge, its socket, PID, log and seed in the scratch directory
        self.spawn("munged", ["munged", "--foreground", "--socket=" + self.socket, "--key-file=" + MUNGE_KEY,
                              "--log-file=" + os.path.join(munge_dir, "munged.log"),
                              "--pid-file=" + os.path.join(munge_dir, "munged.pid"),
                              "--seed-file=" + os.path.join(munge_dir, "munged.seed")],
                   user="munge", group="munge", extra_groups=[])
        self.wait_for("munged", lambda: run(["munge", "-n", "-S", self.socket]).returncode == 0)

        # The controller, then the node's daemon; the node must come up idle
        self.spawn("slurmctld", ["slurmctld", "-D", "-f", self.conf])
        self.spawn("slurmd", ["slurmd", "-D", "-f", self.conf, "-N", self.host])
        self.wait_for("node " + self.host + " idle", lambda: run(
            ["sinfo", "-h", "-N", "-n", self.host, "-o", "%T"], env=self.env).stdout.strip() == "idle")

    def wait_for(self, what, ready):
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            gone = self.exited()
            if gone:
                raise RuntimeError(f"{what}: {', '.join(gone)} exited")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not ready after {START_TIMEOUT} s")
            time.sleep(0.5)
        print(f"{what}: ready", flush=True)

    def stop(self):
        """Jobs cancelled while the controller runs, then the daemons by PID, then any process
        left under this one (a job step whose slurmstepd outlived slurmd)."""
        ctld = dict(self.daemons).get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            try:
                ids = run(["squeue", "-h", "-o", "%A"], env=self.env, timeout=20).stdout.split()
                if ids:
                    print(f"cancelling jobs {' '.join(ids)}")
                    run(["scancel"] + ids, env=self.env, timeout=20)
                    deadline = time.monotonic() + 30
                    while (time.monotonic() < deadline
                           and run(["squeue", "-h"], env=self.env, timeout=20).stdout.strip()):
                        time.sleep(1)
            except (subprocess.SubprocessError, OSError) as exc:
                print(f"cancelling jobs: {exc}")
        for name, proc in reversed(self.daemons):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            print(f"stopped {name} (pid {proc.pid}, exit {proc.returncode})", flush=True)
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 1)):
            reap()
            left = children_of(os.getpid())
            if not left:
                break
            print(f"ending {len(left)} process(es) left by the jobs: {sig.name} to {left}")
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(grace)
        reap()


def reap():
    """Waits for the exited children of this process: slurmstepd and job processes whose
    parents exited come to it, their subreaper."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                return
        except ChildProcessError:
            return


def print_file(path, tail=None):
    print(f"----- {path}")
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as exc:
        print(f"(unreadable: {exc.strerror})")
        return
    if tail and len(lines) > tail:
        print(f"(last {tail} of {len(lines)} lines)")
        lines = lines[-tail:]
    sys.stdout.write("".join(lines))


# ---- the jobs ---------------------------------------------------------------------------------

def submit(cluster, name, cmd, top, env_extra=None):
    env = dict(cluster.env, **(env_extra or {}))
    proc = run(cmd, env=env, cwd=top)
    print(f"{name}: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}", end="", flush=True)
    ids = re.findall(r"^(\d+)(?:;\S+)?$|submitted job (\d+)", proc.stdout, re.M)
    if not check(proc.returncode == 0 and ids, f"{name}: submitted (status {proc.returncode})"):
        return None
    return next(a or b for a, b in ids)


def wait_for_jobs(cluster, deadline):
    """Polls squeue until no job is pending, running or completing; False on timeout."""
    while True:
        queue = run(["squeue", "-h", "-o", "%i %T"], env=cluster.env, timeout=30)
        if queue.returncode == 0 and not queue.stdout.strip():
            return True
        gone = cluster.exited()
        if gone:
            print(f"{', '.join(gone)} exited")
            return False
        if time.monotonic() > deadline:
            print(f"jobs still queued after {JOBS_TIMEOUT} s:\n{queue.stdout}")
            return False
        time.sleep(1)


def job_records(cluster, job_id):
    """One dict per job, or per array task, from scontrol."""
    out = run(["scontrol", "-o", "show", "job", job_id], env=cluster.env).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]


def check_state(cluster, name, job_id, state, exit_code, tasks=None):
    records = job_records(cluster, job_id)
    if tasks is not None:
        got = sorted(r.get("ArrayTaskId", "") for r in records)
        check(got == [str(t) for t in tasks], f"{name}: array tasks {got}, expected {list(tasks)}")
    for r in records:
        what = name + (f" task {r['ArrayTaskId']}" if "ArrayTaskId" in r else "")
        check(r.get("JobState") == state and r.get("ExitCode") == exit_code,
              f"{what} (job {r.get('JobId')}): {r.get('JobState')} exit code {r.get('ExitCode')},"
              f" expected {state} {exit_code}")
    return check(records, f"{name}: known to scontrol")


def check_results(name, out_dir, names, ranks):
    for conf in names:
        path = os.path.join(out_dir, conf + ".h5")
        check(not os.path.exists(path + ".partial"), f"{name}: no {conf}.h5.partial left")
        if not check(os.path.exists(path), f"{name}: {conf}.h5 written"):
            continue
        with h5py.File(path, "r") as f:
            complete, nranks = int(f.attrs.get("complete", 0)), int(f.attrs.get("nranks", 0))
        check(complete == 1 and nranks == ranks,
              f"{name}: {conf}.h5 complete = {complete}, trained on {nranks} rank(s) (expected {ranks})")


def check_log(name, path, host, texts):
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return check(False, f"{name}: job log {path}")
    check(re.search(r"^nodes: " + re.escape(host) + r"\b", text, re.M),
          f"{name}: the log names the node list ({host})")
    for t in texts:
        check(t in text, f"{name}: the log says {t!r}")


def check_scaling(csv_path, label, top, tmp):
    try:
        with open(csv_path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError:
        return check(False, f"scaling: {csv_path} written")
    check(rows and rows[0] == CSV_COLUMNS, f"scaling: CSV header {rows[:1]}")
    data = rows[1:]
    if not check(len(data) == 2, f"scaling: 2 CSV rows ({len(data)})"):
        return
    try:
        vals = [(int(r[0]), int(r[1]), float(r[2]), float(r[3]), float(r[4]), r[5]) for r in data]
    except (ValueError, IndexError):
        return check(False, f"scaling: CSV rows of numbers {data}")
    check([v[0] for v in vals] == [1, 2] and [v[1] for v in vals] == [1, 1],
          f"scaling: ranks 1, 2 on one node ({[v[:2] for v in vals]})")
    check(all(math.isfinite(v[2]) and 0 < v[2] < 1 for v in vals), f"scaling: times per step {[v[2] for v in vals]}")
    check(all(v[5] == label for v in vals), f"scaling: labels {[v[5] for v in vals]}")
    t0 = vals[0][2]
    for p, _, t, s, e, _ in vals:
        check(abs(s - t0 / t) <= 1e-3 * max(1, s) and abs(e - s / p) <= 1e-3 * max(1, e),
              f"scaling: {p} rank(s): speedup {s} = {t0:.3e}/{t:.3e}, efficiency {e} = speedup/{p}")
    for p, t in ((1, vals[0][2]), (2, vals[1][2])):
        with h5py.File(os.path.join(os.path.dirname(csv_path), f"np{p}", label + ".h5"), "r") as f:
            stored = float(f.attrs["time_per_step"])
        check(abs(t - stored) <= 1e-6 * stored, f"scaling: {p} rank(s): time_per_step {t} is the file's {stored}")
    proc = run([PY, os.path.join(top, "tools", "figures.py"), "--scaling", csv_path, "--out",
                os.path.join(tmp, "figures")], timeout=120)
    check(proc.returncode == 0 and os.path.exists(os.path.join(tmp, "figures", "scaling-scaling.png")),
          f"scaling: tools/figures.py --scaling reads the CSV (status {proc.returncode}) {proc.stderr.strip()}")


def check_stopped(name, out_dir, conf):
    path = os.path.join(out_dir, conf + ".h5")
    check(os.path.exists(path + ".partial") and not os.path.exists(path),
          f"{name}: only the partial result {conf}.h5.partial is left")


def run_jobs(cluster, top, tmp):
    work, logs, out = (os.path.join(tmp, d) for d in ("work", "logs", "out"))
    for d in (work, logs, out):
        os.makedirs(d)
    job_file = os.path.join(top, "configs", "slurm-test.yaml")
    listing = run([EXE, "--list", job_file], env=cluster.env)
    names = re.findall(r"^\s*\d+\s+(\S+)", listing.stdout, re.M)
    if not check(listing.returncode == 0 and len(names) == 2, f"varpro-rbf --list {job_file}: {names}"):
        return
    stop_file = os.path.join(tmp, "stop.yaml")
    write(stop_file, STOP_JOB)
    stop_name = "biased-M8-lambda0.001-gamma100-seed0"
    sbatch = ["sbatch", "--parsable", "--chdir=" + work]

    # The jobs stopped by the warning signal first: they wait for it, on one core each
    start = time.monotonic()
    jobs = {}
    for launcher in ("srun", "mpirun"):
        name = "stop-" + launcher
        jobs[name] = submit(cluster, name, sbatch + [
            f"--output={logs}/{name}-%j.log", "--ntasks=1", "--ntasks-per-node=1", "--time=2",
            "--signal=B:USR1@75", "jobs/train.sbatch", stop_file, "--output", os.path.join(out, name)],
            top, {"VARPRO_LAUNCHER": launcher})
    jobs["array"] = submit(cluster, "array", [
        "tools/submit-array.sh", f"--output={logs}/array-%A_%a.log", "--chdir=" + work,
        "configs/slurm-test.yaml", "--output", os.path.join(out, "array")], top, {"VARPRO_LAUNCHER": "mpirun"})
    jobs["debug"] = submit(cluster, "debug", sbatch + [
        f"--output={logs}/debug-%j.log", "jobs/debug.sbatch", job_file, "--output", os.path.join(out, "debug")],
        top)
    jobs["scaling"] = submit(cluster, "scaling", sbatch + [
        f"--output={logs}/scaling-%j.log", "jobs/scaling.sbatch", job_file, "--task", "0"], top,
        {"VARPRO_SCALING_RANKS": "1 2", "VARPRO_SCALING_DIR": os.path.join(out, "scaling")})
    if not all(jobs.values()):
        return
    done = wait_for_jobs(cluster, start + JOBS_TIMEOUT)
    print(f"jobs ended in {time.monotonic() - start:.0f} s" if done else "jobs did not end", flush=True)
    if not check(done, "every job ended"):
        return

    # Each job's end, results and log
    host = cluster.host
    check_state(cluster, "array", jobs["array"], "COMPLETED", "0:0", tasks=[0, 1])
    check_results("array", os.path.join(out, "array"), names, 2)
    for task in (0, 1):
        check_log(f"array task {task}", f"{logs}/array-{jobs['array']}_{task}.log", host,
                  ["launcher: mpirun", "command: mpirun --report-bindings", "bound to", "exit status 0"])
    check_state(cluster, "debug", jobs["debug"], "COMPLETED", "0:0")
    check_results("debug", os.path.join(out, "debug"), names, 1)
    check_log("debug", f"{logs}/debug-{jobs['debug']}.log", host,
              ["launcher: srun", "command: srun --mpi=pmix --cpu-bind=verbose --ntasks=1", "exit status 0"])
    check_state(cluster, "scaling", jobs["scaling"], "COMPLETED", "0:0")
    for p in (1, 2):
        check_results(f"scaling np{p}", os.path.join(out, "scaling", f"np{p}"), names[:1], p)
    check_log("scaling", f"{logs}/scaling-{jobs['scaling']}.log", host,
              ["command: srun --mpi=pmix --cpu-bind=verbose --ntasks=2 --nodes=1", "ranks,nodes,time_per_step"])
    check_scaling(os.path.join(out, "scaling", "scaling.csv"), names[0], top, tmp)
    for launcher in ("srun", "mpirun"):
        name = "stop-" + launcher
        check_state(cluster, name, jobs[name], "FAILED", "4:0")
        check_stopped(name, os.path.join(out, name), stop_name)
        check_log(name, f"{logs}/{name}-{jobs[name]}.log", host,
                  ["launcher: " + launcher, "SIGUSR1 at", "passed on to the ranks", "stopped by signal at step",
                   "exit status 4"])


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    top = os.path.abspath(sys.argv[1])
    missing = [p for p in PROGRAMS if not shutil.which(p)]
    if os.geteuid() != 0 or missing:
        print("skipped: needs root, munge and SLURM" + (f" (missing: {' '.join(missing)})" if missing else ""))
        return 77
    if not (EXE and os.access(EXE, os.X_OK)):
        print("VARPRO_EXE must name the varpro-rbf executable")
        return 1

    # Orphans of the daemons (job steps) come to this process, which ends them by PID at the end
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ensure_munge_key()
    tmp = tempfile.mkdtemp(prefix="varpro-slurm-")
    cluster = Cluster(tmp)
    start = time.monotonic()
    try:
        cluster.start()
        print(f"cluster up in {time.monotonic() - start:.0f} s: {cluster.host}, {cluster.cpus} CPU(s), {tmp}")
        run_jobs(cluster, top, tmp)
    except (Interrupted, RuntimeError, subprocess.SubprocessError, OSError) as exc:
        check(False, f"{type(exc).__name__}: {exc}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if harness.failures:
            for path in sorted(glob.glob(os.path.join(tmp, "logs", "*.log"))):
                print_file(path)
            # The daemons' logs, copied to their standard output
            for name, _ in cluster.daemons:
                print_file(cluster.log(name + ".out"), tail=200)
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return harness.finish(f" in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
