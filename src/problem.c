/*
 * Teacher, data and initialisation of the paper's RBF experiments (arXiv:2504.18208, App. B).
 *
 * Random numbers come from Philox4x64-10 (Random123), keyed by (seed, stream) and counted by
 * the global index of the item drawn, so every rank count draws the same values.
 */
#include "problem.h"
#include "torus.h"

#include <Random123/philox.h>
#include <Random123/u01fixedpt.h>

enum { STREAM_TEACHER = 1, STREAM_INPUTS = 2, STREAM_STUDENT = 3 };

static const PetscReal teacher_modes[2][2] = {{-1.0, 0.0}, {1.0, 1.0}}; /* m1, m2 */

/* Four independent words for item (stream, index). */
static philox4x64_ctr_t Draw(PetscInt64 seed, uint64_t stream, uint64_t index)
{
  philox4x64_ctr_t ctr = {{index, 0, 0, 0}};
  philox4x64_key_t key = {{(uint64_t)seed, stream}};

  return philox4x64(ctr, key);
}

/* One coordinate of a teacher feature from theta ~ U[-pi, pi): the polar angle alpha of
   (sqrt(1+gamma) cos theta, sin theta), mapped to 2 (mod(2 alpha + pi, 2 pi) - pi) / pi. */
static PetscReal TeacherCoordinate(PetscReal gamma, uint64_t word)
{
  PetscReal theta = -PETSC_PI + 2.0 * PETSC_PI * u01fixedpt_closed_open_64_double(word);
  PetscReal alpha = atan2(sin(theta), sqrt(1.0 + gamma) * cos(theta));
  PetscReal a     = 2.0 * alpha + PETSC_PI;
  PetscReal m     = a - 2.0 * PETSC_PI * floor(a / (2.0 * PETSC_PI));

  return 2.0 * (m - PETSC_PI) / PETSC_PI;
}

void VarproTeacherGenerate(PetscInt64 seed, PetscReal gamma, PetscInt T, PetscReal teacher[])
{
  /* gamma < 0: exactly the two Diracs at the modes */
  if (gamma < 0) {
    for (PetscInt t = 0; t < T; t++)
      for (int c = 0; c < 2; c++) teacher[2 * t + c] = VarproWrap(teacher_modes[t % 2][c]);
    return;
  }

  /* Otherwise concentrated around the modes: even features near m1, odd near m2 */
  for (PetscInt t = 0; t < T; t++) {
    philox4x64_ctr_t r = Draw(seed, STREAM_TEACHER, (uint64_t)t);

    for (int c = 0; c < 2; c++)
      teacher[2 * t + c] = VarproWrap(TeacherCoordinate(gamma, r.v[c]) + teacher_modes[t % 2][c]);
  }
}

void VarproInputsGenerate(PetscInt64 seed, PetscInt start, PetscInt count, PetscReal inputs[])
{
  /* Box-Muller: two standard normals from two uniforms in (0, 1) */
  for (PetscInt i = 0; i < count; i++) {
    philox4x64_ctr_t r      = Draw(seed, STREAM_INPUTS, (uint64_t)(start + i));
    PetscReal        radius = sqrt(-2.0 * log(u01fixedpt_open_open_64_double(r.v[0])));
    PetscReal        angle  = 2.0 * PETSC_PI * u01fixedpt_open_open_64_double(r.v[1]);

    inputs[2 * i]     = radius * cos(angle);
    inputs[2 * i + 1] = radius * sin(angle);
  }
}

void VarproStudentInitGenerate(PetscInt64 seed, PetscInt M, PetscReal features[])
{
  for (PetscInt j = 0; j < M; j++) {
    philox4x64_ctr_t r = Draw(seed, STREAM_STUDENT, (uint64_t)j);

    for (int c = 0; c < 2; c++)
      features[2 * j + c] = -VARPRO_TORUS_HALF + VARPRO_TORUS_PERIOD * u01fixedpt_closed_open_64_double(r.v[c]);
  }
}

void VarproTeacherEvaluate(PetscInt T, const PetscReal teacher[], PetscInt count, const PetscReal x[], PetscReal y[])
{
  for (PetscInt i = 0; i < count; i++) {
    PetscReal sum = 0.0;

    for (PetscInt t = 0; t < T; t++) sum += VarproPhi(VarproTorusDistance(&teacher[2 * t], &x[2 * i]));
    y[i] = sum / T;
  }
}

/* Largest sizes: 2 N, 2 T and M (M + 1) must fit a 32-bit PetscInt. */
#define MAX_DATA_POINTS (1 << 29)
#define MAX_STUDENT_WIDTH 46340

/* The sizes of a run as the job file gives them (0 where the data file gives them). */
static void ConfiguredSizes(const VarproConfig *cfg, PetscInt *N, PetscInt *T, PetscInt *M)
{
  *N = cfg->N;
  *T = cfg->gamma < 0 && !cfg->data_file[0] ? 2 : cfg->teacher_width;
  *M = cfg->student_width;
}

/* Checks resolved sizes N, T, M (data, when not NULL, is what the data file holds) against the
   job file, the supported range and the rank count. where says which run. */
static void CheckSizes(const char where[], const VarproConfig *cfg, const VarproData *data, PetscMPIInt size,
                       char msg[])
{
  const char *field[3] = {"N", "teacher_width", "student_width"};
  PetscInt    given[3], found[3], limit[3] = {MAX_DATA_POINTS, MAX_DATA_POINTS, MAX_STUDENT_WIDTH};

  ConfiguredSizes(cfg, &given[0], &given[1], &given[2]);
  for (int k = 0; k < 3; k++) found[k] = data ? (k == 0 ? data->N : k == 1 ? data->T : data->M) : given[k];
  for (int k = 0; k < 3 && !msg[0]; k++) {
    if (data && given[k] && given[k] != found[k])
      PetscCallVoid(PetscSNPrintf(msg, VARPRO_MSG_MAX,
                                  "%s: %s: %" PetscInt_FMT " conflicts with %" PetscInt_FMT " in data file %s", where,
                                  field[k], given[k], found[k], cfg->data_file));
    else if (found[k] > limit[k])
      PetscCallVoid(PetscSNPrintf(msg, VARPRO_MSG_MAX,
                                  "%s: %s: %" PetscInt_FMT " is above the supported %" PetscInt_FMT, where, field[k],
                                  found[k], limit[k]));
  }
  if (!msg[0] && found[0] < size)
    PetscCallVoid(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: N: %" PetscInt_FMT " data points is fewer than the %d ranks",
                                where, found[0], size));
}

/* Reads cfg->data_file and checks its sizes; data is left empty when a check fails. */
static PetscErrorCode ProblemReadChecked(MPI_Comm comm, const char where[], const VarproConfig *cfg, VarproData *data)
{
  PetscMPIInt size;
  char        msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(VarproDataRead(comm, cfg->data_file, data));
  CheckSizes(where, cfg, data, size, msg);
  if (msg[0]) PetscCall(VarproDataDestroy(data));
  PetscCall(VarproInputErrorSync(comm, msg));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproProblemValidate(MPI_Comm comm, const char job_path[], const VarproConfig *cfg)
{
  PetscMPIInt size;
  VarproData  data;
  char        where[VARPRO_PATH_MAX + VARPRO_NAME_MAX + 64], msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscSNPrintf(where, sizeof(where), "%s:%" PetscInt_FMT ": run '%s'", job_path, cfg->line, cfg->name));
  if (cfg->data_file[0]) {
    PetscCall(ProblemReadChecked(comm, where, cfg, &data));
    PetscCall(VarproDataDestroy(&data));
    PetscFunctionReturn(0);
  }
  CheckSizes(where, cfg, NULL, size, msg);
  PetscCall(VarproInputErrorSync(comm, msg));
  PetscFunctionReturn(0);
}

/* Copies what this rank needs of the data file: its slice of the inputs and targets, and the
   replicated teacher and initial student features. */
static PetscErrorCode ProblemCopyData(const VarproData *data, VarproProblem *prob)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(2 * prob->T, &prob->teacher_features));
  PetscCall(PetscMalloc1(2 * prob->M, &prob->student_features));
  PetscCall(PetscMalloc1(2 * prob->nlocal, &prob->inputs));
  PetscCall(PetscMalloc1(prob->nlocal, &prob->targets));
  PetscCall(PetscArraycpy(prob->teacher_features, data->teacher_features, 2 * prob->T));
  PetscCall(PetscArraycpy(prob->student_features, data->student_features_init, 2 * prob->M));
  PetscCall(PetscArraycpy(prob->inputs, data->inputs + 2 * prob->rstart, 2 * prob->nlocal));
  PetscCall(PetscArraycpy(prob->targets, data->targets + prob->rstart, prob->nlocal));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproProblemSetUp(MPI_Comm comm, const VarproConfig *cfg, VarproProblem *prob)
{
  PetscMPIInt rank, size;
  VarproData  data;
  char        where[VARPRO_NAME_MAX + 64], msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(prob, sizeof(*prob)));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscSNPrintf(where, sizeof(where), "run '%s' (line %" PetscInt_FMT ")", cfg->name, cfg->line));

  /* From a data file: sizes from the file, this rank's slice of the data */
  if (cfg->data_file[0]) {
    PetscCall(ProblemReadChecked(comm, where, cfg, &data));
    prob->N = data.N;
    prob->T = data.T;
    prob->M = data.M;
    VarproPartition(prob->N, size, rank, &prob->rstart, &prob->nlocal);
    PetscCall(ProblemCopyData(&data, prob));
    PetscCall(VarproDataDestroy(&data));
    PetscFunctionReturn(0);
  }

  /* Generated: teacher and student replicated, inputs and targets of this rank's slice */
  CheckSizes(where, cfg, NULL, size, msg);
  PetscCall(VarproInputErrorSync(comm, msg));
  ConfiguredSizes(cfg, &prob->N, &prob->T, &prob->M);
  VarproPartition(prob->N, size, rank, &prob->rstart, &prob->nlocal);
  PetscCall(PetscMalloc1(2 * prob->T, &prob->teacher_features));
  PetscCall(PetscMalloc1(2 * prob->M, &prob->student_features));
  PetscCall(PetscMalloc1(2 * prob->nlocal, &prob->inputs));
  PetscCall(PetscMalloc1(prob->nlocal, &prob->targets));
  VarproTeacherGenerate(cfg->seed, cfg->gamma, prob->T, prob->teacher_features);
  VarproStudentInitGenerate(cfg->seed, prob->M, prob->student_features);
  VarproInputsGenerate(cfg->seed, prob->rstart, prob->nlocal, prob->inputs);
  VarproTeacherEvaluate(prob->T, prob->teacher_features, prob->nlocal, prob->inputs, prob->targets);
  PetscFunctionReturn(0);
}

PetscErrorCode VarproProblemDestroy(VarproProblem *prob)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(prob->teacher_features));
  PetscCall(PetscFree(prob->student_features));
  PetscCall(PetscFree(prob->inputs));
  PetscCall(PetscFree(prob->targets));
  PetscCall(PetscMemzero(prob, sizeof(*prob)));
  PetscFunctionReturn(0);
}
