//! Householder reduction of a small symmetric matrix to tridiagonal form.
//!
//! For the small Gram matrices of a batch (64 matrices of 512 x 128 give
//! 128 x 128 ones) faer's blocked `tridiag_in_place` spent ~40% of the
//! batch's time. At that size the whole matrix lives in L2, blocking buys
//! nothing, and the plain unblocked algorithm (LAPACK's `dsytd2`) on a full
//! symmetric copy — every inner loop a contiguous column, vectorized by
//! [`multiversion!`] — is faster up to [`faster_up_to`].

use faer::MatRef;

use crate::householder::{axpy, dot, make_reflector};
use crate::simd::{Isa, isa, multiversion};

/// The largest order for which this beats faer's `tridiag_in_place`, per
/// kernel path (2-core Xeon, one thread, random symmetric matrices, two
/// alternated rounds, µs per matrix, this / faer's): AVX-512 32: 23 / 41-49,
/// 64: 92-96 / 133-156, 128: 415-570 / 578-662, 160: 737-1024 / 991-1002,
/// 192: 1629-1749 / 1539-1785; AVX2 64: 114 / 156, 80: 171-172 / 209-210,
/// 96: 290-308 / 268-301, 128: 574-695 / 578-662; the portable path 64:
/// 136 / 156, 128: 940 / 662. faer's own kernels use AVX2 on every x86 path.
/// On an AVX2-only CPU (2-core AMD EPYC, Zen 3, 27 Nov 2026, two rounds) the
/// AVX2 path wins further: 80: 103-107 / 115-133, 96: 154-158 / 166-195,
/// 112: 227-254 / 253-300, 128: 353-366 / 313-327; the portable path there
/// 64: 70-114 / 76-134, 80: 163-207 / 132-192 — hence 96 for AVX2 (112 is
/// a tie).
pub fn faster_up_to() -> usize {
    match isa() {
        Isa::Avx512 => 128,
        Isa::Avx2 => 96,
        Isa::Portable => 64,
    }
}

/// The tridiagonal form `(diagonal, subdiagonal)` of the symmetric matrix
/// whose lower triangle is stored in `a`.
pub fn tridiagonalize_dense(a: MatRef<'_, f64>) -> (Vec<f64>, Vec<f64>) {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "tridiagonalize_dense needs a square matrix");
    // Both triangles, column-major: the rank-2 updates and products below
    // then run down whole contiguous columns.
    let mut full = vec![0.0; n * n];
    for j in 0..n {
        for i in j..n {
            let x = a[(i, j)];
            full[i + j * n] = x;
            full[j + i * n] = x;
        }
    }
    reduce(&mut full, n)
}

multiversion!(fn reduce(full: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>) = reduce_generic);

/// `dsytd2` on a full column-major `n x n` symmetric matrix: for each column
/// k, the reflector `H = I - tau v vᵀ` that zeroes it below the subdiagonal,
/// then the trailing block `T <- H T H = T - v wᵀ - w vᵀ` with
/// `w = p - (tau/2)(pᵀv) v`, `p = tau T v`.
///
/// One pass over `T` per column: the next column is updated first, its
/// reflector made, and the other columns' update is fused with the next
/// product `T' v'` (each column read and written once instead of twice).
#[inline(always)]
fn reduce_generic(full: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut diag = vec![0.0; n];
    let mut subdiag = vec![0.0; n.saturating_sub(1)];
    let mut v = vec![0.0; n];
    let mut w = vec![0.0; n];
    let mut next_v = vec![0.0; n];
    // `T v` for the coming column, when the previous pass formed it.
    let mut product = vec![0.0; n];
    let mut have_product = false;
    for k in 0..n.saturating_sub(1) {
        let m = n - k - 1;
        let first = k + 1;
        diag[k] = full[k + k * n];
        let v = &mut v[..m];
        v.copy_from_slice(&full[first + k * n..n + k * n]);
        let (tau, beta) = make_reflector(v);
        subdiag[k] = beta;
        if tau == 0.0 {
            have_product = false;
            continue;
        }
        let w = &mut w[..m];
        if have_product {
            w.copy_from_slice(&product[..m]);
        } else {
            w.fill(0.0);
            for (j, &vj) in v.iter().enumerate() {
                axpy(vj, &full[first + (first + j) * n..][..m], w);
            }
        }
        w.iter_mut().for_each(|x| *x *= tau);
        let alpha = -0.5 * tau * dot(w, v);
        axpy(alpha, v, w);
        // The next pivot column first, then its reflector.
        update_column(&mut full[first + first * n..][..m], v, w, 0);
        let next = &mut next_v[..m - 1];
        next.copy_from_slice(&full[first + 1 + first * n..][..m - 1]);
        let (next_tau, _) = make_reflector(next);
        have_product = next_tau != 0.0;
        let product = &mut product[..m - 1];
        product.fill(0.0);
        for j in 1..m {
            let column = &mut full[first + (first + j) * n..][..m];
            update_column(column, v, w, j);
            if have_product {
                axpy(next[j - 1], &column[1..], product);
            }
        }
    }
    if n > 0 {
        diag[n - 1] = full[(n - 1) * (n + 1)];
    }
    (diag, subdiag)
}

/// Column j of the trailing block: `T[:, j] -= v w[j] + w v[j]`.
#[inline(always)]
fn update_column(column: &mut [f64], v: &[f64], w: &[f64], j: usize) {
    let (wj, vj) = (w[j], v[j]);
    for ((t, &vi), &wi) in column.iter_mut().zip(v).zip(w) {
        *t -= vi * wj + wi * vj;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tridiagonal::tridiagonal_eigenvalues;
    use faer::Mat;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// nalgebra's symmetric eigensolver: an independent implementation.
    fn oracle(a: &Mat<f64>) -> Vec<f64> {
        let n = a.nrows();
        let m = nalgebra::DMatrix::from_fn(n, n, |i, j| a[(i, j)]);
        let mut values: Vec<f64> = m.symmetric_eigenvalues().iter().copied().collect();
        values.sort_unstable_by(f64::total_cmp);
        values
    }

    #[test]
    fn eigenvalues_match_an_independent_solver() {
        let (d, e) = tridiagonalize_dense(Mat::<f64>::zeros(0, 0).as_ref());
        assert!(d.is_empty() && e.is_empty());
        for (n, seed) in [(1, 1), (2, 2), (3, 3), (17, 4), (128, 5), (200, 6)] {
            let mut rng = StdRng::seed_from_u64(seed);
            let x = Mat::<f64>::from_fn(n, n, |_, _| rng.random::<f64>() - 0.5);
            let a = &x + x.transpose();
            // Only the lower triangle is read: poison the upper one.
            let mut lower = a.clone();
            for j in 0..n {
                for i in 0..j {
                    lower[(i, j)] = f64::NAN;
                }
            }
            let (d, e) = tridiagonalize_dense(lower.as_ref());
            let got = tridiagonal_eigenvalues(&d, &e).unwrap();
            let want = oracle(&a);
            let scale = want.iter().fold(1.0_f64, |s, v| s.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-12 * scale, "n={n}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn a_low_rank_gram_matrix_keeps_its_zero_eigenvalues() {
        // Rank 3 of 20: the trailing columns vanish after three reflectors,
        // and the zero-reflector branches run.
        let mut rng = StdRng::seed_from_u64(7);
        let x = Mat::<f64>::from_fn(3, 20, |_, _| rng.random::<f64>() - 0.5);
        let gram = x.transpose() * &x;
        let (d, e) = tridiagonalize_dense(gram.as_ref());
        let got = tridiagonal_eigenvalues(&d, &e).unwrap();
        let want = oracle(&gram);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-13 * want[19], "{g} vs {w}");
        }
        assert!(got[..17].iter().all(|g| g.abs() <= 1e-14 * want[19]));
    }

    #[test]
    fn an_already_tridiagonal_matrix_is_left_as_it_is() {
        let n = 6;
        let mut a = Mat::<f64>::zeros(n, n);
        for i in 0..n {
            a[(i, i)] = i as f64 + 1.0;
            if i + 1 < n {
                a[(i + 1, i)] = 0.5;
            }
        }
        let (d, e) = tridiagonalize_dense(a.as_ref());
        assert_eq!(d, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(e.iter().all(|&x| x.abs() == 0.5));
    }
}
