//! Stage 1 of the two-stage tridiagonalization: dense symmetric -> band.
//!
//! The classic one-stage reduction (LAPACK `dsytrd`, faer's `tridiag`) spends
//! half its flops in matrix-vector products that stream the whole trailing
//! matrix from memory once per column; beyond the last-level cache that is
//! memory-bound (4096² f64: ~5 s here). Reducing to a band of width `b` first
//! turns every trailing update into a rank-2b matrix product (compute-bound),
//! and the band is then cheap to chase down to tridiagonal (`bulge_chasing`).
//! This is LAPACK's `dsytrd_sy2sb` in the lower-triangle convention.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};

use crate::householder::{axpy, dot, make_reflector};
use crate::simd::multiversion;

/// Reduces the symmetric matrix whose lower triangle is stored in `a` to a
/// band matrix with `bandwidth` subdiagonals, by orthogonal similarity
/// transforms (the eigenvalues are unchanged).
///
/// On return the entries `a[(i, j)]` with `0 <= i - j <= bandwidth` hold the
/// lower band; the rest of the lower triangle is scratch and the upper
/// triangle is never read or written.
pub fn reduce_to_band(mut a: MatMut<'_, f64>, bandwidth: usize, par: Par) {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "reduce_to_band needs a square matrix");
    assert!(bandwidth >= 1, "the bandwidth must be at least 1");
    let b = bandwidth;
    let mut j = 0;
    // A panel of one row is already inside the band.
    while j + b + 1 < n {
        let m = n - j - b;
        let panel = factor_panel(a.rb().submatrix(j + b, j, m, b));
        panel.write_r(a.rb_mut().submatrix_mut(j + b, j, m, b));
        panel.update_trailing(a.rb_mut().submatrix_mut(j + b, j + b, m, m), par);
        j += b;
    }
}

multiversion! {
    fn factor_panel(panel: MatRef<'_, f64>) -> PanelQr = PanelQr::factor
}

/// The Householder QR of one `m x b` panel in compact-WY form,
/// `Q = H_0 H_1 ... = I - V T V^T` (LAPACK's `dgeqr2` + `dlarft`).
struct PanelQr {
    /// The factored panel, column-major: R above the diagonal, the reflector
    /// tails below it.
    work: Mat<f64>,
    /// The diagonal of R (the reflectors' `beta`).
    beta: Vec<f64>,
    /// The explicit reflectors, unit lower trapezoidal (`m x nref`).
    v: Mat<f64>,
    /// The upper triangular factor (`nref x nref`).
    t: Mat<f64>,
}

impl PanelQr {
    #[inline(always)]
    fn factor(panel: MatRef<'_, f64>) -> Self {
        let (m, b) = panel.shape();
        let nref = m.min(b);
        let mut work = panel.to_owned();
        let mut beta = vec![0.0; nref];
        let mut tau = vec![0.0; nref];
        for c in 0..nref {
            let (left, mut right) = work.as_mut().split_at_col_mut(c + 1);
            let reflector = left
                .col_mut(c)
                .subrows_mut(c, m - c)
                .try_as_col_major_mut()
                .unwrap();
            let reflector = reflector.as_slice_mut();
            (tau[c], beta[c]) = make_reflector(reflector);
            if tau[c] == 0.0 {
                continue;
            }
            for k in 0..right.ncols() {
                let col = right.rb_mut().col_mut(k).subrows_mut(c, m - c);
                let col = col.try_as_col_major_mut().unwrap().as_slice_mut();
                let s = dot(reflector, col);
                axpy(-tau[c] * s, reflector, col);
            }
        }
        let v = Mat::from_fn(m, nref, |i, c| match i.cmp(&c) {
            core::cmp::Ordering::Less => 0.0,
            core::cmp::Ordering::Equal => 1.0,
            core::cmp::Ordering::Greater => work[(i, c)],
        });
        // T[0..c, c] = -tau_c * T[0..c, 0..c] * (V[:, 0..c]^T v_c), T[c, c] = tau_c.
        let mut t = Mat::<f64>::zeros(nref, nref);
        for c in 0..nref {
            t[(c, c)] = tau[c];
            if tau[c] == 0.0 || c == 0 {
                continue;
            }
            let vc = v.col(c).subrows(c, m - c);
            let y: Vec<f64> = (0..c)
                .map(|i| v.col(i).subrows(c, m - c).transpose() * vc)
                .collect();
            for i in 0..c {
                let z: f64 = (i..c).map(|k| t[(i, k)] * y[k]).sum();
                t[(i, c)] = -tau[c] * z;
            }
        }
        Self { work, beta, v, t }
    }

    /// Writes R (upper trapezoidal) back over the panel, zeros below it.
    fn write_r(&self, mut panel: MatMut<'_, f64>) {
        let (m, b) = panel.shape();
        for c in 0..b {
            for i in 0..m {
                panel[(i, c)] = match i.cmp(&c) {
                    core::cmp::Ordering::Less => self.work[(i, c)],
                    core::cmp::Ordering::Equal if c < self.beta.len() => self.beta[c],
                    core::cmp::Ordering::Equal => self.work[(i, c)],
                    core::cmp::Ordering::Greater => 0.0,
                };
            }
        }
    }

    /// `A22 <- Q^T A22 Q` on the lower triangle, as `A22 - V W^T - W V^T` with
    /// `Y = A22 V T` and `W = Y - V (T^T V^T Y) / 2`.
    fn update_trailing(&self, mut a22: MatMut<'_, f64>, par: Par) {
        let m = a22.nrows();
        let nref = self.v.ncols();
        let v = self.v.as_ref();
        // X = A22 V from the lower triangle (see `symmetric_times`).
        let x = symmetric_times(a22.rb(), v, par);
        // Y = X T, stored in the first half of [W | V] to avoid another copy.
        let mut wv = Mat::<f64>::zeros(m, 2 * nref);
        let (mut w, mut v_copy) = wv.as_mut().split_at_col_mut(nref);
        triangular::matmul(
            w.rb_mut(),
            BlockStructure::Rectangular,
            Accum::Replace,
            x.as_ref(),
            BlockStructure::Rectangular,
            self.t.as_ref(),
            BlockStructure::TriangularUpper,
            1.0,
            par,
        );
        // M = T^T (V^T Y), then W = Y - V M / 2.
        let vty = v.transpose() * w.rb();
        let mut mid = Mat::<f64>::zeros(nref, nref);
        triangular::matmul(
            mid.as_mut(),
            BlockStructure::Rectangular,
            Accum::Replace,
            self.t.transpose(),
            BlockStructure::TriangularLower,
            vty.as_ref(),
            BlockStructure::Rectangular,
            1.0,
            par,
        );
        matmul(w.rb_mut(), Accum::Add, v, mid.as_ref(), -0.5, par);
        v_copy.copy_from(v);
        // A22 -= [V | W] [W | V]^T on the lower triangle: one rank-2b product.
        let mut vw = Mat::<f64>::zeros(m, 2 * nref);
        vw.as_mut().split_at_col_mut(nref).0.copy_from(v);
        vw.as_mut().split_at_col_mut(nref).1.copy_from(w.rb());
        triangular::matmul(
            a22.rb_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            vw.as_ref(),
            BlockStructure::Rectangular,
            wv.as_ref().transpose(),
            BlockStructure::Rectangular,
            -1.0,
            par,
        );
    }
}

/// `A V` for the symmetric `A` whose lower triangle is stored, in column
/// blocks: each block below the diagonal is used twice (`X_below += B V_blk`,
/// `X_blk += B^T V_below`) while it is still in cache, so the trailing matrix
/// streams from memory once per panel instead of twice (two triangular
/// products over the whole of `A` each read it in full).
fn symmetric_times(a: MatRef<'_, f64>, v: MatRef<'_, f64>, par: Par) -> Mat<f64> {
    let m = a.nrows();
    let k = v.ncols();
    let mut x = Mat::<f64>::zeros(m, k);
    // 64 columns: a block below the diagonal (m x 64 x 8 bytes = 2 MB at
    // m = 4096) stays in L2/L3 between its two products. Measured on a 2-core
    // Xeon (AVX-512) at 4096^2: stage 1 median 7.0 s against 10.3 s for the
    // two whole-matrix triangular products.
    const BLOCK: usize = 64;
    let mut j0 = 0;
    while j0 < m {
        let nb = BLOCK.min(m - j0);
        let j1 = j0 + nb;
        let diag = a.submatrix(j0, j0, nb, nb);
        let (x_top, x_rest) = x.as_mut().split_at_row_mut(j1);
        let mut x_blk = x_top.subrows_mut(j0, nb);
        triangular::matmul(
            x_blk.rb_mut(),
            BlockStructure::Rectangular,
            Accum::Add,
            diag,
            BlockStructure::TriangularLower,
            v.subrows(j0, nb),
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
        triangular::matmul(
            x_blk.rb_mut(),
            BlockStructure::Rectangular,
            Accum::Add,
            diag.transpose(),
            BlockStructure::StrictTriangularUpper,
            v.subrows(j0, nb),
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
        if j1 < m {
            let below = a.submatrix(j1, j0, m - j1, nb);
            matmul(x_rest, Accum::Add, below, v.subrows(j0, nb), 1.0, par);
            matmul(
                x_blk,
                Accum::Add,
                below.transpose(),
                v.subrows(j1, m - j1),
                1.0,
                par,
            );
        }
        j0 = j1;
    }
    x
}
