//! Householder reduction of a small symmetric matrix to tridiagonal form.
//!
//! For the small Gram matrices of a batch (64 matrices of 512 x 128 give
//! 128 x 128 ones) and of a small model's scan (384 x 384 for MiniLM) faer's
//! blocked `tridiag_in_place` spent ~30-40% of the time. At these sizes the
//! lower triangle lives in L2 or L3, and the plain unblocked algorithm
//! (LAPACK's `dsytd2`) with the symmetric product fused into the rank-2
//! update — every inner loop one contiguous column, two columns at a time in
//! AVX2 + FMA intrinsics where the CPU has them — is faster on one thread up
//! to [`faster_up_to`]. Given two threads or more, a step's columns are
//! shared by two (the caller and a partner thread kept for the whole loop,
//! see `partner`, each adding into its own copy of the next product): on two
//! threads that beat the two-stage reduction up to the same
//! order.

use faer::{MatRef, Par};

use crate::householder::{axpy, dot, make_reflector};
use crate::partner::{Partner, with_partner};
use crate::simd::{Isa, isa};

/// The largest order for which this beats, on one thread, both faer's
/// `tridiag_in_place` and the two-stage reduction, per kernel path, measured
/// with `examples/small_tridiagonal_timing.rs` (random Gram matrices, µs per
/// matrix, medians, one thread unless said).
///
/// AVX2 on a 2-core AMD EPYC (Zen 3, 27 Nov 2026), this / faer's / two-stage:
/// 64: 32 / 72 / —, 128: 160 / 292 / —, 256: 1052-1109 / 1509-1657 / 2656,
/// 384: 3492-3678 / 4773-4897 / 6679, 512: 8088-9354 / 10513-11280 / 13357,
/// 768: 26329-26514 / 33814-34947 / 34997-35630, 1024: 61809 / 79574 / 73553
/// — hence 1024. On two threads, sharing each step's columns (this / the
/// two-stage reduction on two threads, same machine, evening): 512: 8741 /
/// 11682, 768: 24692 / 37272, 1024: 53492 / 65409, 1280: 93879 / 88779,
/// 1536: 190102 / 196500, 2048: 657550 / 401567 — so 1024 holds there too
/// (see `SymEigParams::dense_up_to`). The
/// portable path there (no column pairs, no FMA): 64: 65 / 72, 80: 110 /
/// 110, 96: 176 / 163 — hence 64. AVX-512 keeps 128, measured on a 2-core
/// Xeon with an earlier full-storage reduction that did twice this one's
/// arithmetic (128: 415-570 / 578-662); this one is unmeasured there.
pub fn faster_up_to() -> usize {
    match isa() {
        Isa::Avx512 => 128,
        Isa::Avx2 => 1024,
        Isa::Portable => 64,
    }
}

/// From this many trailing columns on, a reduction given several threads
/// shares each step's columns between two of them (`partner`); below,
/// a step is too little work to split.
const PARALLEL_FROM: usize = 192;

/// The tridiagonal form `(diagonal, subdiagonal)` of the symmetric matrix
/// whose lower triangle is stored in `a` (the upper one is not read).
pub fn tridiagonalize_dense(a: MatRef<'_, f64>, par: Par) -> (Vec<f64>, Vec<f64>) {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "tridiagonalize_dense needs a square matrix");
    // The lower triangle, column-major: every column from its diagonal down
    // is one contiguous slice.
    let mut lower = vec![0.0; n * n];
    for j in 0..n {
        for i in j..n {
            lower[i + j * n] = a[(i, j)];
        }
    }
    reduce(&mut lower, n, par.degree())
}

/// [`tridiagonalize_dense`] on a column-major `n x n` matrix held in
/// `storage` (column stride `n`), whose lower triangle it overwrites; the
/// upper one is neither read nor written.
pub fn tridiagonalize_in_place(storage: &mut [f64], n: usize, par: Par) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(storage.len(), n * n, "an n x n column-major matrix");
    reduce(storage, n, par.degree())
}

/// Given two threads or more and steps worth sharing, the reduction runs
/// with a partner thread that takes half of each shared step (`partner`).
fn reduce(lower: &mut [f64], n: usize, threads: usize) -> (Vec<f64>, Vec<f64>) {
    if threads > 1 && n > PARALLEL_FROM {
        return with_partner(|partner| reduce_on(lower, n, Some(partner)));
    }
    reduce_on(lower, n, None)
}

/// Dispatches to the FMA kernel where the CPU has AVX2 + FMA.
fn reduce_on(lower: &mut [f64], n: usize, partner: Option<&Partner<'_>>) -> (Vec<f64>, Vec<f64>) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2_fma() {
        // SAFETY: `avx2_fma` means AVX2 and FMA were detected.
        return unsafe { reduce_fma(lower, n, partner) };
    }
    reduce_generic::<Plain>(lower, n, partner)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn reduce_fma(lower: &mut [f64], n: usize, partner: Option<&Partner<'_>>) -> (Vec<f64>, Vec<f64>) {
    reduce_generic::<Fma>(lower, n, partner)
}

/// `dsytd2` on the lower triangle of a column-major `n x n` matrix: for
/// each column k, the reflector `H = I - tau v vᵀ` that zeroes it below the
/// subdiagonal, then the trailing block `T <- H T H = T - v wᵀ - w vᵀ` with
/// `w = p - (tau/2)(pᵀv) v`, `p = tau T v`.
///
/// One pass over `T` per column: the next pivot column is updated first and
/// its reflector `v'` made, then each other column's update is fused with
/// the next product `T' v'` — column j, from its diagonal down, feeds both
/// `p'[j]` (a dot product down the column) and `p'[j+1..]` (an axpy), the two
/// halves of the symmetric product (`dsymv`'s scheme).
#[inline(always)]
fn reduce_generic<K: ColumnKernel>(
    a: &mut [f64],
    n: usize,
    partner: Option<&Partner<'_>>,
) -> (Vec<f64>, Vec<f64>) {
    let mut diag = vec![0.0; n];
    let mut subdiag = vec![0.0; n.saturating_sub(1)];
    let mut v = vec![0.0; n];
    let mut w = vec![0.0; n];
    let mut next_v = vec![0.0; n];
    let mut product = vec![0.0; n];
    let mut spare = vec![0.0; n];
    let mut have_product = false;
    for k in 0..n.saturating_sub(1) {
        let m = n - k - 1;
        let first = k + 1;
        // Column j (0-based, of the trailing block) from its diagonal down.
        let column_at = |j: usize| (first + j) * (n + 1);
        diag[k] = a[k * (n + 1)];
        let v = &mut v[..m];
        v.copy_from_slice(&a[first + k * n..n + k * n]);
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
            for j in 0..m {
                let column = &a[column_at(j)..][..m - j];
                w[j] += dot(column, &v[j..]);
                axpy(v[j], &column[1..], &mut w[j + 1..]);
            }
        }
        w.iter_mut().for_each(|x| *x *= tau);
        let alpha = -0.5 * tau * dot(w, v);
        axpy(alpha, v, w);
        // The next pivot column first, then its reflector.
        update_column(&mut a[column_at(0)..][..m], v, w);
        let next = &mut next_v[..m - 1];
        next.copy_from_slice(&a[column_at(0) + 1..][..m - 1]);
        let (next_tau, _) = make_reflector(next);
        have_product = next_tau != 0.0;
        let product = &mut product[..m - 1];
        product.fill(0.0);
        if !have_product {
            for j in 1..m {
                update_column(&mut a[column_at(j)..][..m - j], &v[j..], &w[j..]);
            }
            continue;
        }
        let columns = &mut a[column_at(1)..];
        if let Some(partner) = partner.filter(|_| m >= PARALLEL_FROM) {
            // Two threads take columns of equal total length: column j
            // holds m - j entries, so the second half starts where
            // (m - s)² = (m - 1)² / 2. Each adds into its own product.
            let s = (m - ((m - 1) as f64 / std::f64::consts::SQRT_2) as usize).clamp(2, m - 1);
            let (left, right) = columns.split_at_mut(column_at(s) - column_at(1));
            let spare = &mut spare[s - 1..m - 1];
            spare.fill(0.0);
            partner.join(
                || K::columns(left, n, 1..s, m, (v, w, next), product, 0),
                || K::columns(right, n, s..m, m, (v, w, next), spare, s - 1),
            );
            product[s - 1..]
                .iter_mut()
                .zip(spare.iter())
                .for_each(|(p, q)| *p += q);
        } else {
            update_columns::<K>(columns, n, 1..m, m, (v, w, next), product, 0);
        }
    }
    if n > 0 {
        diag[n - 1] = a[(n - 1) * (n + 1)];
    }
    (diag, subdiag)
}

/// Columns `range` of the trailing block (of `m` columns) updated with
/// `T <- T - v wᵀ - w vᵀ`, each fused with its part of the next product
/// `p' = T' v'` (`vectors = (v, w, v')`): column j adds its dot product
/// into `p'[j - 1]` and its axpy into `p'[j..]`. `a` starts at the first
/// column's diagonal entry (column stride `n`), and `product` holds `p'`
/// from entry `product_from` on.
#[inline(always)]
fn update_columns<K: ColumnKernel>(
    a: &mut [f64],
    n: usize,
    range: std::ops::Range<usize>,
    m: usize,
    (v, w, next): StepVectors<'_>,
    product: &mut [f64],
    product_from: usize,
) {
    let from = range.start;
    let at = |j: usize| (j - from) * (n + 1);
    let mut j = from;
    // Two columns at a time share the loads of v, w, v' and p'.
    while j + 1 < range.end {
        let (left, right) = a[at(j)..].split_at_mut(n + 1);
        let p = j - product_from;
        let (dot_a, dot_b) = K::update_and_multiply_pair(
            [&mut left[..m - j], &mut right[..m - j - 1]],
            &v[j..],
            &w[j..],
            [(w[j], v[j]), (w[j + 1], v[j + 1])],
            &next[j - 1..],
            &mut product[p..],
        );
        product[p - 1] += dot_a;
        product[p] += dot_b;
        j += 2;
    }
    if j < range.end {
        let p = j - product_from;
        product[p - 1] += K::update_and_multiply(
            &mut a[at(j)..][..m - j],
            &v[j..],
            &w[j..],
            (w[j], v[j]),
            &next[j - 1..],
            &mut product[p..],
        );
    }
}

/// The three vectors of a step: `v`, `w` and the next reflector `v'`.
type StepVectors<'a> = (&'a [f64], &'a [f64], &'a [f64]);

/// The inner kernel of [`reduce_generic`], per instruction set.
trait ColumnKernel {
    /// [`update_columns`] compiled for this kernel's instruction set: the
    /// closures the partner thread runs do not inherit the target features of
    /// the function that defines them (there, the intrinsics became calls
    /// and a step ran ~20 times slower); the default serves kernels that need
    /// no instruction set beyond the baseline.
    fn columns(
        a: &mut [f64],
        n: usize,
        range: std::ops::Range<usize>,
        m: usize,
        vectors: StepVectors<'_>,
        product: &mut [f64],
        product_from: usize,
    ) where
        Self: Sized,
    {
        update_columns::<Self>(a, n, range, m, vectors, product, product_from);
    }

    /// One column `t` of the trailing block from its diagonal down: `t -= v
    /// w_j + w v_j`, then `y += x_0 t[1..]`; returns `dot(t, x)`. `v`, `w`
    /// and `x` are aligned with `t`, `y` with `t[1..]`.
    fn update_and_multiply(
        column: &mut [f64],
        v: &[f64],
        w: &[f64],
        scalars: (f64, f64),
        x: &[f64],
        y: &mut [f64],
    ) -> f64;

    /// [`Self::update_and_multiply`] on columns j and j + 1 (the second one
    /// row shorter), both aligned with `v`, `w` and `x` as column j is;
    /// returns both dot products.
    #[inline(always)]
    fn update_and_multiply_pair(
        [first, second]: [&mut [f64]; 2],
        v: &[f64],
        w: &[f64],
        [first_scalars, second_scalars]: [(f64, f64); 2],
        x: &[f64],
        y: &mut [f64],
    ) -> (f64, f64) {
        let dot_first = Self::update_and_multiply(first, v, w, first_scalars, x, y);
        let dot_second = Self::update_and_multiply(
            second,
            &v[1..],
            &w[1..],
            second_scalars,
            &x[1..],
            &mut y[1..],
        );
        (dot_first, dot_second)
    }
}

/// Plain Rust, vectorized by the compiler for whatever the target allows.
struct Plain;

impl ColumnKernel for Plain {
    #[inline(always)]
    fn update_and_multiply(
        column: &mut [f64],
        v: &[f64],
        w: &[f64],
        (wj, vj): (f64, f64),
        x: &[f64],
        y: &mut [f64],
    ) -> f64 {
        let len = column.len();
        let (v, w, x) = (&v[..len], &w[..len], &x[..len]);
        let y = &mut y[..len - 1];
        let x0 = x[0];
        let t0 = column[0] - (v[0] * wj + w[0] * vj);
        column[0] = t0;
        for (((c, y), v), w) in column[1..]
            .iter_mut()
            .zip(y.iter_mut())
            .zip(&v[1..])
            .zip(&w[1..])
        {
            let t = *c - (v * wj + w * vj);
            *c = t;
            *y += x0 * t;
        }
        // The column is in L1 now: a second pass for the dot product costs
        // less than the scalar code a fused reduction compiles to.
        t0 * x0 + dot(&column[1..], &x[1..])
    }
}

/// AVX2 + FMA intrinsics, one pass: the compiler neither fuses the dot
/// product into the update loop nor contracts to FMA on its own.
#[cfg(target_arch = "x86_64")]
struct Fma;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn update_columns_fma(
    a: &mut [f64],
    n: usize,
    range: std::ops::Range<usize>,
    m: usize,
    vectors: StepVectors<'_>,
    product: &mut [f64],
    product_from: usize,
) {
    update_columns::<Fma>(a, n, range, m, vectors, product, product_from);
}

#[cfg(target_arch = "x86_64")]
impl ColumnKernel for Fma {
    fn columns(
        a: &mut [f64],
        n: usize,
        range: std::ops::Range<usize>,
        m: usize,
        vectors: StepVectors<'_>,
        product: &mut [f64],
        product_from: usize,
    ) {
        // SAFETY: the FMA kernel runs only where `avx2_fma` detected AVX2
        // and FMA (see `reduce`).
        unsafe { update_columns_fma(a, n, range, m, vectors, product, product_from) };
    }

    #[inline(always)]
    fn update_and_multiply(
        column: &mut [f64],
        v: &[f64],
        w: &[f64],
        (wj, vj): (f64, f64),
        x: &[f64],
        y: &mut [f64],
    ) -> f64 {
        use std::arch::x86_64::*;
        let len = column.len();
        let (v, w, x) = (&v[..len], &w[..len], &x[..len]);
        let x0 = x[0];
        let t0 = (-w[0]).mul_add(vj, (-v[0]).mul_add(wj, column[0]));
        column[0] = t0;
        let (c, v, w, x) = (&mut column[1..], &v[1..], &w[1..], &x[1..]);
        let y = &mut y[..len - 1];
        let body = len - 1;
        let (cp, vp, wp, xp, yp) = (
            c.as_mut_ptr(),
            v.as_ptr(),
            w.as_ptr(),
            x.as_ptr(),
            y.as_mut_ptr(),
        );
        let mut i = 0;
        // SAFETY: every pointer offset stays below `body`, the length of all
        // five slices; this kernel runs only inside `reduce_fma`, on a
        // CPU with AVX2 and FMA.
        let dot = unsafe {
            let (wj4, vj4, x04) = (_mm256_set1_pd(wj), _mm256_set1_pd(vj), _mm256_set1_pd(x0));
            // A macro, not a closure: a closure here is compiled without the
            // enclosing function's target features, and each intrinsic in it
            // became a function call (seen in `objdump`).
            macro_rules! step {
                ($i:expr, $acc:expr) => {{
                    let i = $i;
                    let t = _mm256_fnmadd_pd(
                        _mm256_loadu_pd(wp.add(i)),
                        vj4,
                        _mm256_fnmadd_pd(
                            _mm256_loadu_pd(vp.add(i)),
                            wj4,
                            _mm256_loadu_pd(cp.add(i)),
                        ),
                    );
                    _mm256_storeu_pd(cp.add(i), t);
                    _mm256_storeu_pd(
                        yp.add(i),
                        _mm256_fmadd_pd(x04, t, _mm256_loadu_pd(yp.add(i))),
                    );
                    _mm256_fmadd_pd(t, _mm256_loadu_pd(xp.add(i)), $acc)
                }};
            }
            let (mut acc0, mut acc1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            while i + 8 <= body {
                acc0 = step!(i, acc0);
                acc1 = step!(i + 4, acc1);
                i += 8;
            }
            if i + 4 <= body {
                acc0 = step!(i, acc0);
                i += 4;
            }
            let acc = _mm256_add_pd(acc0, acc1);
            let pair = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
            _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)))
        };
        let mut tail = t0 * x0;
        for k in i..body {
            let t = (-w[k]).mul_add(vj, (-v[k]).mul_add(wj, c[k]));
            c[k] = t;
            y[k] = x0.mul_add(t, y[k]);
            tail = t.mul_add(x[k], tail);
        }
        dot + tail
    }

    #[inline(always)]
    fn update_and_multiply_pair(
        [first, second]: [&mut [f64]; 2],
        v: &[f64],
        w: &[f64],
        [(wa, va), (wb, vb)]: [(f64, f64); 2],
        x: &[f64],
        y: &mut [f64],
    ) -> (f64, f64) {
        use std::arch::x86_64::*;
        let len = first.len();
        assert!(len >= 2 && second.len() == len - 1);
        let (v, w, x, y) = (&v[..len], &w[..len], &x[..len], &mut y[..len - 1]);
        let update =
            |t: f64, i: usize, (wj, vj): (f64, f64)| (-w[i]).mul_add(vj, (-v[i]).mul_add(wj, t));
        // Row j: the first column's diagonal. Row j + 1: the first column's
        // subdiagonal entry and the second column's diagonal.
        let a0 = update(first[0], 0, (wa, va));
        let a1 = update(first[1], 1, (wa, va));
        let b0 = update(second[0], 1, (wb, vb));
        first[0] = a0;
        first[1] = a1;
        second[0] = b0;
        let (xa, xb) = (x[0], x[1]);
        y[0] = xa.mul_add(a1, y[0]);
        let mut dot_a = a1.mul_add(x[1], a0 * x[0]);
        let mut dot_b = b0 * x[1];
        // Rows j + 2 on, common to both columns.
        let body = len - 2;
        let (ap, bp) = (first[2..].as_mut_ptr(), second[1..].as_mut_ptr());
        let (vp, wp, xp, yp) = (
            v[2..].as_ptr(),
            w[2..].as_ptr(),
            x[2..].as_ptr(),
            y[1..].as_mut_ptr(),
        );
        let mut i = 0;
        // SAFETY: every offset stays below `body`, the length of the six
        // slices behind the pointers; this kernel runs only inside
        // `reduce_fma`, on a CPU with AVX2 and FMA.
        let (vector_a, vector_b) = unsafe {
            let (wa4, va4, wb4, vb4) = (
                _mm256_set1_pd(wa),
                _mm256_set1_pd(va),
                _mm256_set1_pd(wb),
                _mm256_set1_pd(vb),
            );
            let (xa4, xb4) = (_mm256_set1_pd(xa), _mm256_set1_pd(xb));
            let (mut acc_a, mut acc_b) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            while i + 4 <= body {
                let (vi, wi, xi) = (
                    _mm256_loadu_pd(vp.add(i)),
                    _mm256_loadu_pd(wp.add(i)),
                    _mm256_loadu_pd(xp.add(i)),
                );
                let ta = _mm256_fnmadd_pd(
                    wi,
                    va4,
                    _mm256_fnmadd_pd(vi, wa4, _mm256_loadu_pd(ap.add(i))),
                );
                let tb = _mm256_fnmadd_pd(
                    wi,
                    vb4,
                    _mm256_fnmadd_pd(vi, wb4, _mm256_loadu_pd(bp.add(i))),
                );
                _mm256_storeu_pd(ap.add(i), ta);
                _mm256_storeu_pd(bp.add(i), tb);
                let yi = _mm256_fmadd_pd(
                    xb4,
                    tb,
                    _mm256_fmadd_pd(xa4, ta, _mm256_loadu_pd(yp.add(i))),
                );
                _mm256_storeu_pd(yp.add(i), yi);
                acc_a = _mm256_fmadd_pd(ta, xi, acc_a);
                acc_b = _mm256_fmadd_pd(tb, xi, acc_b);
                i += 4;
            }
            let sum = |acc: __m256d| {
                let pair = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
                _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)))
            };
            (sum(acc_a), sum(acc_b))
        };
        for k in i..body {
            let r = k + 2;
            let ta = update(first[r], r, (wa, va));
            let tb = update(second[r - 1], r, (wb, vb));
            first[r] = ta;
            second[r - 1] = tb;
            y[r - 1] = xb.mul_add(tb, xa.mul_add(ta, y[r - 1]));
            dot_a = ta.mul_add(x[r], dot_a);
            dot_b = tb.mul_add(x[r], dot_b);
        }
        (dot_a + vector_a, dot_b + vector_b)
    }
}

/// Column j of the trailing block from its diagonal down, `v` and `w`
/// aligned with it: `T[j.., j] -= v w[j] + w v[j]`.
#[inline(always)]
fn update_column(column: &mut [f64], v: &[f64], w: &[f64]) {
    let (wj, vj) = (w[0], v[0]);
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
        let (d, e) = tridiagonalize_dense(Mat::<f64>::zeros(0, 0).as_ref(), Par::Seq);
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
            let (d, e) = tridiagonalize_dense(lower.as_ref(), Par::Seq);
            let got = tridiagonal_eigenvalues(&d, &e).unwrap();
            let want = oracle(&a);
            let scale = want.iter().fold(1.0_f64, |s, v| s.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-12 * scale, "n={n}: {g} vs {w}");
            }
        }
    }

    /// The lower triangle of `a`, column-major, as `reduce` takes it.
    fn packed_lower(a: &Mat<f64>) -> Vec<f64> {
        let n = a.nrows();
        let mut lower = vec![f64::NAN; n * n];
        for j in 0..n {
            for i in j..n {
                lower[i + j * n] = a[(i, j)];
            }
        }
        lower
    }

    /// A reduction entry point: `(lower triangle, n, partner)` to the tridiagonal form.
    type Reduction = fn(&mut [f64], usize, Option<&Partner<'_>>) -> (Vec<f64>, Vec<f64>);

    /// Both kernels (the FMA one where the CPU has it) on random Gram
    /// matrices of the given orders, run by `threads` inside a pool of that
    /// many as the engine runs them, against nalgebra.
    fn kernels_agree_with_the_oracle(cases: &[(usize, u64)], threads: usize) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for &(n, seed) in cases {
            let mut rng = StdRng::seed_from_u64(seed);
            let x = Mat::<f64>::from_fn(n + 3, n, |_, _| rng.random::<f64>() - 0.5);
            let gram = x.transpose() * &x;
            let want = oracle(&gram);
            let reduce_with = |kernel: Reduction| {
                let mut lower = packed_lower(&gram);
                pool.install(|| match threads {
                    1 => kernel(&mut lower, n, None),
                    _ => with_partner(|partner| kernel(&mut lower, n, Some(partner))),
                })
            };
            let mut kernels = vec![("portable", reduce_with(reduce_generic::<Plain>))];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                kernels.push(("fma", reduce_with(|a, n, p| unsafe { reduce_fma(a, n, p) })));
            }
            for (name, (d, e)) in kernels {
                let got = tridiagonal_eigenvalues(&d, &e).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-12 * want[n - 1],
                        "{name}, n={n}, {threads} threads: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_portable_and_the_fma_kernels_agree_with_the_oracle() {
        // Lengths that leave every remainder of the 8- and 4-wide loops.
        let cases = [
            (2, 11),
            (5, 12),
            (9, 13),
            (14, 14),
            (33, 15),
            (70, 16),
            (131, 17),
        ];
        kernels_agree_with_the_oracle(&cases, 1);
    }

    #[test]
    fn two_threads_sharing_the_columns_agree_with_the_oracle() {
        // Sizes past PARALLEL_FROM, odd and even (the split point's parity
        // and the column pairs at its two sides).
        let cases = [(PARALLEL_FROM + 1, 21), (PARALLEL_FROM + 62, 22), (301, 23)];
        kernels_agree_with_the_oracle(&cases, 2);
    }

    #[test]
    fn a_low_rank_gram_matrix_keeps_its_zero_eigenvalues() {
        // Rank 3 of 20: the trailing columns vanish after three reflectors,
        // and the zero-reflector branches run.
        let mut rng = StdRng::seed_from_u64(7);
        let x = Mat::<f64>::from_fn(3, 20, |_, _| rng.random::<f64>() - 0.5);
        let gram = x.transpose() * &x;
        let (d, e) = tridiagonalize_dense(gram.as_ref(), Par::Seq);
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
        let (d, e) = tridiagonalize_dense(a.as_ref(), Par::Seq);
        assert_eq!(d, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(e.iter().all(|&x| x.abs() == 0.5));
    }
}
