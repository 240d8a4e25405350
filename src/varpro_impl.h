/* Private interfaces shared by the sources of varpro-rbf. */
#pragma once

#include <varpro/varpro.h>

#define VARPRO_MSG_MAX 1024

/* "NaN", "Inf" or "-Inf" for a value that is not finite, for messages: PETSc's printf appends
   a decimal point to what %g prints, which would give "nan." */
static inline const char *VarproNonFiniteName(PetscReal x)
{
  return PetscIsNanReal(x) ? "NaN" : (x > 0 ? "Inf" : "-Inf");
}

/* ---- error.c ---------------------------------------------------------------------- */

/* Raises PETSC_ERR_USER_INPUT on every rank of comm when any rank passes a non-empty msg.
   The message of the lowest such rank is reported. Collective; returns 0 when all are clean. */
PetscErrorCode VarproInputErrorSync(MPI_Comm comm, const char msg[]);

/* ---- h5io.c: data files ------------------------------------------------------------- */

/* The contents of a data file (see README, "Data files"). Every array is replicated on
   every rank, row-major. */
typedef struct {
  PetscInt   N, T, M;
  PetscReal *inputs;                /* N x 2 */
  PetscReal *targets;               /* N */
  PetscReal *teacher_features;      /* T x 2 */
  PetscReal *student_features_init; /* M x 2 */
} VarproData;

/* Rank 0 reads path and checks that the four datasets exist, are float64-convertible and have
   shapes N x 2, N, T x 2, M x 2 with N, T, M >= 1 and finite values; then broadcasts.
   Collective. A missing, damaged or unsupported file, a missing dataset, a wrong shape or a
   non-finite value raises PETSC_ERR_USER_INPUT naming the file and dataset. */
PetscErrorCode VarproDataRead(MPI_Comm comm, const char path[], VarproData *data);
PetscErrorCode VarproDataDestroy(VarproData *data);

/* ---- h5io.c: output directory and result files -------------------------------------- */

/* Creates dir (and parents) if needed and checks that a file can be created in it.
   Collective; raises PETSC_ERR_USER_INPUT naming dir when it cannot. */
PetscErrorCode VarproOutputDirCheck(MPI_Comm comm, const char dir[]);

/* Rank-local: when path exists but is a symbolic link or not a regular file (a directory, FIFO,
   socket or device), msg gets one line naming path and saying so, with what (e.g. "result file")
   the name stands for; nothing is opened, so a FIFO cannot block. An absent path, a regular file
   or a msg that already holds a message leave msg as it is. */
PetscErrorCode VarproPathCheckPlain(const char path[], const char what[], char msg[]);

/* Raises PETSC_ERR_USER_INPUT when dir/<name>.h5 or dir/<name>.h5.partial exists but is a
   symbolic link or not a regular file: results are never written through a link, and neither
   name can be replaced then. Collective. */
PetscErrorCode VarproResultFilesCheck(MPI_Comm comm, const char dir[], const VarproConfig *cfg);

/* Whether dir/<name>.h5 exists as a complete result. When it exists but is unreadable, lacks
   "complete" = 1, or its stored "configuration" attribute differs from cfg, raises
   PETSC_ERR_USER_INPUT naming the file (remove it or use --force). Collective. */
PetscErrorCode VarproResultExists(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscBool *exists);
/* For a complete result of cfg found by VarproResultExists: raises PETSC_ERR_USER_INPUT naming the
   file (a damaged result: remove it or use --force) when one of its datasets (README, "Result
   files") is missing or not of the shape and type its configuration gives (loss: epochs, ...).
   Collective. */
PetscErrorCode VarproResultCheckWhole(MPI_Comm comm, const char dir[], const VarproConfig *cfg);

/* Reads n float64 root attributes of the complete result of cfg in dir (NaN where one is
   missing or the file cannot be read). Collective; every rank gets the values. */
PetscErrorCode VarproResultReadReals(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscInt n,
                                     const char *const names[], PetscReal values[]);

/* A result file being written. Only rank 0 of comm touches the file; on other ranks every
   call is a cheap no-op, but all calls are made on all ranks. The file is written as
   dir/<name>.h5.partial and renamed to dir/<name>.h5 by VarproResultFinish, so a killed run
   never leaves a file that looks complete. Histories are appended to chunked, extendible
   datasets as the run goes (buffered, flushed at least every flush_seconds), so memory does
   not grow with the epoch count. */
typedef struct _p_VarproResult *VarproResult;

/* Creates the partial file, with every parameter of cfg as an attribute (names as in the
   job file: regularization (string), student_width, lambda, gamma, seed, epochs, N,
   teacher_width, time_scale, saving_step, mmd_points, data_file (string), name,
   "configuration" holding VarproConfigFormat text, and "resumed_from" = "") and the empty
   datasets:
     loss                    (epochs)     float64
     step_time               (epochs)     float64  wall seconds of each step
     snapshot_steps          (S)          int64
     snapshot_features       (S x M x 2)  float64
     snapshot_outer_weights  (S x M)      float64
     mmd_steps               (K)          int64
     mmd                     (K)          float64
   M and T are the resolved widths (cfg may hold 0 when read from a data file); nstate is the length
   of the trainer's state kept with each checkpoint (see VarproResultCheckpoint). */
PetscErrorCode VarproResultCreate(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscInt M, PetscInt T,
                                  PetscInt nstate, VarproResult *res);
/* Reopens dir/<name>.h5.partial, left by an earlier run of cfg that died or was stopped, to continue
   it: from its latest checkpoint, or from its last snapshot when that is later and snapshots_exact
   (the trainer carries no state from step to step, so a snapshot is as good), or when there is no
   checkpoint. On return *step is that step s, features (M x 2, every rank) its exact features and,
   from a checkpoint, state (nstate, every rank) the trainer's state there (*has_state), and every
   history of the file is cut back to what belongs to the steps before s (loss and step_time: the
   first s entries; snapshots and MMDs: steps < s), so that the caller records step s onwards
   again. s is added to the string attribute "resumed_from". When there is no partial file, or it
   cannot be read, holds no snapshot or holds what no run of cfg writes (histories longer than
   epochs, steps out of order, a teacher of the wrong shape, NaN or Inf where it would resume; a
   line says so), *step is -1 and *res NULL: the caller starts over. A partial file of another configuration raises
   PETSC_ERR_USER_INPUT. Collective. */
PetscErrorCode VarproResultResume(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscInt M, PetscInt T,
                                  PetscInt nstate, PetscBool snapshots_exact, PetscInt *step, PetscReal features[],
                                  PetscReal state[], PetscBool *has_state, VarproResult *res);
/* Raises PETSC_ERR_USER_INPUT when dir/<name>.h5.partial holds a configuration other than cfg's
   (remove it or use --force); a missing or unreadable one is fine. Collective. */
PetscErrorCode VarproResultPartialCheck(MPI_Comm comm, const char dir[], const VarproConfig *cfg);
PetscErrorCode VarproResultWriteTeacher(VarproResult res, const PetscReal teacher_features[]); /* T x 2 */
PetscErrorCode VarproResultAppendLoss(VarproResult res, PetscInt step, PetscReal loss, PetscReal step_time);
PetscErrorCode VarproResultAppendSnapshot(VarproResult res, PetscInt step, const PetscReal features[],
                                          const PetscReal outer_weights[]); /* M x 2, M */
PetscErrorCode VarproResultAppendMMD(VarproResult res, PetscInt step, PetscReal mmd);
/* A checkpoint: the features of step (M x 2, before its update) and the trainer's state before
   that step (nstate), with every history of the steps before it flushed, kept in the partial file
   (two slots, so that a kill in the middle of one leaves the previous one) until the result is
   finished; see VarproResultResume. Not collective; rank 0 writes. */
PetscErrorCode VarproResultCheckpoint(VarproResult res, PetscInt step, const PetscReal features[],
                                      const PetscReal state[]);
PetscErrorCode VarproResultSetAttributeReal(VarproResult res, const char name[], PetscReal value);
PetscErrorCode VarproResultSetAttributeInt(VarproResult res, const char name[], PetscInt64 value);
PetscErrorCode VarproResultSetAttributeString(VarproResult res, const char name[], const char value[]);
/* Appends line (its newlines made spaces) as the last line of string attribute name, which is
   created when absent; past 32 KiB the oldest lines are dropped. Collective; rank 0 writes. */
PetscErrorCode VarproResultAppendAttributeLine(VarproResult res, const char name[], const char line[]);
/* Flushes everything, sets attribute "complete" = 1, closes and renames to the final name. When the
   final name holds something other than a regular file, or the rename fails, raises
   PETSC_ERR_USER_INPUT and leaves <name>.h5.partial, not marked complete. */
PetscErrorCode VarproResultFinish(VarproResult res);
/* Frees; a result that was not finished is closed and left as <name>.h5.partial. */
PetscErrorCode VarproResultDestroy(VarproResult *res);

/* Full path of the final result file of cfg in dir. */
PetscErrorCode VarproResultPath(const char dir[], const VarproConfig *cfg, char path[], size_t len);
