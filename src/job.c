/* Job files: reading, checking and expanding the YAML list of training runs.

   Rank 0 reads the whole file, walks libyaml's event stream against the fixed schema below
   and expands every run into its grid of configurations; the other ranks receive the result.
   The schema is at most four levels deep (top mapping, runs, run mapping, grid sequence or
   data mapping), so the walk is a fixed set of functions, one per level: any collection where
   the schema has none is rejected at its first event, however deep the input nests.

     output: DIR
     checkpoint: {steps: K, minutes: T}         (optional; either or both)
     defaults: {RUN KEYS}                       (optional; every key but name)
     runs: [{RUN KEYS}, ...]
     RUN KEYS: name, regularization*, student_width*, lambda*, gamma*, seed*, epochs, N,
               teacher_width, time_scale, saving_step, mmd_points, data: {file: PATH}
               (* grid keys: a value or a sequence of values)

   DIR, name and PATH are strings: YAML's null (an unquoted ~, null, Null, NULL or nothing) is
   refused there, while quoted "~" or "null" is a string like any other.

   Limitations: a job file is a regular file of at most 16 MiB and expands to at most 100000
   configurations (so at most 100000 runs and 100000 values of a grid key, checked as they are
   read); anchors, aliases, merge keys and tags are refused rather than resolved. */
#include "varpro_impl.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

const char *const VarproRegularizations[] = {"biased", "unbiased", NULL};

/* Values of keys a job file leaves out */
#define JOB_DEFAULT_LAMBDA 1e-3
#define JOB_DEFAULT_GAMMA 100.0
#define JOB_DEFAULT_EPOCHS 32000
#define JOB_DEFAULT_N 4096
#define JOB_DEFAULT_TEACHER_WIDTH 4096
#define JOB_DEFAULT_TIME_SCALE 0.0009765625 /* 2^-10 */
#define JOB_DEFAULT_MMD_POINTS 1001
#define JOB_DEFAULT_CHECKPOINT_MINUTES 10.0

/* Limits: a job file is a short text; a job of more configurations is surely a typo */
#define JOB_FILE_MAX (16 * 1024 * 1024) /* bytes */
#define JOB_CONFIGS_MAX 100000
#define JOB_QUOTE_MAX 64 /* characters of the user's text repeated in a message */

/* The keys of a run, in the order of the canonical text; the grid keys regularization ... seed
   are contiguous and in expansion order, outermost first. */
typedef enum {
  KEY_NAME,
  KEY_REGULARIZATION,
  KEY_STUDENT_WIDTH,
  KEY_LAMBDA,
  KEY_GAMMA,
  KEY_SEED,
  KEY_EPOCHS,
  KEY_N,
  KEY_TEACHER_WIDTH,
  KEY_TIME_SCALE,
  KEY_SAVING_STEP,
  KEY_MMD_POINTS,
  KEY_DATA,
  NUM_RUN_KEYS
} RunKey;

typedef enum { KIND_NAME, KIND_CHOICE, KIND_INT, KIND_REAL, KIND_DATA } KeyKind;

typedef struct {
  const char *name;
  KeyKind     kind;
  PetscBool   grid;     /* may be a sequence of values, expanded as a grid */
  PetscInt64  min, max; /* KIND_INT: allowed range */
  PetscBool   positive; /* KIND_REAL: must be > 0 */
} KeyInfo;

static const KeyInfo run_keys[NUM_RUN_KEYS] = {
  [KEY_NAME]           = {"name", KIND_NAME, PETSC_FALSE, 0, 0, PETSC_FALSE},
  [KEY_REGULARIZATION] = {"regularization", KIND_CHOICE, PETSC_TRUE, 0, 0, PETSC_FALSE},
  [KEY_STUDENT_WIDTH]  = {"student_width", KIND_INT, PETSC_TRUE, 1, PETSC_MAX_INT, PETSC_FALSE},
  [KEY_LAMBDA]         = {"lambda", KIND_REAL, PETSC_TRUE, 0, 0, PETSC_TRUE},
  [KEY_GAMMA]          = {"gamma", KIND_REAL, PETSC_TRUE, 0, 0, PETSC_FALSE},
  [KEY_SEED]           = {"seed", KIND_INT, PETSC_TRUE, 0, INT64_MAX, PETSC_FALSE},
  [KEY_EPOCHS]         = {"epochs", KIND_INT, PETSC_FALSE, 0, PETSC_MAX_INT, PETSC_FALSE},
  [KEY_N]              = {"N", KIND_INT, PETSC_FALSE, 1, PETSC_MAX_INT, PETSC_FALSE},
  [KEY_TEACHER_WIDTH]  = {"teacher_width", KIND_INT, PETSC_FALSE, 1, PETSC_MAX_INT, PETSC_FALSE},
  [KEY_TIME_SCALE]     = {"time_scale", KIND_REAL, PETSC_FALSE, 0, 0, PETSC_TRUE},
  [KEY_SAVING_STEP]    = {"saving_step", KIND_INT, PETSC_FALSE, 1, PETSC_MAX_INT, PETSC_FALSE},
  [KEY_MMD_POINTS]     = {"mmd_points", KIND_INT, PETSC_FALSE, 2, PETSC_MAX_INT, PETSC_FALSE},
  [KEY_DATA]           = {"data", KIND_DATA, PETSC_FALSE, 0, 0, PETSC_FALSE},
};

typedef union {
  PetscInt64 i; /* KIND_INT, and KIND_CHOICE as a VarproRegularization */
  PetscReal  r; /* KIND_REAL */
} KeyValue;

/* The keys one mapping of the file gives (a run, or the defaults), before expansion. */
typedef struct {
  yaml_mark_t start;                      /* of the mapping */
  PetscBool   set[NUM_RUN_KEYS];          /* the key is given */
  yaml_mark_t mark[NUM_RUN_KEYS];         /* where the key is given */
  PetscInt    n[NUM_RUN_KEYS];            /* values given: 1, or a grid sequence's length */
  PetscInt    cap[NUM_RUN_KEYS];          /* room in values[] */
  KeyValue   *values[NUM_RUN_KEYS];       /* n[] values; unused for name and data */
  char        name[VARPRO_NAME_MAX];      /* KEY_NAME */
  char        data_file[VARPRO_PATH_MAX]; /* KEY_DATA */
  PetscInt    first, count;               /* its configurations in the expanded job */
} RunSpec;

/* The whole file, before expansion. */
typedef struct {
  char        output_dir[VARPRO_PATH_MAX];
  PetscInt    checkpoint_steps;   /* 0: none by step count */
  PetscReal   checkpoint_minutes; /* 0: none by time */
  RunSpec     defaults;
  yaml_mark_t runs_mark; /* of the runs sequence */
  PetscInt    nruns, maxruns;
  RunSpec    *runs;
} JobSpec;

/* The state of reading: libyaml's parser, its current event, and the first problem found. */
typedef struct {
  yaml_parser_t parser;
  yaml_event_t  event; /* valid when has_event */
  PetscBool     has_event;
  const char   *path;      /* the job file as given, for messages */
  const char   *text;      /* its contents */
  size_t        len;       /* bytes of text */
  char          field[96]; /* what is being read, the <field> of messages */
  char         *msg;       /* VARPRO_MSG_MAX chars: "" while the input is fine */
} JobReader;

/* Ends the calling function once a problem is recorded: the first problem is the one reported. */
#define JobCheckProblem(r)                                                                                             \
  do {                                                                                                                 \
    if ((r)->msg[0]) PetscFunctionReturn(0);                                                                           \
  } while (0)

/* ---- messages ------------------------------------------------------------------------- */

/* Names what the messages that follow are about: prefix and the first characters of key. */
static void JobSetField(JobReader *r, const char prefix[], const char key[])
{
  (void)snprintf(r->field, sizeof(r->field), "%s%.*s", prefix, JOB_QUOTE_MAX, key);
}

/* Records "<file>:<line>:<column>: <field>: <what>" unless a problem is already recorded; without
   "<field>: " when no field is set. */
static void JobProblem(JobReader *r, yaml_mark_t mark, const char fmt[], ...) PETSC_ATTRIBUTE_FORMAT(3, 4);
static void JobProblem(JobReader *r, yaml_mark_t mark, const char fmt[], ...)
{
  char    what[VARPRO_MSG_MAX];
  va_list ap;
  int     n;

  if (r->msg[0]) return;
  va_start(ap, fmt);
  (void)vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  n = snprintf(r->msg, VARPRO_MSG_MAX, "%s:%zu:%zu: %s%s%s", r->path, mark.line + 1, mark.column + 1, r->field,
               r->field[0] ? ": " : "", what);
  if (n < 0) (void)snprintf(r->msg, VARPRO_MSG_MAX, "%s: unreadable job file", r->path);
}

/* The line and column of a byte offset, for libyaml's reader errors, which give only the offset. */
static yaml_mark_t JobOffsetMark(const JobReader *r, size_t offset)
{
  yaml_mark_t mark = {0, 0, 0};

  for (size_t i = 0; i < offset && i < r->len; i++) {
    if (r->text[i] == '\n')
      mark.line++, mark.column = 0;
    else
      mark.column++;
  }
  mark.index = offset;
  return mark;
}

/* Records libyaml's own complaint about the text: its problem, and the context it was in. */
static PetscErrorCode JobSyntaxProblem(JobReader *r)
{
  const yaml_parser_t *p    = &r->parser;
  yaml_mark_t          mark = p->problem_mark;

  PetscFunctionBeginUser;
  PetscCheck(p->error != YAML_MEMORY_ERROR, PETSC_COMM_SELF, PETSC_ERR_MEM, "libyaml ran out of memory reading %s",
             r->path);
  if (p->error == YAML_READER_ERROR) mark = JobOffsetMark(r, p->problem_offset);
  JobSetField(r, "", "yaml");
  if (p->context)
    JobProblem(r, mark, "%s (%s starting at line %zu, column %zu)", p->problem ? p->problem : "syntax error",
               p->context, p->context_mark.line + 1, p->context_mark.column + 1);
  else
    JobProblem(r, mark, "%s", p->problem ? p->problem : "syntax error");
  PetscFunctionReturn(0);
}

/* ---- events --------------------------------------------------------------------------- */

/* What an event starts, for "expected ..., got <what>" messages. */
static const char *JobEventWhat(const yaml_event_t *e)
{
  switch (e->type) {
  case YAML_SCALAR_EVENT: return e->data.scalar.length ? "a scalar" : "an empty value";
  case YAML_SEQUENCE_START_EVENT: return "a sequence";
  case YAML_MAPPING_START_EVENT: return "a mapping";
  case YAML_ALIAS_EVENT: return "an alias";
  default: return "the end of a collection";
  }
}

/* Whether a node event carries an anchor or an explicit tag, which job files do not use. */
static void JobEventDecorations(const yaml_event_t *e, PetscBool *anchor, PetscBool *tag)
{
  const yaml_char_t *a = NULL, *t = NULL;

  if (e->type == YAML_SCALAR_EVENT) a = e->data.scalar.anchor, t = e->data.scalar.tag;
  if (e->type == YAML_SEQUENCE_START_EVENT) a = e->data.sequence_start.anchor, t = e->data.sequence_start.tag;
  if (e->type == YAML_MAPPING_START_EVENT) a = e->data.mapping_start.anchor, t = e->data.mapping_start.tag;
  *anchor = (a || e->type == YAML_ALIAS_EVENT) ? PETSC_TRUE : PETSC_FALSE;
  *tag    = t ? PETSC_TRUE : PETSC_FALSE;
}

/* Moves to the next event. Syntax errors, anchors, aliases and tags are caught here for all. */
static PetscErrorCode JobNext(JobReader *r)
{
  PetscBool anchor, tag;

  PetscFunctionBeginUser;
  if (r->has_event) yaml_event_delete(&r->event);
  r->has_event = PETSC_FALSE;
  if (!yaml_parser_parse(&r->parser, &r->event)) {
    PetscCall(JobSyntaxProblem(r));
    PetscFunctionReturn(0);
  }
  r->has_event = PETSC_TRUE;
  JobEventDecorations(&r->event, &anchor, &tag);
  if (anchor)
    JobProblem(r, r->event.start_mark, "anchors and aliases are not supported; write the values out");
  else if (tag)
    JobProblem(r, r->event.start_mark, "tags are not supported");
  PetscFunctionReturn(0);
}

/* The current event's scalar text; NULL when it is not a scalar. */
static const char *JobScalarText(const JobReader *r)
{
  return r->event.type == YAML_SCALAR_EVENT ? (const char *)r->event.data.scalar.value : NULL;
}

/* ---- scalars -------------------------------------------------------------------------- */

/* Whether a number's text is usable: a plain (unquoted), non-empty scalar. */
static PetscBool JobScalarIsNumber(JobReader *r, const char expected[])
{
  const yaml_event_t *e = &r->event;

  if (e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    JobProblem(r, e->start_mark, "expected %s, got quoted or block text", expected);
  else if (!e->data.scalar.length)
    JobProblem(r, e->start_mark, "expected %s, got an empty value", expected);
  return r->msg[0] ? PETSC_FALSE : PETSC_TRUE;
}

/* A decimal integer with optional sign, the whole text; *overflow when it does not fit. */
static PetscBool JobTextToInt(const char text[], PetscInt64 *value, PetscBool *overflow)
{
  const char *p = text + (text[0] == '+' || text[0] == '-');
  char       *end;
  long long   v;

  if (!*p) return PETSC_FALSE;
  for (; *p; p++)
    if (!isdigit((unsigned char)*p)) return PETSC_FALSE;
  errno     = 0;
  v         = strtoll(text, &end, 10);
  *overflow = errno == ERANGE ? PETSC_TRUE : PETSC_FALSE;
  *value    = (PetscInt64)v;
  return *end ? PETSC_FALSE : PETSC_TRUE;
}

/* The current scalar as an integer of key info's range. */
static void JobScalarInt(JobReader *r, const KeyInfo *info, PetscInt64 *value)
{
  const char *text = JobScalarText(r);
  yaml_mark_t mark = r->event.start_mark;
  PetscBool   overflow;

  if (!JobScalarIsNumber(r, "an integer")) return;
  if (!JobTextToInt(text, value, &overflow))
    JobProblem(r, mark, "expected an integer, got '%.*s'", JOB_QUOTE_MAX, text);
  else if (overflow)
    JobProblem(r, mark, "out of range, got '%.*s'", JOB_QUOTE_MAX, text);
  else if (*value < info->min)
    JobProblem(r, mark, "must be >= %" PRId64 ", got %" PRId64, info->min, *value);
  else if (*value > info->max)
    JobProblem(r, mark, "must be <= %" PRId64 ", got %" PRId64, info->max, *value);
}

/* The current scalar as a finite real in decimal notation, positive when info asks for it; -0 reads
   as 0. */
static void JobScalarReal(JobReader *r, const KeyInfo *info, PetscReal *value)
{
  const char *text = JobScalarText(r);
  yaml_mark_t mark = r->event.start_mark;
  char       *end;

  if (!JobScalarIsNumber(r, "a real number")) return;
  *value = strtod(text, &end);
  if (*value == 0) *value = 0.0; /* -0 is 0: one name and one canonical text */
  if (isspace((unsigned char)text[0]) || *end)
    JobProblem(r, mark, "expected a real number, got '%.*s'", JOB_QUOTE_MAX, text);
  else if (strpbrk(text, "xX"))
    JobProblem(r, mark, "expected a decimal real number, got '%.*s'", JOB_QUOTE_MAX, text);
  else if (!isfinite(*value))
    JobProblem(r, mark, "must be finite, got '%.*s'", JOB_QUOTE_MAX, text);
  else if (info->positive && !(*value > 0))
    JobProblem(r, mark, "must be > 0, got %.*s", JOB_QUOTE_MAX, text);
}

/* The current scalar as one of VarproRegularizations. */
static PetscErrorCode JobScalarChoice(JobReader *r, PetscInt64 *value)
{
  const char *text = JobScalarText(r);
  PetscBool   match;

  PetscFunctionBeginUser;
  for (PetscInt64 i = 0; VarproRegularizations[i]; i++) {
    PetscCall(PetscStrcmp(text, VarproRegularizations[i], &match));
    if (match) {
      *value = i;
      PetscFunctionReturn(0);
    }
  }
  JobProblem(r, r->event.start_mark, "expected biased or unbiased, got '%.*s'", JOB_QUOTE_MAX, text);
  PetscFunctionReturn(0);
}

/* Whether the current event is YAML's null: a plain (unquoted) scalar that is empty or one of
   ~, null, Null, NULL. Quoted, the same text is a string. */
static PetscBool JobScalarIsNull(const JobReader *r)
{
  static const char *const nulls[] = {"~", "null", "Null", "NULL"};
  const yaml_event_t      *e       = &r->event;

  if (e->type != YAML_SCALAR_EVENT || e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return PETSC_FALSE;
  if (!e->data.scalar.length) return PETSC_TRUE;
  for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
    if (!strcmp((const char *)e->data.scalar.value, nulls[i])) return PETSC_TRUE;
  return PETSC_FALSE;
}

/* Whether text holds a control character (C0 or DEL), which would break the one-line messages
   and the file names made from it. */
static PetscBool JobHasControl(const char text[])
{
  for (const unsigned char *p = (const unsigned char *)text; *p; p++)
    if (*p < 0x20 || *p == 0x7f) return PETSC_TRUE;
  return PETSC_FALSE;
}

/* The current event as a non-empty string of fewer than len bytes, without control characters,
   copied to buf. */
static PetscErrorCode JobReadString(JobReader *r, char buf[], size_t len)
{
  const yaml_event_t *e    = &r->event;
  const char         *text = JobScalarText(r);

  PetscFunctionBeginUser;
  if (!text)
    JobProblem(r, e->start_mark, "expected a string, got %s", JobEventWhat(e));
  else if (JobScalarIsNull(r))
    JobProblem(r, e->start_mark, "expected a string, got null");
  else if (!e->data.scalar.length)
    JobProblem(r, e->start_mark, "must not be empty");
  else if (strlen(text) != e->data.scalar.length)
    JobProblem(r, e->start_mark, "contains a NUL character");
  else if (JobHasControl(text))
    JobProblem(r, e->start_mark, "contains a control character (a newline, tab, ...)");
  else if (e->data.scalar.length >= len)
    JobProblem(r, e->start_mark, "longer than %zu characters", len - 1);
  JobCheckProblem(r);
  PetscCall(PetscStrncpy(buf, text, len));
  PetscFunctionReturn(0);
}

/* ---- mappings ------------------------------------------------------------------------- */

/* "a, b, c" from keys[], for the message about an unknown key. */
static void JobJoinKeys(const char *const keys[], PetscInt nkeys, char buf[], size_t len)
{
  size_t n = 0;

  buf[0] = 0;
  for (PetscInt i = 0; i < nkeys && n < len; i++) {
    int m = snprintf(buf + n, len - n, "%s%s", i ? ", " : "", keys[i]);

    if (m < 0) break;
    n += (size_t)m;
  }
}

/* Reads the key of a mapping entry from the current event: one of keys[], not yet given[].
   Marks it given, remembers where, and makes it the field of later messages. */
static PetscErrorCode JobReadKey(JobReader *r, const char prefix[], const char *const keys[], PetscInt nkeys,
                                 PetscBool given[], yaml_mark_t where[], PetscInt *k)
{
  const char *text = JobScalarText(r);
  yaml_mark_t mark = r->event.start_mark;
  char        allowed[256];
  PetscBool   match = PETSC_FALSE;
  PetscInt    i;

  PetscFunctionBeginUser;
  /* A complex key is no key of ours, and no field to name yet (not the previous key) */
  if (!text) {
    r->field[0] = 0;
    JobProblem(r, mark, "keys must be scalars, got %s", JobEventWhat(&r->event));
  }
  JobCheckProblem(r);
  JobSetField(r, prefix, text);
  if (!strcmp(text, "<<")) JobProblem(r, mark, "merge keys and aliases are not supported; write the keys out");
  JobCheckProblem(r);

  /* One of the allowed keys, spelled exactly, and the first time */
  for (i = 0; i < nkeys && strlen(text) == r->event.data.scalar.length; i++) {
    PetscCall(PetscStrcmp(text, keys[i], &match));
    if (match) break;
  }
  if (!match) {
    JobJoinKeys(keys, nkeys, allowed, sizeof(allowed));
    JobProblem(r, mark, "unknown key; allowed keys are %s", allowed);
  } else if (given[i])
    JobProblem(r, mark, "duplicate key (first given at line %zu, column %zu)", where[i].line + 1, where[i].column + 1);
  JobCheckProblem(r);
  given[i] = PETSC_TRUE;
  where[i] = mark;
  *k       = i;
  PetscFunctionReturn(0);
}

/* ---- runs ----------------------------------------------------------------------------- */

/* Appends one value of key k to a run. */
static PetscErrorCode JobAppendValue(RunSpec *run, RunKey k, KeyValue v)
{
  PetscFunctionBeginUser;
  if (run->n[k] == run->cap[k]) {
    PetscInt  cap = run->cap[k] ? 2 * run->cap[k] : 4;
    KeyValue *values;

    PetscCall(PetscMalloc1(cap, &values));
    PetscCall(PetscArraycpy(values, run->values[k], run->n[k]));
    PetscCall(PetscFree(run->values[k]));
    run->values[k] = values;
    run->cap[k]    = cap;
  }
  run->values[k][run->n[k]++] = v;
  PetscFunctionReturn(0);
}

/* One value of a numeric or choice key, from the current event. */
static PetscErrorCode JobParseValue(JobReader *r, RunSpec *run, RunKey k)
{
  const KeyInfo *info = &run_keys[k];
  KeyValue       v    = {0};

  PetscFunctionBeginUser;
  if (r->event.type != YAML_SCALAR_EVENT)
    JobProblem(r, r->event.start_mark, "expected a single value, got %s", JobEventWhat(&r->event));
  JobCheckProblem(r);
  if (info->kind == KIND_CHOICE)
    PetscCall(JobScalarChoice(r, &v.i));
  else if (info->kind == KIND_INT)
    JobScalarInt(r, info, &v.i);
  else
    JobScalarReal(r, info, &v.r);
  JobCheckProblem(r);
  PetscCall(JobAppendValue(run, k, v));
  PetscFunctionReturn(0);
}

/* The values of a grid key given as a sequence; the current event starts the sequence. */
static PetscErrorCode JobParseGrid(JobReader *r, RunSpec *run, RunKey k)
{
  yaml_mark_t start = r->event.start_mark;

  PetscFunctionBeginUser;
  for (;;) {
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    if (r->event.type == YAML_SEQUENCE_END_EVENT) break;
    if (run->n[k] == JOB_CONFIGS_MAX)
      JobProblem(r, r->event.start_mark, "more than %d values; a job expands to at most %d configurations",
                 JOB_CONFIGS_MAX, JOB_CONFIGS_MAX);
    JobCheckProblem(r);
    PetscCall(JobParseValue(r, run, k));
    JobCheckProblem(r);
  }
  if (!run->n[k]) JobProblem(r, start, "empty sequence; give at least one value");
  PetscFunctionReturn(0);
}

/* The data mapping, {file: PATH}; the current event starts it. */
static PetscErrorCode JobParseData(JobReader *r, RunSpec *run)
{
  static const char *const keys[] = {"file"};
  yaml_mark_t              start  = r->event.start_mark, where;
  PetscBool                given  = PETSC_FALSE;
  PetscInt                 k      = 0;

  PetscFunctionBeginUser;
  if (r->event.type != YAML_MAPPING_START_EVENT)
    JobProblem(r, start, "expected a mapping {file: PATH}, got %s", JobEventWhat(&r->event));
  JobCheckProblem(r);
  for (;;) {
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    if (r->event.type == YAML_MAPPING_END_EVENT) break;
    PetscCall(JobReadKey(r, "data.", keys, 1, &given, &where, &k));
    JobCheckProblem(r);
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    PetscCall(JobReadString(r, run->data_file, sizeof(run->data_file)));
    JobCheckProblem(r);
  }
  JobSetField(r, "data.", "file");
  if (!given) JobProblem(r, start, "required key is missing");
  PetscFunctionReturn(0);
}

/* The value of key k of a run; the current event starts it. */
static PetscErrorCode JobParseRunValue(JobReader *r, RunSpec *run, RunKey k)
{
  const KeyInfo *info = &run_keys[k];
  const char    *bad;

  PetscFunctionBeginUser;
  if (info->kind == KIND_DATA)
    PetscCall(JobParseData(r, run));
  else if (info->kind == KIND_NAME) {
    PetscCall(JobReadString(r, run->name, sizeof(run->name)));
    JobCheckProblem(r);
    for (bad = run->name; *bad && (isalnum((unsigned char)*bad) || strchr("._-", *bad)); bad++) continue;
    if (*bad)
      JobProblem(r, r->event.start_mark, "may hold only letters, digits, '.', '_' and '-', got '%.*s'", JOB_QUOTE_MAX,
                 run->name);
    else if (run->name[0] == '.')
      JobProblem(r, r->event.start_mark, "must not start with '.' (a hidden result file), got '%.*s'", JOB_QUOTE_MAX,
                 run->name);
  } else if (r->event.type == YAML_SEQUENCE_START_EVENT && info->grid)
    PetscCall(JobParseGrid(r, run, k));
  else if (r->event.type == YAML_SEQUENCE_START_EVENT)
    JobProblem(r, r->event.start_mark,
               "expected a single value, got a sequence; only regularization, student_width, lambda, gamma and seed "
               "take a sequence");
  else
    PetscCall(JobParseValue(r, run, k));
  PetscFunctionReturn(0);
}

/* One run mapping, or the defaults; the current event starts it. */
static PetscErrorCode JobParseRun(JobReader *r, RunSpec *run, PetscBool defaults)
{
  const char *names[NUM_RUN_KEYS];
  PetscInt    k;

  PetscFunctionBeginUser;
  run->start = r->event.start_mark;
  if (r->event.type != YAML_MAPPING_START_EVENT)
    JobProblem(r, run->start, "expected a mapping of run keys, got %s", JobEventWhat(&r->event));
  JobCheckProblem(r);
  for (k = 0; k < NUM_RUN_KEYS; k++) names[k] = run_keys[k].name;
  for (;;) {
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    if (r->event.type == YAML_MAPPING_END_EVENT) break;
    PetscCall(JobReadKey(r, "", names, NUM_RUN_KEYS, run->set, run->mark, &k));
    JobCheckProblem(r);
    if (k == KEY_NAME && defaults)
      JobProblem(r, r->event.start_mark, "not allowed in defaults; a name belongs to one run");
    JobCheckProblem(r);
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    PetscCall(JobParseRunValue(r, run, (RunKey)k));
    JobCheckProblem(r);
  }
  PetscFunctionReturn(0);
}

/* Room for one more run at the end of spec->runs. */
static PetscErrorCode JobAddRun(JobSpec *spec, RunSpec **run)
{
  PetscFunctionBeginUser;
  if (spec->nruns == spec->maxruns) {
    PetscInt max = spec->maxruns ? 2 * spec->maxruns : 8;
    RunSpec *runs;

    PetscCall(PetscCalloc1(max, &runs));
    PetscCall(PetscArraycpy(runs, spec->runs, spec->nruns));
    PetscCall(PetscFree(spec->runs));
    spec->runs    = runs;
    spec->maxruns = max;
  }
  *run = &spec->runs[spec->nruns++];
  PetscFunctionReturn(0);
}

/* The runs sequence; the current event starts it. */
static PetscErrorCode JobParseRuns(JobReader *r, JobSpec *spec)
{
  yaml_mark_t start = r->event.start_mark;
  RunSpec    *run   = NULL;

  PetscFunctionBeginUser;
  spec->runs_mark = start;
  if (r->event.type != YAML_SEQUENCE_START_EVENT)
    JobProblem(r, start, "expected a sequence of run mappings, got %s", JobEventWhat(&r->event));
  JobCheckProblem(r);
  for (;;) {
    JobSetField(r, "", "runs");
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    if (r->event.type == YAML_SEQUENCE_END_EVENT) break;
    if (spec->nruns == JOB_CONFIGS_MAX)
      JobProblem(r, r->event.start_mark, "more than %d runs; a job expands to at most %d configurations",
                 JOB_CONFIGS_MAX, JOB_CONFIGS_MAX);
    JobCheckProblem(r);
    PetscCall(JobAddRun(spec, &run));
    PetscCall(JobParseRun(r, run, PETSC_FALSE));
    JobCheckProblem(r);
  }
  JobSetField(r, "", "runs");
  if (!spec->nruns) JobProblem(r, start, "empty sequence; give at least one run");
  PetscFunctionReturn(0);
}

/* The checkpoint mapping {steps: K, minutes: T}; the current event starts it. */
static PetscErrorCode JobParseCheckpoint(JobReader *r, JobSpec *spec)
{
  static const char *const keys[]   = {"steps", "minutes"};
  static const KeyInfo     steps    = {"steps", KIND_INT, PETSC_FALSE, 0, PETSC_MAX_INT, PETSC_FALSE};
  static const KeyInfo     minutes  = {"minutes", KIND_REAL, PETSC_FALSE, 0, 0, PETSC_FALSE};
  yaml_mark_t              start    = r->event.start_mark, where[2];
  PetscBool                given[2] = {PETSC_FALSE, PETSC_FALSE};
  PetscInt                 k        = 0;
  PetscInt64               value;

  PetscFunctionBeginUser;
  if (r->event.type != YAML_MAPPING_START_EVENT)
    JobProblem(r, start, "expected a mapping {steps: K, minutes: T}, got %s", JobEventWhat(&r->event));
  JobCheckProblem(r);
  for (;;) {
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    if (r->event.type == YAML_MAPPING_END_EVENT) break;
    PetscCall(JobReadKey(r, "checkpoint.", keys, 2, given, where, &k));
    JobCheckProblem(r);
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    if (r->event.type != YAML_SCALAR_EVENT)
      JobProblem(r, r->event.start_mark, "expected a single value, got %s", JobEventWhat(&r->event));
    JobCheckProblem(r);
    if (k == 0) {
      JobScalarInt(r, &steps, &value);
      spec->checkpoint_steps = (PetscInt)value;
    } else {
      JobScalarReal(r, &minutes, &spec->checkpoint_minutes);
      if (!r->msg[0] && spec->checkpoint_minutes < 0)
        JobProblem(r, r->event.start_mark, "must be >= 0, got %g", (double)spec->checkpoint_minutes);
    }
    JobCheckProblem(r);
  }
  PetscFunctionReturn(0);
}

/* The top mapping: output, checkpoint, defaults, runs; the current event starts it. */
static PetscErrorCode JobParseTop(JobReader *r, JobSpec *spec)
{
  static const char *const keys[]   = {"output", "defaults", "runs", "checkpoint"};
  yaml_mark_t              start    = r->event.start_mark, where[4];
  PetscBool                given[4] = {PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE};
  PetscInt                 k        = 0;

  PetscFunctionBeginUser;
  if (r->event.type != YAML_MAPPING_START_EVENT)
    JobProblem(r, start, "the top level must be a mapping with keys output, checkpoint, defaults, runs; got %s",
               JobEventWhat(&r->event));
  JobCheckProblem(r);
  for (;;) {
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    if (r->event.type == YAML_MAPPING_END_EVENT) break;
    PetscCall(JobReadKey(r, "", keys, 4, given, where, &k));
    JobCheckProblem(r);
    PetscCall(JobNext(r));
    JobCheckProblem(r);
    if (k == 0)
      PetscCall(JobReadString(r, spec->output_dir, sizeof(spec->output_dir)));
    else if (k == 1)
      PetscCall(JobParseRun(r, &spec->defaults, PETSC_TRUE));
    else if (k == 2)
      PetscCall(JobParseRuns(r, spec));
    else
      PetscCall(JobParseCheckpoint(r, spec));
    JobCheckProblem(r);
  }

  /* output and runs are required */
  for (k = 0; k < 3; k += 2) {
    JobSetField(r, "", keys[k]);
    if (!given[k]) JobProblem(r, start, "required key is missing");
  }
  PetscFunctionReturn(0);
}

/* The whole stream: exactly one document, whose root is the top mapping. */
static PetscErrorCode JobParseStream(JobReader *r, JobSpec *spec)
{
  const yaml_mark_t origin = {0, 0, 0};

  PetscFunctionBeginUser;
  JobSetField(r, "", "job file");

  /* Stream start, document start, root node; nothing or a lone empty value is an empty file */
  PetscCall(JobNext(r));
  JobCheckProblem(r);
  PetscCall(JobNext(r));
  JobCheckProblem(r);
  if (r->event.type == YAML_STREAM_END_EVENT)
    JobProblem(r, origin, "the file is empty; expected a mapping with keys output, checkpoint, defaults, runs");
  JobCheckProblem(r);
  PetscCall(JobNext(r));
  JobCheckProblem(r);
  if (r->event.type == YAML_SCALAR_EVENT && !r->event.data.scalar.length &&
      r->event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
    JobProblem(r, origin, "the file is empty; expected a mapping with keys output, checkpoint, defaults, runs");
  JobCheckProblem(r);
  PetscCall(JobParseTop(r, spec));
  JobCheckProblem(r);

  /* Document end, then the end of the stream: a second document is refused */
  JobSetField(r, "", "job file");
  PetscCall(JobNext(r));
  JobCheckProblem(r);
  PetscCall(JobNext(r));
  JobCheckProblem(r);
  if (r->event.type != YAML_STREAM_END_EVENT)
    JobProblem(r, r->event.start_mark, "more than one YAML document; a job file holds one");
  PetscFunctionReturn(0);
}

/* ---- expansion ------------------------------------------------------------------------ */

/* Where key k of a run comes from: the run, else the defaults, else nowhere (NULL). */
static const RunSpec *JobSource(const JobSpec *spec, const RunSpec *run, RunKey k)
{
  if (run->set[k]) return run;
  if (spec->defaults.set[k]) return &spec->defaults;
  return NULL;
}

/* Value digit[k] of key k for a run, or fallback when neither run nor defaults give k. */
static PetscInt64 JobInt(const JobSpec *spec, const RunSpec *run, RunKey k, const PetscInt digit[], PetscInt64 fallback)
{
  const RunSpec *src = JobSource(spec, run, k);

  return src ? src->values[k][digit[k]].i : fallback;
}

static PetscReal JobReal(const JobSpec *spec, const RunSpec *run, RunKey k, const PetscInt digit[], PetscReal fallback)
{
  const RunSpec *src = JobSource(spec, run, k);

  return src ? src->values[k][digit[k]].r : fallback;
}

/* The number of configurations of a run, and the checks that need defaults merged in. */
static void JobCountRun(JobReader *r, const JobSpec *spec, const RunSpec *run, PetscInt64 *count)
{
  *count = 1;
  JobSetField(r, "", "runs");
  for (RunKey k = KEY_REGULARIZATION; k <= KEY_SEED && *count <= JOB_CONFIGS_MAX; k++) {
    const RunSpec *src = JobSource(spec, run, k);

    *count *= src ? src->n[k] : 1;
  }
  if (*count > JOB_CONFIGS_MAX)
    JobProblem(r, run->start, "the run expands to more than %d configurations", JOB_CONFIGS_MAX);

  JobSetField(r, "", "student_width");
  if (!JobSource(spec, run, KEY_STUDENT_WIDTH) && !JobSource(spec, run, KEY_DATA))
    JobProblem(r, run->start, "required unless data.file is given");

  JobSetField(r, "", "name");
  if (run->set[KEY_NAME] && *count > 1)
    JobProblem(r, run->mark[KEY_NAME],
               "given to a run of %" PRId64 " configurations; only a run of one configuration may be named", *count);
}

/* Configuration c of a run, grid position c in expansion order (seed varies fastest). Every
   field comes from the run, else from the defaults, else from the built-in default. */
static void JobFillConfig(const JobSpec *spec, const RunSpec *run, PetscInt c, VarproConfig *cfg)
{
  const RunSpec *data                = JobSource(spec, run, KEY_DATA);
  PetscInt       digit[NUM_RUN_KEYS] = {0};
  PetscBool      has_data            = data ? PETSC_TRUE : PETSC_FALSE;

  /* The position in the grid, one digit per grid key */
  for (RunKey k = KEY_SEED; k >= KEY_REGULARIZATION; k--) {
    const RunSpec *src = JobSource(spec, run, k);
    PetscInt       n   = src ? src->n[k] : 1;

    digit[k] = c % n;
    c /= n;
  }

  /* The parameters; widths and N left at 0 are read from the data file */
  cfg->regularization = (VarproRegularization)JobInt(spec, run, KEY_REGULARIZATION, digit, VARPRO_BIASED);
  cfg->student_width  = (PetscInt)JobInt(spec, run, KEY_STUDENT_WIDTH, digit, 0);
  cfg->lambda         = JobReal(spec, run, KEY_LAMBDA, digit, JOB_DEFAULT_LAMBDA);
  cfg->gamma          = JobReal(spec, run, KEY_GAMMA, digit, JOB_DEFAULT_GAMMA);
  cfg->seed           = JobInt(spec, run, KEY_SEED, digit, 0);
  cfg->epochs         = (PetscInt)JobInt(spec, run, KEY_EPOCHS, digit, JOB_DEFAULT_EPOCHS);
  cfg->N              = (PetscInt)JobInt(spec, run, KEY_N, digit, has_data ? 0 : JOB_DEFAULT_N);
  cfg->teacher_width  = (PetscInt)JobInt(spec, run, KEY_TEACHER_WIDTH, digit, has_data ? 0 : JOB_DEFAULT_TEACHER_WIDTH);
  cfg->time_scale     = JobReal(spec, run, KEY_TIME_SCALE, digit, JOB_DEFAULT_TIME_SCALE);
  cfg->saving_step    = (PetscInt)JobInt(spec, run, KEY_SAVING_STEP, digit, 1);
  cfg->mmd_points     = (PetscInt)JobInt(spec, run, KEY_MMD_POINTS, digit, JOB_DEFAULT_MMD_POINTS);
  cfg->line           = (PetscInt)run->start.line + 1;
  if (has_data) memcpy(cfg->data_file, data->data_file, sizeof(cfg->data_file));

  /* The two-Dirac teacher (gamma < 0) has two features whatever teacher_width says */
  if (cfg->gamma < 0 && !has_data) cfg->teacher_width = 2;
}

/* The name of a configuration without an explicit one: its grid values, with the data file's
   stem (basename without extension) in place of M when M comes from the data file. */
static void JobAutoName(JobReader *r, const RunSpec *run, VarproConfig *cfg)
{
  const char *base = strrchr(cfg->data_file, '/'), *dot;
  char        width[VARPRO_PATH_MAX];
  int         n;

  base = base ? base + 1 : cfg->data_file;
  dot  = strrchr(base, '.');
  if (!dot || dot == base) dot = base + strlen(base);
  if (cfg->student_width)
    (void)snprintf(width, sizeof(width), "M%" PetscInt_FMT, cfg->student_width);
  else
    (void)snprintf(width, sizeof(width), "%.*s", (int)(dot - base), base);
  n = snprintf(cfg->name, sizeof(cfg->name), "%s-%s-lambda%g-gamma%g-seed%" PRId64,
               VarproRegularizations[cfg->regularization], width, (double)cfg->lambda, (double)cfg->gamma, cfg->seed);
  JobSetField(r, "", "name");
  if (n < 0 || (size_t)n >= sizeof(cfg->name))
    JobProblem(r, run->start, "the generated name is longer than %d characters; give the run a name",
               VARPRO_NAME_MAX - 1);
}

/* Names are unique in the job: sorted, equal names are neighbours. The duplicate reported is
   the first one in job order, at the later of its two runs. */
static PetscErrorCode JobCheckUnique(JobReader *r, const JobSpec *spec, const VarproJob *job)
{
  const char **names;
  PetscInt    *perm, a = -1, b = -1, ra = 0, rb = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(job->nconfigs, &names, job->nconfigs, &perm));
  for (PetscInt c = 0; c < job->nconfigs; c++) {
    names[c] = job->configs[c].name;
    perm[c]  = c;
  }
  PetscCall(PetscSortStrWithPermutation(job->nconfigs, names, perm));
  for (PetscInt i = 1; i < job->nconfigs; i++) {
    PetscInt lo = PetscMin(perm[i - 1], perm[i]), hi = PetscMax(perm[i - 1], perm[i]);

    if (strcmp(names[lo], names[hi]) || (b >= 0 && hi >= b)) continue;
    a = lo, b = hi;
  }
  PetscCall(PetscFree2(names, perm));
  if (b < 0) PetscFunctionReturn(0);

  /* The runs the two configurations come from */
  for (PetscInt i = 0; i < spec->nruns; i++) {
    if (a >= spec->runs[i].first && a < spec->runs[i].first + spec->runs[i].count) ra = i;
    if (b >= spec->runs[i].first && b < spec->runs[i].first + spec->runs[i].count) rb = i;
  }
  JobSetField(r, "", "name");
  if (ra == rb)
    JobProblem(r, spec->runs[rb].start, "duplicate run name '%s' from two grid values of this run",
               job->configs[b].name);
  else
    JobProblem(r, spec->runs[rb].start, "duplicate run name '%s'; the run at line %zu, column %zu has the same name",
               job->configs[b].name, spec->runs[ra].start.line + 1, spec->runs[ra].start.column + 1);
  PetscFunctionReturn(0);
}

/* Expands every run into its grid of configurations, in job order. */
static PetscErrorCode JobExpand(JobReader *r, JobSpec *spec, VarproJob *job)
{
  PetscInt64 total = 0, count;

  PetscFunctionBeginUser;
  /* Count, with the checks that need defaults merged */
  for (PetscInt i = 0; i < spec->nruns; i++) {
    RunSpec *run = &spec->runs[i];

    JobCountRun(r, spec, run, &count);
    JobCheckProblem(r);
    run->first = (PetscInt)total;
    run->count = (PetscInt)count;
    total += count;
    JobSetField(r, "", "runs");
    if (total > JOB_CONFIGS_MAX)
      JobProblem(r, run->start, "the job expands to more than %d configurations", JOB_CONFIGS_MAX);
    JobCheckProblem(r);
  }
  JobSetField(r, "", "runs");
  if (!total) JobProblem(r, spec->runs_mark, "the job expands to no configuration");
  JobCheckProblem(r);

  /* Every configuration, named */
  PetscCall(PetscStrncpy(job->output_dir, spec->output_dir, sizeof(job->output_dir)));
  job->checkpoint_steps   = spec->checkpoint_steps;
  job->checkpoint_minutes = spec->checkpoint_minutes;
  PetscCall(PetscCalloc1(total, &job->configs));
  job->nconfigs = (PetscInt)total;
  for (PetscInt i = 0; i < spec->nruns; i++) {
    const RunSpec *run = &spec->runs[i];

    for (PetscInt c = 0; c < run->count; c++) {
      VarproConfig *cfg = &job->configs[run->first + c];

      JobFillConfig(spec, run, c, cfg);
      cfg->index = run->first + c;
      if (run->set[KEY_NAME])
        PetscCall(PetscStrncpy(cfg->name, run->name, sizeof(cfg->name)));
      else
        JobAutoName(r, run, cfg);
      JobCheckProblem(r);
    }
  }
  PetscCall(JobCheckUnique(r, spec, job));
  PetscFunctionReturn(0);
}

/* ---- reading on rank 0 ---------------------------------------------------------------- */

/* Makes room for more bytes of the file: the buffer doubles from 64 KiB. */
static PetscErrorCode JobGrowText(char **text, size_t len, size_t *cap)
{
  size_t grown = *cap ? 2 * *cap : 64 * 1024;
  char  *bigger;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(grown, &bigger));
  if (len) PetscCall(PetscArraycpy(bigger, *text, len));
  PetscCall(PetscFree(*text));
  *text = bigger;
  *cap  = grown;
  PetscFunctionReturn(0);
}

/* Reads the whole file into r->text, or records why it cannot. */
static PetscErrorCode JobReadFile(JobReader *r)
{
  const yaml_mark_t origin = {0, 0, 0};
  FILE             *fp     = NULL;
  char             *text   = NULL;
  size_t            len = 0, cap = 0, got;
  struct stat       st;
  int               fd;

  PetscFunctionBeginUser;
  /* Without blocking (a FIFO would wait for a writer forever), and only a regular file */
  if ((fd = open(r->path, O_RDONLY | O_NONBLOCK)) < 0) {
    (void)snprintf(r->msg, VARPRO_MSG_MAX, "%s: cannot open the job file: %s", r->path, strerror(errno));
    PetscFunctionReturn(0);
  }
  if (fstat(fd, &st)) st.st_mode = 0;
  if (!S_ISREG(st.st_mode) || !(fp = fdopen(fd, "rb"))) {
    (void)snprintf(r->msg, VARPRO_MSG_MAX, "%s: cannot read the job file: %s", r->path,
                   S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file");
    (void)close(fd);
    PetscFunctionReturn(0);
  }
  do {
    if (len == cap) PetscCall(JobGrowText(&text, len, &cap));
    got = fread(text + len, 1, cap - len, fp);
    len += got;
  } while (got && len <= JOB_FILE_MAX);
  if (ferror(fp)) (void)snprintf(r->msg, VARPRO_MSG_MAX, "%s: cannot read the job file: %s", r->path, strerror(errno));
  (void)fclose(fp);
  JobSetField(r, "", "job file");
  if (len > JOB_FILE_MAX) JobProblem(r, origin, "larger than %d bytes; not a job file", JOB_FILE_MAX);
  r->text = text;
  r->len  = len;
  PetscFunctionReturn(0);
}

/* Frees what parsing allocated. */
static PetscErrorCode JobSpecDestroy(JobSpec *spec)
{
  PetscFunctionBeginUser;
  for (PetscInt i = -1; i < spec->nruns; i++) {
    RunSpec *run = i < 0 ? &spec->defaults : &spec->runs[i];

    for (PetscInt k = 0; k < NUM_RUN_KEYS; k++) PetscCall(PetscFree(run->values[k]));
  }
  PetscCall(PetscFree(spec->runs));
  PetscFunctionReturn(0);
}

/* Rank 0's whole work: read, parse, expand. A problem with the input leaves its message in
   msg and job empty; other failures are errors. */
static PetscErrorCode JobLoadLocal(const char path[], VarproJob *job, char msg[])
{
  JobReader r;
  JobSpec   spec;
  size_t    len;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&r, sizeof(r)));
  PetscCall(PetscMemzero(&spec, sizeof(spec)));
  spec.checkpoint_minutes = JOB_DEFAULT_CHECKPOINT_MINUTES;
  r.path                  = path;
  r.msg                   = msg;
  PetscCall(PetscStrlen(path, &len));
  if (len >= VARPRO_PATH_MAX)
    (void)snprintf(msg, VARPRO_MSG_MAX, "%.64s...: job file path longer than %d characters", path, VARPRO_PATH_MAX - 1);
  if (!msg[0]) PetscCall(JobReadFile(&r));

  /* Parse the text against the schema */
  if (!msg[0]) {
    PetscCheck(yaml_parser_initialize(&r.parser), PETSC_COMM_SELF, PETSC_ERR_MEM, "Cannot initialize libyaml's parser");
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)r.text, r.len);
    PetscCall(JobParseStream(&r, &spec));
    if (!msg[0]) PetscCall(JobExpand(&r, &spec, job));
    if (r.has_event) yaml_event_delete(&r.event);
    yaml_parser_delete(&r.parser);
  }

  /* Clean up; nothing of a bad job is kept */
  if (msg[0]) {
    PetscCall(PetscFree(job->configs));
    job->nconfigs      = 0;
    job->output_dir[0] = 0;
  }
  PetscCall(JobSpecDestroy(&spec));
  PetscCall(PetscFree(r.text));
  PetscFunctionReturn(0);
}

/* Gives every rank rank 0's job. The configurations are plain data and travel as bytes. */
static PetscErrorCode JobBroadcast(MPI_Comm comm, VarproJob *job)
{
  PetscMPIInt rank;
  size_t      bytes;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Bcast(job->output_dir, sizeof(job->output_dir), MPI_CHAR, 0, comm));
  PetscCallMPI(MPI_Bcast(&job->checkpoint_steps, 1, MPIU_INT, 0, comm));
  PetscCallMPI(MPI_Bcast(&job->checkpoint_minutes, 1, MPIU_REAL, 0, comm));
  PetscCallMPI(MPI_Bcast(&job->nconfigs, 1, MPIU_INT, 0, comm));
  if (rank) PetscCall(PetscMalloc1(job->nconfigs, &job->configs));
  bytes = (size_t)job->nconfigs * sizeof(VarproConfig);
  PetscCheck(bytes <= INT32_MAX, comm, PETSC_ERR_SUP,
             "A job of %" PetscInt_FMT " configurations is too large to broadcast", job->nconfigs);
  PetscCallMPI(MPI_Bcast(job->configs, (PetscMPIInt)bytes, MPI_BYTE, 0, comm));
  PetscFunctionReturn(0);
}

/* ---- public interface ----------------------------------------------------------------- */

PetscErrorCode VarproJobLoad(MPI_Comm comm, const char path[], VarproJob *job)
{
  char        msg[VARPRO_MSG_MAX] = "";
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(job, sizeof(*job)));
  PetscCall(PetscStrncpy(job->path, path, sizeof(job->path)));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));

  /* Rank 0 reads, checks and expands the file; any problem becomes one message for all ranks */
  if (rank == 0) PetscCall(JobLoadLocal(path, job, msg));
  PetscCall(VarproInputErrorSync(comm, msg));

  /* Every rank holds the same expanded job */
  PetscCall(JobBroadcast(comm, job));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproJobDestroy(VarproJob *job)
{
  PetscFunctionBeginUser;
  if (!job) PetscFunctionReturn(0);
  PetscCall(PetscFree(job->configs));
  PetscCall(PetscMemzero(job, sizeof(*job)));
  PetscFunctionReturn(0);
}

/* str as a YAML double-quoted string: backslash and quote escaped, control bytes as \xHH. */
static PetscErrorCode JobQuote(const char str[], char buf[], size_t len)
{
  size_t n = 0;

  PetscFunctionBeginUser;
  PetscCheck(len >= 4 * strlen(str) + 3, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ, "Buffer too small to quote a string");
  buf[n++] = '"';
  for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
    if (*p == '"' || *p == '\\')
      buf[n++] = '\\', buf[n++] = (char)*p;
    else if (*p < 0x20 || *p == 0x7f)
      n += (size_t)snprintf(buf + n, len - n, "\\x%02X", *p);
    else
      buf[n++] = (char)*p;
  }
  buf[n++] = '"';
  buf[n]   = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproConfigFormat(const VarproConfig *cfg, char buf[], size_t len)
{
  char name[4 * VARPRO_NAME_MAX + 3], data_file[4 * VARPRO_PATH_MAX + 3];
  int  n;

  PetscFunctionBeginUser;
  PetscCheck(cfg->regularization == VARPRO_BIASED || cfg->regularization == VARPRO_UNBIASED, PETSC_COMM_SELF,
             PETSC_ERR_ARG_OUTOFRANGE, "Unknown regularization %d", (int)cfg->regularization);

  /* Strings are quoted so that any file name stays valid YAML; reals round-trip with 17 digits */
  PetscCall(JobQuote(cfg->name, name, sizeof(name)));
  PetscCall(JobQuote(cfg->data_file, data_file, sizeof(data_file)));
  n = snprintf(buf, len,
               "name: %s\nregularization: %s\nstudent_width: %" PetscInt_FMT
               "\nlambda: %.17g\ngamma: %.17g\nseed: %" PRId64 "\nepochs: %" PetscInt_FMT "\nN: %" PetscInt_FMT
               "\nteacher_width: %" PetscInt_FMT "\ntime_scale: %.17g\nsaving_step: %" PetscInt_FMT
               "\nmmd_points: %" PetscInt_FMT "\ndata_file: %s\n",
               name, VarproRegularizations[cfg->regularization], cfg->student_width, (double)cfg->lambda,
               (double)cfg->gamma, cfg->seed, cfg->epochs, cfg->N, cfg->teacher_width, (double)cfg->time_scale,
               cfg->saving_step, cfg->mmd_points, data_file);
  PetscCheck(n >= 0 && (size_t)n < len, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "Configuration text needs %d bytes, the buffer has %zu", n + 1, len);
  PetscFunctionReturn(0);
}
