//! `A V` and `Aᵀ W` for a large row-major float32 matrix `A` and a narrow
//! block of at most [`WIDEST`] columns: the two products of each Lanczos
//! step of the approximate entropy (`grokspec/slq.py`), which multiplies the
//! matrix by its probes (24 columns at 8192²) about ten times per estimate.
//!
//! OpenBLAS's float32 GEMM (numpy's BLAS) takes the "dot" form `A V` of a
//! narrow product at about 60% of the rate it reaches on `Wᵀ A` (8192², 24
//! columns, 2 threads on an AVX2 AMD EPYC: 36 against 28 ms; a GEMM packs
//! its operands into buffers first). Here each group of three rows of `A` is
//! streamed once, straight from the caller's memory, against the whole of `V` (which stays in
//! cache): nine AVX2 accumulators (3 rows × 24 columns) and one broadcast
//! per row and column of `A` keep both FMA units busy without spilling a
//! register (a 4 × 24 tile needs all sixteen and spilled one into a
//! store-to-load chain that halved the rate). Measured with `cargo run
//! --release --example narrow_product_timing -- 8192 24 2`: `A V` 23–25 ms,
//! `Aᵀ W` ([`narrow_transposed_product`]) 28 ms.
//!
//! Sums are blocked: over at most [`CHUNK`] columns (or [`PANEL_ROWS`] rows)
//! from zero, then added to the result, so that rounding grows with the
//! block plus the number of blocks rather than with the whole length (BLAS
//! blocks its sums the same way). Without AVX2 + FMA (or with
//! `GROKSPEC_ISA=portable`) plain loops give the same blocked sums; the
//! caller then prefers its BLAS.

use rayon::prelude::*;

use crate::batch;
use crate::error::Error;

/// Calls the kernel `module::function::<R, V>` for `rows` (1 to 3) rows of
/// `A` and a block `width` (8, 16 or 24) columns wide.
#[cfg(target_arch = "x86_64")]
macro_rules! by_shape {
    ($module:ident :: $function:ident, $rows:expr, $width:expr, ($($arg:expr),*)) => {
        match ($rows, $width) {
            (3, 24) => $module::$function::<3, 3>($($arg),*),
            (3, 16) => $module::$function::<3, 2>($($arg),*),
            (3, _) => $module::$function::<3, 1>($($arg),*),
            (2, 24) => $module::$function::<2, 3>($($arg),*),
            (2, 16) => $module::$function::<2, 2>($($arg),*),
            (2, _) => $module::$function::<2, 1>($($arg),*),
            (_, 24) => $module::$function::<1, 3>($($arg),*),
            (_, 16) => $module::$function::<1, 2>($($arg),*),
            _ => $module::$function::<1, 1>($($arg),*),
        }
    };
}

/// The most columns `V` may have.
pub const WIDEST: usize = 24;

/// Terms per partial sum (see the module's comment).
const CHUNK: usize = 512;

/// Rows of `A` per parallel task (a multiple of the kernel's three).
const TASK_ROWS: usize = 48;

/// Whether the vector kernel runs here (else the plain loop does, and the
/// caller's BLAS is the faster choice).
pub fn vectorized() -> bool {
    crate::simd::avx2_fma()
}

/// `A V` as a row-major `rows × b` vector: `a` holds `rows` rows of `cols`
/// values, row `i` starting at `i * stride` (`stride ≥ cols`); `v` is the
/// row-major `cols × b` block, `1 ≤ b ≤ WIDEST`. Runs on `threads` threads.
pub fn narrow_product(
    a: &[f32],
    rows: usize,
    cols: usize,
    stride: usize,
    v: &[f32],
    b: usize,
    threads: usize,
) -> Result<Vec<f32>, Error> {
    check(a.len(), rows, cols, stride, (v.len(), cols), b)?;
    if rows == 0 {
        return Ok(Vec::new());
    }
    let (padded, width) = padded(v, b);
    let mut out = vec![0.0f32; rows * width];
    let task = |(t, block): (usize, &mut [f32])| {
        let first = t * TASK_ROWS;
        rows_times(
            a,
            first,
            block.len() / width,
            cols,
            stride,
            &padded,
            width,
            block,
        );
    };
    if threads <= 1 || rows <= TASK_ROWS {
        out.chunks_mut(TASK_ROWS * width).enumerate().for_each(task);
    } else {
        let pool = batch::pool(threads)?;
        pool.install(|| {
            out.par_chunks_mut(TASK_ROWS * width)
                .enumerate()
                .for_each(task)
        });
    }
    Ok(unpadded(out, width, b))
}

/// `Aᵀ Y` as a row-major `cols × b` vector, for `a` as in [`narrow_product`]
/// and `y` the row-major `rows × b` block (`1 ≤ b ≤ WIDEST`): the other half
/// of a Gram product `Aᵀ(A V)`. Each thread owns a range of `A`'s columns
/// (of the result's rows) and sweeps all of `A`'s rows in panels; the
/// result's chunk of [`OUT_CHUNK`] rows stays in L1 while three rows of `A`
/// at a time are added into it, each times its row of `Y` held in registers.
/// On the AVX2 AMD EPYC at 8192², 24 columns, 2 threads: ~28 ms, as fast as
/// OpenBLAS's `Yᵀ A`; it is here so that a Lanczos step needs no BLAS call,
/// whose idle threads spin after each call and took the cores from this
/// crate's threads (`A V` 24 → 35–48 ms right after an OpenBLAS product).
pub fn narrow_transposed_product(
    a: &[f32],
    rows: usize,
    cols: usize,
    stride: usize,
    y: &[f32],
    b: usize,
    threads: usize,
) -> Result<Vec<f32>, Error> {
    check(a.len(), rows, cols, stride, (y.len(), rows), b)?;
    let (padded, width) = padded(y, b);
    let mut out = vec![0.0f32; cols * width];
    let threads = threads.max(1);
    let share = cols.div_ceil(threads).div_ceil(OUT_CHUNK) * OUT_CHUNK;
    let task = |(t, part): (usize, &mut [f32])| {
        columns_times(
            a,
            rows,
            t * share,
            part.len() / width,
            stride,
            &padded,
            width,
            part,
        );
    };
    if threads == 1 || cols <= OUT_CHUNK {
        out.chunks_mut(share * width).enumerate().for_each(task);
    } else {
        let pool = batch::pool(threads)?;
        pool.install(|| out.par_chunks_mut(share * width).enumerate().for_each(task));
    }
    Ok(unpadded(out, width, b))
}

/// Rows of the result per chunk kept in L1 (256 × 24 floats: 24 KB).
const OUT_CHUNK: usize = 256;

/// Rows of `A` per panel: each panel's sums start from zero and are then
/// added to the result (blocked summation, as in [`narrow_product`]).
const PANEL_ROWS: usize = 192;

/// `count` rows of `Aᵀ Y` from row `first` (columns `first..` of `A`), into `out`.
fn columns_times(
    a: &[f32],
    rows: usize,
    first: usize,
    count: usize,
    stride: usize,
    y: &[f32],
    width: usize,
    out: &mut [f32],
) {
    let mut partial = vec![0.0f32; OUT_CHUNK * width];
    let mut panel = 0;
    while panel < rows {
        let panel_end = (panel + PANEL_ROWS).min(rows);
        for (c, target) in out.chunks_mut(OUT_CHUNK * width).enumerate() {
            let start = first + c * OUT_CHUNK;
            let end = start + target.len() / width;
            debug_assert!(end <= first + count);
            let partial = &mut partial[..target.len()];
            partial.fill(0.0);
            let mut row = panel;
            while row < panel_end {
                let group = (panel_end - row).min(3);
                add_rows(
                    a,
                    row,
                    group,
                    stride,
                    start,
                    end,
                    &y[row * width..],
                    width,
                    partial,
                );
                row += group;
            }
            for (o, p) in target.iter_mut().zip(partial.iter()) {
                *o += p;
            }
        }
        panel = panel_end;
    }
}

/// `partial[k - start, ..width] += Σ_{r < rows} A[row + r, k] Y[row + r, ..width]`
/// for `k` in `start..end`; `y` starts at row `row` of `Y`.
fn add_rows(
    a: &[f32],
    row: usize,
    rows: usize,
    stride: usize,
    start: usize,
    end: usize,
    y: &[f32],
    width: usize,
    partial: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if vectorized() {
        let lines = three_lines(a, row, rows, stride, end);
        // SAFETY: AVX2 and FMA were detected; every line holds `end` values,
        // `y` holds `rows` rows of `width` and `partial` `end - start` rows.
        unsafe { by_shape!(avx2::add_rows, rows, width, (lines, start, end, y, partial)) }
        return;
    }
    for r in 0..rows {
        let line = &a[(row + r) * stride..][..end];
        let coefficients = &y[r * width..(r + 1) * width];
        for k in start..end {
            let x = line[k];
            let sums = &mut partial[(k - start) * width..(k - start + 1) * width];
            for (s, c) in sums.iter_mut().zip(coefficients) {
                *s = x.mul_add(*c, *s);
            }
        }
    }
}

/// A row-major block of `b` columns padded with zeros to whole vectors of
/// eight (so the kernels need no masks), and that width.
fn padded(block: &[f32], b: usize) -> (Vec<f32>, usize) {
    let width = b.div_ceil(8) * 8;
    let mut out = vec![0.0f32; block.len() / b * width];
    for (to, from) in out.chunks_exact_mut(width).zip(block.chunks_exact(b)) {
        to[..b].copy_from_slice(from);
    }
    (out, width)
}

/// The first `b` columns of a row-major result `width` wide.
fn unpadded(out: Vec<f32>, width: usize, b: usize) -> Vec<f32> {
    if width == b {
        return out;
    }
    out.chunks_exact(width)
        .flat_map(|row| &row[..b])
        .copied()
        .collect()
}

/// The first `end` values of rows `row..row + rows` of `A` (`rows` ≤ 3; the
/// last one repeated to fill three, which the kernels for fewer rows ignore).
#[cfg(target_arch = "x86_64")]
fn three_lines(a: &[f32], row: usize, rows: usize, stride: usize, end: usize) -> [&[f32]; 3] {
    [0, 1, 2].map(|r| &a[(row + r.min(rows - 1)) * stride..][..end])
}

/// Checks the shapes; `block` is the narrow block's (length, expected rows).
fn check(
    len: usize,
    rows: usize,
    cols: usize,
    stride: usize,
    block: (usize, usize),
    b: usize,
) -> Result<(), Error> {
    if b == 0 || b > WIDEST {
        return Err(Error::Shape(format!(
            "the narrow block must have 1 to {WIDEST} columns, got {b}"
        )));
    }
    if cols == 0 || stride < cols {
        return Err(Error::Shape(format!(
            "a matrix of {cols} columns needs a row stride of at least {cols} and one column, got stride {stride}"
        )));
    }
    if rows > 0 && len < (rows - 1) * stride + cols {
        return Err(Error::Shape(format!(
            "{len} values cannot hold {rows} rows of {cols} at stride {stride}"
        )));
    }
    if block.0 != block.1 * b {
        return Err(Error::Shape(format!(
            "the block has {} values, expected {} rows of {b}",
            block.0, block.1
        )));
    }
    Ok(())
}

/// `count` rows of the product from row `first`, into `out` (row-major, `width` wide).
fn rows_times(
    a: &[f32],
    first: usize,
    count: usize,
    cols: usize,
    stride: usize,
    v: &[f32],
    width: usize,
    out: &mut [f32],
) {
    for (g, group) in out.chunks_mut(3 * width).enumerate() {
        let row = first + 3 * g;
        let rows = group.len() / width;
        debug_assert!(3 * g + rows <= count);
        let mut start = 0;
        while start < cols {
            let end = (start + CHUNK).min(cols);
            let mut partial = [[0.0f32; WIDEST]; 3];
            chunk(a, row, rows, stride, start, end, v, width, &mut partial);
            for (r, line) in group.chunks_exact_mut(width).enumerate() {
                for (o, p) in line.iter_mut().zip(&partial[r][..width]) {
                    *o += p;
                }
            }
            start = end;
        }
    }
}

/// `partial[r][..width] = Σ_{k in start..end} A[row + r, k] V[k, ..width]` for `rows ≤ 3` rows.
fn chunk(
    a: &[f32],
    row: usize,
    rows: usize,
    stride: usize,
    start: usize,
    end: usize,
    v: &[f32],
    width: usize,
    partial: &mut [[f32; WIDEST]; 3],
) {
    #[cfg(target_arch = "x86_64")]
    if vectorized() {
        let lines = three_lines(a, row, rows, stride, end);
        // SAFETY: `vectorized` means AVX2 and FMA were detected; every row
        // slice holds `end` values and `v` holds `end` rows of `width`.
        unsafe { by_shape!(avx2::chunk, rows, width, (lines, start, end, v, partial)) }
        return;
    }
    for r in 0..rows {
        let line = &a[(row + r) * stride..][..end];
        let sums = &mut partial[r][..width];
        for k in start..end {
            let x = line[k];
            for (s, y) in sums.iter_mut().zip(&v[k * width..(k + 1) * width]) {
                *s = x.mul_add(*y, *s);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::WIDEST;

    /// The vector kernel of [`super::chunk`]: `R` rows × `V` vectors of eight
    /// columns of accumulators (at most 3 × 3: nine, with three for `V`'s row
    /// and one broadcast, thirteen of the sixteen registers).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn chunk<const R: usize, const V: usize>(
        lines: [&[f32]; 3],
        start: usize,
        end: usize,
        v: &[f32],
        partial: &mut [[f32; WIDEST]; 3],
    ) {
        let width = 8 * V;
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        let vp = v.as_ptr();
        for k in start..end {
            // SAFETY (all loads): k < end, each line holds `end` values and
            // `v` holds `end` rows of `width` (the caller's contract).
            let mut row = [_mm256_setzero_ps(); V];
            for (j, x) in row.iter_mut().enumerate() {
                *x = unsafe { _mm256_loadu_ps(vp.add(k * width + 8 * j)) };
            }
            for r in 0..R {
                let x = unsafe { _mm256_broadcast_ss(lines[r].get_unchecked(k)) };
                for j in 0..V {
                    acc[r][j] = _mm256_fmadd_ps(x, row[j], acc[r][j]);
                }
            }
        }
        for r in 0..R {
            for j in 0..V {
                // SAFETY: 8 * j + 8 ≤ width ≤ WIDEST.
                unsafe { _mm256_storeu_ps(partial[r].as_mut_ptr().add(8 * j), acc[r][j]) };
            }
        }
    }

    /// The vector kernel of [`super::add_rows`]: `R` rows of `Y` (`V` vectors
    /// of eight columns each) held in registers, the result's row loaded,
    /// updated and stored for each `k`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn add_rows<const R: usize, const V: usize>(
        lines: [&[f32]; 3],
        start: usize,
        end: usize,
        y: &[f32],
        partial: &mut [f32],
    ) {
        let width = 8 * V;
        let mut coefficients = [[_mm256_setzero_ps(); V]; R];
        for r in 0..R {
            for j in 0..V {
                // SAFETY: `y` holds R rows of `width` (the caller's contract).
                coefficients[r][j] = unsafe { _mm256_loadu_ps(y.as_ptr().add(r * width + 8 * j)) };
            }
        }
        let out = partial.as_mut_ptr();
        for k in start..end {
            // SAFETY: row k - start of `partial` exists (it holds end - start
            // rows of `width`); each line holds `end` values.
            let row = unsafe { out.add((k - start) * width) };
            let mut sums = [_mm256_setzero_ps(); V];
            for (j, s) in sums.iter_mut().enumerate() {
                *s = unsafe { _mm256_loadu_ps(row.add(8 * j)) };
            }
            for r in 0..R {
                let x = unsafe { _mm256_broadcast_ss(lines[r].get_unchecked(k)) };
                for j in 0..V {
                    sums[j] = _mm256_fmadd_ps(x, coefficients[r][j], sums[j]);
                }
            }
            for (j, s) in sums.iter().enumerate() {
                unsafe { _mm256_storeu_ps(row.add(8 * j), *s) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Every row count modulo three, widths that pad and that do not, one
    /// chunk and several, a stride wider than the row; against float64 sums
    /// with the bound of blocked float32 summation.
    #[test]
    fn matches_float64_sums() {
        for &(rows, cols, stride) in &[
            (1, 1, 1),
            (2, 7, 9),
            (3, 513, 513),
            (52, 1100, 1103),
            (97, 40, 40),
        ] {
            let a = values((rows - 1) * stride + cols, 7);
            for b in [1, 5, 8, 12, 16, 17, 24] {
                let v = values(cols * b, 11 + b as u64);
                for threads in [1, 2] {
                    let got = narrow_product(&a, rows, cols, stride, &v, b, threads).unwrap();
                    let term = |i: usize, j: usize, k: usize| {
                        a[i * stride + k] as f64 * v[k * b + j] as f64
                    };
                    let case = format!("{rows}x{cols} b={b}");
                    assert_sums(&got, (rows, b), cols, CHUNK, term, &case);
                }
            }
        }
    }

    /// `Aᵀ Y` likewise: row counts around the kernel's three and the panel,
    /// column counts around the result's chunk and the threads' shares.
    #[test]
    fn transposed_matches_float64_sums() {
        for &(rows, cols, stride) in &[
            (1, 1, 1),
            (2, 9, 11),
            (4, 300, 300),
            (200, 257, 260),
            (385, 40, 40),
        ] {
            let a = values((rows - 1) * stride + cols, 13);
            for b in [1, 7, 8, 16, 23, 24] {
                let y = values(rows * b, 17 + b as u64);
                for threads in [1, 2, 3] {
                    let got =
                        narrow_transposed_product(&a, rows, cols, stride, &y, b, threads).unwrap();
                    let term = |k: usize, j: usize, i: usize| {
                        a[i * stride + k] as f64 * y[i * b + j] as f64
                    };
                    let case = format!("transposed {rows}x{cols} b={b}");
                    assert_sums(&got, (cols, b), rows, PANEL_ROWS, term, &case);
                }
            }
        }
    }

    /// Checks `got` (row-major, `shape.0 × shape.1`) against float64 sums of
    /// `length` terms `term(row, column, t)`, with the bound of float32 sums
    /// blocked by `block` terms.
    fn assert_sums(
        got: &[f32],
        shape: (usize, usize),
        length: usize,
        block: usize,
        term: impl Fn(usize, usize, usize) -> f64,
        case: &str,
    ) {
        let (rows, b) = shape;
        assert_eq!(got.len(), rows * b, "{case}");
        for r in 0..rows {
            for j in 0..b {
                let (mut exact, mut size) = (0.0f64, 0.0f64);
                for t in 0..length {
                    let x = term(r, j, t);
                    exact += x;
                    size += x.abs();
                }
                let bound = (block + length / block + 2) as f64 * f32::EPSILON as f64 * size;
                let error = (got[r * b + j] as f64 - exact).abs();
                assert!(
                    error <= bound,
                    "{case}: ({r},{j}) off by {error:e} > {bound:e}"
                );
            }
        }
    }

    #[test]
    fn one_and_two_threads_agree_bit_for_bit() {
        let (rows, cols) = (301, 700);
        let a = values(rows * cols, 3);
        let v = values(cols * 24, 5);
        let one = narrow_product(&a, rows, cols, cols, &v, 24, 1).unwrap();
        let two = narrow_product(&a, rows, cols, cols, &v, 24, 2).unwrap();
        assert_eq!(one, two);
        let y = values(rows * 24, 9);
        let one = narrow_transposed_product(&a, rows, cols, cols, &y, 24, 1).unwrap();
        let two = narrow_transposed_product(&a, rows, cols, cols, &y, 24, 2).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn refuses_inconsistent_shapes() {
        let a = values(12, 1);
        let v = values(4 * 25, 1);
        assert!(matches!(
            narrow_product(&a, 3, 4, 4, &v, 25, 1),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            narrow_product(&a, 3, 4, 4, &v[..6], 2, 1),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            narrow_product(&a, 4, 4, 4, &v[..8], 2, 1),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            narrow_product(&a, 3, 4, 3, &v[..8], 2, 1),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            narrow_product(&a, 3, 4, 4, &v[..0], 0, 1),
            Err(Error::Shape(_))
        ));
        assert_eq!(
            narrow_product(&a, 0, 4, 4, &v[..8], 2, 1).unwrap(),
            Vec::<f32>::new()
        );
        assert!(matches!(
            narrow_transposed_product(&a, 3, 4, 4, &v[..8], 2, 1),
            Err(Error::Shape(_))
        ));
        assert_eq!(
            narrow_transposed_product(&a, 3, 4, 4, &v[..6], 2, 1)
                .unwrap()
                .len(),
            8
        );
    }
}
