/*
 * varpro-rbf: two-layer RBF networks on the torus [-2,2)^2 trained by Variable Projection.
 *
 * A job file lists configurations; each one is trained with all ranks of a communicator
 * and written to its own HDF5 result file. The mathematics is that of Appendix B of
 * arXiv:2504.18208 (see README.md for the formulas as implemented).
 */
#pragma once

#include <petscsys.h>

#define VARPRO_NAME_MAX 160
#define VARPRO_PATH_MAX 1024

/* Exit statuses of the executable, documented in the README. */
#define VARPRO_EXIT_INPUT 2    /* bad job file, option or data file: nothing was trained */
#define VARPRO_EXIT_DIVERGED 3 /* training produced NaN or Inf, or the inner solve failed */
#define VARPRO_EXIT_STOPPED 4  /* stopped by SIGTERM or SIGUSR1; the partial result can be resumed */
#define VARPRO_EXIT_CLAIMED 5  /* a configuration was left alone: another live run holds its claim */

typedef enum { VARPRO_BIASED = 0, VARPRO_UNBIASED = 1 } VarproRegularization;

extern const char *const VarproRegularizations[];

/* One training run, fully specified. Plain data so it can be broadcast as bytes. */
typedef struct {
  char                 name[VARPRO_NAME_MAX]; /* stable, readable, unique in its job; result file stem */
  PetscInt             index;                 /* position in the expanded job, from 0 */
  VarproRegularization regularization;
  PetscInt             student_width; /* M; 0 when it is to be read from data_file */
  PetscReal            lambda;        /* ridge strength, > 0 */
  PetscReal            gamma;         /* teacher shape; < 0 means the two-Dirac teacher */
  PetscInt64           seed;          /* >= 0 */
  PetscInt             epochs;        /* full-batch steps, >= 0 */
  PetscInt             N;             /* data points; 0 when read from data_file */
  PetscInt             teacher_width; /* T; 0 when read from data_file (2 when gamma < 0) */
  PetscReal            time_scale;    /* tau; the feature step is eta = M * tau */
  PetscInt             saving_step;   /* features saved every saving_step steps, step 0 included */
  PetscInt             mmd_points;    /* MMD at the unique values of floor(linspace(0, epochs, mmd_points)) */
  char                 data_file[VARPRO_PATH_MAX]; /* HDF5 file replacing teacher, data and init; "" if none */
  /* Where each field was set in the job file, for error messages at run time. */
  PetscInt line; /* 1-based line of the run's entry in the job file */
} VarproConfig;

/* An expanded job file. */
typedef struct {
  char          path[VARPRO_PATH_MAX];       /* the job file as given */
  char          output_dir[VARPRO_PATH_MAX]; /* where result files go */
  PetscInt      checkpoint_steps;            /* a checkpoint every this many steps; 0: none by count */
  PetscReal     checkpoint_minutes;          /* and at least every this many minutes; 0: none by time */
  PetscInt      nconfigs;
  VarproConfig *configs; /* nconfigs entries, identical on every rank */
} VarproJob;

/* Reads and validates a job file on rank 0 of comm and broadcasts it. Collective.
   Bad input fails on every rank with PETSC_ERR_USER_INPUT and a message naming
   file:line:column and the field. */
PETSC_EXTERN PetscErrorCode VarproJobLoad(MPI_Comm comm, const char path[], VarproJob *job);
PETSC_EXTERN PetscErrorCode VarproJobDestroy(VarproJob *job);

/* Canonical YAML text of one configuration: every parameter, one "key: value" per line.
   Stored in result files; equal text means the same run. */
PETSC_EXTERN PetscErrorCode VarproConfigFormat(const VarproConfig *cfg, char buf[], size_t len);

/* Error handling shared by the executable and the tests: errors of class
   PETSC_ERR_USER_INPUT, PETSC_ERR_FP and PETSC_ERR_NOT_CONVERGED print one line "varpro-rbf: error: ..." on
   rank 0 of the communicator that raised them, without a PETSc traceback; a run stopped by a signal
   (PETSC_ERR_SIG raised by the trainer) prints one line "varpro-rbf: ..." and exits with
   VARPRO_EXIT_STOPPED. */
PETSC_EXTERN PetscErrorCode VarproPushErrorHandler(void);
PETSC_EXTERN int            VarproExitStatus(PetscErrorCode ierr);
