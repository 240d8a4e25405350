/*
 * The inner (projection) problem of a VarPro step: the ridge system
 *   K u = b,  K = F^T F / (N M) + lambda I,  b = F^T y / N (+ lambda 1 when unbiased),
 * solved with a KSP whose options prefix is "inner_".
 *
 * F (N x M) is split by rows over the ranks and owned by the caller. K is held by rows:
 * rank r owns ceil(M/P) of them (the last rank fewer), summed from every rank's Gram
 * contribution F_r^T F_r by one reduce-scatter. Three ways to hold it (-inner_kernel_mat_type):
 *   scalapack  assembled every step, converted to MATSCALAPACK, Cholesky (the reference)
 *   dense      assembled every step as MATMPIDENSE, warm-started CG with Jacobi
 *   matfree    never assembled for the solve: CG on v -> F^T (F v) / (N M) + lambda v,
 *              preconditioned by the Cholesky factor of K from an earlier step, which is
 *              refreshed when the iteration count or its age says it has gone stale
 */
#include "inner.h"

#include <petscblaslapack.h>
#include <petscksp.h>

typedef enum { KERNEL_MAT_SCALAPACK, KERNEL_MAT_DENSE, KERNEL_MAT_MATFREE } KernelMatType;
static const char *const KernelMatTypes[] = {"scalapack", "dense", "matfree", "KernelMatType", "KERNEL_MAT_", NULL};

/* Events of the assembly, shown by -log_view. */
static PetscLogEvent EVENT_GRAM, EVENT_GRAM_SYMMETRIZE, EVENT_GRAM_REDUCE, EVENT_KERNEL_FILL;

struct _p_VarproInner {
  MPI_Comm         comm;
  PetscMPIInt      rank, size;
  char             name[VARPRO_NAME_MAX]; /* the run, for messages */
  PetscInt         M, N, nlocal;          /* student width, data points, this rank's points */
  PetscReal        lambda, u_prior;       /* ridge strength; 0 (biased) or 1 (unbiased) */
  const PetscReal *F;                     /* nlocal x M, column-major, the caller's */
  const PetscReal *targets;               /* nlocal, the caller's */
  PetscReal       *gram;                  /* M x (M + 1): column j = row j of F^T F / (N M), then (F^T y / N)_j */
  PetscReal       *gram_rows;             /* mrows x (M + 1): this rank's summed rows of gram */
  PetscMPIInt     *counts;                /* size: entries of gram each rank receives */
  PetscMPIInt     *vec_counts;            /* size: entries of an M-vector each rank owns */
  PetscInt         mstart, mrows;         /* rows of K owned by this rank */
  KernelMatType    kernel_type;
  Mat              K;      /* M x M, MATMPIDENSE, rows [mstart, mstart + mrows) here */
  Mat              Kop;    /* the KSP's operator: K, its ScaLAPACK copy, or the matrix-free shell */
  Vec              rhs, u; /* distributed like the rows of K */
  Vec              u_all;  /* sequential copy of u on every rank */
  VecScatter       to_all;
  KSP              ksp;
  /* Matrix-free path only */
  PetscBool  replicated;   /* factor held whole on every rank (else distributed by ScaLAPACK) */
  Mat        Kfactor;      /* K at the last refresh: MATSEQDENSE copy, or MATSCALAPACK */
  KSP        factor_ksp;   /* its Cholesky factor, applied as the preconditioner */
  Vec        x_all, y_all; /* sequential copies of Krylov vectors on every rank */
  PetscReal *Fx;           /* nlocal: F x for this rank's points */
  PetscReal *FtFx;         /* M: this rank's F^T F x, before the reduction */
  PetscInt   refresh_its;  /* refresh the factor after a solve needing more iterations */
  PetscInt   refresh_age;  /* ... or once it is this many steps old */
  PetscInt   last_refresh; /* step of the last refresh, -1 before the first */
  PetscInt   last_its;     /* iterations of the last solve */
  PetscInt64 iterations;   /* over all solves */
  PetscInt64 assemblies;   /* kernel matrices assembled (and factored) */
};

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
static PetscErrorCode InnerLocalGram(VarproInner in)
{
  PetscBLASInt M, n, ld, one = 1;
  PetscReal    alpha = 1.0 / ((PetscReal)in->N * in->M), beta = 0.0, alpha_rhs = 1.0 / in->N;

  PetscFunctionBeginUser;
  PetscCall(PetscBLASIntCast(in->M, &M));
  PetscCall(PetscBLASIntCast(in->nlocal, &n));
  PetscCall(PetscBLASIntCast(in->M + 1, &ld));
  PetscCall(PetscLogEventBegin(EVENT_GRAM, 0, 0, 0, 0));
  PetscCallBLAS("BLASsyrk", BLASsyrk_("U", "T", &M, &n, &alpha, in->F, &n, &beta, in->gram, &ld));
  PetscCallBLAS("BLASgemv",
                BLASgemv_("T", &n, &M, &alpha_rhs, in->F, &n, in->targets, &one, &beta, in->gram + in->M, &ld));
  PetscCall(PetscLogFlops((PetscLogDouble)in->nlocal * in->M * (in->M + 1) + 2.0 * in->nlocal * in->M));
  PetscCall(PetscLogEventEnd(EVENT_GRAM, 0, 0, 0, 0));
  PetscCall(PetscLogEventBegin(EVENT_GRAM_SYMMETRIZE, 0, 0, 0, 0));
  GramSymmetrize(in->M, in->gram);
  PetscCall(PetscLogEventEnd(EVENT_GRAM_SYMMETRIZE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Sums the ranks' contributions into this rank's rows of K and of the right-hand side, and
   adds lambda I (and lambda 1 for the unbiased problem). */
static PetscErrorCode InnerAssembleDistributed(VarproInner in)
{
  const PetscInt ld = in->M + 1;
  PetscReal     *Kloc, *b;
  PetscInt       lda;

  PetscFunctionBeginUser;
  in->assemblies++;
  PetscCall(InnerLocalGram(in));
  PetscCall(PetscLogEventBegin(EVENT_GRAM_REDUCE, 0, 0, 0, 0));
  PetscCallMPI(MPI_Reduce_scatter(in->gram, in->gram_rows, in->counts, MPIU_REAL, MPIU_SUM, in->comm));
  PetscCall(PetscLogEventEnd(EVENT_GRAM_REDUCE, 0, 0, 0, 0));

  /* gram_rows holds rows of K contiguously; the dense local block is column-major */
  PetscCall(PetscLogEventBegin(EVENT_KERNEL_FILL, 0, 0, 0, 0));
  PetscCall(MatDenseGetLDA(in->K, &lda));
  PetscCall(MatDenseGetArrayWrite(in->K, &Kloc));
  PetscCall(VecGetArrayWrite(in->rhs, &b));
  for (PetscInt i = 0; i < in->mrows; i++) {
    const PetscReal *row = &in->gram_rows[i * ld];

    for (PetscInt j = 0; j < in->M; j++) Kloc[j * lda + i] = row[j];
    Kloc[(in->mstart + i) * lda + i] += in->lambda;
    b[i] = row[in->M] + in->lambda * in->u_prior;
  }
  PetscCall(VecRestoreArrayWrite(in->rhs, &b));
  PetscCall(MatDenseRestoreArrayWrite(in->K, &Kloc));
  PetscCall(PetscLogEventEnd(EVENT_KERNEL_FILL, 0, 0, 0, 0));
  if (in->kernel_type == KERNEL_MAT_SCALAPACK) PetscCall(MatConvert(in->K, MATSCALAPACK, MAT_REUSE_MATRIX, &in->Kop));
  if (in->kernel_type == KERNEL_MAT_MATFREE && !in->replicated)
    PetscCall(MatConvert(in->K, MATSCALAPACK, MAT_REUSE_MATRIX, &in->Kfactor));
  PetscFunctionReturn(0);
}

/* Matrix-free path: only the right-hand side F^T y / N (+ lambda 1), reduced onto its owners. */
static PetscErrorCode InnerRightHandSide(VarproInner in)
{
  PetscBLASInt M, n, one = 1;
  PetscReal    alpha = 1.0 / in->N, beta = 0.0, *b;

  PetscFunctionBeginUser;
  PetscCall(PetscBLASIntCast(in->M, &M));
  PetscCall(PetscBLASIntCast(in->nlocal, &n));
  PetscCallBLAS("BLASgemv", BLASgemv_("T", &n, &M, &alpha, in->F, &n, in->targets, &one, &beta, in->FtFx, &one));
  PetscCall(VecGetArrayWrite(in->rhs, &b));
  PetscCallMPI(MPI_Reduce_scatter(in->FtFx, b, in->vec_counts, MPIU_REAL, MPIU_SUM, in->comm));
  for (PetscInt i = 0; i < in->mrows; i++) b[i] += in->lambda * in->u_prior;
  PetscCall(VecRestoreArrayWrite(in->rhs, &b));
  PetscCall(PetscLogFlops(2.0 * in->nlocal * in->M));
  PetscFunctionReturn(0);
}

/* y = F^T F x / (N M) + lambda x without forming F^T F: two passes over this rank's rows of F
   and one reduction of M numbers. */
static PetscErrorCode KernelMultMatFree(Mat A, Vec x, Vec y)
{
  VarproInner      in;
  PetscBLASInt     M, n, one = 1;
  PetscReal        zero = 0.0, unit = 1.0, scale, *yl;
  const PetscReal *xa;

  PetscFunctionBeginUser;
  PetscCall(MatShellGetContext(A, &in));
  PetscCall(PetscBLASIntCast(in->M, &M));
  PetscCall(PetscBLASIntCast(in->nlocal, &n));
  scale = 1.0 / ((PetscReal)in->N * in->M);

  /* Every rank needs all of x */
  PetscCall(VecScatterBegin(in->to_all, x, in->x_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(in->to_all, x, in->x_all, INSERT_VALUES, SCATTER_FORWARD));

  /* F^T (F x) on this rank's points, then summed onto the owners of y */
  PetscCall(VecGetArrayRead(in->x_all, &xa));
  PetscCallBLAS("BLASgemv", BLASgemv_("N", &n, &M, &unit, in->F, &n, xa, &one, &zero, in->Fx, &one));
  PetscCallBLAS("BLASgemv", BLASgemv_("T", &n, &M, &scale, in->F, &n, in->Fx, &one, &zero, in->FtFx, &one));
  PetscCall(VecRestoreArrayRead(in->x_all, &xa));
  PetscCall(VecGetArrayWrite(y, &yl));
  PetscCallMPI(MPI_Reduce_scatter(in->FtFx, yl, in->vec_counts, MPIU_REAL, MPIU_SUM, in->comm));
  PetscCall(VecRestoreArrayWrite(y, &yl));
  PetscCall(VecAXPY(y, in->lambda, x));
  PetscCall(PetscLogFlops(4.0 * in->nlocal * in->M));
  PetscFunctionReturn(0);
}

/* The preconditioner of the matrix-free path: the Cholesky factor of K at the last refresh. */
static PetscErrorCode StaleFactorApply(PC pc, Vec x, Vec y)
{
  VarproInner in;

  PetscFunctionBeginUser;
  PetscCall(PCShellGetContext(pc, &in));
  if (!in->replicated) {
    PetscCall(KSPSolve(in->factor_ksp, x, y));
    PetscFunctionReturn(0);
  }

  /* Replicated: gather x, solve with the local factor, keep this rank's part */
  PetscCall(VecScatterBegin(in->to_all, x, in->x_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(in->to_all, x, in->x_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(KSPSolve(in->factor_ksp, in->x_all, in->y_all));
  PetscCall(VecScatterBegin(in->to_all, in->y_all, y, INSERT_VALUES, SCATTER_REVERSE_LOCAL));
  PetscCall(VecScatterEnd(in->to_all, in->y_all, y, INSERT_VALUES, SCATTER_REVERSE_LOCAL));
  PetscFunctionReturn(0);
}

/* Replicated factor: the whole kernel matrix on every rank (one allreduce of the Gram
   contributions), and this rank's rows of the right-hand side. */
static PetscErrorCode InnerAssembleReplicated(VarproInner in)
{
  const PetscInt ld = in->M + 1;
  PetscReal     *Kall, *b;
  PetscMPIInt    count;

  PetscFunctionBeginUser;
  in->assemblies++;
  PetscCall(InnerLocalGram(in));
  PetscCall(PetscMPIIntCast(in->M * ld, &count));
  PetscCall(PetscLogEventBegin(EVENT_GRAM_REDUCE, 0, 0, 0, 0));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, in->gram, count, MPIU_REAL, MPIU_SUM, in->comm));
  PetscCall(PetscLogEventEnd(EVENT_GRAM_REDUCE, 0, 0, 0, 0));

  /* Column j of gram is row (and column) j of K, then the right-hand side entry */
  PetscCall(PetscLogEventBegin(EVENT_KERNEL_FILL, 0, 0, 0, 0));
  PetscCall(MatDenseGetArrayWrite(in->Kfactor, &Kall));
  for (PetscInt j = 0; j < in->M; j++) {
    PetscCall(PetscArraycpy(&Kall[j * in->M], &in->gram[j * ld], in->M));
    Kall[j * in->M + j] += in->lambda;
  }
  PetscCall(MatDenseRestoreArrayWrite(in->Kfactor, &Kall));
  PetscCall(VecGetArrayWrite(in->rhs, &b));
  for (PetscInt i = 0; i < in->mrows; i++) b[i] = in->gram[(in->mstart + i) * ld + in->M] + in->lambda * in->u_prior;
  PetscCall(VecRestoreArrayWrite(in->rhs, &b));
  PetscCall(PetscLogEventEnd(EVENT_KERNEL_FILL, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Whether the matrix-free path refactors at this step: at the first step, when the last solve
   needed more than refresh_its iterations, or when the factor is refresh_age steps old. */
static PetscBool InnerFactorStale(VarproInner in, PetscInt step)
{
  if (in->last_refresh < 0) return PETSC_TRUE;
  return (PetscBool)(in->last_its > in->refresh_its || step - in->last_refresh >= in->refresh_age);
}

/* Matrix-free path: the factor is refreshed when stale, else only the right-hand side is built. */
static PetscErrorCode InnerAssembleMatFree(VarproInner in, PetscInt step)
{
  PetscFunctionBeginUser;
  if (!InnerFactorStale(in, step)) {
    PetscCall(InnerRightHandSide(in));
    PetscFunctionReturn(0);
  }
  if (in->replicated)
    PetscCall(InnerAssembleReplicated(in));
  else
    PetscCall(InnerAssembleDistributed(in));
  PetscCall(KSPSetOperators(in->factor_ksp, in->Kfactor, in->Kfactor));
  in->last_refresh = step;
  PetscFunctionReturn(0);
}

/* Solves for u, warm-started from the previous step when the KSP iterates, and copies it to
   every rank. */
PetscErrorCode VarproInnerSolve(VarproInner in, PetscInt step, PetscReal outer[])
{
  KSPConvergedReason reason;
  const PetscReal   *u;

  PetscFunctionBeginUser;
  if (in->kernel_type != KERNEL_MAT_MATFREE) PetscCall(KSPSetOperators(in->ksp, in->Kop, in->Kop));
  PetscCall(KSPSolve(in->ksp, in->rhs, in->u));
  PetscCall(KSPGetIterationNumber(in->ksp, &in->last_its));
  in->iterations += in->last_its;
  PetscCall(KSPGetConvergedReason(in->ksp, &reason));
  PetscCheck(reason != KSP_DIVERGED_NANORINF, in->comm, PETSC_ERR_FP,
             "step %" PetscInt_FMT ": the inner solve met NaN or Inf (features or outer weights diverged)", step);
  PetscCheck(reason >= 0, in->comm, PETSC_ERR_NOT_CONVERGED,
             "step %" PetscInt_FMT ": inner solve failed: %s (see -inner_ksp_converged_reason, -inner_ksp_rtol)", step,
             KSPConvergedReasons[reason]);
  PetscCall(VecScatterBegin(in->to_all, in->u, in->u_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(in->to_all, in->u, in->u_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecGetArrayRead(in->u_all, &u));
  PetscCall(PetscArraycpy(outer, u, in->M));
  PetscCall(VecRestoreArrayRead(in->u_all, &u));
  for (PetscInt j = 0; j < in->M; j++)
    PetscCheck(!PetscIsInfOrNanReal(outer[j]), in->comm, PETSC_ERR_FP,
               "step %" PetscInt_FMT ": outer weight u[%" PetscInt_FMT "] is %g", step, j, (double)outer[j]);
  PetscFunctionReturn(0);
}

/* The matrix-free operator, warm-started CG on it, and the stale factor as preconditioner, whose
   own KSP takes options under the prefix inner_factor_. */
static PetscErrorCode InnerSetUpMatFree(VarproInner in, PC pc)
{
  PC factor_pc;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(in->nlocal, &in->Fx));
  PetscCall(PetscMalloc1(in->M, &in->FtFx));
  PetscCall(VecDuplicate(in->u_all, &in->x_all));
  PetscCall(MatCreateShell(in->comm, in->mrows, in->mrows, in->M, in->M, in, &in->Kop));
  PetscCall(MatShellSetOperation(in->Kop, MATOP_MULT, (void (*)(void))KernelMultMatFree));
  PetscCall(MatSetOption(in->Kop, MAT_SPD, PETSC_TRUE));

  if (in->replicated) {
    PetscCall(MatCreateSeqDense(PETSC_COMM_SELF, in->M, in->M, NULL, &in->Kfactor));
    PetscCall(MatSetOption(in->Kfactor, MAT_SYMMETRIC, PETSC_TRUE));
    PetscCall(VecDuplicate(in->u_all, &in->y_all));
  } else
    PetscCall(MatConvert(in->K, MATSCALAPACK, MAT_INITIAL_MATRIX, &in->Kfactor));
  PetscCall(KSPCreate(in->replicated ? PETSC_COMM_SELF : in->comm, &in->factor_ksp));
  PetscCall(KSPSetOptionsPrefix(in->factor_ksp, "inner_factor_"));
  PetscCall(KSPSetType(in->factor_ksp, KSPPREONLY));
  PetscCall(KSPGetPC(in->factor_ksp, &factor_pc));
  PetscCall(PCSetType(factor_pc, PCCHOLESKY));
  PetscCall(KSPSetFromOptions(in->factor_ksp));

  PetscCall(KSPSetType(in->ksp, KSPCG));
  PetscCall(KSPSetTolerances(in->ksp, 1e-12, 1e-300, PETSC_DEFAULT, 10000));
  PetscCall(PCSetType(pc, PCSHELL));
  PetscCall(PCShellSetContext(pc, in));
  PetscCall(PCShellSetApply(pc, StaleFactorApply));
  PetscCall(PCShellSetName(pc, "Cholesky factor of an earlier step's kernel matrix"));
  PetscFunctionReturn(0);
}

/* Chooses the kernel matrix type and gives the KSP its defaults before the user's options:
   Cholesky through ScaLAPACK, or warm-started CG to a tight tolerance on the dense matrix. */
static PetscErrorCode InnerSetUpSolver(VarproInner in)
{
  PetscInt  type = KERNEL_MAT_SCALAPACK;
  PC        pc;
  KSPType   ksp_type;
  PetscBool preonly;

  PetscFunctionBeginUser;
  in->refresh_its  = 10;
  in->refresh_age  = 100;
  in->last_refresh = -1;
  PetscOptionsBegin(in->comm, "inner_", "Inner ridge solve", NULL);
  PetscCall(PetscOptionsEList("-kernel_mat_type", "How the kernel matrix is held for the inner KSP", NULL,
                              KernelMatTypes, 3, KernelMatTypes[type], &type, NULL));
  PetscCall(PetscOptionsInt("-refresh_its", "matfree: refactor after a solve needing more iterations", NULL,
                            in->refresh_its, &in->refresh_its, NULL));
  in->replicated = (PetscBool)(in->M <= 4096);
  PetscCall(PetscOptionsBool("-factor_replicated",
                             "matfree: hold the preconditioner's factor whole on every rank (default for M <= 4096)",
                             NULL, in->replicated, &in->replicated, NULL));
  PetscCall(PetscOptionsInt("-refresh_age", "matfree: refactor once the factor is this many steps old", NULL,
                            in->refresh_age, &in->refresh_age, NULL));
  PetscOptionsEnd();
  in->kernel_type = (KernelMatType)type;
  PetscCheck(in->kernel_type == KERNEL_MAT_DENSE || (in->kernel_type == KERNEL_MAT_MATFREE && in->replicated) ||
               KernelRowsFitScaLAPACK(in->M, in->size),
             in->comm, PETSC_ERR_USER_INPUT,
             "run '%s': student_width %" PetscInt_FMT " cannot be split in ScaLAPACK blocks over %d ranks; use fewer "
             "ranks, or -inner_kernel_mat_type dense",
             in->name, in->M, in->size);

  PetscCall(KSPCreate(in->comm, &in->ksp));
  PetscCall(KSPSetOptionsPrefix(in->ksp, "inner_"));
  PetscCall(KSPGetPC(in->ksp, &pc));
  PetscCall(KSPSetTolerances(in->ksp, 1e-13, 1e-300, PETSC_DEFAULT, 10000));
  switch (in->kernel_type) {
  case KERNEL_MAT_SCALAPACK:
    PetscCall(MatConvert(in->K, MATSCALAPACK, MAT_INITIAL_MATRIX, &in->Kop));
    PetscCall(KSPSetType(in->ksp, KSPPREONLY));
    PetscCall(PCSetType(pc, PCCHOLESKY));
    break;
  case KERNEL_MAT_DENSE:
    PetscCall(PetscObjectReference((PetscObject)in->K));
    in->Kop = in->K;
    PetscCall(KSPSetType(in->ksp, KSPCG));
    PetscCall(PCSetType(pc, PCJACOBI));
    break;
  case KERNEL_MAT_MATFREE: PetscCall(InnerSetUpMatFree(in, pc)); break;
  }
  PetscCall(KSPSetOperators(in->ksp, in->Kop, in->Kop));
  PetscCall(KSPSetFromOptions(in->ksp));

  /* Warm start from the previous u, except for a direct solve, which takes no guess */
  PetscCall(KSPGetType(in->ksp, &ksp_type));
  PetscCall(PetscStrcmp(ksp_type, KSPPREONLY, &preonly));
  if (!preonly) PetscCall(KSPSetInitialGuessNonzero(in->ksp, PETSC_TRUE));
  PetscFunctionReturn(0);
}

/* Row layout of K, the reduction counts, the dense matrix and its vectors. */
static PetscErrorCode InnerSetUpLayout(VarproInner in)
{
  const PetscInt M = in->M;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1((size_t)M * (M + 1), &in->gram));
  PetscCall(PetscMalloc1(in->size, &in->counts));
  PetscCall(PetscMalloc1(in->size, &in->vec_counts));
  for (PetscMPIInt r = 0; r < in->size; r++) {
    PetscInt start, rows;

    KernelRowPartition(M, in->size, r, &start, &rows);
    PetscCall(PetscMPIIntCast(rows * (M + 1), &in->counts[r]));
    PetscCall(PetscMPIIntCast(rows, &in->vec_counts[r]));
  }
  KernelRowPartition(M, in->size, in->rank, &in->mstart, &in->mrows);
  PetscCall(PetscMalloc1((size_t)in->mrows * (M + 1), &in->gram_rows));
  PetscCall(MatCreateDense(in->comm, in->mrows, in->mrows, M, M, NULL, &in->K));
  PetscCall(MatSetUp(in->K));
  PetscCall(MatAssemblyBegin(in->K, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(in->K, MAT_FINAL_ASSEMBLY));
  PetscCall(MatCreateVecs(in->K, &in->u, &in->rhs));
  PetscCall(VecScatterCreateToAll(in->u, &in->to_all, &in->u_all));
  PetscFunctionReturn(0);
}

/* Registers the events once per process. */
static PetscErrorCode InnerRegisterEvents(void)
{
  static PetscBool registered = PETSC_FALSE;
  PetscClassId     classid;

  PetscFunctionBeginUser;
  if (registered) PetscFunctionReturn(0);
  PetscCall(PetscClassIdRegister("VarPro inner solve", &classid));
  PetscCall(PetscLogEventRegister("VarproGram", classid, &EVENT_GRAM));
  PetscCall(PetscLogEventRegister("VarproGramSymm", classid, &EVENT_GRAM_SYMMETRIZE));
  PetscCall(PetscLogEventRegister("VarproGramReduce", classid, &EVENT_GRAM_REDUCE));
  PetscCall(PetscLogEventRegister("VarproKernelFill", classid, &EVENT_KERNEL_FILL));
  registered = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproInnerCreate(MPI_Comm comm, const char name[], PetscInt M, PetscInt N, PetscInt nlocal,
                                 PetscReal lambda, PetscReal u_prior, const PetscReal F[], const PetscReal targets[],
                                 VarproInner *inner)
{
  VarproInner in;

  PetscFunctionBeginUser;
  PetscCall(InnerRegisterEvents());
  PetscCall(PetscNew(&in));
  *inner   = in;
  in->comm = comm;
  PetscCallMPI(MPI_Comm_rank(comm, &in->rank));
  PetscCallMPI(MPI_Comm_size(comm, &in->size));
  PetscCall(PetscStrncpy(in->name, name, sizeof(in->name)));
  in->M       = M;
  in->N       = N;
  in->nlocal  = nlocal;
  in->lambda  = lambda;
  in->u_prior = u_prior;
  in->F       = F;
  in->targets = targets;
  PetscCall(InnerSetUpLayout(in));
  PetscCall(InnerSetUpSolver(in));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproInnerAssemble(VarproInner in, PetscInt step)
{
  PetscFunctionBeginUser;
  if (in->kernel_type == KERNEL_MAT_MATFREE)
    PetscCall(InnerAssembleMatFree(in, step));
  else
    PetscCall(InnerAssembleDistributed(in));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproInnerGetInfo(VarproInner in, const char **type, PetscInt64 *iterations, PetscInt64 *assemblies)
{
  PetscFunctionBeginUser;
  if (type) *type = KernelMatTypes[in->kernel_type];
  if (iterations) *iterations = in->iterations;
  if (assemblies) *assemblies = in->assemblies;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproInnerDestroy(VarproInner *inner)
{
  VarproInner in = *inner;

  PetscFunctionBeginUser;
  if (!in) PetscFunctionReturn(0);
  PetscCall(KSPDestroy(&in->ksp));
  PetscCall(KSPDestroy(&in->factor_ksp));
  PetscCall(MatDestroy(&in->Kop));
  PetscCall(MatDestroy(&in->Kfactor));
  PetscCall(MatDestroy(&in->K));
  PetscCall(VecDestroy(&in->rhs));
  PetscCall(VecDestroy(&in->u));
  PetscCall(VecDestroy(&in->u_all));
  PetscCall(VecDestroy(&in->x_all));
  PetscCall(VecDestroy(&in->y_all));
  PetscCall(VecScatterDestroy(&in->to_all));
  PetscCall(PetscFree(in->gram));
  PetscCall(PetscFree(in->gram_rows));
  PetscCall(PetscFree(in->counts));
  PetscCall(PetscFree(in->vec_counts));
  PetscCall(PetscFree(in->Fx));
  PetscCall(PetscFree(in->FtFx));
  PetscCall(PetscFree(in));
  *inner = NULL;
  PetscFunctionReturn(0);
}
