/* The passes over F of a step; see kernels.h. This file is built with -ffast-math so that exp
   vectorises and the sums are reassociated into vector lanes: the NaN checks of a step live
   elsewhere and are not affected. */
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
                          const PetscReal w0[], const PetscReal w1[], PetscReal F[], PetscReal Fty[])
{
  for (PetscInt j = 0; j < M; j++) Fty[j] = 0.0;
  for (PetscInt i = 0; i < n; i++) {
    const PetscReal a = x0[i], b = x1[i], yi = y[i];
    PetscReal *restrict row = &F[i * M];

#pragma omp simd
    for (PetscInt j = 0; j < M; j++) {
      PetscReal dx = WrapDifference(w0[j] - a), dy = WrapDifference(w1[j] - b);

      row[j] = VARPRO_PHI_SCALE * exp(-VARPRO_PHI_RATE * sqrt(dx * dx + dy * dy));
      Fty[j] += row[j] * yi;
    }
  }
}

PetscReal VarproKernelResidualGradient(PetscInt n, const PetscReal x0[], const PetscReal x1[], const PetscReal y[],
                                       PetscInt M, const PetscReal w0[], const PetscReal w1[], const PetscReal u[],
                                       const PetscReal F[], PetscReal sx[], PetscReal sy[])
{
  PetscReal sq = 0.0;

  for (PetscInt j = 0; j < M; j++) sx[j] = sy[j] = 0.0;
  for (PetscInt i = 0; i < n; i++) {
    const PetscReal a = x0[i], b = x1[i];
    const PetscReal *restrict row = &F[i * M];
    PetscReal f                   = 0.0, e;

    /* The residual of this point, then phi'(r) wrap(w - x) / r, a point on top of a feature
       contributing nothing, while the row is in cache */
#pragma omp simd reduction(+ : f)
    for (PetscInt j = 0; j < M; j++) f += row[j] * u[j];
    e = f / M - y[i];
    sq += e * e;
#pragma omp simd
    for (PetscInt j = 0; j < M; j++) {
      PetscReal dx = WrapDifference(w0[j] - a), dy = WrapDifference(w1[j] - b);
      PetscReal r2 = dx * dx + dy * dy;
      PetscReal c  = r2 > 0.0 ? e * row[j] / sqrt(r2) : 0.0;

      sx[j] += c * dx;
      sy[j] += c * dy;
    }
  }
  return sq;
}

void VarproKernelNormalProduct(PetscInt n, PetscInt M, const PetscReal F[], const PetscReal x[], PetscReal y[])
{
  for (PetscInt j = 0; j < M; j++) y[j] = 0.0;
  for (PetscInt i = 0; i < n; i++) {
    const PetscReal *restrict row = &F[i * M];
    PetscReal t                   = 0.0;

#pragma omp simd reduction(+ : t)
    for (PetscInt j = 0; j < M; j++) t += row[j] * x[j];
#pragma omp simd
    for (PetscInt j = 0; j < M; j++) y[j] += t * row[j];
  }
}
