//! Times `spectra` on eight row-major (C-ordered, as from numpy) float32
//! matrices of one shape on one thread, the way a batch's chunk runs:
//! `cargo run --release --example batch_probe -- ROWS COLS` (µs per matrix,
//! median and first quartile). A tuning aid.

use std::time::Instant;

use faer::{Mat, Par};
use grokspec_core::entropy::{EntropySpec, Normalize};
use grokspec_core::matrix::MatrixView;
use grokspec_core::spectrum::{Method, Target, spectra};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("ROWS COLS"))
        .collect();
    let (rows, cols) = (args[0], args[1]);
    let target = Target::Entropy {
        spec: EntropySpec::new(2.0, Normalize::Dim).expect("a valid spec"),
        need_rank: false,
    };
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    // Column-major cols x rows matrices, read through their transposes.
    let mats: Vec<Mat<f32>> = (0..8)
        .map(|_| {
            Mat::<f32>::from_fn(cols, rows, |_, _| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
        })
        .collect();
    let views: Vec<MatrixView<'_>> = mats
        .iter()
        .map(|m| MatrixView::F32(m.transpose()))
        .collect();
    let repeats = (4e8 / (rows * cols * cols) as f64).clamp(11.0, 301.0) as usize;
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(spectra(&views, Method::Auto, false, target, Par::Seq));
            t.elapsed().as_secs_f64() * 1e6 / views.len() as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "{rows}x{cols} row-major, eight on one thread: {:.0} µs per matrix (median), first quartile {:.0}",
        times[repeats / 2],
        times[repeats / 4]
    );
}
