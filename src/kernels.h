/*
 * The element-wise passes over the N_local x M feature matrix, the hot loops of a step.
 * Compiled on their own with vectorised exp (glibc's libmvec), since they dominate once the
 * Gram product is done by BLAS.
 *
 * Inputs arrive pre-wrapped to [-2, 2) and stored by coordinate, so wrap(w - x) of two
 * points of the domain is one compare-and-shift per coordinate.
 */
#pragma once

#include <petscsys.h>

/* F_ij = phi(r(w_j, x_i)) for i < n, j < M; F column-major with leading dimension n. In the
   same pass Fty_j = sum_i F_ij y_i, the right-hand side of the inner problem. */
void VarproKernelFeatures(PetscInt n, const PetscReal x0[], const PetscReal x1[], const PetscReal y[], PetscInt M,
                          const PetscReal w[], PetscReal F[], PetscReal Fty[]);

/* For each feature j: s_j = sum_i e_i F_ij wrap(w_j - x_i) / r_ij (two numbers, into s[2j]
   and s[2j+1]), the sums of the feature gradient before its constant factors. */
void VarproKernelGradientSums(PetscInt n, const PetscReal x0[], const PetscReal x1[], PetscInt M, const PetscReal w[],
                              const PetscReal F[], const PetscReal e[], PetscReal s[]);
