/* The learning problem of one run: teacher, training data and initial student features. */
#pragma once

#include "varpro_impl.h"

typedef struct {
  PetscInt   N, T, M;          /* resolved sizes: data points, teacher and student widths */
  PetscInt   rstart, nlocal;   /* this rank owns data points [rstart, rstart + nlocal) */
  PetscReal *inputs;           /* nlocal x 2, this rank's slice */
  PetscReal *targets;          /* nlocal, this rank's slice */
  PetscReal *teacher_features; /* T x 2, replicated */
  PetscReal *student_features; /* M x 2, replicated: the initialisation */
} VarproProblem;

/* Builds the problem of cfg on comm: generated from cfg->seed, or read from cfg->data_file.
   Collective. Raises PETSC_ERR_USER_INPUT when the sizes conflict with the file or there are
   fewer data points than ranks. */
PetscErrorCode VarproProblemSetUp(MPI_Comm comm, const VarproConfig *cfg, VarproProblem *prob);
PetscErrorCode VarproProblemDestroy(VarproProblem *prob);

/* Checks, without building it, what VarproProblemSetUp would reject: sizes out of range or
   fewer data points than ranks, and a data file that is missing, malformed or disagrees with
   the job. Messages start with job_path:line. Collective. */
PetscErrorCode VarproProblemValidate(MPI_Comm comm, const char job_path[], const VarproConfig *cfg);

/* Generators, keyed by global index, so any rank count draws the same numbers. */
void VarproTeacherGenerate(PetscInt64 seed, PetscReal gamma, PetscInt T, PetscReal teacher[]);
void VarproInputsGenerate(PetscInt64 seed, PetscInt start, PetscInt count, PetscReal inputs[]);
void VarproStudentInitGenerate(PetscInt64 seed, PetscInt M, PetscReal features[]);

/* y(x) = (1/T) sum_t phi(r(w*_t, x)) for count points x. */
void VarproTeacherEvaluate(PetscInt T, const PetscReal teacher[], PetscInt count, const PetscReal x[], PetscReal y[]);
