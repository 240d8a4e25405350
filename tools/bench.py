#!/usr/bin/python3
"""Benchmark: median time per VarPro step at N = T = 4096, by width and rank count.

    tools/bench.py [--widths 128 512 1024] [--ranks 1 2] [--epochs 60] [--build build]
                   [-- extra options for varpro-rbf, e.g. -inner_kernel_mat_type dense]

Every case runs the real executable on a generated problem (gamma = 100, biased, lambda =
1e-3) and reads back its result file: the median of the per-step wall times, and the share
of each stage (slowest rank) in the total. All cases run in one invocation, one after the
other, so their ratios are measured under the same machine load. This is not a test: it
prints numbers.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

STAGES = ["Features", "Kernel assembly", "Inner solve", "Gradient", "MMD", "Output"]


def run_case(args, tmp, width, ranks, extra):
    job = os.path.join(tmp, f"bench-M{width}-np{ranks}.yaml")
    out = os.path.join(tmp, f"out-M{width}-np{ranks}")
    with open(job, "w") as f:
        f.write(f"""output: {out}
runs:
  - name: bench
    regularization: biased
    student_width: {width}
    lambda: 1.0e-3
    gamma: 100
    N: {args.n}
    teacher_width: {args.n}
    epochs: {args.epochs}
    saving_step: {args.epochs}
    mmd_points: 2
""")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpirun", "--oversubscribe", "-n", str(ranks), os.path.join(args.build, "varpro-rbf"), job,
           "--progress", "1e9"] + extra
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    with h5py.File(os.path.join(out, "bench.h5"), "r") as res:
        step_time = res["step_time"][:]
        stages = {s: float(res.attrs[f"stage_time/{s}"]) for s in STAGES}
    return float(np.median(step_time)), stages


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--n", type=int, default=4096, help="data points and teacher width")
    parser.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    parser.add_argument("extra", nargs="*", help="options passed to varpro-rbf (after --)")
    args = parser.parse_args()

    print(f"N = T = {args.n}, {args.epochs} steps per case; median step time, share of stage time")
    print(f"{'M':>6} {'ranks':>5} {'ms/step':>9}  " + "  ".join(f"{s[:10]:>10}" for s in STAGES))
    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            for ranks in args.ranks:
                median, stages = run_case(args, tmp, width, ranks, args.extra)
                medians[width, ranks] = median
                total = sum(stages.values())
                shares = "  ".join(f"{100 * stages[s] / total:9.1f}%" for s in STAGES)
                print(f"{width:>6} {ranks:>5} {1e3 * median:9.2f}  {shares}", flush=True)
    if 1 in args.ranks:
        for width in args.widths:
            for ranks in args.ranks:
                if ranks > 1:
                    print(f"M = {width}: speed-up at {ranks} ranks {medians[width, 1] / medians[width, ranks]:.2f}")


if __name__ == "__main__":
    main()
