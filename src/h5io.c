/* HDF5 input and output: data files, the output directory and result files.

   Only rank 0 of a communicator touches files, with the sequential HDF5 interface. What rank 0
   finds is shared with every rank before anyone returns: a user's mistake (a missing file or
   dataset, a wrong shape, a non-finite value, a file HDF5 cannot read) through
   VarproInputErrorSync, a library failure through H5RootSync_Private, so that all ranks fail
   together and none waits in a later collective. HDF5's own error printing is off while it reads
   the user's files, whose failures are reported as one line naming the file.

   Result file layout (README, "Result files"): root attributes for every parameter; chunked
   datasets extendible along their first axis for the histories, appended from memory buffers
   that are written out when full and at least every flush_seconds. */
#define _POSIX_C_SOURCE 200809L

#include "varpro_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <petsctime.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Limitation: arrays go to HDF5 as native doubles, so PetscReal must be double. */
#if !defined(PETSC_USE_REAL_DOUBLE)
#error "h5io.c requires PETSc configured with double precision reals"
#endif

/* Raises PETSC_ERR_LIB with the text of an HDF5 call that returned a negative value. */
#define PetscCallH5(call)                                                                                              \
  do {                                                                                                                 \
    if ((call) < 0) SETERRQ(PETSC_COMM_SELF, PETSC_ERR_LIB, "HDF5 call failed: %s", #call);                            \
  } while (0)

#define VARPRO_CONFIG_TEXT_MAX 8192
#define VARPRO_REASON_MAX 256

/* Buffer and chunk sizes of the histories: rows of 1-D histories per chunk and per buffer,
   bytes of one snapshot chunk and of the snapshot buffer. */
#define HISTORY_CHUNK_ROWS 4096
#define HISTORY_BUFFER_ROWS 1024
#define SNAPSHOT_CHUNK_BYTES (1 << 20)
#define SNAPSHOT_CHUNK_ROWS_MAX 16
#define SNAPSHOT_BUFFER_BYTES (8 << 20)

/* One dataset of a history: each row is rowlen 8-byte elements (float64 or int64). */
typedef struct {
  const char *name;
  PetscBool   integer; /* int64 steps rather than float64 values */
  int         ndims;   /* 1, 2 or 3 */
  hsize_t     tail[2]; /* dimensions after the first */
  size_t      rowlen;  /* elements per row */
  hid_t       dset;
  char       *buf; /* capacity rows, rank 0 only */
} ResultColumn;

/* Datasets that grow together by one row per append. */
typedef struct {
  PetscInt     ncolumns;
  ResultColumn column[3];
  PetscInt     nbuf, capacity; /* rows buffered, rows the buffers hold */
  hsize_t      chunk;          /* rows per HDF5 chunk */
  hsize_t      nfile;          /* rows already written */
  PetscInt     last_step;      /* step of the last append, PETSC_MIN_INT before the first */
} ResultHistory;

struct _p_VarproResult {
  MPI_Comm       comm;
  PetscMPIInt    rank;
  PetscInt       M, T;
  PetscInt       epochs;                            /* steps of the run */
  char           path[VARPRO_PATH_MAX];             /* final name */
  char           partial_path[VARPRO_PATH_MAX + 8]; /* name while being written */
  hid_t          file;                              /* rank 0, until closed */
  PetscBool      finished;
  ResultHistory  losses;                    /* loss, step_time */
  ResultHistory  snapshots;                 /* snapshot_steps, snapshot_features, snapshot_outer_weights */
  ResultHistory  mmds;                      /* mmd_steps, mmd */
  PetscInt       nstate;                    /* length of the trainer's state kept with a checkpoint */
  hid_t          ckpt_features, ckpt_steps; /* rank 0: checkpoint_features (2 x M x 2), checkpoint_steps (2) */
  hid_t          ckpt_state;                /* rank 0: checkpoint_state (2 x nstate) */
  PetscInt64     ckpt_step[2];              /* the step each checkpoint slot holds, -1 for none */
  PetscReal      flush_seconds;
  PetscLogDouble last_flush;
};

/* ---- shared helpers ------------------------------------------------------------------------ */

/* Shares the outcome of rank 0's file work. When it failed (the error was reported there),
   every rank raises, so no rank is left waiting in a later collective call. */
static PetscErrorCode H5RootSync_Private(MPI_Comm comm, PetscErrorCode ierr, const char path[])
{
  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Bcast(&ierr, 1, MPI_INT, 0, comm));
  PetscCheck(!ierr, comm, ierr, "HDF5 input/output on %s failed on rank 0 (reported there)", path);
  PetscFunctionReturn(0);
}

/* HDF5's automatic error printing, saved while a call whose failure is expected runs. */
typedef struct {
  H5E_auto2_t func;
  void       *data;
} H5ErrorPrinting;

static PetscErrorCode H5ErrorPrintingOff_Private(H5ErrorPrinting *saved)
{
  PetscFunctionBeginUser;
  PetscCallH5(H5Eget_auto2(H5E_DEFAULT, &saved->func, &saved->data));
  PetscCallH5(H5Eset_auto2(H5E_DEFAULT, NULL, NULL));
  PetscFunctionReturn(0);
}

static PetscErrorCode H5ErrorPrintingRestore_Private(const H5ErrorPrinting *saved)
{
  PetscFunctionBeginUser;
  PetscCallH5(H5Eclear2(H5E_DEFAULT));
  PetscCallH5(H5Eset_auto2(H5E_DEFAULT, saved->func, saved->data));
  PetscFunctionReturn(0);
}

/* Opens path with flags (H5F_ACC_RDONLY or H5F_ACC_RDWR). A missing, unreadable or non-HDF5
   file is not raised: *file is then negative and reason says why. Only a regular file is opened:
   opening a FIFO would wait for a writer forever. */
static PetscErrorCode H5FileOpen_Private(const char path[], unsigned flags, hid_t *file, char reason[], size_t len)
{
  struct stat     st;
  H5ErrorPrinting saved;

  PetscFunctionBeginUser;
  *file = H5I_INVALID_HID;

  /* The common mistakes first, with the system's words for them */
  if (stat(path, &st)) {
    PetscCall(PetscStrncpy(reason, strerror(errno), len));
    PetscFunctionReturn(0);
  }
  if (!S_ISREG(st.st_mode)) {
    PetscCall(PetscStrncpy(reason, S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file", len));
    PetscFunctionReturn(0);
  }

  /* Anything HDF5 cannot open is not an HDF5 file to us */
  PetscCall(H5ErrorPrintingOff_Private(&saved));
  *file = H5Fopen(path, flags, H5P_DEFAULT);
  PetscCall(H5ErrorPrintingRestore_Private(&saved));
  if (*file < 0) PetscCall(PetscStrncpy(reason, "not an HDF5 file", len));
  PetscFunctionReturn(0);
}

static PetscErrorCode H5FileOpenRead_Private(const char path[], hid_t *file, char reason[], size_t len)
{
  PetscFunctionBeginUser;
  PetscCall(H5FileOpen_Private(path, H5F_ACC_RDONLY, file, reason, len));
  PetscFunctionReturn(0);
}

/* Creates or replaces the scalar attribute name of loc. */
static PetscErrorCode H5AttrWrite_Private(hid_t loc, const char name[], hid_t filetype, hid_t memtype,
                                          const void *value)
{
  htri_t exists;
  hid_t  space, attr;

  PetscFunctionBeginUser;
  PetscCallH5(exists = H5Aexists(loc, name));
  if (exists) PetscCallH5(H5Adelete(loc, name));
  PetscCallH5(space = H5Screate(H5S_SCALAR));
  PetscCallH5(attr = H5Acreate2(loc, name, filetype, space, H5P_DEFAULT, H5P_DEFAULT));
  PetscCallH5(H5Awrite(attr, memtype, value));
  PetscCallH5(H5Aclose(attr));
  PetscCallH5(H5Sclose(space));
  PetscFunctionReturn(0);
}

static PetscErrorCode H5AttrWriteInt_Private(hid_t loc, const char name[], PetscInt64 value)
{
  PetscFunctionBeginUser;
  PetscCall(H5AttrWrite_Private(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value));
  PetscFunctionReturn(0);
}

static PetscErrorCode H5AttrWriteReal_Private(hid_t loc, const char name[], PetscReal value)
{
  PetscFunctionBeginUser;
  PetscCall(H5AttrWrite_Private(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value));
  PetscFunctionReturn(0);
}

/* Strings are stored variable-length, UTF-8. */
static PetscErrorCode H5AttrWriteString_Private(hid_t loc, const char name[], const char value[])
{
  hid_t strtype;

  PetscFunctionBeginUser;
  PetscCallH5(strtype = H5Tcopy(H5T_C_S1));
  PetscCallH5(H5Tset_size(strtype, H5T_VARIABLE));
  PetscCallH5(H5Tset_cset(strtype, H5T_CSET_UTF8));
  PetscCall(H5AttrWrite_Private(loc, name, strtype, strtype, &value));
  PetscCallH5(H5Tclose(strtype));
  PetscFunctionReturn(0);
}

/* Opens the attribute name of loc when it holds a single value (scalar, or an array of one) of
   class cls, which kind names ("a string"); otherwise *attr is negative and reason says why. The
   file is the user's, so an HDF5 failure is a reason too (call with HDF5's error printing off). */
static PetscErrorCode H5AttrOpenSingle_Private(hid_t loc, const char name[], H5T_class_t cls, const char kind[],
                                               hid_t *attr, char reason[], size_t len)
{
  htri_t      exists;
  hid_t       space, type;
  hssize_t    npoints = -1;
  H5T_class_t found   = H5T_NO_CLASS;

  PetscFunctionBeginUser;
  *attr     = H5I_INVALID_HID;
  reason[0] = 0;
  exists    = H5Aexists(loc, name);
  if (exists > 0) *attr = H5Aopen(loc, name, H5P_DEFAULT);
  if (exists == 0) PetscCall(PetscSNPrintf(reason, len, "no '%s' attribute", name));
  if (*attr < 0) {
    if (!reason[0]) PetscCall(PetscSNPrintf(reason, len, "cannot read the '%s' attribute", name));
    PetscFunctionReturn(0);
  }

  /* One value, of the expected class: the caller reads it into room for one */
  if ((space = H5Aget_space(*attr)) >= 0) {
    npoints = H5Sget_simple_extent_npoints(space);
    PetscCallH5(H5Sclose(space));
  }
  if ((type = H5Aget_type(*attr)) >= 0) {
    found = H5Tget_class(type);
    PetscCallH5(H5Tclose(type));
  }
  if (npoints < 0 || found == H5T_NO_CLASS)
    PetscCall(PetscSNPrintf(reason, len, "cannot read the '%s' attribute", name));
  else if (npoints != 1)
    PetscCall(PetscSNPrintf(reason, len, "'%s' attribute holds %lld values, not one", name, (long long)npoints));
  else if (found != cls)
    PetscCall(PetscSNPrintf(reason, len, "'%s' attribute is not %s", name, kind));
  if (reason[0]) {
    PetscCallH5(H5Aclose(*attr));
    *attr = H5I_INVALID_HID;
  }
  PetscFunctionReturn(0);
}

/* Reads the single string (variable or fixed length) of attribute name of loc into a new
   PetscMalloc'd string; *value is NULL, and reason says why, when there is none that can be read.
   Call with HDF5's error printing off. */
static PetscErrorCode H5AttrReadString_Private(hid_t loc, const char name[], char **value, char reason[], size_t len)
{
  hid_t     attr, filetype, memtype = H5I_INVALID_HID;
  htri_t    isvar = -1;
  size_t    size  = 0;
  char     *vstr  = NULL;
  PetscBool ok;

  PetscFunctionBeginUser;
  *value = NULL;
  PetscCall(H5AttrOpenSingle_Private(loc, name, H5T_STRING, "a string", &attr, reason, len));
  if (attr < 0) PetscFunctionReturn(0);

  /* Read with the file's own character set: HDF5 does not convert between them */
  if ((filetype = H5Aget_type(attr)) >= 0) {
    isvar   = H5Tis_variable_str(filetype);
    size    = H5Tget_size(filetype);
    memtype = H5Tcopy(filetype);
    PetscCallH5(H5Tclose(filetype));
  }
  ok = (PetscBool)(isvar >= 0 && size > 0 && memtype >= 0);
  if (ok && isvar) {
    ok = (PetscBool)(H5Aread(attr, memtype, &vstr) >= 0);
    if (ok) PetscCall(PetscStrallocpy(vstr ? vstr : "", value));
    if (ok) PetscCallH5(H5free_memory(vstr));
  } else if (ok) {
    PetscCall(PetscCalloc1(size + 1, value));
    ok = (PetscBool)(H5Aread(attr, memtype, *value) >= 0);
    if (!ok) PetscCall(PetscFree(*value));
  }
  if (memtype >= 0) PetscCallH5(H5Tclose(memtype));
  PetscCallH5(H5Aclose(attr));
  if (!ok) PetscCall(PetscSNPrintf(reason, len, "cannot read the '%s' attribute", name));
  PetscFunctionReturn(0);
}

/* Reads the single integer of attribute name of loc; *found is false when there is none that can
   be read. Call with HDF5's error printing off. */
static PetscErrorCode H5AttrReadInt_Private(hid_t loc, const char name[], PetscInt64 *value, PetscBool *found)
{
  hid_t attr;
  char  reason[VARPRO_REASON_MAX];

  PetscFunctionBeginUser;
  *found = PETSC_FALSE;
  PetscCall(H5AttrOpenSingle_Private(loc, name, H5T_INTEGER, "an integer", &attr, reason, sizeof(reason)));
  if (attr < 0) PetscFunctionReturn(0);
  *found = (PetscBool)(H5Aread(attr, H5T_NATIVE_INT64, value) >= 0);
  PetscCallH5(H5Aclose(attr));
  PetscFunctionReturn(0);
}

/* What a dataset of a file the user may have damaged is: its rank (-1 when there is no such
   dataset or HDF5 cannot tell), dimensions, type class and whether it grows along its first axis. */
typedef struct {
  int         ndims;
  hsize_t     dims[H5S_MAX_RANK];
  H5T_class_t cls;
  PetscBool   extendible;
} H5Shape;

/* A dimension of H5ShapeIs that may take any value. */
#define H5_ANY_SIZE ((hsize_t)-1)

/* The shape of the open dataset dset. Call with HDF5's error printing off. */
static PetscErrorCode H5ShapeOf_Private(hid_t dset, H5Shape *shape)
{
  hid_t   space, type;
  hsize_t maxdims[H5S_MAX_RANK];

  PetscFunctionBeginUser;
  shape->ndims      = -1;
  shape->cls        = H5T_NO_CLASS;
  shape->extendible = PETSC_FALSE;
  if (dset < 0 || (space = H5Dget_space(dset)) < 0) PetscFunctionReturn(0);
  shape->ndims = H5Sget_simple_extent_ndims(space);
  if (shape->ndims >= 0 && H5Sget_simple_extent_dims(space, shape->dims, maxdims) < 0) shape->ndims = -1;
  if (shape->ndims > 0) shape->extendible = (PetscBool)(maxdims[0] == H5S_UNLIMITED);
  PetscCallH5(H5Sclose(space));
  if ((type = H5Dget_type(dset)) >= 0) {
    shape->cls = H5Tget_class(type);
    PetscCallH5(H5Tclose(type));
  }
  PetscFunctionReturn(0);
}

/* The shape of dataset name of file (ndims -1 when it is missing or not a dataset). Call with
   HDF5's error printing off. */
static PetscErrorCode H5ShapeByName_Private(hid_t file, const char name[], H5Shape *shape)
{
  hid_t dset = H5I_INVALID_HID;

  PetscFunctionBeginUser;
  if (H5Lexists(file, name, H5P_DEFAULT) > 0) dset = H5Dopen2(file, name, H5P_DEFAULT);
  PetscCall(H5ShapeOf_Private(dset, shape));
  if (dset >= 0) PetscCallH5(H5Dclose(dset));
  PetscFunctionReturn(0);
}

/* Whether shape is ndims dimensions dims[] (H5_ANY_SIZE: any) of type class cls. */
static PetscBool H5ShapeIs(const H5Shape *shape, H5T_class_t cls, int ndims, const hsize_t dims[])
{
  if (shape->ndims != ndims || shape->cls != cls) return PETSC_FALSE;
  for (int d = 0; d < ndims; d++)
    if (dims[d] != H5_ANY_SIZE && shape->dims[d] != dims[d]) return PETSC_FALSE;
  return PETSC_TRUE;
}

/* Whether the n values of x are all finite. */
static PetscBool AllFinite(PetscInt n, const PetscReal x[])
{
  for (PetscInt i = 0; i < n; i++)
    if (PetscIsInfOrNanReal(x[i])) return PETSC_FALSE;
  return PETSC_TRUE;
}

/* ---- data files -------------------------------------------------------------------------- */

/* The datasets of a data file, in the order they are checked: a row count is defined by the
   first dataset that names it and must then match. */
typedef struct {
  const char *name;
  int         ndims;     /* 2 means rows x 2 */
  const char *rows_name; /* N, T or M */
  int         rows_from; /* index of the dataset defining the row count, or -1 for this one */
} DataSpec;

static const DataSpec data_specs[4] = {
  {"inputs", 2, "N", -1},
  {"targets", 1, "N", 0},
  {"teacher_features", 2, "T", -1},
  {"student_features_init", 2, "M", -1},
};

/* Writes dims as "512 x 2" ("n x 2" where H5_ANY_SIZE allows any), or "scalar". */
static PetscErrorCode DataFormatShape_Private(int ndims, const hsize_t dims[], char buf[], size_t len)
{
  size_t used = 0;

  PetscFunctionBeginUser;
  buf[0] = 0;
  if (ndims == 0) PetscCall(PetscStrncpy(buf, "scalar", len));
  for (int d = 0; d < ndims && used < len; d++) {
    if (dims[d] == H5_ANY_SIZE)
      snprintf(buf + used, len - used, "%sn", d ? " x " : "");
    else
      snprintf(buf + used, len - used, "%s%llu", d ? " x " : "", (unsigned long long)dims[d]);
    PetscCall(PetscStrlen(buf, &used));
  }
  PetscFunctionReturn(0);
}

/* Records in msg that HDF5 failed on the data file: damaged, or using what this HDF5 cannot read
   (an unknown filter, say). Names dataset name once one is being read. */
static PetscErrorCode DataDamaged_Private(const char path[], const char name[], char msg[])
{
  PetscFunctionBeginUser;
  if (name)
    PetscCall(
      PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: cannot read dataset '%s' (damaged or unsupported file)", path, name));
  else
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: cannot read data file (damaged or unsupported file)", path));
  PetscFunctionReturn(0);
}

/* Checks the shape of dataset s; rows[] holds the row counts of the datasets before it. */
static PetscErrorCode DataCheckShape_Private(const char path[], int s, hid_t dset, hsize_t rows[], char msg[])
{
  const DataSpec *spec = &data_specs[s];
  hid_t           space;
  int             ndims = -1;
  hsize_t         dims[H5S_MAX_RANK];
  char            shape[128], expected[128];
  PetscBool       ok;

  PetscFunctionBeginUser;
  /* The dimensions; HDF5 checks that there are at most H5S_MAX_RANK */
  if ((space = H5Dget_space(dset)) >= 0) {
    ndims = H5Sget_simple_extent_ndims(space);
    if (ndims >= 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) ndims = -1;
    PetscCallH5(H5Sclose(space));
  }
  if (ndims < 0) {
    PetscCall(DataDamaged_Private(path, spec->name, msg));
    PetscFunctionReturn(0);
  }

  /* Rows x 2 or rows, with rows >= 1 and small enough for PetscInt counts of elements */
  ok = (PetscBool)(ndims == spec->ndims && (ndims == 1 || dims[1] == 2) && dims[0] >= 1 &&
                   dims[0] <= (hsize_t)(PETSC_MAX_INT / 2));
  if (ok && spec->rows_from >= 0) ok = (PetscBool)(dims[0] == rows[spec->rows_from]);
  if (ok) {
    rows[s] = dims[0];
    PetscFunctionReturn(0);
  }

  /* Say what was found and what was expected */
  PetscCall(DataFormatShape_Private(ndims, dims, shape, sizeof(shape)));
  if (spec->rows_from >= 0)
    snprintf(expected, sizeof(expected), "%llu%s (%s from '%s')", (unsigned long long)rows[spec->rows_from],
             spec->ndims == 2 ? " x 2" : "", spec->rows_name, data_specs[spec->rows_from].name);
  else
    snprintf(expected, sizeof(expected), "%s%s with %s >= 1", spec->rows_name, spec->ndims == 2 ? " x 2" : "",
             spec->rows_name);
  PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: dataset '%s' has shape %s, expected %s", path, spec->name, shape,
                          expected));
  PetscFunctionReturn(0);
}

/* Opens dataset s of file and checks that it is numeric and has the right shape. A problem
   the user can fix, a damaged file included, goes to msg, with *dset closed and negative. */
static PetscErrorCode DataOpenDataset_Private(hid_t file, const char path[], int s, hsize_t rows[], hid_t *dset,
                                              char msg[])
{
  const char *name = data_specs[s].name;
  htri_t      exists;
  hid_t       obj, type;
  H5T_class_t cls = H5T_NO_CLASS;

  PetscFunctionBeginUser;
  /* A missing name (or a link to nothing), or a name that is not a dataset */
  exists = H5Lexists(file, name, H5P_DEFAULT);
  if (exists > 0) exists = H5Oexists_by_name(file, name, H5P_DEFAULT);
  if (exists == 0)
    PetscCall(PetscSNPrintf(
      msg, VARPRO_MSG_MAX,
      "%s: no dataset '%s' (a data file holds inputs, targets, teacher_features and student_features_init)", path,
      name));
  obj = exists > 0 ? H5Oopen(file, name, H5P_DEFAULT) : H5I_INVALID_HID;
  if (!msg[0] && obj < 0) PetscCall(DataDamaged_Private(path, name, msg));
  if (!msg[0] && H5Iget_type(obj) != H5I_DATASET) {
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: '%s' is not a dataset", path, name));
    PetscCallH5(H5Oclose(obj));
  }
  if (msg[0]) PetscFunctionReturn(0);
  *dset = obj;

  /* Anything HDF5 converts to float64: floats and integers */
  if ((type = H5Dget_type(*dset)) >= 0) {
    cls = H5Tget_class(type);
    PetscCallH5(H5Tclose(type));
  }
  if (cls == H5T_NO_CLASS)
    PetscCall(DataDamaged_Private(path, name, msg));
  else if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: dataset '%s' is not numeric (float or integer)", path, name));
  else
    PetscCall(DataCheckShape_Private(path, s, *dset, rows, msg));
  if (msg[0]) {
    PetscCallH5(H5Dclose(*dset));
    *dset = H5I_INVALID_HID;
  }
  PetscFunctionReturn(0);
}

/* Rank 0: the first NaN or Inf of the four arrays goes to msg, with its row. */
static PetscErrorCode DataCheckFinite_Private(const char path[], const VarproData *data, char msg[])
{
  const PetscReal *arrays[4] = {data->inputs, data->targets, data->teacher_features, data->student_features_init};
  const PetscInt   rows[4]   = {data->N, data->N, data->T, data->M};

  PetscFunctionBeginUser;
  for (int s = 0; s < 4; s++) {
    PetscInt cols = data_specs[s].ndims == 2 ? 2 : 1;

    for (PetscInt i = 0; i < rows[s] * cols; i++) {
      if (!PetscIsInfOrNanReal(arrays[s][i])) continue;
      PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: dataset '%s' holds a non-finite value at row %" PetscInt_FMT,
                              path, data_specs[s].name, i / cols));
      PetscFunctionReturn(0);
    }
  }
  PetscFunctionReturn(0);
}

/* Rank 0: checks all four datasets, then allocates and reads them as float64, and checks that
   every value is finite. Call with HDF5's error printing off: a failure goes to msg. */
static PetscErrorCode DataReadDatasets_Private(hid_t file, const char path[], VarproData *data, char msg[])
{
  hid_t      dset[4] = {H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID};
  hsize_t    rows[4] = {0, 0, 0, 0};
  PetscReal *arrays[4];

  PetscFunctionBeginUser;
  /* Check every dataset before reading any, stopping at the first problem */
  for (int s = 0; s < 4 && !msg[0]; s++) PetscCall(DataOpenDataset_Private(file, path, s, rows, &dset[s], msg));

  /* Read; the row counts fit PetscInt by the shape check */
  if (!msg[0]) {
    data->N = (PetscInt)rows[0];
    data->T = (PetscInt)rows[2];
    data->M = (PetscInt)rows[3];
    PetscCall(PetscMalloc4(2 * data->N, &data->inputs, data->N, &data->targets, 2 * data->T, &data->teacher_features,
                           2 * data->M, &data->student_features_init));
    arrays[0] = data->inputs;
    arrays[1] = data->targets;
    arrays[2] = data->teacher_features;
    arrays[3] = data->student_features_init;
    for (int s = 0; s < 4 && !msg[0]; s++)
      if (H5Dread(dset[s], H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, arrays[s]) < 0)
        PetscCall(DataDamaged_Private(path, data_specs[s].name, msg));
  }
  for (int s = 0; s < 4; s++)
    if (dset[s] >= 0) PetscCallH5(H5Dclose(dset[s]));

  /* NaN or Inf in the data would spoil every step of the run */
  if (!msg[0]) PetscCall(DataCheckFinite_Private(path, data, msg));
  PetscFunctionReturn(0);
}

/* Rank 0: opens path and reads it; the user's mistakes, a damaged file among them, go to msg
   (then data is left empty). */
static PetscErrorCode DataReadRoot_Private(const char path[], VarproData *data, char msg[])
{
  hid_t           file;
  herr_t          closed;
  char            reason[VARPRO_REASON_MAX];
  H5ErrorPrinting saved;
  PetscErrorCode  ierr;

  PetscFunctionBeginUser;
  PetscCall(H5FileOpenRead_Private(path, &file, reason, sizeof(reason)));
  if (file < 0) {
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: cannot read data file: %s", path, reason));
    PetscFunctionReturn(0);
  }

  /* HDF5 failing on the user's file is reported in msg, so its own printing is off meanwhile */
  PetscCall(H5ErrorPrintingOff_Private(&saved));
  ierr   = DataReadDatasets_Private(file, path, data, msg);
  closed = H5Fclose(file);
  PetscCall(H5ErrorPrintingRestore_Private(&saved));
  PetscCall(ierr);
  if (closed < 0 && !msg[0]) PetscCall(DataDamaged_Private(path, NULL, msg));
  if (msg[0]) PetscCall(VarproDataDestroy(data));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproDataRead(MPI_Comm comm, const char path[], VarproData *data)
{
  PetscMPIInt    rank, n[3];
  PetscInt       sizes[3];
  PetscErrorCode ierr                = 0;
  char           msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(data, sizeof(*data)));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));

  /* Rank 0 reads; not PetscCall, since its outcome is shared before any rank returns */
  if (rank == 0) ierr = DataReadRoot_Private(path, data, msg);
  PetscCall(H5RootSync_Private(comm, ierr, path));
  PetscCall(VarproInputErrorSync(comm, msg));

  /* Every rank gets the sizes, then a copy of every array */
  sizes[0] = data->N;
  sizes[1] = data->T;
  sizes[2] = data->M;
  PetscCallMPI(MPI_Bcast(sizes, 3, MPIU_INT, 0, comm));
  if (rank != 0) {
    data->N = sizes[0];
    data->T = sizes[1];
    data->M = sizes[2];
    PetscCall(PetscMalloc4(2 * data->N, &data->inputs, data->N, &data->targets, 2 * data->T, &data->teacher_features,
                           2 * data->M, &data->student_features_init));
  }
  PetscCall(PetscMPIIntCast(2 * data->N, &n[0]));
  PetscCall(PetscMPIIntCast(2 * data->T, &n[1]));
  PetscCall(PetscMPIIntCast(2 * data->M, &n[2]));
  PetscCallMPI(MPI_Bcast(data->inputs, n[0], MPIU_REAL, 0, comm));
  PetscCallMPI(MPI_Bcast(data->targets, n[0] / 2, MPIU_REAL, 0, comm));
  PetscCallMPI(MPI_Bcast(data->teacher_features, n[1], MPIU_REAL, 0, comm));
  PetscCallMPI(MPI_Bcast(data->student_features_init, n[2], MPIU_REAL, 0, comm));
  PetscFunctionReturn(0);
}

/* Frees the arrays; safe on a zeroed or partly read data. */
PetscErrorCode VarproDataDestroy(VarproData *data)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree4(data->inputs, data->targets, data->teacher_features, data->student_features_init));
  PetscCall(PetscMemzero(data, sizeof(*data)));
  PetscFunctionReturn(0);
}

/* ---- output directory -------------------------------------------------------------------- */

/* Creates dir and its missing parents, as mkdir -p does; existing directories are fine. */
static PetscErrorCode OutputDirMake_Private(const char dir[], char msg[])
{
  char        prefix[VARPRO_PATH_MAX];
  size_t      len;
  struct stat st;

  PetscFunctionBeginUser;
  PetscCall(PetscStrlen(dir, &len));
  if (len == 0 || len >= sizeof(prefix)) {
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "output directory '%s': empty or too long", dir));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscStrncpy(prefix, dir, sizeof(prefix)));

  /* Each prefix ending before a '/', then the whole path */
  for (size_t i = 1; i <= len; i++) {
    char c = prefix[i];

    if (i < len && c != '/') continue;
    prefix[i] = 0;
    if (mkdir(prefix, 0777) && errno != EEXIST) {
      PetscCall(
        PetscSNPrintf(msg, VARPRO_MSG_MAX, "output directory %s: cannot create %s: %s", dir, prefix, strerror(errno)));
      PetscFunctionReturn(0);
    }
    prefix[i] = c;
  }

  /* An existing non-directory also made mkdir say EEXIST */
  if (stat(dir, &st))
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "output directory %s: %s", dir, strerror(errno)));
  else if (!S_ISDIR(st.st_mode))
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "output directory %s: not a directory", dir));
  PetscFunctionReturn(0);
}

/* Creates and removes a file named after this process in dir: permission bits alone do not
   tell (root, read-only mounts, ACLs). The file is new (never one that exists, nor what a
   symbolic link of that name points to); a name that is taken is skipped. */
static PetscErrorCode OutputDirProbe_Private(const char dir[], char msg[])
{
  char probe[VARPRO_PATH_MAX + 64];
  int  fd = -1;

  PetscFunctionBeginUser;
  for (int k = 0; k < 100 && fd < 0; k++) {
    PetscCall(PetscSNPrintf(probe, sizeof(probe), "%s/.varpro-write-test-%ld-%d", dir, (long)getpid(), k));
    fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    PetscCall(
      PetscSNPrintf(msg, VARPRO_MSG_MAX, "output directory %s: cannot create a file in it: %s", dir, strerror(errno)));
    PetscFunctionReturn(0);
  }
  if (close(fd) || unlink(probe))
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "output directory %s: cannot remove test file %s: %s", dir, probe,
                            strerror(errno)));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproPathCheckPlain(const char path[], const char what[], char msg[])
{
  struct stat st;
  const char *kind;

  PetscFunctionBeginUser;
  if (msg[0] || lstat(path, &st)) PetscFunctionReturn(0);
  if (S_ISLNK(st.st_mode)) {
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX,
                            "%s: is a symbolic link; remove it (a %s is never written through a link)", path, what));
    PetscFunctionReturn(0);
  }
  if (S_ISREG(st.st_mode)) PetscFunctionReturn(0);
  kind = S_ISDIR(st.st_mode)    ? "a directory"
         : S_ISFIFO(st.st_mode) ? "a FIFO"
         : S_ISSOCK(st.st_mode) ? "a socket"
                                : "a device";
  PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: is not a regular file (%s), so it cannot be a %s; remove it", path,
                          kind, what));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproOutputDirCheck(MPI_Comm comm, const char dir[])
{
  PetscMPIInt    rank;
  PetscErrorCode ierr                = 0;
  char           msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));

  /* Rank 0, which writes the result files, checks; every rank learns the outcome */
  if (rank == 0) {
    ierr = OutputDirMake_Private(dir, msg);
    if (!ierr && !msg[0]) ierr = OutputDirProbe_Private(dir, msg);
  }
  PetscCall(H5RootSync_Private(comm, ierr, dir));
  PetscCall(VarproInputErrorSync(comm, msg));
  PetscFunctionReturn(0);
}

/* ---- existing results -------------------------------------------------------------------- */

PetscErrorCode VarproResultPath(const char dir[], const VarproConfig *cfg, char path[], size_t len)
{
  int n;

  PetscFunctionBeginUser;
  n = snprintf(path, len, "%s/%s.h5", dir, cfg->name);
  PetscCheck(n >= 0 && (size_t)n < len, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
             "result file name %s/%s.h5 is longer than %zu characters", dir, cfg->name, len - 1);
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultFilesCheck(MPI_Comm comm, const char dir[], const VarproConfig *cfg)
{
  PetscMPIInt rank;
  char        path[VARPRO_PATH_MAX + 8], msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(VarproResultPath(dir, cfg, path, VARPRO_PATH_MAX));
  if (rank == 0) {
    PetscCall(VarproPathCheckPlain(path, "result file", msg));
    PetscCall(PetscStrlcat(path, ".partial", sizeof(path)));
    PetscCall(VarproPathCheckPlain(path, "partial result file", msg));
  }
  PetscCall(VarproInputErrorSync(comm, msg));
  PetscFunctionReturn(0);
}

/* Rank 0: what an existing result file says of itself: its configuration text (NULL when it has
   none that can be read, and reason says why) and whether it is marked complete. Call with HDF5's
   error printing off: the file may be damaged. */
static PetscErrorCode ResultReadMarks_Private(hid_t file, char **stored, PetscBool *complete, char reason[], size_t len)
{
  PetscInt64 value = 0;
  PetscBool  found;

  PetscFunctionBeginUser;
  PetscCall(H5AttrReadString_Private(file, "configuration", stored, reason, len));
  PetscCall(H5AttrReadInt_Private(file, "complete", &value, &found));
  *complete = (PetscBool)(found && value == 1);
  PetscFunctionReturn(0);
}

/* Rank 0: whether the datasets of a complete result of epochs steps have the shapes the README
   gives ("Result files"), S snapshots, K MMDs and the widths M and T of its attributes; reason says
   which has not. Call with HDF5's error printing off. */
static PetscErrorCode ResultCheckDatasets_Private(hid_t file, PetscInt64 epochs, char reason[], size_t len)
{
  enum { E, S, K, M, T, TWO, NSIZES };
  static const struct {
    const char *name;
    H5T_class_t cls;
    int         ndims, dims[3];
  } specs[] = {
    {"loss", H5T_FLOAT, 1, {E}},
    {"step_time", H5T_FLOAT, 1, {E}},
    {"snapshot_steps", H5T_INTEGER, 1, {S}},
    {"snapshot_features", H5T_FLOAT, 3, {S, M, TWO}},
    {"snapshot_outer_weights", H5T_FLOAT, 2, {S, M}},
    {"mmd_steps", H5T_INTEGER, 1, {K}},
    {"mmd", H5T_FLOAT, 1, {K}},
    {"teacher_features", H5T_FLOAT, 2, {T, TWO}},
  };
  hsize_t    size[NSIZES] = {(hsize_t)epochs, H5_ANY_SIZE, H5_ANY_SIZE, H5_ANY_SIZE, H5_ANY_SIZE, 2};
  PetscInt64 width;
  PetscBool  found;
  H5Shape    shape;

  PetscFunctionBeginUser;
  /* The counts of snapshots and MMDs are their step lists' lengths; the widths are stored */
  PetscCall(H5ShapeByName_Private(file, "snapshot_steps", &shape));
  if (shape.ndims == 1) size[S] = shape.dims[0];
  PetscCall(H5ShapeByName_Private(file, "mmd_steps", &shape));
  if (shape.ndims == 1) size[K] = shape.dims[0];
  PetscCall(H5AttrReadInt_Private(file, "student_width", &width, &found));
  if (found) size[M] = (hsize_t)width;
  PetscCall(H5AttrReadInt_Private(file, "teacher_width", &width, &found));
  if (found) size[T] = (hsize_t)width;

  for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
    hsize_t dims[3];
    char    expected[128];

    for (int d = 0; d < specs[i].ndims; d++) dims[d] = size[specs[i].dims[d]];
    PetscCall(H5ShapeByName_Private(file, specs[i].name, &shape));
    if (H5ShapeIs(&shape, specs[i].cls, specs[i].ndims, dims)) continue;
    PetscCall(DataFormatShape_Private(specs[i].ndims, dims, expected, sizeof(expected)));
    PetscCall(PetscSNPrintf(reason, len, "dataset '%s' is missing or is not %s of shape %s", specs[i].name,
                            specs[i].cls == H5T_FLOAT ? "float64" : "int64", expected));
    break;
  }
  PetscFunctionReturn(0);
}

/* Rank 0: an existing result must be readable, complete, and of this very configuration. */
static PetscErrorCode ResultExistsRoot_Private(const char path[], const VarproConfig *cfg, PetscBool *exists,
                                               char msg[])
{
  struct stat     st;
  hid_t           file;
  char            reason[VARPRO_REASON_MAX], expected[VARPRO_CONFIG_TEXT_MAX], *stored = NULL;
  PetscBool       same = PETSC_FALSE, complete = PETSC_FALSE;
  H5ErrorPrinting saved;
  PetscErrorCode  ierr;

  PetscFunctionBeginUser;
  *exists = PETSC_FALSE;
  if (stat(path, &st) && errno == ENOENT) PetscFunctionReturn(0);
  *exists = PETSC_TRUE;

  /* What the file says of itself, read quietly: what is wrong with it is reported below */
  PetscCall(H5FileOpenRead_Private(path, &file, reason, sizeof(reason)));
  if (file < 0) {
    PetscCall(
      PetscSNPrintf(msg, VARPRO_MSG_MAX, "unreadable result file %s (%s); remove it or use --force", path, reason));
    PetscFunctionReturn(0);
  }
  PetscCall(H5ErrorPrintingOff_Private(&saved));
  ierr = ResultReadMarks_Private(file, &stored, &complete, reason, sizeof(reason));
  PetscCall(H5ErrorPrintingRestore_Private(&saved));
  PetscCall(ierr);
  PetscCallH5(H5Fclose(file));

  /* Readable, complete, and the same configuration */
  if (!stored) {
    PetscCall(
      PetscSNPrintf(msg, VARPRO_MSG_MAX, "unreadable result file %s (%s); remove it or use --force", path, reason));
    PetscFunctionReturn(0);
  }
  PetscCall(VarproConfigFormat(cfg, expected, sizeof(expected)));
  PetscCall(PetscStrcmp(stored, expected, &same));
  PetscCall(PetscFree(stored));
  if (!complete)
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: incomplete result file; remove it or use --force", path));
  else if (!same)
    PetscCall(PetscSNPrintf(
      msg, VARPRO_MSG_MAX,
      "%s: a result for a different configuration exists under this name; remove it or use --force", path));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultCheckWhole(MPI_Comm comm, const char dir[], const VarproConfig *cfg)
{
  PetscMPIInt     rank;
  PetscErrorCode  ierr = 0;
  hid_t           file = H5I_INVALID_HID;
  char            path[VARPRO_PATH_MAX], reason[VARPRO_REASON_MAX] = "", msg[VARPRO_MSG_MAX] = "";
  H5ErrorPrinting saved;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(VarproResultPath(dir, cfg, path, sizeof(path)));

  /* Rank 0 looks, quietly; not PetscCall, since its outcome is shared before any rank returns */
  if (rank == 0) {
    PetscCall(H5FileOpenRead_Private(path, &file, reason, sizeof(reason)));
    PetscCall(H5ErrorPrintingOff_Private(&saved));
    if (file >= 0) ierr = ResultCheckDatasets_Private(file, cfg->epochs, reason, sizeof(reason));
    if (file >= 0 && H5Fclose(file) < 0 && !ierr) ierr = PETSC_ERR_LIB;
    PetscCall(H5ErrorPrintingRestore_Private(&saved));
    if (reason[0])
      PetscCall(
        PetscSNPrintf(msg, sizeof(msg), "%s: damaged result file (%s); remove it or use --force", path, reason));
  }
  PetscCall(H5RootSync_Private(comm, ierr, path));
  PetscCall(VarproInputErrorSync(comm, msg));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultExists(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscBool *exists)
{
  PetscMPIInt    rank;
  PetscErrorCode ierr = 0;
  char           path[VARPRO_PATH_MAX], msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(VarproResultPath(dir, cfg, path, sizeof(path)));
  *exists = PETSC_FALSE;

  /* Rank 0 looks; not PetscCall, since its outcome is shared before any rank returns */
  if (rank == 0) ierr = ResultExistsRoot_Private(path, cfg, exists, msg);
  PetscCall(H5RootSync_Private(comm, ierr, path));
  PetscCall(VarproInputErrorSync(comm, msg));
  PetscCallMPI(MPI_Bcast(exists, 1, MPIU_BOOL, 0, comm));
  PetscFunctionReturn(0);
}

/* Rank 0: the named float64 attributes of a complete result; a missing one reads as NaN. */
static PetscErrorCode ResultReadRealsRoot_Private(const char path[], PetscInt n, const char *const names[],
                                                  PetscReal values[])
{
  hid_t           file;
  char            reason[VARPRO_REASON_MAX];
  H5ErrorPrinting saved;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < n; k++) values[k] = NAN;
  PetscCall(H5FileOpenRead_Private(path, &file, reason, sizeof(reason)));
  if (file < 0) PetscFunctionReturn(0);
  PetscCall(H5ErrorPrintingOff_Private(&saved));
  for (PetscInt k = 0; k < n; k++) {
    hid_t attr = H5Aopen(file, names[k], H5P_DEFAULT);

    if (attr < 0) continue;
    if (H5Aread(attr, H5T_NATIVE_DOUBLE, &values[k]) < 0) values[k] = NAN;
    PetscCallH5(H5Aclose(attr));
  }
  PetscCall(H5ErrorPrintingRestore_Private(&saved));
  PetscCallH5(H5Fclose(file));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultReadReals(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscInt n,
                                     const char *const names[], PetscReal values[])
{
  PetscMPIInt    rank;
  PetscErrorCode ierr = 0;
  char           path[VARPRO_PATH_MAX];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(VarproResultPath(dir, cfg, path, sizeof(path)));
  if (rank == 0) ierr = ResultReadRealsRoot_Private(path, n, names, values);
  PetscCall(H5RootSync_Private(comm, ierr, path));
  PetscCallMPI(MPI_Bcast(values, (PetscMPIInt)n, MPIU_REAL, 0, comm));
  PetscFunctionReturn(0);
}

/* ---- result histories -------------------------------------------------------------------- */

/* Describes column c of h: a dataset of shape (rows, tail0[, tail1]) with ndims dimensions. */
static void HistorySetColumn_Private(ResultHistory *h, PetscInt c, const char name[], PetscBool integer, int ndims,
                                     hsize_t tail0, hsize_t tail1)
{
  ResultColumn *col = &h->column[c];

  col->name    = name;
  col->integer = integer;
  col->ndims   = ndims;
  col->tail[0] = ndims > 1 ? tail0 : 1;
  col->tail[1] = ndims > 2 ? tail1 : 1;
  col->rowlen  = (size_t)(col->tail[0] * col->tail[1]);
  col->dset    = H5I_INVALID_HID;
  col->buf     = NULL;
  h->ncolumns  = PetscMax(h->ncolumns, c + 1);
}

/* Sets the datasets of the three histories and their chunk and buffer sizes, from the row
   counts cfg leads us to expect (more rows are fine, only slower). */
static void ResultSetUpHistories_Private(VarproResult res, const VarproConfig *cfg)
{
  const hsize_t M         = (hsize_t)res->M;
  PetscInt      epochs    = PetscMax(cfg->epochs, 1);
  PetscInt      snapshots = cfg->saving_step > 0 ? cfg->epochs / cfg->saving_step + 2 : 1;
  PetscInt      mmds      = PetscMax(cfg->mmd_points, 1);
  hsize_t       rowbytes  = (1 + 3 * M) * sizeof(PetscReal);

  /* loss and step_time: one float64 per step */
  HistorySetColumn_Private(&res->losses, 0, "loss", PETSC_FALSE, 1, 0, 0);
  HistorySetColumn_Private(&res->losses, 1, "step_time", PETSC_FALSE, 1, 0, 0);
  res->losses.chunk    = PetscMin(HISTORY_CHUNK_ROWS, epochs);
  res->losses.capacity = PetscMin(HISTORY_BUFFER_ROWS, epochs);

  /* Snapshots: chunks of up to SNAPSHOT_CHUNK_ROWS_MAX feature sets within about 1 MiB */
  HistorySetColumn_Private(&res->snapshots, 0, "snapshot_steps", PETSC_TRUE, 1, 0, 0);
  HistorySetColumn_Private(&res->snapshots, 1, "snapshot_features", PETSC_FALSE, 3, M, 2);
  HistorySetColumn_Private(&res->snapshots, 2, "snapshot_outer_weights", PETSC_FALSE, 2, M, 0);
  res->snapshots.chunk =
    PetscMax(1, PetscMin(SNAPSHOT_CHUNK_ROWS_MAX, SNAPSHOT_CHUNK_BYTES / (2 * M * sizeof(PetscReal))));
  res->snapshots.chunk    = PetscMin(res->snapshots.chunk, (hsize_t)snapshots);
  res->snapshots.capacity = (PetscInt)PetscMax(1, PetscMin((hsize_t)snapshots, SNAPSHOT_BUFFER_BYTES / rowbytes));

  /* MMD: one step and one value per evaluation */
  HistorySetColumn_Private(&res->mmds, 0, "mmd_steps", PETSC_TRUE, 1, 0, 0);
  HistorySetColumn_Private(&res->mmds, 1, "mmd", PETSC_FALSE, 1, 0, 0);
  res->mmds.chunk    = PetscMin(HISTORY_CHUNK_ROWS, mmds);
  res->mmds.capacity = PetscMin(HISTORY_BUFFER_ROWS, mmds);

  res->losses.last_step = res->snapshots.last_step = res->mmds.last_step = PETSC_MIN_INT;
}

/* Rank 0: creates the empty, extendible datasets of h and allocates its buffers. */
static PetscErrorCode HistoryCreate_Private(hid_t file, ResultHistory *h)
{
  PetscFunctionBeginUser;
  for (PetscInt c = 0; c < h->ncolumns; c++) {
    ResultColumn *col        = &h->column[c];
    hsize_t       dims[3]    = {0, col->tail[0], col->tail[1]};
    hsize_t       maxdims[3] = {H5S_UNLIMITED, col->tail[0], col->tail[1]};
    hsize_t       chunk[3]   = {h->chunk, col->tail[0], col->tail[1]};
    hid_t         space, dcpl, type = col->integer ? H5T_STD_I64LE : H5T_IEEE_F64LE;

    PetscCallH5(space = H5Screate_simple(col->ndims, dims, maxdims));
    PetscCallH5(dcpl = H5Pcreate(H5P_DATASET_CREATE));
    PetscCallH5(H5Pset_chunk(dcpl, col->ndims, chunk));
    PetscCallH5(col->dset = H5Dcreate2(file, col->name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    PetscCallH5(H5Pclose(dcpl));
    PetscCallH5(H5Sclose(space));
    PetscCall(PetscMalloc1((size_t)h->capacity * col->rowlen * 8, &col->buf));
  }
  PetscFunctionReturn(0);
}

/* Rank 0: extends the dataset of col to offset + rows rows and writes rows buffered rows. */
static PetscErrorCode ColumnWrite_Private(ResultColumn *col, hsize_t offset, hsize_t rows)
{
  hsize_t dims[3]  = {offset + rows, col->tail[0], col->tail[1]};
  hsize_t start[3] = {offset, 0, 0};
  hsize_t count[3] = {rows, col->tail[0], col->tail[1]};
  hid_t   filespace, memspace;

  PetscFunctionBeginUser;
  PetscCallH5(H5Dset_extent(col->dset, dims));
  PetscCallH5(filespace = H5Dget_space(col->dset));
  PetscCallH5(H5Sselect_hyperslab(filespace, H5S_SELECT_SET, start, NULL, count, NULL));
  PetscCallH5(memspace = H5Screate_simple(col->ndims, count, NULL));
  PetscCallH5(H5Dwrite(col->dset, col->integer ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, memspace, filespace, H5P_DEFAULT,
                       col->buf));
  PetscCallH5(H5Sclose(memspace));
  PetscCallH5(H5Sclose(filespace));
  PetscFunctionReturn(0);
}

/* Rank 0: writes the buffered rows of h and empties its buffers. */
static PetscErrorCode HistoryFlush_Private(ResultHistory *h)
{
  PetscFunctionBeginUser;
  if (h->nbuf == 0) PetscFunctionReturn(0);
  for (PetscInt c = 0; c < h->ncolumns; c++) PetscCall(ColumnWrite_Private(&h->column[c], h->nfile, (hsize_t)h->nbuf));
  h->nfile += (hsize_t)h->nbuf;
  h->nbuf = 0;
  PetscFunctionReturn(0);
}

/* Rank 0: closes the datasets of h and frees its buffers; safe to call twice. */
static PetscErrorCode HistoryClose_Private(ResultHistory *h)
{
  PetscFunctionBeginUser;
  for (PetscInt c = 0; c < h->ncolumns; c++) {
    if (h->column[c].dset >= 0) PetscCallH5(H5Dclose(h->column[c].dset));
    h->column[c].dset = H5I_INVALID_HID;
    PetscCall(PetscFree(h->column[c].buf));
  }
  PetscFunctionReturn(0);
}

/* Every rank: what is about to be written goes to a result that is not finished yet. */
static PetscErrorCode ResultCheckOpen_Private(VarproResult res, const char what[])
{
  PetscFunctionBeginUser;
  PetscCheck(!res->finished, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "%s: %s written to a finished result",
             res->path, what);
  PetscFunctionReturn(0);
}

/* Every rank: the appends of a history come in step order (consecutive steps for losses), on a
   result that is not finished. A slip here would silently misalign the histories. */
static PetscErrorCode HistoryCheckStep_Private(VarproResult res, ResultHistory *h, PetscInt step, PetscBool consecutive)
{
  PetscFunctionBeginUser;
  PetscCall(ResultCheckOpen_Private(res, h->column[0].name));
  if (h->last_step != PETSC_MIN_INT) {
    PetscCheck(consecutive ? step == h->last_step + 1 : step > h->last_step, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "%s: %s of step %" PetscInt_FMT " appended after step %" PetscInt_FMT, res->path, h->column[0].name,
               step, h->last_step);
  }
  h->last_step = step;
  PetscFunctionReturn(0);
}

/* ---- result files ------------------------------------------------------------------------ */

/* Rank 0: writes everything buffered and lets the file on disk catch up, so that a run killed
   afterwards leaves a readable partial file. */
static PetscErrorCode ResultFlush_Private(VarproResult res)
{
  PetscFunctionBeginUser;
  PetscCall(HistoryFlush_Private(&res->losses));
  PetscCall(HistoryFlush_Private(&res->snapshots));
  PetscCall(HistoryFlush_Private(&res->mmds));
  PetscCallH5(H5Fflush(res->file, H5F_SCOPE_LOCAL));
  PetscCall(PetscTime(&res->last_flush));
  PetscFunctionReturn(0);
}

/* Rank 0: copies one row into the buffers of h; a full buffer or an old flush writes out all. */
static PetscErrorCode ResultAppend_Private(VarproResult res, ResultHistory *h, const void *const row[])
{
  PetscLogDouble now;

  PetscFunctionBeginUser;
  for (PetscInt c = 0; c < h->ncolumns; c++) {
    size_t rowbytes = h->column[c].rowlen * 8;

    PetscCall(PetscMemcpy(h->column[c].buf + (size_t)h->nbuf * rowbytes, row[c], rowbytes));
  }
  h->nbuf++;
  PetscCall(PetscTime(&now));
  if (h->nbuf == h->capacity || now - res->last_flush >= res->flush_seconds) PetscCall(ResultFlush_Private(res));
  PetscFunctionReturn(0);
}

/* ---- checkpoints ------------------------------------------------------------------------ */

/* A checkpoint is the features of one step and the trainer's state there (what its inner solve
   carries from step to step), written between snapshots so that a killed run loses little and a
   stopped one nothing, in one of two slots of the partial file: checkpoint_features (2 x M x 2),
   checkpoint_state (2 x nstate) and checkpoint_steps (2), the step each slot holds or -1. The older
   slot is overwritten, and marked -1 while it is, so a kill in the middle of a checkpoint leaves
   the previous one intact. The histories before the step are flushed first; the final file holds
   no checkpoint. */

/* Rank 0: the slot steps on disk, flushed. */
static PetscErrorCode CheckpointWriteSteps_Private(VarproResult res)
{
  PetscFunctionBeginUser;
  PetscCallH5(H5Dwrite(res->ckpt_steps, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, res->ckpt_step));
  PetscCallH5(H5Fflush(res->file, H5F_SCOPE_LOCAL));
  PetscFunctionReturn(0);
}

/* Rank 0: creates both slots, empty. */
static PetscErrorCode CheckpointCreate_Private(VarproResult res)
{
  hsize_t fdims[3] = {2, (hsize_t)res->M, 2}, sdims[1] = {2}, xdims[2] = {2, (hsize_t)PetscMax(res->nstate, 1)};
  hid_t   space;

  PetscFunctionBeginUser;
  PetscCallH5(space = H5Screate_simple(3, fdims, NULL));
  PetscCallH5(res->ckpt_features = H5Dcreate2(res->file, "checkpoint_features", H5T_IEEE_F64LE, space, H5P_DEFAULT,
                                              H5P_DEFAULT, H5P_DEFAULT));
  PetscCallH5(H5Sclose(space));
  PetscCallH5(space = H5Screate_simple(2, xdims, NULL));
  PetscCallH5(res->ckpt_state = H5Dcreate2(res->file, "checkpoint_state", H5T_IEEE_F64LE, space, H5P_DEFAULT,
                                           H5P_DEFAULT, H5P_DEFAULT));
  PetscCallH5(H5Sclose(space));
  PetscCallH5(space = H5Screate_simple(1, sdims, NULL));
  PetscCallH5(res->ckpt_steps =
                H5Dcreate2(res->file, "checkpoint_steps", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  PetscCallH5(H5Sclose(space));
  res->ckpt_step[0] = res->ckpt_step[1] = -1;
  PetscCall(CheckpointWriteSteps_Private(res));
  PetscFunctionReturn(0);
}

/* Rank 0: closes the slots, and with drop removes them from the file. */
static PetscErrorCode CheckpointClose_Private(VarproResult res, PetscBool drop)
{
  static const char *const names[] = {"checkpoint_features", "checkpoint_state", "checkpoint_steps"};
  hid_t                   *dsets[] = {&res->ckpt_features, &res->ckpt_state, &res->ckpt_steps};

  PetscFunctionBeginUser;
  for (int k = 0; k < 3; k++) {
    if (*dsets[k] >= 0) PetscCallH5(H5Dclose(*dsets[k]));
    *dsets[k] = H5I_INVALID_HID;
    if (drop && H5Lexists(res->file, names[k], H5P_DEFAULT) > 0)
      PetscCallH5(H5Ldelete(res->file, names[k], H5P_DEFAULT));
  }
  PetscFunctionReturn(0);
}

/* Rank 0: slot row of dset (rank dimensions, the rows after the first of length tail[]) to or
   from buf. */
static PetscErrorCode CheckpointSlotIO_Private(hid_t dset, int rank, const hsize_t tail[], int slot, PetscBool write,
                                               void *buf, PetscBool *ok)
{
  hsize_t start[3] = {(hsize_t)slot, 0, 0}, count[3] = {1, rank > 1 ? tail[0] : 1, rank > 2 ? tail[1] : 1};
  hid_t   filespace, memspace;

  PetscFunctionBeginUser;
  *ok = PETSC_FALSE;
  if ((filespace = H5Dget_space(dset)) < 0) PetscFunctionReturn(0);
  if ((memspace = H5Screate_simple(rank, count, NULL)) >= 0) {
    if (H5Sselect_hyperslab(filespace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
      *ok = (PetscBool)((write ? H5Dwrite(dset, H5T_NATIVE_DOUBLE, memspace, filespace, H5P_DEFAULT, buf)
                               : H5Dread(dset, H5T_NATIVE_DOUBLE, memspace, filespace, H5P_DEFAULT, buf)) >= 0);
    PetscCallH5(H5Sclose(memspace));
  }
  PetscCallH5(H5Sclose(filespace));
  PetscFunctionReturn(0);
}

/* Rank 0: writes the features and state of step into the older slot. */
static PetscErrorCode CheckpointWriteRoot_Private(VarproResult res, PetscInt step, const PetscReal features[],
                                                  const PetscReal state[])
{
  int       slot    = res->ckpt_step[0] <= res->ckpt_step[1] ? 0 : 1;
  hsize_t   ftail[] = {(hsize_t)res->M, 2}, stail[] = {(hsize_t)PetscMax(res->nstate, 1)};
  PetscReal none = 0.0;
  PetscBool ok;

  PetscFunctionBeginUser;
  PetscCall(ResultFlush_Private(res));
  res->ckpt_step[slot] = -1;
  PetscCall(CheckpointWriteSteps_Private(res));
  PetscCall(CheckpointSlotIO_Private(res->ckpt_features, 3, ftail, slot, PETSC_TRUE, (void *)features, &ok));
  if (ok)
    PetscCall(
      CheckpointSlotIO_Private(res->ckpt_state, 2, stail, slot, PETSC_TRUE, res->nstate ? (void *)state : &none, &ok));
  PetscCheck(ok, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "%s: cannot write checkpoint of step %" PetscInt_FMT,
             res->partial_path, step);
  PetscCallH5(H5Fflush(res->file, H5F_SCOPE_LOCAL));
  res->ckpt_step[slot] = step;
  PetscCall(CheckpointWriteSteps_Private(res));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultCheckpoint(VarproResult res, PetscInt step, const PetscReal features[],
                                      const PetscReal state[])
{
  PetscFunctionBeginUser;
  PetscCall(ResultCheckOpen_Private(res, "checkpoint_features"));
  if (res->rank == 0) PetscCall(CheckpointWriteRoot_Private(res, step, features, state));
  PetscFunctionReturn(0);
}

/* Rank 0, resuming: opens the slots of a partial file (created when the file has none) and finds
   the latest checkpoint after step after, at most step upto, with its features and state;
   *found says whether there is one, *has_state whether its state could be read. Checkpoints of
   other shapes or types (another version's, another solver's) are dropped. A checkpoint holding
   a NaN or Inf is damage: reason says so. Call with HDF5's error printing off. */
static PetscErrorCode CheckpointFind_Private(VarproResult res, PetscInt after, PetscInt upto, PetscInt *step,
                                             PetscReal features[], PetscReal state[], PetscBool *found,
                                             PetscBool *has_state, char reason[], size_t len)
{
  int           best    = -1;
  hsize_t       ftail[] = {(hsize_t)res->M, 2}, stail[] = {(hsize_t)PetscMax(res->nstate, 1)};
  const hsize_t fdims[] = {2, ftail[0], ftail[1]}, xdims[] = {2, stail[0]}, sdims[] = {2};
  H5Shape       shape[3];

  PetscFunctionBeginUser;
  *found = *has_state = PETSC_FALSE;
  res->ckpt_features  = H5Dopen2(res->file, "checkpoint_features", H5P_DEFAULT);
  res->ckpt_state     = H5Dopen2(res->file, "checkpoint_state", H5P_DEFAULT);
  res->ckpt_steps     = H5Dopen2(res->file, "checkpoint_steps", H5P_DEFAULT);
  PetscCall(H5ShapeOf_Private(res->ckpt_features, &shape[0]));
  PetscCall(H5ShapeOf_Private(res->ckpt_state, &shape[1]));
  PetscCall(H5ShapeOf_Private(res->ckpt_steps, &shape[2]));
  if (!H5ShapeIs(&shape[0], H5T_FLOAT, 3, fdims) || !H5ShapeIs(&shape[1], H5T_FLOAT, 2, xdims) ||
      !H5ShapeIs(&shape[2], H5T_INTEGER, 1, sdims) ||
      H5Dread(res->ckpt_steps, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, res->ckpt_step) < 0) {
    PetscCall(CheckpointClose_Private(res, PETSC_TRUE));
    PetscCall(CheckpointCreate_Private(res));
    PetscFunctionReturn(0);
  }
  for (int k = 0; k < 2; k++)
    if (res->ckpt_step[k] > after && res->ckpt_step[k] <= upto &&
        (best < 0 || res->ckpt_step[k] > res->ckpt_step[best]))
      best = k;
  if (best < 0) PetscFunctionReturn(0);
  PetscCall(CheckpointSlotIO_Private(res->ckpt_features, 3, ftail, best, PETSC_FALSE, features, found));
  if (*found && res->nstate)
    PetscCall(CheckpointSlotIO_Private(res->ckpt_state, 2, stail, best, PETSC_FALSE, state, has_state));
  if (*found) *step = (PetscInt)res->ckpt_step[best];

  /* Numbers a run could not have written */
  if (*found && (!AllFinite(2 * res->M, features) || (*has_state && !AllFinite(res->nstate, state)))) {
    PetscCall(PetscSNPrintf(reason, len, "the checkpoint of step %" PetscInt_FMT " holds a NaN or Inf", *step));
    *found = *has_state = PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

/* Rank 0: every parameter of cfg as a root attribute, with the resolved widths. */
static PetscErrorCode ResultWriteConfig_Private(VarproResult res, const VarproConfig *cfg)
{
  char text[VARPRO_CONFIG_TEXT_MAX];

  PetscFunctionBeginUser;
  PetscCall(VarproConfigFormat(cfg, text, sizeof(text)));
  PetscCall(H5AttrWriteString_Private(res->file, "name", cfg->name));
  PetscCall(H5AttrWriteString_Private(res->file, "regularization", VarproRegularizations[cfg->regularization]));
  PetscCall(H5AttrWriteInt_Private(res->file, "student_width", res->M));
  PetscCall(H5AttrWriteReal_Private(res->file, "lambda", cfg->lambda));
  PetscCall(H5AttrWriteReal_Private(res->file, "gamma", cfg->gamma));
  PetscCall(H5AttrWriteInt_Private(res->file, "seed", cfg->seed));
  PetscCall(H5AttrWriteInt_Private(res->file, "epochs", cfg->epochs));
  PetscCall(H5AttrWriteInt_Private(res->file, "N", cfg->N));
  PetscCall(H5AttrWriteInt_Private(res->file, "teacher_width", res->T));
  PetscCall(H5AttrWriteReal_Private(res->file, "time_scale", cfg->time_scale));
  PetscCall(H5AttrWriteInt_Private(res->file, "saving_step", cfg->saving_step));
  PetscCall(H5AttrWriteInt_Private(res->file, "mmd_points", cfg->mmd_points));
  PetscCall(H5AttrWriteString_Private(res->file, "data_file", cfg->data_file));
  PetscCall(H5AttrWriteString_Private(res->file, "configuration", text));
  PetscCall(H5AttrWriteString_Private(res->file, "resumed_from", ""));
  PetscFunctionReturn(0);
}

/* Rank 0: creates the partial file (replacing one a killed run left), its attributes, its
   empty histories and their buffers. What is replaced is removed first, never written through:
   a symbolic link or a non-regular file there is the user's to remove (msg says so). */
static PetscErrorCode ResultCreateRoot_Private(VarproResult res, const VarproConfig *cfg, char msg[])
{
  PetscFunctionBeginUser;
  PetscCall(VarproPathCheckPlain(res->partial_path, "partial result file", msg));
  if (!msg[0] && unlink(res->partial_path) && errno != ENOENT)
    PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "%s: cannot replace it: %s", res->partial_path, strerror(errno)));
  if (msg[0]) PetscFunctionReturn(0);
  PetscCallH5(res->file = H5Fcreate(res->partial_path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT));
  PetscCall(ResultWriteConfig_Private(res, cfg));
  PetscCall(HistoryCreate_Private(res->file, &res->losses));
  PetscCall(HistoryCreate_Private(res->file, &res->snapshots));
  PetscCall(HistoryCreate_Private(res->file, &res->mmds));
  PetscCall(CheckpointCreate_Private(res));
  PetscCall(ResultFlush_Private(res));
  PetscFunctionReturn(0);
}

/* Every rank: the result object of cfg in dir, with no file open yet. */
static PetscErrorCode ResultNew_Private(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscInt M,
                                        PetscInt T, PetscInt nstate, VarproResult *res)
{
  VarproResult r;

  PetscFunctionBeginUser;
  PetscCheck(M >= 1 && T >= 1, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "result widths M = %" PetscInt_FMT ", T = %" PetscInt_FMT " must be >= 1", M, T);
  PetscCall(PetscNew(&r));
  r->comm          = comm;
  r->M             = M;
  r->T             = T;
  r->epochs        = cfg->epochs;
  r->file          = H5I_INVALID_HID;
  r->nstate        = nstate;
  r->ckpt_features = r->ckpt_steps = r->ckpt_state = H5I_INVALID_HID;
  r->flush_seconds                                 = 10;
  PetscCallMPI(MPI_Comm_rank(comm, &r->rank));
  PetscCall(VarproResultPath(dir, cfg, r->path, sizeof(r->path)));
  PetscCall(PetscSNPrintf(r->partial_path, sizeof(r->partial_path), "%s.partial", r->path));
  PetscCall(PetscOptionsGetReal(NULL, NULL, "-varpro_result_flush_seconds", &r->flush_seconds, NULL));
  ResultSetUpHistories_Private(r, cfg);
  *res = r;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultCreate(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscInt M, PetscInt T,
                                  PetscInt nstate, VarproResult *res)
{
  VarproResult   r;
  PetscErrorCode ierr                = 0;
  char           msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  /* The object exists on every rank, so that callers are the same everywhere */
  PetscCall(ResultNew_Private(comm, dir, cfg, M, T, nstate, &r));

  /* Rank 0 writes; not PetscCall, since its outcome is shared before any rank returns */
  if (r->rank == 0) ierr = ResultCreateRoot_Private(r, cfg, msg);
  PetscCall(H5RootSync_Private(comm, ierr, r->partial_path));
  ierr = VarproInputErrorSync(comm, msg);
  if (ierr) PetscCall(VarproResultDestroy(&r));
  PetscCall(ierr);
  *res = r;
  PetscFunctionReturn(0);
}

/* ---- resuming a partial result ------------------------------------------------------------ */

/* Rank 0: opens the partial file at path with flags, quietly, and compares its configuration with
   cfg's. *file is negative when there is none (reason empty), when it cannot be opened or has no
   configuration that can be read (reason says why), or when it holds another configuration (msg
   says so, for the user to fix). */
static PetscErrorCode PartialOpen_Private(const char path[], unsigned flags, const VarproConfig *cfg, hid_t *file,
                                          char reason[], size_t len, char msg[])
{
  struct stat     st;
  char            expected[VARPRO_CONFIG_TEXT_MAX], *stored = NULL;
  PetscBool       same = PETSC_FALSE;
  H5ErrorPrinting saved;
  PetscErrorCode  ierr;

  PetscFunctionBeginUser;
  *file     = H5I_INVALID_HID;
  reason[0] = 0;
  if (lstat(path, &st)) {
    if (errno == ENOENT) PetscFunctionReturn(0);
  } else if (S_ISLNK(st.st_mode)) {
    PetscCall(PetscStrncpy(reason, "is a symbolic link", len));
    PetscFunctionReturn(0);
  }
  PetscCall(H5FileOpen_Private(path, flags, file, reason, len));
  if (*file < 0) PetscFunctionReturn(0);

  /* The stored configuration must be this one */
  PetscCall(H5ErrorPrintingOff_Private(&saved));
  ierr = H5AttrReadString_Private(*file, "configuration", &stored, reason, len);
  PetscCall(H5ErrorPrintingRestore_Private(&saved));
  PetscCall(ierr);
  if (stored) {
    PetscCall(VarproConfigFormat(cfg, expected, sizeof(expected)));
    PetscCall(PetscStrcmp(stored, expected, &same));
    PetscCall(PetscFree(stored));
    if (!same)
      PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX,
                              "%s: a partial result of a different configuration; remove it or use --force", path));
  }
  if (!same) {
    PetscCallH5(H5Fclose(*file));
    *file = H5I_INVALID_HID;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultPartialCheck(MPI_Comm comm, const char dir[], const VarproConfig *cfg)
{
  PetscMPIInt    rank;
  PetscErrorCode ierr = 0;
  hid_t          file = H5I_INVALID_HID;
  char           path[VARPRO_PATH_MAX + 8], reason[VARPRO_REASON_MAX], msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(VarproResultPath(dir, cfg, path, VARPRO_PATH_MAX));
  PetscCall(PetscStrlcat(path, ".partial", sizeof(path)));
  if (rank == 0) {
    ierr = PartialOpen_Private(path, H5F_ACC_RDONLY, cfg, &file, reason, sizeof(reason), msg);
    if (!ierr && file >= 0 && H5Fclose(file) < 0) ierr = PETSC_ERR_LIB;
  }
  PetscCall(H5RootSync_Private(comm, ierr, path));
  PetscCall(VarproInputErrorSync(comm, msg));
  PetscFunctionReturn(0);
}

/* Rank 0: opens the datasets of h in file, checks their shapes and types against those expected,
   that they are extendible and hold at most max_rows rows, and allocates the buffers; *rows is
   the number of rows they all hold. A problem goes to reason. Call with HDF5's error printing off: the file
   was left by a run that died. */
static PetscErrorCode HistoryOpen_Private(hid_t file, ResultHistory *h, hsize_t max_rows, hsize_t *rows, char reason[],
                                          size_t len)
{
  PetscFunctionBeginUser;
  for (PetscInt c = 0; c < h->ncolumns && !reason[0]; c++) {
    ResultColumn *col     = &h->column[c];
    hsize_t       dims[3] = {H5_ANY_SIZE, col->tail[0], col->tail[1]};
    H5Shape       shape;

    col->dset = H5Dopen2(file, col->name, H5P_DEFAULT);
    PetscCall(H5ShapeOf_Private(col->dset, &shape));
    if (!H5ShapeIs(&shape, col->integer ? H5T_INTEGER : H5T_FLOAT, col->ndims, dims))
      PetscCall(PetscSNPrintf(reason, len, "dataset '%s' is missing or has the wrong shape or type", col->name));
    else if (!shape.extendible)
      PetscCall(PetscSNPrintf(reason, len, "dataset '%s' is not extendible", col->name));
    else if (shape.dims[0] > max_rows)
      PetscCall(PetscSNPrintf(reason, len, "dataset '%s' holds %llu entries, more than the run's %llu", col->name,
                              (unsigned long long)shape.dims[0], (unsigned long long)max_rows));
    if (reason[0]) break;
    /* A kill between the extensions of two columns leaves them of different lengths: the rows
       they all hold count (the resume cuts every column back to fewer still) */
    *rows = c > 0 ? PetscMin(*rows, shape.dims[0]) : shape.dims[0];
    PetscCall(PetscMalloc1((size_t)h->capacity * col->rowlen * 8, &col->buf));
  }
  PetscFunctionReturn(0);
}

/* Rank 0: reads count rows of col from row first into buf; *ok is false when HDF5 cannot. */
static PetscErrorCode ColumnRead_Private(ResultColumn *col, hsize_t first, hsize_t count, void *buf, PetscBool *ok)
{
  hsize_t start[3] = {first, 0, 0}, size[3] = {count, col->tail[0], col->tail[1]};
  hid_t   filespace, memspace;

  PetscFunctionBeginUser;
  *ok = PETSC_FALSE;
  if (count == 0) {
    *ok = PETSC_TRUE;
    PetscFunctionReturn(0);
  }
  if ((filespace = H5Dget_space(col->dset)) < 0) PetscFunctionReturn(0);
  if ((memspace = H5Screate_simple(col->ndims, size, NULL)) >= 0) {
    *ok = (PetscBool)(H5Sselect_hyperslab(filespace, H5S_SELECT_SET, start, NULL, size, NULL) >= 0 &&
                      H5Dread(col->dset, col->integer ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, memspace, filespace,
                              H5P_DEFAULT, buf) >= 0);
    PetscCallH5(H5Sclose(memspace));
  }
  PetscCallH5(H5Sclose(filespace));
  PetscFunctionReturn(0);
}

/* Whether the n steps are strictly increasing, from 0 to at most last. */
static PetscBool StepsIncreasing(hsize_t n, const PetscInt64 steps[], PetscInt64 last)
{
  for (hsize_t i = 0; i < n; i++)
    if (steps[i] < 0 || steps[i] > last || (i > 0 && steps[i] <= steps[i - 1])) return PETSC_FALSE;
  return PETSC_TRUE;
}

/* Rank 0, resuming: the partial file's teacher_features must be T x 2 finite float64 values; a
   problem goes to reason. Call with HDF5's error printing off. */
static PetscErrorCode ResultCheckTeacher_Private(VarproResult res, char reason[], size_t len)
{
  const hsize_t dims[2] = {(hsize_t)res->T, 2};
  hid_t         dset    = H5Dopen2(res->file, "teacher_features", H5P_DEFAULT);
  H5Shape       shape;
  PetscReal    *teacher;
  PetscBool     ok;

  PetscFunctionBeginUser;
  PetscCall(H5ShapeOf_Private(dset, &shape));
  ok = H5ShapeIs(&shape, H5T_FLOAT, 2, dims);
  if (ok) {
    PetscCall(PetscMalloc1(2 * res->T, &teacher));
    ok = (PetscBool)(H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, teacher) >= 0 &&
                     AllFinite(2 * res->T, teacher));
    PetscCall(PetscFree(teacher));
  }
  if (dset >= 0) PetscCallH5(H5Dclose(dset));
  if (!ok)
    PetscCall(PetscSNPrintf(reason, len, "dataset 'teacher_features' is missing, damaged or not %" PetscInt_FMT " x 2",
                            res->T));
  PetscFunctionReturn(0);
}

/* Rank 0, resuming: reads the steps of the snapshots (rows[1]) and MMDs (rows[2]) of the partial
   file, which must be strictly increasing steps of the run, and checks its teacher; a problem goes
   to reason. Call with HDF5's error printing off. */
static PetscErrorCode ResultReadSteps_Private(VarproResult res, const hsize_t rows[3], PetscInt64 snapshot_steps[],
                                              PetscInt64 mmd_steps[], char reason[], size_t len)
{
  PetscBool ok;

  PetscFunctionBeginUser;
  PetscCall(ColumnRead_Private(&res->snapshots.column[0], 0, rows[1], snapshot_steps, &ok));
  if (ok) PetscCall(ColumnRead_Private(&res->mmds.column[0], 0, rows[2], mmd_steps, &ok));
  if (!ok)
    PetscCall(PetscStrncpy(reason, "cannot read its histories", len));
  else if (!StepsIncreasing(rows[1], snapshot_steps, res->epochs))
    PetscCall(PetscSNPrintf(reason, len, "snapshot_steps are not strictly increasing steps within 0 to %" PetscInt_FMT,
                            res->epochs));
  else if (!StepsIncreasing(rows[2], mmd_steps, res->epochs))
    PetscCall(PetscSNPrintf(reason, len, "mmd_steps are not strictly increasing steps within 0 to %" PetscInt_FMT,
                            res->epochs));
  else
    PetscCall(ResultCheckTeacher_Private(res, reason, len));
  PetscFunctionReturn(0);
}

/* Rank 0: the step to resume from, with its features (M x 2) and, from a checkpoint, the trainer's
   state (*has_state): the latest checkpoint whose losses are all in the file, or the last such
   snapshot when it is later and snapshots_exact (a snapshot holds no state, so it is an exact
   point to resume from only when the trainer carries none) or when there is no checkpoint.
   keep[] is the rows of losses, snapshots and MMDs before that step. *step is -1 and reason says
   why when there is none, or when the file holds what no run of this configuration writes (more
   steps than epochs, steps out of order, NaN or Inf where it resumes). Call with HDF5's error
   printing off. */
static PetscErrorCode ResultFindResumeStep_Private(VarproResult res, PetscBool snapshots_exact, PetscInt *step,
                                                   PetscReal features[], PetscReal state[], PetscBool *has_state,
                                                   hsize_t keep[3], char reason[], size_t len)
{
  ResultHistory *h[3]        = {&res->losses, &res->snapshots, &res->mmds};
  const hsize_t  max_rows[3] = {(hsize_t)res->epochs, (hsize_t)res->epochs + 1, (hsize_t)res->epochs + 1};
  hsize_t        rows[3]     = {0, 0, 0}, k;
  PetscInt64    *snapshot_steps, *mmd_steps;
  PetscInt       c     = -1;
  PetscBool      found = PETSC_FALSE, ok;
  PetscReal     *stored;

  PetscFunctionBeginUser;
  *step      = -1;
  *has_state = PETSC_FALSE;
  for (int i = 0; i < 3 && !reason[0]; i++)
    PetscCall(HistoryOpen_Private(res->file, h[i], max_rows[i], &rows[i], reason, len));
  if (reason[0]) PetscFunctionReturn(0);
  PetscCall(PetscMalloc2(rows[1] + 1, &snapshot_steps, rows[2] + 1, &mmd_steps));
  PetscCall(ResultReadSteps_Private(res, rows, snapshot_steps, mmd_steps, reason, len));
  ok = (PetscBool)!reason[0];

  /* Losses of steps 0 .. s-1 are needed to continue at step s */
  for (k = rows[1]; ok && k > 0 && snapshot_steps[k - 1] > (PetscInt64)rows[0];) k--;
  if (ok && k > 0) PetscCall(ColumnRead_Private(&res->snapshots.column[1], k - 1, 1, features, &ok));
  if (ok && k > 0) {
    *step   = (PetscInt)snapshot_steps[k - 1];
    keep[0] = (hsize_t)*step;
    keep[1] = k - 1;
  }

  /* A checkpoint beats the snapshot when it is later, or when only a checkpoint is exact */
  PetscCall(PetscMalloc1(2 * res->M, &stored));
  if (ok)
    PetscCall(CheckpointFind_Private(res, snapshots_exact ? *step : -1, (PetscInt)rows[0], &c, stored, state, &found,
                                     has_state, reason, len));
  if (ok && found) {
    PetscCall(PetscArraycpy(features, stored, 2 * res->M));
    *step   = c;
    keep[0] = (hsize_t)c;
    for (keep[1] = 0; keep[1] < rows[1] && snapshot_steps[keep[1]] < c;) keep[1]++;
  }
  PetscCall(PetscFree(stored));
  if (ok && !found && !reason[0] && *step >= 0 && !AllFinite(2 * res->M, features))
    PetscCall(PetscSNPrintf(reason, len, "the snapshot of step %" PetscInt_FMT " holds a NaN or Inf", *step));

  /* MMDs of the steps before s */
  for (keep[2] = 0; *step >= 0 && keep[2] < rows[2] && mmd_steps[keep[2]] < *step;) keep[2]++;
  PetscCall(PetscFree2(snapshot_steps, mmd_steps));
  if (!reason[0] && !ok)
    PetscCall(PetscStrncpy(reason, "cannot read its histories", len));
  else if (!reason[0] && *step < 0)
    PetscCall(PetscStrncpy(reason, "no snapshot saved", len));
  if (reason[0]) *step = -1;
  PetscFunctionReturn(0);
}

/* Rank 0: cuts every dataset of h to rows rows; appends continue from there. */
static PetscErrorCode HistoryTruncate_Private(ResultHistory *h, hsize_t rows)
{
  PetscFunctionBeginUser;
  for (PetscInt c = 0; c < h->ncolumns; c++) {
    hsize_t dims[3] = {rows, h->column[c].tail[0], h->column[c].tail[1]};

    PetscCallH5(H5Dset_extent(h->column[c].dset, dims));
  }
  h->nfile = rows;
  h->nbuf  = 0;
  PetscFunctionReturn(0);
}

#define ATTRIBUTE_LIST_MAX 32768

/* Rank 0: appends item (its newlines made spaces) to the string attribute name of loc, after sep
   when it holds something; the attribute is created when absent or unreadable. Past 32 KiB its
   oldest items give way to the item dropped, which then comes first. */
static PetscErrorCode H5AttrAppend_Private(hid_t loc, const char name[], const char sep[], const char dropped[],
                                           const char item[])
{
  char           *old = NULL, *text, reason[VARPRO_REASON_MAX];
  const char     *keep;
  size_t          room = strlen(dropped) + 2 * strlen(sep) + strlen(item) + 1, len, at;
  H5ErrorPrinting saved;
  PetscErrorCode  ierr;

  PetscFunctionBeginUser;
  PetscCall(H5ErrorPrintingOff_Private(&saved));
  ierr = H5AttrReadString_Private(loc, name, &old, reason, sizeof(reason));
  PetscCall(H5ErrorPrintingRestore_Private(&saved));
  PetscCall(ierr);
  keep = old ? old : "";
  while (strlen(keep) + room > ATTRIBUTE_LIST_MAX && strstr(keep, sep)) keep = strstr(keep, sep) + strlen(sep);
  if (strlen(keep) + room > ATTRIBUTE_LIST_MAX) keep = "";
  len = strlen(keep) + room;
  PetscCall(PetscMalloc1(len, &text));
  PetscCall(PetscSNPrintf(text, len, "%s%s%s%s", old && keep != old ? dropped : "", old && keep != old ? sep : "", keep,
                          keep[0] ? sep : ""));
  at = strlen(text);
  PetscCall(PetscStrncpy(text + at, item, len - at));
  for (char *c = text + at; *c; c++)
    if (*c == '\n' || *c == '\r') *c = ' ';
  ierr = H5AttrWriteString_Private(loc, name, text);
  PetscCall(PetscFree(text));
  PetscCall(PetscFree(old));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

/* Rank 0: adds step to the attribute "resumed_from", the steps runs were resumed from. */
static PetscErrorCode ResultNoteResume_Private(VarproResult res, PetscInt step)
{
  char text[32];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(text, sizeof(text), "%" PetscInt_FMT, step));
  PetscCall(H5AttrAppend_Private(res->file, "resumed_from", " ", "...", text));
  PetscFunctionReturn(0);
}

/* Rank 0: opens the partial file of cfg for appending, cut back to the state at its last snapshot.
   When there is none to resume from, *step is -1, the file is closed and note says why (empty when
   there is no partial file); a partial result of another configuration goes to msg. */
static PetscErrorCode ResultResumeRoot_Private(VarproResult res, const VarproConfig *cfg, PetscBool snapshots_exact,
                                               PetscInt *step, PetscReal features[], PetscReal state[],
                                               PetscBool *has_state, char note[], char msg[])
{
  hsize_t         keep[3] = {0, 0, 0};
  char            reason[VARPRO_REASON_MAX];
  H5ErrorPrinting saved;
  PetscErrorCode  ierr;

  PetscFunctionBeginUser;
  *step = -1;
  PetscCall(PartialOpen_Private(res->partial_path, H5F_ACC_RDWR, cfg, &res->file, reason, sizeof(reason), msg));
  if (res->file >= 0) {
    PetscCall(H5ErrorPrintingOff_Private(&saved));
    ierr = ResultFindResumeStep_Private(res, snapshots_exact, step, features, state, has_state, keep, reason,
                                        sizeof(reason));
    PetscCall(H5ErrorPrintingRestore_Private(&saved));
    PetscCall(ierr);
  }
  if (*step < 0) {
    if (reason[0])
      PetscCall(
        PetscSNPrintf(note, VARPRO_MSG_MAX, "%s: cannot resume (%s); starting over", res->partial_path, reason));
    if (res->file >= 0) {
      PetscCall(CheckpointClose_Private(res, PETSC_FALSE));
      PetscCall(HistoryClose_Private(&res->losses));
      PetscCall(HistoryClose_Private(&res->snapshots));
      PetscCall(HistoryClose_Private(&res->mmds));
      PetscCallH5(H5Fclose(res->file));
      res->file = H5I_INVALID_HID;
    }
    PetscFunctionReturn(0);
  }

  /* Forget what belongs to steps from s on, checkpoints included: the loop records it again */
  for (int k = 0; k < 2; k++)
    if (res->ckpt_step[k] > *step) res->ckpt_step[k] = -1;
  PetscCall(CheckpointWriteSteps_Private(res));
  PetscCall(HistoryTruncate_Private(&res->losses, keep[0]));
  PetscCall(HistoryTruncate_Private(&res->snapshots, keep[1]));
  PetscCall(HistoryTruncate_Private(&res->mmds, keep[2]));
  PetscCall(ResultNoteResume_Private(res, *step));
  PetscCall(ResultFlush_Private(res));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultResume(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscInt M, PetscInt T,
                                  PetscInt nstate, PetscBool snapshots_exact, PetscInt *step, PetscReal features[],
                                  PetscReal state[], PetscBool *has_state, VarproResult *res)
{
  VarproResult   r;
  PetscErrorCode ierr                 = 0;
  char           note[VARPRO_MSG_MAX] = "", msg[VARPRO_MSG_MAX] = "";
  PetscReal     *stored;
  PetscMPIInt    rank, n;

  PetscFunctionBeginUser;
  *res       = NULL;
  *has_state = PETSC_FALSE;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(ResultNew_Private(comm, dir, cfg, M, T, nstate, &r));

  /* Rank 0 reads and cuts back; not PetscCall, since its outcome is shared before any rank returns.
     The stored features and state go to the caller only once the resume is certain. */
  PetscCall(PetscMalloc1(2 * M + nstate, &stored));
  if (rank == 0)
    ierr = ResultResumeRoot_Private(r, cfg, snapshots_exact, step, stored, stored + 2 * M, has_state, note, msg);
  PetscCall(H5RootSync_Private(comm, ierr, r->partial_path));
  PetscCallMPI(MPI_Bcast(step, 1, MPIU_INT, 0, comm));
  if (*step < 0) PetscCall(VarproResultDestroy(&r));
  if (*step < 0) PetscCall(PetscFree(stored));
  PetscCall(VarproInputErrorSync(comm, msg));
  if (rank == 0 && note[0]) PetscCall(PetscPrintf(PETSC_COMM_SELF, "%s\n", note));
  if (*step < 0) PetscFunctionReturn(0);

  /* Every rank continues from the same features and state and expects the same next steps */
  PetscCall(PetscMPIIntCast(2 * M + nstate, &n));
  PetscCallMPI(MPI_Bcast(stored, n, MPIU_REAL, 0, comm));
  PetscCallMPI(MPI_Bcast(has_state, 1, MPIU_BOOL, 0, comm));
  PetscCall(PetscArraycpy(features, stored, 2 * M));
  if (*has_state) PetscCall(PetscArraycpy(state, stored + 2 * M, nstate));
  PetscCall(PetscFree(stored));
  r->losses.last_step = r->snapshots.last_step = r->mmds.last_step = *step > 0 ? *step - 1 : PETSC_MIN_INT;
  *res                                                             = r;
  PetscFunctionReturn(0);
}

/* Rank 0: the teacher as a T x 2 contiguous dataset. */
static PetscErrorCode ResultWriteTeacherRoot_Private(VarproResult res, const PetscReal teacher_features[])
{
  hsize_t dims[2] = {(hsize_t)res->T, 2};
  hid_t   space, dset;

  PetscFunctionBeginUser;
  PetscCallH5(space = H5Screate_simple(2, dims, NULL));
  PetscCallH5(
    dset = H5Dcreate2(res->file, "teacher_features", H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  PetscCallH5(H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, teacher_features));
  PetscCallH5(H5Dclose(dset));
  PetscCallH5(H5Sclose(space));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultWriteTeacher(VarproResult res, const PetscReal teacher_features[])
{
  PetscErrorCode ierr = 0;

  PetscFunctionBeginUser;
  PetscCall(ResultCheckOpen_Private(res, "teacher_features"));
  if (res->rank == 0) ierr = ResultWriteTeacherRoot_Private(res, teacher_features);
  PetscCall(H5RootSync_Private(res->comm, ierr, res->partial_path));
  PetscFunctionReturn(0);
}

/* Not collective: called every step, so no communication; rank 0 buffers. */
PetscErrorCode VarproResultAppendLoss(VarproResult res, PetscInt step, PetscReal loss, PetscReal step_time)
{
  const void *row[2] = {&loss, &step_time};

  PetscFunctionBeginUser;
  PetscCall(HistoryCheckStep_Private(res, &res->losses, step, PETSC_TRUE));
  if (res->rank != 0) PetscFunctionReturn(0);
  PetscCall(ResultAppend_Private(res, &res->losses, row));
  PetscFunctionReturn(0);
}

/* Not collective; features is M x 2, outer_weights is M. */
PetscErrorCode VarproResultAppendSnapshot(VarproResult res, PetscInt step, const PetscReal features[],
                                          const PetscReal outer_weights[])
{
  PetscInt64  step64 = step;
  const void *row[3] = {&step64, features, outer_weights};

  PetscFunctionBeginUser;
  PetscCall(HistoryCheckStep_Private(res, &res->snapshots, step, PETSC_FALSE));
  if (res->rank != 0) PetscFunctionReturn(0);
  PetscCall(ResultAppend_Private(res, &res->snapshots, row));
  PetscFunctionReturn(0);
}

/* Not collective. */
PetscErrorCode VarproResultAppendMMD(VarproResult res, PetscInt step, PetscReal mmd)
{
  PetscInt64  step64 = step;
  const void *row[2] = {&step64, &mmd};

  PetscFunctionBeginUser;
  PetscCall(HistoryCheckStep_Private(res, &res->mmds, step, PETSC_FALSE));
  if (res->rank != 0) PetscFunctionReturn(0);
  PetscCall(ResultAppend_Private(res, &res->mmds, row));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultSetAttributeReal(VarproResult res, const char name[], PetscReal value)
{
  PetscErrorCode ierr = 0;

  PetscFunctionBeginUser;
  PetscCall(ResultCheckOpen_Private(res, name));
  if (res->rank == 0) ierr = H5AttrWriteReal_Private(res->file, name, value);
  PetscCall(H5RootSync_Private(res->comm, ierr, res->partial_path));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultSetAttributeInt(VarproResult res, const char name[], PetscInt64 value)
{
  PetscErrorCode ierr = 0;

  PetscFunctionBeginUser;
  PetscCall(ResultCheckOpen_Private(res, name));
  if (res->rank == 0) ierr = H5AttrWriteInt_Private(res->file, name, value);
  PetscCall(H5RootSync_Private(res->comm, ierr, res->partial_path));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultSetAttributeString(VarproResult res, const char name[], const char value[])
{
  PetscErrorCode ierr = 0;

  PetscFunctionBeginUser;
  PetscCall(ResultCheckOpen_Private(res, name));
  if (res->rank == 0) ierr = H5AttrWriteString_Private(res->file, name, value);
  PetscCall(H5RootSync_Private(res->comm, ierr, res->partial_path));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultAppendAttributeLine(VarproResult res, const char name[], const char line[])
{
  PetscErrorCode ierr = 0;

  PetscFunctionBeginUser;
  PetscCall(ResultCheckOpen_Private(res, name));
  if (res->rank == 0) ierr = H5AttrAppend_Private(res->file, name, "\n", "(earlier lines dropped)", line);
  PetscCall(H5RootSync_Private(res->comm, ierr, res->partial_path));
  PetscFunctionReturn(0);
}

/* Rank 0: writes what is buffered and closes every dataset and the file. */
static PetscErrorCode ResultClose_Private(VarproResult res)
{
  PetscFunctionBeginUser;
  PetscCall(ResultFlush_Private(res));
  PetscCall(HistoryClose_Private(&res->losses));
  PetscCall(HistoryClose_Private(&res->snapshots));
  PetscCall(HistoryClose_Private(&res->mmds));
  PetscCall(CheckpointClose_Private(res, PETSC_FALSE));
  PetscCallH5(H5Fclose(res->file));
  res->file = H5I_INVALID_HID;
  PetscFunctionReturn(0);
}

/* Rank 0: marks the file complete, closes it and gives it its final name in one atomic rename,
   replacing an earlier result of the same configuration. The final name must hold a regular
   file or nothing; otherwise, or when the rename fails, the file stays <name>.h5.partial, not
   marked complete, and msg says why. */
static PetscErrorCode ResultFinishRoot_Private(VarproResult res, char msg[])
{
  hid_t file;
  int   err;

  PetscFunctionBeginUser;
  PetscCall(VarproPathCheckPlain(res->path, "result file", msg));
  if (msg[0]) {
    PetscCall(ResultClose_Private(res));
    PetscCall(PetscStrlcat(msg, "; the run is kept as ", VARPRO_MSG_MAX));
    PetscCall(PetscStrlcat(msg, res->partial_path, VARPRO_MSG_MAX));
    PetscFunctionReturn(0);
  }
  PetscCall(CheckpointClose_Private(res, PETSC_TRUE));
  PetscCall(H5AttrWriteInt_Private(res->file, "complete", 1));
  PetscCall(ResultClose_Private(res));
  if (!rename(res->partial_path, res->path)) PetscFunctionReturn(0);

  /* A file under the partial name never says it is complete */
  err = errno;
  PetscCallH5(file = H5Fopen(res->partial_path, H5F_ACC_RDWR, H5P_DEFAULT));
  PetscCallH5(H5Adelete(file, "complete"));
  PetscCallH5(H5Fclose(file));
  PetscCall(PetscSNPrintf(msg, VARPRO_MSG_MAX, "cannot rename %s to %s: %s; the run is kept as %s", res->partial_path,
                          res->path, strerror(err), res->partial_path));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproResultFinish(VarproResult res)
{
  PetscErrorCode ierr                = 0;
  char           msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCall(ResultCheckOpen_Private(res, "complete"));
  if (res->rank == 0) ierr = ResultFinishRoot_Private(res, msg);
  PetscCall(H5RootSync_Private(res->comm, ierr, res->partial_path));
  res->finished = PETSC_TRUE;
  PetscCall(VarproInputErrorSync(res->comm, msg));
  PetscFunctionReturn(0);
}

/* Not collective, so that it is safe on error paths: an unfinished result is flushed, closed and
   left as <name>.h5.partial. */
PetscErrorCode VarproResultDestroy(VarproResult *res)
{
  VarproResult r = *res;

  PetscFunctionBeginUser;
  if (!r) PetscFunctionReturn(0);
  if (r->rank == 0 && r->file >= 0) PetscCall(ResultClose_Private(r));
  PetscCall(HistoryClose_Private(&r->losses));
  PetscCall(HistoryClose_Private(&r->snapshots));
  PetscCall(HistoryClose_Private(&r->mmds));
  PetscCall(PetscFree(*res));
  PetscFunctionReturn(0);
}
