/* Unit test of h5io.c: data files, the output directory and result files.

   Usage: test_h5io <tests/data dir> <scratch dir>. Prints one line per check and exits
   non-zero when any check fails. Runs at any rank count; files are made and inspected on
   rank 0, every check is agreed on by all ranks. */
#define _POSIX_C_SOURCE 200809L

#include "varpro_impl.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TestCallH5(call)                                                                                               \
  do {                                                                                                                 \
    if ((call) < 0) SETERRQ(PETSC_COMM_SELF, PETSC_ERR_LIB, "HDF5 call failed: %s", #call);                            \
  } while (0)

#define PATH_LEN (VARPRO_PATH_MAX + 64)

static int            failures;
static PetscErrorCode caught_code;
static char           caught_msg[VARPRO_MSG_MAX];

/* Keeps the message of the latest error raised, so that a test can check it; user errors are
   expected here and stay quiet, anything else also gets PETSc's traceback. */
static PetscErrorCode CatchErrorHandler(MPI_Comm comm, int line, const char *fun, const char *file, PetscErrorCode n,
                                        PetscErrorType p, const char *mess, void *ctx)
{
  if (p == PETSC_ERROR_INITIAL) {
    caught_code = n;
    snprintf(caught_msg, sizeof(caught_msg), "%s", mess ? mess : "");
  }
  if (n != PETSC_ERR_USER_INPUT) return PetscTraceBackErrorHandler(comm, line, fun, file, n, p, mess, ctx);
  return n;
}

/* Records one check, passed only when it passed on every rank. */
static PetscErrorCode Check(MPI_Comm comm, PetscBool ok, const char what[])
{
  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPIU_BOOL, MPI_LAND, comm));
  if (!ok) failures++;
  PetscCall(PetscPrintf(comm, "%s %s\n", ok ? "ok  " : "FAIL", what));
  PetscFunctionReturn(0);
}

/* Checks that ierr is a user input error with message expected, on every rank. */
static PetscErrorCode CheckInputError(MPI_Comm comm, PetscErrorCode ierr, const char expected[], const char what[])
{
  PetscBool ok =
    (PetscBool)(ierr == PETSC_ERR_USER_INPUT && caught_code == PETSC_ERR_USER_INPUT && !strcmp(caught_msg, expected));

  PetscFunctionBeginUser;
  PetscCall(Check(comm, ok, what));
  if (!ok) PetscCall(PetscPrintf(comm, "     error %d, message: %s\n", (int)ierr, caught_msg));
  caught_msg[0] = 0;
  caught_code   = 0;
  PetscFunctionReturn(0);
}

/* Checks that ierr is a user input error whose message starts with head and ends with tail: for
   damage whose first symptom depends on HDF5's file layout. */
static PetscErrorCode CheckInputErrorLike(MPI_Comm comm, PetscErrorCode ierr, const char head[], const char tail[],
                                          const char what[])
{
  size_t    len = strlen(caught_msg), nhead = strlen(head), ntail = strlen(tail);
  PetscBool ok =
    (PetscBool)(ierr == PETSC_ERR_USER_INPUT && caught_code == PETSC_ERR_USER_INPUT && len >= nhead + ntail &&
                !strncmp(caught_msg, head, nhead) && !strcmp(caught_msg + len - ntail, tail));

  PetscFunctionBeginUser;
  PetscCall(Check(comm, ok, what));
  if (!ok) PetscCall(PetscPrintf(comm, "     error %d, message: %s\n", (int)ierr, caught_msg));
  caught_msg[0] = 0;
  caught_code   = 0;
  PetscFunctionReturn(0);
}

static PetscBool FileExists(const char path[])
{
  return (PetscBool)(access(path, F_OK) == 0);
}

/* ---- making and reading HDF5 files ------------------------------------------------------- */

static PetscErrorCode WriteDataset(hid_t file, const char name[], hid_t type, int ndims, const hsize_t dims[],
                                   const void *buf)
{
  hid_t space, dset;

  PetscFunctionBeginUser;
  TestCallH5(space = H5Screate_simple(ndims, dims, NULL));
  TestCallH5(dset = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  TestCallH5(H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
  TestCallH5(H5Dclose(dset));
  TestCallH5(H5Sclose(space));
  PetscFunctionReturn(0);
}

/* A small data file with N = 4, T = 2, M = 3, bent by the arguments: inputs with input_cols
   columns, targets_rows targets of kind 0 float64, 1 int64 (1, 2, ...), 2 strings, and the
   student dataset only when with_student. */
static PetscErrorCode WriteSmallDataFile(const char path[], hsize_t input_cols, hsize_t targets_rows, int targets_kind,
                                         PetscBool with_student)
{
  const double  values[12]    = {0.5, -1, 1.5, 0.25, -0.75, 1, 2, -2, 0.125, 0, 1, -1};
  const int64_t integers[4]   = {1, 2, 3, 4};
  const char    strings[4][4] = {"a", "b", "c", "d"};
  hsize_t       dims[2];
  hid_t         file, strtype;

  PetscFunctionBeginUser;
  TestCallH5(file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  dims[0] = 4, dims[1] = input_cols;
  PetscCall(WriteDataset(file, "inputs", H5T_NATIVE_DOUBLE, 2, dims, values));
  dims[0] = targets_rows;
  if (targets_kind == 0) PetscCall(WriteDataset(file, "targets", H5T_NATIVE_DOUBLE, 1, dims, values));
  if (targets_kind == 1) PetscCall(WriteDataset(file, "targets", H5T_NATIVE_INT64, 1, dims, integers));
  if (targets_kind == 2) {
    TestCallH5(strtype = H5Tcopy(H5T_C_S1));
    TestCallH5(H5Tset_size(strtype, 4));
    PetscCall(WriteDataset(file, "targets", strtype, 1, dims, strings));
    TestCallH5(H5Tclose(strtype));
  }
  dims[0] = 2, dims[1] = 2;
  PetscCall(WriteDataset(file, "teacher_features", H5T_NATIVE_DOUBLE, 2, dims, values));
  dims[0] = 3;
  if (with_student) PetscCall(WriteDataset(file, "student_features_init", H5T_NATIVE_DOUBLE, 2, dims, values));
  TestCallH5(H5Fclose(file));
  PetscFunctionReturn(0);
}

/* Sets element (row, col) of the float64 dataset name of the data file path (element row when the
   dataset is 1-D) to value. */
static PetscErrorCode PoisonDataset(const char path[], const char name[], hsize_t row, hsize_t col, double value)
{
  hsize_t coord[2] = {row, col}, one = 1;
  hid_t   file, dset, filespace, memspace;

  PetscFunctionBeginUser;
  TestCallH5(file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT));
  TestCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT));
  TestCallH5(filespace = H5Dget_space(dset));
  TestCallH5(H5Sselect_elements(filespace, H5S_SELECT_SET, 1, coord));
  TestCallH5(memspace = H5Screate_simple(1, &one, NULL));
  TestCallH5(H5Dwrite(dset, H5T_NATIVE_DOUBLE, memspace, filespace, H5P_DEFAULT, &value));
  TestCallH5(H5Sclose(memspace));
  TestCallH5(H5Sclose(filespace));
  TestCallH5(H5Dclose(dset));
  TestCallH5(H5Fclose(file));
  PetscFunctionReturn(0);
}

/* Overwrites bytes [begin, end) of path with a fixed pseudo-random pattern. */
static PetscErrorCode OverwriteBytes(const char path[], long begin, long end)
{
  unsigned int state = 12345;
  FILE        *fp;

  PetscFunctionBeginUser;
  PetscCheck(fp = fopen(path, "r+b"), PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot open %s", path);
  PetscCheck(!fseek(fp, begin, SEEK_SET), PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot seek in %s", path);
  for (long i = begin; i < end; i++) {
    state = state * 1103515245u + 12345u;
    PetscCheck(fputc((int)((state >> 16) & 0xff), fp) != EOF, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot write %s",
               path);
  }
  PetscCheck(!fclose(fp), PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot write %s", path);
  PetscFunctionReturn(0);
}

/* A filter that leaves the bytes as they are, registered under an id no HDF5 knows. */
#define UNKNOWN_FILTER_ID 32123

static size_t IdentityFilter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[], size_t nbytes,
                             size_t *buf_size, void **buf)
{
  (void)flags, (void)cd_nelmts, (void)cd_values, (void)buf_size, (void)buf;
  return nbytes;
}

/* Replaces the float64 dataset name of the data file path by a chunked one of the same shape and
   values, passed through filter: H5Z_FILTER_DEFLATE with its one chunk then overwritten by
   garbage, or UNKNOWN_FILTER_ID, registered only while the file is written. */
static PetscErrorCode ReplaceWithFiltered(const char path[], const char name[], H5Z_filter_t filter)
{
  const H5Z_class2_t identity  = {H5Z_CLASS_T_VERS, UNKNOWN_FILTER_ID, 1, 1, "identity", NULL, NULL, IdentityFilter};
  const hsize_t      origin[2] = {0, 0};
  hsize_t            dims[2];
  double             values[64];
  unsigned char      garbage[32];
  hid_t              file, dset, space, dcpl;
  int                ndims;

  PetscFunctionBeginUser;
  if (filter == UNKNOWN_FILTER_ID) TestCallH5(H5Zregister(&identity));
  TestCallH5(file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT));
  TestCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT));
  TestCallH5(space = H5Dget_space(dset));
  TestCallH5(ndims = H5Sget_simple_extent_dims(space, dims, NULL));
  PetscCheck(H5Sget_simple_extent_npoints(space) <= 64, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ, "%s too large", name);
  TestCallH5(H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values));
  TestCallH5(H5Dclose(dset));
  TestCallH5(H5Ldelete(file, name, H5P_DEFAULT));

  /* One chunk holding the whole dataset */
  TestCallH5(dcpl = H5Pcreate(H5P_DATASET_CREATE));
  TestCallH5(H5Pset_chunk(dcpl, ndims, dims));
  if (filter == H5Z_FILTER_DEFLATE)
    TestCallH5(H5Pset_deflate(dcpl, 6));
  else
    TestCallH5(H5Pset_filter(dcpl, filter, H5Z_FLAG_MANDATORY, 0, NULL));
  TestCallH5(dset = H5Dcreate2(file, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
  TestCallH5(H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values));
  if (filter == H5Z_FILTER_DEFLATE) {
    for (size_t i = 0; i < sizeof(garbage); i++) garbage[i] = (unsigned char)(37 * i + 11);
    TestCallH5(H5Dwrite_chunk(dset, H5P_DEFAULT, 0, origin, sizeof(garbage), garbage));
  }
  TestCallH5(H5Dclose(dset));
  TestCallH5(H5Pclose(dcpl));
  TestCallH5(H5Sclose(space));
  TestCallH5(H5Fclose(file));
  if (filter == UNKNOWN_FILTER_ID) TestCallH5(H5Zunregister(UNKNOWN_FILTER_ID));
  PetscFunctionReturn(0);
}

/* Reads the whole dataset name (8-byte elements) into a new array. *ok stays true only when its
   shape is dims[0..ndims-1] and it is chunked and unlimited along the first axis (extendible) or
   contiguous (not extendible). */
static PetscErrorCode ReadDataset(hid_t file, const char name[], hid_t memtype, int ndims, const hsize_t dims[],
                                  PetscBool extendible, void **buf, PetscBool *ok)
{
  hid_t        dset, space, dcpl;
  int          found_ndims;
  hsize_t      found[H5S_MAX_RANK], maxdims[H5S_MAX_RANK];
  H5D_layout_t layout;
  size_t       n = 1;

  PetscFunctionBeginUser;
  TestCallH5(dset = H5Dopen2(file, name, H5P_DEFAULT));
  TestCallH5(space = H5Dget_space(dset));
  TestCallH5(found_ndims = H5Sget_simple_extent_ndims(space));
  TestCallH5(H5Sget_simple_extent_dims(space, found, maxdims));
  TestCallH5(dcpl = H5Dget_create_plist(dset));
  TestCallH5(layout = H5Pget_layout(dcpl));

  /* Shape and layout */
  *ok = (PetscBool)(*ok && found_ndims == ndims);
  for (int d = 0; d < found_ndims; d++) {
    *ok = (PetscBool)(*ok && found[d] == dims[d]);
    n *= (size_t)found[d];
  }
  if (extendible)
    *ok = (PetscBool)(*ok && layout == H5D_CHUNKED && maxdims[0] == H5S_UNLIMITED);
  else
    *ok = (PetscBool)(*ok && layout == H5D_CONTIGUOUS);

  /* Values */
  PetscCall(PetscMalloc(PetscMax(n, 1) * 8, buf));
  if (n) TestCallH5(H5Dread(dset, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *buf));
  TestCallH5(H5Pclose(dcpl));
  TestCallH5(H5Sclose(space));
  TestCallH5(H5Dclose(dset));
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadAttribute(hid_t file, const char name[], hid_t memtype, void *value)
{
  hid_t attr;

  PetscFunctionBeginUser;
  TestCallH5(attr = H5Aopen(file, name, H5P_DEFAULT));
  TestCallH5(H5Aread(attr, memtype, value));
  TestCallH5(H5Aclose(attr));
  PetscFunctionReturn(0);
}

/* Compares a variable-length UTF-8 string attribute with expected. */
static PetscErrorCode AttributeStringIs(hid_t file, const char name[], const char expected[], PetscBool *same)
{
  hid_t strtype;
  char *value = NULL;

  PetscFunctionBeginUser;
  TestCallH5(strtype = H5Tcopy(H5T_C_S1));
  TestCallH5(H5Tset_size(strtype, H5T_VARIABLE));
  TestCallH5(H5Tset_cset(strtype, H5T_CSET_UTF8));
  PetscCall(ReadAttribute(file, name, strtype, &value));
  *same = (PetscBool)(value && !strcmp(value, expected));
  TestCallH5(H5free_memory(value));
  TestCallH5(H5Tclose(strtype));
  PetscFunctionReturn(0);
}

/* ---- the run written by the result tests ------------------------------------------------- */

#define LONG_LINES 40
#define LONG_LINE_LEN 999

#define RUN_M 3
#define RUN_T 2
#define RUN_EPOCHS 5000
#define RUN_SNAPSHOTS 7
#define RUN_MMDS 4

static void ConfigFill(VarproConfig *cfg, const char name[])
{
  memset(cfg, 0, sizeof(*cfg));
  snprintf(cfg->name, sizeof(cfg->name), "%s", name);
  cfg->index          = 2;
  cfg->regularization = VARPRO_UNBIASED;
  cfg->student_width  = RUN_M;
  cfg->lambda         = 1e-3;
  cfg->gamma          = 100;
  cfg->seed           = 12345;
  cfg->epochs         = RUN_EPOCHS;
  cfg->N              = 0;
  cfg->teacher_width  = RUN_T;
  cfg->time_scale     = 0.0009765625;
  cfg->saving_step    = 800;
  cfg->mmd_points     = RUN_MMDS;
  snprintf(cfg->data_file, sizeof(cfg->data_file), "%s", "");
  cfg->line = 7;
}

/* Deterministic values, distinct per step and entry, exact in binary. */
static PetscReal RunLoss(PetscInt s)
{
  return 1.0 / (s + 1);
}
static PetscReal RunStepTime(PetscInt s)
{
  return 0.25 + s * 0.0078125;
}
static PetscInt RunSnapshotStep(PetscInt k)
{
  return 800 * k;
}
static PetscReal RunFeature(PetscInt k, PetscInt i)
{
  return -2 + 0.0625 * k + 0.5 * i;
}
static PetscReal RunWeight(PetscInt k, PetscInt j)
{
  return 1.5 * k - j;
}
static PetscInt RunMMDStep(PetscInt k)
{
  return (RUN_EPOCHS * k) / (RUN_MMDS - 1);
}
static PetscReal RunMMD(PetscInt k)
{
  return 0.5 / (k + 1);
}

/* Writes the run: teacher, all histories and a few extra attributes (one overwritten). */
static PetscErrorCode WriteRun(VarproResult res)
{
  const PetscReal teacher[2 * RUN_T] = {-1, 0, 1, 1};
  PetscReal       features[2 * RUN_M], weights[RUN_M];

  PetscFunctionBeginUser;
  PetscCall(VarproResultWriteTeacher(res, teacher));
  for (PetscInt s = 0; s < RUN_EPOCHS; s++) PetscCall(VarproResultAppendLoss(res, s, RunLoss(s), RunStepTime(s)));
  for (PetscInt k = 0; k < RUN_SNAPSHOTS; k++) {
    for (PetscInt i = 0; i < 2 * RUN_M; i++) features[i] = RunFeature(k, i);
    for (PetscInt j = 0; j < RUN_M; j++) weights[j] = RunWeight(k, j);
    PetscCall(VarproResultAppendSnapshot(res, RunSnapshotStep(k), features, weights));
  }
  for (PetscInt k = 0; k < RUN_MMDS; k++) PetscCall(VarproResultAppendMMD(res, RunMMDStep(k), RunMMD(k)));
  PetscCall(VarproResultSetAttributeInt(res, "ranks", 99));
  PetscCall(VarproResultSetAttributeInt(res, "ranks", 2));
  PetscCall(VarproResultSetAttributeInt(res, "N", 512));
  PetscCall(VarproResultSetAttributeReal(res, "wall_time", 12.375));
  PetscCall(VarproResultSetAttributeString(res, "software_version", "v0.1 \xce\xbb-test"));
  PetscCall(VarproResultAppendAttributeLine(res, "notes", "first"));
  PetscCall(VarproResultAppendAttributeLine(res, "notes", "second\nline"));
  for (int k = 0; k < LONG_LINES; k++) {
    char line[LONG_LINE_LEN + 1];

    memset(line, 'A' + k % 26, LONG_LINE_LEN);
    line[LONG_LINE_LEN] = 0;
    PetscCall(VarproResultAppendAttributeLine(res, "long_notes", line));
  }
  PetscFunctionReturn(0);
}

/* Rank 0: "long_notes" holds the last of the LONG_LINES lines that fit in 32 KiB, in order, after a
   line saying that earlier ones were dropped. */
static PetscErrorCode CheckLongNotes(hid_t file, PetscBool *ok)
{
  hid_t       strtype;
  char       *value = NULL;
  const char *line;
  int         k, kept = 0;

  PetscFunctionBeginUser;
  TestCallH5(strtype = H5Tcopy(H5T_C_S1));
  TestCallH5(H5Tset_size(strtype, H5T_VARIABLE));
  TestCallH5(H5Tset_cset(strtype, H5T_CSET_UTF8));
  PetscCall(ReadAttribute(file, "long_notes", strtype, &value));
  *ok  = (PetscBool)(value && strlen(value) <= 32768 && !strncmp(value, "(earlier lines dropped)\n", 24));
  line = *ok ? value + 24 : "";
  for (k = LONG_LINES - (int)(strlen(line) + 1) / (LONG_LINE_LEN + 1); *ok && k < LONG_LINES; k++, kept++) {
    for (int i = 0; i < LONG_LINE_LEN; i++) *ok = (PetscBool)(*ok && line[i] == 'A' + k % 26);
    *ok  = (PetscBool)(*ok && line[LONG_LINE_LEN] == (k == LONG_LINES - 1 ? 0 : '\n'));
    line = line + LONG_LINE_LEN + 1;
  }
  *ok = (PetscBool)(*ok && kept >= 30 && kept < LONG_LINES);
  TestCallH5(H5free_memory(value));
  TestCallH5(H5Tclose(strtype));
  PetscFunctionReturn(0);
}

/* Rank 0: the 1-D and snapshot histories read back exactly as written. */
static PetscErrorCode CheckRunHistories(hid_t file, PetscBool *ok)
{
  const hsize_t steps[1] = {RUN_EPOCHS}, snapshots[3] = {RUN_SNAPSHOTS, RUN_M, 2};
  const hsize_t mmds[1] = {RUN_MMDS};
  PetscReal    *loss, *time, *features, *weights, *mmd;
  PetscInt64   *snap_steps, *mmd_steps;

  PetscFunctionBeginUser;
  /* Shapes, chunked and unlimited along the first axis */
  *ok = PETSC_TRUE;
  PetscCall(ReadDataset(file, "loss", H5T_NATIVE_DOUBLE, 1, steps, PETSC_TRUE, (void **)&loss, ok));
  PetscCall(ReadDataset(file, "step_time", H5T_NATIVE_DOUBLE, 1, steps, PETSC_TRUE, (void **)&time, ok));
  PetscCall(ReadDataset(file, "snapshot_steps", H5T_NATIVE_INT64, 1, snapshots, PETSC_TRUE, (void **)&snap_steps, ok));
  PetscCall(
    ReadDataset(file, "snapshot_features", H5T_NATIVE_DOUBLE, 3, snapshots, PETSC_TRUE, (void **)&features, ok));
  PetscCall(
    ReadDataset(file, "snapshot_outer_weights", H5T_NATIVE_DOUBLE, 2, snapshots, PETSC_TRUE, (void **)&weights, ok));
  PetscCall(ReadDataset(file, "mmd_steps", H5T_NATIVE_INT64, 1, mmds, PETSC_TRUE, (void **)&mmd_steps, ok));
  PetscCall(ReadDataset(file, "mmd", H5T_NATIVE_DOUBLE, 1, mmds, PETSC_TRUE, (void **)&mmd, ok));

  /* Values, compared exactly */
  for (PetscInt s = 0; *ok && s < RUN_EPOCHS; s++)
    *ok = (PetscBool)(loss[s] == RunLoss(s) && time[s] == RunStepTime(s));
  for (PetscInt k = 0; *ok && k < RUN_SNAPSHOTS; k++) {
    *ok = (PetscBool)(snap_steps[k] == RunSnapshotStep(k));
    for (PetscInt i = 0; i < 2 * RUN_M; i++) *ok = (PetscBool)(*ok && features[2 * RUN_M * k + i] == RunFeature(k, i));
    for (PetscInt j = 0; j < RUN_M; j++) *ok = (PetscBool)(*ok && weights[RUN_M * k + j] == RunWeight(k, j));
  }
  for (PetscInt k = 0; *ok && k < RUN_MMDS; k++)
    *ok = (PetscBool)(mmd_steps[k] == RunMMDStep(k) && mmd[k] == RunMMD(k));
  PetscCall(PetscFree(loss));
  PetscCall(PetscFree(time));
  PetscCall(PetscFree(snap_steps));
  PetscCall(PetscFree(features));
  PetscCall(PetscFree(weights));
  PetscCall(PetscFree(mmd_steps));
  PetscCall(PetscFree(mmd));
  PetscFunctionReturn(0);
}

/* Rank 0: teacher and attributes read back exactly as written. */
static PetscErrorCode CheckRunAttributes(hid_t file, const VarproConfig *cfg, PetscBool *ok)
{
  const hsize_t dims[2] = {RUN_T, 2};
  char          text[8192];
  PetscInt64    complete = 0, ranks = 0, N = 0, M = 0, T = 0, seed = 0, epochs = 0;
  PetscInt64    saving = 0, points = 0;
  PetscReal     lambda = 0, gamma = 0, tau = 0, wall = 0, *teacher;
  PetscBool     s[5], shape = PETSC_TRUE;

  PetscFunctionBeginUser;
  PetscCall(VarproConfigFormat(cfg, text, sizeof(text)));
  PetscCall(AttributeStringIs(file, "configuration", text, &s[0]));
  PetscCall(AttributeStringIs(file, "name", cfg->name, &s[1]));
  PetscCall(AttributeStringIs(file, "regularization", "unbiased", &s[2]));
  PetscCall(AttributeStringIs(file, "data_file", "", &s[3]));
  PetscCall(AttributeStringIs(file, "software_version", "v0.1 \xce\xbb-test", &s[4]));
  PetscCall(ReadAttribute(file, "complete", H5T_NATIVE_INT64, &complete));
  PetscCall(ReadAttribute(file, "ranks", H5T_NATIVE_INT64, &ranks));
  PetscCall(ReadAttribute(file, "N", H5T_NATIVE_INT64, &N));
  PetscCall(ReadAttribute(file, "student_width", H5T_NATIVE_INT64, &M));
  PetscCall(ReadAttribute(file, "teacher_width", H5T_NATIVE_INT64, &T));
  PetscCall(ReadAttribute(file, "seed", H5T_NATIVE_INT64, &seed));
  PetscCall(ReadAttribute(file, "epochs", H5T_NATIVE_INT64, &epochs));
  PetscCall(ReadAttribute(file, "saving_step", H5T_NATIVE_INT64, &saving));
  PetscCall(ReadAttribute(file, "mmd_points", H5T_NATIVE_INT64, &points));
  PetscCall(ReadAttribute(file, "lambda", H5T_NATIVE_DOUBLE, &lambda));
  PetscCall(ReadAttribute(file, "gamma", H5T_NATIVE_DOUBLE, &gamma));
  PetscCall(ReadAttribute(file, "time_scale", H5T_NATIVE_DOUBLE, &tau));
  PetscCall(ReadAttribute(file, "wall_time", H5T_NATIVE_DOUBLE, &wall));
  PetscCall(ReadDataset(file, "teacher_features", H5T_NATIVE_DOUBLE, 2, dims, PETSC_FALSE, (void **)&teacher, &shape));
  *ok = (PetscBool)(s[0] && s[1] && s[2] && s[3] && s[4] && complete == 1 && ranks == 2 && N == 512 && M == RUN_M &&
                    T == RUN_T && seed == cfg->seed && epochs == cfg->epochs && saving == cfg->saving_step &&
                    points == cfg->mmd_points && lambda == cfg->lambda && gamma == cfg->gamma &&
                    tau == cfg->time_scale && wall == 12.375);
  *ok = (PetscBool)(*ok && shape && teacher[0] == -1 && teacher[1] == 0 && teacher[2] == 1 && teacher[3] == 1);
  PetscCall(PetscFree(teacher));
  PetscFunctionReturn(0);
}

/* ---- the tests --------------------------------------------------------------------------- */

/* The real fixture, against values read beforehand with h5py. */
static PetscErrorCode TestDataFixture(MPI_Comm comm, const char datadir[])
{
  char       path[PATH_LEN];
  VarproData data;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/xcheck_biased_M64_N512.h5", datadir));
  PetscCall(VarproDataRead(comm, path, &data));
  PetscCall(
    Check(comm, (PetscBool)(data.N == 512 && data.T == 256 && data.M == 64), "fixture: N = 512, T = 256, M = 64"));
  PetscCall(Check(comm,
                  (PetscBool)(PetscAbsReal(data.inputs[0] - 0.345584192064786) < 1e-15 &&
                              PetscAbsReal(data.inputs[1] - 0.8216181435011584) < 1e-15 &&
                              PetscAbsReal(data.inputs[2 * 511 + 1] - 0.4416601359453396) < 1e-15),
                  "fixture: inputs[0], inputs[511][1]"));
  PetscCall(Check(comm,
                  (PetscBool)(PetscAbsReal(data.targets[511] - 0.8658181931774731) < 1e-15 &&
                              PetscAbsReal(data.targets[0] - 1.0812256213146685) < 1e-15),
                  "fixture: targets[0], targets[511]"));
  PetscCall(Check(comm, (PetscBool)(PetscAbsReal(data.teacher_features[2 * 255 + 1] - 0.8243920505046844) < 1e-15),
                  "fixture: teacher_features[255][1]"));
  PetscCall(Check(comm, (PetscBool)(PetscAbsReal(data.student_features_init[0] - 1.6645762897463214) < 1e-15),
                  "fixture: student_features_init[0][0]"));
  PetscCall(VarproDataDestroy(&data));
  PetscFunctionReturn(0);
}

/* Integer targets convert to float64. */
static PetscErrorCode TestDataInteger(MPI_Comm comm, const char scratch[], PetscMPIInt rank)
{
  char       path[PATH_LEN];
  VarproData data;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/inttargets.h5", scratch));
  if (rank == 0) PetscCall(WriteSmallDataFile(path, 2, 4, 1, PETSC_TRUE));
  PetscCall(VarproDataRead(comm, path, &data));
  PetscCall(
    Check(comm,
          (PetscBool)(data.N == 4 && data.T == 2 && data.M == 3 && data.targets[0] == 1 && data.targets[3] == 4 &&
                      data.inputs[6] == 2 && data.teacher_features[3] == 0.25 && data.student_features_init[5] == 1),
          "small data file: int64 targets read as float64"));
  PetscCall(VarproDataDestroy(&data));
  PetscFunctionReturn(0);
}

/* Reads path, expecting a user input error with message expected. */
static PetscErrorCode ExpectDataError(MPI_Comm comm, const char path[], const char expected[], const char what[])
{
  VarproData     data;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  ierr = VarproDataRead(comm, path, &data); /* expected to fail */
  PetscCall(CheckInputError(comm, ierr, expected, what));
  PetscCall(VarproDataDestroy(&data));
  PetscFunctionReturn(0);
}

/* Every kind of bad data file fails on every rank with a message naming file and dataset. */
static PetscErrorCode TestDataErrors(MPI_Comm comm, const char scratch[], PetscMPIInt rank)
{
  char  path[PATH_LEN], expected[2 * PATH_LEN];
  FILE *fp;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/missing.h5", scratch));
  PetscCall(PetscSNPrintf(expected, sizeof(expected), "%s: cannot read data file: No such file or directory", path));
  PetscCall(ExpectDataError(comm, path, expected, "data error: missing file"));

  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/garbage.h5", scratch));
  if (rank == 0) {
    PetscCheck(fp = fopen(path, "w"), PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", path);
    fprintf(fp, "inputs,targets\n1,2\n");
    PetscCheck(!fclose(fp), PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot write %s", path);
  }
  PetscCall(PetscSNPrintf(expected, sizeof(expected), "%s: cannot read data file: not an HDF5 file", path));
  PetscCall(ExpectDataError(comm, path, expected, "data error: not an HDF5 file"));

  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/nostudent.h5", scratch));
  if (rank == 0) PetscCall(WriteSmallDataFile(path, 2, 4, 0, PETSC_FALSE));
  PetscCall(PetscSNPrintf(expected, sizeof(expected),
                          "%s: no dataset 'student_features_init' (a data file holds inputs, "
                          "targets, teacher_features and student_features_init)",
                          path));
  PetscCall(ExpectDataError(comm, path, expected, "data error: missing dataset"));

  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/badtargets.h5", scratch));
  if (rank == 0) PetscCall(WriteSmallDataFile(path, 2, 3, 0, PETSC_TRUE));
  PetscCall(
    PetscSNPrintf(expected, sizeof(expected), "%s: dataset 'targets' has shape 3, expected 4 (N from 'inputs')", path));
  PetscCall(ExpectDataError(comm, path, expected, "data error: targets length differs from N"));

  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/badinputs.h5", scratch));
  if (rank == 0) PetscCall(WriteSmallDataFile(path, 3, 4, 0, PETSC_TRUE));
  PetscCall(PetscSNPrintf(expected, sizeof(expected),
                          "%s: dataset 'inputs' has shape 4 x 3, expected N x 2 with N >= 1", path));
  PetscCall(ExpectDataError(comm, path, expected, "data error: inputs not N x 2"));

  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/strtargets.h5", scratch));
  if (rank == 0) PetscCall(WriteSmallDataFile(path, 2, 4, 2, PETSC_TRUE));
  PetscCall(PetscSNPrintf(expected, sizeof(expected), "%s: dataset 'targets' is not numeric (float or integer)", path));
  PetscCall(ExpectDataError(comm, path, expected, "data error: string targets"));
  PetscFunctionReturn(0);
}

/* A data file HDF5 fails on (damaged metadata, a damaged compressed chunk, a filter this HDF5
   does not have) is a user input error naming the file and, once known, the dataset; HDF5's own
   error printing is back as it was afterwards. */
static PetscErrorCode TestDataDamaged(MPI_Comm comm, const char scratch[], PetscMPIInt rank)
{
  char        path[PATH_LEN], expected[2 * PATH_LEN];
  H5E_auto2_t func_before = NULL, func_after = NULL;
  void       *data_before = NULL, *data_after = NULL;
  VarproData  data;

  PetscFunctionBeginUser;
  TestCallH5(H5Eget_auto2(H5E_DEFAULT, &func_before, &data_before));

  /* Garbage over the metadata: where HDF5 first stumbles depends on its file layout */
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/damaged-metadata.h5", scratch));
  if (rank == 0) {
    PetscCall(WriteSmallDataFile(path, 2, 4, 0, PETSC_TRUE));
    PetscCall(OverwriteBytes(path, 800, 1400));
  }
  PetscCall(PetscSNPrintf(expected, sizeof(expected), "%s: ", path));
  PetscCall(CheckInputErrorLike(comm, VarproDataRead(comm, path, &data), expected, " (damaged or unsupported file)",
                                "data error: metadata overwritten with garbage"));
  PetscCall(VarproDataDestroy(&data));

  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/damaged-chunk.h5", scratch));
  if (rank == 0) {
    PetscCall(WriteSmallDataFile(path, 2, 4, 0, PETSC_TRUE));
    PetscCall(ReplaceWithFiltered(path, "targets", H5Z_FILTER_DEFLATE));
  }
  PetscCall(
    PetscSNPrintf(expected, sizeof(expected), "%s: cannot read dataset 'targets' (damaged or unsupported file)", path));
  PetscCall(ExpectDataError(comm, path, expected, "data error: gzip chunk overwritten with garbage"));

  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/unknown-filter.h5", scratch));
  if (rank == 0) {
    PetscCall(WriteSmallDataFile(path, 2, 4, 0, PETSC_TRUE));
    PetscCall(ReplaceWithFiltered(path, "teacher_features", UNKNOWN_FILTER_ID));
  }
  PetscCall(PetscSNPrintf(expected, sizeof(expected),
                          "%s: cannot read dataset 'teacher_features' (damaged or unsupported file)", path));
  PetscCall(ExpectDataError(comm, path, expected, "data error: dataset with an unknown filter"));

  TestCallH5(H5Eget_auto2(H5E_DEFAULT, &func_after, &data_after));
  PetscCall(Check(comm, (PetscBool)(func_after == func_before && data_after == data_before),
                  "data error: HDF5 error printing restored"));
  PetscFunctionReturn(0);
}

/* NaN or Inf anywhere is a user input error naming file, dataset and row (counted from 0). */
static PetscErrorCode TestDataNonFinite(MPI_Comm comm, const char scratch[], PetscMPIInt rank)
{
  const struct {
    const char *dataset;
    hsize_t     row, col;
    double      value;
    const char *label;
  } cases[] = {
    {"inputs", 3, 1, INFINITY, "Inf"},
    {"targets", 2, 0, -INFINITY, "-Inf"},
    {"teacher_features", 1, 0, NAN, "NaN"},
    {"student_features_init", 0, 1, NAN, "NaN"},
  };
  char path[PATH_LEN], expected[2 * PATH_LEN], what[128];

  PetscFunctionBeginUser;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    PetscCall(PetscSNPrintf(path, sizeof(path), "%s/nonfinite-%s.h5", scratch, cases[i].dataset));
    if (rank == 0) {
      PetscCall(WriteSmallDataFile(path, 2, 4, 0, PETSC_TRUE));
      PetscCall(PoisonDataset(path, cases[i].dataset, cases[i].row, cases[i].col, cases[i].value));
    }
    PetscCall(PetscSNPrintf(expected, sizeof(expected), "%s: dataset '%s' holds a non-finite value at row %d", path,
                            cases[i].dataset, (int)cases[i].row));
    PetscCall(PetscSNPrintf(what, sizeof(what), "data error: %s in %s", cases[i].label, cases[i].dataset));
    PetscCall(ExpectDataError(comm, path, expected, what));
  }
  PetscFunctionReturn(0);
}

/* A nested new directory is created; a path under a regular file is refused. */
static PetscErrorCode TestOutputDir(MPI_Comm comm, const char scratch[], PetscMPIInt rank)
{
  char           dir[PATH_LEN], expected[2 * PATH_LEN];
  struct stat    st;
  PetscBool      ok = PETSC_TRUE;
  PetscErrorCode ierr;
  FILE          *fp;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(dir, sizeof(dir), "%s/nested/a/b", scratch));
  PetscCall(VarproOutputDirCheck(comm, dir));
  if (rank == 0) ok = (PetscBool)(!stat(dir, &st) && S_ISDIR(st.st_mode));
  PetscCall(Check(comm, ok, "output dir: nested directory created"));
  PetscCall(VarproOutputDirCheck(comm, dir));
  PetscCall(Check(comm, PETSC_TRUE, "output dir: existing directory accepted"));

  PetscCall(PetscSNPrintf(dir, sizeof(dir), "%s/afile", scratch));
  if (rank == 0) {
    PetscCheck(fp = fopen(dir, "w"), PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", dir);
    PetscCheck(!fclose(fp), PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot write %s", dir);
  }
  PetscCall(PetscSNPrintf(dir, sizeof(dir), "%s/afile/sub", scratch));
  PetscCall(
    PetscSNPrintf(expected, sizeof(expected), "output directory %s: cannot create %s: Not a directory", dir, dir));
  ierr = VarproOutputDirCheck(comm, dir); /* expected to fail */
  PetscCall(CheckInputError(comm, ierr, expected, "output dir: path under a regular file refused"));
  PetscFunctionReturn(0);
}

/* Checks which of the partial and final files of cfg in dir exist, looking on rank 0. */
static PetscErrorCode CheckResultFiles(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscBool partial,
                                       PetscBool final, const char what[])
{
  PetscMPIInt rank;
  PetscBool   ok = PETSC_TRUE;
  char        path[PATH_LEN];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank == 0) {
    PetscCall(VarproResultPath(dir, cfg, path, sizeof(path)));
    ok = (PetscBool)(FileExists(path) == final);
    PetscCall(PetscStrlcat(path, ".partial", sizeof(path)));
    ok = (PetscBool)(ok && FileExists(path) == partial);
  }
  PetscCall(Check(comm, ok, what));
  PetscFunctionReturn(0);
}

/* Rank 0: removes the result files an earlier run of this test left in dir. */
static PetscErrorCode RemoveOldResults(const char dir[])
{
  const char *names[] = {"unbiased_M3.h5",        "unbiased_M3.h5.partial", "unfinished.h5",
                         "unfinished.h5.partial", "flushed.h5.partial",     "junk.h5"};
  char        path[PATH_LEN];

  PetscFunctionBeginUser;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    PetscCall(PetscSNPrintf(path, sizeof(path), "%s/%s", dir, names[i]));
    PetscCheck(!unlink(path) || errno == ENOENT, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot remove %s: %s", path,
               strerror(errno));
  }
  PetscFunctionReturn(0);
}

/* A complete run: only the partial file until Finish, only the final one after, and every
   value read back exactly. */
static PetscErrorCode TestResultWrite(MPI_Comm comm, const char dir[], PetscMPIInt rank)
{
  VarproConfig cfg;
  VarproResult res;
  PetscBool    ok = PETSC_TRUE;
  char         path[PATH_LEN];
  hid_t        file;

  PetscFunctionBeginUser;
  ConfigFill(&cfg, "unbiased_M3");
  PetscCall(VarproResultCreate(comm, dir, &cfg, RUN_M, RUN_T, 0, &res));
  PetscCall(WriteRun(res));
  PetscCall(CheckResultFiles(comm, dir, &cfg, PETSC_TRUE, PETSC_FALSE, "result: only <name>.h5.partial before Finish"));

  PetscCall(VarproResultFinish(res));
  PetscCall(VarproResultDestroy(&res));
  PetscCall(Check(comm, (PetscBool)(res == NULL), "result: Destroy sets NULL"));
  PetscCall(CheckResultFiles(comm, dir, &cfg, PETSC_FALSE, PETSC_TRUE, "result: only <name>.h5 after Finish"));

  /* Read everything back on rank 0 */
  if (rank == 0) {
    PetscCall(VarproResultPath(dir, &cfg, path, sizeof(path)));
    TestCallH5(file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT));
    PetscCall(CheckRunHistories(file, &ok));
  }
  PetscCall(Check(comm, ok, "result: histories read back exactly, chunked and extendible"));
  if (rank == 0) {
    PetscCall(CheckRunAttributes(file, &cfg, &ok));
    TestCallH5(H5Fclose(file));
  }
  PetscCall(Check(comm, ok, "result: teacher and attributes read back exactly"));
  if (rank == 0) {
    PetscBool notes;

    TestCallH5(file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT));
    PetscCall(AttributeStringIs(file, "notes", "first\nsecond line", &notes));
    PetscCall(CheckLongNotes(file, &ok));
    ok = (PetscBool)(ok && notes);
    TestCallH5(H5Fclose(file));
  }
  PetscCall(
    Check(comm, ok, "result: lines appended to an attribute, newlines made spaces, the oldest dropped past 32 KiB"));
  PetscFunctionReturn(0);
}

/* Rank 0: the size on disk of the partial file of cfg in dir. */
static PetscErrorCode PartialFileSize(const char dir[], const VarproConfig *cfg, off_t *size)
{
  char        path[PATH_LEN];
  struct stat st;

  PetscFunctionBeginUser;
  PetscCall(VarproResultPath(dir, cfg, path, sizeof(path)));
  PetscCall(PetscStrlcat(path, ".partial", sizeof(path)));
  PetscCheck(!stat(path, &st), PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot stat %s: %s", path, strerror(errno));
  *size = st.st_size;
  PetscFunctionReturn(0);
}

/* With flush_seconds 0, every append reaches the file on disk at once. */
static PetscErrorCode TestResultFlushTime(MPI_Comm comm, const char dir[], PetscMPIInt rank)
{
  VarproConfig cfg;
  VarproResult res;
  off_t        size_created = 0, size_appended = 2 * 10 * sizeof(PetscReal);

  PetscFunctionBeginUser;
  ConfigFill(&cfg, "flushed");
  PetscCall(PetscOptionsSetValue(NULL, "-varpro_result_flush_seconds", "0"));
  PetscCall(VarproResultCreate(comm, dir, &cfg, RUN_M, RUN_T, 0, &res));
  PetscCall(PetscOptionsClearValue(NULL, "-varpro_result_flush_seconds"));
  if (rank == 0) PetscCall(PartialFileSize(dir, &cfg, &size_created));
  for (PetscInt s = 0; s < 10; s++) PetscCall(VarproResultAppendLoss(res, s, RunLoss(s), RunStepTime(s)));
  if (rank == 0) PetscCall(PartialFileSize(dir, &cfg, &size_appended));
  PetscCall(Check(comm, (PetscBool)(size_appended >= size_created + (off_t)(2 * 10 * sizeof(PetscReal))),
                  "flush_seconds 0: appends reach the file at once"));
  PetscCall(VarproResultDestroy(&res));
  PetscFunctionReturn(0);
}

/* A run destroyed without Finish leaves a readable partial file with what was buffered; a new
   run of the same name replaces it, and finishes with empty histories. */
static PetscErrorCode TestResultUnfinished(MPI_Comm comm, const char dir[], PetscMPIInt rank)
{
  VarproConfig  cfg;
  VarproResult  res;
  PetscBool     ok = PETSC_TRUE;
  char          path[PATH_LEN];
  hid_t         file;
  const hsize_t losses[1] = {10}, empty[3] = {0, RUN_M, 2};
  PetscReal    *values;
  htri_t        has_complete = 1;

  PetscFunctionBeginUser;
  ConfigFill(&cfg, "unfinished");
  PetscCall(VarproResultCreate(comm, dir, &cfg, RUN_M, RUN_T, 0, &res));
  for (PetscInt s = 0; s < 10; s++) PetscCall(VarproResultAppendLoss(res, s, RunLoss(s), RunStepTime(s)));
  PetscCall(VarproResultDestroy(&res));
  PetscCall(CheckResultFiles(comm, dir, &cfg, PETSC_TRUE, PETSC_FALSE,
                             "unfinished result: Destroy leaves only <name>.h5.partial"));

  /* The partial file holds what was appended, and is not marked complete */
  if (rank == 0) {
    PetscCall(VarproResultPath(dir, &cfg, path, sizeof(path)));
    PetscCall(PetscStrlcat(path, ".partial", sizeof(path)));
    TestCallH5(file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT));
    PetscCall(ReadDataset(file, "loss", H5T_NATIVE_DOUBLE, 1, losses, PETSC_TRUE, (void **)&values, &ok));
    TestCallH5(has_complete = H5Aexists(file, "complete"));
    TestCallH5(H5Fclose(file));
    ok = (PetscBool)(ok && !has_complete);
    for (PetscInt s = 0; ok && s < 10; s++) ok = (PetscBool)(values[s] == RunLoss(s));
    PetscCall(PetscFree(values));
  }
  PetscCall(Check(comm, ok, "unfinished result: partial file readable, 10 losses, no 'complete'"));

  /* Starting again replaces the partial file */
  PetscCall(VarproResultCreate(comm, dir, &cfg, RUN_M, RUN_T, 0, &res));
  PetscCall(VarproResultFinish(res));
  PetscCall(VarproResultDestroy(&res));
  PetscCall(CheckResultFiles(comm, dir, &cfg, PETSC_FALSE, PETSC_TRUE,
                             "restarted result: partial file replaced by the final one"));
  if (rank == 0) {
    PetscCall(VarproResultPath(dir, &cfg, path, sizeof(path)));
    TestCallH5(file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT));
    PetscCall(ReadDataset(file, "snapshot_features", H5T_NATIVE_DOUBLE, 3, empty, PETSC_TRUE, (void **)&values, &ok));
    TestCallH5(H5Fclose(file));
    PetscCall(PetscFree(values));
  }
  PetscCall(Check(comm, ok, "restarted result: empty histories of shape 0 x M x 2"));
  PetscFunctionReturn(0);
}

/* Existing results: found, absent, and the two errors. Runs after TestResultWrite. */
static PetscErrorCode TestResultExists(MPI_Comm comm, const char dir[], PetscMPIInt rank)
{
  VarproConfig   cfg;
  PetscBool      exists = PETSC_FALSE;
  char           path[PATH_LEN], expected[2 * PATH_LEN];
  PetscErrorCode ierr;
  FILE          *fp;

  PetscFunctionBeginUser;
  ConfigFill(&cfg, "unbiased_M3");
  PetscCall(VarproResultExists(comm, dir, &cfg, &exists));
  PetscCall(Check(comm, exists, "exists: finished result of the same configuration found"));
  ConfigFill(&cfg, "never_run");
  PetscCall(VarproResultExists(comm, dir, &cfg, &exists));
  PetscCall(Check(comm, (PetscBool)!exists, "exists: absent result not found"));

  /* The same name with another lambda is a different run */
  ConfigFill(&cfg, "unbiased_M3");
  cfg.lambda = 1e-2;
  PetscCall(VarproResultPath(dir, &cfg, path, sizeof(path)));
  PetscCall(PetscSNPrintf(expected, sizeof(expected),
                          "%s: a result for a different configuration exists under this name; remove it or use --force",
                          path));
  ierr = VarproResultExists(comm, dir, &cfg, &exists); /* expected to fail */
  PetscCall(CheckInputError(comm, ierr, expected, "exists: different configuration under the same name refused"));

  /* A file of the final name that is no result */
  ConfigFill(&cfg, "junk");
  PetscCall(VarproResultPath(dir, &cfg, path, sizeof(path)));
  if (rank == 0) {
    PetscCheck(fp = fopen(path, "w"), PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", path);
    PetscCheck(!fclose(fp), PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot write %s", path);
  }
  PetscCall(PetscSNPrintf(expected, sizeof(expected),
                          "unreadable result file %s (not an HDF5 file); remove it or use --force", path));
  ierr = VarproResultExists(comm, dir, &cfg, &exists); /* expected to fail */
  PetscCall(CheckInputError(comm, ierr, expected, "exists: unreadable file under the result name refused"));
  PetscFunctionReturn(0);
}

/* Rank 0: a file under the result name of cfg in dir holding only a configuration attribute and,
   when complete >= 0, the int64 attribute complete. The configuration is cfg's text, as a scalar
   (shape 0) or a 1-element array (shape 1), or one of two arrays a crashing reader would overrun:
   500 fixed-length strings of 50 bytes (shape 500), 2000 variable-length ones (shape 2000). */
static PetscErrorCode WriteResultFile(const char dir[], const VarproConfig *cfg, hsize_t shape, PetscInt64 complete)
{
  char        fixed[500][50];
  char        text[8192];
  const char *vlen[2000];
  char        path[PATH_LEN];
  hid_t       file, space, strtype, attr;

  PetscFunctionBeginUser;
  PetscCall(VarproResultPath(dir, cfg, path, sizeof(path)));
  PetscCall(VarproConfigFormat(cfg, text, sizeof(text)));
  for (size_t i = 0; i < 2000; i++) vlen[i] = text;
  memset(fixed, 'x', sizeof(fixed));
  TestCallH5(file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  TestCallH5(strtype = H5Tcopy(H5T_C_S1));
  TestCallH5(H5Tset_size(strtype, shape == 500 ? 50 : H5T_VARIABLE));
  if (shape)
    TestCallH5(space = H5Screate_simple(1, &shape, NULL));
  else
    TestCallH5(space = H5Screate(H5S_SCALAR));
  TestCallH5(attr = H5Acreate2(file, "configuration", strtype, space, H5P_DEFAULT, H5P_DEFAULT));
  TestCallH5(H5Awrite(attr, strtype, shape == 500 ? (const void *)fixed : (const void *)vlen));
  TestCallH5(H5Aclose(attr));
  TestCallH5(H5Sclose(space));
  TestCallH5(H5Tclose(strtype));
  if (complete >= 0) {
    TestCallH5(space = H5Screate(H5S_SCALAR));
    TestCallH5(attr = H5Acreate2(file, "complete", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT));
    TestCallH5(H5Awrite(attr, H5T_NATIVE_INT64, &complete));
    TestCallH5(H5Aclose(attr));
    TestCallH5(H5Sclose(space));
  }
  TestCallH5(H5Fclose(file));
  PetscFunctionReturn(0);
}

/* Result files that are no complete result of their configuration: an array where one string
   belongs is unreadable (and read safely), a missing or zero 'complete' is incomplete. */
static PetscErrorCode TestResultExistsDamaged(MPI_Comm comm, const char dir[], PetscMPIInt rank)
{
  const struct {
    const char *name;
    hsize_t     shape;
    PetscInt64  complete;
    const char *problem; /* NULL: a complete result */
    const char *what;
  } cases[] = {
    {"config_fixed_array", 500, 1, "unreadable result file %s ('configuration' attribute holds 500 values, not one)",
     "exists: 500 fixed-length configurations refused"},
    {"config_vlen_array", 2000, 1, "unreadable result file %s ('configuration' attribute holds 2000 values, not one)",
     "exists: 2000 variable-length configurations refused"},
    {"no_complete", 0, -1, "%s: incomplete result file", "exists: result without 'complete' refused"},
    {"complete_zero", 0, 0, "%s: incomplete result file", "exists: result with complete = 0 refused"},
    {"config_one_element", 1, 1, NULL, "exists: 1-element configuration of a complete result found"},
  };
  VarproConfig   cfg;
  PetscBool      exists;
  char           path[PATH_LEN], problem[2 * PATH_LEN], expected[2 * PATH_LEN];
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ConfigFill(&cfg, cases[i].name);
    if (rank == 0) PetscCall(WriteResultFile(dir, &cfg, cases[i].shape, cases[i].complete));
    exists = PETSC_FALSE;
    ierr   = VarproResultExists(comm, dir, &cfg, &exists); /* expected to fail, unless complete */
    if (!cases[i].problem) {
      PetscCall(Check(comm, (PetscBool)(!ierr && exists), cases[i].what));
      continue;
    }
    PetscCall(VarproResultPath(dir, &cfg, path, sizeof(path)));
    PetscCall(PetscSNPrintf(problem, sizeof(problem), cases[i].problem, path));
    PetscCall(PetscSNPrintf(expected, sizeof(expected), "%s; remove it or use --force", problem));
    PetscCall(CheckInputError(comm, ierr, expected, cases[i].what));
  }
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  MPI_Comm    comm;
  PetscMPIInt rank;
  char        results[PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  comm = PETSC_COMM_WORLD;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCheck(argc >= 3, comm, PETSC_ERR_ARG_WRONG, "usage: test_h5io <tests/data dir> <scratch dir>");
  PetscCall(PetscPushErrorHandler(CatchErrorHandler, NULL));

  /* The scratch directory itself is made by the code under test */
  PetscCall(VarproOutputDirCheck(comm, argv[2]));
  PetscCall(TestDataFixture(comm, argv[1]));
  PetscCall(TestDataInteger(comm, argv[2], rank));
  PetscCall(TestDataErrors(comm, argv[2], rank));
  PetscCall(TestDataDamaged(comm, argv[2], rank));
  PetscCall(TestDataNonFinite(comm, argv[2], rank));
  PetscCall(TestOutputDir(comm, argv[2], rank));

  /* Result files in a fresh directory */
  PetscCall(PetscSNPrintf(results, sizeof(results), "%s/results", argv[2]));
  PetscCall(VarproOutputDirCheck(comm, results));
  if (rank == 0) PetscCall(RemoveOldResults(results));
  PetscCall(TestResultWrite(comm, results, rank));
  PetscCall(TestResultFlushTime(comm, results, rank));
  PetscCall(TestResultUnfinished(comm, results, rank));
  PetscCall(TestResultExists(comm, results, rank));
  PetscCall(TestResultExistsDamaged(comm, results, rank));

  PetscCall(PetscPrintf(comm, "%d check(s) failed\n", failures));
  PetscCall(PetscPopErrorHandler());
  PetscCall(PetscFinalize());
  return failures ? 1 : 0;
}
