//! Times the tridiagonalizations of small and mid-sized symmetric matrices:
//! faer's blocked one-stage `tridiag_in_place` and grokspec's two-stage
//! reduction, each on one thread and on two, against grokspec's unblocked
//! reduction (one thread and two).
//! `cargo run --release --example small_tridiagonal_timing -- [N ...]`.
//! A tuning aid for `dense_tridiagonal::faster_up_to`.

use std::time::Instant;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::tridiag;
use faer::{Mat, Par};
use grokspec_core::dense_tridiagonal::tridiagonalize_dense;
use grokspec_core::symeig::{SymEigParams, isa, tridiagonalize};

fn faer_one_stage(a: &Mat<f64>, par: Par) -> f64 {
    let n = a.nrows();
    let mut a = a.clone();
    let block = faer::linalg::qr::no_pivoting::factor::recommended_block_size::<f64>(n, n);
    let mut householder = Mat::<f64>::zeros(block, n - 1);
    let scratch = tridiag::tridiag_in_place_scratch::<f64>(n, par, Default::default());
    let mut buffer = MemBuffer::new(scratch);
    tridiag::tridiag_in_place(
        a.as_mut(),
        householder.as_mut(),
        par,
        MemStack::new(&mut buffer),
        Default::default(),
    );
    a[(n - 1, n - 2)]
}

/// grokspec's two-stage reduction (band, then bulge chasing) on `par`.
fn two_stage(a: &Mat<f64>, par: Par) -> f64 {
    let params = SymEigParams {
        two_stage_from: 0,
        parallel_band_reduction_from: 0,
        ..SymEigParams::for_dimension(a.nrows())
    };
    tridiagonalize(a.clone().as_mut(), par, params).1[0]
}

fn median_micros(mut run: impl FnMut() -> f64, repeats: usize) -> f64 {
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(run());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[repeats / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a whole number"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![64, 96, 128, 192, 256, 384, 512]
    } else {
        sizes
    };
    println!(
        "µs per matrix (median of the second round), kernels: {}",
        isa().name()
    );
    println!(
        "{:>5} {:>10} {:>14} {:>12} {:>12} {:>10} {:>13}",
        "n", "faer", "faer 2 threads", "two-stage", "two-stage 2t", "unblocked", "unblocked 2t"
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("two threads");
    for n in sizes {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ n as u64;
        let x = Mat::<f64>::from_fn(n, n, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        });
        let a = x.transpose() * &x;
        let repeats = (2e8 / (n * n * n) as f64).clamp(5.0, 301.0) as usize;
        let mut row = Vec::new();
        for round in 0..2 {
            let f = median_micros(|| faer_one_stage(&a, Par::Seq), repeats);
            let f2 = median_micros(|| faer_one_stage(&a, Par::rayon(2)), repeats);
            let t1 = median_micros(|| two_stage(&a, Par::Seq), repeats);
            let t2 = median_micros(|| two_stage(&a, Par::rayon(2)), repeats);
            let ours = median_micros(|| tridiagonalize_dense(a.as_ref(), Par::Seq).1[0], repeats);
            // Inside a pool of two, as the engine calls it: a join from
            // outside any pool waits for a sleeping worker every step.
            let ours2 = pool.install(|| {
                median_micros(
                    || tridiagonalize_dense(a.as_ref(), Par::rayon(2)).1[0],
                    repeats,
                )
            });
            if round == 1 {
                row = vec![f, f2, t1, t2, ours, ours2];
            }
        }
        println!(
            "{n:>5} {:>10.0} {:>14.0} {:>12.0} {:>12.0} {:>10.0} {:>13.0}",
            row[0], row[1], row[2], row[3], row[4], row[5]
        );
    }
}
