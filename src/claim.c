/*
 * Claim files. Array tasks or whole jobs that share a results directory must not train the
 * same configuration at once: the second would write the partial file under the first. Rank 0
 * of a run creates <name>.h5.claim with O_EXCL before training and removes it afterwards; a run
 * that finds a live claim refuses that configuration.
 *
 * A run killed outright leaves its claim behind. Such a claim is stale when its owner ran on
 * this host and its process is gone, or when its modification time, which the owner refreshes
 * as it trains, is older than the stale time (the only test possible across hosts). A stale
 * claim is moved aside with rename(), which only one contender can do, and the move is undone
 * if what was moved turns out to be another run's fresh claim.
 */
#define _POSIX_C_SOURCE 200809L

#include "claim.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CLAIM_TEXT_MAX 512

/* CLAIM_BAD: something other than a regular file (a directory, a symbolic link, ...) under the
   claim's name, which no run creates and none may take over. */
typedef enum { CLAIM_NONE, CLAIM_LIVE, CLAIM_STALE, CLAIM_BAD } ClaimState;

struct _p_VarproClaim {
  PetscMPIInt rank;
  char        path[VARPRO_PATH_MAX + 256];
  char        text[CLAIM_TEXT_MAX]; /* what this run wrote into the file */
  PetscReal   stale_seconds;
  time_t      last_refresh;
};

static PetscErrorCode ClaimPath(const char dir[], const VarproConfig *cfg, char path[], size_t len)
{
  PetscFunctionBeginUser;
  PetscCheck((size_t)snprintf(path, len, "%s/%s.h5.claim", dir, cfg->name) < len, PETSC_COMM_SELF, PETSC_ERR_USER_INPUT,
             "%s/%s.h5.claim: path too long", dir, cfg->name);
  PetscFunctionReturn(0);
}

/* The contents of the claim file at path, "" when it cannot be read or is not a regular file (never
   through a symbolic link, and never waiting on a FIFO); returns -1 when it does not exist. */
static int ReadText(const char path[], char text[], size_t len)
{
  int         fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  struct stat st;
  ssize_t     n = 0;

  text[0] = '\0';
  if (fd < 0) return errno == ENOENT ? -1 : 0;
  if (!fstat(fd, &st) && S_ISREG(st.st_mode)) n = read(fd, text, len - 1);
  text[n > 0 ? n : 0] = '\0';
  close(fd);
  return 0;
}

void VarproHostAndNow(char host[256], char when[32])
{
  time_t    now = time(NULL);
  struct tm tm;

  if (gethostname(host, 255)) strcpy(host, "?");
  host[255] = 0;
  if (!gmtime_r(&now, &tm) || !strftime(when, 32, "%Y-%m-%dT%H:%M:%SZ", &tm)) strcpy(when, "?");
}

/* What this process writes into a claim file. */
static void OwnText(char text[], size_t len)
{
  char        host[256], stamp[32];
  const char *job = getenv("SLURM_JOB_ID"), *task = getenv("SLURM_ARRAY_TASK_ID");

  VarproHostAndNow(host, stamp);
  snprintf(text, len, "host %s pid %ld job %s%s%s started %s\n", host, (long)getpid(), job ? job : "-", task ? "_" : "",
           task ? task : "", stamp);
}

/* Whether process pid of this host has ended: it does not exist, or (Linux) it is a zombie that
   nobody has reaped yet, as happens to a killed rank whose parent has gone. */
static PetscBool ProcessGone(long pid)
{
  char  path[64], stat_line[512], *paren;
  FILE *f;

  if (kill((pid_t)pid, 0) && errno == ESRCH) return PETSC_TRUE;
  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  if (!(f = fopen(path, "r"))) return PETSC_FALSE;
  stat_line[0] = '\0';
  if (!fgets(stat_line, sizeof(stat_line), f)) stat_line[0] = '\0';
  fclose(f);
  paren = strrchr(stat_line, ')');
  return (PetscBool)(paren && (paren[2] == 'Z' || paren[2] == 'X'));
}

/* Rank 0: whether the claim at path is absent, live, stale or not a claim file at all; text gets its
   contents and owner a description for messages (for CLAIM_BAD, what is wrong). A modification
   time in the future (clocks that differ between hosts) counts as just refreshed. */
static ClaimState Inspect(const char path[], PetscReal stale_seconds, char text[], char owner[], size_t len)
{
  char        host[256] = "", claim_host[256] = "", who[CLAIM_TEXT_MAX], refreshed[64];
  long        pid = -1;
  struct stat st;
  double      age;
  PetscBool   dead = PETSC_FALSE;

  text[0] = '\0';
  if (lstat(path, &st)) return CLAIM_NONE;
  if (!S_ISREG(st.st_mode)) {
    char problem[VARPRO_MSG_MAX] = "";

    (void)VarproPathCheckPlain(path, "claim file", problem);
    snprintf(owner, len, "%s", problem);
    return CLAIM_BAD;
  }
  if (ReadText(path, text, CLAIM_TEXT_MAX) < 0) return CLAIM_NONE;
  age = difftime(time(NULL), st.st_mtime);
  gethostname(host, sizeof(host) - 1);
  if (sscanf(text, "host %255s pid %ld", claim_host, &pid) == 2 && !strcmp(host, claim_host) && pid > 0)
    dead = ProcessGone(pid);
  snprintf(who, sizeof(who), "%.*s", (int)strcspn(text, "\n"), text);
  if (age >= 0)
    snprintf(refreshed, sizeof(refreshed), "refreshed %.0f s ago", age);
  else
    snprintf(refreshed, sizeof(refreshed), "refreshed %.0f s in the future", -age);
  snprintf(owner, len, "%s (claim file %s, %s)", who[0] ? who : "an empty or unreadable claim", path, refreshed);
  return (dead || age > stale_seconds) ? CLAIM_STALE : CLAIM_LIVE;
}

/* Rank 0: creates the claim file with this run's text; returns 0, EEXIST when another run holds it,
   or another errno. */
static int Create(const char path[], const char text[])
{
  int    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644), err = 0;
  size_t n = strlen(text);

  if (fd < 0) return errno;
  if (write(fd, text, n) != (ssize_t)n) err = errno ? errno : EIO;
  if (close(fd) && !err) err = errno;
  if (err) unlink(path);
  return err;
}

/* Rank 0: moves the stale claim whose contents were stale_text out of the way. Returns whether it
   was moved; when what got moved is not that claim (another run took it over in between), it is
   put back. */
static PetscBool MoveStale(const char path[], const char stale_text[])
{
  char aside[VARPRO_PATH_MAX + 300], moved[CLAIM_TEXT_MAX];

  snprintf(aside, sizeof(aside), "%s.stale.%ld", path, (long)getpid());
  if (rename(path, aside)) return PETSC_FALSE;
  ReadText(aside, moved, sizeof(moved));
  if (strcmp(moved, stale_text)) {
    if (link(aside, path)) { /* someone claimed it again meanwhile: theirs stands */
    }
    unlink(aside);
    return PETSC_FALSE;
  }
  unlink(aside);
  return PETSC_TRUE;
}

/* Rank 0's answer, shared: state and owner. */
static PetscErrorCode ShareState(MPI_Comm comm, int *state, char owner[], size_t len)
{
  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Bcast(state, 1, MPI_INT, 0, comm));
  PetscCallMPI(MPI_Bcast(owner, (PetscMPIInt)len, MPI_CHAR, 0, comm));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproClaimHeld(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscReal stale_seconds,
                               PetscBool *held, char owner[], size_t len)
{
  PetscMPIInt rank;
  char        path[VARPRO_PATH_MAX + 256], text[CLAIM_TEXT_MAX];
  int         state = CLAIM_NONE;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  owner[0] = '\0';
  PetscCall(ClaimPath(dir, cfg, path, sizeof(path)));
  if (rank == 0) state = (int)Inspect(path, stale_seconds, text, owner, len);
  PetscCall(ShareState(comm, &state, owner, len));
  *held = (PetscBool)(state == CLAIM_LIVE);
  PetscFunctionReturn(0);
}

PetscErrorCode VarproClaimCheck(MPI_Comm comm, const char dir[], const VarproConfig *cfg)
{
  PetscMPIInt rank;
  char        path[VARPRO_PATH_MAX + 256], msg[VARPRO_MSG_MAX] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(ClaimPath(dir, cfg, path, sizeof(path)));
  if (rank == 0) PetscCall(VarproPathCheckPlain(path, "claim file", msg));
  PetscCall(VarproInputErrorSync(comm, msg));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproClaimAcquire(MPI_Comm comm, const char dir[], const VarproConfig *cfg, PetscReal stale_seconds,
                                  VarproClaim *claim, char owner[], size_t len)
{
  VarproClaim    c;
  char           text[CLAIM_TEXT_MAX], msg[VARPRO_MSG_MAX] = "";
  int            state = CLAIM_NONE;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  *claim   = NULL;
  owner[0] = '\0';
  PetscCall(PetscNew(&c));
  PetscCallMPI(MPI_Comm_rank(comm, &c->rank));
  PetscCall(ClaimPath(dir, cfg, c->path, sizeof(c->path)));
  c->stale_seconds = stale_seconds;
  c->last_refresh  = time(NULL);
  OwnText(c->text, sizeof(c->text));

  /* Rank 0 tries twice: a stale claim is moved aside once, then the file is created anew */
  for (int attempt = 0; c->rank == 0 && attempt < 2; attempt++) {
    int err = Create(c->path, c->text);

    if (!err) {
      state = CLAIM_NONE;
      break;
    }
    if (err != EEXIST) {
      PetscCall(PetscSNPrintf(msg, sizeof(msg), "cannot create claim file %s: %s", c->path, strerror(err)));
      break;
    }
    state = (int)Inspect(c->path, stale_seconds, text, owner, len);
    if (state == CLAIM_BAD) PetscCall(PetscStrncpy(msg, owner, sizeof(msg)));
    if (state == CLAIM_LIVE || state == CLAIM_BAD) break;
    if (state == CLAIM_STALE && attempt == 0 && MoveStale(c->path, text))
      PetscCall(PetscPrintf(PETSC_COMM_SELF, "  taking over the stale claim on %s: %s\n", cfg->name, owner));
    else if (state == CLAIM_STALE)
      state = CLAIM_LIVE; /* another run got there first */
  }
  ierr = VarproInputErrorSync(comm, msg);
  if (ierr) PetscCall(PetscFree(c));
  PetscCall(ierr);
  PetscCall(ShareState(comm, &state, owner, len));
  if (state == CLAIM_LIVE)
    PetscCall(PetscFree(c));
  else
    *claim = c;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproClaimRefresh(VarproClaim claim, PetscBool *lost)
{
  char   text[CLAIM_TEXT_MAX];
  time_t now = time(NULL);

  PetscFunctionBeginUser;
  *lost = PETSC_FALSE;
  if (!claim || claim->rank != 0 || difftime(now, claim->last_refresh) < PetscMax(1.0, 0.1 * claim->stale_seconds))
    PetscFunctionReturn(0);
  claim->last_refresh = now;
  if (ReadText(claim->path, text, sizeof(text)) < 0 || strcmp(text, claim->text))
    *lost = PETSC_TRUE;
  else if (utimensat(AT_FDCWD, claim->path, NULL, AT_SYMLINK_NOFOLLOW))
    *lost = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode VarproClaimRelease(VarproClaim *claim)
{
  char text[CLAIM_TEXT_MAX];

  PetscFunctionBeginUser;
  if (!*claim) PetscFunctionReturn(0);
  if ((*claim)->rank == 0 && !ReadText((*claim)->path, text, sizeof(text)) && !strcmp(text, (*claim)->text))
    unlink((*claim)->path);
  PetscCall(PetscFree(*claim));
  PetscFunctionReturn(0);
}
