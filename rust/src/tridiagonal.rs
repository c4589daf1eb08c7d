//! Eigenvalues of a symmetric tridiagonal matrix: the Pal-Walker-Kahan
//! root-free variant of the implicit QL/QR algorithm (the method of LAPACK's
//! `dsterf`).
//!
//! Eigenvalues only: the iteration works on the squared off-diagonal and
//! needs no square root per rotation, which makes it several times cheaper
//! than a QR iteration written for eigenvectors.

use crate::error::Error;

/// Iterations allowed per eigenvalue before giving up (LAPACK's MAXIT).
const MAX_ITERATIONS_PER_VALUE: usize = 30;

/// The eigenvalues (ascending) of the symmetric tridiagonal matrix with
/// diagonal `diag` (n) and off-diagonal `subdiag` (n - 1).
pub fn tridiagonal_eigenvalues(diag: &[f64], subdiag: &[f64]) -> Result<Vec<f64>, Error> {
    let n = diag.len();
    assert_eq!(
        subdiag.len(),
        n.saturating_sub(1),
        "a tridiagonal matrix has n - 1 off-diagonal entries"
    );
    let mut d = diag.to_vec();
    let mut e = subdiag.to_vec();
    if n <= 1 {
        return Ok(d);
    }
    let eps = f64::EPSILON / 2.0;
    let safe_max = (1.0 / f64::MIN_POSITIVE).sqrt() / 3.0;
    let safe_min = f64::MIN_POSITIVE.sqrt() / (eps * eps);
    let mut budget = MAX_ITERATIONS_PER_VALUE * n;

    let mut start = 0;
    while start < n {
        // The unreduced block [start, end]: stop where the off-diagonal is negligible.
        let mut end = n - 1;
        for k in start..n - 1 {
            if e[k].abs() <= d[k].abs().sqrt() * d[k + 1].abs().sqrt() * eps {
                e[k] = 0.0;
                end = k;
                break;
            }
        }
        let block = start..end + 1;
        start = end + 1;
        if block.len() == 1 {
            continue;
        }
        let d_block = &mut d[block.clone()];
        let e_block = &mut e[block.start..block.end - 1];
        let norm = d_block
            .iter()
            .chain(e_block.iter())
            .fold(0.0_f64, |m, v| m.max(v.abs()));
        if norm == 0.0 {
            continue;
        }
        // Scale into the range where squaring cannot overflow or underflow.
        let target = if norm > safe_max {
            Some(safe_max)
        } else if norm < safe_min {
            Some(safe_min)
        } else {
            None
        };
        if let Some(target) = target {
            let factor = target / norm;
            d_block
                .iter_mut()
                .chain(e_block.iter_mut())
                .for_each(|v| *v *= factor);
        }
        e_block.iter_mut().for_each(|v| *v *= *v);
        // QL converges from the top; chase from whichever end is larger in
        // magnitude by flipping the block (QR on a block is QL on its reverse).
        if d_block[d_block.len() - 1].abs() < d_block[0].abs() {
            d_block.reverse();
            e_block.reverse();
        }
        ql_root_free(d_block, e_block, eps, &mut budget)?;
        if let Some(target) = target {
            let factor = norm / target;
            d_block.iter_mut().for_each(|v| *v *= factor);
        }
    }
    d.sort_unstable_by(f64::total_cmp);
    Ok(d)
}

/// The root-free QL iteration on one unreduced block; `e` holds the squared
/// off-diagonal. On return `d` holds the block's eigenvalues.
fn ql_root_free(d: &mut [f64], e: &mut [f64], eps: f64, budget: &mut usize) -> Result<(), Error> {
    let last = d.len() - 1;
    let eps2 = eps * eps;
    let mut l = 0;
    while l <= last {
        // The first negligible off-diagonal at or after l splits off [l, m].
        let m = (l..last)
            .find(|&k| e[k].abs() <= eps2 * (d[k] * d[k + 1]).abs())
            .unwrap_or(last);
        if m < last {
            e[m] = 0.0;
        }
        if m == l {
            l += 1;
            continue;
        }
        if m == l + 1 {
            let (rt1, rt2) = eigenvalues_2x2(d[l], e[l].sqrt(), d[l + 1]);
            d[l] = rt1;
            d[l + 1] = rt2;
            e[l] = 0.0;
            l += 2;
            continue;
        }
        if *budget == 0 {
            return Err(Error::NoConvergence(format!(
                "the tridiagonal QL iteration did not converge ({} unreduced values)",
                m - l + 1
            )));
        }
        *budget -= 1;
        // Wilkinson-like shift from the leading 2x2.
        let p = d[l];
        let rte = e[l].sqrt();
        let t = (d[l + 1] - p) / (2.0 * rte);
        let r = t.hypot(1.0);
        let sigma = p - rte / (t + r.copysign(t));
        let (mut c, mut s) = (1.0, 0.0);
        let mut gamma = d[m] - sigma;
        let mut p = gamma * gamma;
        for i in (l..m).rev() {
            let bb = e[i];
            let r = p + bb;
            if i != m - 1 {
                e[i + 1] = s * r;
            }
            let old_c = c;
            c = p / r;
            s = bb / r;
            let old_gamma = gamma;
            let alpha = d[i];
            gamma = c * (alpha - sigma) - s * old_gamma;
            d[i + 1] = old_gamma + (alpha - gamma);
            p = if c != 0.0 {
                gamma * gamma / c
            } else {
                old_c * bb
            };
        }
        e[l] = s * p;
        d[l] = sigma + gamma;
    }
    Ok(())
}

/// Eigenvalues of `[[a, b], [b, c]]`, the larger in magnitude first, with
/// the smaller one computed without cancellation.
fn eigenvalues_2x2(a: f64, b: f64, c: f64) -> (f64, f64) {
    let sum = a + c;
    let diff = (a - c).abs();
    let twice_b = (b + b).abs();
    let (big, small) = if a.abs() > c.abs() { (a, c) } else { (c, a) };
    let root = if diff > twice_b {
        diff * (1.0 + (twice_b / diff).powi(2)).sqrt()
    } else if diff < twice_b {
        twice_b * (1.0 + (diff / twice_b).powi(2)).sqrt()
    } else {
        twice_b * std::f64::consts::SQRT_2
    };
    if sum == 0.0 {
        return (0.5 * root, -0.5 * root);
    }
    let rt1 = 0.5 * (sum + root.copysign(sum));
    let rt2 = (big / rt1) * small - (b / rt1) * b;
    (rt1, rt2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn oracle(d: &[f64], e: &[f64]) -> Vec<f64> {
        let n = d.len();
        let m = nalgebra::DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                d[i]
            } else if i == j + 1 {
                e[j]
            } else if j == i + 1 {
                e[i]
            } else {
                0.0
            }
        });
        let mut v: Vec<f64> = m.symmetric_eigenvalues().iter().copied().collect();
        v.sort_unstable_by(f64::total_cmp);
        v
    }

    fn assert_matches_oracle(d: &[f64], e: &[f64]) {
        let got = tridiagonal_eigenvalues(d, e).unwrap();
        let want = oracle(d, e);
        let scale = want
            .iter()
            .fold(0.0_f64, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-13 * scale,
                "got {g} want {w} (n = {})",
                d.len()
            );
        }
    }

    #[test]
    fn random_tridiagonals_match_nalgebra() {
        let mut rng = StdRng::seed_from_u64(1);
        for n in [1_usize, 2, 3, 4, 7, 50, 300] {
            let d: Vec<f64> = (0..n).map(|_| rng.random::<f64>() - 0.5).collect();
            let e: Vec<f64> = (0..n.saturating_sub(1))
                .map(|_| rng.random::<f64>() - 0.5)
                .collect();
            assert_matches_oracle(&d, &e);
        }
    }

    #[test]
    fn hard_structures_match_nalgebra() {
        // Wilkinson's W21+ (pairs of nearly equal eigenvalues).
        let d: Vec<f64> = (0..21).map(|i| (10.0_f64 - i as f64).abs()).collect();
        assert_matches_oracle(&d, &[1.0; 20]);
        // Graded over many decades, as the tridiagonal of a Gram matrix is.
        let d: Vec<f64> = (0..40_i32).map(|i| 10f64.powi(-i / 3)).collect();
        let e: Vec<f64> = (0..39_i32).map(|i| 0.5 * 10f64.powi(-i / 3)).collect();
        assert_matches_oracle(&d, &e);
        // Already split (zero off-diagonals) and a zero matrix.
        assert_matches_oracle(&[3.0, 1.0, 2.0, -4.0], &[0.0, 0.5, 0.0]);
        assert_eq!(
            tridiagonal_eigenvalues(&[0.0; 5], &[0.0; 4]).unwrap(),
            vec![0.0; 5]
        );
    }

    #[test]
    fn extreme_scales_survive() {
        for scale in [1e-290, 1e290] {
            let d = [2.0 * scale, 1.0 * scale, 3.0 * scale];
            let e = [0.5 * scale, 0.25 * scale];
            let got = tridiagonal_eigenvalues(&d, &e).unwrap();
            let want = oracle(&[2.0, 1.0, 3.0], &[0.5, 0.25]);
            for (g, w) in got.iter().zip(&want) {
                assert!((g / scale - w).abs() < 1e-13, "{g} vs {w} at {scale}");
            }
        }
    }

    #[test]
    fn two_by_two_formula_is_accurate() {
        let (a, b) = eigenvalues_2x2(1.0, 1e-9, 1.0 + 1e-12);
        let want = oracle(&[1.0, 1.0 + 1e-12], &[1e-9]);
        let mut got = [a, b];
        got.sort_unstable_by(f64::total_cmp);
        assert!((got[0] - want[0]).abs() < 1e-15 && (got[1] - want[1]).abs() < 1e-15);
    }
}
