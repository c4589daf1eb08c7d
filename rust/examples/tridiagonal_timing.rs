//! Times the tridiagonal eigenvalue solver alone. A tuning aid.
use grokspec_core::tridiagonal::tridiagonal_eigenvalues;
use std::time::Instant;
fn main() {
    for n in [64usize, 128, 512, 4096] {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let d: Vec<f64> = (0..n).map(|_| next()).collect();
        let e: Vec<f64> = (0..n - 1).map(|_| next()).collect();
        let reps = (200_000 / n).max(3);
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(tridiagonal_eigenvalues(&d, &e).unwrap());
        }
        println!(
            "n={n}: {:.1} us",
            t.elapsed().as_secs_f64() / reps as f64 * 1e6
        );
    }
}
