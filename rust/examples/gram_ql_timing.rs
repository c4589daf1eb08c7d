//! Times the QL eigenvalue iteration on the tridiagonal forms of random Gram
//! matrices (as a batch's matrices give), eight problems at once:
//! `cargo run --release --example gram_ql_timing -- [N]`. A tuning aid.

use std::time::Instant;

use faer::{Mat, Par};
use grokspec_core::symeig::{SymEigParams, tridiagonalize};
use grokspec_core::tridiagonal::tridiagonal_eigenvalues_many;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(384, |a| a.parse().expect("a whole number"));
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let problems: Vec<(Vec<f64>, Vec<f64>)> = (0..8)
        .map(|_| {
            let x = Mat::<f64>::from_fn(n, n, |_, _| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            });
            let mut gram = x.transpose() * &x;
            tridiagonalize(gram.as_mut(), Par::Seq, SymEigParams::for_dimension(n))
        })
        .collect();
    let refs: Vec<(&[f64], &[f64])> = problems
        .iter()
        .map(|(d, e)| (d.as_slice(), e.as_slice()))
        .collect();
    let mut times = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        std::hint::black_box(tridiagonal_eigenvalues_many(&refs));
        times.push(t.elapsed().as_secs_f64() * 1e6 / 8.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "n={n}: {:.0} µs per problem, eight at once (median of 21)",
        times[10]
    );
}
