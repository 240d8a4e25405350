"""Helpers shared by the end-to-end test scripts (check_*.py, slurm/check_slurm.py).

  check(ok, what)             print 'ok   what' or 'FAIL what', count the failures; returns ok
  run(np_, args, timeout)     the executable at np_ ranks under mpirun --oversubscribe
  write(path, text)           a text file
  finish(note="")             print '<n> failure(s)<note>'; returns the exit status (1 on failure)

The executable and mpirun come from the environment (VARPRO_EXE, VARPRO_MPIRUN).
"""
import os
import subprocess

EXE = os.environ.get("VARPRO_EXE", "")
MPIRUN = os.environ.get("VARPRO_MPIRUN", "mpirun")

failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures += 1
    return ok


def run(np_, args, timeout=600):
    cmd = [MPIRUN, "--oversubscribe", "-n", str(np_), EXE] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def finish(note=""):
    print(f"{failures} failure(s){note}", flush=True)
    return 1 if failures else 0
