/* The inner (projection) problem of a VarPro step; see inner.c. */
#pragma once

#include "varpro_impl.h"

typedef struct _p_VarproInner *VarproInner;

/* Sets up the kernel matrix, its vectors and the KSP "inner_" (reading its options) for a rank
   owning nlocal of N data points. F (nlocal x M, row-major) and Fty (M: F^T y summed over
   this rank's points) stay the caller's: every call reads their current values. name is the run's, for messages.
   Collective. */
PetscErrorCode VarproInnerCreate(MPI_Comm comm, const char name[], PetscInt M, PetscInt N, PetscInt nlocal,
                                 PetscReal lambda, PetscReal u_prior, const PetscReal F[], const PetscReal Fty[],
                                 VarproInner *inner);

/* Builds what the solve at this step needs from the current F: the kernel matrix and right-hand
   side, or (matrix-free) the right-hand side and, when stale, a new factor. Collective. */
PetscErrorCode VarproInnerAssemble(VarproInner inner, PetscInt step);

/* Solves for the outer weights, warm-started from the previous ones when the KSP iterates, and
   returns them whole on every rank (outer: M). NaN or Inf raises PETSC_ERR_FP naming the step.
   Collective. */
PetscErrorCode VarproInnerSolve(VarproInner inner, PetscInt step, PetscReal outer[]);

/* An iterative solve carries state from step to step (its warm start, and on the matrix-free path
   the age of its preconditioner); a run that continues from a checkpoint follows the same
   trajectory bit for bit only with the same state. VarproInnerCarriesState says whether there is
   any (not for a direct solve). VarproInnerGetState writes it, VarproInnerStateSize numbers, on
   every rank; VarproInnerSetState restores it as it was before step, and raises
   PETSC_ERR_USER_INPUT when it cannot be (collective both). The matrix-free preconditioner
   is a function of the features at its last refresh (VarproInnerLastRefresh, -1 for none or for
   another path): to restore it, compute F at those features and call VarproInnerRefactor with that
   step before VarproInnerSetState. */
PetscInt       VarproInnerStateSize(VarproInner inner);
PetscBool      VarproInnerCarriesState(VarproInner inner);
PetscInt       VarproInnerLastRefresh(VarproInner inner);
PetscErrorCode VarproInnerGetState(VarproInner inner, PetscReal state[]);
PetscErrorCode VarproInnerSetState(VarproInner inner, PetscInt step, const PetscReal state[]);
PetscErrorCode VarproInnerRefactor(VarproInner inner, PetscInt step);

/* The kernel matrix type, Krylov iterations and kernel-matrix assemblies so far. */
PetscErrorCode VarproInnerGetInfo(VarproInner inner, const char **type, PetscInt64 *iterations, PetscInt64 *assemblies);
PetscErrorCode VarproInnerDestroy(VarproInner *inner);
