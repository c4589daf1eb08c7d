//! Eigenvalues of a dense symmetric matrix.
//!
//! Small matrices, and on one thread mid-sized ones, go through grokspec's
//! unblocked one-stage tridiagonalization (`dense_tridiagonal`; faer's
//! blocked one where that is faster); larger ones through the two-stage
//! reduction (`band_reduction` then `bulge_chasing`), whose cost is dominated
//! by matrix products instead of memory traffic and which uses every thread.
//! All end in the root-free QL iteration on the tridiagonal matrix
//! (`tridiagonal`).

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::tridiag;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Mat, MatMut, Par};

use crate::band_reduction::reduce_to_band;
use crate::bulge_chasing::BandMatrix;
use crate::error::Error;
use crate::tridiagonal::tridiagonal_eigenvalues;

/// The vector path of the hand-written kernels (`GROKSPEC_ISA`, see `simd`).
pub use crate::simd::{Isa, isa};

/// Tuning of the symmetric eigensolver.
#[derive(Debug, Clone, Copy)]
pub struct SymEigParams {
    /// Up to this dimension the unblocked one-stage reduction is used: on
    /// one or two threads always (two share each step's columns), on more
    /// only below `two_stage_from` (the unblocked reduction uses two threads
    /// at most; the two-stage one uses them all).
    pub dense_up_to: usize,
    /// From this dimension on, use the two-stage reduction.
    pub two_stage_from: usize,
    /// The band's width in the two-stage reduction.
    pub bandwidth: usize,
    /// From this dimension on, stage 1 runs on several threads; below it,
    /// thread synchronization costs more than it saves.
    pub parallel_band_reduction_from: usize,
}

impl SymEigParams {
    /// The tuned choice for an `n x n` matrix (measured on a 2-core Zen 5 with
    /// `examples/symeig_timing.rs`): two stages win from n ~ 512; a wider band
    /// cuts stage 1's memory traffic (~8 n^3 / b bytes) but makes the bulge
    /// chasing dearer (~6 b n^2 flops).
    pub fn for_dimension(n: usize) -> Self {
        let bandwidth = match n {
            0..1536 => 24,
            1536..3072 => 32,
            _ => 48,
        };
        Self {
            dense_up_to: crate::dense_tridiagonal::faster_up_to(),
            two_stage_from: 512,
            bandwidth,
            // Stage 1 on 2 threads vs 1 (2-core Xeon, quiet, medians of 3):
            // 512: 8 vs 9 ms, 768: 18 vs 26 ms, 1024: 34 vs 38 ms.
            parallel_band_reduction_from: 512,
        }
    }
}

impl Default for SymEigParams {
    fn default() -> Self {
        Self::for_dimension(0)
    }
}

/// The eigenvalues of the symmetric matrix whose lower triangle is stored in
/// `a`, in descending order. `a` is used as scratch.
pub fn symmetric_eigenvalues(
    a: MatMut<'_, f64>,
    par: Par,
    params: SymEigParams,
) -> Result<Vec<f64>, Error> {
    let (diag, subdiag) = tridiagonalize(a, par, params);
    let mut values = tridiagonal_eigenvalues(&diag, &subdiag)?;
    values.reverse();
    Ok(values)
}

/// Reduces the symmetric matrix whose lower triangle is stored in `a` to a
/// tridiagonal matrix with the same eigenvalues: `(diagonal, subdiagonal)`.
/// `a` is used as scratch.
pub fn tridiagonalize(a: MatMut<'_, f64>, par: Par, params: SymEigParams) -> (Vec<f64>, Vec<f64>) {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "tridiagonalize needs a square matrix");
    if takes_dense_route(n, par, params) {
        return crate::dense_tridiagonal::tridiagonalize_dense(a.rb(), par);
    }
    if n >= params.two_stage_from && params.bandwidth + 1 < n {
        let stage_one_par = if n >= params.parallel_band_reduction_from {
            par
        } else {
            Par::Seq
        };
        two_stage(a, stage_one_par, par, params.bandwidth)
    } else {
        one_stage(a, par)
    }
}

/// [`tridiagonalize`] of the matrix whose lower triangle is stored
/// column-major in `storage` (`n * n` values, column stride `n`), which is
/// used as scratch: the unblocked reduction then works in place, without the
/// copy it makes of a general view.
pub fn tridiagonalize_column_major(
    storage: &mut [f64],
    n: usize,
    par: Par,
    params: SymEigParams,
) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(storage.len(), n * n, "an n x n column-major matrix");
    if takes_dense_route(n, par, params) {
        return crate::dense_tridiagonal::tridiagonalize_in_place(storage, n, par);
    }
    tridiagonalize(
        MatMut::from_column_major_slice_mut(storage, n, n),
        par,
        params,
    )
}

/// Whether `tridiagonalize` takes the unblocked one-stage reduction.
fn takes_dense_route(n: usize, par: Par, params: SymEigParams) -> bool {
    n <= params.dense_up_to && (par.degree() <= 2 || n < params.two_stage_from)
}

/// faer's blocked one-stage tridiagonalization.
fn one_stage(mut a: MatMut<'_, f64>, par: Par) -> (Vec<f64>, Vec<f64>) {
    let n = a.nrows();
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let block = faer::linalg::qr::no_pivoting::factor::recommended_block_size::<f64>(n, n);
    let mut householder = Mat::<f64>::zeros(block, n - 1);
    let scratch = tridiag::tridiag_in_place_scratch::<f64>(n, par, Default::default());
    let mut buffer = MemBuffer::new(scratch);
    tridiag::tridiag_in_place(
        a.rb_mut(),
        householder.as_mut(),
        par,
        MemStack::new(&mut buffer),
        Default::default(),
    );
    let diag = (0..n).map(|i| a[(i, i)]).collect();
    let subdiag = (0..n - 1).map(|i| a[(i + 1, i)]).collect();
    (diag, subdiag)
}

fn two_stage(
    mut a: MatMut<'_, f64>,
    stage_one_par: Par,
    par: Par,
    bandwidth: usize,
) -> (Vec<f64>, Vec<f64>) {
    reduce_to_band(a.rb_mut(), bandwidth, stage_one_par);
    BandMatrix::from_lower(a.rb(), bandwidth).into_tridiagonal(par)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn random_symmetric(n: usize, seed: u64) -> Mat<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let x = Mat::<f64>::from_fn(n, n, |_, _| rng.random::<f64>() - 0.5);
        &x + x.transpose()
    }

    /// nalgebra's symmetric eigensolver: an independent implementation.
    fn oracle(a: &Mat<f64>) -> Vec<f64> {
        let n = a.nrows();
        let m = nalgebra::DMatrix::from_fn(n, n, |i, j| a[(i, j)]);
        let mut values: Vec<f64> = m.symmetric_eigenvalues().iter().copied().collect();
        values.sort_unstable_by(|x, y| y.total_cmp(x));
        values
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= tol * scale,
                "got {g}, want {w} (scale {scale})"
            );
        }
    }

    #[test]
    fn two_stage_matches_nalgebra_for_many_sizes_and_bandwidths() {
        for &(n, b) in &[
            (2, 1),
            (3, 1),
            (5, 2),
            (10, 3),
            (33, 4),
            (64, 8),
            (100, 7),
            (130, 32),
            (257, 16),
        ] {
            let a = random_symmetric(n, n as u64);
            let want = oracle(&a);
            let params = SymEigParams {
                dense_up_to: 0,
                two_stage_from: 0,
                bandwidth: b,
                parallel_band_reduction_from: 0,
            };
            let got = symmetric_eigenvalues(a.clone().as_mut(), Par::Seq, params).unwrap();
            assert_close(&got, &want, 1e-12);
            let got_par = symmetric_eigenvalues(a.clone().as_mut(), Par::rayon(2), params).unwrap();
            assert_close(&got_par, &want, 1e-12);
        }
    }

    #[test]
    fn both_one_stage_reductions_match_nalgebra_on_any_thread_count() {
        let a = random_symmetric(90, 7);
        for dense_up_to in [0, usize::MAX] {
            let params = SymEigParams {
                dense_up_to,
                two_stage_from: usize::MAX,
                bandwidth: 8,
                parallel_band_reduction_from: 0,
            };
            for par in [Par::Seq, Par::rayon(2)] {
                let got = symmetric_eigenvalues(a.clone().as_mut(), par, params).unwrap();
                assert_close(&got, &oracle(&a), 1e-12);
            }
        }
    }

    #[test]
    fn the_unblocked_reduction_takes_mid_sized_matrices_on_one_or_two_threads() {
        // A 600² matrix: above two_stage_from, below dense_up_to. Both routes
        // are right; on one or two threads the unblocked one is taken, which
        // leaves the input untouched (it works on a copy), while the
        // two-stage one (on three) reduces the input in place.
        let a = random_symmetric(600, 9);
        let want = oracle(&a);
        let params = SymEigParams {
            dense_up_to: 1024,
            ..SymEigParams::for_dimension(600)
        };
        for (par, unblocked) in [
            (Par::Seq, true),
            (Par::rayon(2), true),
            (Par::rayon(3), false),
        ] {
            let mut scratch = a.clone();
            let got = symmetric_eigenvalues(scratch.as_mut(), par, params).unwrap();
            assert_close(&got, &want, 1e-12);
            assert_eq!(scratch == a, unblocked, "{par:?}");
        }
    }

    #[test]
    fn two_stage_keeps_tiny_eigenvalues_of_a_gram_matrix() {
        // A Gram matrix with eigenvalues spread over 12 decades: the reduction is
        // orthogonal, so every eigenvalue keeps an absolute error ~ eps * lambda_max.
        let n = 120;
        let mut rng = StdRng::seed_from_u64(3);
        let q = faer::Mat::<f64>::from_fn(n, n, |_, _| rng.random::<f64>() - 0.5)
            .qr()
            .compute_Q();
        let lambda: Vec<f64> = (0..n)
            .map(|i| 10f64.powf(-12.0 * i as f64 / (n - 1) as f64))
            .collect();
        let g = &q
            * faer::Mat::from_fn(n, n, |i, j| if i == j { lambda[i] } else { 0.0 })
            * q.transpose();
        let params = SymEigParams {
            dense_up_to: 0,
            two_stage_from: 0,
            bandwidth: 6,
            parallel_band_reduction_from: 0,
        };
        let got = symmetric_eigenvalues(g.clone().as_mut(), Par::Seq, params).unwrap();
        for (g, w) in got.iter().zip(&lambda) {
            assert!((g - w).abs() < 1e-13, "{g} vs {w}");
        }
    }

    #[test]
    fn reduction_handles_matrices_already_banded_or_diagonal() {
        let n = 40;
        let diag = Mat::<f64>::from_fn(n, n, |i, j| if i == j { (i as f64) - 7.0 } else { 0.0 });
        let params = SymEigParams {
            dense_up_to: 0,
            two_stage_from: 0,
            bandwidth: 5,
            parallel_band_reduction_from: 0,
        };
        let got = symmetric_eigenvalues(diag.clone().as_mut(), Par::Seq, params).unwrap();
        let mut want: Vec<f64> = (0..n).map(|i| (i as f64) - 7.0).collect();
        want.sort_unstable_by(|x, y| y.total_cmp(x));
        assert_close(&got, &want, 1e-15);
        let zero = Mat::<f64>::zeros(n, n);
        let got = symmetric_eigenvalues(zero.clone().as_mut(), Par::Seq, params).unwrap();
        assert!(got.iter().all(|&v| v == 0.0));
    }
}
