#!/usr/bin/python3
"""Benchmark: time per VarPro step at N = T = 4096, by width, rank count and inner solve.

    tools/bench.py [--widths 128 512 1024] [--ranks 1 2] [--epochs 2000] [--paths direct matfree]
                   [--n 4096] [--events] [--build build] [-- extra options for varpro-rbf]

Every case runs the real executable on a generated problem (gamma = 100, biased, lambda =
1e-3) and reads back its result file. Per case it prints the median and the mean time per step
over all steps, the median over the second half of the run (the matrix-free solve is slower in
the first steps, when the features move fast), the share of each stage (slowest rank) in the
total, the inner iterations per solve, how many kernel matrices were assembled and factored, and
the peak resident memory of the largest rank. The solver paths are "direct" (-inner_kernel_mat_type
scalapack: assemble and factor every step) and "matfree" (the default: CG on the matrix-free
operator, preconditioned by the inverse of an earlier step's kernel matrix). All cases run in one
invocation, one after the other, so their ratios are measured under the same machine load; on a
shared machine, run it twice and compare. With --events it also prints, per case, the calls per
step and the time per call (slowest rank, from -log_view) of the kernels that docs/performance.md
models. This is not a test: it prints numbers.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

STAGES = ["Features", "Kernel assembly", "Inner solve", "Gradient", "MMD", "Output"]
PATHS = {"direct": ["-inner_kernel_mat_type", "scalapack"], "matfree": [],
         "dense-cg": ["-inner_kernel_mat_type", "dense"]}
EVENTS = ["VarproFeatures", "VarproFtFx", "PCApply", "VarproGradient", "VarproGram", "VarproGramReduce",
          "VarproKernelInv", "MatCholFctrNum", "MatSolve", "VecNorm", "VecTDot", "VecScatterEnd", "KSPSolve"]


def read_events(path):
    """Calls and seconds (slowest rank) of EVENTS, summed over the stages of a -log_view file."""
    events = {}
    with open(path) as f:
        for line in f:
            words = line.split()
            if len(words) > 4 and words[0] in EVENTS:
                calls, seconds = events.get(words[0], (0, 0.0))
                events[words[0]] = (calls + int(float(words[1])), seconds + float(words[3]))
    return events


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
    log = os.path.join(tmp, f"log-M{width}-np{ranks}-{path}.txt")
    cmd = ["mpirun", "--oversubscribe", "-n", str(ranks), os.path.join(args.build, "varpro-rbf"), job,
           "--progress", "1e9"] + PATHS[path] + extra + (["-log_view", ":" + log] if args.events else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    with h5py.File(os.path.join(out, "bench.h5"), "r") as res:
        step_time = res["step_time"][:]
        return {
            "median": float(np.median(step_time)),
            "mean": float(np.mean(step_time)),
            "late": float(np.median(step_time[len(step_time) // 2:])),
            "stages": {s: float(res.attrs[f"stage_time/{s}"]) for s in STAGES},
            "its": float(res.attrs["inner_iterations"]) / (args.epochs + 1),
            "factors": int(res.attrs["kernel_assemblies"]),
            "memory": float(res.attrs["peak_memory_per_rank"]) / 2**20,
            "events": read_events(log) if args.events else {},
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--paths", nargs="+", default=["direct", "matfree"], choices=sorted(PATHS))
    parser.add_argument("--n", type=int, default=4096, help="data points and teacher width")
    parser.add_argument("--events", action="store_true", help="per-kernel calls and times from -log_view")
    parser.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    parser.add_argument("extra", nargs="*", help="options passed to varpro-rbf (after --)")
    args = parser.parse_args()

    print(f"N = T = {args.n}, {args.epochs} steps per case. ms/step: median and mean over all steps, median over")
    print("the second half; share of stage time; inner iterations per solve; kernel matrices factored;")
    print("peak resident memory of the largest rank")
    print(f"{'M':>6} {'ranks':>5} {'path':>8} {'median':>8} {'mean':>8} {'late':>8}  "
          + "  ".join(f"{s[:10]:>10}" for s in STAGES) + f"  {'its':>5} {'factors':>7} {'MiB':>7}")
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            for ranks in args.ranks:
                for path in args.paths:
                    c = cases[width, ranks, path] = run_case(args, tmp, width, ranks, path, args.extra)
                    total = sum(c["stages"].values())
                    shares = "  ".join(f"{100 * c['stages'][s] / total:9.1f}%" for s in STAGES)
                    print(f"{width:>6} {ranks:>5} {path:>8} {1e3 * c['median']:8.2f} {1e3 * c['mean']:8.2f} "
                          f"{1e3 * c['late']:8.2f}  {shares}  {c['its']:5.1f} {c['factors']:7d} {c['memory']:7.0f}",
                          flush=True)
    if args.events:
        print("\nper kernel: calls per step, ms per call (slowest rank)")
        for (width, ranks, path), c in cases.items():
            cells = [f"{e} {n / (args.epochs + 1):.2f} x {1e3 * t / n:.3f}" for e, (n, t) in c["events"].items() if n]
            print(f"M = {width}, {ranks} rank(s), {path}: " + "; ".join(cells))
    for width in args.widths:
        for ranks in args.ranks:
            base = cases[width, ranks, args.paths[0]]
            for path in args.paths[1:]:
                c = cases[width, ranks, path]
                print(f"M = {width}, {ranks} rank(s): {args.paths[0]} / {path} = {base['median'] / c['median']:.2f} "
                      f"(median), {base['mean'] / c['mean']:.2f} (mean)")
        if 1 in args.ranks:
            for ranks in args.ranks:
                if ranks > 1:
                    for path in args.paths:
                        speedup = cases[width, 1, path]["median"] / cases[width, ranks, path]["median"]
                        print(f"M = {width}, {path}: speed-up at {ranks} ranks {speedup:.2f} (median)")


if __name__ == "__main__":
    main()
