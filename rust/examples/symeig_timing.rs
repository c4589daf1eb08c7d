//! Times the stages of the symmetric eigensolver on a Gram matrix:
//! `cargo run --release --example symeig_timing -- N [BANDWIDTH]`.
//! A tuning aid for `SymEigParams`; the user-facing benchmark is `grokspec bench`.

use std::time::Instant;

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, Par};
use grokspec_core::band_reduction::reduce_to_band;
use grokspec_core::bulge_chasing::BandMatrix;
use grokspec_core::symeig::{SymEigParams, symmetric_eigenvalues};
use grokspec_core::tridiagonal::tridiagonal_eigenvalues;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a whole number"))
        .collect();
    let n = *args.first().unwrap_or(&2048);
    let bandwidth = *args
        .get(1)
        .unwrap_or(&SymEigParams::for_dimension(n).bandwidth);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let par = Par::rayon(threads);
    // A pseudo-random matrix (xorshift), or with STRUCTURED=1 a nearly low-rank one.
    let structured = std::env::var("STRUCTURED").is_ok_and(|v| v == "1");
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let a = Mat::<f64>::from_fn(n, n, |i, j| {
        if structured {
            return ((i * 7919 + j * 104_729) % 1000) as f64 / 1000.0 - 0.5;
        }
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    });
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
    println!("gram product          {:>8.3} s", t.elapsed().as_secs_f64());

    let mut work = gram.clone();
    let t = Instant::now();
    let par1 = if std::env::var("SEQ1").is_ok() {
        Par::Seq
    } else {
        par
    };
    reduce_to_band(work.as_mut(), bandwidth, par1);
    println!(
        "stage 1 (to band {bandwidth:>3}) {:>8.3} s",
        t.elapsed().as_secs_f64()
    );
    if std::env::var("FTZ").is_ok() {
        flush_denormals_to_zero();
    }
    let t = Instant::now();
    let (d, e) = BandMatrix::from_lower(work.as_ref(), bandwidth).into_tridiagonal(par);
    println!("stage 2 (to tridiag)  {:>8.3} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let two = tridiagonal_eigenvalues(&d, &e).unwrap();
    println!("tridiagonal QL        {:>8.3} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let params = SymEigParams {
        dense_up_to: 0,
        two_stage_from: usize::MAX,
        bandwidth,
        parallel_band_reduction_from: 0,
    };
    let one = symmetric_eigenvalues(gram.clone().as_mut(), par, params).unwrap();
    println!("one-stage (faer)      {:>8.3} s", t.elapsed().as_secs_f64());
    let mut two = two;
    two.sort_unstable_by(|x, y| y.total_cmp(x));
    let diff = one
        .iter()
        .zip(&two)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    println!("max |difference| / lambda_max = {:.2e}", diff / one[0]);
}

/// With `FTZ=1`: makes this thread flush denormal results and operands to
/// zero, to measure what denormals cost stage 2 (x86-64 only: the MXCSR's
/// FTZ and DAZ bits).
#[cfg(target_arch = "x86_64")]
fn flush_denormals_to_zero() {
    let mut csr: u32 = 0;
    // SAFETY: stmxcsr/ldmxcsr read and write this thread's SSE control
    // register only; FTZ and DAZ change rounding of denormals, nothing else.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr);
        csr |= (1 << 15) | (1 << 6);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr);
    }
}

/// Elsewhere `FTZ=1` is ignored (with a note).
#[cfg(not(target_arch = "x86_64"))]
fn flush_denormals_to_zero() {
    eprintln!("FTZ=1 is only supported on x86-64; ignored");
}
