//! Input matrices: strided views of f32 or f64 data (from numpy), or packed
//! little-endian f16/bf16/f32/f64 bytes (from a memory-mapped checkpoint),
//! checked once and then streamed as f64 row blocks of the "tall" orientation.
//!
//! The spectrum of `A` equals the spectrum of `A^T`, so the engine always
//! works on the tall orientation `B` (`B = A` if `A` has at least as many rows
//! as columns, else `B = A^T`) and only ever forms the small Gram matrix
//! `B^T B`. Blocks are converted to f64 on the fly so that a 50k x 4k f32
//! embedding never needs a full f64 copy.

use faer::prelude::ReborrowMut;
use faer::{Mat, MatMut, MatRef};

use crate::error::Error;
use crate::safetensors::Dtype;
use crate::simd::multiversion;

/// A borrowed 2-D matrix: f32 or f64 with arbitrary (even negative)
/// element strides, as numpy and torch hand them over, or packed bytes.
#[derive(Debug, Clone, Copy)]
pub enum MatrixView<'a> {
    /// Single precision.
    F32(MatRef<'a, f32>),
    /// Double precision.
    F64(MatRef<'a, f64>),
    /// Row-major little-endian bytes, as a safetensors file stores them.
    Packed(PackedMatrix<'a>),
}

impl MatrixView<'_> {
    /// `(rows, cols)` of the matrix as the user sees it.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Self::F32(m) => m.shape(),
            Self::F64(m) => m.shape(),
            Self::Packed(m) => (m.rows, m.cols),
        }
    }

    /// The machine epsilon of the element type (used by the numerical rank).
    pub fn epsilon(&self) -> f64 {
        match self {
            Self::F32(_) => f64::from(f32::EPSILON),
            Self::F64(_) => f64::EPSILON,
            Self::Packed(m) => m.epsilon,
        }
    }

    /// The element type's name, for messages.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Self::F32(_) => "float32",
            Self::F64(_) => "float64",
            Self::Packed(m) => m.dtype.numpy_name(),
        }
    }
}

/// A `rows x cols` row-major matrix stored as little-endian bytes (no
/// alignment needed: values are decoded one at a time).
#[derive(Debug, Clone, Copy)]
pub struct PackedMatrix<'a> {
    bytes: &'a [u8],
    /// One of the types `Dtype::epsilon` knows (checked by `new`).
    dtype: Dtype,
    epsilon: f64,
    rows: usize,
    cols: usize,
}

impl<'a> PackedMatrix<'a> {
    /// Checks that `dtype` is F64, F32, F16 or BF16 (else a `DType` error)
    /// and that `bytes` holds exactly `rows * cols` elements (else `Shape`).
    pub fn new(bytes: &'a [u8], dtype: Dtype, rows: usize, cols: usize) -> Result<Self, Error> {
        let Some(epsilon) = dtype.epsilon() else {
            return Err(Error::DType(format!(
                "expected a floating-point tensor (F64, F32, F16 or BF16), got {}",
                dtype.name()
            )));
        };
        let expected = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(dtype.size()));
        if expected != Some(bytes.len()) {
            return Err(Error::Shape(format!(
                "{} bytes cannot hold a {rows} x {cols} {} matrix",
                bytes.len(),
                dtype.numpy_name()
            )));
        }
        Ok(Self {
            bytes,
            dtype,
            epsilon,
            rows,
            cols,
        })
    }

    /// Decodes row `i`, elements `from..from + out.len()`, into `out`.
    #[inline(always)]
    fn decode(self, i: usize, from: usize, out: &mut [f64]) {
        let size = self.dtype.size();
        let start = (i * self.cols + from) * size;
        let bytes = &self.bytes[start..start + out.len() * size];
        match self.dtype {
            Dtype::F64 => out
                .iter_mut()
                .zip(bytes.chunks_exact(8))
                .for_each(|(o, b)| {
                    *o = f64::from_le_bytes(b.try_into().expect("8 bytes"));
                }),
            Dtype::F32 => out
                .iter_mut()
                .zip(bytes.chunks_exact(4))
                .for_each(|(o, b)| {
                    *o = f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes")));
                }),
            Dtype::F16 => out
                .iter_mut()
                .zip(bytes.chunks_exact(2))
                .for_each(|(o, b)| {
                    *o = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64();
                }),
            // bfloat16 is the top half of an f32.
            Dtype::BF16 => out
                .iter_mut()
                .zip(bytes.chunks_exact(2))
                .for_each(|(o, b)| {
                    *o = f64::from(f32::from_bits(
                        u32::from(u16::from_le_bytes([b[0], b[1]])) << 16,
                    ));
                }),
            other => unreachable!("PackedMatrix::new refuses {other:?}"),
        }
    }
}

/// A validated input, ready to be streamed: the tall orientation, the
/// power-of-two scale that brings its largest entry near 1 (exact in floating
/// point, and keeps `B^T B` far from overflow and underflow), and the column
/// means to subtract when centring.
#[derive(Debug)]
pub struct Prepared<'a> {
    view: MatrixView<'a>,
    transposed: bool,
    scale: f64,
    /// Per column of the user's matrix; empty when not centring.
    means: Vec<f64>,
}

impl<'a> Prepared<'a> {
    /// Checks shape and values (one pass over the data): an empty axis is a
    /// `Shape` error, NaN or infinity a `NonFinite` error.
    pub fn new(view: MatrixView<'a>, center: bool) -> Result<Self, Error> {
        let (rows, cols) = view.shape();
        if rows == 0 || cols == 0 {
            return Err(Error::Shape(format!(
                "expected a matrix with no empty axis, got shape ({rows}, {cols})"
            )));
        }
        let summary = match view {
            MatrixView::F32(m) => summarize(m, center),
            MatrixView::F64(m) => summarize(m, center),
            MatrixView::Packed(m) => summarize_packed(m, center),
        };
        if summary.has_non_finite {
            let (i, j) = match view {
                MatrixView::F32(m) => first_non_finite(m),
                MatrixView::F64(m) => first_non_finite(m),
                MatrixView::Packed(m) => first_non_finite_packed(m),
            };
            return Err(Error::NonFinite(format!(
                "the {} matrix of shape ({rows}, {cols}) contains NaN or infinity (first at [{i}, {j}])",
                view.dtype_name()
            )));
        }
        let mut prepared = Self {
            view,
            transposed: rows < cols,
            scale: exact_scale(summary.max_abs),
            means: Vec::new(),
        };
        if center {
            // The means of the scaled data: scaling a sum by a power of two is
            // exact. A sum that overflowed (entries near f64::MAX) is taken
            // again over the scaled data, where it cannot.
            let scale = prepared.scale;
            let mut sums: Vec<f64> = summary.column_sums.iter().map(|s| s * scale).collect();
            if sums.iter().any(|s| !s.is_finite()) {
                sums = prepared.scaled_column_sums();
            }
            prepared.means = sums.into_iter().map(|s| s / rows as f64).collect();
        }
        Ok(prepared)
    }

    /// The sums of the user's columns of `scale * A`, from a pass over the
    /// scaled data (only for sums that overflow in the input's units).
    fn scaled_column_sums(&self) -> Vec<f64> {
        let (rows, cols) = self.tall_shape();
        let mut sums = vec![0.0; self.view.shape().1];
        let block = rows.min(256);
        let mut buffer = Mat::<f64>::zeros(block, cols);
        let mut start = 0;
        while start < rows {
            let len = block.min(rows - start);
            let mut rows_block = buffer.as_mut().subrows_mut(0, len);
            self.write_rows(start, rows_block.rb_mut());
            for j in 0..cols {
                for i in 0..len {
                    // B = A^T: row i of B is the user's column start + i.
                    let column = if self.transposed { start + i } else { j };
                    sums[column] += rows_block[(i, j)];
                }
            }
            start += len;
        }
        sums
    }

    /// `(rows, cols)` of the tall orientation `B` (rows >= cols).
    pub fn tall_shape(&self) -> (usize, usize) {
        let (r, c) = self.view.shape();
        if self.transposed { (c, r) } else { (r, c) }
    }

    /// The factor every entry was multiplied by.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Whether `B` is stored row by row (then row blocks are best written
    /// row-major, so that the copy reads memory in order).
    pub fn prefers_row_major(&self) -> bool {
        let (row_stride, col_stride) = match self.view {
            MatrixView::F32(m) => (m.row_stride(), m.col_stride()),
            MatrixView::F64(m) => (m.row_stride(), m.col_stride()),
            MatrixView::Packed(m) => (m.cols as isize, 1),
        };
        let (row_stride, col_stride) = if self.transposed {
            (col_stride, row_stride)
        } else {
            (row_stride, col_stride)
        };
        col_stride.unsigned_abs() < row_stride.unsigned_abs()
    }

    /// The user's matrix.
    pub fn view(&self) -> MatrixView<'a> {
        self.view
    }

    /// Writes rows `start..start + dst.nrows()` of `scale * B` (centred if
    /// asked) into `dst`, converting to f64.
    pub fn write_rows(&self, start: usize, mut dst: MatMut<'_, f64>) {
        match self.view {
            MatrixView::F32(m) => self.write_rows_of(m, start, dst.rb_mut()),
            MatrixView::F64(m) => self.write_rows_of(m, start, dst.rb_mut()),
            MatrixView::Packed(m) => self.write_rows_packed(m, start, dst.rb_mut()),
        }
        self.subtract_means(start, dst);
    }

    /// Each line of A (a row, or the part of a row that is a column of a
    /// transposed block) is decoded straight into the block when the block
    /// stores that line contiguously (the Gram route's blocks), else into a
    /// scratch line that is then copied (the SVD's column-major matrix).
    fn write_rows_packed(&self, m: PackedMatrix<'_>, start: usize, mut dst: MatMut<'_, f64>) {
        let (rows, cols) = dst.shape();
        let scale = self.scale;
        let mut scratch = Vec::new();
        let mut write_line = |mut line: faer::ColMut<'_, f64>, a_row: usize, from: usize| match line
            .rb_mut()
            .try_as_col_major_mut()
        {
            Some(out) => {
                let out = out.as_slice_mut();
                m.decode(a_row, from, out);
                out.iter_mut().for_each(|v| *v *= scale);
            }
            None => {
                scratch.resize(line.nrows(), 0.0);
                m.decode(a_row, from, &mut scratch);
                for (k, v) in scratch.iter().enumerate() {
                    line[k] = v * scale;
                }
            }
        };
        if !self.transposed {
            // B = A: row i of the block is row start + i of A.
            for i in 0..rows {
                write_line(dst.rb_mut().row_mut(i).transpose_mut(), start + i, 0);
            }
        } else {
            // B = A^T: column j of the block is row j of A, elements start.. .
            for j in 0..cols {
                write_line(dst.rb_mut().col_mut(j), j, start);
            }
        }
    }

    /// Centring: subtract the user's column means (B's row means when
    /// B = A^T, else its column means), already scaled like the data.
    fn subtract_means(&self, start: usize, mut dst: MatMut<'_, f64>) {
        if self.means.is_empty() {
            return;
        }
        let (rows, cols) = dst.shape();
        for j in 0..cols {
            for i in 0..rows {
                let mean = if self.transposed {
                    self.means[start + i]
                } else {
                    self.means[j]
                };
                dst[(i, j)] -= mean;
            }
        }
    }

    fn write_rows_of<T: Copy + Into<f64>>(
        &self,
        m: MatRef<'_, T>,
        start: usize,
        mut dst: MatMut<'_, f64>,
    ) {
        let (rows, cols) = dst.shape();
        // B[i, j] is A[i, j] or A[j, i].
        let b = if self.transposed { m.transpose() } else { m };
        let b = b.subrows(start, rows);
        // Scaling by a power of two is exact.
        let scale = self.scale;
        if dst.row_stride() == 1 && b.col_stride() == 1 && b.row_stride() != 1 {
            // Row-major data into a column-major block: a transposing copy,
            // 64 columns at a time (tiles of 16, 64 and 256 measured alike),
            // slower than a sequential copy (4096² float32: 24 ms on an AMD
            // EPYC, ~20 ms for a sequential copy on a Xeon) but the Gram
            // product gains far more, see `gram_tridiagonal`.
            const TILE: usize = 64;
            for first in (0..cols).step_by(TILE) {
                let width = TILE.min(cols - first);
                let mut outs: Vec<&mut [f64]> = dst
                    .rb_mut()
                    .subcols_mut(first, width)
                    .col_iter_mut()
                    .map(|c| {
                        c.try_as_col_major_mut()
                            .expect("column-major block")
                            .as_slice_mut()
                    })
                    .collect();
                let line = |i: usize| {
                    &b.row(i)
                        .try_as_row_major()
                        .expect("row-major source")
                        .as_slice()[first..first + width]
                };
                // Eight rows at a time: each column then gets a cache line of
                // contiguous values instead of one value per row (1024²
                // float32: 0.75 against 4.2 ms; 4096²: 24 against 81 ms; four
                // rows: 1.3 and 27 ms; `examples/write_rows_probe.rs`).
                let mut i = 0;
                while i + 8 <= rows {
                    let eight: [&[T]; 8] = std::array::from_fn(|r| line(i + r));
                    for (k, out) in outs.iter_mut().enumerate() {
                        let out = &mut out[i..i + 8];
                        for (o, src) in out.iter_mut().zip(eight) {
                            *o = src[k].into() * scale;
                        }
                    }
                    i += 8;
                }
                for i in i..rows {
                    for (out, &v) in outs.iter_mut().zip(line(i)) {
                        out[i] = v.into() * scale;
                    }
                }
            }
        } else if dst.row_stride() == 1 {
            for j in 0..cols {
                let out = dst
                    .rb_mut()
                    .col_mut(j)
                    .try_as_col_major_mut()
                    .expect("column-major block")
                    .as_slice_mut();
                let src = b.col(j).try_as_col_major().map(|c| c.as_slice());
                convert_line(out, src, scale, |i| b[(i, j)]);
            }
        } else {
            for i in 0..rows {
                let out = dst
                    .rb_mut()
                    .row_mut(i)
                    .try_as_row_major_mut()
                    .expect("row-major block")
                    .as_slice_mut();
                let src = b.row(i).try_as_row_major().map(|r| r.as_slice());
                convert_line(out, src, scale, |j| b[(i, j)]);
            }
        }
    }

    /// The whole of `scale * B` as an owned f64 matrix (for the SVD).
    pub fn to_tall_f64(&self) -> Mat<f64> {
        let (rows, cols) = self.tall_shape();
        let mut out = Mat::<f64>::zeros(rows, cols);
        self.write_rows(0, out.as_mut());
        out
    }
}

/// The power of two `2^-e` that brings `max_abs` into (1/2, 1], so that
/// neither the squares of the Gram route nor the SVD's intermediate sums of
/// squares can overflow or underflow. Multiplying by a power of two only
/// changes exponents, so scaling (and unscaling) is exact.
///
/// The factor itself is kept a normal number (`-e` in -1022..=1023): data
/// whose largest magnitude is denormal (down to 2^-1074) comes up to at least
/// 2^-51, and data near f64::MAX comes down to at most 4; either is still far
/// from overflow and underflow. 1 for zero (or non-finite) data.
pub fn exact_scale(max_abs: f64) -> f64 {
    if !(max_abs > 0.0 && max_abs.is_finite()) {
        return 1.0;
    }
    let e = max_abs.log2().ceil() as i32;
    let exponent = (-e).clamp(f64::MIN_EXP - 1, f64::MAX_EXP - 1);
    // The bits of 2^exponent for a normal exponent: the biased exponent alone.
    f64::from_bits(((exponent + 1023) as u64) << 52)
}

/// What one pass over an input tells about it.
#[derive(Debug)]
pub struct Summary {
    has_non_finite: bool,
    max_abs: f64,
    column_sums: Vec<f64>,
}

/// One pass over the data in memory order (a contiguous line at a time
/// where possible): whether anything is NaN or infinite, the largest
/// magnitude, and (when centring) the column sums.
fn summarize<T: Element>(m: MatRef<'_, T>, center: bool) -> Summary {
    T::summarize(m, center)
}

/// The element types the engine reads, with a vectorized summary pass each.
pub trait Element: Copy + Into<f64> + Send + Sync + 'static {
    /// See [`summarize`].
    fn summarize(m: MatRef<'_, Self>, center: bool) -> Summary;
}

multiversion! {
    fn summarize_f32(m: MatRef<'_, f32>, center: bool) -> Summary = summarize_generic::<f32>
}
multiversion! {
    fn summarize_f64(m: MatRef<'_, f64>, center: bool) -> Summary = summarize_generic::<f64>
}

impl Element for f32 {
    fn summarize(m: MatRef<'_, f32>, center: bool) -> Summary {
        summarize_f32(m, center)
    }
}

impl Element for f64 {
    fn summarize(m: MatRef<'_, f64>, center: bool) -> Summary {
        summarize_f64(m, center)
    }
}

/// `out[k] = scale * line[k]` in f64, from a contiguous slice when the line
/// has one (a loop the compiler vectorizes), else element by element.
#[inline(always)]
fn convert_line<T: Copy + Into<f64>>(
    out: &mut [f64],
    contiguous: Option<&[T]>,
    scale: f64,
    at: impl Fn(usize) -> T,
) {
    match contiguous {
        Some(src) => out
            .iter_mut()
            .zip(src)
            .for_each(|(o, &v)| *o = v.into() * scale),
        None => out
            .iter_mut()
            .enumerate()
            .for_each(|(k, o)| *o = at(k).into() * scale),
    }
}

#[inline(always)]
fn summarize_generic<T: Copy + Into<f64>>(m: MatRef<'_, T>, center: bool) -> Summary {
    let (rows, cols) = m.shape();
    let mut summary = Summary {
        has_non_finite: false,
        max_abs: 0.0,
        column_sums: if center { vec![0.0; cols] } else { Vec::new() },
    };
    if m.col_stride().unsigned_abs() < m.row_stride().unsigned_abs() {
        let mut row_buffer = vec![0.0; cols];
        for i in 0..rows {
            let row = m.row(i);
            let src = row.try_as_row_major().map(|r| r.as_slice());
            convert_line(&mut row_buffer, src, 1.0, |j| row[j]);
            let line = LineSummary::of(&row_buffer);
            summary.merge(line);
            if center {
                summary
                    .column_sums
                    .iter_mut()
                    .zip(&row_buffer)
                    .for_each(|(s, v)| *s += v);
            }
        }
    } else {
        let mut col_buffer = vec![0.0; rows];
        for j in 0..cols {
            let col = m.col(j);
            let src = col.try_as_col_major().map(|c| c.as_slice());
            convert_line(&mut col_buffer, src, 1.0, |i| col[i]);
            let line = LineSummary::of(&col_buffer);
            summary.merge(line);
            if center {
                summary.column_sums[j] = line.sum;
            }
        }
    }
    summary
}

/// Largest magnitude, finiteness and sum of one line, over eight
/// independent lanes so that the compiler can vectorize the reductions.
#[derive(Clone, Copy)]
struct LineSummary {
    max_abs: f64,
    all_finite: bool,
    sum: f64,
}

impl LineSummary {
    #[inline(always)]
    fn of(values: &[f64]) -> Self {
        const LANES: usize = 8;
        let mut max = [0.0_f64; LANES];
        let mut sum = [0.0_f64; LANES];
        let mut finite = [true; LANES];
        let mut chunks = values.chunks_exact(LANES);
        for chunk in &mut chunks {
            for k in 0..LANES {
                let a = chunk[k].abs();
                // NaN fails every comparison: this one test catches NaN and infinities.
                finite[k] &= a <= f64::MAX;
                max[k] = if a > max[k] { a } else { max[k] };
                sum[k] += chunk[k];
            }
        }
        let mut out = Self {
            max_abs: 0.0,
            all_finite: true,
            sum: 0.0,
        };
        for &v in chunks.remainder() {
            out.all_finite &= v.abs() <= f64::MAX;
            out.max_abs = out.max_abs.max(v.abs());
            out.sum += v;
        }
        for k in 0..LANES {
            out.all_finite &= finite[k];
            out.max_abs = out.max_abs.max(max[k]);
            out.sum += sum[k];
        }
        out
    }
}

impl Summary {
    fn merge(&mut self, line: LineSummary) {
        self.has_non_finite |= !line.all_finite;
        self.max_abs = self.max_abs.max(line.max_abs);
    }
}

multiversion! {
    fn summarize_packed(m: PackedMatrix<'_>, center: bool) -> Summary = summarize_packed_generic
}

#[inline(always)]
fn summarize_packed_generic(m: PackedMatrix<'_>, center: bool) -> Summary {
    let mut summary = Summary {
        has_non_finite: false,
        max_abs: 0.0,
        column_sums: if center {
            vec![0.0; m.cols]
        } else {
            Vec::new()
        },
    };
    let mut row = vec![0.0; m.cols];
    for i in 0..m.rows {
        m.decode(i, 0, &mut row);
        summary.merge(LineSummary::of(&row));
        if center {
            summary
                .column_sums
                .iter_mut()
                .zip(&row)
                .for_each(|(s, v)| *s += v);
        }
    }
    summary
}

fn first_non_finite_packed(m: PackedMatrix<'_>) -> (usize, usize) {
    let mut row = vec![0.0; m.cols];
    for i in 0..m.rows {
        m.decode(i, 0, &mut row);
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return (i, j);
        }
    }
    (0, 0)
}

/// The first NaN or infinity in row-major order (only called on failure).
fn first_non_finite<T: Copy + Into<f64>>(m: MatRef<'_, T>) -> (usize, usize) {
    let (rows, cols) = m.shape();
    (0..rows)
        .flat_map(|i| (0..cols).map(move |j| (i, j)))
        .find(|&(i, j)| !Into::<f64>::into(m[(i, j)]).is_finite())
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_matrices_are_transposed_and_scaled_exactly() {
        let a = Mat::<f64>::from_fn(2, 5, |i, j| (i * 5 + j) as f64 - 3.0);
        let p = Prepared::new(MatrixView::F64(a.as_ref()), false).unwrap();
        assert_eq!(p.tall_shape(), (5, 2));
        assert_eq!(p.scale(), 0.125); // max |a| = 6 -> 2^-3
        let b = p.to_tall_f64();
        for i in 0..5 {
            for j in 0..2 {
                assert_eq!(b[(i, j)], a[(j, i)] * 0.125);
            }
        }
    }

    #[test]
    fn row_major_data_is_copied_exactly_into_column_major_blocks() {
        // A tall 160 x 150 matrix stored row by row (the transpose of a
        // column-major 150 x 160 one), written as column-major blocks: 150
        // columns are two whole copy tiles of 64 and a partial one, and the
        // blocks' lengths take the eight-row path, its remainder, or both.
        let value = |i: usize, j: usize| (i * 150 + j) as f32 - 12_000.0;
        let storage = Mat::<f32>::from_fn(150, 160, |j, i| value(i, j));
        let view = storage.transpose();
        assert_eq!(
            (view.nrows(), view.ncols(), view.col_stride()),
            (160, 150, 1)
        );
        let p = Prepared::new(MatrixView::F32(view), false).unwrap();
        assert_eq!(p.tall_shape(), (160, 150));
        for (start, len) in [(3, 7), (0, 160), (5, 19), (150, 8)] {
            let mut block = Mat::<f64>::zeros(len, 150);
            p.write_rows(start, block.as_mut());
            for i in 0..len {
                for j in 0..150 {
                    let want = f64::from(value(start + i, j)) * p.scale();
                    assert_eq!(block[(i, j)], want, "block at {start}, row {i}");
                }
            }
        }
    }

    #[test]
    fn centring_subtracts_the_users_column_means() {
        let a = Mat::<f32>::from_fn(3, 2, |i, j| (i + 10 * j) as f32);
        for transpose in [false, true] {
            let view = if transpose { a.transpose() } else { a.as_ref() };
            let p = Prepared::new(MatrixView::F32(view), true).unwrap();
            let b = p.to_tall_f64();
            // Every column of the user's matrix sums to zero after centring.
            let (r, c) = view.shape();
            for j in 0..c {
                let sum: f64 = (0..r)
                    .map(|i| if p.transposed { b[(j, i)] } else { b[(i, j)] })
                    .sum();
                assert!(
                    sum.abs() < 1e-12,
                    "transpose={transpose} column {j} sums to {sum}"
                );
            }
        }
    }

    #[test]
    fn empty_axes_and_non_finite_values_are_refused() {
        let empty = Mat::<f64>::zeros(0, 3);
        assert!(matches!(
            Prepared::new(MatrixView::F64(empty.as_ref()), false),
            Err(Error::Shape(_))
        ));
        let mut a = Mat::<f32>::zeros(3, 3);
        a[(2, 1)] = f32::NAN;
        a[(1, 2)] = f32::INFINITY;
        match Prepared::new(MatrixView::F32(a.as_ref()), false) {
            Err(Error::NonFinite(message)) => assert!(message.contains("[1, 2]"), "{message}"),
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }
}
