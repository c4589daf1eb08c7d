//! Stage 2 of the two-stage tridiagonalization: band -> tridiagonal.
//!
//! Sweep `k` annihilates column `k` below its subdiagonal with one reflector;
//! applying it creates a bulge below the band, whose first column the next
//! reflector annihilates, and so on down the matrix (Schwarz's bulge chasing,
//! in the schedule of LAPACK's `dsytrd_sb2st`). The rest of each bulge stays
//! inside the block the next sweep rewrites anyway, so the fill never reaches
//! further than `2b - 1` below the diagonal. Every kernel touches contiguous
//! column slices of the compact band storage, which stays in cache.

use faer::MatRef;

use crate::householder::{axpy, dot, make_reflector};
use crate::simd::multiversion;

/// A symmetric band matrix in lower band storage, with room for the bulge:
/// `data[c * ld + d]` holds `A[c + d, c]` for `d < ld = 2b + 1`.
#[derive(Debug, Clone)]
pub struct BandMatrix {
    n: usize,
    bandwidth: usize,
    ld: usize,
    data: Vec<f64>,
}

impl BandMatrix {
    /// Copies the lower band (`0 <= i - j <= bandwidth`) of `a`.
    pub fn from_lower(a: MatRef<'_, f64>, bandwidth: usize) -> Self {
        let n = a.nrows();
        let ld = 2 * bandwidth + 1;
        let mut data = vec![0.0; n * ld];
        for c in 0..n {
            for d in 0..=bandwidth.min(n - 1 - c) {
                data[c * ld + d] = a[(c + d, c)];
            }
        }
        Self {
            n,
            bandwidth,
            ld,
            data,
        }
    }

    /// Reduces the band to a symmetric tridiagonal matrix with the same
    /// eigenvalues; returns its diagonal (`n`) and subdiagonal (`n - 1`).
    pub fn into_tridiagonal(mut self) -> (Vec<f64>, Vec<f64>) {
        let n = self.n;
        if self.bandwidth > 1 {
            chase_all_sweeps(&mut self);
        }
        let diag = (0..n).map(|c| self.data[c * self.ld]).collect();
        let subdiag = (0..n.saturating_sub(1))
            .map(|c| self.data[c * self.ld + 1])
            .collect();
        (diag, subdiag)
    }

    /// Column `c`, rows `c + from .. c + from + len`.
    #[inline(always)]
    fn col_mut(&mut self, c: usize, from: usize, len: usize) -> &mut [f64] {
        let start = c * self.ld + from;
        &mut self.data[start..start + len]
    }

    /// Sweep `k`: make column `k` tridiagonal and chase the bulge off the end.
    #[inline(always)]
    fn sweep(&mut self, k: usize, work: &mut Workspace) {
        let b = self.bandwidth;
        let n = self.n;
        // The reflector acts on rows/columns [start, start + len).
        let mut start = k + 1;
        let mut len = b.min(n - 1 - k);
        let column = self.col_mut(k, 1, len);
        work.v[..len].copy_from_slice(column);
        let (mut tau, beta) = make_reflector(&mut work.v[..len]);
        column[0] = beta;
        column[1..].fill(0.0);
        loop {
            if tau != 0.0 {
                self.two_sided_update(start, len, tau, work);
            }
            // The block R below the diagonal block: rows [start + len, start + len + below),
            // columns [start, start + len). Column g of R is contiguous at distance len - g.
            let below = b.min(n - start - len);
            if below == 0 {
                break;
            }
            if tau != 0.0 {
                // R <- R H
                let u = &mut work.u[..below];
                u.fill(0.0);
                for g in 0..len {
                    let vg = work.v[g];
                    axpy(vg, self.col_mut(start + g, len - g, below), u);
                }
                for g in 0..len {
                    let scale = -tau * work.v[g];
                    axpy(
                        scale,
                        &work.u[..below],
                        self.col_mut(start + g, len - g, below),
                    );
                }
            }
            // A new reflector annihilates the first column of the bulge; it is
            // applied to the rest of R from the left here, and to the next
            // diagonal block and the block below it in the next round.
            let first = self.col_mut(start, len, below);
            work.v_next[..below].copy_from_slice(first);
            let (tau_next, beta) = make_reflector(&mut work.v_next[..below]);
            first[0] = beta;
            first[1..].fill(0.0);
            if tau_next != 0.0 {
                for g in 1..len {
                    let col = self.col_mut(start + g, len - g, below);
                    let s = dot(&work.v_next[..below], col);
                    axpy(-tau_next * s, &work.v_next[..below], col);
                }
            }
            start += len;
            len = below;
            tau = tau_next;
            core::mem::swap(&mut work.v, &mut work.v_next);
        }
    }

    /// `A[I, I] <- H A[I, I] H` for I = [start, start + len), lower triangle,
    /// as `A - v w^T - w v^T` with `w = tau A v - (tau^2 / 2) (v^T A v) v`.
    #[inline(always)]
    fn two_sided_update(&mut self, start: usize, len: usize, tau: f64, work: &mut Workspace) {
        let ld = self.ld;
        let v = &work.v[..len];
        let w = &mut work.w[..len];
        w.fill(0.0);
        for g in 0..len {
            let col = &self.data[(start + g) * ld..(start + g) * ld + len - g];
            w[g] += dot(col, &v[g..]);
            axpy(v[g], &col[1..], &mut w[g + 1..]);
        }
        for value in w.iter_mut() {
            *value *= tau;
        }
        let alpha = -0.5 * tau * dot(w, v);
        axpy(alpha, v, w);
        for g in 0..len {
            let col = &mut self.data[(start + g) * ld..(start + g) * ld + len - g];
            let (vg, wg) = (v[g], w[g]);
            for ((a, vi), wi) in col.iter_mut().zip(&v[g..]).zip(&w[g..]) {
                *a -= vi * wg + wi * vg;
            }
        }
    }
}

multiversion! {
    /// Every sweep, in order: sweep `k` must finish before `k + 1` starts,
    /// because it leaves fill in the blocks the next one rewrites.
    fn chase_all_sweeps(band: &mut BandMatrix) = chase_all_sweeps_generic
}

#[inline(always)]
fn chase_all_sweeps_generic(band: &mut BandMatrix) {
    let mut work = Workspace::new(band.bandwidth);
    for k in 0..band.n.saturating_sub(2) {
        band.sweep(k, &mut work);
    }
}

/// Scratch vectors for one sweep, allocated once per reduction.
struct Workspace {
    v: Vec<f64>,
    v_next: Vec<f64>,
    w: Vec<f64>,
    u: Vec<f64>,
}

impl Workspace {
    fn new(bandwidth: usize) -> Self {
        Self {
            v: vec![0.0; bandwidth],
            v_next: vec![0.0; bandwidth],
            w: vec![0.0; bandwidth],
            u: vec![0.0; bandwidth],
        }
    }
}
