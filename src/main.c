/*
 * varpro-rbf: trains every configuration of a YAML job file, each with all ranks, and writes
 * one HDF5 result file per configuration.
 *
 *   mpirun -n P varpro-rbf [options] JOB.yaml [PETSc options]
 *
 * With --groups G the ranks are split into G groups of consecutive ranks, and each group trains
 * one configuration at a time, taking the next one still to do, largest first, from a counter
 * held by world rank 0 (see RunGroups).
 */
#include "problem.h"
#include "train.h"
#include "version.h"
#include <petscksp.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
  "Usage: mpirun -n P varpro-rbf [options] JOB.yaml [PETSc options]\n"
  "\n"
  "Trains two-layer RBF networks on the torus [-2,2)^2 by Variable Projection, one run per\n"
  "configuration of the job file, and writes <output>/<name>.h5 for each.\n"
  "\n"
  "Options:\n"
  "  --list              list the job's configurations with their status and cost; train nothing\n"
  "  --task I            train configuration I only (default: $SLURM_ARRAY_TASK_ID when set,\n"
  "                      else every configuration in turn)\n"
  "  --force             redo configurations whose complete result already exists, and start\n"
  "                      over instead of resuming a partial one\n"
  "  --output DIR        write results to DIR instead of the job file's 'output'\n"
  "  --progress SECONDS  least time between progress lines (default 10)\n"
  "  --groups G          split the ranks into G groups of consecutive ranks (sizes as equal as\n"
  "                      possible); each group trains one configuration at a time, the largest\n"
  "                      still to do first (default 1: every configuration with all ranks)\n"
  "  --version           print the version and exit\n"
  "  --help              print this help and exit\n"
  "\n"
  "PETSc options of note:\n"
  "  -inner_kernel_mat_type matfree     (default) CG on the matrix-free operator, preconditioned by\n"
  "                                     the inverse of an earlier step's kernel matrix, rebuilt\n"
  "                                     when it costs more iterations than a rebuild costs\n"
  "                                     (-inner_refresh_cost, -inner_refresh_its, -inner_refresh_age,\n"
  "                                     -inner_extrapolate, -inner_factor_replicated)\n"
  "  -inner_kernel_mat_type scalapack   assemble and factor the kernel matrix every step (the\n"
  "                                     direct reference)\n"
  "  -inner_kernel_mat_type dense       assemble it as MPIDENSE; CG with Jacobi by default\n"
  "  -inner_ksp_type, -inner_pc_type, -inner_ksp_rtol, ...   the inner ridge solver\n"
  "  -inner_ksp_monitor, -log_view      what the solver does and where time goes\n"
  "\n"
  "  -varpro_result_flush_seconds S     write buffered histories at least every S s (default 10)\n"
  "  -varpro_claim_stale_seconds S      a claim not refreshed for S s is stale (default 600)\n"
  "\n"
  "A run cut short leaves <name>.h5.partial; the next run of the job resumes it from its latest\n"
  "checkpoint (see the job file's 'checkpoint'), bit for bit as if never stopped. SIGTERM or\n"
  "SIGUSR1 stops a run at the next step with a checkpoint, losing nothing.\n"
  "A run claims its configuration with <name>.h5.claim; a configuration claimed by another\n"
  "live run is left alone.\n"
  "\n"
  "Exit status: 0 success, 2 bad input (nothing trained), 3 training produced NaN/Inf or the\n"
  "inner solve failed, 4 stopped by SIGTERM or SIGUSR1 (run again to resume), 5 a configuration\n"
  "was left alone because another live run holds its claim, 1 any other failure. With --groups G > 1\n"
  "a configuration that fails or is stopped is marked in the closing table, the other groups go on,\n"
  "and the status is the worst of all configurations' (4, then 3, 2, 5).\n";

typedef struct {
  const char *job_path;
  const char *output_dir; /* NULL: the job file's */
  PetscBool   force, help, version, list;
  PetscReal   progress;
  PetscReal   claim_stale;           /* seconds after which an unrefreshed claim is stale */
  long long   task;                  /* configuration to train, -1 for all */
  const char *task_source;           /* "option --task" or "SLURM_ARRAY_TASK_ID" */
  long long   groups;                /* --groups: rank groups training configurations side by side */
  char        error[VARPRO_MSG_MAX]; /* a bad command line, reported once MPI is up */
} Options;

/* Whether argument a of argv is one of ours taking a separate value. */
static int TakesValue(const char *a)
{
  return !strcmp(a, "--output") || !strcmp(a, "--progress") || !strcmp(a, "--task") || !strcmp(a, "--groups");
}

/* A configuration index from the command line or the environment. */
static void ParseTask(const char what[], const char *text, Options *opts)
{
  char *end;

  errno             = 0;
  opts->task        = strtoll(text, &end, 10);
  opts->task_source = what;
  if (end == text || *end || errno || opts->task < 0) {
    opts->task = -1;
    if (!opts->error[0])
      snprintf(opts->error, sizeof(opts->error), "%s: '%s' is not a configuration index", what, text);
  }
}

/* Whether text is a finite decimal number (a decimal integer when integer) above lo (or equal to it
   when !lo_open) and below hi (or equal to it when !hi_open); *value gets it. */
static PetscBool ParseBounded(const char text[], PetscBool integer, double lo, PetscBool lo_open, double hi,
                              PetscBool hi_open, double *value)
{
  char *end;

  errno = 0;
  if (integer)
    *value = (double)strtoll(text, &end, 10);
  else
    *value = strtod(text, &end);
  if (end == text || *end || errno || strpbrk(text, "xX") || !isfinite(*value)) return PETSC_FALSE;
  return (PetscBool)((lo_open ? *value > lo : *value >= lo) && (hi_open ? *value < hi : *value <= hi));
}

/* Whether text is a finite number of seconds >= min; *value gets it. */
static PetscBool ParseSeconds(const char text[], double min, double *value)
{
  return ParseBounded(text, PETSC_FALSE, min, PETSC_FALSE, INFINITY, PETSC_TRUE, value);
}

/* Splits argv: our "--" options (parsed with getopt_long, from ours, which has room for argc + 1)
   and the job file go to opts, the rest is left for PETSc (pargv, the same room). The job file is
   the first bare argument before any PETSc option. */
static void ParseArgs(int argc, char **argv, Options *opts, int *pargc, char **pargv, char **ours)
{
  static const struct option longopts[] = {{"force", no_argument, NULL, 'f'},
                                           {"output", required_argument, NULL, 'o'},
                                           {"progress", required_argument, NULL, 'p'},
                                           {"version", no_argument, NULL, 'V'},
                                           {"help", no_argument, NULL, 'h'},
                                           {"list", no_argument, NULL, 'l'},
                                           {"task", required_argument, NULL, 't'},
                                           {"groups", required_argument, NULL, 'g'},
                                           {NULL, 0, NULL, 0}};
  int                        nours = 1, c, seen_petsc = 0;
  PetscBool                  job_done = PETSC_FALSE;

  opts->progress = 10.0;
  opts->task     = -1;
  opts->groups   = 1;
  ours[0] = pargv[0] = argv[0];
  *pargc             = 1;
  for (int i = 1; i < argc; i++) {
    if (!strncmp(argv[i], "--", 2)) {
      ours[nours++] = argv[i];
      if (TakesValue(argv[i]) && i + 1 < argc) ours[nours++] = argv[++i];
    } else if (!strcmp(argv[i], "-h"))
      ours[nours++] = "--help";
    else if (argv[i][0] != '-' && !seen_petsc && !job_done) {
      opts->job_path = argv[i];
      job_done       = PETSC_TRUE;
    } else if (argv[i][0] != '-' && !seen_petsc) {
      if (!opts->error[0])
        snprintf(opts->error, sizeof(opts->error), "unexpected argument '%s': give one job file (see --help)", argv[i]);
    } else {
      if (argv[i][0] == '-') seen_petsc = 1;
      pargv[(*pargc)++] = argv[i];
    }
  }
  pargv[*pargc] = NULL;
  ours[nours]   = NULL;

  /* Our options, through getopt_long */
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(nours, ours, "", longopts, NULL)) != -1) {
    char *end;

    switch (c) {
    case 'f': opts->force = PETSC_TRUE; break;
    case 'o': opts->output_dir = optarg; break;
    case 'V': opts->version = PETSC_TRUE; break;
    case 'h': opts->help = PETSC_TRUE; break;
    case 'l': opts->list = PETSC_TRUE; break;
    case 't': ParseTask("option --task", optarg, opts); break;
    case 'g':
      errno        = 0;
      opts->groups = strtoll(optarg, &end, 10);
      if ((end == optarg || *end || errno || opts->groups < 1) && !opts->error[0])
        snprintf(opts->error, sizeof(opts->error), "option --groups: '%s' is not a number of groups >= 1", optarg);
      break;
    case 'p':
      if (!ParseSeconds(optarg, 0, &opts->progress) && !opts->error[0])
        snprintf(opts->error, sizeof(opts->error), "option --progress: '%s' is not a number of seconds >= 0", optarg);
      break;
    default:
      if (!opts->error[0])
        snprintf(opts->error, sizeof(opts->error), "unknown or incomplete option '%s' (see --help)", ours[optind - 1]);
    }
  }
  /* The array task only picks what to train: --help, --version and --list do not depend on it */
  if (opts->task < 0 && !opts->help && !opts->version && !opts->list && getenv("SLURM_ARRAY_TASK_ID"))
    ParseTask("SLURM_ARRAY_TASK_ID", getenv("SLURM_ARRAY_TASK_ID"), opts);
  if (!opts->error[0] && opts->output_dir && strlen(opts->output_dir) >= VARPRO_PATH_MAX)
    snprintf(opts->error, sizeof(opts->error), "option --output: the path is longer than %d characters",
             VARPRO_PATH_MAX - 1);
  if (opts->error[0] || opts->job_path || opts->help || opts->version) return;
  if (seen_petsc)
    snprintf(opts->error, sizeof(opts->error),
             "no job file given before the PETSc options (the job file comes first; see --help)");
  else if (opts->output_dir)
    snprintf(opts->error, sizeof(opts->error),
             "no job file given ('%s' was taken as the value of --output; see --help)", opts->output_dir);
  else
    snprintf(opts->error, sizeof(opts->error), "no job file given (see --help)");
}

/* The command line and rank count, stored with every result; with several groups, also the group that
   trains the configuration and its size. A command line too long for info ends in "... (cut short)". */
static PetscErrorCode RunInfo(int argc, char **argv, MPI_Comm group, PetscInt ngroups, char info[], size_t len)
{
  PetscMPIInt size, group_size;
  size_t      used;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCallMPI(MPI_Comm_size(group, &group_size));
  if (ngroups > 1)
    PetscCall(PetscSNPrintf(info, len, "mpi ranks: %d, in %" PetscInt_FMT " groups (this run: a group of %d); command:",
                            size, ngroups, group_size));
  else
    PetscCall(PetscSNPrintf(info, len, "mpi ranks: %d; command:", size));
  for (int i = 0; i < argc; i++) {
    used = strlen(info);
    PetscCall(PetscSNPrintf(info + used, len - used, " %s", argv[i]));
  }
  if (strlen(info) == len - 1) PetscCall(PetscStrncpy(info + len - 18, " ... (cut short)", 18));
  PetscFunctionReturn(0);
}

/* One row of the closing table; note ends it ("" with a single group). */
static PetscErrorCode PrintSummaryRow(const VarproConfig *cfg, const VarproRunSummary *s, const char note[])
{
  PetscFunctionBeginUser;
  if (s->refused) {
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%-44s  left alone: another run holds its claim%s\n", cfg->name, note));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%-44s  %8" PetscInt_FMT "  %14.6e  %12.6e  %10.1f  %10.2f%s%s\n", cfg->name,
                        s->epochs, (double)s->reduced_risk, (double)s->mmd, (double)s->wall_time,
                        1e3 * (double)s->time_per_step, s->skipped ? "  (existing result)" : "", note));
  PetscFunctionReturn(0);
}

/* The closing-table values of a complete result found on disk. */
static PetscErrorCode ReadSummary(MPI_Comm comm, const VarproJob *job, const VarproConfig *cfg, VarproRunSummary *s)
{
  static const char *const names[] = {"final_reduced_risk", "final_mmd", "wall_time", "time_per_step"};
  PetscReal                values[4];

  PetscFunctionBeginUser;
  PetscCall(VarproResultReadReals(comm, job->output_dir, cfg, 4, names, values));
  s->epochs        = cfg->epochs;
  s->reduced_risk  = values[0];
  s->mmd           = values[1];
  s->wall_time     = values[2];
  s->time_per_step = values[3];
  PetscFunctionReturn(0);
}

/* Everything about a configuration that can be wrong before training: its result file name, a
   symbolic link or a non-regular file under the names of its result, partial result or claim, its
   sizes against the data file and the rank count, and a result of another configuration under
   its name (or a damaged one), or a partial result of another configuration. Marks it skipped when its complete
   result exists. */
static PetscErrorCode CheckConfig(const VarproJob *job, const VarproConfig *cfg, const Options *opts,
                                  VarproRunSummary *s)
{
  char      path[VARPRO_PATH_MAX + 256], msg[VARPRO_MSG_MAX] = "", owner[VARPRO_MSG_MAX];
  PetscBool held;

  PetscFunctionBeginUser;
  if ((size_t)snprintf(path, sizeof(path), "%s/%s.h5.partial", job->output_dir, cfg->name) >= VARPRO_PATH_MAX)
    PetscCall(PetscSNPrintf(msg, sizeof(msg),
                            "%s:%" PetscInt_FMT ": run '%s': result file %s is longer than %d characters", job->path,
                            cfg->line, cfg->name, path, VARPRO_PATH_MAX - 1));
  PetscCall(VarproInputErrorSync(PETSC_COMM_WORLD, msg));
  PetscCall(VarproResultFilesCheck(PETSC_COMM_WORLD, job->output_dir, cfg));
  PetscCall(VarproClaimCheck(PETSC_COMM_WORLD, job->output_dir, cfg));
  PetscCall(VarproProblemValidate(PETSC_COMM_WORLD, job->path, cfg));
  if (!opts->force) PetscCall(VarproResultExists(PETSC_COMM_WORLD, job->output_dir, cfg, &s->skipped));
  if (s->skipped) PetscCall(VarproResultCheckWhole(PETSC_COMM_WORLD, job->output_dir, cfg));
  /* The partial file of a configuration another run is training is that run's business */
  PetscCall(VarproClaimHeld(PETSC_COMM_WORLD, job->output_dir, cfg, opts->claim_stale, &held, owner, sizeof(owner)));
  if (!opts->force && !s->skipped && !held) PetscCall(VarproResultPartialCheck(PETSC_COMM_WORLD, job->output_dir, cfg));
  PetscFunctionReturn(0);
}

/* Trains one configuration with the ranks of comm under its claim, or skips it when its complete result
   exists, or refuses it when another live run holds its claim. Lines to the log start with prefix
   ("" with a single group). A failure of the run that every rank of comm shares (bad input, NaN, a
   failed inner solve, a stop by signal) frees the trainer before it is returned. */
static PetscErrorCode RunConfig(const VarproJob *job, const VarproConfig *cfg, const Options *opts, MPI_Comm comm,
                                const char prefix[], const char info[], VarproRunSummary *s)
{
  VarproTrainer  tr;
  VarproClaim    claim = NULL;
  PetscErrorCode ierr;
  char           owner[VARPRO_MSG_MAX];

  PetscFunctionBeginUser;
  if (!s->skipped) {
    PetscCall(VarproClaimAcquire(comm, job->output_dir, cfg, opts->claim_stale, &claim, owner, sizeof(owner)));
    s->refused = (PetscBool)!claim;
    /* The run that held the claim may have finished it meanwhile */
    if (claim && !opts->force) PetscCall(VarproResultExists(comm, job->output_dir, cfg, &s->skipped));
    if (s->skipped) PetscCall(VarproClaimRelease(&claim));
  }
  if (s->refused) {
    PetscCall(PetscFPrintf(comm, PETSC_STDERR,
                           "varpro-rbf: error: %s[%" PetscInt_FMT "/%" PetscInt_FMT
                           "] %s: left alone, another run is training it: %s\n",
                           prefix, cfg->index + 1, job->nconfigs, cfg->name, owner));
    PetscFunctionReturn(0);
  }
  if (s->skipped) {
    PetscCall(PetscPrintf(
      comm, "%s[%" PetscInt_FMT "/%" PetscInt_FMT "] %s: complete result exists, skipped (--force redoes it)\n", prefix,
      cfg->index + 1, job->nconfigs, cfg->name));
    PetscCall(ReadSummary(comm, job, cfg, s));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscPrintf(comm, "%s[%" PetscInt_FMT "/%" PetscInt_FMT "] %s: training %" PetscInt_FMT " steps\n", prefix,
                        cfg->index + 1, job->nconfigs, cfg->name, cfg->epochs));
  ierr = VarproTrainerCreate(comm, cfg, &tr);
  if (ierr) {
    PetscCall(VarproClaimRelease(&claim));
    PetscCall(ierr);
  }
  PetscCall(VarproTrainerSetProgressInterval(tr, opts->progress));
  PetscCall(VarproTrainerSetResume(tr, (PetscBool)!opts->force));
  PetscCall(VarproTrainerSetClaim(tr, claim));
  PetscCall(VarproTrainerSetCheckpoint(tr, job->checkpoint_steps, job->checkpoint_minutes));
  /* The claim goes whether the run completes, is stopped by a signal or fails */
  ierr = VarproTrainerRun(tr, job->output_dir, info, s);
  PetscCall(VarproClaimRelease(&claim));
  if (ierr && VarproExitStatus(ierr) != 1) PetscCall(VarproTrainerDestroy(&tr));
  PetscCall(ierr);
  PetscCall(VarproTrainerDestroy(&tr));
  if (s->claim_lost) {
    s->refused = PETSC_TRUE;
    PetscCall(PetscFPrintf(comm, PETSC_STDERR,
                           "varpro-rbf: error: %s[%" PetscInt_FMT "/%" PetscInt_FMT
                           "] %s: stopped, another run took its claim over (was this run paused for longer than "
                           "-varpro_claim_stale_seconds?)\n",
                           prefix, cfg->index + 1, job->nconfigs, cfg->name));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscPrintf(
    comm, "%s[%" PetscInt_FMT "/%" PetscInt_FMT "] %s: done in %.1f s (%.2f ms/step), reduced risk %.6e, MMD %.6e\n",
    prefix, cfg->index + 1, job->nconfigs, cfg->name, (double)s->wall_time, 1e3 * (double)s->time_per_step,
    (double)s->reduced_risk, (double)s->mmd));
  PetscFunctionReturn(0);
}

/* One line per configuration: index, name, whether its result is complete, partial (a run was
   cut short) or still to do, and the cost of the direct path, N M (M + 50) flops a step. */
static PetscErrorCode PrintList(const VarproJob *job, PetscReal claim_stale)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%5s  %-44s  %-7s  %12s\n", "index", "name", "status", "cost [GFlop]"));
  for (PetscInt c = 0; c < job->nconfigs && rank == 0; c++) {
    const VarproConfig *cfg = &job->configs[c];
    char                path[VARPRO_PATH_MAX + 16], cost[32] = "?";
    const char         *status = "to do";
    struct stat         st;
    PetscBool           held;
    char                owner[VARPRO_MSG_MAX];

    PetscCall(VarproResultPath(job->output_dir, cfg, path, VARPRO_PATH_MAX));
    if (!stat(path, &st))
      status = "done";
    else if (!stat(strcat(path, ".partial"), &st))
      status = "partial";
    PetscCall(VarproClaimHeld(PETSC_COMM_SELF, job->output_dir, cfg, claim_stale, &held, owner, sizeof(owner)));
    if (held) status = "running";
    if (cfg->N > 0 && cfg->student_width > 0)
      snprintf(cost, sizeof(cost), "%.3g",
               (double)cfg->epochs * cfg->N * cfg->student_width * (cfg->student_width + 50.0) / 1e9);
    PetscCall(
      PetscPrintf(PETSC_COMM_SELF, "%5" PetscInt_FMT "  %-44s  %-7s  %12s\n", cfg->index, cfg->name, status, cost));
  }
  PetscFunctionReturn(0);
}

/* The project's own PETSc option is checked before anything is trained. */
static PetscErrorCode CheckKernelMatType(void)
{
  static const char *const types[]  = {"scalapack", "dense", "matfree"};
  char                     type[64] = "";
  PetscBool                set, known = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetString(NULL, NULL, "-inner_kernel_mat_type", type, sizeof(type), &set));
  for (int k = 0; k < 3; k++) known = (PetscBool)(known || !strcmp(type, types[k]));
  PetscCheck(!set || known, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT,
             "option -inner_kernel_mat_type: '%s' is not one of scalapack, dense, matfree", type);
  PetscFunctionReturn(0);
}

/* Puts back an option that was unused before a check read it, so that the check alone does not
   silence the warning about options nothing asked for. */
static PetscErrorCode RestoreUnused(const char name[], const char text[], PetscBool was_used)
{
  PetscFunctionBeginUser;
  if (was_used) PetscFunctionReturn(0);
  PetscCall(PetscOptionsClearValue(NULL, name));
  PetscCall(PetscOptionsSetValue(NULL, name, text));
  PetscFunctionReturn(0);
}

/* Values of the inner solvers' PETSc options that PETSc would reject only when the first run sets
   up its solver (with its traceback), or would take and then solve wrongly: KSP and PC type names
   and the usual tolerances, under both prefixes. */
static PetscErrorCode CheckSolverOptions(void)
{
  static const char *const prefixes[] = {"-inner_", "-inner_factor_"};
  static const struct {
    const char *name, *what;
    PetscBool   integer;
    double      lo;
    PetscBool   lo_open;
    double      hi;
    PetscBool   hi_open;
  } numbers[] = {
    {"ksp_rtol", "a relative tolerance in [0, 1)", PETSC_FALSE, 0, PETSC_FALSE, 1, PETSC_TRUE},
    {"ksp_atol", "a finite absolute tolerance >= 0", PETSC_FALSE, 0, PETSC_FALSE, INFINITY, PETSC_TRUE},
    {"ksp_divtol", "a finite divergence tolerance > 1", PETSC_FALSE, 1, PETSC_TRUE, INFINITY, PETSC_TRUE},
    {"ksp_max_it", "an iteration count from 1 to 1000000000", PETSC_TRUE, 1, PETSC_FALSE, 1e9, PETSC_FALSE}};
  char      name[64], text[4096];
  PetscBool set, used;

  PetscFunctionBeginUser;
  PetscCall(KSPInitializePackage());
  PetscCall(PCInitializePackage());
  for (int p = 0; p < 2; p++) {
    for (int k = 0; k < 2 + 4; k++) {
      PetscErrorCode (*create)(void) = NULL;

      PetscCall(PetscSNPrintf(name, sizeof(name), "%s%s", prefixes[p],
                              k == 0 ? "ksp_type" : (k == 1 ? "pc_type" : numbers[k - 2].name)));
      PetscCall(PetscOptionsUsed(NULL, name, &used));
      PetscCall(PetscOptionsGetString(NULL, NULL, name, text, sizeof(text), &set));
      if (!set) continue;
      PetscCheck(strlen(text) < sizeof(text) - 1, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT,
                 "option %s: the value is longer than %d characters", name, (int)sizeof(text) - 2);
      if (k < 2) {
        if (text[0]) PetscCall(PetscFunctionListFind(k ? PCList : KSPList, text, &create));
        PetscCheck(create, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "option %s: '%s' is not a %s type of this PETSc%s",
                   name, text, k ? "PC" : "KSP", k ? " (e.g. jacobi, cholesky, none)" : " (e.g. cg, preonly, gmres)");
      } else {
        const int n = k - 2;
        double    value;
        PetscBool ok = ParseBounded(text, numbers[n].integer, numbers[n].lo, numbers[n].lo_open, numbers[n].hi,
                                    numbers[n].hi_open, &value);
        PetscCheck(ok, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "option %s: '%s' is not %s", name, text,
                   numbers[n].what);
      }
      PetscCall(RestoreUnused(name, text, used));
    }
  }
  PetscFunctionReturn(0);
}

/* The PETSc option name, when given, must be a finite number of seconds >= min (why explains the
   bound); *value (when not NULL) gets it. */
static PetscErrorCode CheckSecondsOption(const char name[], double min, const char why[], PetscReal *value)
{
  char      text[256] = "";
  double    seconds;
  PetscBool set;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetString(NULL, NULL, name, text, sizeof(text), &set));
  if (!set) PetscFunctionReturn(0);
  PetscCheck(ParseSeconds(text, min, &seconds), PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT,
             "option %s: '%s' is not a number of seconds >= %d%s", name, text, (int)min, why);
  if (value) *value = seconds;
  PetscFunctionReturn(0);
}

/* A PETSc option nothing asked for is most likely misspelt: say so. With several groups an option
   is used when any rank used it (a group that trained nothing asked for no solver option): world
   rank 0's unused options are checked on every rank. */
static PetscErrorCode WarnUnusedOptions(PetscBool any_rank)
{
  PetscInt    nleft, n;
  char      **names, **values, name[256];
  PetscMPIInt rank, len;
  PetscBool   used;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscCall(PetscOptionsLeftGet(NULL, &nleft, &names, &values));
  n = nleft;
  if (any_rank) PetscCallMPI(MPI_Bcast(&n, 1, MPIU_INT, 0, PETSC_COMM_WORLD));
  for (PetscInt k = 0; k < n; k++) {
    used = PETSC_FALSE;
    if (any_rank) {
      if (!rank) PetscCall(PetscStrncpy(name, names[k], sizeof(name)));
      len = (PetscMPIInt)sizeof(name);
      PetscCallMPI(MPI_Bcast(name, len, MPI_CHAR, 0, PETSC_COMM_WORLD));
      PetscCall(PetscOptionsUsed(NULL, name, &used));
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &used, 1, MPIU_BOOL, MPI_LOR, PETSC_COMM_WORLD));
    }
    if (!used)
      PetscCall(PetscFPrintf(PETSC_COMM_WORLD, PETSC_STDERR,
                             "varpro-rbf: warning: option -%s was given but never used\n", rank ? "" : names[k]));
  }
  PetscCall(PetscOptionsLeftRestore(NULL, &nleft, &names, &values));
  PetscFunctionReturn(0);
}

/* ---- several groups: configurations handed out to groups of ranks ----------------------------------- */

/* What became of a configuration, for the closing table and the exit status with several groups. */
typedef enum {
  OUTCOME_NOT_STARTED, /* every group stopped (by a signal) before it was taken */
  OUTCOME_DONE,
  OUTCOME_SKIPPED,   /* its complete result exists */
  OUTCOME_REFUSED,   /* another live run holds its claim, or took it over */
  OUTCOME_BAD_INPUT, /* its run raised a user's error, e.g. a width that its group cannot split */
  OUTCOME_DIVERGED,  /* NaN or Inf, or the inner solve failed */
  OUTCOME_STOPPED    /* stopped by a signal */
} Outcome;

/* A configuration's row of the table gathered over the groups: rank 0 of the group that handled
   it fills the row, every other rank leaves zeros, and the rows are summed. */
enum { ROW_OUTCOME, ROW_GROUP, ROW_EPOCHS, ROW_RISK, ROW_MMD, ROW_WALL, ROW_STEP, ROW_LEN };

typedef struct {
  PetscReal cost;
  PetscInt  index;
} Task;

/* Largest cost first; ties in index order. */
static int CompareTasks(const void *a, const void *b)
{
  const Task *x = (const Task *)a, *y = (const Task *)b;

  if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

/* The direct path's flops, epochs N M (M + 50) as --list shows them; a configuration whose sizes
   come from its data file counts as the largest. */
static PetscReal ConfigCost(const VarproConfig *cfg)
{
  if (cfg->N <= 0 || cfg->student_width <= 0) return PETSC_MAX_REAL;
  return (PetscReal)cfg->epochs * cfg->N * cfg->student_width * (cfg->student_width + 50.0);
}

/* The first rank of group g when size ranks are split into ngroups blocks of consecutive ranks, the
   first size % ngroups of them one rank larger. */
static PetscMPIInt GroupStart(PetscMPIInt size, PetscMPIInt ngroups, PetscMPIInt g)
{
  return g * (size / ngroups) + PetscMin(g, size % ngroups);
}

/* This rank's group and its communicator. */
static PetscErrorCode GroupSplit(PetscMPIInt ngroups, MPI_Comm *group, PetscMPIInt *g)
{
  PetscMPIInt rank, size;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  for (*g = ngroups - 1; GroupStart(size, ngroups, *g) > rank; (*g)--) {
  }
  PetscCallMPI(MPI_Comm_split(PETSC_COMM_WORLD, *g, rank, group));
  PetscFunctionReturn(0);
}

/* The group's next configuration, or -1 when none is left: rank 0 of the group adds one to the
   counter on world rank 0 and shares the entry of tasks it got. Passive target: world rank 0 takes
   no part, and its own group's training steps (MPI calls all) let Open MPI progress the request. */
static PetscErrorCode GroupTakeNext(MPI_Comm group, MPI_Win counter, PetscInt ntasks, const Task tasks[], PetscInt *c)
{
  PetscMPIInt rank;
  PetscInt64  one = 1, next = 0;
  double      t0 = MPI_Wtime();

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(group, &rank));
  if (!rank) {
    PetscCallMPI(MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, counter));
    PetscCallMPI(MPI_Fetch_and_op(&one, &next, MPIU_INT64, 0, 0, MPI_SUM, counter));
    PetscCallMPI(MPI_Win_unlock(0, counter));
    PetscCall(
      PetscInfo(NULL, "took entry %" PetscInt64_FMT " of %" PetscInt_FMT " in %g s\n", next, ntasks, MPI_Wtime() - t0));
  }
  PetscCallMPI(MPI_Bcast(&next, 1, MPIU_INT64, 0, group));
  *c = next < ntasks ? tasks[next].index : -1;
  PetscFunctionReturn(0);
}

#if defined(PETSC_USE_LOG)
static PetscErrorCode LogStageGetCurrent(int *stage)
{
  PetscStageLog log;

  PetscFunctionBeginUser;
  PetscCall(PetscLogGetStageLog(&log));
  PetscCall(PetscStageLogGetCurrent(log, stage));
  PetscFunctionReturn(0);
}
#else
static PetscErrorCode LogStageGetCurrent(int *stage)
{
  *stage = -1;
  return 0;
}
#endif

/* Back to logging stage `stage` after a run that failed inside one of the trainer's stages. */
static PetscErrorCode LogStageRestore(int stage)
{
  int current;

  PetscFunctionBeginUser;
  PetscCall(LogStageGetCurrent(&current));
  while (current >= 0 && current != stage) {
    PetscCall(PetscLogStagePop());
    PetscCall(LogStageGetCurrent(&current));
  }
  PetscFunctionReturn(0);
}

/* Trains configuration c with the group and fills its row (on the group's rank 0); every rank of the
   group gets its outcome. A failure that every rank of the group shares is reported and marked; any
   other is returned, and aborts the job. */
static PetscErrorCode GroupRunConfig(const VarproJob *job, PetscInt c, const Options *opts, MPI_Comm group,
                                     PetscMPIInt g, const char info[], VarproRunSummary *s, PetscReal row[],
                                     Outcome *outcome)
{
  const VarproConfig *cfg = &job->configs[c];
  char                prefix[32];
  PetscErrorCode      ierr;
  PetscMPIInt         rank;
  int                 stage, status;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(group, &rank));
  PetscCall(PetscSNPrintf(prefix, sizeof(prefix), "[g%d] ", g));
  PetscCall(LogStageGetCurrent(&stage));
  ierr   = RunConfig(job, cfg, opts, group, prefix, info, s);
  status = VarproExitStatus(ierr);
  if (status == 1) PetscCall(ierr);
  if (ierr) PetscCall(LogStageRestore(stage));
  *outcome = status == VARPRO_EXIT_STOPPED    ? OUTCOME_STOPPED
             : status == VARPRO_EXIT_DIVERGED ? OUTCOME_DIVERGED
             : status == VARPRO_EXIT_INPUT    ? OUTCOME_BAD_INPUT
             : s->refused                     ? OUTCOME_REFUSED
             : s->skipped                     ? OUTCOME_SKIPPED
                                              : OUTCOME_DONE;
  if (*outcome == OUTCOME_STOPPED)
    PetscCall(PetscPrintf(group, "%s[%" PetscInt_FMT "/%" PetscInt_FMT "] %s: stopped; this group takes no more\n",
                          prefix, c + 1, job->nconfigs, cfg->name));
  else if (ierr)
    PetscCall(
      PetscPrintf(group, "%s[%" PetscInt_FMT "/%" PetscInt_FMT "] %s: failed (see its error); going on with the next\n",
                  prefix, c + 1, job->nconfigs, cfg->name));
  if (!rank) {
    row[ROW_OUTCOME] = *outcome;
    row[ROW_GROUP]   = g + 1;
    if (!ierr) {
      row[ROW_EPOCHS] = s->epochs;
      row[ROW_RISK]   = s->reduced_risk;
      row[ROW_MMD]    = s->mmd;
      row[ROW_WALL]   = s->wall_time;
      row[ROW_STEP]   = s->time_per_step;
    }
  }
  PetscFunctionReturn(0);
}

/* With several groups: the configurations whose complete result exists are reported first, with
   all ranks; the others are handed out, largest first, to the groups, each of which trains one at a
   time until none is left or a signal stops it. Every rank then joins in gathering the rows of the
   closing table (ROW_LEN per configuration, on every rank). */
static PetscErrorCode RunGroups(const VarproJob *job, const Options *opts, int argc, char **argv,
                                VarproRunSummary summaries[], PetscReal rows[])
{
  MPI_Comm    group;
  MPI_Win     counter;
  PetscInt64 *count;
  PetscMPIInt rank, size, g = 0, ngroups = (PetscMPIInt)opts->groups;
  PetscInt    ntasks = 0, c;
  Task       *tasks;
  Outcome     outcome;
  char        info[4096];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCall(GroupSplit(ngroups, &group, &g));
  PetscCall(RunInfo(argc, argv, group, ngroups, info, sizeof(info)));

  /* Existing results on all ranks, in index order; the rest sorted, largest first */
  PetscCall(PetscMalloc1(job->nconfigs, &tasks));
  for (c = 0; c < job->nconfigs; c++) {
    if (summaries[c].skipped) {
      PetscCall(RunConfig(job, &job->configs[c], opts, PETSC_COMM_WORLD, "", info, &summaries[c]));
      if (!rank) {
        PetscReal *row = &rows[ROW_LEN * c];

        row[ROW_OUTCOME] = OUTCOME_SKIPPED;
        row[ROW_EPOCHS]  = summaries[c].epochs;
        row[ROW_RISK]    = summaries[c].reduced_risk;
        row[ROW_MMD]     = summaries[c].mmd;
        row[ROW_WALL]    = summaries[c].wall_time;
        row[ROW_STEP]    = summaries[c].time_per_step;
      }
    } else {
      tasks[ntasks].cost    = ConfigCost(&job->configs[c]);
      tasks[ntasks++].index = c;
    }
  }
  qsort(tasks, (size_t)ntasks, sizeof(Task), CompareTasks);
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%d groups of ranks", ngroups));
  for (PetscMPIInt k = 0; k < ngroups; k++)
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%s [g%d] %d-%d", k ? "," : ":", k, GroupStart(size, ngroups, k),
                          GroupStart(size, ngroups, k + 1) - 1));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "; %" PetscInt_FMT " configuration(s) to train, largest first\n", ntasks));

  /* The counter into tasks, on world rank 0 */
  PetscCallMPI(MPI_Win_allocate(rank ? 0 : (MPI_Aint)sizeof(PetscInt64), (PetscMPIInt)sizeof(PetscInt64), MPI_INFO_NULL,
                                PETSC_COMM_WORLD, &count, &counter));
  if (!rank) {
    PetscCallMPI(MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, counter));
    *count = 0;
    PetscCallMPI(MPI_Win_unlock(0, counter));
  }
  PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));

  /* Each group trains what it takes, until none is left or it is stopped */
  for (;;) {
    PetscCall(GroupTakeNext(group, counter, ntasks, tasks, &c));
    if (c < 0) break;
    PetscCall(GroupRunConfig(job, c, opts, group, g, info, &summaries[c], &rows[ROW_LEN * c], &outcome));
    if (outcome == OUTCOME_STOPPED) break;
  }

  /* Every rank gets here, whatever its group met: the rows are summed over all ranks */
  PetscCallMPI(MPI_Win_free(&counter));
  PetscCallMPI(MPI_Comm_free(&group));
  PetscCallMPI(
    MPI_Allreduce(MPI_IN_PLACE, rows, (PetscMPIInt)(ROW_LEN * job->nconfigs), MPIU_REAL, MPIU_SUM, PETSC_COMM_WORLD));
  PetscCall(PetscFree(tasks));
  PetscFunctionReturn(0);
}

/* With several groups, the rows of the closing table gathered from the groups; counts the refused
   configurations and sets *status to the worst failure among the others (stopped, diverged, bad input). */
static PetscErrorCode PrintGroupTable(const VarproJob *job, const PetscReal rows[], PetscInt *refused, int *status)
{
  static const int rank_of[] = {[VARPRO_EXIT_INPUT] = 1, [VARPRO_EXIT_DIVERGED] = 2, [VARPRO_EXIT_STOPPED] = 3};

  PetscFunctionBeginUser;
  *status = 0;
  for (PetscInt c = 0; c < job->nconfigs; c++) {
    const VarproConfig *cfg      = &job->configs[c];
    const PetscReal    *row      = &rows[ROW_LEN * c];
    const Outcome       outcome  = (Outcome)row[ROW_OUTCOME];
    VarproRunSummary    s        = {0};
    char                note[32] = "";
    int                 failure  = 0;

    if (row[ROW_GROUP] > 0) PetscCall(PetscSNPrintf(note, sizeof(note), "  [g%d]", (int)row[ROW_GROUP] - 1));
    switch (outcome) {
    case OUTCOME_NOT_STARTED:
      PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%-44s  not started: the job was stopped by a signal\n", cfg->name));
      failure = VARPRO_EXIT_STOPPED;
      break;
    case OUTCOME_STOPPED:
      PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%-44s  stopped by a signal; run again to resume%s\n", cfg->name, note));
      failure = VARPRO_EXIT_STOPPED;
      break;
    case OUTCOME_DIVERGED:
      PetscCall(PetscPrintf(
        PETSC_COMM_WORLD, "%-44s  failed: NaN or Inf, or the inner solve failed (see its error)%s\n", cfg->name, note));
      failure = VARPRO_EXIT_DIVERGED;
      break;
    case OUTCOME_BAD_INPUT:
      PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%-44s  failed: bad input (see its error)%s\n", cfg->name, note));
      failure = VARPRO_EXIT_INPUT;
      break;
    default:
      s.skipped       = (PetscBool)(outcome == OUTCOME_SKIPPED);
      s.refused       = (PetscBool)(outcome == OUTCOME_REFUSED);
      s.epochs        = (PetscInt)row[ROW_EPOCHS];
      s.reduced_risk  = row[ROW_RISK];
      s.mmd           = row[ROW_MMD];
      s.wall_time     = row[ROW_WALL];
      s.time_per_step = row[ROW_STEP];
      PetscCall(PrintSummaryRow(cfg, &s, note));
      if (s.refused) (*refused)++;
    }
    if (failure && (!*status || rank_of[failure] > rank_of[*status])) *status = failure;
  }
  PetscFunctionReturn(0);
}

/* Runs the job. With several groups, *status is the worst failure among the configurations (see
   PrintGroupTable), which the job itself survived; it is 0 otherwise. */
static PetscErrorCode RunJob(Options *opts, int argc, char **argv, PetscInt *refused, int *status)
{
  VarproJob         job;
  VarproRunSummary *summaries;
  PetscReal        *rows;
  PetscInt          first = 0, last;
  PetscMPIInt       size;
  char              info[4096], kernel_type[64] = "matfree";

  PetscFunctionBeginUser;
  /* The command line is checked on every rank alike */
  PetscCheck(!opts->error[0], PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "%s", opts->error);
  if (opts->help || opts->version) {
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, opts->help ? usage : "varpro-rbf %s\n", VARPRO_GIT_VERSION));
    PetscFunctionReturn(0);
  }
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCheck(opts->groups <= size, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT,
             "option --groups: %lld groups requested, but the job has only %d rank(s)", opts->groups, size);
  PetscCheck(opts->groups == 1 || opts->task < 0, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT,
             "option --groups %lld cannot be combined with %s %lld: a single configuration is trained with all ranks",
             opts->groups, opts->task_source, opts->task);

  /* Job file, output directory */
  PetscCall(CheckKernelMatType());
  PetscCall(CheckSolverOptions());
  PetscCall(CheckSecondsOption("-varpro_result_flush_seconds", 0, "", NULL));
  opts->claim_stale = 600.0;
  PetscCall(CheckSecondsOption("-varpro_claim_stale_seconds", 10,
                               " (a live run refreshes its claim every tenth of this, at most once a second)",
                               &opts->claim_stale));
  PetscCall(VarproJobLoad(PETSC_COMM_WORLD, opts->job_path, &job));
  if (opts->output_dir) PetscCall(PetscStrncpy(job.output_dir, opts->output_dir, sizeof(job.output_dir)));
  PetscCheck(opts->task < job.nconfigs, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT,
             "configuration %lld requested, but %s expands to %" PetscInt_FMT " (0 to %" PetscInt_FMT ")", opts->task,
             job.path, job.nconfigs, job.nconfigs - 1);
  if (opts->list) {
    PetscCall(PrintList(&job, opts->claim_stale));
    PetscCall(VarproJobDestroy(&job));
    PetscFunctionReturn(0);
  }
  if (opts->task >= 0)
    first = last = (PetscInt)opts->task;
  else
    last = job.nconfigs - 1;
  PetscCall(VarproOutputDirCheck(PETSC_COMM_WORLD, job.output_dir));
  PetscCall(RunInfo(argc, argv, PETSC_COMM_WORLD, 1, info, sizeof(info)));
  PetscCall(PetscOptionsGetString(NULL, NULL, "-inner_kernel_mat_type", kernel_type, sizeof(kernel_type), NULL));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                        "varpro-rbf %s: %" PetscInt_FMT " configuration(s) from %s, results in %s; %d rank(s) in "
                        "%lld group(s), inner solve %s\n",
                        VARPRO_GIT_VERSION, job.nconfigs, job.path, job.output_dir, size, opts->groups, kernel_type));

  /* Every configuration is checked before any is trained */
  PetscCall(PetscCalloc1(job.nconfigs, &summaries));
  for (PetscInt c = first; c <= last; c++) PetscCall(CheckConfig(&job, &job.configs[c], opts, &summaries[c]));

  /* Several groups: configurations handed out to the groups, then the table gathered from them */
  if (opts->groups > 1) {
    PetscCall(PetscCalloc1(ROW_LEN * job.nconfigs, &rows));
    PetscCall(RunGroups(&job, opts, argc, argv, summaries, rows));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "\n%-44s  %8s  %14s  %12s  %10s  %10s\n", "configuration", "steps",
                          "reduced risk", "MMD", "wall [s]", "ms/step"));
    PetscCall(PrintGroupTable(&job, rows, refused, status));
    PetscCall(PetscFree(rows));
    PetscCall(PetscFree(summaries));
    PetscCall(VarproJobDestroy(&job));
    PetscCall(WarnUnusedOptions(PETSC_TRUE));
    PetscFunctionReturn(0);
  }

  /* One group: each configuration runs in turn with all ranks */
  for (PetscInt c = first; c <= last; c++)
    PetscCall(RunConfig(&job, &job.configs[c], opts, PETSC_COMM_WORLD, "", info, &summaries[c]));

  /* Closing table */
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "\n%-44s  %8s  %14s  %12s  %10s  %10s\n", "configuration", "steps",
                        "reduced risk", "MMD", "wall [s]", "ms/step"));
  for (PetscInt c = first; c <= last; c++) {
    PetscCall(PrintSummaryRow(&job.configs[c], &summaries[c], ""));
    if (summaries[c].refused) (*refused)++;
  }
  PetscCall(PetscFree(summaries));
  PetscCall(VarproJobDestroy(&job));
  PetscCall(WarnUnusedOptions(PETSC_FALSE));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  Options        opts = {0};
  char         **pargv, **ours;
  int            pargc, status, job_status = 0;
  PetscInt       refused = 0;
  PetscErrorCode ierr;

  /* Our options are taken out before PETSc sees the command line */
  pargv = (char **)calloc((size_t)argc + 1, sizeof(char *));
  ours  = (char **)calloc((size_t)argc + 1, sizeof(char *));
  if (!pargv || !ours) return 1;
  ParseArgs(argc, argv, &opts, &pargc, pargv, ours);
  if (PetscInitialize(&pargc, &pargv, NULL, usage)) return 1;
  PetscCall(VarproPushErrorHandler());
  PetscCall(VarproTrainerCatchStopSignals());

  /* A user's error or a stop by signal ends every rank with a status; any other aborts the job */
  ierr   = RunJob(&opts, argc, argv, &refused, &job_status);
  status = VarproExitStatus(ierr);
  if (!status) status = job_status; /* with --groups: configurations that failed or were stopped */
  if (!status && refused) status = VARPRO_EXIT_CLAIMED;
  if (status == 1) MPI_Abort(PETSC_COMM_WORLD, 1);
  ierr = PetscFinalize();
  free(pargv);
  free(ours);
  return ierr ? 1 : status;
}
