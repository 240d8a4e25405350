/*
 * Variable Projection for a two-layer RBF network on the torus (arXiv:2504.18208, App. B).
 *
 * Each step projects the outer weights u exactly, by solving the ridge problem
 *   (F^T F / (N M) + lambda I) u = F^T y / N  (+ lambda 1 when unbiased),
 * then moves the features w by one gradient step on the reduced risk, u held fixed.
 * F (N x M) is split by rows over the ranks; the M x M kernel matrix is summed from the
 * ranks' Gram contributions into a row-distributed PETSc matrix and solved with a KSP
 * whose options prefix is "inner_".
 */
#include "train.h"
#include "kernels.h"
#include "problem.h"
#include "torus.h"
#include "version.h"

#include <petscblaslapack.h>
#include <petscksp.h>
#include <time.h>
#include <unistd.h>

/* How the inner problem is held: assembled every step and factored through ScaLAPACK, assembled
   as a dense PETSc matrix, or applied matrix-free from F with a factor of an earlier step's
   kernel matrix as preconditioner. */
typedef enum { KERNEL_MAT_SCALAPACK, KERNEL_MAT_DENSE, KERNEL_MAT_MATFREE } KernelMatType;
static const char *const KernelMatTypes[] = {"scalapack", "dense", "matfree", "KernelMatType", "KERNEL_MAT_", NULL};

/* Stages shown by -log_view, one per phase of a step. */
typedef enum { STAGE_FEATURES, STAGE_ASSEMBLY, STAGE_SOLVE, STAGE_GRADIENT, STAGE_MMD, STAGE_OUTPUT, NUM_STAGES } Stage;
static const char *const stage_names[NUM_STAGES] = {"Features", "Kernel assembly", "Inner solve", "Gradient",
                                                    "MMD",      "Output"};
static PetscLogStage     stages[NUM_STAGES];

/* Events, one per kernel of a step, shown by -log_view with their flop rates. */
static PetscLogEvent EVENT_FEATURES, EVENT_GRAM, EVENT_GRAM_SYMMETRIZE, EVENT_GRAM_REDUCE, EVENT_KERNEL_FILL,
  EVENT_GRADIENT;

struct _p_VarproTrainer {
  MPI_Comm            comm;
  PetscMPIInt         rank, size;
  const VarproConfig *cfg;
  VarproProblem       prob;          /* data slice, teacher, initial features */
  PetscInt            M, N;          /* student width, data points */
  PetscInt            nlocal;        /* data points owned by this rank */
  PetscReal           eta;           /* feature step M * tau */
  PetscReal           u_prior;       /* 0 (biased) or 1 (unbiased): centre of the ridge penalty */
  PetscReal          *x0, *x1;       /* nlocal each: this rank's inputs wrapped to [-2, 2), by coordinate */
  PetscReal          *features;      /* M x 2, replicated, current w */
  PetscReal          *outer;         /* M, replicated, projected u at the current w */
  PetscReal          *F;             /* nlocal x M, column-major: phi(r(w_j, x_i)) for this rank's rows */
  PetscReal          *gram;          /* M x (M + 1), column j = row j of F^T F / (N M) then (F^T y / N)_j */
  PetscReal          *gram_rows;     /* mrows x (M + 1): this rank's summed rows of gram */
  PetscReal          *residual;      /* nlocal: f(x_i) - y_i */
  PetscReal          *reduce;        /* 2 M + 1: feature gradient and squared residual, summed over ranks */
  PetscMPIInt        *counts;        /* size: entries of gram each rank receives */
  PetscInt            mstart, mrows; /* rows of the kernel matrix owned by this rank */
  KernelMatType       kernel_type;
  Mat                 K;      /* M x M, MATMPIDENSE, rows [mstart, mstart + mrows) here */
  Mat                 Kop;    /* the operator given to the KSP: K itself or its ScaLAPACK copy */
  Vec                 rhs, u; /* distributed like the rows of K */
  Vec                 u_all;  /* sequential copy of u on every rank */
  VecScatter          to_all;
  KSP                 ksp;
  /* Matrix-free path only */
  PetscBool    replicated;   /* factor held whole on every rank (else distributed by ScaLAPACK) */
  Mat          Kfactor;      /* K at the last refresh: MATSEQDENSE copy, or MATSCALAPACK */
  KSP          factor_ksp;   /* its Cholesky factor, applied as the preconditioner */
  Vec          y_all;        /* replicated factor: the preconditioned vector, whole */
  Vec          x_all;        /* sequential copy of a Krylov vector on every rank */
  PetscReal   *Fx;           /* nlocal: F x for this rank's points */
  PetscReal   *FtFx;         /* M: this rank's F^T F x, before the reduction */
  PetscMPIInt *vec_counts;   /* size: entries of an M-vector each rank owns */
  PetscInt     refresh_its;  /* refresh the factor after a solve needing more iterations */
  PetscInt     refresh_age;  /* ... or once it is this many steps old */
  PetscInt     last_refresh; /* step of the last refresh, -1 before the first */
  PetscInt     last_its;     /* iterations of the last inner solve */
  PetscInt64   inner_its;    /* iterations over the run */
  PetscInt64   refreshes;    /* kernel matrices assembled (and factored) over the run */
  PetscReal    teacher_self; /* mean teacher-teacher distance, for the MMD */
  PetscReal    progress_interval;
  PetscReal    stage_time[NUM_STAGES]; /* wall seconds per stage, this rank */
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
  PetscCall(PetscLogEventRegister("VarproGram", classid, &EVENT_GRAM));
  PetscCall(PetscLogEventRegister("VarproGramSymm", classid, &EVENT_GRAM_SYMMETRIZE));
  PetscCall(PetscLogEventRegister("VarproGramReduce", classid, &EVENT_GRAM_REDUCE));
  PetscCall(PetscLogEventRegister("VarproKernelFill", classid, &EVENT_KERNEL_FILL));
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

/* Rows of the kernel matrix owned by rank r: ceil(M/P) each while they last. A ScaLAPACK copy
   keeps this layout when every rank but the last holds a full block (see KernelRowsFitScaLAPACK). */
static void KernelRowPartition(PetscInt M, PetscMPIInt size, PetscMPIInt r, PetscInt *start, PetscInt *rows)
{
  PetscInt block = (M + size - 1) / size;

  *start = PetscMin(r * block, M);
  *rows  = PetscMin(block, M - *start);
}

static PetscBool KernelRowsFitScaLAPACK(PetscInt M, PetscMPIInt size)
{
  return (PetscBool)((size - 1) * ((M + size - 1) / size) <= M);
}

/* ---- one VarPro step, in its phases ----------------------------------------------- */

/* F_ij = phi(r(w_j, x_i)) for this rank's data points. */
static PetscErrorCode TrainerComputeFeatures(VarproTrainer tr)
{
  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(EVENT_FEATURES, 0, 0, 0, 0));
  VarproKernelFeatures(tr->nlocal, tr->x0, tr->x1, tr->M, tr->features, tr->F);
  PetscCall(PetscLogFlops(20.0 * tr->nlocal * tr->M));
  PetscCall(PetscLogEventEnd(EVENT_FEATURES, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Fills the strictly lower part of the leading M x M block of gram (leading dimension M + 1)
   from its upper part, in tiles, so that column j holds row j. */
static void GramSymmetrize(PetscInt M, PetscReal gram[])
{
  const PetscInt ld = M + 1, tile = 64;

  for (PetscInt jb = 0; jb < M; jb += tile)
    for (PetscInt ib = jb; ib < M; ib += tile)
      for (PetscInt j = jb; j < PetscMin(jb + tile, M); j++)
        for (PetscInt i = PetscMax(ib, j + 1); i < PetscMin(ib + tile, M); i++) gram[j * ld + i] = gram[i * ld + j];
}

/* This rank's contribution: F^T F / (N M) (dsyrk, upper, then mirrored) and F^T y / N,
   the latter stored as the extra (M+1)-th entry of each column. */
static PetscErrorCode TrainerLocalGram(VarproTrainer tr)
{
  PetscBLASInt M, n, ld, one = 1;
  PetscReal    alpha = 1.0 / ((PetscReal)tr->N * tr->M), beta = 0.0, alpha_rhs = 1.0 / tr->N;

  PetscFunctionBeginUser;
  PetscCall(PetscBLASIntCast(tr->M, &M));
  PetscCall(PetscBLASIntCast(tr->nlocal, &n));
  PetscCall(PetscBLASIntCast(tr->M + 1, &ld));
  PetscCall(PetscLogEventBegin(EVENT_GRAM, 0, 0, 0, 0));
  PetscCallBLAS("BLASsyrk", BLASsyrk_("U", "T", &M, &n, &alpha, tr->F, &n, &beta, tr->gram, &ld));
  PetscCallBLAS("BLASgemv",
                BLASgemv_("T", &n, &M, &alpha_rhs, tr->F, &n, tr->prob.targets, &one, &beta, tr->gram + tr->M, &ld));
  PetscCall(PetscLogFlops((PetscLogDouble)tr->nlocal * tr->M * (tr->M + 1) + 2.0 * tr->nlocal * tr->M));
  PetscCall(PetscLogEventEnd(EVENT_GRAM, 0, 0, 0, 0));
  PetscCall(PetscLogEventBegin(EVENT_GRAM_SYMMETRIZE, 0, 0, 0, 0));
  GramSymmetrize(tr->M, tr->gram);
  PetscCall(PetscLogEventEnd(EVENT_GRAM_SYMMETRIZE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Sums the ranks' contributions into this rank's rows of K and of the right-hand side, and
   adds lambda I (and lambda 1 for the unbiased problem). */
static PetscErrorCode TrainerAssembleKernel(VarproTrainer tr)
{
  const PetscInt ld = tr->M + 1;
  PetscReal     *Kloc, *b;
  PetscInt       lda;

  PetscFunctionBeginUser;
  tr->refreshes++;
  PetscCall(TrainerLocalGram(tr));
  PetscCall(PetscLogEventBegin(EVENT_GRAM_REDUCE, 0, 0, 0, 0));
  PetscCallMPI(MPI_Reduce_scatter(tr->gram, tr->gram_rows, tr->counts, MPIU_REAL, MPIU_SUM, tr->comm));
  PetscCall(PetscLogEventEnd(EVENT_GRAM_REDUCE, 0, 0, 0, 0));

  /* gram_rows holds rows of K contiguously; the dense local block is column-major */
  PetscCall(PetscLogEventBegin(EVENT_KERNEL_FILL, 0, 0, 0, 0));
  PetscCall(MatDenseGetLDA(tr->K, &lda));
  PetscCall(MatDenseGetArrayWrite(tr->K, &Kloc));
  PetscCall(VecGetArrayWrite(tr->rhs, &b));
  for (PetscInt i = 0; i < tr->mrows; i++) {
    const PetscReal *row = &tr->gram_rows[i * ld];

    for (PetscInt j = 0; j < tr->M; j++) Kloc[j * lda + i] = row[j];
    Kloc[(tr->mstart + i) * lda + i] += tr->cfg->lambda;
    b[i] = row[tr->M] + tr->cfg->lambda * tr->u_prior;
  }
  PetscCall(VecRestoreArrayWrite(tr->rhs, &b));
  PetscCall(MatDenseRestoreArrayWrite(tr->K, &Kloc));
  PetscCall(PetscLogEventEnd(EVENT_KERNEL_FILL, 0, 0, 0, 0));
  if (tr->kernel_type == KERNEL_MAT_SCALAPACK) PetscCall(MatConvert(tr->K, MATSCALAPACK, MAT_REUSE_MATRIX, &tr->Kop));
  if (tr->kernel_type == KERNEL_MAT_MATFREE && !tr->replicated)
    PetscCall(MatConvert(tr->K, MATSCALAPACK, MAT_REUSE_MATRIX, &tr->Kfactor));
  PetscFunctionReturn(0);
}

/* Matrix-free path: only the right-hand side F^T y / N (+ lambda 1), reduced onto its owners. */
static PetscErrorCode TrainerRightHandSide(VarproTrainer tr)
{
  PetscBLASInt M, n, one = 1;
  PetscReal    alpha = 1.0 / tr->N, beta = 0.0, *b;

  PetscFunctionBeginUser;
  PetscCall(PetscBLASIntCast(tr->M, &M));
  PetscCall(PetscBLASIntCast(tr->nlocal, &n));
  PetscCallBLAS("BLASgemv", BLASgemv_("T", &n, &M, &alpha, tr->F, &n, tr->prob.targets, &one, &beta, tr->FtFx, &one));
  PetscCall(VecGetArrayWrite(tr->rhs, &b));
  PetscCallMPI(MPI_Reduce_scatter(tr->FtFx, b, tr->vec_counts, MPIU_REAL, MPIU_SUM, tr->comm));
  for (PetscInt i = 0; i < tr->mrows; i++) b[i] += tr->cfg->lambda * tr->u_prior;
  PetscCall(VecRestoreArrayWrite(tr->rhs, &b));
  PetscCall(PetscLogFlops(2.0 * tr->nlocal * tr->M));
  PetscFunctionReturn(0);
}

/* y = F^T F x / (N M) + lambda x without forming F^T F: two passes over this rank's rows of F
   and one reduction of M numbers. */
static PetscErrorCode KernelMultMatFree(Mat A, Vec x, Vec y)
{
  VarproTrainer    tr;
  PetscBLASInt     M, n, one = 1;
  PetscReal        zero = 0.0, unit = 1.0, scale, *yl;
  const PetscReal *xa;

  PetscFunctionBeginUser;
  PetscCall(MatShellGetContext(A, &tr));
  PetscCall(PetscBLASIntCast(tr->M, &M));
  PetscCall(PetscBLASIntCast(tr->nlocal, &n));
  scale = 1.0 / ((PetscReal)tr->N * tr->M);

  /* Every rank needs all of x */
  PetscCall(VecScatterBegin(tr->to_all, x, tr->x_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(tr->to_all, x, tr->x_all, INSERT_VALUES, SCATTER_FORWARD));

  /* F^T (F x) on this rank's points, then summed onto the owners of y */
  PetscCall(VecGetArrayRead(tr->x_all, &xa));
  PetscCallBLAS("BLASgemv", BLASgemv_("N", &n, &M, &unit, tr->F, &n, xa, &one, &zero, tr->Fx, &one));
  PetscCallBLAS("BLASgemv", BLASgemv_("T", &n, &M, &scale, tr->F, &n, tr->Fx, &one, &zero, tr->FtFx, &one));
  PetscCall(VecRestoreArrayRead(tr->x_all, &xa));
  PetscCall(VecGetArrayWrite(y, &yl));
  PetscCallMPI(MPI_Reduce_scatter(tr->FtFx, yl, tr->vec_counts, MPIU_REAL, MPIU_SUM, tr->comm));
  PetscCall(VecRestoreArrayWrite(y, &yl));
  PetscCall(VecAXPY(y, tr->cfg->lambda, x));
  PetscCall(PetscLogFlops(4.0 * tr->nlocal * tr->M));
  PetscFunctionReturn(0);
}

/* The preconditioner of the matrix-free path: the Cholesky factor of K at the last refresh. */
static PetscErrorCode StaleFactorApply(PC pc, Vec x, Vec y)
{
  VarproTrainer tr;

  PetscFunctionBeginUser;
  PetscCall(PCShellGetContext(pc, &tr));
  if (!tr->replicated) {
    PetscCall(KSPSolve(tr->factor_ksp, x, y));
    PetscFunctionReturn(0);
  }

  /* Replicated: gather x, solve with the local factor, keep this rank's part */
  PetscCall(VecScatterBegin(tr->to_all, x, tr->x_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(tr->to_all, x, tr->x_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(KSPSolve(tr->factor_ksp, tr->x_all, tr->y_all));
  PetscCall(VecScatterBegin(tr->to_all, tr->y_all, y, INSERT_VALUES, SCATTER_REVERSE_LOCAL));
  PetscCall(VecScatterEnd(tr->to_all, tr->y_all, y, INSERT_VALUES, SCATTER_REVERSE_LOCAL));
  PetscFunctionReturn(0);
}

/* Replicated factor: the whole kernel matrix on every rank (one allreduce of the Gram
   contributions), and this rank's rows of the right-hand side. */
static PetscErrorCode TrainerAssembleReplicated(VarproTrainer tr)
{
  const PetscInt ld = tr->M + 1;
  PetscReal     *Kall, *b;
  PetscMPIInt    count;

  PetscFunctionBeginUser;
  tr->refreshes++;
  PetscCall(TrainerLocalGram(tr));
  PetscCall(PetscMPIIntCast(tr->M * ld, &count));
  PetscCall(PetscLogEventBegin(EVENT_GRAM_REDUCE, 0, 0, 0, 0));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, tr->gram, count, MPIU_REAL, MPIU_SUM, tr->comm));
  PetscCall(PetscLogEventEnd(EVENT_GRAM_REDUCE, 0, 0, 0, 0));

  /* Column j of gram is row (and column) j of K, then the right-hand side entry */
  PetscCall(PetscLogEventBegin(EVENT_KERNEL_FILL, 0, 0, 0, 0));
  PetscCall(MatDenseGetArrayWrite(tr->Kfactor, &Kall));
  for (PetscInt j = 0; j < tr->M; j++) {
    PetscCall(PetscArraycpy(&Kall[j * tr->M], &tr->gram[j * ld], tr->M));
    Kall[j * tr->M + j] += tr->cfg->lambda;
  }
  PetscCall(MatDenseRestoreArrayWrite(tr->Kfactor, &Kall));
  PetscCall(VecGetArrayWrite(tr->rhs, &b));
  for (PetscInt i = 0; i < tr->mrows; i++)
    b[i] = tr->gram[(tr->mstart + i) * ld + tr->M] + tr->cfg->lambda * tr->u_prior;
  PetscCall(VecRestoreArrayWrite(tr->rhs, &b));
  PetscCall(PetscLogEventEnd(EVENT_KERNEL_FILL, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Whether the matrix-free path refactors at this step: at the first step, when the last solve
   needed more than refresh_its iterations, or when the factor is refresh_age steps old. */
static PetscBool TrainerFactorStale(VarproTrainer tr, PetscInt step)
{
  if (tr->last_refresh < 0) return PETSC_TRUE;
  return (PetscBool)(tr->last_its > tr->refresh_its || step - tr->last_refresh >= tr->refresh_age);
}

/* Matrix-free path: the factor is refreshed when stale, else only the right-hand side is built. */
static PetscErrorCode TrainerAssembleMatFree(VarproTrainer tr, PetscInt step)
{
  PetscFunctionBeginUser;
  if (!TrainerFactorStale(tr, step)) {
    PetscCall(TrainerRightHandSide(tr));
    PetscFunctionReturn(0);
  }
  if (tr->replicated)
    PetscCall(TrainerAssembleReplicated(tr));
  else
    PetscCall(TrainerAssembleKernel(tr));
  PetscCall(KSPSetOperators(tr->factor_ksp, tr->Kfactor, tr->Kfactor));
  tr->last_refresh = step;
  PetscFunctionReturn(0);
}

/* Solves for u, warm-started from the previous step when the KSP iterates, and copies it to
   every rank. */
static PetscErrorCode TrainerSolveInner(VarproTrainer tr, PetscInt step)
{
  KSPConvergedReason reason;
  const PetscReal   *u;

  PetscFunctionBeginUser;
  if (tr->kernel_type != KERNEL_MAT_MATFREE) PetscCall(KSPSetOperators(tr->ksp, tr->Kop, tr->Kop));
  PetscCall(KSPSolve(tr->ksp, tr->rhs, tr->u));
  PetscCall(KSPGetIterationNumber(tr->ksp, &tr->last_its));
  tr->inner_its += tr->last_its;
  PetscCall(KSPGetConvergedReason(tr->ksp, &reason));
  PetscCheck(reason != KSP_DIVERGED_NANORINF, tr->comm, PETSC_ERR_FP,
             "step %" PetscInt_FMT ": the inner solve met NaN or Inf (features or outer weights diverged)", step);
  PetscCheck(reason >= 0, tr->comm, PETSC_ERR_NOT_CONVERGED,
             "step %" PetscInt_FMT ": inner solve failed: %s (see -inner_ksp_converged_reason, -inner_ksp_rtol)", step,
             KSPConvergedReasons[reason]);
  PetscCall(VecScatterBegin(tr->to_all, tr->u, tr->u_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(tr->to_all, tr->u, tr->u_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecGetArrayRead(tr->u_all, &u));
  PetscCall(PetscArraycpy(tr->outer, u, tr->M));
  PetscCall(VecRestoreArrayRead(tr->u_all, &u));
  for (PetscInt j = 0; j < tr->M; j++)
    PetscCheck(!PetscIsInfOrNanReal(tr->outer[j]), tr->comm, PETSC_ERR_FP,
               "step %" PetscInt_FMT ": outer weight u[%" PetscInt_FMT "] is %g", step, j, (double)tr->outer[j]);
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
  if (tr->kernel_type == KERNEL_MAT_MATFREE)
    PetscCall(TrainerAssembleMatFree(tr, step));
  else
    PetscCall(TrainerAssembleKernel(tr));
  PetscCall(StageEnd(tr, STAGE_ASSEMBLY, t0));
  PetscCall(StageBegin(tr, STAGE_SOLVE, &t0));
  PetscCall(TrainerSolveInner(tr, step));
  PetscCall(StageEnd(tr, STAGE_SOLVE, t0));
  PetscFunctionReturn(0);
}

/* Residual e = F u / M - y on this rank's points. */
static PetscErrorCode TrainerResidual(VarproTrainer tr)
{
  PetscBLASInt M, n, one = 1;
  PetscReal    alpha = 1.0 / tr->M, beta = -1.0;

  PetscFunctionBeginUser;
  PetscCall(PetscBLASIntCast(tr->M, &M));
  PetscCall(PetscBLASIntCast(tr->nlocal, &n));
  PetscCall(PetscArraycpy(tr->residual, tr->prob.targets, tr->nlocal));
  PetscCallBLAS("BLASgemv", BLASgemv_("N", &n, &M, &alpha, tr->F, &n, tr->outer, &one, &beta, tr->residual, &one));
  PetscFunctionReturn(0);
}

/* g_j = (1/(N lambda)) sum_i e_i (u_j / M) phi'(r_ij) wrap(w_j - x_i) / r_ij, summed over ranks,
   together with sum_i e_i^2; returns the reduced risk. */
static PetscErrorCode TrainerRiskAndGradient(VarproTrainer tr, PetscInt step, PetscReal *risk, PetscReal gradient[])
{
  const PetscInt  n = tr->nlocal, M = tr->M;
  const PetscReal scale = -VARPRO_PHI_RATE / ((PetscReal)tr->N * tr->cfg->lambda * M);
  PetscReal       sq = 0.0, penalty = 0.0;

  PetscFunctionBeginUser;
  PetscCall(TrainerResidual(tr));
  for (PetscInt i = 0; i < n; i++) sq += tr->residual[i] * tr->residual[i];

  /* phi'(r) d / r = -2 F_ij d / r: sum this rank's points for each feature */
  PetscCall(PetscLogEventBegin(EVENT_GRADIENT, 0, 0, 0, 0));
  VarproKernelGradientSums(n, tr->x0, tr->x1, M, tr->features, tr->F, tr->residual, tr->reduce);
  PetscCall(PetscLogEventEnd(EVENT_GRADIENT, 0, 0, 0, 0));
  tr->reduce[2 * M] = sq;
  PetscCall(PetscLogFlops(20.0 * n * M));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, tr->reduce, (PetscMPIInt)(2 * M + 1), MPIU_REAL, MPIU_SUM, tr->comm));

  /* Scale by u_j and the constants; the risk adds the ridge penalty */
  for (PetscInt j = 0; j < M; j++) {
    for (int c = 0; c < 2; c++) gradient[2 * j + c] = scale * tr->outer[j] * tr->reduce[2 * j + c];
    penalty += (tr->outer[j] - tr->u_prior) * (tr->outer[j] - tr->u_prior);
  }
  *risk = tr->reduce[2 * M] / (2.0 * tr->N * tr->cfg->lambda) + penalty / (2.0 * M);
  PetscCheck(!PetscIsInfOrNanReal(*risk), tr->comm, PETSC_ERR_FP, "step %" PetscInt_FMT ": reduced risk is %g", step,
             (double)*risk);
  for (PetscInt k = 0; k < 2 * M; k++)
    PetscCheck(!PetscIsInfOrNanReal(gradient[k]), tr->comm, PETSC_ERR_FP,
               "step %" PetscInt_FMT ": feature gradient of w[%" PetscInt_FMT "] is %g", step, k / 2,
               (double)gradient[k]);
  PetscFunctionReturn(0);
}

/* w_j <- wrap(w_j - eta g_j) */
static void TrainerUpdateFeatures(VarproTrainer tr, const PetscReal gradient[])
{
  for (PetscInt k = 0; k < 2 * tr->M; k++) tr->features[k] = VarproWrap(tr->features[k] - tr->eta * gradient[k]);
}

/* ---- set-up ------------------------------------------------------------------------ */

/* The matrix-free operator, warm-started CG on it, and the stale factor as preconditioner, whose
   own KSP takes options under the prefix inner_factor_. */
static PetscErrorCode TrainerSetUpMatFree(VarproTrainer tr, PC pc)
{
  PC factor_pc;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(tr->nlocal, &tr->Fx));
  PetscCall(PetscMalloc1(tr->M, &tr->FtFx));
  PetscCall(VecDuplicate(tr->u_all, &tr->x_all));
  PetscCall(MatCreateShell(tr->comm, tr->mrows, tr->mrows, tr->M, tr->M, tr, &tr->Kop));
  PetscCall(MatShellSetOperation(tr->Kop, MATOP_MULT, (void (*)(void))KernelMultMatFree));
  PetscCall(MatSetOption(tr->Kop, MAT_SPD, PETSC_TRUE));

  if (tr->replicated) {
    PetscCall(MatCreateSeqDense(PETSC_COMM_SELF, tr->M, tr->M, NULL, &tr->Kfactor));
    PetscCall(MatSetOption(tr->Kfactor, MAT_SYMMETRIC, PETSC_TRUE));
    PetscCall(VecDuplicate(tr->u_all, &tr->y_all));
  } else
    PetscCall(MatConvert(tr->K, MATSCALAPACK, MAT_INITIAL_MATRIX, &tr->Kfactor));
  PetscCall(KSPCreate(tr->replicated ? PETSC_COMM_SELF : tr->comm, &tr->factor_ksp));
  PetscCall(KSPSetOptionsPrefix(tr->factor_ksp, "inner_factor_"));
  PetscCall(KSPSetType(tr->factor_ksp, KSPPREONLY));
  PetscCall(KSPGetPC(tr->factor_ksp, &factor_pc));
  PetscCall(PCSetType(factor_pc, PCCHOLESKY));
  PetscCall(KSPSetFromOptions(tr->factor_ksp));

  PetscCall(KSPSetType(tr->ksp, KSPCG));
  PetscCall(KSPSetTolerances(tr->ksp, 1e-12, 1e-300, PETSC_DEFAULT, 10000));
  PetscCall(PCSetType(pc, PCSHELL));
  PetscCall(PCShellSetContext(pc, tr));
  PetscCall(PCShellSetApply(pc, StaleFactorApply));
  PetscCall(PCShellSetName(pc, "Cholesky factor of an earlier step's kernel matrix"));
  PetscFunctionReturn(0);
}

/* Chooses the kernel matrix type and gives the KSP its defaults before the user's options:
   Cholesky through ScaLAPACK, or warm-started CG to a tight tolerance on the dense matrix. */
static PetscErrorCode TrainerSetUpSolver(VarproTrainer tr)
{
  PetscInt  type = KERNEL_MAT_SCALAPACK;
  PC        pc;
  KSPType   ksp_type;
  PetscBool preonly;

  PetscFunctionBeginUser;
  tr->refresh_its  = 10;
  tr->refresh_age  = 100;
  tr->last_refresh = -1;
  PetscOptionsBegin(tr->comm, "inner_", "Inner ridge solve", NULL);
  PetscCall(PetscOptionsEList("-kernel_mat_type", "How the kernel matrix is held for the inner KSP", NULL,
                              KernelMatTypes, 3, KernelMatTypes[type], &type, NULL));
  PetscCall(PetscOptionsInt("-refresh_its", "matfree: refactor after a solve needing more iterations", NULL,
                            tr->refresh_its, &tr->refresh_its, NULL));
  tr->replicated = (PetscBool)(tr->M <= 4096);
  PetscCall(PetscOptionsBool("-factor_replicated",
                             "matfree: hold the preconditioner's factor whole on every rank (default for M <= 4096)",
                             NULL, tr->replicated, &tr->replicated, NULL));
  PetscCall(PetscOptionsInt("-refresh_age", "matfree: refactor once the factor is this many steps old", NULL,
                            tr->refresh_age, &tr->refresh_age, NULL));
  PetscOptionsEnd();
  tr->kernel_type = (KernelMatType)type;
  PetscCheck(tr->kernel_type == KERNEL_MAT_DENSE || (tr->kernel_type == KERNEL_MAT_MATFREE && tr->replicated) ||
               KernelRowsFitScaLAPACK(tr->M, tr->size),
             tr->comm, PETSC_ERR_USER_INPUT,
             "run '%s': student_width %" PetscInt_FMT " cannot be split in ScaLAPACK blocks over %d ranks; use fewer "
             "ranks, or -inner_kernel_mat_type dense",
             tr->cfg->name, tr->M, tr->size);

  PetscCall(KSPCreate(tr->comm, &tr->ksp));
  PetscCall(KSPSetOptionsPrefix(tr->ksp, "inner_"));
  PetscCall(KSPGetPC(tr->ksp, &pc));
  PetscCall(KSPSetTolerances(tr->ksp, 1e-13, 1e-300, PETSC_DEFAULT, 10000));
  switch (tr->kernel_type) {
  case KERNEL_MAT_SCALAPACK:
    PetscCall(MatConvert(tr->K, MATSCALAPACK, MAT_INITIAL_MATRIX, &tr->Kop));
    PetscCall(KSPSetType(tr->ksp, KSPPREONLY));
    PetscCall(PCSetType(pc, PCCHOLESKY));
    break;
  case KERNEL_MAT_DENSE:
    PetscCall(PetscObjectReference((PetscObject)tr->K));
    tr->Kop = tr->K;
    PetscCall(KSPSetType(tr->ksp, KSPCG));
    PetscCall(PCSetType(pc, PCJACOBI));
    break;
  case KERNEL_MAT_MATFREE: PetscCall(TrainerSetUpMatFree(tr, pc)); break;
  }
  PetscCall(KSPSetOperators(tr->ksp, tr->Kop, tr->Kop));
  PetscCall(KSPSetFromOptions(tr->ksp));

  /* Warm start from the previous u, except for a direct solve, which takes no guess */
  PetscCall(KSPGetType(tr->ksp, &ksp_type));
  PetscCall(PetscStrcmp(ksp_type, KSPPREONLY, &preonly));
  if (!preonly) PetscCall(KSPSetInitialGuessNonzero(tr->ksp, PETSC_TRUE));
  PetscFunctionReturn(0);
}

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
  PetscCall(PetscMalloc1((size_t)M * (M + 1), &tr->gram));
  PetscCall(PetscMalloc1(tr->nlocal, &tr->residual));
  PetscCall(PetscMalloc1(2 * M + 1, &tr->reduce));

  /* Row blocks of K: rank r receives rows [start_r, start_r + rows_r) of gram */
  PetscCall(PetscMalloc1(tr->size, &tr->counts));
  PetscCall(PetscMalloc1(tr->size, &tr->vec_counts));
  for (PetscMPIInt r = 0; r < tr->size; r++) {
    PetscInt start, rows;

    KernelRowPartition(M, tr->size, r, &start, &rows);
    PetscCall(PetscMPIIntCast(rows * (M + 1), &tr->counts[r]));
    PetscCall(PetscMPIIntCast(rows, &tr->vec_counts[r]));
  }
  KernelRowPartition(M, tr->size, tr->rank, &tr->mstart, &tr->mrows);
  PetscCall(PetscMalloc1((size_t)tr->mrows * (M + 1), &tr->gram_rows));
  PetscCall(MatCreateDense(tr->comm, tr->mrows, tr->mrows, M, M, NULL, &tr->K));
  PetscCall(MatSetUp(tr->K));
  PetscCall(MatAssemblyBegin(tr->K, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(tr->K, MAT_FINAL_ASSEMBLY));
  PetscCall(MatCreateVecs(tr->K, &tr->u, &tr->rhs));
  PetscCall(VecScatterCreateToAll(tr->u, &tr->to_all, &tr->u_all));
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
  *trainer              = tr;

  /* Problem, then sizes derived from it */
  PetscCall(VarproProblemSetUp(comm, cfg, &tr->prob));
  tr->M       = tr->prob.M;
  tr->N       = tr->prob.N;
  tr->nlocal  = tr->prob.nlocal;
  tr->eta     = tr->M * cfg->time_scale;
  tr->u_prior = cfg->regularization == VARPRO_UNBIASED ? 1.0 : 0.0;

  PetscCall(TrainerSetUpArrays(tr));
  PetscCall(TrainerSetUpSolver(tr));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerDestroy(VarproTrainer *trainer)
{
  VarproTrainer tr = *trainer;

  PetscFunctionBeginUser;
  if (!tr) PetscFunctionReturn(0);
  PetscCall(KSPDestroy(&tr->ksp));
  PetscCall(MatDestroy(&tr->Kop));
  PetscCall(MatDestroy(&tr->K));
  PetscCall(VecDestroy(&tr->rhs));
  PetscCall(VecDestroy(&tr->u));
  PetscCall(VecDestroy(&tr->u_all));
  PetscCall(VecScatterDestroy(&tr->to_all));
  PetscCall(PetscFree2(tr->x0, tr->x1));
  PetscCall(PetscFree(tr->features));
  PetscCall(PetscFree(tr->outer));
  PetscCall(PetscFree(tr->F));
  PetscCall(PetscFree(tr->gram));
  PetscCall(PetscFree(tr->gram_rows));
  PetscCall(PetscFree(tr->residual));
  PetscCall(PetscFree(tr->reduce));
  PetscCall(PetscFree(tr->counts));
  PetscCall(PetscFree(tr->vec_counts));
  PetscCall(KSPDestroy(&tr->factor_ksp));
  PetscCall(MatDestroy(&tr->Kfactor));
  PetscCall(VecDestroy(&tr->x_all));
  PetscCall(VecDestroy(&tr->y_all));
  PetscCall(PetscFree(tr->Fx));
  PetscCall(PetscFree(tr->FtFx));
  PetscCall(VarproProblemDestroy(&tr->prob));
  PetscCall(PetscFree(tr));
  *trainer = NULL;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerSetProgressInterval(VarproTrainer tr, PetscReal seconds)
{
  PetscFunctionBeginUser;
  tr->progress_interval = seconds;
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

/* The unique steps floor(linspace(0, epochs, points)), computed as NumPy does. */
static PetscErrorCode MMDSteps(PetscInt epochs, PetscInt points, PetscInt *count, PetscInt **steps)
{
  PetscReal delta = (PetscReal)epochs / (points - 1);
  PetscInt  n     = 0;

  PetscFunctionBeginUser;
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
static PetscErrorCode TrainerProgress(VarproTrainer tr, PetscInt step, PetscReal risk, double start, double *last_print)
{
  const PetscInt epochs       = tr->cfg->epochs;
  PetscInt       percent_step = PetscMax(epochs / 100, 1);
  double         now          = MPI_Wtime(), rate, eta;

  PetscFunctionBeginUser;
  if ((step + 1) % percent_step && step + 1 != epochs) PetscFunctionReturn(0);
  if (now - *last_print < tr->progress_interval && step + 1 != epochs) PetscFunctionReturn(0);
  *last_print = now;
  rate        = (step + 1) / (now - start);
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

/* Run-level attributes: how the run was made and how long it took. */
static PetscErrorCode TrainerWriteRunInfo(VarproTrainer tr, VarproResult res, const char run_info[],
                                          const VarproRunSummary *s)
{
  char      text[256], host[256] = "";
  PetscReal stage_max[NUM_STAGES];

  PetscFunctionBeginUser;
  PetscCall(VarproResultSetAttributeString(res, "software_version", VARPRO_GIT_VERSION));
  PetscCall(PetscGetVersion(text, sizeof(text)));
  PetscCall(VarproResultSetAttributeString(res, "petsc_version", text));
  PetscCall(VarproResultSetAttributeString(res, "run_info", run_info));
  gethostname(host, sizeof(host) - 1);
  PetscCall(VarproResultSetAttributeString(res, "hostname", host));
  PetscCall(VarproResultSetAttributeInt(res, "nranks", tr->size));
  PetscCall(VarproResultSetAttributeInt(res, "N", tr->N));
  PetscCall(VarproResultSetAttributeString(res, "kernel_mat_type", KernelMatTypes[tr->kernel_type]));
  PetscCall(VarproResultSetAttributeReal(res, "wall_time", s->wall_time));
  PetscCall(VarproResultSetAttributeReal(res, "time_per_step", s->time_per_step));
  PetscCall(VarproResultSetAttributeInt(res, "inner_iterations", tr->inner_its));
  PetscCall(VarproResultSetAttributeInt(res, "factor_refreshes", tr->refreshes));
  PetscCall(VarproResultSetAttributeReal(res, "final_reduced_risk", s->reduced_risk));
  PetscCall(VarproResultSetAttributeReal(res, "final_mmd", s->mmd));

  /* Seconds spent per stage, the slowest rank's */
  PetscCallMPI(MPI_Allreduce(tr->stage_time, stage_max, NUM_STAGES, MPIU_REAL, MPIU_MAX, tr->comm));
  for (int st = 0; st < NUM_STAGES; st++) {
    PetscCall(PetscSNPrintf(text, sizeof(text), "stage_time/%s", stage_names[st]));
    PetscCall(VarproResultSetAttributeReal(res, text, stage_max[st]));
  }
  PetscFunctionReturn(0);
}

/* The step loop: record, project, risk and gradient, update. The state after the last step
   is projected and recorded too. */
static PetscErrorCode TrainerLoop(VarproTrainer tr, VarproResult res, VarproRunSummary *s)
{
  const PetscInt epochs = tr->cfg->epochs;
  PetscInt       nmmd = 0, *mmd_steps = NULL, next_mmd = 0;
  PetscReal     *gradient, *step_time, risk = NAN, mmd = NAN;
  double         start = MPI_Wtime(), last_print = start, t0 = 0.0, t1;

  PetscFunctionBeginUser;
  PetscCall(MMDSteps(epochs, tr->cfg->mmd_points, &nmmd, &mmd_steps));
  PetscCall(PetscMalloc1(2 * tr->M, &gradient));
  PetscCall(PetscMalloc1(PetscMax(epochs, 1), &step_time));
  for (PetscInt step = 0; step <= epochs; step++) {
    PetscBool mmd_due = (PetscBool)(next_mmd < nmmd && mmd_steps[next_mmd] == step);

    /* Project u at w_step and record what is due */
    t1 = MPI_Wtime();
    PetscCall(TrainerProject(tr, step));
    PetscCall(TrainerRecord(tr, res, step, (PetscBool)(step == epochs), mmd_due, &mmd));
    if (mmd_due) next_mmd++;
    if (step == epochs) break;

    /* Reduced risk, feature gradient and the step */
    PetscCall(StageBegin(tr, STAGE_GRADIENT, &t0));
    PetscCall(TrainerRiskAndGradient(tr, step, &risk, gradient));
    TrainerUpdateFeatures(tr, gradient);
    PetscCall(StageEnd(tr, STAGE_GRADIENT, t0));
    step_time[step] = MPI_Wtime() - t1;
    PetscCall(VarproResultAppendLoss(res, step, risk, step_time[step]));
    PetscCall(TrainerProgress(tr, step, risk, start, &last_print));
  }

  /* Summary: the median step time is robust to the MMD and output steps */
  s->epochs       = epochs;
  s->reduced_risk = risk;
  s->mmd          = mmd;
  s->wall_time    = MPI_Wtime() - start;
  qsort(step_time, (size_t)epochs, sizeof(PetscReal), CompareReal);
  s->time_per_step = epochs ? step_time[epochs / 2] : 0.0;
  PetscCall(PetscFree(step_time));
  PetscCall(PetscFree(gradient));
  PetscCall(PetscFree(mmd_steps));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTrainerRun(VarproTrainer tr, const char output_dir[], const char run_info[],
                                VarproRunSummary *summary)
{
  VarproResult res;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(summary, sizeof(*summary)));
  PetscCall(PetscArrayzero(tr->stage_time, NUM_STAGES));

  /* The result file exists as <name>.h5.partial until the run completes */
  PetscCall(VarproResultCreate(tr->comm, output_dir, tr->cfg, tr->M, tr->prob.T, &res));
  PetscCall(VarproResultWriteTeacher(res, tr->prob.teacher_features));
  PetscCall(VarproTorusMeanSelfDistance(tr->comm, tr->prob.T, tr->prob.teacher_features, &tr->teacher_self));

  PetscCall(TrainerLoop(tr, res, summary));

  PetscCall(TrainerWriteRunInfo(tr, res, run_info, summary));
  PetscCall(VarproResultFinish(res));
  PetscCall(VarproResultDestroy(&res));
  PetscFunctionReturn(0);
}
