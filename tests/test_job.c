/* Job files: a good file expands exactly as documented, its canonical text is fixed, and every
   kind of mistake fails on every rank with PETSC_ERR_USER_INPUT and a message that starts with
   file:line:column and names the field.

   Usage: test_job DIR, where DIR holds good.yaml and the bad fixtures. Prints one line per check;
   exits 1 when any check fails on any rank. */
#define _POSIX_C_SOURCE 200809L

#include <varpro/varpro.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  MPI_Comm    comm;
  PetscMPIInt rank;
  const char *dir; /* the fixtures */
  PetscInt    nchecks, nfailed;
} Tester;

/* The message of the error that started the last failure */
static char captured[4096];

static PetscErrorCode CaptureError(MPI_Comm comm, int line, const char *fun, const char *file, PetscErrorCode n,
                                   PetscErrorType p, const char *mess, void *ctx)
{
  (void)comm, (void)line, (void)fun, (void)file, (void)ctx;
  if (p == PETSC_ERROR_INITIAL) (void)snprintf(captured, sizeof(captured), "%s", mess ? mess : "");
  return n;
}

/* One check, passed when it passes on every rank; rank 0 prints one line for it. */
static PetscErrorCode Check(Tester *t, PetscBool ok, const char what[])
{
  int all = ok ? 1 : 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, t->comm));
  t->nchecks++;
  if (!all) t->nfailed++;
  PetscCall(PetscPrintf(t->comm, "%s %3d - %s\n", all ? "ok  " : "FAIL", (int)t->nchecks, what));
  PetscFunctionReturn(0);
}

/* ---- the good file ---------------------------------------------------------------------- */

typedef struct {
  const char          *name;
  VarproRegularization regularization;
  PetscInt             student_width;
  PetscReal            lambda, gamma;
  PetscInt64           seed;
  PetscInt             epochs, N, teacher_width;
  PetscReal            time_scale;
  PetscInt             saving_step, mmd_points;
  const char          *data_file;
  PetscInt             line;
} Expected;

#define TAU 0.0009765625
#define B VARPRO_BIASED
#define U VARPRO_UNBIASED

/* good.yaml, expanded: the grid with regularization outermost and seed fastest, then the named
   run, then the data-file run; defaults epochs 2000 and lambda 0.01 apply unless overridden. */
static const Expected good[] = {
  {"biased-M32-lambda0.01-gamma100-seed0", B, 32, 0.01, 100, 0, 2000, 4096, 4096, TAU, 1, 1001, "", 7},
  {"biased-M32-lambda0.01-gamma100-seed7", B, 32, 0.01, 100, 7, 2000, 4096, 4096, TAU, 1, 1001, "", 7},
  {"biased-M128-lambda0.01-gamma100-seed0", B, 128, 0.01, 100, 0, 2000, 4096, 4096, TAU, 1, 1001, "", 7},
  {"biased-M128-lambda0.01-gamma100-seed7", B, 128, 0.01, 100, 7, 2000, 4096, 4096, TAU, 1, 1001, "", 7},
  {"unbiased-M32-lambda0.01-gamma100-seed0", U, 32, 0.01, 100, 0, 2000, 4096, 4096, TAU, 1, 1001, "", 7},
  {"unbiased-M32-lambda0.01-gamma100-seed7", U, 32, 0.01, 100, 7, 2000, 4096, 4096, TAU, 1, 1001, "", 7},
  {"unbiased-M128-lambda0.01-gamma100-seed0", U, 128, 0.01, 100, 0, 2000, 4096, 4096, TAU, 1, 1001, "", 7},
  {"unbiased-M128-lambda0.01-gamma100-seed7", U, 128, 0.01, 100, 7, 2000, 4096, 4096, TAU, 1, 1001, "", 7},
  {"single-run", U, 64, 2.5e-4, -1, 0, 10, 512, 2, 0.5, 5, 11, "", 12},
  {"biased-x-lambda0.01-gamma1.5-seed3", B, 0, 0.01, 1.5, 3, 2000, 0, 0, TAU, 1, 1001, "tests/data/x.h5", 23},
  {"biased-x-lambda0.01-gamma100-seed3", B, 0, 0.01, 100, 3, 2000, 0, 0, TAU, 1, 1001, "tests/data/x.h5", 23},
};

/* The canonical text of good[8] */
static const char single_run_text[] = "name: \"single-run\"\n"
                                      "regularization: unbiased\n"
                                      "student_width: 64\n"
                                      "lambda: 0.00025000000000000001\n"
                                      "gamma: -1\n"
                                      "seed: 0\n"
                                      "epochs: 10\n"
                                      "N: 512\n"
                                      "teacher_width: 2\n"
                                      "time_scale: 0.5\n"
                                      "saving_step: 5\n"
                                      "mmd_points: 11\n"
                                      "data_file: \"\"\n";

/* The first field of cfg that differs from e, or NULL. */
static const char *ConfigMismatch(const VarproConfig *cfg, const Expected *e, PetscInt index)
{
  if (strcmp(cfg->name, e->name)) return "name";
  if (cfg->index != index) return "index";
  if (cfg->regularization != e->regularization) return "regularization";
  if (cfg->student_width != e->student_width) return "student_width";
  if (cfg->lambda != e->lambda) return "lambda";
  if (cfg->gamma != e->gamma) return "gamma";
  if (cfg->seed != e->seed) return "seed";
  if (cfg->epochs != e->epochs) return "epochs";
  if (cfg->N != e->N) return "N";
  if (cfg->teacher_width != e->teacher_width) return "teacher_width";
  if (cfg->time_scale != e->time_scale) return "time_scale";
  if (cfg->saving_step != e->saving_step) return "saving_step";
  if (cfg->mmd_points != e->mmd_points) return "mmd_points";
  if (strcmp(cfg->data_file, e->data_file)) return "data_file";
  if (cfg->line != e->line) return "line";
  return NULL;
}

/* good.yaml: count, order, every field of every configuration, and the canonical text. */
static PetscErrorCode TestGood(Tester *t)
{
  const PetscInt n = (PetscInt)(sizeof(good) / sizeof(good[0]));
  VarproJob      job;
  VarproConfig   cfg;
  char           path[PETSC_MAX_PATH_LEN], what[256], text[4096];
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/good.yaml", t->dir));
  PetscCall(VarproJobLoad(t->comm, path, &job));
  PetscCall(Check(t, !strcmp(job.path, path) && !strcmp(job.output_dir, "results/test-job"),
                  "good.yaml: path and output directory"));
  PetscCall(Check(t, job.checkpoint_steps == 250 && job.checkpoint_minutes == 10.0,
                  "good.yaml: a checkpoint every 250 steps and, by default, every 10 minutes"));
  PetscCall(PetscSNPrintf(what, sizeof(what), "good.yaml: %d configurations (got %d)", (int)n, (int)job.nconfigs));
  PetscCall(Check(t, job.nconfigs == n, what));
  for (PetscInt i = 0; i < n && job.nconfigs == n; i++) {
    const char *bad = ConfigMismatch(&job.configs[i], &good[i], i);

    if (bad)
      fprintf(stderr, "[rank %d] configuration %d (%s): %s differs\n", t->rank, (int)i, job.configs[i].name, bad);
    PetscCall(PetscSNPrintf(what, sizeof(what), "good.yaml: configuration %d is %s", (int)i, good[i].name));
    PetscCall(Check(t, bad ? PETSC_FALSE : PETSC_TRUE, what));
  }

  /* Canonical text: exact; strings quoted and escaped; too small a buffer is an error */
  cfg = job.configs[PetscMin(8, job.nconfigs - 1)];
  PetscCall(VarproConfigFormat(&cfg, text, sizeof(text)));
  if (strcmp(text, single_run_text)) fprintf(stderr, "[rank %d] canonical text:\n%s", t->rank, text);
  PetscCall(Check(t, !strcmp(text, single_run_text), "canonical text of single-run"));
  PetscCall(PetscStrncpy(cfg.data_file, "a \"b\\c\n", sizeof(cfg.data_file)));
  PetscCall(VarproConfigFormat(&cfg, text, sizeof(text)));
  PetscCall(Check(t, strstr(text, "\ndata_file: \"a \\\"b\\\\c\\x0A\"\n") ? PETSC_TRUE : PETSC_FALSE,
                  "canonical text escapes quote, backslash and newline"));
  PetscCall(PetscPushErrorHandler(CaptureError, NULL));
  ierr = VarproConfigFormat(&cfg, text, 32);
  PetscCall(PetscPopErrorHandler());
  PetscCall(Check(t, ierr == PETSC_ERR_ARG_SIZ, "canonical text into a short buffer fails with PETSC_ERR_ARG_SIZ"));

  PetscCall(VarproJobDestroy(&job));
  PetscCall(Check(t, !job.configs && !job.nconfigs && !job.path[0], "VarproJobDestroy empties the job"));
  PetscFunctionReturn(0);
}

/* ---- bad files -------------------------------------------------------------------------- */

/* Loads path, which must fail with PETSC_ERR_USER_INPUT, leave the job empty, and give a message
   starting "<path>:<line>:<column>: " (just "<path>: " when line is 0) followed by text. */
static PetscErrorCode ExpectBad(Tester *t, const char path[], const char label[], int line, int column,
                                const char text[])
{
  VarproJob      job;
  char           prefix[PETSC_MAX_PATH_LEN + 64], what[PETSC_MAX_PATH_LEN + 64];
  PetscErrorCode ierr;
  PetscBool      ok;

  PetscFunctionBeginUser;
  if (line)
    (void)snprintf(prefix, sizeof(prefix), "%s:%d:%d: ", path, line, column);
  else
    (void)snprintf(prefix, sizeof(prefix), "%s: ", path);
  captured[0] = 0;
  PetscCall(PetscPushErrorHandler(CaptureError, NULL));
  ierr = VarproJobLoad(t->comm, path, &job);
  PetscCall(PetscPopErrorHandler());
  ok = (ierr == PETSC_ERR_USER_INPUT && !strncmp(captured, prefix, strlen(prefix)) &&
        !strncmp(captured + strlen(prefix), text, strlen(text)) && !job.configs && !job.nconfigs)
         ? PETSC_TRUE
         : PETSC_FALSE;
  if (!ok)
    fprintf(stderr, "[rank %d] error %d, message: %s\n  expected: %s%s...\n", t->rank, (int)ierr, captured, prefix,
            text);
  (void)snprintf(what, sizeof(what), "%s: %s", label, text);
  PetscCall(Check(t, ok, what));
  PetscFunctionReturn(0);
}

typedef struct {
  const char *file;
  int         line, column;
  const char *text;
} BadFixture;

static const BadFixture bad[] = {
  {"syntax.yaml", 4, 3, "yaml: did not find expected '-' indicator"},
  {"bad-utf8.yaml", 4, 17, "yaml: invalid leading UTF-8 octet"},
  {"empty.yaml", 1, 1, "job file: the file is empty"},
  {"comments-only.yaml", 1, 1, "job file: the file is empty"},
  {"two-documents.yaml", 4, 1, "job file: more than one YAML document"},
  {"top-sequence.yaml", 1, 1, "job file: the top level must be a mapping"},
  {"missing-output.yaml", 1, 1, "output: required key is missing"},
  {"missing-runs.yaml", 2, 1, "runs: required key is missing"},
  {"output-empty.yaml", 1, 9, "output: must not be empty"},
  {"runs-empty.yaml", 2, 7, "runs: empty sequence"},
  {"runs-scalar.yaml", 2, 7, "runs: expected a sequence of run mappings, got a scalar"},
  {"run-scalar.yaml", 3, 5, "runs: expected a mapping of run keys, got a scalar"},
  {"checkpoint-steps-range.yaml", 2, 21, "checkpoint.steps: must be >= 0, got -5"},
  {"checkpoint-minutes-range.yaml", 2, 34, "checkpoint.minutes: must be >= 0, got -1"},
  {"checkpoint-unknown-key.yaml", 2, 14, "checkpoint.every: unknown key; allowed keys are steps, minutes"},
  {"checkpoint-scalar.yaml", 2, 13, "checkpoint: expected a mapping {steps: K, minutes: T}, got a scalar"},
  {"unknown-top-key.yaml", 2, 1, "run: unknown key; allowed keys are output, defaults, runs, checkpoint"},
  {"unknown-key.yaml", 4, 5, "learning_rate: unknown key; allowed keys are name, regularization, student_width"},
  {"duplicate-key.yaml", 5, 5, "lambda: duplicate key (first given at line 4, column 5)"},
  {"int-text.yaml", 3, 20, "student_width: expected an integer, got 'abc'"},
  {"int-fraction.yaml", 3, 20, "student_width: expected an integer, got '3.5'"},
  {"int-quoted.yaml", 3, 20, "student_width: expected an integer, got quoted"},
  {"int-overflow.yaml", 4, 11, "seed: out of range, got '99999999999999999999'"},
  {"real-text.yaml", 4, 13, "lambda: expected a real number, got 'fast'"},
  {"real-nan.yaml", 4, 12, "gamma: must be finite, got 'nan'"},
  {"regularization.yaml", 3, 30, "regularization: expected biased or unbiased, got 'both'"},
  {"mapping-for-scalar.yaml", 4, 13, "epochs: expected a single value, got a mapping"},
  {"sequence-for-scalar.yaml", 4, 13, "epochs: expected a single value, got a sequence"},
  {"nested-grid.yaml", 3, 21, "student_width: expected a single value, got a sequence"},
  {"empty-grid.yaml", 4, 11, "seed: empty sequence"},
  {"lambda-range.yaml", 4, 13, "lambda: must be > 0, got 0"},
  {"student-width-range.yaml", 3, 25, "student_width: must be >= 1, got 0"},
  {"N-range.yaml", 4, 8, "N: must be >= 1, got 0"},
  {"epochs-range.yaml", 3, 11, "epochs: must be >= 0, got -1"},
  {"teacher-width-range.yaml", 4, 20, "teacher_width: must be >= 1, got 0"},
  {"time-scale-range.yaml", 4, 17, "time_scale: must be > 0, got -0.5"},
  {"saving-step-range.yaml", 4, 18, "saving_step: must be >= 1, got 0"},
  {"mmd-points-range.yaml", 4, 17, "mmd_points: must be >= 2, got 1"},
  {"anchor.yaml", 2, 11, "defaults: anchors and aliases are not supported"},
  {"alias.yaml", 4, 13, "epochs: anchors and aliases are not supported"},
  {"merge-key.yaml", 3, 5, "<<: merge keys and aliases are not supported"},
  {"tag.yaml", 3, 20, "student_width: tags are not supported"},
  {"student-width-missing.yaml", 3, 5, "student_width: required unless data.file is given"},
  {"name-in-defaults.yaml", 3, 3, "name: not allowed in defaults"},
  {"name-chars.yaml", 3, 11, "name: may hold only letters, digits, '.', '_' and '-', got 'my run'"},
  {"name-on-grid.yaml", 3, 5, "name: given to a run of 2 configurations"},
  {"duplicate-name.yaml", 5, 5,
   "name: duplicate run name 'biased-M64-lambda0.001-gamma100-seed0'; the run at line 3, column 5"},
  {"duplicate-grid-name.yaml", 3, 5,
   "name: duplicate run name 'biased-M32-lambda0.001-gamma100-seed0' from two grid values"},
  {"data-scalar.yaml", 3, 11, "data: expected a mapping {file: PATH}, got a scalar"},
  {"data-unknown-key.yaml", 3, 12, "data.path: unknown key; allowed keys are file"},
  {"data-no-file.yaml", 3, 11, "data.file: required key is missing"},
  {"output-null.yaml", 1, 9, "output: expected a string, got null"},
  {"output-no-value.yaml", 1, 8, "output: expected a string, got null"},
  {"name-null.yaml", 4, 11, "name: expected a string, got null"},
  {"data-file-null.yaml", 3, 18, "data.file: expected a string, got null"},
  {"complex-key.yaml", 2, 3, "keys must be scalars, got a sequence"},
  {"output-control.yaml", 1, 9, "output: contains a control character"},
  {"data-file-control.yaml", 4, 18, "data.file: contains a control character"},
  {"name-dot.yaml", 3, 11, "name: must not start with '.' (a hidden result file), got '.hidden'"},
  {"real-hex.yaml", 4, 13, "lambda: expected a decimal real number, got '0x10'"},
  {"real-hexfloat.yaml", 4, 12, "gamma: expected a decimal real number, got '0x1p-3'"},
};

/* Loads the fixture file of the fixture directory. */
static PetscErrorCode LoadFixture(Tester *t, const char file[], VarproJob *job)
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/%s", t->dir, file));
  PetscCall(VarproJobLoad(t->comm, path, job));
  PetscFunctionReturn(0);
}

/* Quoted, "~" and "null" are strings: null-quoted.yaml loads with them as output, name and file. */
static PetscErrorCode TestQuotedNull(Tester *t)
{
  VarproJob job;

  PetscFunctionBeginUser;
  PetscCall(LoadFixture(t, "null-quoted.yaml", &job));
  PetscCall(Check(t,
                  job.nconfigs == 1 && !strcmp(job.output_dir, "~") && !strcmp(job.configs[0].name, "null") &&
                    !strcmp(job.configs[0].data_file, "NULL"),
                  "null-quoted.yaml: quoted \"~\", 'null' and \"NULL\" are strings"));
  PetscCall(VarproJobDestroy(&job));
  PetscFunctionReturn(0);
}

/* gamma: -0.0 is gamma 0, in the name and the value, as if -0 had not been written. */
static PetscErrorCode TestMinusZero(Tester *t)
{
  VarproJob job;

  PetscFunctionBeginUser;
  PetscCall(LoadFixture(t, "gamma-minus-zero.yaml", &job));
  PetscCall(Check(t,
                  job.nconfigs == 1 && !strcmp(job.configs[0].name, "biased-M4-lambda0.001-gamma0-seed0") &&
                    job.configs[0].gamma == 0 && !signbit(job.configs[0].gamma),
                  "gamma-minus-zero.yaml: gamma -0.0 reads as 0, named gamma0"));
  PetscCall(VarproJobDestroy(&job));
  PetscFunctionReturn(0);
}

/* Every fixture of bad[], and a file that does not exist. */
static PetscErrorCode TestBadFixtures(Tester *t)
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    PetscCall(PetscSNPrintf(path, sizeof(path), "%s/%s", t->dir, bad[i].file));
    PetscCall(ExpectBad(t, path, bad[i].file, bad[i].line, bad[i].column, bad[i].text));
  }
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/does-not-exist.yaml", t->dir));
  PetscCall(ExpectBad(t, path, "does-not-exist.yaml", 0, 0, "cannot open the job file: No such file or directory"));
  PetscFunctionReturn(0);
}

/* ---- generated bad files ---------------------------------------------------------------- */

/* Writes head, middle repeat times, and tail to a new temporary file on rank 0; every rank
   gets its path. */
static PetscErrorCode WriteTemp(Tester *t, const char head[], const char middle[], PetscInt repeat, const char tail[],
                                char path[], size_t len)
{
  const char *tmpdir = getenv("TMPDIR");
  FILE       *fp;
  int         fd;

  PetscFunctionBeginUser;
  if (t->rank == 0) {
    (void)snprintf(path, len, "%s/varpro-test-job-XXXXXX", tmpdir && tmpdir[0] ? tmpdir : "/tmp");
    fd = mkstemp(path);
    PetscCheck(fd >= 0 && (fp = fdopen(fd, "w")), PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN,
               "Cannot create a temporary file %s", path);
    fputs(head, fp);
    for (PetscInt i = 0; i < repeat; i++) fputs(middle, fp);
    fputs(tail, fp);
    PetscCheck(!fclose(fp), PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "Cannot write %s", path);
  }
  PetscCallMPI(MPI_Bcast(path, (PetscMPIInt)len, MPI_CHAR, 0, t->comm));
  PetscFunctionReturn(0);
}

/* Loads a generated file that must fail as ExpectBad says, then removes it. */
static PetscErrorCode ExpectBadGenerated(Tester *t, const char label[], const char head[], const char middle[],
                                         PetscInt repeat, const char tail[], int line, int column, const char text[])
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(WriteTemp(t, head, middle, repeat, tail, path, sizeof(path)));
  PetscCall(ExpectBad(t, path, label, line, column, text));
  if (t->rank == 0) (void)unlink(path);
  PetscFunctionReturn(0);
}

/* Deep nesting fails at the first level the schema does not have; over-long strings and a job
   of too many configurations fail too. */
static PetscErrorCode TestBadGenerated(Tester *t)
{
  const char *head       = "output: out\nruns:\n  - student_width: ";
  char        grid[8192] = "output: out\nruns:\n  - lambda: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n    student_width: [";

  PetscFunctionBeginUser;
  PetscCall(ExpectBadGenerated(t, "100000 nested [ at the top", "", "[", 100000, "\n", 1, 1,
                               "job file: the top level must be a mapping"));
  PetscCall(ExpectBadGenerated(t, "100000 nested [ in a grid", head, "[", 100000, "\n", 3, 21,
                               "student_width: expected a single value, got a sequence"));
  PetscCall(ExpectBadGenerated(t, "100000 nested { in a grid", head, "{a: ", 100000, "\n", 3, 20,
                               "student_width: expected a single value, got a mapping"));
  PetscCall(ExpectBadGenerated(t, "output of 1024 characters", "output: ", "o", VARPRO_PATH_MAX,
                               "\nruns: [{student_width: 1}]\n", 1, 9, "output: longer than 1023 characters"));
  PetscCall(ExpectBadGenerated(t, "output: NULL", "output: NULL", "", 0, "\nruns: [{student_width: 1}]\n", 1, 9,
                               "output: expected a string, got null"));
  PetscCall(ExpectBadGenerated(t, "name: Null", "output: out\nruns:\n  - student_width: 1\n    name: Null", "", 0, "\n",
                               4, 11, "name: expected a string, got null"));
  PetscCall(ExpectBadGenerated(t, "name of 160 characters", "output: out\nruns:\n  - student_width: 1\n    name: ", "n",
                               VARPRO_NAME_MAX, "\n", 4, 11, "name: longer than 159 characters"));

  /* 11 x 100 x 100 configurations, over the limit */
  for (int i = 1; i <= 100; i++)
    (void)snprintf(grid + strlen(grid), sizeof(grid) - strlen(grid), "%d%s", i, i < 100 ? ", " : "]\n    seed: [");
  for (int i = 0; i < 100; i++)
    (void)snprintf(grid + strlen(grid), sizeof(grid) - strlen(grid), "%d%s", i, i < 99 ? ", " : "]\n");
  PetscCall(ExpectBadGenerated(t, "110000 configurations", grid, "", 0, "", 3, 5,
                               "runs: the run expands to more than 100000 configurations"));

  /* Too many runs or grid values are refused as they are read, not once all are in memory */
  PetscCall(ExpectBadGenerated(t, "100001 runs", "output: out\nruns:\n", "  - {}\n", 100001, "", 100003, 5,
                               "runs: more than 100000 runs"));
  PetscCall(ExpectBadGenerated(t, "100001 seeds", "output: out\nruns:\n  - seed: [", "0, ", 100001, "0]\n", 3, 300012,
                               "seed: more than 100000 values"));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  Tester t = {MPI_COMM_NULL, 0, NULL, 0, 0};

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  t.comm = PETSC_COMM_WORLD;
  PetscCallMPI(MPI_Comm_rank(t.comm, &t.rank));
  PetscCheck(argc >= 2, t.comm, PETSC_ERR_ARG_WRONG, "Usage: test_job DIR (the directory of the job file fixtures)");
  t.dir = argv[1];

  PetscCall(TestGood(&t));
  PetscCall(TestQuotedNull(&t));
  PetscCall(TestMinusZero(&t));
  PetscCall(TestBadFixtures(&t));
  PetscCall(TestBadGenerated(&t));

  PetscCall(PetscPrintf(t.comm, "%d of %d checks failed\n", (int)t.nfailed, (int)t.nchecks));
  PetscCall(PetscFinalize());
  return t.nfailed ? 1 : 0;
}
