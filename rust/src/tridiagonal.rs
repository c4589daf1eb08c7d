//! Eigenvalues of symmetric tridiagonal matrices: the Pal-Walker-Kahan
//! root-free variant of the implicit QL/QR algorithm (the method of LAPACK's
//! `dsterf`), run on several independent problems at once.
//!
//! Eigenvalues only: the iteration works on the squared off-diagonal and
//! needs no square root per rotation. Its inner step is one long chain of
//! dependent operations with a division in it (~28 cycles; two divisions,
//! ~38, before `next_p`), so a single problem leaves the core mostly idle.
//! Advancing several independent problems (unreduced blocks, of one matrix
//! or of several) in lockstep lets the processor overlap their
//! chains — up to eight, four to an AVX vector, where the CPU has AVX2, else
//! four in scalar code; each problem still does exactly the arithmetic it
//! would alone, in the same order, so the results are bit-for-bit those of
//! one at a time.

use crate::error::Error;

/// Iterations allowed per eigenvalue before giving up (LAPACK's MAXIT).
const MAX_ITERATIONS_PER_VALUE: usize = 30;
/// Problems advanced together at most: two AVX vectors of four, whose
/// dependent chains of divisions overlap (see `advance_vectors`).
const LANES: usize = 8;

/// The eigenvalues (ascending) of the symmetric tridiagonal matrix with
/// diagonal `diag` (n) and off-diagonal `subdiag` (n - 1).
pub fn tridiagonal_eigenvalues(diag: &[f64], subdiag: &[f64]) -> Result<Vec<f64>, Error> {
    tridiagonal_eigenvalues_many(&[(diag, subdiag)])
        .pop()
        .expect("one result per problem")
}

/// The eigenvalues (ascending) of each `(diag, subdiag)` tridiagonal matrix,
/// computed together.
pub fn tridiagonal_eigenvalues_many(problems: &[(&[f64], &[f64])]) -> Vec<Result<Vec<f64>, Error>> {
    let mut values: Vec<Vec<f64>> = problems.iter().map(|(d, _)| d.to_vec()).collect();
    let mut blocks = Vec::new();
    for (index, (diag, subdiag)) in problems.iter().enumerate() {
        assert_eq!(
            subdiag.len(),
            diag.len().saturating_sub(1),
            "a tridiagonal matrix has n - 1 off-diagonal entries"
        );
        split_into_blocks(index, diag, subdiag, &mut blocks);
    }
    let failures = solve_blocks(&mut blocks);
    let mut failed: Vec<Option<Error>> = problems.iter().map(|_| None).collect();
    for (block, failure) in blocks.iter().zip(failures) {
        if let Some(error) = failure {
            failed[block.problem] = Some(error);
            continue;
        }
        let out = &mut values[block.problem][block.offset..block.offset + block.d.len()];
        for (o, v) in out.iter_mut().zip(&block.d) {
            *o = v * block.unscale;
        }
    }
    values
        .into_iter()
        .zip(failed)
        .map(|(mut v, failure)| match failure {
            Some(error) => Err(error),
            None => {
                v.sort_unstable_by(f64::total_cmp);
                Ok(v)
            }
        })
        .collect()
}

/// One unreduced block, scaled and squared, ready for the QL iteration.
#[derive(Clone)]
struct Block {
    problem: usize,
    offset: usize,
    d: Vec<f64>,
    /// Squared off-diagonal.
    e: Vec<f64>,
    /// Multiplies the results back to the original scale.
    unscale: f64,
}

const EPS: f64 = f64::EPSILON / 2.0;

/// Splits where the off-diagonal is negligible, scales each block into the
/// range where squaring cannot overflow or underflow, squares its
/// off-diagonal, and orients it so that QL chases from the larger end (QR on
/// a block is QL on its reverse). 1 x 1 and zero blocks are left in place.
fn split_into_blocks(problem: usize, diag: &[f64], subdiag: &[f64], blocks: &mut Vec<Block>) {
    let n = diag.len();
    let safe_max = (1.0 / f64::MIN_POSITIVE).sqrt() / 3.0;
    let safe_min = f64::MIN_POSITIVE.sqrt() / (EPS * EPS);
    let mut start = 0;
    while start < n {
        let mut end = n - 1;
        for k in start..n - 1 {
            if subdiag[k].abs() <= diag[k].abs().sqrt() * diag[k + 1].abs().sqrt() * EPS {
                end = k;
                break;
            }
        }
        let range = start..end + 1;
        start = end + 1;
        if range.len() == 1 {
            continue;
        }
        let mut d = diag[range.clone()].to_vec();
        let mut e = subdiag[range.start..range.end - 1].to_vec();
        let norm = d.iter().chain(&e).fold(0.0_f64, |m, v| m.max(v.abs()));
        if norm == 0.0 {
            continue;
        }
        let target = if norm > safe_max {
            safe_max
        } else if norm < safe_min {
            safe_min
        } else {
            norm
        };
        if target != norm {
            let factor = target / norm;
            d.iter_mut().chain(e.iter_mut()).for_each(|v| *v *= factor);
        }
        e.iter_mut().for_each(|v| *v *= *v);
        if d[d.len() - 1].abs() < d[0].abs() {
            d.reverse();
            e.reverse();
        }
        blocks.push(Block {
            problem,
            offset: range.start,
            d,
            e,
            unscale: norm / target,
        });
    }
}

/// Runs the QL iteration on every block, up to `LANES` at a time; returns a
/// failure per block (None where it converged).
fn solve_blocks(blocks: &mut [Block]) -> Vec<Option<Error>> {
    let mut failures: Vec<Option<Error>> = blocks.iter().map(|_| None).collect();
    let mut pending = blocks.iter_mut().enumerate();
    let mut lanes: Vec<Sweeper<'_>> = Vec::with_capacity(LANES);
    loop {
        // Fill free lanes with blocks that still need a sweep.
        while lanes.len() < lane_count() {
            let Some((index, block)) = pending.next() else {
                break;
            };
            let mut sweeper = Sweeper::new(index, block);
            match sweeper.next_sweep() {
                Ok(true) => lanes.push(sweeper),
                Ok(false) => {}
                Err(error) => failures[index] = Some(error),
            }
        }
        if lanes.is_empty() {
            return failures;
        }
        // Advance every lane until the first one ends its sweep.
        let steps = lanes.iter().map(|s| s.remaining).min().expect("non-empty");
        advance_any(&mut lanes, steps);
        let mut k = 0;
        while k < lanes.len() {
            if lanes[k].remaining > 0 {
                k += 1;
                continue;
            }
            lanes[k].finish_sweep();
            match lanes[k].next_sweep() {
                Ok(true) => k += 1,
                Ok(false) => {
                    lanes.swap_remove(k);
                }
                Err(error) => {
                    failures[lanes[k].index] = Some(error);
                    lanes.swap_remove(k);
                }
            }
        }
    }
}

/// The root-free QL iteration on one block.
struct Sweeper<'a> {
    index: usize,
    d: &'a mut [f64],
    e: &'a mut [f64],
    /// The first row not yet converged.
    l: usize,
    budget: usize,
    /// Rotations left in the sweep in progress.
    remaining: usize,
    state: SweepState,
}

/// The running values of one sweep (`i` counts down from `m` to `l`).
#[derive(Clone, Copy, Default)]
struct SweepState {
    m: usize,
    i: usize,
    sigma: f64,
    c: f64,
    s: f64,
    gamma: f64,
    p: f64,
}

impl<'a> Sweeper<'a> {
    fn new(index: usize, block: &'a mut Block) -> Self {
        let budget = MAX_ITERATIONS_PER_VALUE * block.d.len();
        Self {
            index,
            d: &mut block.d,
            e: &mut block.e,
            l: 0,
            budget,
            remaining: 0,
            state: SweepState::default(),
        }
    }

    /// Deflates what has converged and sets up the next sweep; false when
    /// every eigenvalue of the block is found.
    fn next_sweep(&mut self) -> Result<bool, Error> {
        let last = self.d.len() - 1;
        let eps2 = EPS * EPS;
        let (d, e) = (&mut *self.d, &mut *self.e);
        while self.l <= last {
            let l = self.l;
            // The first negligible off-diagonal at or after l splits off [l, m].
            let m = (l..last)
                .find(|&k| e[k].abs() <= eps2 * (d[k] * d[k + 1]).abs())
                .unwrap_or(last);
            if m < last {
                e[m] = 0.0;
            }
            if m == l {
                self.l += 1;
                continue;
            }
            if m == l + 1 {
                let (rt1, rt2) = eigenvalues_2x2(d[l], e[l].sqrt(), d[l + 1]);
                d[l] = rt1;
                d[l + 1] = rt2;
                e[l] = 0.0;
                self.l += 2;
                continue;
            }
            if self.budget == 0 {
                return Err(Error::NoConvergence(format!(
                    "the tridiagonal QL iteration did not converge ({} unreduced values)",
                    m - l + 1
                )));
            }
            self.budget -= 1;
            // Wilkinson-like shift from the leading 2 x 2.
            let p = d[l];
            let rte = e[l].sqrt();
            let t = (d[l + 1] - p) / (2.0 * rte);
            let r = t.hypot(1.0);
            let sigma = p - rte / (t + r.copysign(t));
            let gamma = d[m] - sigma;
            self.state = SweepState {
                m,
                i: m,
                sigma,
                c: 1.0,
                s: 0.0,
                gamma,
                p: gamma * gamma,
            };
            self.remaining = m - l;
            return Ok(true);
        }
        Ok(false)
    }

    fn finish_sweep(&mut self) {
        let l = self.l;
        self.e[l] = self.state.s * self.state.p;
        self.d[l] = self.state.sigma + self.state.gamma;
    }
}

/// Runs `steps` rotations on each of `K` sweeps in lockstep. The running
/// values are copied into locals for the duration (registers, once the lane
/// loop is unrolled): a chain of loads and stores through the structs would
/// lengthen every step.
#[inline(always)]
fn advance<const K: usize>(lanes: [&mut Sweeper<'_>; K], steps: usize) {
    let mut parts = lanes.map(|lane| {
        lane.remaining -= steps;
        (&mut *lane.d, &mut *lane.e, &mut lane.state)
    });
    let mut local: [SweepState; K] = std::array::from_fn(|k| *parts[k].2);
    for _ in 0..steps {
        for k in 0..K {
            let (d, e) = (&mut *parts[k].0, &mut *parts[k].1);
            let st = &mut local[k];
            st.i -= 1;
            let i = st.i;
            let bb = e[i];
            let r = st.p + bb;
            if i + 1 != st.m {
                e[i + 1] = st.s * r;
            }
            let old_c = st.c;
            st.c = st.p / r;
            st.s = bb / r;
            // 1/c, divided off the chain (see `next_p`).
            let inverse_c = r / st.p;
            let old_gamma = st.gamma;
            let alpha = d[i];
            st.gamma = st.c * (alpha - st.sigma) - st.s * old_gamma;
            d[i + 1] = old_gamma + (alpha - st.gamma);
            st.p = next_p(st.gamma, st.c, inverse_c, old_c, bb);
        }
    }
    for (part, state) in parts.iter_mut().zip(local) {
        *part.2 = state;
    }
}

/// The next `p` of a rotation: `gamma² / c`, or `old_c · bb` where `c` is
/// zero (LAPACK's `dsterf`). `gamma² · inverse_c` with `inverse_c = r / p`
/// computed beside `c = p / r` takes the second division off the chain of
/// dependent operations that bounds a lone problem (~38 cycles per rotation
/// down to ~28); where that product is not finite (`p` so small that `r / p`
/// overflows) the division is done as before.
#[inline(always)]
fn next_p(gamma: f64, c: f64, inverse_c: f64, old_c: f64, bb: f64) -> f64 {
    if c != 0.0 {
        let square = gamma * gamma;
        let fast = square * inverse_c;
        if fast.is_finite() { fast } else { square / c }
    } else {
        old_c * bb
    }
}

/// How many problems are advanced together: eight where the vector path
/// runs (two vectors), four otherwise (more scalar lanes than registers
/// hold would spill).
fn lane_count() -> usize {
    if crate::simd::avx2_fma() { LANES } else { 4 }
}

/// Advances every lane by `steps` rotations: four or eight lanes in AVX
/// vectors where the CPU has them (five to seven: four in a vector, the
/// rest scalar), else in scalar lockstep. Both do the same IEEE operations in
/// the same order.
fn advance_any(lanes: &mut [Sweeper<'_>], steps: usize) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2_fma() && lanes.len() >= 4 {
        // SAFETY (both calls): `avx2_fma` means AVX2 and FMA were detected.
        if lanes.len() == 8 {
            return unsafe { advance_vectors::<2>(lanes, steps) };
        }
        let (vector, rest) = lanes.split_at_mut(4);
        unsafe { advance_vectors::<1>(vector, steps) };
        return advance_scalar(rest, steps);
    }
    advance_scalar(lanes, steps)
}

fn advance_scalar(lanes: &mut [Sweeper<'_>], steps: usize) {
    match lanes {
        [] => {}
        [a] => advance([a], steps),
        [a, b] => advance([a, b], steps),
        [a, b, c] => advance([a, b, c], steps),
        [a, b, c, d] => advance([a, b, c, d], steps),
        _ => unreachable!("at most 4 scalar lanes"),
    }
}

/// `advance` on `4 * V` lanes, four to an AVX vector: the scalar version
/// issues three divisions per lane and step, and the divider, not the chain,
/// bounds it; `vdivpd` does four at once. The rows each lane reads and writes
/// differ, so they are gathered and scattered one by one. No FMA: every
/// product is rounded as in `advance`, so the results are the same to the bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn advance_vectors<const V: usize>(lanes: &mut [Sweeper<'_>], steps: usize) {
    use std::arch::x86_64::*;
    assert_eq!(lanes.len(), 4 * V, "four lanes per vector");
    let mut d = [std::ptr::null_mut::<f64>(); LANES];
    let mut e = [std::ptr::null_mut::<f64>(); LANES];
    let (mut i, mut m) = ([0usize; LANES], [0usize; LANES]);
    let mut values = [[0.0; LANES]; 5]; // sigma, c, s, gamma, p
    for (k, lane) in lanes.iter_mut().enumerate() {
        // Every row touched below lies in [l, m] of this lane's block: `i`
        // counts down from `m` by at most `remaining` (= m - l at the start).
        assert!(
            steps <= lane.remaining && lane.state.m < lane.d.len() && lane.state.m <= lane.e.len()
        );
        lane.remaining -= steps;
        d[k] = lane.d.as_mut_ptr();
        e[k] = lane.e.as_mut_ptr();
        let st = lane.state;
        (i[k], m[k]) = (st.i, st.m);
        for (slot, value) in values
            .iter_mut()
            .zip([st.sigma, st.c, st.s, st.gamma, st.p])
        {
            slot[k] = value;
        }
    }
    // SAFETY: the pointers are the lanes' own slices (distinct blocks), and
    // every index used is a row in [l, m] (asserted above), inside them.
    unsafe {
        let load = |k: usize| {
            let mut out = [_mm256_setzero_pd(); 2];
            for (v, slot) in out.iter_mut().enumerate().take(V) {
                *slot = _mm256_loadu_pd(values[k].as_ptr().add(4 * v));
            }
            out
        };
        let (sigma, mut c, mut s, mut gamma, mut p) = (load(0), load(1), load(2), load(3), load(4));
        let mut lanes_out = [0.0; 4];
        for _ in 0..steps {
            for v in 0..V {
                let base = 4 * v;
                for k in base..base + 4 {
                    i[k] -= 1;
                }
                let row = |ptrs: &[*mut f64; LANES], k: usize| *ptrs[k].add(i[k]);
                let bb = _mm256_set_pd(
                    row(&e, base + 3),
                    row(&e, base + 2),
                    row(&e, base + 1),
                    row(&e, base),
                );
                let alpha = _mm256_set_pd(
                    row(&d, base + 3),
                    row(&d, base + 2),
                    row(&d, base + 1),
                    row(&d, base),
                );
                let r = _mm256_add_pd(p[v], bb);
                _mm256_storeu_pd(lanes_out.as_mut_ptr(), _mm256_mul_pd(s[v], r));
                for k in 0..4 {
                    let lane = base + k;
                    if i[lane] + 1 != m[lane] {
                        *e[lane].add(i[lane] + 1) = lanes_out[k];
                    }
                }
                let old_c = c[v];
                c[v] = _mm256_div_pd(p[v], r);
                s[v] = _mm256_div_pd(bb, r);
                let inverse_c = _mm256_div_pd(r, p[v]);
                let old_gamma = gamma[v];
                gamma[v] = _mm256_sub_pd(
                    _mm256_mul_pd(c[v], _mm256_sub_pd(alpha, sigma[v])),
                    _mm256_mul_pd(s[v], old_gamma),
                );
                _mm256_storeu_pd(
                    lanes_out.as_mut_ptr(),
                    _mm256_add_pd(old_gamma, _mm256_sub_pd(alpha, gamma[v])),
                );
                for k in 0..4 {
                    *d[base + k].add(i[base + k] + 1) = lanes_out[k];
                }
                // `next_p`, four lanes at once. `c != 0.0` as Rust
                // compares: true for NaN (unordered).
                let nonzero = _mm256_cmp_pd::<_CMP_NEQ_UQ>(c[v], _mm256_setzero_pd());
                let square = _mm256_mul_pd(gamma[v], gamma[v]);
                let mut quotient = _mm256_mul_pd(square, inverse_c);
                let magnitude = _mm256_andnot_pd(_mm256_set1_pd(-0.0), quotient);
                let finite = _mm256_cmp_pd::<_CMP_LT_OQ>(magnitude, _mm256_set1_pd(f64::INFINITY));
                if _mm256_movemask_pd(finite) != 0b1111 {
                    let divided = _mm256_div_pd(square, c[v]);
                    quotient = _mm256_blendv_pd(divided, quotient, finite);
                }
                p[v] = _mm256_blendv_pd(_mm256_mul_pd(old_c, bb), quotient, nonzero);
            }
        }
        for (k, vectors) in [c, s, gamma, p].into_iter().enumerate() {
            for (v, vector) in vectors.iter().enumerate().take(V) {
                _mm256_storeu_pd(values[k + 1].as_mut_ptr().add(4 * v), *vector);
            }
        }
    }
    for (k, lane) in lanes.iter_mut().enumerate() {
        lane.state = SweepState {
            m: m[k],
            i: i[k],
            sigma: values[0][k],
            c: values[1][k],
            s: values[2][k],
            gamma: values[3][k],
            p: values[4][k],
        };
    }
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

    fn random_problem(rng: &mut StdRng, n: usize) -> (Vec<f64>, Vec<f64>) {
        let d = (0..n).map(|_| rng.random::<f64>() - 0.5).collect();
        let e = (0..n.saturating_sub(1))
            .map(|_| rng.random::<f64>() - 0.5)
            .collect();
        (d, e)
    }

    #[test]
    fn random_tridiagonals_match_nalgebra() {
        let mut rng = StdRng::seed_from_u64(1);
        for n in [1_usize, 2, 3, 4, 7, 50, 300] {
            let (d, e) = random_problem(&mut rng, n);
            assert_matches_oracle(&d, &e);
        }
    }

    #[test]
    fn many_problems_at_once_equal_one_at_a_time_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut problems: Vec<(Vec<f64>, Vec<f64>)> = [5, 130, 1, 64, 64, 2, 300, 17, 90]
            .iter()
            .map(|&n| random_problem(&mut rng, n))
            .collect();
        // A problem that splits into several blocks.
        problems[3].1[20] = 0.0;
        problems[3].1[40] = 0.0;
        let refs: Vec<(&[f64], &[f64])> = problems
            .iter()
            .map(|(d, e)| (d.as_slice(), e.as_slice()))
            .collect();
        let together = tridiagonal_eigenvalues_many(&refs);
        for ((d, e), got) in problems.iter().zip(together) {
            assert_eq!(got.unwrap(), tridiagonal_eigenvalues(d, e).unwrap());
            assert_matches_oracle(d, e);
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
    fn the_next_p_falls_back_to_the_division_where_the_reciprocal_overflows() {
        // c = p / r denormal: r / p overflows, gamma² / c does not.
        let (p, r): (f64, f64) = (1e-310, 2.0);
        let (c, inverse_c) = (p / r, r / p);
        assert!(c > 0.0 && inverse_c.is_infinite());
        let gamma: f64 = 1e-160;
        let want = gamma * gamma / c;
        assert!(want.is_finite() && want > 0.0);
        assert_eq!(next_p(gamma, c, inverse_c, 0.5, 3.0), want);
        assert_eq!(next_p(0.0, c, inverse_c, 0.5, 3.0), 0.0);
        // The usual case agrees with the division to a few ulps, and c = 0
        // takes LAPACK's other branch.
        let (c, inverse_c) = (0.3 / 1.7, 1.7 / 0.3);
        let (fast, divided) = (next_p(0.9, c, inverse_c, 0.5, 3.0), 0.81 / c);
        assert!((fast - divided).abs() <= 4.0 * f64::EPSILON * divided);
        assert_eq!(next_p(0.9, 0.0, f64::INFINITY, 0.5, 3.0), 1.5);
    }

    /// Four problems' blocks, each with its first sweep set up, and in lane
    /// 1 a denormal `p` and a tiny `gamma`: on the first rotation `r / p`
    /// overflows while `gamma² / c` does not.
    fn lanes_with_a_denormal_p(blocks: &mut [Block]) -> Vec<Sweeper<'_>> {
        let mut lanes: Vec<Sweeper<'_>> = blocks
            .iter_mut()
            .enumerate()
            .map(|(index, block)| Sweeper::new(index, block))
            .collect();
        for lane in &mut lanes {
            assert!(lane.next_sweep().unwrap());
        }
        lanes[1].state.p = 1e-310;
        lanes[1].state.gamma = 1e-160;
        lanes
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_lanes_take_the_division_as_the_scalar_ones_do() {
        if !crate::simd::avx2_fma() {
            return; // only the scalar lanes run on this CPU
        }
        let mut rng = StdRng::seed_from_u64(5);
        let mut blocks = Vec::new();
        for problem in 0..4 {
            let (d, e) = random_problem(&mut rng, 40);
            split_into_blocks(problem, &d, &e, &mut blocks);
        }
        assert_eq!(blocks.len(), 4);
        let (mut scalar_blocks, mut vector_blocks) = (blocks.clone(), blocks);
        let mut scalar = lanes_with_a_denormal_p(&mut scalar_blocks);
        let mut vector = lanes_with_a_denormal_p(&mut vector_blocks);
        // One rotation: later ones carry lane 1's odd state on to NaN.
        advance_scalar(&mut scalar, 1);
        // SAFETY: `avx2_fma` said AVX2 and FMA are there.
        unsafe { advance_vectors::<1>(&mut vector, 1) };
        assert!(scalar[1].state.p.is_finite() && scalar[1].state.p > 0.0);
        let bits = |lanes: &[Sweeper<'_>]| -> Vec<Vec<u64>> {
            lanes
                .iter()
                .map(|lane| {
                    let st = lane.state;
                    let values = [st.sigma, st.c, st.s, st.gamma, st.p];
                    values
                        .iter()
                        .chain(lane.d.iter())
                        .chain(lane.e.iter())
                        .map(|v| v.to_bits())
                        .collect()
                })
                .collect()
        };
        // (Fails when the vector lanes skip the division: checked.)
        assert_eq!(bits(&scalar), bits(&vector));
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
