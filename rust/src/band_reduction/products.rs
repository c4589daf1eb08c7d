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

/// Columns (rows) per block of `A` in `A V`: a block below the diagonal
/// (m x 64 x 8 bytes = 2 MB at m = 4096) stays in L2/L3 between its two
/// products.
const BLOCK: usize = 64;

/// Pieces per thread: more than one, so that a thread slowed by other work
/// on the machine does not hold the others up.
const PIECES_PER_THREAD: usize = 4;

/// `A V` for the symmetric `A` whose lower triangle is stored.
///
/// On one thread, in column blocks (see `column_blocks`): `A` streams from
/// memory once. On several, by row blocks of the result (see `row_block`):
/// every block is the same work and owns its rows of `X`, so there is no
/// reduction and no shared write, at the price of reading `A` twice. At
/// 4096² on 2 threads (2-core Xeon, quiet) stage 1 took 1.50 s this way
/// against 1.64 s with per-thread column runs summed at the end.
pub(super) fn symmetric_times(a: MatRef<'_, f64>, v: MatRef<'_, f64>, par: Par) -> Mat<f64> {
    let (m, k) = (a.nrows(), v.ncols());
    let mut x = Mat::zeros(m, k);
    if par.degree() <= 1 {
        column_blocks(a, v, x.as_mut());
    } else {
        x.as_mut()
            .par_row_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(index, x_blk)| row_block(a, v, index * BLOCK, x_blk));
    }
    x
}

/// Rows `[i0, i0 + nb)` of `A V`:
/// `X[I] = A[I, <I] V[<I] + A[I, I] V[I] + A[>I, I]^T V[>I]`, as a few
/// large-`k` products whose result stays in L1/L2.
fn row_block(a: MatRef<'_, f64>, v: MatRef<'_, f64>, i0: usize, mut x: MatMut<'_, f64>) {
    let m = a.nrows();
    let nb = x.nrows();
    let i1 = i0 + nb;
    if i0 > 0 {
        let left = a.submatrix(i0, 0, nb, i0);
        matmul(
            x.rb_mut(),
            Accum::Add,
            left,
            v.subrows(0, i0),
            1.0,
            Par::Seq,
        );
    }
    diagonal_block(a, v, i0, nb, x.rb_mut());
    if i1 < m {
        let below = a.submatrix(i1, i0, m - i1, nb);
        let v_below = v.subrows(i1, m - i1);
        matmul(x, Accum::Add, below.transpose(), v_below, 1.0, Par::Seq);
    }
}

/// `x += A[I, I] V[I]` for the symmetric diagonal block `I = [j0, j0 + nb)`.
fn diagonal_block(
    a: MatRef<'_, f64>,
    v: MatRef<'_, f64>,
    j0: usize,
    nb: usize,
    mut x: MatMut<'_, f64>,
) {
    let diag = a.submatrix(j0, j0, nb, nb);
    for (structure, block) in [
        (BlockStructure::TriangularLower, diag),
        (BlockStructure::StrictTriangularUpper, diag.transpose()),
    ] {
        triangular::matmul(
            x.rb_mut(),
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
}

/// `x += A V` in column blocks: each block below the diagonal is used twice
/// (`X_below += B V_blk`, `X_blk += B^T V_below`) while it is still in cache.
fn column_blocks(a: MatRef<'_, f64>, v: MatRef<'_, f64>, mut x: MatMut<'_, f64>) {
    let m = a.nrows();
    let mut j0 = 0;
    while j0 < m {
        let nb = BLOCK.min(m - j0);
        let j1 = j0 + nb;
        let (x_top, x_rest) = x.rb_mut().split_at_row_mut(j1);
        let mut x_blk = x_top.subrows_mut(j0, nb);
        diagonal_block(a, v, j0, nb, x_blk.rb_mut());
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
