#!/usr/bin/python3
"""Benchmark: median time per VarPro step at N = T = 4096, by width and rank count.

    tools/bench.py [--widths 128 512 1024] [--ranks 1 2] [--epochs 60] [--paths direct matfree]
                   [--build build] [-- extra options for varpro-rbf]

Every case runs the real executable on a generated problem (gamma = 100, biased, lambda =
1e-3) and reads back its result file: the median of the per-step wall times, the share of each
stage (slowest rank) in the total, the inner iterations per solve and how many kernel matrices
were assembled and factored. The solver paths are "direct" (assemble and factor every step,
the default) and "matfree" (-inner_kernel_mat_type matfree: CG on the matrix-free operator,
preconditioned by the factor of an earlier step). All cases run in one invocation, one after the
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
PATHS = {"direct": ["-inner_kernel_mat_type", "scalapack"], "matfree": [], "dense-cg": ["-inner_kernel_mat_type", "dense"]}


def run_case(args, tmp, width, ranks, path, extra):
    job = os.path.join(tmp, f"bench-M{width}-np{ranks}-{path}.yaml")
    out = os.path.join(tmp, f"out-M{width}-np{ranks}-{path}")
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
           "--progress", "1e9"] + PATHS[path] + extra
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    with h5py.File(os.path.join(out, "bench.h5"), "r") as res:
        step_time = res["step_time"][:]
        stages = {s: float(res.attrs[f"stage_time/{s}"]) for s in STAGES}
        solves = args.epochs + 1
        its = float(res.attrs["inner_iterations"]) / solves
        assemblies = int(res.attrs["kernel_assemblies"])
    return float(np.median(step_time)), stages, its, assemblies


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--paths", nargs="+", default=["direct", "matfree"], choices=sorted(PATHS))
    parser.add_argument("--n", type=int, default=4096, help="data points and teacher width")
    parser.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    parser.add_argument("extra", nargs="*", help="options passed to varpro-rbf (after --)")
    args = parser.parse_args()

    print(f"N = T = {args.n}, {args.epochs} steps per case; median step time, share of stage time,")
    print("inner iterations per solve, kernel matrices assembled and factored")
    print(f"{'M':>6} {'ranks':>5} {'path':>8} {'ms/step':>9}  " + "  ".join(f"{s[:10]:>10}" for s in STAGES)
          + f"  {'its':>6} {'factors':>7}")
    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            for ranks in args.ranks:
                for path in args.paths:
                    median, stages, its, assemblies = run_case(args, tmp, width, ranks, path, args.extra)
                    medians[width, ranks, path] = median
                    total = sum(stages.values())
                    shares = "  ".join(f"{100 * stages[s] / total:9.1f}%" for s in STAGES)
                    print(f"{width:>6} {ranks:>5} {path:>8} {1e3 * median:9.2f}  {shares}  {its:6.1f} {assemblies:7d}",
                          flush=True)
    for width in args.widths:
        for ranks in args.ranks:
            base = medians[width, ranks, args.paths[0]]
            for path in args.paths[1:]:
                print(f"M = {width}, {ranks} rank(s): {args.paths[0]} / {path} = {base / medians[width, ranks, path]:.2f}")
        if 1 in args.ranks:
            for ranks in args.ranks:
                if ranks > 1:
                    for path in args.paths:
                        speedup = medians[width, 1, path] / medians[width, ranks, path]
                        print(f"M = {width}, {path}: speed-up at {ranks} ranks {speedup:.2f}")


if __name__ == "__main__":
    main()
