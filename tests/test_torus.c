/* Known answers for the torus geometry, the activation and the MMD. */
#include "torus.h"

#include <stdio.h>

static int failures = 0;

static void Check(const char what[], double got, double want, double tol)
{
  int ok = fabs(got - want) <= tol;

  printf("%s %-44s got % .17g want % .17g\n", ok ? "ok  " : "FAIL", what, got, want);
  if (!ok) failures++;
}

int main(int argc, char **argv)
{
  PetscReal mmd;

  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));

  /* wrap(a) = -2 + mod(a + 2, 4), in [-2, 2) */
  Check("wrap(0)", VarproWrap(0.0), 0.0, 0);
  Check("wrap(2) = -2", VarproWrap(2.0), -2.0, 0);
  Check("wrap(-2) = -2", VarproWrap(-2.0), -2.0, 0);
  Check("wrap(3) = -1", VarproWrap(3.0), -1.0, 0);
  Check("wrap(-3) = 1", VarproWrap(-3.0), 1.0, 0);
  Check("wrap(6.5) = -1.5", VarproWrap(6.5), -1.5, 0);
  Check("wrap(-9.25) = -1.25", VarproWrap(-9.25), -1.25, 0);
  Check("wrap(1.999) = 1.999", VarproWrap(1.999), 1.999, 1e-15);
  Check("wrap(-1e-300) < 2", VarproWrap(-1e-300) < 2.0, 1.0, 0);

  /* phi(r) = 8 exp(-2 r), phi' = -2 phi */
  Check("phi(0) = 8", VarproPhi(0.0), 8.0, 0);
  Check("phi(0.5) = 8/e", VarproPhi(0.5), 8.0 * exp(-1.0), 1e-15);
  Check("phi'(0.5) = -16/e", VarproPhiPrime(0.5), -16.0 * exp(-1.0), 1e-14);
  Check("phi(1) by hand", VarproPhi(1.0), 1.0826822658929016, 1e-15);

  /* Minimum-image distance across the boundary */
  {
    const PetscReal p[2] = {1.9, 1.9}, q[2] = {-1.9, -1.9}, s[2] = {0.5, -1.0}, t[2] = {-0.5, 1.0};

    Check("d((1.9,1.9), (-1.9,-1.9)) = 0.2 sqrt 2", VarproTorusDistance(p, q), 0.2 * sqrt(2.0), 1e-14);
    Check("d((0.5,-1), (-0.5,1)) = sqrt(1 + 4)", VarproTorusDistance(s, t), sqrt(5.0), 1e-15);
  }

  /* MMD^2 = 2 mean d(a,b) - mean d(a,a) - mean d(b,b), worked by hand */
  {
    const PetscReal a1[2] = {0, 0}, b1[2] = {1, 0};
    const PetscReal a2[2] = {-1.9, 0}, b2[2] = {1.9, 0};
    const PetscReal a3[4] = {0, 0, 1, 0}, b3[2] = {0, 0};
    const PetscReal a4[4] = {-1, 0, 1, 1}, b4[4] = {1, 1, -1, 0};

    PetscCall(VarproTorusMMD(PETSC_COMM_WORLD, 1, a1, 1, b1, -1, &mmd));
    Check("MMD one point each, distance 1", mmd, sqrt(2.0), 1e-15);
    PetscCall(VarproTorusMMD(PETSC_COMM_WORLD, 1, a2, 1, b2, -1, &mmd));
    Check("MMD across the boundary, distance 0.2", mmd, sqrt(0.4), 1e-14);
    PetscCall(VarproTorusMMD(PETSC_COMM_WORLD, 2, a3, 1, b3, -1, &mmd));
    Check("MMD {0, e1} vs {0}", mmd, sqrt(0.5), 1e-15);
    PetscCall(VarproTorusMMD(PETSC_COMM_WORLD, 2, a4, 2, b4, -1, &mmd));
    Check("MMD of a set with itself (reordered)", mmd, 0.0, 1e-7);
    PetscCall(VarproTorusMMD(PETSC_COMM_WORLD, 2, a3, 1, b3, 0.0, &mmd));
    Check("MMD with a given teacher self-term", mmd, sqrt(0.5), 1e-15);
  }

  /* Block partition */
  {
    PetscInt start, count;

    VarproPartition(10, 3, 0, &start, &count);
    Check("partition 10/3 rank 0 count", count, 4, 0);
    VarproPartition(10, 3, 2, &start, &count);
    Check("partition 10/3 rank 2 start", start, 7, 0);
    Check("partition 10/3 rank 2 count", count, 3, 0);
  }

  printf("%d failure(s)\n", failures);
  PetscCall(PetscFinalize());
  return failures ? 1 : 0;
}
