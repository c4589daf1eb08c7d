//! Householder reflectors and the small dense kernels built on them.
//!
//! A reflector is `H = I - tau * v * v^T` with `v[0] = 1` (LAPACK's `dlarfg`
//! convention). Both stages of the tridiagonal reduction use these on short
//! contiguous slices, so everything here works on plain `&[f64]`. All of it
//! is `#[inline(always)]` so that it is compiled into the callers' vectorized
//! variants (see `simd`).

/// Euclidean norm of `x`, scaled so that squaring never overflows or
/// underflows (the entries of a Gram matrix can span many decades).
#[inline(always)]
pub fn norm2(x: &[f64]) -> f64 {
    let scale = x.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return scale;
    }
    let inv = 1.0 / scale;
    let sum: f64 = x.iter().map(|v| (v * inv) * (v * inv)).sum();
    scale * sum.sqrt()
}

/// Turns `x` into the reflector that maps it onto `beta * e_1`.
///
/// On return `x[0] = 1` and `x[1..]` holds the rest of `v`; the result is
/// `(tau, beta)`. When `x[1..]` is already zero, `tau = 0` (H = I) and
/// `beta = x[0]`.
#[inline(always)]
pub fn make_reflector(x: &mut [f64]) -> (f64, f64) {
    let Some((&alpha, tail)) = x.split_first() else {
        return (0.0, 0.0);
    };
    let tail_norm = norm2(tail);
    if tail_norm == 0.0 {
        x[0] = 1.0;
        return (0.0, alpha);
    }
    let norm = alpha.hypot(tail_norm);
    let beta = if alpha >= 0.0 { -norm } else { norm };
    let tau = (beta - alpha) / beta;
    let inv = 1.0 / (alpha - beta);
    for value in &mut x[1..] {
        *value *= inv;
    }
    x[0] = 1.0;
    (tau, beta)
}

/// `dot(a, b)` over the common length. Eight independent partial sums let
/// the compiler keep a whole vector register of products in flight (a single
/// running sum is a chain of dependent scalar additions).
#[inline(always)]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut partial = [0.0; LANES];
    let mut a_chunks = a.chunks_exact(LANES);
    let mut b_chunks = b.chunks_exact(LANES);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        for lane in 0..LANES {
            partial[lane] += x[lane] * y[lane];
        }
    }
    let tail: f64 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let halves = [
        partial[0] + partial[4],
        partial[1] + partial[5],
        partial[2] + partial[6],
        partial[3] + partial[7],
    ];
    (halves[0] + halves[2]) + (halves[1] + halves[3]) + tail
}

/// `y += alpha * x` over the common length.
#[inline(always)]
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflector_maps_vector_onto_first_axis() {
        let original = [3.0, -1.0, 2.0, 0.5];
        let mut v = original;
        let (tau, beta) = make_reflector(&mut v);
        assert!((beta.abs() - norm2(&original)).abs() < 1e-14);
        // H x = x - tau * v * (v . x)
        let vx = dot(&v, &original);
        let hx: Vec<f64> = original
            .iter()
            .zip(&v)
            .map(|(x, vi)| x - tau * vi * vx)
            .collect();
        assert!((hx[0] - beta).abs() < 1e-14);
        for value in &hx[1..] {
            assert!(value.abs() < 1e-14, "{hx:?}");
        }
    }

    #[test]
    fn reflector_is_identity_when_already_reduced() {
        let mut v = [-2.0, 0.0, 0.0];
        let (tau, beta) = make_reflector(&mut v);
        assert_eq!((tau, beta), (0.0, -2.0));
    }

    #[test]
    fn dot_matches_a_plain_sum_for_every_length() {
        for n in 0..40 {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 1.3).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - want).abs() < 1e-13, "n = {n}");
        }
    }

    #[test]
    fn norm_survives_extreme_magnitudes() {
        assert!((norm2(&[3e200, 4e200]) / 5e200 - 1.0).abs() < 1e-15);
        assert!((norm2(&[3e-200, 4e-200]) / 5e-200 - 1.0).abs() < 1e-15);
        assert_eq!(norm2(&[]), 0.0);
    }
}
