/*
 * The passes over this rank's N_local x M feature matrix F, the hot loops of a step. Compiled on
 * their own with vectorised exp (glibc's libmvec), since they dominate once the Gram product is
 * done by BLAS.
 *
 * F is row-major: row i (M contiguous numbers) holds phi(r(w_j, x_i)) for every feature j, so
 * that one pass over the rows applies F and F^T together, and BLAS sees it as the column-major
 * M x N_local matrix F^T. Inputs and features arrive pre-wrapped to [-2, 2) and stored by
 * coordinate, so wrap(w - x) of two points of the domain is one compare-and-shift per
 * coordinate.
 */
#pragma once

#include <petscsys.h>

/* F_ij = phi(r(w_j, x_i)) for i < n, j < M (F row-major, n x M), the features w given by
   coordinate (w0, w1). In the same pass Fty_j = sum_i F_ij y_i, the right-hand side of the inner
   problem. */
void VarproKernelFeatures(PetscInt n, const PetscReal x0[], const PetscReal x1[], const PetscReal y[], PetscInt M,
                          const PetscReal w0[], const PetscReal w1[], PetscReal F[], PetscReal Fty[]);

/* The residual and the sums of the feature gradient in one pass over the rows of F: for each point
   e_i = (F u)_i / M - y_i, and for each feature j, by coordinate,
     sx_j, sy_j = sum_i e_i F_ij wrap(w_j - x_i) / r_ij,
   the gradient before its constant factors. Returns sum_i e_i^2. */
PetscReal VarproKernelResidualGradient(PetscInt n, const PetscReal x0[], const PetscReal x1[], const PetscReal y[],
                                       PetscInt M, const PetscReal w0[], const PetscReal w1[], const PetscReal u[],
                                       const PetscReal F[], PetscReal sx[], PetscReal sy[]);

/* y = F^T (F x) (M numbers) in one pass over the rows of F: each row's dot product with x, then
   that multiple of the row added to y while it is still in cache. */
void VarproKernelNormalProduct(PetscInt n, PetscInt M, const PetscReal F[], const PetscReal x[], PetscReal y[]);
