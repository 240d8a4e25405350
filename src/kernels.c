/* Element-wise passes of a step; see kernels.h. This file is built with -ffast-math so that
   exp vectorises: the NaN checks of a step live elsewhere and are not affected. */
#include "kernels.h"
#include "torus.h"

/* wrap(d) for d = w - x in (-4, 4) with w, x in [-2, 2) */
static inline PetscReal WrapDifference(PetscReal d)
{
  d += d < -VARPRO_TORUS_HALF ? VARPRO_TORUS_PERIOD : 0.0;
  d -= d >= VARPRO_TORUS_HALF ? VARPRO_TORUS_PERIOD : 0.0;
  return d;
}

void VarproKernelFeatures(PetscInt n, const PetscReal x0[], const PetscReal x1[], const PetscReal y[], PetscInt M,
                          const PetscReal w[], PetscReal F[], PetscReal Fty[])
{
  for (PetscInt j = 0; j < M; j++) {
    const PetscReal w0 = w[2 * j], w1 = w[2 * j + 1];
    PetscReal *restrict col = &F[j * n];
    PetscReal dot           = 0.0;

#pragma omp simd reduction(+ : dot)
    for (PetscInt i = 0; i < n; i++) {
      PetscReal dx = WrapDifference(w0 - x0[i]), dy = WrapDifference(w1 - x1[i]);

      col[i] = VARPRO_PHI_SCALE * exp(-VARPRO_PHI_RATE * sqrt(dx * dx + dy * dy));
      dot += col[i] * y[i];
    }
    Fty[j] = dot;
  }
}

void VarproKernelGradientSums(PetscInt n, const PetscReal x0[], const PetscReal x1[], PetscInt M, const PetscReal w[],
                              const PetscReal F[], const PetscReal e[], PetscReal s[])
{
  for (PetscInt j = 0; j < M; j++) {
    const PetscReal w0 = w[2 * j], w1 = w[2 * j + 1];
    const PetscReal *restrict col = &F[j * n];
    PetscReal gx = 0.0, gy = 0.0;

    /* phi'(r) wrap(w - x) / r; a point on top of a feature contributes nothing */
#pragma omp simd reduction(+ : gx, gy)
    for (PetscInt i = 0; i < n; i++) {
      PetscReal dx = WrapDifference(w0 - x0[i]), dy = WrapDifference(w1 - x1[i]);
      PetscReal r2 = dx * dx + dy * dy;
      PetscReal c  = r2 > 0.0 ? e[i] * col[i] / sqrt(r2) : 0.0;

      gx += c * dx;
      gy += c * dy;
    }
    s[2 * j]     = gx;
    s[2 * j + 1] = gy;
  }
}
