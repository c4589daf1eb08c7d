//! Times the tridiagonal eigenvalue solver, one problem at a time and many
//! at once: `cargo run --release --example tridiagonal_timing`. A tuning aid.
use std::time::Instant;

use grokspec_core::tridiagonal::{tridiagonal_eigenvalues, tridiagonal_eigenvalues_many};

fn main() {
    for n in [64usize, 128, 512, 4096] {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let problems: Vec<(Vec<f64>, Vec<f64>)> = (0..8)
            .map(|_| {
                (
                    (0..n).map(|_| next()).collect(),
                    (0..n - 1).map(|_| next()).collect(),
                )
            })
            .collect();
        let reps = (100_000 / n).max(2);
        let t = Instant::now();
        for _ in 0..reps {
            for (d, e) in &problems {
                std::hint::black_box(tridiagonal_eigenvalues(d, e).unwrap());
            }
        }
        let alone = t.elapsed().as_secs_f64() / (reps * problems.len()) as f64;
        let refs: Vec<(&[f64], &[f64])> = problems
            .iter()
            .map(|(d, e)| (d.as_slice(), e.as_slice()))
            .collect();
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(tridiagonal_eigenvalues_many(&refs));
        }
        let together = t.elapsed().as_secs_f64() / (reps * problems.len()) as f64;
        println!(
            "n={n}: {:.1} us alone, {:.1} us per problem interleaved",
            alone * 1e6,
            together * 1e6
        );
    }
}
