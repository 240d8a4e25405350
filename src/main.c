/*
 * varpro-rbf: trains every configuration of a YAML job file, each with all ranks, and writes
 * one HDF5 result file per configuration.
 *
 *   mpirun -n P varpro-rbf [options] JOB.yaml [PETSc options]
 */
#include "problem.h"
#include "train.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
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
  "  --version           print the version and exit\n"
  "  --help              print this help and exit\n"
  "\n"
  "PETSc options of note:\n"
  "  -inner_kernel_mat_type scalapack   assemble and factor the kernel matrix every step (default)\n"
  "  -inner_kernel_mat_type dense       assemble it as MPIDENSE; CG with Jacobi by default\n"
  "  -inner_kernel_mat_type matfree     CG on the matrix-free operator, preconditioned by the\n"
  "                                     Cholesky factor of an earlier step (-inner_refresh_its,\n"
  "                                     -inner_refresh_age, -inner_factor_replicated)\n"
  "  -inner_ksp_type, -inner_pc_type, -inner_ksp_rtol, ...   the inner ridge solver\n"
  "  -inner_ksp_monitor, -log_view      what the solver does and where time goes\n"
  "\n"
  "  -varpro_result_flush_seconds S     write buffered histories at least every S s (default 10)\n"
  "  -varpro_claim_stale_seconds S      a claim not refreshed for S s is stale (default 600)\n"
  "\n"
  "A run cut short leaves <name>.h5.partial; the next run of the job resumes it from its last\n"
  "snapshot. SIGTERM or SIGUSR1 stops a run at the next step, saving everything so far.\n"
  "A run claims its configuration with <name>.h5.claim; a configuration claimed by another\n"
  "live run is left alone.\n"
  "\n"
  "Exit status: 0 success, 2 bad input (nothing trained), 3 training produced NaN/Inf or the\n"
  "inner solve failed, 4 stopped by SIGTERM or SIGUSR1 (run again to resume), 5 a configuration\n"
  "was left alone because another live run holds its claim, 1 any other failure.\n";

typedef struct {
  const char *job_path;
  const char *output_dir; /* NULL: the job file's */
  PetscBool   force, help, version, list;
  PetscReal   progress;
  PetscReal   claim_stale;           /* seconds after which an unrefreshed claim is stale */
  long long   task;                  /* configuration to train, -1 for all */
  char        error[VARPRO_MSG_MAX]; /* a bad command line, reported once MPI is up */
} Options;

/* Whether argument a of argv is one of ours taking a separate value. */
static int TakesValue(const char *a)
{
  return !strcmp(a, "--output") || !strcmp(a, "--progress") || !strcmp(a, "--task");
}

/* A configuration index from the command line or the environment. */
static void ParseTask(const char what[], const char *text, Options *opts)
{
  char *end;

  errno      = 0;
  opts->task = strtoll(text, &end, 10);
  if (end == text || *end || errno || opts->task < 0) {
    opts->task = -1;
    if (!opts->error[0])
      snprintf(opts->error, sizeof(opts->error), "%s: '%s' is not a configuration index", what, text);
  }
}

/* Splits argv: our "--" options (parsed with getopt_long) and the job file go to opts, the
   rest is left for PETSc. The job file is the first bare argument before any PETSc option. */
static void ParseArgs(int argc, char **argv, Options *opts, int *pargc, char **pargv)
{
  static const struct option longopts[] = {
    {"force", no_argument, NULL, 'f'},          {"output", required_argument, NULL, 'o'},
    {"progress", required_argument, NULL, 'p'}, {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},           {"list", no_argument, NULL, 'l'},
    {"task", required_argument, NULL, 't'},     {NULL, 0, NULL, 0}};
  char     *ours[256];
  int       nours = 1, c, seen_petsc = 0;
  PetscBool job_done = PETSC_FALSE;

  opts->progress = 10.0;
  opts->task     = -1;
  ours[0] = pargv[0] = argv[0];
  *pargc             = 1;
  for (int i = 1; i < argc; i++) {
    if (!strncmp(argv[i], "--", 2) && nours < 254) {
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
    case 'p':
      opts->progress = strtod(optarg, &end);
      if (end == optarg || *end || !(opts->progress >= 0))
        snprintf(opts->error, sizeof(opts->error), "option --progress: '%s' is not a number of seconds >= 0", optarg);
      break;
    default:
      if (!opts->error[0])
        snprintf(opts->error, sizeof(opts->error), "unknown or incomplete option '%s' (see --help)", ours[optind - 1]);
    }
  }
  if (opts->task < 0 && getenv("SLURM_ARRAY_TASK_ID"))
    ParseTask("SLURM_ARRAY_TASK_ID", getenv("SLURM_ARRAY_TASK_ID"), opts);
  if (!opts->error[0] && opts->output_dir && strlen(opts->output_dir) >= VARPRO_PATH_MAX)
    snprintf(opts->error, sizeof(opts->error), "option --output: the path is longer than %d characters",
             VARPRO_PATH_MAX - 1);
  if (!opts->error[0] && !opts->job_path && !opts->help && !opts->version)
    snprintf(opts->error, sizeof(opts->error), "no job file given (see --help)");
}

/* The command line and rank count, stored with every result. */
static PetscErrorCode RunInfo(int argc, char **argv, char info[], size_t len)
{
  PetscMPIInt size;
  size_t      used;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCall(PetscSNPrintf(info, len, "mpi ranks: %d; command:", size));
  for (int i = 0; i < argc; i++) {
    used = strlen(info);
    PetscCall(PetscSNPrintf(info + used, len - used, " %s", argv[i]));
  }
  PetscFunctionReturn(0);
}

/* One row of the closing table. */
static PetscErrorCode PrintSummaryRow(const VarproConfig *cfg, const VarproRunSummary *s)
{
  PetscFunctionBeginUser;
  if (s->refused) {
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%-44s  left alone: another run holds its claim\n", cfg->name));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%-44s  %8" PetscInt_FMT "  %14.6e  %12.6e  %10.1f  %10.2f%s\n", cfg->name,
                        s->epochs, (double)s->reduced_risk, (double)s->mmd, (double)s->wall_time,
                        1e3 * (double)s->time_per_step, s->skipped ? "  (existing result)" : ""));
  PetscFunctionReturn(0);
}

/* The closing-table values of a complete result found on disk. */
static PetscErrorCode ReadSummary(const VarproJob *job, const VarproConfig *cfg, VarproRunSummary *s)
{
  static const char *const names[] = {"final_reduced_risk", "final_mmd", "wall_time", "time_per_step"};
  PetscReal                values[4];

  PetscFunctionBeginUser;
  PetscCall(VarproResultReadReals(PETSC_COMM_WORLD, job->output_dir, cfg, 4, names, values));
  s->epochs        = cfg->epochs;
  s->reduced_risk  = values[0];
  s->mmd           = values[1];
  s->wall_time     = values[2];
  s->time_per_step = values[3];
  PetscFunctionReturn(0);
}

/* Everything about a configuration that can be wrong before training: its result file name, its
   sizes against the data file and the rank count, and a result of another configuration under
   its name, or a partial result of another configuration. Marks it skipped when its complete
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
  PetscCall(VarproProblemValidate(PETSC_COMM_WORLD, job->path, cfg));
  if (!opts->force) PetscCall(VarproResultExists(PETSC_COMM_WORLD, job->output_dir, cfg, &s->skipped));
  /* The partial file of a configuration another run is training is that run's business */
  PetscCall(VarproClaimHeld(PETSC_COMM_WORLD, job->output_dir, cfg, opts->claim_stale, &held, owner, sizeof(owner)));
  if (!opts->force && !s->skipped && !held) PetscCall(VarproResultPartialCheck(PETSC_COMM_WORLD, job->output_dir, cfg));
  PetscFunctionReturn(0);
}

/* Trains one configuration under its claim, or skips it when its complete result exists, or
   refuses it when another live run holds its claim. */
static PetscErrorCode RunConfig(const VarproJob *job, const VarproConfig *cfg, const Options *opts, const char info[],
                                VarproRunSummary *s)
{
  VarproTrainer  tr;
  VarproClaim    claim = NULL;
  PetscErrorCode ierr;
  char           owner[VARPRO_MSG_MAX];

  PetscFunctionBeginUser;
  if (!s->skipped) {
    PetscCall(
      VarproClaimAcquire(PETSC_COMM_WORLD, job->output_dir, cfg, opts->claim_stale, &claim, owner, sizeof(owner)));
    s->refused = (PetscBool)!claim;
    /* The run that held the claim may have finished it meanwhile */
    if (claim && !opts->force) PetscCall(VarproResultExists(PETSC_COMM_WORLD, job->output_dir, cfg, &s->skipped));
    if (s->skipped) PetscCall(VarproClaimRelease(&claim));
  }
  if (s->refused) {
    PetscCall(PetscFPrintf(PETSC_COMM_WORLD, PETSC_STDERR,
                           "varpro-rbf: error: [%" PetscInt_FMT "/%" PetscInt_FMT
                           "] %s: left alone, another run is training it: %s\n",
                           cfg->index + 1, job->nconfigs, cfg->name, owner));
    PetscFunctionReturn(0);
  }
  if (s->skipped) {
    PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                          "[%" PetscInt_FMT "/%" PetscInt_FMT
                          "] %s: complete result exists, skipped (--force redoes it)\n",
                          cfg->index + 1, job->nconfigs, cfg->name));
    PetscCall(ReadSummary(job, cfg, s));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                        "[%" PetscInt_FMT "/%" PetscInt_FMT "] %s: training %" PetscInt_FMT " steps\n", cfg->index + 1,
                        job->nconfigs, cfg->name, cfg->epochs));
  PetscCall(VarproTrainerCreate(PETSC_COMM_WORLD, cfg, &tr));
  PetscCall(VarproTrainerSetProgressInterval(tr, opts->progress));
  PetscCall(VarproTrainerSetResume(tr, (PetscBool)!opts->force));
  PetscCall(VarproTrainerSetClaim(tr, claim));
  /* The claim goes whether the run completes, is stopped by a signal or fails */
  ierr = VarproTrainerRun(tr, job->output_dir, info, s);
  PetscCall(VarproClaimRelease(&claim));
  PetscCall(ierr);
  PetscCall(VarproTrainerDestroy(&tr));
  if (s->claim_lost) {
    s->refused = PETSC_TRUE;
    PetscCall(PetscFPrintf(PETSC_COMM_WORLD, PETSC_STDERR,
                           "varpro-rbf: error: [%" PetscInt_FMT "/%" PetscInt_FMT
                           "] %s: stopped, another run took its claim over (was this run paused for longer than "
                           "-varpro_claim_stale_seconds?)\n",
                           cfg->index + 1, job->nconfigs, cfg->name));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                        "[%" PetscInt_FMT "/%" PetscInt_FMT
                        "] %s: done in %.1f s (%.2f ms/step), reduced risk %.6e, MMD %.6e\n",
                        cfg->index + 1, job->nconfigs, cfg->name, (double)s->wall_time, 1e3 * (double)s->time_per_step,
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

/* A PETSc option nothing asked for is most likely misspelt: say so. */
static PetscErrorCode WarnUnusedOptions(void)
{
  PetscInt n;
  char   **names, **values;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsLeftGet(NULL, &n, &names, &values));
  for (PetscInt k = 0; k < n; k++)
    PetscCall(PetscFPrintf(PETSC_COMM_WORLD, PETSC_STDERR, "varpro-rbf: warning: option -%s was given but never used\n",
                           names[k]));
  PetscCall(PetscOptionsLeftRestore(NULL, &n, &names, &values));
  PetscFunctionReturn(0);
}

static PetscErrorCode RunJob(Options *opts, int argc, char **argv, PetscInt *refused)
{
  VarproJob         job;
  VarproRunSummary *summaries;
  PetscInt          first = 0, last;
  char              info[4096];

  PetscFunctionBeginUser;
  /* The command line is checked on every rank alike */
  PetscCheck(!opts->error[0], PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT, "%s", opts->error);
  if (opts->help || opts->version) {
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, opts->help ? usage : "varpro-rbf %s\n", VARPRO_GIT_VERSION));
    PetscFunctionReturn(0);
  }

  /* Job file, output directory */
  PetscCall(CheckKernelMatType());
  opts->claim_stale = 600.0;
  PetscCall(PetscOptionsGetReal(NULL, NULL, "-varpro_claim_stale_seconds", &opts->claim_stale, NULL));
  PetscCheck(opts->claim_stale > 0, PETSC_COMM_WORLD, PETSC_ERR_USER_INPUT,
             "option -varpro_claim_stale_seconds: %g is not a number of seconds > 0", (double)opts->claim_stale);
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
  PetscCall(RunInfo(argc, argv, info, sizeof(info)));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "varpro-rbf %s: %" PetscInt_FMT " configuration(s) from %s, results in %s\n",
                        VARPRO_GIT_VERSION, job.nconfigs, job.path, job.output_dir));

  /* Every configuration is checked before any is trained, then each runs in turn with all ranks */
  PetscCall(PetscCalloc1(job.nconfigs, &summaries));
  for (PetscInt c = first; c <= last; c++) PetscCall(CheckConfig(&job, &job.configs[c], opts, &summaries[c]));
  for (PetscInt c = first; c <= last; c++) PetscCall(RunConfig(&job, &job.configs[c], opts, info, &summaries[c]));

  /* Closing table */
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "\n%-44s  %8s  %14s  %12s  %10s  %10s\n", "configuration", "steps",
                        "reduced risk", "MMD", "wall [s]", "ms/step"));
  for (PetscInt c = first; c <= last; c++) {
    PetscCall(PrintSummaryRow(&job.configs[c], &summaries[c]));
    if (summaries[c].refused) (*refused)++;
  }
  PetscCall(PetscFree(summaries));
  PetscCall(VarproJobDestroy(&job));
  PetscCall(WarnUnusedOptions());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  Options        opts = {0};
  char         **pargv;
  int            pargc, status;
  PetscInt       refused = 0;
  PetscErrorCode ierr;

  /* Our options are taken out before PETSc sees the command line */
  pargv = (char **)calloc((size_t)argc + 1, sizeof(char *));
  if (!pargv) return 1;
  ParseArgs(argc, argv, &opts, &pargc, pargv);
  if (PetscInitialize(&pargc, &pargv, NULL, usage)) return 1;
  PetscCall(VarproPushErrorHandler());
  PetscCall(VarproTrainerCatchStopSignals());

  /* A user's error or a stop by signal ends every rank with a status; any other aborts the job */
  ierr   = RunJob(&opts, argc, argv, &refused);
  status = VarproExitStatus(ierr);
  if (!status && refused) status = VARPRO_EXIT_CLAIMED;
  if (status == 1) MPI_Abort(PETSC_COMM_WORLD, 1);
  ierr = PetscFinalize();
  free(pargv);
  return ierr ? 1 : status;
}
