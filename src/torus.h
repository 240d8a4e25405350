/*
 * Geometry and activation on the torus R^2 / 4Z^2, represented as [-2, 2)^2.
 *
 *   wrap(a) = -2 + mod(a + 2, 4)            per coordinate, result in [-2, 2)
 *   r(w, x) = |wrap(w - x)|_2               minimum-image distance
 *   phi(r)  = (2 / s^2) exp(-r / s), s = 1/2, i.e. 8 exp(-2 r);  phi'(r) = -2 phi(r)
 */
#pragma once

#include <math.h>
#include <petscsys.h>

#define VARPRO_TORUS_HALF 2.0 /* the domain is [-2, 2) per coordinate */
#define VARPRO_TORUS_PERIOD 4.0
#define VARPRO_PHI_SCALE 8.0 /* 2 / s^2 with s = 1/2 */
#define VARPRO_PHI_RATE 2.0  /* 1 / s */

/* mod(a + 2, 4) - 2 with a floored modulus, as in NumPy and PyTorch; never returns 2. */
static inline PetscReal VarproWrap(PetscReal a)
{
  PetscReal shifted = a + VARPRO_TORUS_HALF;
  PetscReal m       = shifted - VARPRO_TORUS_PERIOD * floor(shifted / VARPRO_TORUS_PERIOD);

  if (m >= VARPRO_TORUS_PERIOD) m -= VARPRO_TORUS_PERIOD; /* rounding of a tiny negative shift */
  return m - VARPRO_TORUS_HALF;
}

static inline PetscReal VarproPhi(PetscReal r)
{
  return VARPRO_PHI_SCALE * exp(-VARPRO_PHI_RATE * r);
}

/* phi'(r) = -2 phi(r) */
static inline PetscReal VarproPhiPrime(PetscReal r)
{
  return -VARPRO_PHI_RATE * VarproPhi(r);
}

/* Minimum-image distance between points p and q (each 2 numbers). */
static inline PetscReal VarproTorusDistance(const PetscReal p[2], const PetscReal q[2])
{
  PetscReal dx = VarproWrap(p[0] - q[0]), dy = VarproWrap(p[1] - q[1]);

  return sqrt(dx * dx + dy * dy);
}

/* Sum of distances d(a_i, b_k) for i in [ia, ib) and all k < nb; a and b are n x 2. */
PetscReal VarproTorusDistanceSum(PetscInt ia, PetscInt ib, const PetscReal a[], PetscInt nb, const PetscReal b[]);

/* Energy-distance MMD on the torus between uniform measures on a (na x 2) and b (nb x 2)
   with kernel k(p, q) = -d(p, q). The pair sums are split over the ranks of comm by rows of
   the first argument; every rank gets the result. bb_mean, when >= 0, is a precomputed mean
   d(b, b) (the teacher's self-term is constant over a run). Collective. */
PetscErrorCode VarproTorusMMD(MPI_Comm comm, PetscInt na, const PetscReal a[], PetscInt nb, const PetscReal b[],
                              PetscReal bb_mean, PetscReal *mmd);

/* Mean d(b, b) over all nb^2 ordered pairs, split over comm. Collective. */
PetscErrorCode VarproTorusMeanSelfDistance(MPI_Comm comm, PetscInt nb, const PetscReal b[], PetscReal *mean);

/* Contiguous block partition of n items over size ranks: rank gets [*start, *start + *count). */
void VarproPartition(PetscInt n, PetscMPIInt size, PetscMPIInt rank, PetscInt *start, PetscInt *count);
