/* Claim files: one live run per configuration in a shared results directory. */
#pragma once

#include "varpro_impl.h"

/* A claim on one configuration, held by rank 0 of the run that trains it as the file
   <dir>/<name>.h5.claim. It records the owner ("host <hostname> pid <pid> job <id>"), and the
   owner refreshes its modification time as the run goes. A claim is stale, and may be taken
   over, when its owner ran on this host and that process is gone, or when it has not been
   refreshed for stale_seconds. */
typedef struct _p_VarproClaim *VarproClaim;

/* This host's name ("?" when unknown) and the time now in UTC, ISO 8601 ("?" when unknown), as
   claims and results record them. */
void VarproHostAndNow(char host[256], char when[32]);

/* Claims cfg in dir. When another live run holds the claim, *claim is NULL and owner describes it
   (who, since when, last refresh); every rank gets the same answer. A stale claim is taken over
   with a line saying so. Collective. */
PetscErrorCode VarproClaimAcquire(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscReal stale_seconds,
                                  VarproClaim *claim, char owner[], size_t len);

/* Raises PETSC_ERR_USER_INPUT when the claim file of cfg in dir exists but is a symbolic link or
   not a regular file (a directory, a FIFO): no run creates one, none may take it over, and the
   user must remove it. Collective. */
PetscErrorCode VarproClaimCheck(MPI_Comm comm, const char dir[], const VarproConfig *cfg);

/* Whether another live run holds the claim on cfg in dir (owner describes it); a claim file that is
   not a regular file is not held (VarproClaimCheck reports it). Collective. */
PetscErrorCode VarproClaimHeld(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscReal stale_seconds,
                               PetscBool *held, char owner[], size_t len);

/* Rank 0 refreshes the claim when at least a tenth of its stale time has passed since the last
   refresh; *lost is set when the file no longer names this run (another run took it over).
   Not collective; a cheap no-op on other ranks and on a NULL claim. */
PetscErrorCode VarproClaimRefresh(VarproClaim claim, PetscBool *lost);

/* Removes the claim file (if it is still this run's) and frees. Not collective. */
PetscErrorCode VarproClaimRelease(VarproClaim *claim);
