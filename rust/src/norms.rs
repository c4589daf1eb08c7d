//! `‖A‖_F²` in float64: the normalization of the approximate entropy
//! (`grokspec.slq`), one memory-bound pass over the matrix.
//!
//! numpy's `einsum(..., dtype=float64)` on row blocks took 47–52 ms for an
//! 8192² float32 matrix on two cores, a twentieth of an estimate; this pass
//! streams the same 268 MB near the memory's speed (docs/APPROX.md).

use faer::MatRef;
use rayon::prelude::*;

use crate::batch;
use crate::error::Error;
use crate::simd::multiversion;

/// Elements per piece of work: large enough to stream, small enough that
/// two threads share the rows evenly.
const PIECE: usize = 1 << 20;

multiversion! {
    fn squares_f32(values: &[f32]) -> f64 = squares_generic::<f32>
}
multiversion! {
    fn squares_f64(values: &[f64]) -> f64 = squares_generic::<f64>
}

/// The sum of squares of `values`, widened to f64 and accumulated over
/// eight independent lanes so that the compiler vectorizes it.
#[inline(always)]
fn squares_generic<T: Copy + Into<f64>>(values: &[T]) -> f64 {
    const LANES: usize = 8;
    let mut sums = [0.0_f64; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for k in 0..LANES {
            let v: f64 = chunk[k].into();
            sums[k] = v.mul_add(v, sums[k]);
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&x| x.into() * x.into())
        .sum();
    sums.iter().sum::<f64>() + tail
}

/// The element types [`frobenius_squared`] reads.
pub trait Squares: Copy + Into<f64> + Send + Sync + 'static {
    /// The sum of squares of a contiguous run of elements, in f64.
    fn squares(values: &[Self]) -> f64;
}

impl Squares for f32 {
    fn squares(values: &[f32]) -> f64 {
        squares_f32(values)
    }
}

impl Squares for f64 {
    fn squares(values: &[f64]) -> f64 {
        squares_f64(values)
    }
}

/// `Σ a_ij²` in f64 (no scaling: it overflows to infinity only for float64
/// data beyond ~1e154), on `threads` threads. A matrix contiguous in either
/// order is read as one slice in pieces; any other layout a row at a time.
pub fn frobenius_squared<T: Squares>(m: MatRef<'_, T>, threads: usize) -> Result<f64, Error> {
    let (rows, cols) = m.shape();
    if rows == 0 || cols == 0 {
        return Ok(0.0);
    }
    if let Some(values) = contiguous(m) {
        if threads <= 1 || values.len() <= PIECE {
            return Ok(values.chunks(PIECE).map(T::squares).sum());
        }
        // The pieces' sums are added in order, as on one thread: the result
        // does not depend on the thread count (rayon's own `sum` would add
        // them in a tree shaped by how the work was split).
        let pool = batch::pool(threads)?;
        let pieces: Vec<f64> = pool.install(|| values.par_chunks(PIECE).map(T::squares).collect());
        return Ok(pieces.into_iter().sum());
    }
    let row = |i: usize| -> f64 {
        let line = m.row(i);
        match line.try_as_row_major() {
            Some(r) => T::squares(r.as_slice()),
            None => (0..cols).map(|j| line[j].into() * line[j].into()).sum(),
        }
    };
    if threads <= 1 {
        return Ok((0..rows).map(row).sum());
    }
    let sums: Vec<f64> =
        batch::pool(threads)?.install(|| (0..rows).into_par_iter().map(row).collect());
    Ok(sums.into_iter().sum())
}

/// All of `m`'s elements as one slice, when it is dense in row- or
/// column-major order (the sum does not care which).
fn contiguous<'a, T>(m: MatRef<'a, T>) -> Option<&'a [T]> {
    let (rows, cols) = m.shape();
    let (rs, cs) = (m.row_stride(), m.col_stride());
    let dense = (cs == 1 && (rows == 1 || rs == cols as isize))
        || (rs == 1 && (cols == 1 || cs == rows as isize));
    // SAFETY: with these strides the rows*cols elements occupy exactly the
    // `rows * cols` consecutive places from the pointer, borrowed for 'a.
    dense.then(|| unsafe { std::slice::from_raw_parts(m.as_ptr(), rows * cols) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    fn reference(m: &Mat<f64>) -> f64 {
        let mut total = 0.0;
        for j in 0..m.ncols() {
            for i in 0..m.nrows() {
                total += m[(i, j)] * m[(i, j)];
            }
        }
        total
    }

    #[test]
    fn every_layout_and_thread_count_gives_the_sum_of_squares() {
        for &(rows, cols) in &[(1, 1), (3, 5), (37, 1029), (1100, 1000)] {
            let m = Mat::<f64>::from_fn(rows, cols, |i, j| ((i * 31 + j * 17) % 23) as f64 - 11.5);
            let want = reference(&m);
            let tolerance = 1e-12 * want.max(1.0);
            for threads in [1, 2, 3] {
                let layouts = [m.as_ref(), m.as_ref().transpose()];
                for view in layouts {
                    let got = frobenius_squared(view, threads).unwrap();
                    assert!(
                        (got - want).abs() <= tolerance,
                        "{rows}x{cols}, {threads}: {got} vs {want}"
                    );
                }
                // All but the last column: a view whose rows are strided and
                // whose columns may not follow each other (faer pads them).
                if cols >= 2 {
                    let strided = m.as_ref().subcols(0, cols - 1);
                    let want_strided = reference(&strided.to_owned());
                    let got = frobenius_squared(strided, threads).unwrap();
                    assert!((got - want_strided).abs() <= tolerance);
                }
            }
        }
    }

    #[test]
    fn the_sum_is_the_same_to_the_bit_on_every_thread_count() {
        // Several pieces of PIECE elements, and rows of varied magnitude, so
        // that a different order of the additions would show in the last bits.
        let (rows, cols) = (2100, 1100);
        let m = Mat::<f32>::from_fn(rows, cols, |i, j| {
            ((i * 7919 + j * 104_729) % 1000) as f32 * (1.0 + (i % 13) as f32 * 1e3)
        });
        for view in [m.as_ref(), m.as_ref().subcols(0, cols - 1)] {
            let one = frobenius_squared(view, 1).unwrap();
            for threads in [2, 3, 4] {
                let many = frobenius_squared(view, threads).unwrap();
                assert_eq!(
                    one.to_bits(),
                    many.to_bits(),
                    "{threads} threads: {many} vs {one}"
                );
            }
        }
    }

    #[test]
    fn float32_is_widened_before_squaring() {
        // 3e19² overflows float32 but not float64.
        let m = Mat::<f32>::from_fn(4, 4, |_, _| 3e19);
        let got = frobenius_squared(m.as_ref(), 2).unwrap();
        assert!((got / (16.0 * 9e38) - 1.0).abs() < 1e-6, "{got}");
        assert_eq!(
            frobenius_squared(Mat::<f32>::zeros(0, 3).as_ref(), 2).unwrap(),
            0.0
        );
    }
}
