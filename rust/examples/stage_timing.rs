//! Per-stage timings of the Gram route, medians over repeats:
//! `cargo run --release --example stage_timing -- N [REPEATS] [BANDWIDTH]`.
//!
//! Prints the vector path of grokspec's own kernels (`GROKSPEC_ISA` forces
//! one) and, per stage, the median wall time and the rate against the stage's
//! flop count, for docs/PERFORMANCE.md, and stage 1's parts. `ONLY=1` runs
//! stage 1 alone (for a profiler); `THREADS=t` sets the thread count (default:
//! all cores; 1 runs everything single-threaded).

use std::time::Instant;

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, Par};
use grokspec_core::band_reduction::{profile, reduce_to_band};
use grokspec_core::bulge_chasing::BandMatrix;
use grokspec_core::symeig::{SymEigParams, isa};
use grokspec_core::tridiagonal::tridiagonal_eigenvalues;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a whole number"))
        .collect();
    let n = *args.first().unwrap_or(&2048);
    let repeats = *args.get(1).unwrap_or(&3);
    let b = *args
        .get(2)
        .unwrap_or(&SymEigParams::for_dimension(n).bandwidth);
    let only_stage_one = std::env::var("ONLY").is_ok_and(|v| v == "1");
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |t| t.get()));
    let par = if threads > 1 {
        Par::rayon(threads)
    } else {
        Par::Seq
    };
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let a = Mat::<f64>::from_fn(n, n, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    });
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut parts = Vec::new();
    for _ in 0..repeats {
        let mut gram = Mat::<f64>::zeros(n, n);
        let t = Instant::now();
        triangular::matmul(
            gram.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            a.transpose(),
            BlockStructure::Rectangular,
            a.as_ref(),
            BlockStructure::Rectangular,
            1.0,
            par,
        );
        times[0].push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        reduce_to_band(gram.as_mut(), b, par);
        times[1].push(t.elapsed().as_secs_f64());
        parts.push(profile::take());
        if only_stage_one {
            continue;
        }
        let t = Instant::now();
        let (d, e) = BandMatrix::from_lower(gram.as_ref(), b).into_tridiagonal(par);
        times[2].push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let values = tridiagonal_eigenvalues(&d, &e).expect("converges");
        times[3].push(t.elapsed().as_secs_f64());
        assert_eq!(values.len(), n);
    }
    let nf = n as f64;
    // Flop counts: Gram n^3 (lower half of 2 n^3); stage 1 (4/3) n^3 (dsytrd_sy2sb);
    // stage 2 ~ 6 b n^2; QL ~ 30 n^2 (root-free, ~1.5 sweeps per eigenvalue).
    let flops = [
        nf.powi(3),
        4.0 / 3.0 * nf.powi(3),
        6.0 * b as f64 * nf * nf,
        30.0 * nf * nf,
    ];
    let names = [
        "gram (f64)",
        "stage 1 (band)",
        "stage 2 (bulge)",
        "tridiagonal QL",
    ];
    println!(
        "n = {n}, bandwidth {b}, {threads} threads, kernels: {}, {repeats} repeats",
        isa().name()
    );
    for ((name, ts), f) in names.iter().zip(times).zip(flops) {
        if ts.is_empty() {
            continue;
        }
        let m = median(ts);
        println!("{name:<16} {m:>8.3} s  {:>7.1} GFlop/s", f / m / 1e9);
    }
    for (p, name) in profile::PARTS.iter().enumerate() {
        let m = median(parts.iter().map(|t: &[f64; 4]| t[p]).collect());
        println!("  stage 1: {name:<15} {m:>8.3} s");
    }
}
