//! Stage 1 of the two-stage tridiagonalization: dense symmetric -> band.
//!
//! The classic one-stage reduction (LAPACK `dsytrd`, faer's `tridiag`) spends
//! half its flops in matrix-vector products that stream the whole trailing
//! matrix from memory once per column; beyond the last-level cache that is
//! memory-bound (4096² f64: ~5 s here). Reducing to a band of width `b` first
//! turns every trailing update into a rank-2b matrix product (compute-bound),
//! and the band is then cheap to chase down to tridiagonal (`bulge_chasing`).
//! This is LAPACK's `dsytrd_sy2sb` in the lower-triangle convention.
//!
//! On several threads, the two large products of each step are shared out
//! by hand (`products`), and the next panel is factored while the rest of the
//! trailing matrix is still being updated (look-ahead), so that the
//! sequential panel QR does not leave a core idle.

use std::time::Instant;

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};

use crate::householder::{axpy, dot, make_reflector};
use crate::simd::multiversion;

mod products;

use products::{lower_rank_update, symmetric_times, update_chunk};

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
    // A panel of one row is already inside the band.
    if b + 1 >= n {
        return;
    }
    let t0 = Instant::now();
    let mut panel = factor_panel(a.rb().submatrix(b, 0, n - b, b));
    profile::add(0, t0);
    let mut j = 0;
    loop {
        let m = n - j - b;
        panel.write_r(a.rb_mut().submatrix_mut(j + b, j, m, b));
        let a22 = a.rb_mut().submatrix_mut(j + b, j + b, m, m);
        // The next panel is a22[b.., ..b]; it exists while it has two rows.
        let next = (m > b + 1).then_some(b);
        match panel.update_trailing(a22, next, par) {
            Some(next_panel) => panel = next_panel,
            None => break,
        }
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
            let reflector = left.col_mut(c).subrows_mut(c, m - c);
            let reflector = reflector.try_as_col_major_mut().unwrap().as_slice_mut();
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
        // T[0..c, c] = -tau_c * T[0..c, 0..c] * S[0..c, c], T[c, c] = tau_c, with
        // S = V^T V from one product (b^2 / 2 separate dot products cost more
        // in call overhead than in arithmetic).
        let mut s = Mat::<f64>::zeros(nref, nref);
        triangular::matmul(
            s.as_mut(),
            BlockStructure::StrictTriangularUpper,
            Accum::Replace,
            v.transpose(),
            BlockStructure::Rectangular,
            v.as_ref(),
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
        let mut t = Mat::<f64>::zeros(nref, nref);
        for c in 0..nref {
            t[(c, c)] = tau[c];
            if tau[c] == 0.0 {
                continue;
            }
            for i in 0..c {
                let z: f64 = (i..c).map(|k| t[(i, k)] * s[(k, c)]).sum();
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
    /// `Y = A22 V T` and `W = Y - V (T^T V^T Y) / 2`; then factors the next
    /// panel `A22[b.., ..b]` when `next = Some(b)` (see `lower_rank_update`).
    fn update_trailing(
        &self,
        a22: MatMut<'_, f64>,
        next: Option<usize>,
        par: Par,
    ) -> Option<PanelQr> {
        let m = a22.nrows();
        let nref = self.v.ncols();
        let v = self.v.as_ref();
        // X = A22 V from the lower triangle (see `symmetric_times`).
        let t0 = Instant::now();
        let x = symmetric_times(a22.rb(), v, par);
        profile::add(1, t0);
        let t0 = Instant::now();
        // The products that form W are m x b x b: on 2 threads, faer's
        // parallel split of each cost more than it saved (2048²: 18 ms in all
        // against 11 ms on one thread).
        let small = Par::Seq;
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
            small,
        );
        // M = T^T (V^T Y), then W = Y - V M / 2.
        let mut vty = Mat::<f64>::zeros(nref, nref);
        matmul(
            vty.as_mut(),
            Accum::Replace,
            v.transpose(),
            w.rb(),
            1.0,
            small,
        );
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
            small,
        );
        matmul(w.rb_mut(), Accum::Add, v, mid.as_ref(), -0.5, small);
        v_copy.copy_from(v);
        profile::add(2, t0);
        let t0 = Instant::now();
        let mut vw = Mat::<f64>::zeros(m, 2 * nref);
        vw.as_mut().split_at_col_mut(nref).0.copy_from(v);
        vw.as_mut().split_at_col_mut(nref).1.copy_from(w.rb());
        // A22 -= [V | W] [W | V]^T on the lower triangle, with the look-ahead:
        // the next panel's columns first, then that panel is factored while
        // the other threads update the rest (the sequential panel QR no
        // longer leaves a core idle).
        let (l, r) = (vw.as_ref(), wv.as_ref());
        let first = next.unwrap_or(0);
        let (mut head, rest) = a22.split_at_col_mut(first);
        update_chunk(l, r, 0, head.rb_mut());
        let head = head.rb();
        let factor_next = || {
            next.map(|b| {
                let t0 = Instant::now();
                let panel = factor_panel(head.submatrix(b, 0, m - b, b));
                profile::add(0, t0);
                panel
            })
        };
        let update_rest = || lower_rank_update(rest, l, r, first, par);
        let next_panel = if par.degree() > 1 {
            rayon::join(factor_next, update_rest).0
        } else {
            update_rest();
            factor_next()
        };
        profile::add(3, t0);
        next_panel
    }
}
/// Wall time spent in stage 1's parts, summed over calls (for
/// `examples/stage_timing.rs`; a few clock reads per panel cost nothing).
pub mod profile {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    /// The parts: panel factorization, `A V`, the small products that form
    /// `W`, the rank-2b update.
    pub const PARTS: [&str; 4] = ["panel QR", "A V", "small products", "rank-2b update"];
    static NANOS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

    pub(crate) fn add(part: usize, since: Instant) {
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        NANOS[part].fetch_add(nanos, Ordering::Relaxed);
    }

    /// Seconds per part since the last call, resetting the counters.
    pub fn take() -> [f64; 4] {
        core::array::from_fn(|i| NANOS[i].swap(0, Ordering::Relaxed) as f64 * 1e-9)
    }
}
