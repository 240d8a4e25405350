/*
 * Variable Projection for a two-layer RBF network on the torus (arXiv:2504.18208, App. B).
 *
 * Each step projects the outer weights u exactly, by solving the ridge problem
 *   (F^T F / (N M) + lambda I) u = F^T y / N  (+ lambda 1 when unbiased)
 * (inner.c), then moves the features w by one gradient step on the reduced risk, u held
 * fixed. F (N x M) is split by rows over the ranks; features and outer weights are
 * replicated.
 *
 * A run can be stopped between two steps by SIGTERM or SIGUSR1 and resumed from its partial
 * result file (h5io.c, VarproResultResume).
 */
#define _POSIX_C_SOURCE 200809L

#include "train.h"
#include "inner.h"
#include "kernels.h"
#include "problem.h"
#include "torus.h"
#include "version.h"

#include <errno.h>
#include <petscblaslapack.h>
#include <signal.h>
#include <sys/resource.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Stages shown by -log_view, one per phase of a step. */
typedef enum { STAGE_FEATURES, STAGE_ASSEMBLY, STAGE_SOLVE, STAGE_GRADIENT, STAGE_MMD, STAGE_OUTPUT, NUM_STAGES } Stage;
static const char *const stage_names[NUM_STAGES] = {"Features", "Kernel assembly", "Inner solve", "Gradient",
                                                    "MMD",      "Output"};
static PetscLogStage     stages[NUM_STAGES];

/* Events, one per kernel of a step, shown by -log_view with their flop rates. */
static PetscLogEvent EVENT_FEATURES, EVENT_GRADIENT;

/* Set by SIGTERM or SIGUSR1 (a batch system's warning that the job will end); read once a step. */
static volatile sig_atomic_t stop_requested = 0;

struct _p_VarproTrainer {
  MPI_Comm            comm;
  PetscMPIInt         rank, size;
  const VarproConfig *cfg;
  VarproProblem       prob;     /* data slice, teacher, initial features */
  PetscInt            M, N;     /* student width, data points */
  PetscInt            nlocal;   /* data points owned by this rank */
  PetscReal           eta;      /* feature step M * tau */
  PetscReal           u_prior;  /* 0 (biased) or 1 (unbiased): centre of the ridge penalty */
  PetscReal          *x0, *x1;  /* nlocal each: this rank's inputs wrapped to [-2, 2), by coordinate */
  PetscReal          *features; /* M x 2, replicated, current w */
  PetscReal          *outer;    /* M, replicated, projected u at the current w */
  PetscReal          *F;        /* nlocal x M, row-major: phi(r(w_j, x_i)) for this rank's points (see kernels.h) */
  PetscReal          *w0, *w1;  /* M each: the current features by coordinate, for the kernels */
  PetscReal          *Fty;      /* M: F^T y over this rank's rows, unreduced */
  PetscInt            nstate;   /* length of the state a checkpoint keeps: the inner solve's, then refresh_features */
  PetscReal          *state;    /* nstate, replicated: scratch for checkpoints and resumes */
  PetscReal          *refresh_features; /* M x 2, replicated: w at the last refresh of the inner preconditioner */
  PetscReal          *reduce;           /* 2 M + 1: feature gradient and squared residual, summed over ranks */
  VarproInner         inner;            /* the projection */
  PetscReal           teacher_self;     /* mean teacher-teacher distance, for the MMD */
  PetscReal           progress_interval;
  PetscBool           resume;                 /* continue from a partial result file when there is one */
  VarproClaim         claim;                  /* refreshed as the run goes; may be NULL */
  PetscInt            checkpoint_steps;       /* a checkpoint every this many steps (0: never by count) */
  PetscReal           checkpoint_seconds;     /* and at least this often (0: never by time) */
  PetscBool           claim_lost;             /* another run took the claim over */
  PetscReal           stage_time[NUM_STAGES]; /* wall seconds per stage, this rank */
};

/* Registers the stages once per process. */
static PetscErrorCode TrainerRegisterStages(void)
{
  static PetscBool registered = PETSC_FALSE;
  PetscClassId     classid;

  PetscFunctionBeginUser;
  if (registered) PetscFunctionReturn(0);
  PetscCall(PetscClassIdRegister("VarPro trainer", &classid));
  for (int s = 0; s < NUM_STAGES; s++) PetscCall(PetscLogStageRegister(stage_names[s], &stages[s]));
  PetscCall(PetscLogEventRegister("VarproFeatures", classid, &EVENT_FEATURES));
  PetscCall(PetscLogEventRegister("VarproGradient", classid, &EVENT_GRADIENT));
  registered = PETSC_TRUE;
  PetscFunctionReturn(0);
}

static PetscErrorCode StageBegin(VarproTrainer tr, Stage s, double *t0)
{
  PetscFunctionBeginUser;
  PetscCall(PetscLogStagePush(stages[s]));
  *t0 = MPI_Wtime();
  PetscFunctionReturn(0);
}

static PetscErrorCode StageEnd(VarproTrainer tr, Stage s, double t0)
{
  PetscFunctionBeginUser;
  tr->stage_time[s] += MPI_Wtime() - t0;
  PetscCall(PetscLogStagePop());
  PetscFunctionReturn(0);
}

/* ---- one VarPro step, in its phases ----------------------------------------------- */

/* F_ij = phi(r(w_j, x_i)) for this rank's data points, and F^T y. */
static PetscErrorCode TrainerComputeFeatures(VarproTrainer tr)
{
  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(EVENT_FEATURES, 0, 0, 0, 0));
  for (PetscInt j = 0; j < tr->M; j++) {
    tr->w0[j] = tr->features[2 * j];
    tr->w1[j] = tr->features[2 * j + 1];
  }
  VarproKernelFeatures(tr->nlocal, tr->x0, tr->x1, tr->prob.targets, tr->M, tr->w0, tr->w1, tr->F, tr->Fty);
  PetscCall(PetscLogFlops(22.0 * tr->nlocal * tr->M));
  PetscCall(PetscLogEventEnd(EVENT_FEATURES, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Features, kernel matrix and inner solve: u becomes the exact ridge solution at w. */
static PetscErrorCode TrainerProject(VarproTrainer tr, PetscInt step)
{
  double t0 = 0.0;

  PetscFunctionBeginUser;
  PetscCall(StageBegin(tr, STAGE_FEATURES, &t0));
  PetscCall(TrainerComputeFeatures(tr));
  PetscCall(StageEnd(tr, STAGE_FEATURES, t0));
  PetscCall(StageBegin(tr, STAGE_ASSEMBLY, &t0));
  PetscCall(VarproInnerAssemble(tr->inner, step));
  if (VarproInnerLastRefresh(tr->inner) == step)
    PetscCall(PetscArraycpy(tr->refresh_features, tr->features, 2 * tr->M));
  PetscCall(StageEnd(tr, STAGE_ASSEMBLY, t0));
  PetscCall(StageBegin(tr, STAGE_SOLVE, &t0));
  PetscCall(VarproInnerSolve(tr->inner, step, tr->outer));
  PetscCall(StageEnd(tr, STAGE_SOLVE, t0));
  PetscFunctionReturn(0);
}

/* g_j = (1/(N lambda)) sum_i e_i (u_j / M) phi'(r_ij) wrap(w_j - x_i) / r_ij, summed over ranks,
   together with sum_i e_i^2; returns the reduced risk. */
static PetscErrorCode TrainerRiskAndGradient(VarproTrainer tr, PetscInt step, PetscReal *risk, PetscReal gradient[])
{
  const PetscInt  n = tr->nlocal, M = tr->M;
  const PetscReal scale   = -VARPRO_PHI_RATE / ((PetscReal)tr->N * tr->cfg->lambda * M);
  PetscReal       penalty = 0.0;

  PetscFunctionBeginUser;
  /* e = F u / M - y and, as phi'(r) d / r = -2 F_ij d / r, the sums over this rank's points */
  PetscCall(PetscLogEventBegin(EVENT_GRADIENT, 0, 0, 0, 0));
  tr->reduce[2 * M] = VarproKernelResidualGradient(n, tr->x0, tr->x1, tr->prob.targets, M, tr->w0, tr->w1, tr->outer,
                                                   tr->F, tr->reduce, tr->reduce + M);
  PetscCall(PetscLogFlops(22.0 * n * M));
  PetscCall(PetscLogEventEnd(EVENT_GRADIENT, 0, 0, 0, 0));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, tr->reduce, (PetscMPIInt)(2 * M + 1), MPIU_REAL, MPIU_SUM, tr->comm));

  /* Scale by u_j and the constants; the risk adds the ridge penalty */
  for (PetscInt j = 0; j < M; j++) {
    for (int c = 0; c < 2; c++) gradient[2 * j + c] = scale * tr->outer[j] * tr->reduce[c * M + j];
    penalty += (tr->outer[j] - tr->u_prior) * (tr->outer[j] - tr->u_prior);
  }
  *risk = tr->reduce[2 * M] / (2.0 * tr->N * tr->cfg->lambda) + penalty / (2.0 * M);
  PetscCheck(!PetscIsInfOrNanReal(*risk), tr->comm, PETSC_ERR_FP, "%s: step %" PetscInt_FMT ": reduced risk is %s",
             tr->cfg->name, step, VarproNonFiniteName(*risk));
  for (PetscInt k = 0; k < 2 * M; k++)
    PetscCheck(!PetscIsInfOrNanReal(gradient[k]), tr->comm, PETSC_ERR_FP,
               "%s: step %" PetscInt_FMT ": feature gradient of w[%" PetscInt_FMT "] is %s", tr->cfg->name, step, k / 2,
               VarproNonFiniteName(gradient[k]));
  PetscFunctionReturn(0);
}

/* w_j <- wrap(w_j - eta g_j) */
static PetscErrorCode TrainerUpdateFeatures(VarproTrainer tr, PetscInt step, const PetscReal gradient[])
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < 2 * tr->M; k++) tr->features[k] = VarproWrap(tr->features[k] - tr->eta * gradient[k]);
  for (PetscInt k = 0; k < 2 * tr->M; k++)
    PetscCheck(!PetscIsInfOrNanReal(tr->features[k]), tr->comm, PETSC_ERR_FP,
               "%s: step %" PetscInt_FMT ": feature w[%" PetscInt_FMT
               "] is %s after the update (feature step eta = %g)",
               tr->cfg->name, step, k / 2, VarproNonFiniteName(tr->features[k]), (double)tr->eta);
  PetscFunctionReturn(0);
}

/* ---- set-up ------------------------------------------------------------------------ */

/* Work arrays, the row-distributed kernel matrix and its vectors. */
static PetscErrorCode TrainerSetUpArrays(VarproTrainer tr)
{
  const PetscInt M = tr->M;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(tr->nlocal, &tr->x0, tr->nlocal, &tr->x1));
  for (PetscInt i = 0; i < tr->nlocal; i++) {
    tr->x0[i] = VarproWrap(tr->prob.inputs[2 * i]);
    tr->x1[i] = VarproWrap(tr->prob.inputs[2 * i + 1]);
  }
  PetscCall(PetscMalloc1(2 * M, &tr->features));
  PetscCall(PetscArraycpy(tr->features, tr->prob.student_features, 2 * M));
  PetscCall(PetscCalloc1(M, &tr->outer));
  PetscCall(PetscMalloc1((size_t)tr->nlocal * M, &tr->F));
  PetscCall(PetscMalloc2(M, &tr->w0, M, &tr->w1));
  PetscCall(PetscMalloc1(M, &tr->Fty));
  PetscCall(PetscMalloc1(2 * M + 1, &tr->reduce));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerCreate(MPI_Comm comm, const VarproConfig *cfg, VarproTrainer *trainer)
{
  VarproTrainer tr;

  PetscFunctionBeginUser;
  PetscCall(TrainerRegisterStages());
  PetscCall(PetscNew(&tr));
  tr->comm = comm;
  tr->cfg  = cfg;
  PetscCallMPI(MPI_Comm_rank(comm, &tr->rank));
  PetscCallMPI(MPI_Comm_size(comm, &tr->size));
  tr->progress_interval = 10.0;
  tr->resume            = PETSC_TRUE;
  *trainer              = tr;

  /* Problem, then sizes derived from it */
  PetscCall(VarproProblemSetUp(comm, cfg, &tr->prob));
  tr->M       = tr->prob.M;
  tr->N       = tr->prob.N;
  tr->nlocal  = tr->prob.nlocal;
  tr->eta     = tr->M * cfg->time_scale;
  tr->u_prior = cfg->regularization == VARPRO_UNBIASED ? 1.0 : 0.0;

  PetscCall(TrainerSetUpArrays(tr));
  PetscCall(
    VarproInnerCreate(comm, cfg->name, tr->M, tr->N, tr->nlocal, cfg->lambda, tr->u_prior, tr->F, tr->Fty, &tr->inner));
  tr->nstate = VarproInnerStateSize(tr->inner) + 2 * tr->M;
  PetscCall(PetscMalloc2(tr->nstate, &tr->state, 2 * tr->M, &tr->refresh_features));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerDestroy(VarproTrainer *trainer)
{
  VarproTrainer tr = *trainer;

  PetscFunctionBeginUser;
  if (!tr) PetscFunctionReturn(0);
  PetscCall(VarproInnerDestroy(&tr->inner));
  PetscCall(PetscFree2(tr->state, tr->refresh_features));
  PetscCall(PetscFree2(tr->x0, tr->x1));
  PetscCall(PetscFree(tr->features));
  PetscCall(PetscFree(tr->outer));
  PetscCall(PetscFree(tr->F));
  PetscCall(PetscFree2(tr->w0, tr->w1));
  PetscCall(PetscFree(tr->Fty));
  PetscCall(PetscFree(tr->reduce));
  PetscCall(VarproProblemDestroy(&tr->prob));
  PetscCall(PetscFree(tr));
  *trainer = NULL;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerSetCheckpoint(VarproTrainer tr, PetscInt steps, PetscReal minutes)
{
  PetscFunctionBeginUser;
  tr->checkpoint_steps   = steps;
  tr->checkpoint_seconds = 60 * minutes;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerSetClaim(VarproTrainer tr, VarproClaim claim)
{
  PetscFunctionBeginUser;
  tr->claim = claim;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerSetProgressInterval(VarproTrainer tr, PetscReal seconds)
{
  PetscFunctionBeginUser;
  tr->progress_interval = seconds;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerSetResume(VarproTrainer tr, PetscBool resume)
{
  PetscFunctionBeginUser;
  tr->resume = resume;
  PetscFunctionReturn(0);
}

static void TrainerSignalHandler(int sig)
{
  (void)sig;
  stop_requested = 1;
}

PetscErrorCode VarproTrainerCatchStopSignals(void)
{
  struct sigaction sa;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&sa, sizeof(sa)));
  sa.sa_handler = TrainerSignalHandler;
  sa.sa_flags   = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  PetscCheck(!sigaction(SIGTERM, &sa, NULL) && !sigaction(SIGUSR1, &sa, NULL), PETSC_COMM_SELF, PETSC_ERR_SYS,
             "cannot catch SIGTERM and SIGUSR1: %s", strerror(errno));

  /* A closed pipe on the output (varpro-rbf --list | head) ends the process quietly, as it
     does any command-line tool, rather than through PETSc's handler and its traceback */
  sa.sa_handler = SIG_DFL;
  PetscCheck(!sigaction(SIGPIPE, &sa, NULL), PETSC_COMM_SELF, PETSC_ERR_SYS, "cannot reset SIGPIPE: %s",
             strerror(errno));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerSetFeatures(VarproTrainer tr, const PetscReal features[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscArraycpy(tr->features, features, 2 * tr->M));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerGetFeatures(VarproTrainer tr, PetscReal features[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscArraycpy(features, tr->features, 2 * tr->M));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerGetSizes(VarproTrainer tr, PetscInt *M, PetscInt *N)
{
  PetscFunctionBeginUser;
  if (M) *M = tr->M;
  if (N) *N = tr->N;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerEvaluate(VarproTrainer tr, PetscReal *risk, PetscReal gradient[])
{
  PetscReal *g = gradient;

  PetscFunctionBeginUser;
  if (!gradient) PetscCall(PetscMalloc1(2 * tr->M, &g));
  PetscCall(TrainerProject(tr, 0));
  PetscCall(TrainerRiskAndGradient(tr, 0, risk, g));
  if (!gradient) PetscCall(PetscFree(g));
  PetscFunctionReturn(0);
}

/* ---- the training run --------------------------------------------------------------- */

/* The unique steps floor(linspace(0, epochs, points)), computed as NumPy does; every step when the
   points are at least as many. */
static PetscErrorCode MMDSteps(PetscInt epochs, PetscInt points, PetscInt *count, PetscInt **steps)
{
  PetscReal delta = (PetscReal)epochs / (points - 1);
  PetscInt  n     = 0;

  PetscFunctionBeginUser;
  if (points > epochs) {
    PetscCall(PetscMalloc1(epochs + 1, steps));
    for (PetscInt s = 0; s <= epochs; s++) (*steps)[s] = s;
    *count = epochs + 1;
    PetscFunctionReturn(0);
  }
  PetscCall(PetscMalloc1(points, steps));
  for (PetscInt k = 0; k < points; k++) {
    PetscInt s = k == points - 1 ? epochs : (PetscInt)floor(k * delta);

    if (n == 0 || (*steps)[n - 1] != s) (*steps)[n++] = s;
  }
  *count = n;
  PetscFunctionReturn(0);
}

/* Records what is due at `step` (features w_step with their projected u): a snapshot
   every saving_step steps and at the end, and the MMD at its steps. */
static PetscErrorCode TrainerRecord(VarproTrainer tr, VarproResult res, PetscInt step, PetscBool last,
                                    PetscBool mmd_due, PetscReal *mmd)
{
  double t0 = 0.0;

  PetscFunctionBeginUser;
  if (mmd_due) {
    PetscCall(StageBegin(tr, STAGE_MMD, &t0));
    PetscCall(
      VarproTorusMMD(tr->comm, tr->M, tr->features, tr->prob.T, tr->prob.teacher_features, tr->teacher_self, mmd));
    PetscCall(StageEnd(tr, STAGE_MMD, t0));
  }
  PetscCall(StageBegin(tr, STAGE_OUTPUT, &t0));
  if (mmd_due) PetscCall(VarproResultAppendMMD(res, step, *mmd));
  if (step % tr->cfg->saving_step == 0 || last)
    PetscCall(VarproResultAppendSnapshot(res, step, tr->features, tr->outer));
  PetscCall(StageEnd(tr, STAGE_OUTPUT, t0));
  PetscFunctionReturn(0);
}

/* One line on rank 0 every 1% of the run, at most once per progress interval. */
static PetscErrorCode TrainerProgress(VarproTrainer tr, PetscInt first, PetscInt step, PetscReal risk, double start,
                                      double *last_print)
{
  const PetscInt epochs       = tr->cfg->epochs;
  PetscInt       percent_step = PetscMax(epochs / 100, 1);
  double         now          = MPI_Wtime(), rate, eta;

  PetscFunctionBeginUser;
  if ((step + 1) % percent_step && step + 1 != epochs) PetscFunctionReturn(0);
  if (now - *last_print < tr->progress_interval && step + 1 != epochs) PetscFunctionReturn(0);
  *last_print = now;
  rate        = (step + 1 - first) / (now - start);
  eta         = (epochs - step - 1) / rate;
  PetscCall(PetscPrintf(tr->comm,
                        "  %s: step %" PetscInt_FMT "/%" PetscInt_FMT
                        " (%3.0f%%)  reduced risk %.6e  %.1f steps/s  ETA %dh%02dm%02ds\n",
                        tr->cfg->name, step + 1, epochs, 100.0 * (step + 1) / epochs, (double)risk, rate,
                        (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60)));
  PetscFunctionReturn(0);
}

static int CompareReal(const void *a, const void *b)
{
  PetscReal x = *(const PetscReal *)a, y = *(const PetscReal *)b;

  return (x > y) - (x < y);
}

/* One line of the attribute "sessions" for each invocation that trained this run: the step it
   started from, the software, the host, the time and the command line. */
static PetscErrorCode TrainerNoteSession(VarproTrainer tr, VarproResult res, PetscInt first, const char run_info[])
{
  char host[256], when[32], line[4608];

  PetscFunctionBeginUser;
  VarproHostAndNow(host, when);
  PetscCall(PetscSNPrintf(line, sizeof(line), "from step %" PetscInt_FMT ": varpro-rbf %s on %s at %s, %s", first,
                          VARPRO_GIT_VERSION, host, when, run_info));
  PetscCall(VarproResultAppendAttributeLine(res, "sessions", line));
  PetscFunctionReturn(0);
}

/* Run-level attributes: how the run was made and how long it took. */
static PetscErrorCode TrainerWriteRunInfo(VarproTrainer tr, VarproResult res, const char run_info[],
                                          const VarproRunSummary *s)
{
  char          text[256], host[256], when[32];
  PetscReal     stage_max[NUM_STAGES];
  const char   *kernel_type;
  PetscInt64    iterations, assemblies;
  double        rss;
  struct rusage usage;

  PetscFunctionBeginUser;
  PetscCall(VarproResultSetAttributeString(res, "software_version", VARPRO_GIT_VERSION));
  PetscCall(PetscGetVersion(text, sizeof(text)));
  PetscCall(VarproResultSetAttributeString(res, "petsc_version", text));
  PetscCall(VarproResultSetAttributeString(res, "run_info", run_info));
  VarproHostAndNow(host, when);
  PetscCall(VarproResultSetAttributeString(res, "hostname", host));
  PetscCall(VarproResultSetAttributeString(res, "finished_at", when));
  PetscCall(VarproResultSetAttributeInt(res, "nranks", tr->size));
  PetscCall(VarproResultSetAttributeInt(res, "N", tr->N));
  PetscCall(VarproInnerGetInfo(tr->inner, &kernel_type, &iterations, &assemblies));
  PetscCall(VarproResultSetAttributeString(res, "kernel_mat_type", kernel_type));
  PetscCall(VarproResultSetAttributeReal(res, "wall_time", s->wall_time));
  PetscCall(VarproResultSetAttributeReal(res, "time_per_step", s->time_per_step));
  PetscCall(VarproResultSetAttributeInt(res, "inner_iterations", iterations));
  PetscCall(VarproResultSetAttributeInt(res, "kernel_assemblies", assemblies));
  PetscCall(VarproResultSetAttributeReal(res, "final_reduced_risk", s->reduced_risk));
  PetscCall(VarproResultSetAttributeReal(res, "final_mmd", s->mmd));

  /* Peak resident memory of the process so far (the kernel's count), the largest rank's, in bytes */
  PetscCheck(!getrusage(RUSAGE_SELF, &usage), PETSC_COMM_SELF, PETSC_ERR_SYS, "getrusage: %s", strerror(errno));
  rss = 1024.0 * (double)usage.ru_maxrss;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &rss, 1, MPI_DOUBLE, MPI_MAX, tr->comm));
  PetscCall(VarproResultSetAttributeReal(res, "peak_memory_per_rank", rss));

  /* Seconds spent per stage, the slowest rank's */
  PetscCallMPI(MPI_Allreduce(tr->stage_time, stage_max, NUM_STAGES, MPIU_REAL, MPIU_MAX, tr->comm));
  for (int st = 0; st < NUM_STAGES; st++) {
    PetscCall(PetscSNPrintf(text, sizeof(text), "stage_time/%s", stage_names[st]));
    PetscCall(VarproResultSetAttributeReal(res, text, stage_max[st]));
  }
  PetscFunctionReturn(0);
}

/* Whether a stop was requested on any rank, or rank 0 found the claim taken over: one small
   allreduce a step, so that all stop together. */
static PetscErrorCode TrainerStopRequested(VarproTrainer tr, PetscBool *stop)
{
  PetscBool lost;
  int       requested = stop_requested ? 1 : 0;

  PetscFunctionBeginUser;
  PetscCall(VarproClaimRefresh(tr->claim, &lost));
  if (lost) requested = 2;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &requested, 1, MPI_INT, MPI_MAX, tr->comm));
  *stop          = (PetscBool)(requested != 0);
  tr->claim_lost = (PetscBool)(requested == 2);
  PetscFunctionReturn(0);
}

/* Writes a checkpoint of step: the features w_step and the state before its projection. */
static PetscErrorCode TrainerCheckpoint(VarproTrainer tr, VarproResult res, PetscInt step)
{
  double t0 = 0.0;

  PetscFunctionBeginUser;
  PetscCall(StageBegin(tr, STAGE_OUTPUT, &t0));
  PetscCall(VarproInnerGetState(tr->inner, tr->state));
  PetscCall(PetscArraycpy(tr->state + tr->nstate - 2 * tr->M, tr->refresh_features, 2 * tr->M));
  PetscCall(VarproResultCheckpoint(res, step, tr->features, tr->state));
  PetscCall(StageEnd(tr, STAGE_OUTPUT, t0));
  PetscFunctionReturn(0);
}

/* Restores the state a checkpoint of step kept (tr->state): the inner solve's preconditioner is
   rebuilt from the features of its last refresh (the next projection computes F again). */
static PetscErrorCode TrainerRestoreState(VarproTrainer tr, PetscInt step)
{
  PetscInt   last_refresh;
  PetscReal *current;

  PetscFunctionBeginUser;
  PetscCall(VarproInnerSetState(tr->inner, step, tr->state));
  last_refresh = VarproInnerLastRefresh(tr->inner);
  if (last_refresh < 0) PetscFunctionReturn(0);
  PetscCall(PetscMalloc1(2 * tr->M, &current));
  PetscCall(PetscArraycpy(current, tr->features, 2 * tr->M));
  PetscCall(PetscArraycpy(tr->refresh_features, tr->state + tr->nstate - 2 * tr->M, 2 * tr->M));
  PetscCall(PetscArraycpy(tr->features, tr->refresh_features, 2 * tr->M));
  PetscCall(TrainerComputeFeatures(tr));
  PetscCall(VarproInnerRefactor(tr->inner, last_refresh));
  PetscCall(PetscArraycpy(tr->features, current, 2 * tr->M));
  PetscCall(PetscFree(current));
  PetscCall(VarproInnerSetState(tr->inner, step, tr->state));
  PetscFunctionReturn(0);
}

/* The step loop from step first (0, or the step a partial result is resumed from): record,
   project, risk and gradient, update. The state after the last step is projected and recorded
   too. At each step boundary a checkpoint is written when due, and a stop request ends the loop
   after one (so that a resumed run loses nothing and follows the same trajectory), setting
   *stopped to the step (else -1). */
static PetscErrorCode TrainerLoop(VarproTrainer tr, VarproResult res, PetscInt first, VarproRunSummary *s,
                                  PetscInt *stopped)
{
  const PetscInt epochs = tr->cfg->epochs;
  PetscInt       nmmd = 0, *mmd_steps = NULL, next_mmd = 0, step, nsteps;
  PetscReal     *gradient, *step_time, risk = NAN, mmd = NAN;
  PetscBool      stop  = PETSC_FALSE;
  double         start = MPI_Wtime(), last_print = start, last_checkpoint = start, t0 = 0.0, t1;

  PetscFunctionBeginUser;
  *stopped = -1;
  PetscCall(MMDSteps(epochs, tr->cfg->mmd_points, &nmmd, &mmd_steps));
  while (next_mmd < nmmd && mmd_steps[next_mmd] < first) next_mmd++;
  PetscCall(PetscMalloc1(2 * tr->M, &gradient));
  PetscCall(PetscMalloc1(PetscMax(epochs, 1), &step_time));
  for (step = first; step <= epochs; step++) {
    PetscBool mmd_due = (PetscBool)(next_mmd < nmmd && mmd_steps[next_mmd] == step);

    /* At a step boundary: a checkpoint when asked to stop or when due, by step count or by rank
       0's clock (only rank 0 writes); a run whose claim was taken over adds nothing */
    t1 = MPI_Wtime();
    if (step > first) {
      PetscCall(TrainerStopRequested(tr, &stop));
      if (!tr->claim_lost &&
          (stop || (tr->checkpoint_steps > 0 && step % tr->checkpoint_steps == 0) ||
           (tr->checkpoint_seconds > 0 && MPI_Wtime() - last_checkpoint >= tr->checkpoint_seconds))) {
        PetscCall(TrainerCheckpoint(tr, res, step));
        last_checkpoint = MPI_Wtime();
      }
      if (stop) {
        *stopped = step;
        break;
      }
    }

    /* Project u at w_step and record what is due */
    PetscCall(TrainerProject(tr, step));
    PetscCall(TrainerRecord(tr, res, step, (PetscBool)(step == epochs), mmd_due, &mmd));
    if (mmd_due) next_mmd++;

    /* Reduced risk and feature gradient; the step, except after the last one, where the risk
       is that of the final features, beside their MMD */
    PetscCall(StageBegin(tr, STAGE_GRADIENT, &t0));
    PetscCall(TrainerRiskAndGradient(tr, step, &risk, gradient));
    if (step < epochs) PetscCall(TrainerUpdateFeatures(tr, step, gradient));
    PetscCall(StageEnd(tr, STAGE_GRADIENT, t0));
    if (step == epochs) break;
    step_time[step] = MPI_Wtime() - t1;
    PetscCall(VarproResultAppendLoss(res, step, risk, step_time[step]));
    PetscCall(TrainerProgress(tr, first, step, risk, start, &last_print));
  }

  /* Summary of the steps taken now: the median step time is robust to the MMD and output steps */
  nsteps          = PetscMin(step, epochs) - first;
  s->epochs       = epochs;
  s->reduced_risk = risk;
  s->mmd          = mmd;
  s->wall_time    = MPI_Wtime() - start;
  qsort(step_time + first, (size_t)nsteps, sizeof(PetscReal), CompareReal);
  s->time_per_step = nsteps ? step_time[first + nsteps / 2] : 0.0;
  PetscCall(PetscFree(step_time));
  PetscCall(PetscFree(gradient));
  PetscCall(PetscFree(mmd_steps));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerRun(VarproTrainer tr, const char output_dir[], const char run_info[],
                                VarproRunSummary *summary)
{
  VarproResult res       = NULL;
  PetscInt     first     = -1, stopped;
  PetscBool    has_state = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(summary, sizeof(*summary)));
  PetscCall(PetscArrayzero(tr->stage_time, NUM_STAGES));

  /* The result file exists as <name>.h5.partial until the run completes; one left by a run that
     died or was stopped is continued from its last snapshot */
  if (tr->resume)
    PetscCall(VarproResultResume(tr->comm, output_dir, tr->cfg, tr->M, tr->prob.T, tr->nstate,
                                 (PetscBool)!VarproInnerCarriesState(tr->inner), &first, tr->features, tr->state,
                                 &has_state, &res));
  if (res && has_state) PetscCall(TrainerRestoreState(tr, first));
  if (res)
    PetscCall(PetscPrintf(tr->comm, "  resuming %s from step %" PetscInt_FMT "%s\n", tr->cfg->name, first,
                          has_state || !VarproInnerCarriesState(tr->inner)
                            ? ""
                            : " (a snapshot: the inner solve starts afresh, so the trajectory matches an "
                              "uninterrupted run's to its tolerance, not bit for bit)"));
  else {
    first = 0;
    PetscCall(VarproResultCreate(tr->comm, output_dir, tr->cfg, tr->M, tr->prob.T, tr->nstate, &res));
    PetscCall(VarproResultWriteTeacher(res, tr->prob.teacher_features));
  }
  PetscCall(TrainerNoteSession(tr, res, first, run_info));
  PetscCall(VarproTorusMeanSelfDistance(tr->comm, tr->prob.T, tr->prob.teacher_features, &tr->teacher_self));

  /* Stopped by a signal: the partial file is flushed and closed, and every rank exits */
  PetscCall(TrainerLoop(tr, res, first, summary, &stopped));
  if (stopped >= 0 && tr->claim_lost) {
    PetscCall(VarproResultDestroy(&res));
    summary->claim_lost = PETSC_TRUE;
    PetscFunctionReturn(0);
  }
  if (stopped >= 0) {
    PetscCall(VarproResultDestroy(&res));
    SETERRQ(tr->comm, PETSC_ERR_SIG, "stopped by signal at step %" PetscInt_FMT "; run again to resume", stopped);
  }

  PetscCall(TrainerWriteRunInfo(tr, res, run_info, summary));
  PetscCall(VarproResultFinish(res));
  PetscCall(VarproResultDestroy(&res));
  PetscFunctionReturn(0);
}
