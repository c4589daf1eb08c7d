//! Stage 2 of the two-stage tridiagonalization: band -> tridiagonal.
//!
//! Sweep `k` annihilates column `k` below its subdiagonal with one reflector;
//! applying it creates a bulge below the band, whose first column the next
//! reflector annihilates, and so on down the matrix (Schwarz's bulge chasing,
//! in the schedule of LAPACK's `dsytrd_sb2st`). The rest of each bulge stays
//! inside the block the next sweep rewrites anyway, so the fill never reaches
//! further than `2b - 1` below the diagonal. Every kernel touches contiguous
//! column slices of the compact band storage, which stays in cache.
//!
//! Sweeps pipeline: step `l` of sweep `k` writes band columns
//! `[k + l b, k + 1 + (l + 1) b)`, so it may run as soon as sweep `k - 1` has
//! finished its step `l + 1`; from then on the two touch disjoint columns.
//! Several threads therefore chase consecutive sweeps at once, each waiting
//! only on the sweep before its own.

use std::sync::atomic::{AtomicUsize, Ordering};

use faer::{MatRef, Par};

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
    /// With `Par::Rayon(t)`, `t` threads chase consecutive sweeps at once
    /// (the result is the same bit for bit: each step does the same
    /// arithmetic in the same order).
    pub fn into_tridiagonal(mut self, par: Par) -> (Vec<f64>, Vec<f64>) {
        let sweeps = self.n.saturating_sub(2);
        if self.bandwidth > 1 && sweeps > 0 {
            let view = BandView {
                data: self.data.as_mut_ptr(),
                n: self.n,
                bandwidth: self.bandwidth,
                ld: self.ld,
            };
            let threads = par.degree().min(sweeps);
            if threads <= 1 {
                chase_sweeps(view, None);
            } else {
                let schedule = Schedule::new(sweeps);
                rayon::scope(|scope| {
                    for _ in 0..threads {
                        let schedule = &schedule;
                        scope.spawn(move |_| chase_sweeps(view, Some(schedule)));
                    }
                });
            }
        }
        let diag = (0..self.n).map(|c| self.data[c * self.ld]).collect();
        let subdiag = (0..self.n.saturating_sub(1))
            .map(|c| self.data[c * self.ld + 1])
            .collect();
        (diag, subdiag)
    }
}

/// Who does which sweep, and how far each sweep has got.
struct Schedule {
    next_sweep: AtomicUsize,
    /// Steps completed by each sweep (`usize::MAX` once it is finished).
    progress: Vec<AtomicUsize>,
}

impl Schedule {
    fn new(sweeps: usize) -> Self {
        Self {
            next_sweep: AtomicUsize::new(0),
            progress: (0..sweeps).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    fn claim(&self) -> Option<usize> {
        let k = self.next_sweep.fetch_add(1, Ordering::Relaxed);
        (k < self.progress.len()).then_some(k)
    }

    /// Waits until sweep `k - 1` has finished its step `step + 1`.
    /// Sweeps only ever wait on the sweep before theirs, which was claimed
    /// earlier by a running thread, so the waits cannot form a cycle.
    #[inline(always)]
    fn wait_for_previous(&self, k: usize, step: usize) {
        if k == 0 {
            return;
        }
        let mut spins = 0_u32;
        while self.progress[k - 1].load(Ordering::Acquire) < step + 2 {
            spins += 1;
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    #[inline(always)]
    fn publish(&self, k: usize, steps_done: usize) {
        self.progress[k].store(steps_done, Ordering::Release);
    }
}

/// The band storage seen from several threads at once.
///
/// SAFETY contract: threads only touch band columns that the schedule
/// guarantees no other thread is touching (see the module documentation).
#[derive(Clone, Copy)]
struct BandView {
    data: *mut f64,
    n: usize,
    bandwidth: usize,
    ld: usize,
}

// SAFETY: the pointer is only dereferenced under the schedule's exclusion rule.
unsafe impl Send for BandView {}
// SAFETY: as above.
unsafe impl Sync for BandView {}

impl BandView {
    /// Column `c`, rows `c + from .. c + from + len` (`from + len <= ld`).
    ///
    /// SAFETY: the caller must own column `c` under the schedule, and must
    /// not hold another slice of the same column.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn col<'a>(self, c: usize, from: usize, len: usize) -> &'a mut [f64] {
        debug_assert!(c < self.n && from + len <= self.ld);
        // SAFETY: in bounds (checked above in debug builds); exclusivity by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.data.add(c * self.ld + from), len) }
    }
}

multiversion! {
    /// Runs sweeps: all of them in order (no schedule), or the ones this
    /// thread claims from the schedule.
    fn chase_sweeps(view: BandView, schedule: Option<&Schedule>) = chase_sweeps_generic
}

#[inline(always)]
fn chase_sweeps_generic(view: BandView, schedule: Option<&Schedule>) {
    let mut work = Workspace::new(view.bandwidth);
    match schedule {
        None => (0..view.n - 2).for_each(|k| sweep(view, k, &mut work, None)),
        Some(schedule) => {
            while let Some(k) = schedule.claim() {
                sweep(view, k, &mut work, Some(schedule));
                schedule.publish(k, usize::MAX);
            }
        }
    }
}

/// Sweep `k`: make column `k` tridiagonal and chase the bulge off the end.
#[inline(always)]
fn sweep(view: BandView, k: usize, work: &mut Workspace, schedule: Option<&Schedule>) {
    let b = view.bandwidth;
    let n = view.n;
    if let Some(s) = schedule {
        s.wait_for_previous(k, 0);
    }
    // The reflector acts on rows/columns [start, start + len).
    let mut start = k + 1;
    let mut len = b.min(n - 1 - k);
    // SAFETY (every `view.col` below): step `step` touches only columns k and
    // [start, start + len), which the schedule reserves for this sweep.
    let column = unsafe { view.col(k, 1, len) };
    work.v[..len].copy_from_slice(column);
    let (mut tau, beta) = make_reflector(&mut work.v[..len]);
    column[0] = beta;
    column[1..].fill(0.0);
    let mut step = 0;
    loop {
        if step > 0
            && let Some(s) = schedule
        {
            s.wait_for_previous(k, step);
        }
        if tau != 0.0 {
            two_sided_update(view, start, len, tau, work);
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
                axpy(work.v[g], unsafe { view.col(start + g, len - g, below) }, u);
            }
            for g in 0..len {
                axpy(-tau * work.v[g], &work.u[..below], unsafe {
                    view.col(start + g, len - g, below)
                });
            }
        }
        // A new reflector annihilates the first column of the bulge; it is
        // applied to the rest of R from the left here, and to the next
        // diagonal block and the block below it in the next step.
        let first = unsafe { view.col(start, len, below) };
        work.v_next[..below].copy_from_slice(first);
        let (tau_next, beta) = make_reflector(&mut work.v_next[..below]);
        first[0] = beta;
        first[1..].fill(0.0);
        if tau_next != 0.0 {
            for g in 1..len {
                let col = unsafe { view.col(start + g, len - g, below) };
                let s = dot(&work.v_next[..below], col);
                axpy(-tau_next * s, &work.v_next[..below], col);
            }
        }
        start += len;
        len = below;
        tau = tau_next;
        core::mem::swap(&mut work.v, &mut work.v_next);
        step += 1;
        if let Some(s) = schedule {
            s.publish(k, step);
        }
    }
}

/// `A[I, I] <- H A[I, I] H` for I = [start, start + len), lower triangle,
/// as `A - v w^T - w v^T` with `w = tau A v - (tau^2 / 2) (v^T A v) v`.
#[inline(always)]
fn two_sided_update(view: BandView, start: usize, len: usize, tau: f64, work: &mut Workspace) {
    let v = &work.v[..len];
    let w = &mut work.w[..len];
    w.fill(0.0);
    for g in 0..len {
        // SAFETY: columns [start, start + len) belong to the calling sweep's step.
        let col = unsafe { view.col(start + g, 0, len - g) };
        w[g] += dot(col, &v[g..]);
        axpy(v[g], &col[1..], &mut w[g + 1..]);
    }
    for value in w.iter_mut() {
        *value *= tau;
    }
    let alpha = -0.5 * tau * dot(w, v);
    axpy(alpha, v, w);
    for g in 0..len {
        // SAFETY: as above.
        let col = unsafe { view.col(start + g, 0, len - g) };
        let (vg, wg) = (v[g], w[g]);
        for ((a, vi), wi) in col.iter_mut().zip(&v[g..]).zip(&w[g..]) {
            *a -= vi * wg + wi * vg;
        }
    }
}

/// Scratch vectors for one thread's sweeps.
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

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn random_band(n: usize, b: usize, seed: u64) -> Mat<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut a = Mat::<f64>::zeros(n, n);
        for j in 0..n {
            for i in j..(j + b + 1).min(n) {
                a[(i, j)] = rng.random::<f64>() - 0.5;
            }
        }
        a
    }

    #[test]
    fn pipelined_sweeps_give_the_sequential_result_bit_for_bit() {
        for &(n, b) in &[(3, 2), (50, 4), (200, 16), (333, 7)] {
            let a = random_band(n, b, n as u64);
            let sequential = BandMatrix::from_lower(a.as_ref(), b).into_tridiagonal(Par::Seq);
            for threads in [2, 3, 8] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let parallel = pool.install(|| {
                    BandMatrix::from_lower(a.as_ref(), b).into_tridiagonal(Par::rayon(threads))
                });
                assert_eq!(
                    parallel, sequential,
                    "n = {n}, b = {b}, threads = {threads}"
                );
            }
        }
    }

    #[test]
    fn a_pool_smaller_than_the_request_does_not_deadlock() {
        // Two tasks on a one-thread pool run one after the other; the second
        // finds every sweep claimed or waits only on finished ones.
        let a = random_band(120, 8, 1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let result =
            pool.install(|| BandMatrix::from_lower(a.as_ref(), 8).into_tridiagonal(Par::rayon(2)));
        assert_eq!(
            result,
            BandMatrix::from_lower(a.as_ref(), 8).into_tridiagonal(Par::Seq)
        );
    }
}
