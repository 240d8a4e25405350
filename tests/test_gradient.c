/* The feature gradient against central differences of the reduced risk, u re-projected at
   every evaluation (the envelope theorem makes the two agree). */
#include "train.h"

#include <math.h>
#include <stdio.h>

static PetscErrorCode CheckRegularization(VarproRegularization reg, int *failures)
{
  VarproConfig  cfg = {0};
  VarproTrainer tr;
  PetscInt      M;
  PetscReal    *w, *g, risk, plus, minus, h = 1e-5;

  PetscFunctionBeginUser;
  /* A small generated problem, lambda large enough for a well-conditioned inner problem */
  PetscCall(PetscStrncpy(cfg.name, "gradient-check", sizeof(cfg.name)));
  cfg.regularization = reg;
  cfg.student_width  = 8;
  cfg.lambda         = 1e-2;
  cfg.gamma          = 100;
  cfg.seed           = 3;
  cfg.N              = 64;
  cfg.teacher_width  = 16;
  cfg.time_scale     = 1.0 / 1024;
  cfg.saving_step    = 1;
  cfg.mmd_points     = 2;
  PetscCall(VarproTrainerCreate(PETSC_COMM_WORLD, &cfg, &tr));
  PetscCall(VarproTrainerGetSizes(tr, &M, NULL));
  PetscCall(PetscMalloc2(2 * M, &w, 2 * M, &g));

  /* Analytic gradient at w, then each coordinate by central differences */
  PetscCall(VarproTrainerEvaluate(tr, &risk, g));
  PetscCall(VarproTrainerGetFeatures(tr, w));
  for (PetscInt k = 0; k < 2 * M; k++) {
    PetscReal saved = w[k], fd, err;

    w[k] = saved + h;
    PetscCall(VarproTrainerSetFeatures(tr, w));
    PetscCall(VarproTrainerEvaluate(tr, &plus, NULL));
    w[k] = saved - h;
    PetscCall(VarproTrainerSetFeatures(tr, w));
    PetscCall(VarproTrainerEvaluate(tr, &minus, NULL));
    w[k] = saved;
    fd   = (plus - minus) / (2 * h);
    err  = fabs(fd - g[k]) / PetscMax(fabs(g[k]), 1e-3);
    PetscCall(PetscPrintf(
      PETSC_COMM_WORLD,
      "%s %s dR/dw[%" PetscInt_FMT "][%" PetscInt_FMT "] analytic % .10e  differences % .10e  rel err %.1e\n",
      err < 1e-6 ? "ok  " : "FAIL", VarproRegularizations[reg], k / 2, k % 2, (double)g[k], (double)fd, (double)err));
    if (!(err < 1e-6)) (*failures)++;
  }
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%s reduced risk at the initial features: %.12e\n",
                        VarproRegularizations[reg], (double)risk));
  if (!(risk > 0 && isfinite(risk))) (*failures)++;
  PetscCall(PetscFree2(w, g));
  PetscCall(VarproTrainerDestroy(&tr));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  int failures = 0;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(CheckRegularization(VARPRO_BIASED, &failures));
  PetscCall(CheckRegularization(VARPRO_UNBIASED, &failures));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%d failure(s)\n", failures));
  PetscCall(PetscFinalize());
  return failures ? 1 : 0;
}
