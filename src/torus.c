/* Pair sums on the torus: the energy-distance MMD between student and teacher features. */
#include "torus.h"

void VarproPartition(PetscInt n, PetscMPIInt size, PetscMPIInt rank, PetscInt *start, PetscInt *count)
{
  PetscInt base = n / size, extra = n % size;

  *count = base + (rank < extra ? 1 : 0);
  *start = rank * base + PetscMin((PetscInt)rank, extra);
}

PetscReal VarproTorusDistanceSum(PetscInt ia, PetscInt ib, const PetscReal a[], PetscInt nb, const PetscReal b[])
{
  PetscReal sum = 0.0;

  for (PetscInt i = ia; i < ib; i++) {
    PetscReal row = 0.0;

    for (PetscInt k = 0; k < nb; k++) row += VarproTorusDistance(&a[2 * i], &b[2 * k]);
    sum += row;
  }
  return sum;
}

/* Sums over this rank's block of rows of a, reduced over comm. */
static PetscErrorCode TorusDistanceSumParallel(MPI_Comm comm, PetscInt na, const PetscReal a[], PetscInt nb,
                                               const PetscReal b[], PetscReal *sum)
{
  PetscMPIInt rank, size;
  PetscInt    start, count;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  VarproPartition(na, size, rank, &start, &count);
  *sum = VarproTorusDistanceSum(start, start + count, a, nb, b);
  PetscCall(PetscLogFlops(12.0 * count * nb));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sum, 1, MPIU_REAL, MPIU_SUM, comm));
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTorusMeanSelfDistance(MPI_Comm comm, PetscInt nb, const PetscReal b[], PetscReal *mean)
{
  PetscReal sum;

  PetscFunctionBeginUser;
  PetscCall(TorusDistanceSumParallel(comm, nb, b, nb, b, &sum));
  *mean = sum / ((PetscReal)nb * nb);
  PetscFunctionReturn(0);
}

PetscErrorCode VarproTorusMMD(MPI_Comm comm, PetscInt na, const PetscReal a[], PetscInt nb, const PetscReal b[],
                              PetscReal bb_mean, PetscReal *mmd)
{
  PetscReal aa, ab, squared;

  PetscFunctionBeginUser;
  /* MMD^2 = mean k(a,a) + mean k(b,b) - 2 mean k(a,b) with k = -d */
  PetscCall(VarproTorusMeanSelfDistance(comm, na, a, &aa));
  if (bb_mean < 0) PetscCall(VarproTorusMeanSelfDistance(comm, nb, b, &bb_mean));
  PetscCall(TorusDistanceSumParallel(comm, na, a, nb, b, &ab));
  ab /= (PetscReal)na * nb;
  squared = 2.0 * ab - aa - bb_mean;

  /* The energy distance is non-negative; clip rounding below zero */
  *mmd = sqrt(PetscMax(squared, 0.0));
  PetscFunctionReturn(0);
}
