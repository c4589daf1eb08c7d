//! The two large products of every stage-1 step, on the symmetric trailing
//! matrix `A` whose lower triangle is stored: `X = A V` and the rank-2b
//! update `A -= L R^T`. Each is cut into pieces of equal work that the
//! threads share, every piece a few single-threaded faer products: with
//! faer parallelizing each of the ~100 small products per panel instead,
//! 2 threads ran slower than 1 on a 2-core Xeon (4096²: `A V` 1.17 s on 2
//! threads, 0.93 s on 1).

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::prelude::ReborrowMut;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Columns per block of `A` in `A V`: a block below the diagonal
/// (m x 64 x 8 bytes = 2 MB at m = 4096) stays in L2/L3 between its two
/// products.
const BLOCK: usize = 64;

/// Pieces per thread: more than one, so that a thread slowed by other work
/// on the machine does not hold the others up.
const PIECES_PER_THREAD: usize = 4;

/// `A V` for the symmetric `A` whose lower triangle is stored, in column
/// blocks: each block below the diagonal is used twice (`X_below += B V_blk`,
/// `X_blk += B^T V_below`) while it is still in cache, so `A` streams from
/// memory once. Each thread takes runs of blocks of equal work into its own
/// `X`; the partial results are summed (m x b each, cheap).
pub(super) fn symmetric_times(a: MatRef<'_, f64>, v: MatRef<'_, f64>, par: Par) -> Mat<f64> {
    let (m, k) = (a.nrows(), v.ncols());
    let threads = par.degree();
    if threads <= 1 {
        let mut x = Mat::zeros(m, k);
        column_blocks(a, v, 0, m, x.as_mut());
        return x;
    }
    let bounds = equal_work_bounds(m, 0, PIECES_PER_THREAD * threads, BLOCK);
    bounds
        .par_windows(2)
        .map(|piece| {
            let mut x = Mat::zeros(m, k);
            column_blocks(a, v, piece[0], piece[1], x.as_mut());
            x
        })
        .reduce_with(|x, y| x + y)
        .unwrap_or_else(|| Mat::zeros(m, k))
}

/// `x += (A V)` restricted to the columns `[c0, c1)` of `A`'s lower triangle
/// and their mirror images above the diagonal.
fn column_blocks(
    a: MatRef<'_, f64>,
    v: MatRef<'_, f64>,
    c0: usize,
    c1: usize,
    mut x: MatMut<'_, f64>,
) {
    let m = a.nrows();
    let mut j0 = c0;
    while j0 < c1 {
        let nb = BLOCK.min(c1 - j0);
        let j1 = j0 + nb;
        let diag = a.submatrix(j0, j0, nb, nb);
        let (x_top, x_rest) = x.rb_mut().split_at_row_mut(j1);
        let mut x_blk = x_top.subrows_mut(j0, nb);
        for (structure, block) in [
            (BlockStructure::TriangularLower, diag),
            (BlockStructure::StrictTriangularUpper, diag.transpose()),
        ] {
            triangular::matmul(
                x_blk.rb_mut(),
                BlockStructure::Rectangular,
                Accum::Add,
                block,
                structure,
                v.subrows(j0, nb),
                BlockStructure::Rectangular,
                1.0,
                Par::Seq,
            );
        }
        if j1 < m {
            let below = a.submatrix(j1, j0, m - j1, nb);
            matmul(x_rest, Accum::Add, below, v.subrows(j0, nb), 1.0, Par::Seq);
            let v_below = v.subrows(j1, m - j1);
            matmul(x_blk, Accum::Add, below.transpose(), v_below, 1.0, Par::Seq);
        }
        j0 = j1;
    }
}

/// `A -= L R^T` on the lower triangle of the `m x m` matrix whose columns
/// `[from, m)` are `a`, in column chunks of equal work shared by the threads.
pub(super) fn lower_rank_update(
    a: MatMut<'_, f64>,
    l: MatRef<'_, f64>,
    r: MatRef<'_, f64>,
    from: usize,
    par: Par,
) {
    let m = a.nrows();
    let threads = par.degree();
    let count = if threads > 1 {
        PIECES_PER_THREAD * threads
    } else {
        1
    };
    let bounds = equal_work_bounds(m, from, count, 8);
    let mut chunks = Vec::with_capacity(bounds.len());
    let mut rest = a;
    for pair in bounds.windows(2).rev() {
        let (left, right) = rest.split_at_col_mut(pair[0] - from);
        chunks.push((pair[0], right));
        rest = left;
    }
    let update = |(j0, chunk)| update_chunk(l, r, j0, chunk);
    if threads > 1 {
        chunks.into_par_iter().for_each(update);
    } else {
        chunks.into_iter().for_each(update);
    }
}

/// `A[j0.., chunk] -= L[j0..] R[chunk]^T` on the lower triangle, for the
/// column chunk of `A` that starts at column `j0`.
pub(super) fn update_chunk(
    l: MatRef<'_, f64>,
    r: MatRef<'_, f64>,
    j0: usize,
    chunk: MatMut<'_, f64>,
) {
    let width = chunk.ncols();
    if width == 0 {
        return;
    }
    let (_, lower) = chunk.split_at_row_mut(j0);
    let (diag, below) = lower.split_at_row_mut(width);
    let r_chunk = r.subrows(j0, width).transpose();
    triangular::matmul(
        diag,
        BlockStructure::TriangularLower,
        Accum::Add,
        l.subrows(j0, width),
        BlockStructure::Rectangular,
        r_chunk,
        BlockStructure::Rectangular,
        -1.0,
        Par::Seq,
    );
    let rows = below.nrows();
    matmul(
        below,
        Accum::Add,
        l.subrows(j0 + width, rows),
        r_chunk,
        -1.0,
        Par::Seq,
    );
}

/// Column bounds `from = c_0 < c_1 < ... = m` (multiples of `align` inside)
/// that cut the lower triangle of columns `[from, m)` into `count` pieces of
/// about equal area: column `j` holds `m - j` entries, so piece `t` starts
/// where `(m - c)^2 = (m - from)^2 (1 - t / count)`.
fn equal_work_bounds(m: usize, from: usize, count: usize, align: usize) -> Vec<usize> {
    let span = (m - from) as f64;
    let mut bounds: Vec<usize> = (0..count)
        .map(|t| {
            let c = m as f64 - span * (1.0 - t as f64 / count as f64).sqrt();
            (c as usize).next_multiple_of(align).clamp(from, m)
        })
        .collect();
    bounds[0] = from;
    bounds.push(m);
    bounds.dedup();
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_the_columns_in_pieces_of_about_equal_area() {
        let (m, from) = (1000, 100);
        let bounds = equal_work_bounds(m, from, 8, 8);
        assert_eq!((bounds[0], *bounds.last().unwrap()), (from, m));
        let area = |a: usize, b: usize| ((m - a).pow(2) - (m - b).pow(2)) as f64 / 2.0;
        let total = area(from, m);
        for pair in bounds.windows(2) {
            let share = area(pair[0], pair[1]) / total;
            assert!((share - 0.125).abs() < 0.02, "{bounds:?}");
        }
    }

    #[test]
    fn symmetric_times_matches_the_dense_product_on_any_threads() {
        let m = 300;
        let full = Mat::<f64>::from_fn(m, m, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let sym = &full + full.transpose();
        let v = Mat::<f64>::from_fn(m, 5, |i, j| ((i + 2 * j) % 5) as f64 - 2.0);
        let want = &sym * &v;
        for par in [Par::Seq, Par::rayon(2), Par::rayon(3)] {
            let got = symmetric_times(sym.as_ref(), v.as_ref(), par);
            assert!((&got - &want).norm_max() < 1e-9);
        }
    }
}
