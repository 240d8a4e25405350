"""Reading varpro-rbf result files and grouping them into the paper's families.

Shared by tools/figures.py, tools/compare.py and tools/summary.py. Runs are grouped by the
attributes stored in each file, never by file names:

  width     biased and unbiased runs with the same lambda, gamma, N, T, epochs, seed,
            time scale and data file, and at least two student widths M;
  strength  same gamma and setting, at least two lambdas at one width: the largest width
            that has several lambdas;
  shape     unbiased runs with the same M, lambda, N, epochs, seed, time scale, data file,
            at least one with gamma >= 0 and one with gamma < 0 (two Diracs);
  teacher   one representative run per distinct teacher (gamma, seed, T, data file).
"""
import glob
import math
import os
from dataclasses import dataclass, field

import numpy as np

DATASETS = ("loss", "step_time", "snapshot_steps", "snapshot_features",
            "snapshot_outer_weights", "mmd_steps", "mmd", "teacher_features")
INT_ATTRS = ("student_width", "seed", "epochs", "N", "teacher_width")
REAL_ATTRS = ("lambda", "gamma", "time_scale")
DEFAULT_TIME_SCALE = 2.0 ** -10


class BadFile(Exception):
    """A result file that cannot be used; str() is 'path: problem' on one line."""

    def __init__(self, path, problem):
        super().__init__(f"{printable(path)}: {one_line(problem)}")
        self.path = printable(path)


class UsageError(Exception):
    """Bad command-line input other than a result file (directory, run name, CSV)."""


def printable(text):
    """text with what is not UTF-8 (the bytes of a file name or attribute that is not valid UTF-8,
    which Python holds as lone surrogates) replaced by U+FFFD, so that it can be printed."""
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def one_line(text):
    return " ".join(printable(text).split())


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return printable(value)


@dataclass
class Run:
    """One complete result file: its parameters and the histories the tools need."""
    path: str
    name: str
    regularization: str
    M: int
    lam: float
    gamma: float
    seed: int
    epochs: int
    N: int
    T: int
    time_scale: float
    data_file: str
    loss: np.ndarray
    mmd_steps: np.ndarray
    mmd: np.ndarray
    snapshot_steps: np.ndarray
    teacher_features: np.ndarray
    attrs: dict = field(default_factory=dict, repr=False)

    @property
    def unbiased(self):
        return self.regularization == "unbiased"

    @property
    def final_mmd(self):
        return float(self.mmd[-1])

    @property
    def final_risk(self):
        """The reduced risk at the final features, after the last step (attribute
        final_reduced_risk); the last loss value (that before the last step) for a file without it."""
        try:
            return float(np.asarray(self.attrs["final_reduced_risk"]).reshape(-1)[0])
        except (KeyError, IndexError, TypeError, ValueError):
            return float(self.loss[-1]) if self.loss.size else float("nan")

    @property
    def setting(self):
        """What must agree, besides the swept parameters, for runs to share a figure."""
        return (self.N, self.epochs, self.seed, self.time_scale, self.data_file)

    def read_snapshots(self, indices):
        """snapshot_features at the given (sorted, unique) snapshot indices."""
        import h5py
        try:
            with h5py.File(self.path, "r") as f:
                return np.asarray(f["snapshot_features"][list(indices)], dtype=float)
        except Exception as exc:  # a file damaged after the first read
            raise BadFile(self.path, f"cannot read snapshot_features: {exc}") from None


def load_run(path):
    """Reads and checks one result file; raises BadFile with a one-line reason."""
    import h5py
    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        raise BadFile(path, f"not a readable HDF5 file ({exc})") from None
    try:
        with f:
            a = f.attrs
            try:
                complete = a.get("complete", None)
                complete = None if complete is None else int(np.asarray(complete).reshape(-1)[0])
            except Exception:
                complete = None
            if complete != 1:
                raise BadFile(path, "incomplete result (attribute 'complete' is not 1)")
            missing = [k for k in ("regularization", "name") + INT_ATTRS + REAL_ATTRS if k not in a]
            if missing:
                raise BadFile(path, "missing attribute(s) " + ", ".join(missing))
            missing = [d for d in DATASETS if d not in f]
            if missing:
                raise BadFile(path, "missing dataset(s) " + ", ".join(missing))
            ints = {k: int(np.asarray(a[k]).reshape(-1)[0]) for k in INT_ATTRS}
            reals = {k: float(np.asarray(a[k]).reshape(-1)[0]) for k in REAL_ATTRS}
            reg = _text(a["regularization"])
            if reg not in ("biased", "unbiased"):
                raise BadFile(path, f"attribute regularization is '{reg}'")
            loss = np.asarray(f["loss"][()], dtype=float)
            mmd_steps = np.asarray(f["mmd_steps"][()], dtype=np.int64)
            mmd = np.asarray(f["mmd"][()], dtype=float)
            snap_steps = np.asarray(f["snapshot_steps"][()], dtype=np.int64)
            teacher = np.asarray(f["teacher_features"][()], dtype=float)
            feats = f["snapshot_features"]
            M, T, E = ints["student_width"], ints["teacher_width"], ints["epochs"]
            if loss.shape != (E,):
                raise BadFile(path, f"loss has shape {loss.shape}, expected ({E},)")
            if mmd.ndim != 1 or mmd.size == 0 or mmd.shape != mmd_steps.shape:
                raise BadFile(path, f"mmd {mmd.shape} and mmd_steps {mmd_steps.shape} disagree")
            if teacher.shape != (T, 2):
                raise BadFile(path, f"teacher_features has shape {teacher.shape}, expected ({T}, 2)")
            S = snap_steps.size
            if S == 0 or feats.shape != (S, M, 2):
                raise BadFile(path, f"snapshot_features has shape {feats.shape}, expected ({S}, {M}, 2)")
            feats[S - 1]  # the last snapshot must be readable too
            if not (np.all(np.isfinite(loss)) and np.all(np.isfinite(mmd))):
                raise BadFile(path, "loss or mmd contains NaN or Inf")
            return Run(path=path, name=_text(a["name"]), regularization=reg, M=M,
                       lam=reals["lambda"], gamma=reals["gamma"], seed=ints["seed"], epochs=E,
                       N=ints["N"], T=T, time_scale=reals["time_scale"],
                       data_file=_text(a["data_file"]) if "data_file" in a else "",
                       loss=loss, mmd_steps=mmd_steps, mmd=mmd, snapshot_steps=snap_steps,
                       teacher_features=teacher,
                       attrs={k: a[k] for k in a.keys()})
    except BadFile:
        raise
    except Exception as exc:
        raise BadFile(path, f"damaged result file ({type(exc).__name__}: {exc})") from None


def load_dir(results_dir):
    """All complete results (*.h5, not *.h5.partial) of a directory, sorted by path.

    Returns (runs, errors): errors is a list of BadFile, one per unusable file.
    """
    if not os.path.isdir(results_dir):
        raise UsageError(f"{results_dir}: not a directory")
    paths = sorted(p for p in glob.glob(os.path.join(results_dir, "*.h5")) if os.path.isfile(p))
    if not paths:
        raise UsageError(f"{results_dir}: no result files (*.h5)")
    runs, errors = [], []
    for p in paths:
        try:
            runs.append(load_run(p))
        except BadFile as exc:
            errors.append(exc)
    return runs, errors


# ---- families ----------------------------------------------------------------------------

def _num(x):
    return f"{x:g}"


def setting_tag(run, with_T=True):
    """N256-T256-E300, plus -seedS, -tauX, -data-STEM when they differ from the defaults."""
    tag = f"N{run.N}" + (f"-T{run.T}" if with_T else "") + f"-E{run.epochs}"
    if run.seed != 0:
        tag += f"-seed{run.seed}"
    if run.time_scale != DEFAULT_TIME_SCALE:
        tag += f"-tau{_num(run.time_scale)}"
    if run.data_file:
        tag += "-data-" + os.path.splitext(os.path.basename(run.data_file))[0]
    return tag


def _sorted_groups(groups):
    return [groups[k] for k in sorted(groups, key=repr)]


def width_families(runs):
    """[(tag, runs)]: same lambda, gamma and setting, at least two widths."""
    groups = {}
    for r in runs:
        groups.setdefault((r.lam, r.gamma, r.T) + r.setting, []).append(r)
    out = []
    for g in _sorted_groups(groups):
        if len({r.M for r in g}) >= 2:
            r0 = g[0]
            tag = f"lambda{_num(r0.lam)}-gamma{_num(r0.gamma)}-" + setting_tag(r0)
            out.append((tag, sorted(g, key=lambda r: (r.M, r.regularization))))
    return out


def strength_families(runs):
    """[(tag, runs)]: per gamma and setting, the largest width with at least two lambdas."""
    groups = {}
    for r in runs:
        groups.setdefault((r.gamma, r.T) + r.setting, []).append(r)
    out = []
    for g in _sorted_groups(groups):
        for M in sorted({r.M for r in g}, reverse=True):
            at_m = [r for r in g if r.M == M]
            if len({r.lam for r in at_m}) >= 2:
                r0 = at_m[0]
                tag = f"M{M}-gamma{_num(r0.gamma)}-" + setting_tag(r0)
                out.append((tag, sorted(at_m, key=lambda r: (r.lam, r.regularization))))
                break
    return out


def shape_families(runs):
    """[(tag, runs)]: unbiased, same M, lambda and setting, gamma >= 0 and gamma < 0."""
    groups = {}
    for r in runs:
        if r.unbiased:
            groups.setdefault((r.M, r.lam) + r.setting, []).append(r)
    out = []
    for g in _sorted_groups(groups):
        if any(r.gamma >= 0 for r in g) and any(r.gamma < 0 for r in g):
            r0 = g[0]
            tag = f"M{r0.M}-lambda{_num(r0.lam)}-" + setting_tag(r0, with_T=False)
            out.append((tag, sorted(g, key=lambda r: (r.gamma < 0, r.gamma))))
    return out


def teacher_representatives(runs):
    """[(tag, run)]: one run (the first by name) per distinct teacher."""
    groups = {}
    for r in runs:
        groups.setdefault((r.gamma, r.seed, r.T, r.data_file), []).append(r)
    out = []
    for key in sorted(groups, key=repr):
        r = min(groups[key], key=lambda r: r.name)
        tag = f"gamma{_num(r.gamma)}-T{r.T}-seed{r.seed}"
        if r.data_file:
            tag += "-data-" + os.path.splitext(os.path.basename(r.data_file))[0]
        out.append((tag, r))
    return out


# ---- small numerical helpers -------------------------------------------------------------

def wrap(a):
    """-2 + mod(a + 2, 4), per coordinate."""
    return np.mod(np.asarray(a, dtype=float) + 2.0, 4.0) - 2.0


def teacher_output(teacher, points, chunk=256):
    """y(x) = (1/T) sum_t 8 exp(-2 |wrap(w_t - x)|) at the rows of points (P x 2)."""
    points = np.asarray(points, dtype=float)
    y = np.zeros(points.shape[0])
    for s in range(0, teacher.shape[0], chunk):
        d = wrap(teacher[s:s + chunk, None, :] - points[None, :, :])
        y += np.sum(8.0 * np.exp(-2.0 * np.hypot(d[..., 0], d[..., 1])), axis=0)
    return y / teacher.shape[0]


def fmt(v, spec):
    """A table cell: v formatted by spec, "-" for a missing value, "nan" for NaN."""
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return format(v, spec)


def table_lines(head, body, right):
    """The lines of a plain-text table: columns padded to their widest cell, those whose index is in
    right aligned right; the last column is left ragged."""
    widths = [max(len(x) for x in col) for col in zip(head, *body)]

    def line(cells):
        out = [c if i == len(cells) - 1 else (c.rjust(w) if i in right else c.ljust(w))
               for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    return [line(cells) for cells in [head] + body]
