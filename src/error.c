/* Error reporting: one clean line for the user's mistakes, PETSc's traceback for ours. */
#include "varpro_impl.h"

#include <stdio.h>

/* Errors the user can fix (bad input, a diverging run, an inner solve that failed) are reported as one line on rank 0
   of the raising communicator, and so is a run stopped by a signal; every other error goes to PETSc's traceback
   handler. PETSc's own signal handler raises PETSC_ERR_SIG as a repeated error (and aborts), so only an initial
   PETSC_ERR_SIG, the trainer's, starts a clean stop. */
static PetscErrorCode VarproErrorHandler(MPI_Comm comm, int line, const char *fun, const char *file, PetscErrorCode n,
                                         PetscErrorType p, const char *mess, void *ctx)
{
  static PetscBool stopping = PETSC_FALSE;
  PetscMPIInt      rank     = 0;

  if (n == PETSC_ERR_SIG && p == PETSC_ERROR_INITIAL) stopping = PETSC_TRUE;
  if (n != PETSC_ERR_USER_INPUT && n != PETSC_ERR_FP && n != PETSC_ERR_NOT_CONVERGED &&
      !(n == PETSC_ERR_SIG && stopping))
    return PetscTraceBackErrorHandler(comm, line, fun, file, n, p, mess, ctx);
  if (p != PETSC_ERROR_INITIAL) return n;
  if (comm != MPI_COMM_NULL) MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    fprintf(stderr, "varpro-rbf: %s%s\n", n == PETSC_ERR_SIG ? "" : "error: ", mess ? mess : "(no message)");
    fflush(stderr);
  }
  return n;
}

PetscErrorCode VarproPushErrorHandler(void)
{
  PetscFunctionBeginUser;
  PetscCall(PetscPushErrorHandler(VarproErrorHandler, NULL));
  PetscFunctionReturn(0);
}

int VarproExitStatus(PetscErrorCode ierr)
{
  if (ierr == 0) return 0;
  if (ierr == PETSC_ERR_USER_INPUT) return VARPRO_EXIT_INPUT;
  if (ierr == PETSC_ERR_FP || ierr == PETSC_ERR_NOT_CONVERGED) return VARPRO_EXIT_DIVERGED;
  if (ierr == PETSC_ERR_SIG) return VARPRO_EXIT_STOPPED;
  return 1;
}

PetscErrorCode VarproInputErrorSync(MPI_Comm comm, const char msg[])
{
  PetscMPIInt rank, size, first;
  char        buf[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));

  /* The lowest rank holding a message speaks for all */
  first = (msg && msg[0]) ? rank : size;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) PetscFunctionReturn(0);
  if (rank == first) PetscCall(PetscStrncpy(buf, msg, sizeof(buf)));
  PetscCallMPI(MPI_Bcast(buf, sizeof(buf), MPI_CHAR, first, comm));
  SETERRQ(comm, PETSC_ERR_USER_INPUT, "%s", buf);
}
