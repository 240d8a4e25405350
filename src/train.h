/* Training of one configuration by Variable Projection. */
#pragma once

#include "claim.h"
#include "varpro_impl.h"

typedef struct _p_VarproTrainer *VarproTrainer;

/* What a finished (or skipped) run reports for the job's closing table. */
typedef struct {
  PetscBool skipped;    /* a complete result existed */
  PetscBool refused;    /* another live run holds the configuration's claim */
  PetscBool claim_lost; /* the run stopped because another run took its claim over */
  PetscInt  epochs;
  PetscReal reduced_risk;  /* at the last step taken, before its update */
  PetscReal mmd;           /* at the final features */
  PetscReal wall_time;     /* seconds, whole run */
  PetscReal time_per_step; /* seconds, median over steps */
} VarproRunSummary;

/* Sets up the problem, the distributed kernel matrix and the inner solver of cfg. Collective. */
PetscErrorCode VarproTrainerCreate(MPI_Comm comm, const VarproConfig *cfg, VarproTrainer *tr);
PetscErrorCode VarproTrainerDestroy(VarproTrainer *tr);

/* Trains for cfg->epochs steps, streaming the histories to a result file in output_dir.
   run_info is stored as attribute "run_info" (how the run was launched). Collective. */
PetscErrorCode VarproTrainerRun(VarproTrainer tr, const char output_dir[], const char run_info[],
                                VarproRunSummary *summary);

/* Progress lines every 1% of a run, at most once every interval seconds (default 10). */
PetscErrorCode VarproTrainerSetProgressInterval(VarproTrainer tr, PetscReal seconds);

/* Whether a run continues from a partial result file of its configuration (default: yes);
   --force turns this off. */
PetscErrorCode VarproTrainerSetResume(VarproTrainer tr, PetscBool resume);

/* A checkpoint (VarproResultCheckpoint) every steps steps and at least every minutes minutes of
   rank 0's clock; 0 turns either off (default: both off). */
PetscErrorCode VarproTrainerSetCheckpoint(VarproTrainer tr, PetscInt steps, PetscReal minutes);

/* The claim on the configuration, refreshed as the run goes (default: none). A run whose claim
   was taken over by another run stops at the next step boundary, adds nothing more to the
   partial file, and sets claim_lost in its summary. */
PetscErrorCode VarproTrainerSetClaim(VarproTrainer tr, VarproClaim claim);

/* Catches SIGTERM and SIGUSR1 for the rest of the process: a run then stops at the next step
   boundary on every rank, with its partial result saved, and raises PETSC_ERR_SIG. SIGPIPE gets
   its default action back. Call after PetscInitialize, whose own handlers it replaces for these
   three signals. */
PetscErrorCode VarproTrainerCatchStopSignals(void);

/* For tests: replace the current features (M x 2, replicated) and read them back. */
PetscErrorCode VarproTrainerSetFeatures(VarproTrainer tr, const PetscReal features[]);
PetscErrorCode VarproTrainerGetFeatures(VarproTrainer tr, PetscReal features[]);
PetscErrorCode VarproTrainerGetSizes(VarproTrainer tr, PetscInt *M, PetscInt *N);

/* For tests: at the current features, project the outer weights, then return the reduced
   risk and, if gradient is not NULL, its gradient with respect to the features (M x 2).
   Collective. */
PetscErrorCode VarproTrainerEvaluate(VarproTrainer tr, PetscReal *risk, PetscReal gradient[]);
