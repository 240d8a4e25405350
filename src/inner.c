/*
 * The inner (projection) problem of a VarPro step: the ridge system
 *   K u = b,  K = F^T F / (N M) + lambda I,  b = F^T y / N (+ lambda 1 when unbiased),
 * solved with a KSP whose options prefix is "inner_".
 *
 * F (N x M) is split by rows over the ranks and owned by the caller. K is held by rows:
 * rank r owns ceil(M/P) of them (the last rank fewer), each row block summed from every
 * rank's contribution F_r^T F_r by one reduction to its owner, so that no rank holds more
 * than O(M^2 / P) of it. Three ways to hold it (-inner_kernel_mat_type):
 *   scalapack  assembled every step, converted to MATSCALAPACK, Cholesky (the reference)
 *   dense      assembled every step as MATMPIDENSE, warm-started CG with Jacobi
 *   matfree    never assembled for the solve: CG on v -> F^T (F v) / (N M) + lambda v,
 *              warm-started from the extrapolated last solutions and preconditioned by the
 *              kernel matrix of an earlier step, inverted (replicated, M <= 4096) or factored
 *              (distributed), which is refreshed when the iterations it costs outweigh what a
 *              refresh costs
 */
#include "inner.h"
#include "kernels.h"

#include <petscblaslapack.h>
#include <petscksp.h>

#define EXTRAPOLATE_MAX 2

typedef enum { KERNEL_MAT_SCALAPACK, KERNEL_MAT_DENSE, KERNEL_MAT_MATFREE } KernelMatType;
static const char *const KernelMatTypes[] = {"scalapack", "dense", "matfree", "KernelMatType", "KERNEL_MAT_", NULL};

/* Events of the assembly, shown by -log_view. */
static PetscLogEvent EVENT_GRAM, EVENT_GRAM_REDUCE, EVENT_FACTOR, EVENT_NORMAL_PRODUCT;

struct _p_VarproInner {
  MPI_Comm         comm;
  PetscMPIInt      rank, size;
  char             name[VARPRO_NAME_MAX]; /* the run, for messages */
  PetscInt         M, N, nlocal;          /* student width, data points, this rank's points */
  PetscReal        lambda, u_prior;       /* ridge strength; 0 (biased) or 1 (unbiased) */
  const PetscReal *F;                     /* nlocal x M, row-major, the caller's */
  const PetscReal *Fty;                   /* M, the caller's: F^T y over this rank's points */
  PetscReal       *gram;                  /* replicated factor: M x (M + 1), column j = row j of F^T F / (N M)
                                             (upper triangle), then (F^T y / N)_j */
  PetscReal    *gram_block[2];            /* distributed: ceil(M/P) x M, a row block of F^T F / (N M) */
  PetscBool     kernel_full;              /* distributed: whole rows of K, not only its lower triangle */
  PetscMPIInt  *vec_counts;               /* size: entries of an M-vector each rank owns */
  PetscInt      mstart, mrows;            /* rows of K owned by this rank */
  KernelMatType kernel_type;
  Mat           K;      /* M x M, MATMPIDENSE, rows [mstart, mstart + mrows) here; NULL when not assembled */
  Mat           Kop;    /* the KSP's operator: K, its ScaLAPACK copy, or the matrix-free shell */
  Vec           rhs, u; /* distributed like the rows of K */
  Vec           u_all;  /* sequential copy of u on every rank */
  VecScatter    to_all;
  KSP           ksp;
  /* Matrix-free path only */
  PetscBool  replicated;   /* K at the last refresh factored whole on every rank (else by ScaLAPACK) */
  PetscReal *Kinv_rows;    /* replicated: mrows x M, column-major, this rank's rows of that K's inverse */
  Mat        Kfactor;      /* distributed: K at the last refresh, MATSCALAPACK */
  KSP        factor_ksp;   /* distributed: its Cholesky factor, applied as the preconditioner */
  Vec        x_all;        /* sequential copy of a Krylov vector on every rank */
  PetscReal *FtFx;         /* M: this rank's F^T F x, before the reduction */
  PetscReal  refresh_cost; /* what a refresh costs, in CG iterations */
  PetscInt   refresh_its;  /* refresh the factor after a solve needing more iterations */
  PetscInt   refresh_age;  /* ... or once it is this many steps old (0: no limit) */
  PetscInt   last_refresh; /* step of the last refresh, -1 before the first */
  PetscInt   cycle_its;    /* iterations of the solves since the last refresh */
  PetscInt   cycle_solves; /* and their number */
  PetscInt   last_its;     /* iterations of the last solve */
  PetscInt64 iterations;   /* over all solves */
  PetscInt64 assemblies;   /* kernel matrices assembled (and factored) */
  /* Iterative solves: the warm start */
  PetscBool warm;                        /* the KSP takes an initial guess */
  PetscInt  extrapolate;                 /* degree of the polynomial through the last solutions it follows */
  PetscInt  nhist;                       /* solutions held in u_hist */
  Vec       u_hist[EXTRAPOLATE_MAX + 1]; /* the last solutions, newest first, distributed like u */
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

/* Replicated factor: this rank's contribution F^T F / (N M) (dsyrk, upper triangle) and
   F^T y / N, the latter stored as the extra (M+1)-th entry of each column of gram. */
static PetscErrorCode InnerLocalGram(VarproInner in)
{
  PetscBLASInt M, n, ld;
  PetscReal    alpha = 1.0 / ((PetscReal)in->N * in->M), beta = 0.0;

  PetscFunctionBeginUser;
  PetscCall(PetscBLASIntCast(in->M, &M));
  PetscCall(PetscBLASIntCast(in->nlocal, &n));
  PetscCall(PetscBLASIntCast(in->M + 1, &ld));
  PetscCall(PetscLogEventBegin(EVENT_GRAM, 0, 0, 0, 0));
  PetscCallBLAS("BLASsyrk", BLASsyrk_("U", "N", &M, &n, &alpha, in->F, &M, &beta, in->gram, &ld));
  for (PetscInt j = 0; j < in->M; j++) in->gram[j * (in->M + 1) + in->M] = in->Fty[j] / in->N;
  PetscCall(PetscLogFlops((PetscLogDouble)in->nlocal * in->M * (in->M + 1)));
  PetscCall(PetscLogEventEnd(EVENT_GRAM, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* The right-hand side F^T y / N (+ lambda 1), reduced onto its owners. */
static PetscErrorCode InnerRightHandSide(VarproInner in)
{
  PetscReal *b;

  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < in->M; j++) in->FtFx[j] = in->Fty[j] / in->N;
  PetscCall(VecGetArrayWrite(in->rhs, &b));
  PetscCallMPI(MPI_Reduce_scatter(in->FtFx, b, in->vec_counts, MPIU_REAL, MPIU_SUM, in->comm));
  for (PetscInt i = 0; i < in->mrows; i++) b[i] += in->lambda * in->u_prior;
  PetscCall(VecRestoreArrayWrite(in->rhs, &b));
  PetscFunctionReturn(0);
}

/* Rows [s, s + m) of this rank's contribution F^T F / (N M), columns [0, ncols), into block
   (m x ncols, column-major): ncols is s + m for the lower triangle with the diagonal block, which
   is all a Cholesky factorization reads, or M for whole rows. Over all row blocks the lower
   triangle costs what one dsyrk does. */
static PetscErrorCode InnerGramRowBlock(VarproInner in, PetscInt s, PetscInt m, PetscInt ncols, PetscReal block[])
{
  const PetscReal *Fs = in->F + s; /* rows [s, s + m) of F^T, the M x nlocal column-major view of F */
  PetscBLASInt     bm, bs, br, n, ld;
  PetscReal        alpha = 1.0 / ((PetscReal)in->N * in->M), beta = 0.0;

  PetscFunctionBeginUser;
  PetscCall(PetscBLASIntCast(m, &bm));
  PetscCall(PetscBLASIntCast(s, &bs));
  PetscCall(PetscBLASIntCast(in->nlocal, &n));
  PetscCall(PetscBLASIntCast(in->M, &ld));
  PetscCall(PetscBLASIntCast(ncols - s - m, &br));
  PetscCall(PetscLogEventBegin(EVENT_GRAM, 0, 0, 0, 0));

  /* Left of the diagonal block, the diagonal block (lower, then mirrored), right of it if asked */
  if (bs) PetscCallBLAS("BLASgemm", BLASgemm_("N", "T", &bm, &bs, &n, &alpha, Fs, &ld, in->F, &ld, &beta, block, &bm));
  PetscCallBLAS("BLASsyrk", BLASsyrk_("L", "N", &bm, &n, &alpha, Fs, &ld, &beta, block + s * m, &bm));
  for (PetscInt j = 0; j < m; j++)
    for (PetscInt i = 0; i < j; i++) block[(s + j) * m + i] = block[(s + i) * m + j];
  if (br)
    PetscCallBLAS("BLASgemm", BLASgemm_("N", "T", &bm, &br, &n, &alpha, Fs, &ld, in->F + s + m, &ld, &beta,
                                        block + (s + m) * m, &bm));
  PetscCall(PetscLogFlops((PetscLogDouble)in->nlocal * m * (2.0 * s + m + 1 + 2.0 * (ncols - s - m))));
  PetscCall(PetscLogEventEnd(EVENT_GRAM, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Sums the ranks' contributions into this rank's rows of K, one row block at a time (so that
   no rank holds more than two blocks of M^2 / P numbers besides K), the reduction of each block
   overlapping the product of the next; adds lambda I, and builds the right-hand side. */
static PetscErrorCode InnerAssembleDistributed(VarproInner in)
{
  MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  PetscReal  *Kloc;
  PetscInt    lda;

  PetscFunctionBeginUser;
  in->assemblies++;
  PetscCall(MatDenseGetLDA(in->K, &lda));
  PetscCheck(lda == in->mrows || !in->mrows, PETSC_COMM_SELF, PETSC_ERR_PLIB,
             "kernel matrix: leading dimension %" PetscInt_FMT, lda);
  PetscCall(MatDenseGetArray(in->K, &Kloc));

  /* Block q goes to rank q: its own block is computed in place in K, the others in a buffer */
  for (PetscMPIInt q = 0; q < in->size; q++) {
    PetscInt    s, m, ncols;
    PetscReal  *block;
    PetscMPIInt count;

    KernelRowPartition(in->M, in->size, q, &s, &m);
    if (!m) continue;
    ncols = in->kernel_full ? in->M : s + m;
    block = q == in->rank ? Kloc : in->gram_block[q % 2];
    PetscCallMPI(MPI_Wait(&req[q % 2], MPI_STATUS_IGNORE));
    PetscCall(InnerGramRowBlock(in, s, m, ncols, block));
    PetscCall(PetscMPIIntCast(m * ncols, &count));
    PetscCall(PetscLogEventBegin(EVENT_GRAM_REDUCE, 0, 0, 0, 0));
    PetscCallMPI(MPI_Ireduce(q == in->rank ? MPI_IN_PLACE : block, q == in->rank ? Kloc : NULL, count, MPIU_REAL,
                             MPIU_SUM, q, in->comm, &req[q % 2]));
    PetscCall(PetscLogEventEnd(EVENT_GRAM_REDUCE, 0, 0, 0, 0));
  }
  PetscCall(PetscLogEventBegin(EVENT_GRAM_REDUCE, 0, 0, 0, 0));
  PetscCallMPI(MPI_Waitall(2, req, MPI_STATUSES_IGNORE));
  PetscCall(PetscLogEventEnd(EVENT_GRAM_REDUCE, 0, 0, 0, 0));
  for (PetscInt i = 0; i < in->mrows; i++) Kloc[(in->mstart + i) * lda + i] += in->lambda;
  PetscCall(MatDenseRestoreArray(in->K, &Kloc));
  PetscCall(InnerRightHandSide(in));
  if (in->kernel_type == KERNEL_MAT_SCALAPACK) PetscCall(MatConvert(in->K, MATSCALAPACK, MAT_REUSE_MATRIX, &in->Kop));
  if (in->kernel_type == KERNEL_MAT_MATFREE && !in->replicated)
    PetscCall(MatConvert(in->K, MATSCALAPACK, MAT_REUSE_MATRIX, &in->Kfactor));
  PetscFunctionReturn(0);
}

/* y = F^T F x / (N M) + lambda x without forming F^T F: one pass over this rank's rows of F and
   one reduction of M numbers. */
static PetscErrorCode KernelMultMatFree(Mat A, Vec x, Vec y)
{
  VarproInner      in;
  PetscReal        scale, *yl;
  const PetscReal *xa;

  PetscFunctionBeginUser;
  PetscCall(MatShellGetContext(A, &in));
  scale = 1.0 / ((PetscReal)in->N * in->M);

  /* Every rank needs all of x */
  PetscCall(VecScatterBegin(in->to_all, x, in->x_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(in->to_all, x, in->x_all, INSERT_VALUES, SCATTER_FORWARD));

  /* F^T (F x) on this rank's points, in one pass over its rows of F, then summed onto the owners of y */
  PetscCall(PetscLogEventBegin(EVENT_NORMAL_PRODUCT, 0, 0, 0, 0));
  PetscCall(VecGetArrayRead(in->x_all, &xa));
  VarproKernelNormalProduct(in->nlocal, in->M, in->F, xa, in->FtFx);
  PetscCall(VecRestoreArrayRead(in->x_all, &xa));
  for (PetscInt j = 0; j < in->M; j++) in->FtFx[j] *= scale;
  PetscCall(PetscLogFlops(4.0 * in->nlocal * in->M));
  PetscCall(PetscLogEventEnd(EVENT_NORMAL_PRODUCT, 0, 0, 0, 0));
  PetscCall(VecGetArrayWrite(y, &yl));
  PetscCallMPI(MPI_Reduce_scatter(in->FtFx, yl, in->vec_counts, MPIU_REAL, MPIU_SUM, in->comm));
  PetscCall(VecRestoreArrayWrite(y, &yl));
  PetscCall(VecAXPY(y, in->lambda, x));
  PetscFunctionReturn(0);
}

/* The preconditioner of the matrix-free path: the kernel matrix of the last refresh, inverted. */
static PetscErrorCode StaleFactorApply(PC pc, Vec x, Vec y)
{
  VarproInner      in;
  PetscBLASInt     M, m, one = 1;
  PetscReal        unit = 1.0, zero = 0.0, *yl;
  const PetscReal *xa;

  PetscFunctionBeginUser;
  PetscCall(PCShellGetContext(pc, &in));
  if (!in->replicated) {
    PetscCall(KSPSolve(in->factor_ksp, x, y));
    PetscFunctionReturn(0);
  }

  /* Replicated: gather x, then this rank's rows of the inverse times it */
  PetscCall(PetscBLASIntCast(in->M, &M));
  PetscCall(PetscBLASIntCast(in->mrows, &m));
  PetscCall(VecScatterBegin(in->to_all, x, in->x_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(in->to_all, x, in->x_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecGetArrayRead(in->x_all, &xa));
  PetscCall(VecGetArrayWrite(y, &yl));
  if (m) PetscCallBLAS("BLASgemv", BLASgemv_("N", &m, &M, &unit, in->Kinv_rows, &m, xa, &one, &zero, yl, &one));
  PetscCall(VecRestoreArrayWrite(y, &yl));
  PetscCall(VecRestoreArrayRead(in->x_all, &xa));
  PetscCall(PetscLogFlops(2.0 * in->mrows * in->M));
  PetscFunctionReturn(0);
}

/* Replicated factor: the whole kernel matrix on every rank (one allreduce of the Gram
   contributions), inverted in place through its Cholesky factor, of which this rank keeps its
   rows; and this rank's rows of the right-hand side. */
static PetscErrorCode InnerAssembleReplicated(VarproInner in, PetscInt step)
{
  const PetscInt ld = in->M + 1;
  PetscReal     *b;
  PetscMPIInt    count;
  PetscBLASInt   M, lda, info;

  PetscFunctionBeginUser;
  in->assemblies++;
  PetscCall(InnerLocalGram(in));
  PetscCall(PetscMPIIntCast(in->M * ld, &count));
  PetscCall(PetscLogEventBegin(EVENT_GRAM_REDUCE, 0, 0, 0, 0));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, in->gram, count, MPIU_REAL, MPIU_SUM, in->comm));
  PetscCall(PetscLogEventEnd(EVENT_GRAM_REDUCE, 0, 0, 0, 0));

  /* Column j of gram is row (and column) j of K, then the right-hand side entry */
  PetscCall(VecGetArrayWrite(in->rhs, &b));
  for (PetscInt i = 0; i < in->mrows; i++) b[i] = in->gram[(in->mstart + i) * ld + in->M] + in->lambda * in->u_prior;
  PetscCall(VecRestoreArrayWrite(in->rhs, &b));

  /* K^{-1} from K = U^T U in the leading M x M block (upper triangle), then this rank's rows */
  PetscCall(PetscLogEventBegin(EVENT_FACTOR, 0, 0, 0, 0));
  for (PetscInt j = 0; j < in->M; j++) in->gram[j * ld + j] += in->lambda;
  PetscCall(PetscBLASIntCast(in->M, &M));
  PetscCall(PetscBLASIntCast(ld, &lda));
  PetscCallBLAS("LAPACKpotrf", LAPACKpotrf_("U", &M, in->gram, &lda, &info));
  PetscCheck(info == 0, in->comm, PETSC_ERR_NOT_CONVERGED,
             "%s: step %" PetscInt_FMT
             ": the kernel matrix is not positive definite (Cholesky pivot %d); lambda = %g is "
             "too small for double precision",
             in->name, step, (int)info, (double)in->lambda);
  PetscCallBLAS("LAPACKpotri", LAPACKpotri_("U", &M, in->gram, &lda, &info));
  PetscCheck(info == 0, in->comm, PETSC_ERR_NOT_CONVERGED,
             "%s: step %" PetscInt_FMT ": the kernel matrix is singular (inverse pivot %d)", in->name, step, (int)info);
  for (PetscInt j = 0; j < in->M; j++)
    for (PetscInt i = 0; i < in->mrows; i++) {
      PetscInt r = in->mstart + i;

      in->Kinv_rows[j * in->mrows + i] = r <= j ? in->gram[j * ld + r] : in->gram[r * ld + j];
    }
  PetscCall(PetscLogFlops((PetscLogDouble)in->M * in->M * in->M));
  PetscCall(PetscLogEventEnd(EVENT_FACTOR, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Whether the matrix-free path refactors at this step: at the first step, when the last solve
   needed more than refresh_its iterations, when the factor is refresh_age steps old, or when
   the last solve's iterations exceed the mean cost of a solve since the last refresh, the
   refresh counted at refresh_cost iterations. The last rule keeps the factor while the
   iterations it saves pay for the refresh (the mean over the cycle still falls), and depends on
   iteration counts only, so that a run is reproducible. */
static PetscBool InnerFactorStale(VarproInner in, PetscInt step)
{
  if (in->last_refresh < 0) return PETSC_TRUE;
  if (in->last_its > in->refresh_its || (in->refresh_age > 0 && step - in->last_refresh >= in->refresh_age))
    return PETSC_TRUE;
  return (PetscBool)(in->last_its * in->cycle_solves > in->refresh_cost + in->cycle_its);
}

/* Matrix-free path: the preconditioner from the current F, as a refresh at step builds it. */
static PetscErrorCode InnerRefactor(VarproInner in, PetscInt step)
{
  PetscFunctionBeginUser;
  if (in->replicated)
    PetscCall(InnerAssembleReplicated(in, step));
  else {
    PetscCall(InnerAssembleDistributed(in));
    PetscCall(KSPSetOperators(in->factor_ksp, in->Kfactor, in->Kfactor));
  }
  PetscFunctionReturn(0);
}

/* Matrix-free path: the factor is refreshed when stale, else only the right-hand side is built. */
static PetscErrorCode InnerAssembleMatFree(VarproInner in, PetscInt step)
{
  PetscFunctionBeginUser;
  if (!InnerFactorStale(in, step)) {
    PetscCall(InnerRightHandSide(in));
    PetscFunctionReturn(0);
  }
  PetscCall(InnerRefactor(in, step));
  in->last_refresh = step;
  in->cycle_its    = 0;
  in->cycle_solves = 0;
  PetscFunctionReturn(0);
}

/* The initial guess of an iterative solve: the polynomial of degree extrapolate (at most) through
   the last solutions, one step further: u_0, 2 u_0 - u_1 or 3 u_0 - 3 u_1 + u_2, newest first.
   The solution of a step changes smoothly with the features, so this starts closer than u_0. */
static PetscErrorCode InnerInitialGuess(VarproInner in)
{
  static const PetscScalar coefficients[EXTRAPOLATE_MAX + 1][EXTRAPOLATE_MAX + 1] = {{1, 0, 0}, {2, -1, 0}, {3, -3, 1}};
  PetscInt                 degree = PetscMin(in->extrapolate, in->nhist - 1);

  PetscFunctionBeginUser;
  if (!in->nhist) PetscFunctionReturn(0);
  PetscCall(VecSet(in->u, 0.0));
  PetscCall(VecMAXPY(in->u, degree + 1, coefficients[degree], in->u_hist));
  PetscFunctionReturn(0);
}

/* Keeps the solution just found in the history, dropping the oldest. */
static PetscErrorCode InnerPushSolution(VarproInner in)
{
  Vec oldest = in->u_hist[in->extrapolate];

  PetscFunctionBeginUser;
  for (PetscInt k = in->extrapolate; k > 0; k--) in->u_hist[k] = in->u_hist[k - 1];
  in->u_hist[0] = oldest;
  PetscCall(VecCopy(in->u, in->u_hist[0]));
  in->nhist = PetscMin(in->nhist + 1, in->extrapolate + 1);
  PetscFunctionReturn(0);
}

/* Solves for u, warm-started from the previous steps when the KSP iterates, and copies it to
   every rank. */
PetscErrorCode VarproInnerSolve(VarproInner in, PetscInt step, PetscReal outer[])
{
  KSPConvergedReason reason;
  const PetscReal   *u;

  PetscFunctionBeginUser;
  if (in->kernel_type != KERNEL_MAT_MATFREE) PetscCall(KSPSetOperators(in->ksp, in->Kop, in->Kop));
  if (in->warm) PetscCall(InnerInitialGuess(in));
  PetscCall(KSPSolve(in->ksp, in->rhs, in->u));
  if (in->warm) PetscCall(InnerPushSolution(in));
  PetscCall(KSPGetIterationNumber(in->ksp, &in->last_its));
  in->iterations += in->last_its;
  in->cycle_its += in->last_its;
  in->cycle_solves++;
  PetscCall(KSPGetConvergedReason(in->ksp, &reason));
  PetscCheck(reason != KSP_DIVERGED_NANORINF, in->comm, PETSC_ERR_FP,
             "%s: step %" PetscInt_FMT ": the inner solve met NaN or Inf (features or outer weights diverged)",
             in->name, step);
  PetscCheck(reason >= 0, in->comm, PETSC_ERR_NOT_CONVERGED,
             "%s: step %" PetscInt_FMT ": inner solve failed: %s (see -inner_ksp_converged_reason, -inner_ksp_rtol)",
             in->name, step, KSPConvergedReasons[reason]);
  PetscCall(VecScatterBegin(in->to_all, in->u, in->u_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecScatterEnd(in->to_all, in->u, in->u_all, INSERT_VALUES, SCATTER_FORWARD));
  PetscCall(VecGetArrayRead(in->u_all, &u));
  PetscCall(PetscArraycpy(outer, u, in->M));
  PetscCall(VecRestoreArrayRead(in->u_all, &u));
  for (PetscInt j = 0; j < in->M; j++)
    PetscCheck(!PetscIsInfOrNanReal(outer[j]), in->comm, PETSC_ERR_FP,
               "%s: step %" PetscInt_FMT ": outer weight u[%" PetscInt_FMT "] is %s", in->name, step, j,
               VarproNonFiniteName(outer[j]));
  PetscFunctionReturn(0);
}

/* The matrix-free operator, warm-started CG on it, and the stale factor as preconditioner, whose
   own KSP takes options under the prefix inner_factor_. */
static PetscErrorCode InnerSetUpMatFree(VarproInner in, PC pc)
{
  PC factor_pc;

  PetscFunctionBeginUser;
  PetscCall(VecDuplicate(in->u_all, &in->x_all));
  PetscCall(MatCreateShell(in->comm, in->mrows, in->mrows, in->M, in->M, in, &in->Kop));
  PetscCall(MatShellSetOperation(in->Kop, MATOP_MULT, (void (*)(void))KernelMultMatFree));
  PetscCall(MatSetOption(in->Kop, MAT_SPD, PETSC_TRUE));

  /* The preconditioner: a replicated inverse, or the distributed factor under its own KSP */
  if (in->replicated) {
    PetscCall(PetscMalloc1((size_t)in->mrows * in->M, &in->Kinv_rows));
  } else {
    PetscCall(MatConvert(in->K, MATSCALAPACK, MAT_INITIAL_MATRIX, &in->Kfactor));
    PetscCall(KSPCreate(in->comm, &in->factor_ksp));
    PetscCall(KSPSetOptionsPrefix(in->factor_ksp, "inner_factor_"));
    PetscCall(KSPSetType(in->factor_ksp, KSPPREONLY));
    PetscCall(KSPGetPC(in->factor_ksp, &factor_pc));
    PetscCall(PCSetType(factor_pc, PCCHOLESKY));
    PetscCall(KSPSetFromOptions(in->factor_ksp));
  }

  PetscCall(KSPSetType(in->ksp, KSPCG));
  PetscCall(KSPSetTolerances(in->ksp, 1e-12, 1e-300, PETSC_DEFAULT, 10000));
  PetscCall(PCSetType(pc, PCSHELL));
  PetscCall(PCShellSetContext(pc, in));
  PetscCall(PCShellSetApply(pc, StaleFactorApply));
  PetscCall(PCShellSetName(pc, "Cholesky factor of an earlier step's kernel matrix"));
  PetscFunctionReturn(0);
}

/* The buffers of the assembly, and how much of K it forms: a replicated factor needs the whole
   Gram matrix on every rank; a distributed K is formed by row blocks, only its lower triangle
   when all that uses it is a Cholesky factorization (which reads no more), else whole rows. */
static PetscErrorCode InnerSetUpAssembly(VarproInner in)
{
  KSP       ksp = in->kernel_type == KERNEL_MAT_MATFREE ? in->factor_ksp : in->ksp;
  PC        pc;
  PetscBool preonly = PETSC_FALSE, cholesky = PETSC_FALSE;
  PetscInt  block = (in->M + in->size - 1) / in->size;

  PetscFunctionBeginUser;
  if (in->kernel_type == KERNEL_MAT_MATFREE && in->replicated) {
    PetscCall(PetscMalloc1((size_t)in->M * (in->M + 1), &in->gram));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscObjectTypeCompare((PetscObject)ksp, KSPPREONLY, &preonly));
  PetscCall(KSPGetPC(ksp, &pc));
  PetscCall(PetscObjectTypeCompare((PetscObject)pc, PCCHOLESKY, &cholesky));
  in->kernel_full = (PetscBool) !(preonly && cholesky);
  if (in->size > 1)
    PetscCall(PetscMalloc2((size_t)block * in->M, &in->gram_block[0], (size_t)block * in->M, &in->gram_block[1]));
  PetscFunctionReturn(0);
}

/* The distributed kernel matrix, zero (the upper triangle of a lower-only K stays so). */
static PetscErrorCode InnerCreateKernelMatrix(VarproInner in)
{
  PetscFunctionBeginUser;
  PetscCall(MatCreateDense(in->comm, in->mrows, in->mrows, in->M, in->M, NULL, &in->K));
  PetscCall(MatSetUp(in->K));
  PetscCall(MatAssemblyBegin(in->K, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(in->K, MAT_FINAL_ASSEMBLY));
  PetscCall(MatZeroEntries(in->K));
  PetscFunctionReturn(0);
}

/* The default cost of a rebuild of the matrix-free preconditioner in CG iterations, from a model
   of a core of this project's development machine (see docs/performance.md): a rebuild is a
   dsyrk of this rank's rows of F (n M^2 flops at about 40 GFlop/s) and the Cholesky inverse of the
   whole matrix (M^3 flops at about 30 GFlop/s, on every rank; a third of them over P ranks when
   distributed); an iteration reads this rank's rows of F and of the inverse (8 (n M + M^2 / P)
   bytes at about 15 GB/s). It depends on N, M and P only, so a run stays reproducible. */
static PetscReal InnerRefreshCostModel(VarproInner in, PetscBool replicated)
{
  const PetscReal gram_rate = 40e9, inverse_rate = 30e9, bandwidth = 15e9;
  const PetscReal n = PetscCeilReal((PetscReal)in->N / in->size), M = (PetscReal)in->M;
  PetscReal       rebuild, iteration;

  rebuild   = n * M * M / gram_rate + (replicated ? 1.0 : 1.0 / (3.0 * in->size)) * M * M * M / inverse_rate;
  iteration = 8.0 * (n * M + M * M / in->size) / bandwidth;
  return PetscMax(rebuild / iteration, 4.0);
}

/* Chooses the kernel matrix type and gives the KSP its defaults before the user's options:
   Cholesky through ScaLAPACK, or warm-started CG to a tight tolerance on the dense matrix. */
static PetscErrorCode InnerSetUpSolver(VarproInner in)
{
  PetscInt  type = KERNEL_MAT_MATFREE;
  PC        pc;
  KSPType   ksp_type;
  PetscBool preonly;

  PetscFunctionBeginUser;
  in->extrapolate  = EXTRAPOLATE_MAX;
  in->refresh_its  = 50;
  in->refresh_age  = 0;
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
  in->refresh_cost = InnerRefreshCostModel(in, in->replicated);
  PetscCall(PetscOptionsRangeInt(
    "-extrapolate", "iterative solves: start from the polynomial of this degree through the last solutions", NULL,
    in->extrapolate, &in->extrapolate, NULL, 0, EXTRAPOLATE_MAX));
  PetscCall(PetscOptionsInt("-refresh_age", "matfree: refactor once the factor is this many steps old (0: no limit)",
                            NULL, in->refresh_age, &in->refresh_age, NULL));
  PetscCall(PetscOptionsReal(
    "-refresh_cost", "matfree: the cost of a refresh in CG iterations (default: a model, see docs/performance.md)",
    NULL, in->refresh_cost, &in->refresh_cost, NULL));
  PetscOptionsEnd();
  PetscCheck(in->refresh_its >= 0 && in->refresh_age >= 0 && in->refresh_cost > 0 && in->refresh_cost < PETSC_INFINITY,
             in->comm, PETSC_ERR_USER_INPUT,
             "options -inner_refresh_its %" PetscInt_FMT ", -inner_refresh_age %" PetscInt_FMT
             ", -inner_refresh_cost %g: the first two must be >= 0, the last finite and > 0",
             in->refresh_its, in->refresh_age, (double)in->refresh_cost);
  in->kernel_type = (KernelMatType)type;
  PetscCheck(in->kernel_type == KERNEL_MAT_DENSE || (in->kernel_type == KERNEL_MAT_MATFREE && in->replicated) ||
               KernelRowsFitScaLAPACK(in->M, in->size),
             in->comm, PETSC_ERR_USER_INPUT,
             "run '%s': student_width %" PetscInt_FMT " cannot be split in ScaLAPACK blocks over %d ranks; use fewer "
             "ranks, or -inner_kernel_mat_type dense",
             in->name, in->M, in->size);

  /* The assembled kernel matrix, unless the replicated matrix-free path needs none */
  if (in->kernel_type != KERNEL_MAT_MATFREE || !in->replicated) PetscCall(InnerCreateKernelMatrix(in));

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
  if (in->kernel_type == KERNEL_MAT_MATFREE) {
    PCType    pc_type;
    PetscBool shell, none;

    /* The matrix-free operator has no entries for a preconditioner built from them */
    PetscCall(PCGetType(pc, &pc_type));
    PetscCall(PetscStrcmp(pc_type, PCSHELL, &shell));
    PetscCall(PetscStrcmp(pc_type, PCNONE, &none));
    PetscCheck(shell || none, in->comm, PETSC_ERR_USER_INPUT,
               "option -inner_pc_type %s: the matfree inner solve has no matrix entries to build it from; use its own "
               "preconditioner (the default), none, or -inner_kernel_mat_type dense",
               pc_type);
  }

  /* Warm start from the previous u, except for a direct solve, which takes no guess */
  PetscCall(KSPGetType(in->ksp, &ksp_type));
  PetscCall(PetscStrcmp(ksp_type, KSPPREONLY, &preonly));
  in->warm = (PetscBool)!preonly;
  if (in->warm) PetscCall(KSPSetInitialGuessNonzero(in->ksp, PETSC_TRUE));
  for (PetscInt k = 0; in->warm && k <= in->extrapolate; k++) PetscCall(VecDuplicate(in->u, &in->u_hist[k]));
  PetscCall(InnerSetUpAssembly(in));
  PetscFunctionReturn(0);
}

/* Row layout of K and the vectors distributed like its rows. */
static PetscErrorCode InnerSetUpLayout(VarproInner in)
{
  const PetscInt M = in->M;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(in->size, &in->vec_counts));
  PetscCall(PetscMalloc1(M, &in->FtFx));
  for (PetscMPIInt r = 0; r < in->size; r++) {
    PetscInt start, rows;

    KernelRowPartition(M, in->size, r, &start, &rows);
    PetscCall(PetscMPIIntCast(rows, &in->vec_counts[r]));
  }
  KernelRowPartition(M, in->size, in->rank, &in->mstart, &in->mrows);
  PetscCall(VecCreateMPI(in->comm, in->mrows, M, &in->u));
  PetscCall(VecDuplicate(in->u, &in->rhs));
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
  PetscCall(PetscLogEventRegister("VarproGramReduce", classid, &EVENT_GRAM_REDUCE));
  PetscCall(PetscLogEventRegister("VarproKernelInv", classid, &EVENT_FACTOR));
  PetscCall(PetscLogEventRegister("VarproFtFx", classid, &EVENT_NORMAL_PRODUCT));
  registered = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproInnerCreate(MPI_Comm comm, const char name[], PetscInt M, PetscInt N, PetscInt nlocal,
                                 PetscReal lambda, PetscReal u_prior, const PetscReal F[], const PetscReal Fty[],
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
  in->Fty     = Fty;
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

/* The state, as numbers: the counters of the refresh rule and of the run, then the history of
   solutions (EXTRAPOLATE_MAX + 1 vectors of M, the unused ones zero). */
enum {
  STATE_LAST_REFRESH,
  STATE_CYCLE_ITS,
  STATE_CYCLE_SOLVES,
  STATE_LAST_ITS,
  STATE_NHIST,
  STATE_ITERATIONS,
  STATE_ASSEMBLIES,
  STATE_HEAD
};

PetscInt VarproInnerStateSize(VarproInner in)
{
  return STATE_HEAD + (EXTRAPOLATE_MAX + 1) * in->M;
}

PetscBool VarproInnerCarriesState(VarproInner in)
{
  return in->warm;
}

PetscInt VarproInnerLastRefresh(VarproInner in)
{
  return in->kernel_type == KERNEL_MAT_MATFREE ? in->last_refresh : -1;
}

PetscErrorCode VarproInnerGetState(VarproInner in, PetscReal state[])
{
  const PetscReal *u;

  PetscFunctionBeginUser;
  PetscCall(PetscArrayzero(state, VarproInnerStateSize(in)));
  state[STATE_LAST_REFRESH] = (PetscReal)in->last_refresh;
  state[STATE_CYCLE_ITS]    = (PetscReal)in->cycle_its;
  state[STATE_CYCLE_SOLVES] = (PetscReal)in->cycle_solves;
  state[STATE_LAST_ITS]     = (PetscReal)in->last_its;
  state[STATE_NHIST]        = (PetscReal)in->nhist;
  state[STATE_ITERATIONS]   = (PetscReal)in->iterations;
  state[STATE_ASSEMBLIES]   = (PetscReal)in->assemblies;
  for (PetscInt k = 0; k < in->nhist; k++) {
    PetscCall(VecScatterBegin(in->to_all, in->u_hist[k], in->u_all, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(VecScatterEnd(in->to_all, in->u_hist[k], in->u_all, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(VecGetArrayRead(in->u_all, &u));
    PetscCall(PetscArraycpy(&state[STATE_HEAD + k * in->M], u, in->M));
    PetscCall(VecRestoreArrayRead(in->u_all, &u));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode VarproInnerSetState(VarproInner in, PetscInt step, const PetscReal state[])
{
  PetscReal *u;
  PetscBool  ok = PETSC_TRUE;

  PetscFunctionBeginUser;
  /* Counters that a run can have produced before step, or the checkpoint is damaged */
  for (int k = 0; k < STATE_HEAD; k++) ok = (PetscBool)(ok && state[k] == floor(state[k]) && state[k] >= (k ? 0 : -1));
  ok = (PetscBool)(ok && state[STATE_LAST_REFRESH] < step && state[STATE_CYCLE_SOLVES] <= step);
  PetscCheck(ok, in->comm, PETSC_ERR_USER_INPUT,
             "%s: the checkpoint of step %" PetscInt_FMT
             " holds a damaged inner-solve state; remove its .partial result file or use --force",
             in->name, step);
  in->last_refresh = (PetscInt)state[STATE_LAST_REFRESH];
  in->cycle_its    = (PetscInt)state[STATE_CYCLE_ITS];
  in->cycle_solves = (PetscInt)state[STATE_CYCLE_SOLVES];
  in->last_its     = (PetscInt)state[STATE_LAST_ITS];
  in->iterations   = (PetscInt64)state[STATE_ITERATIONS];
  in->assemblies   = (PetscInt64)state[STATE_ASSEMBLIES];
  in->nhist        = in->warm ? PetscMin((PetscInt)state[STATE_NHIST], in->extrapolate + 1) : 0;
  for (PetscInt k = 0; k < in->nhist; k++) {
    PetscCall(VecGetArrayWrite(in->u_hist[k], &u));
    PetscCall(PetscArraycpy(u, &state[STATE_HEAD + k * in->M + in->mstart], in->mrows));
    PetscCall(VecRestoreArrayWrite(in->u_hist[k], &u));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode VarproInnerRefactor(VarproInner in, PetscInt step)
{
  PetscFunctionBeginUser;
  if (in->kernel_type == KERNEL_MAT_MATFREE) PetscCall(InnerRefactor(in, step));
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
  for (PetscInt k = 0; k <= EXTRAPOLATE_MAX; k++) PetscCall(VecDestroy(&in->u_hist[k]));
  PetscCall(VecScatterDestroy(&in->to_all));
  PetscCall(PetscFree(in->gram));
  PetscCall(PetscFree2(in->gram_block[0], in->gram_block[1]));
  PetscCall(PetscFree(in->vec_counts));
  PetscCall(PetscFree(in->FtFx));
  PetscCall(PetscFree(in->Kinv_rows));
  PetscCall(PetscFree(in));
  *inner = NULL;
  PetscFunctionReturn(0);
}
