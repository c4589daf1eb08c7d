//! Times `spectrum()` end to end on small and mid sizes:
//! `cargo run --release --example spectrum_timing [ROWSxCOLS]` (`REPS=k`
//! sets the repeats; the mean is printed, after one warm-up run; `ROW_MAJOR=1`
//! times the transposed, row-major view, the layout of a C-ordered numpy
//! array). A tuning aid.

use std::time::Instant;

use faer::{Mat, Par};
use grokspec_core::entropy::{EntropySpec, Normalize};
use grokspec_core::matrix::MatrixView;
use grokspec_core::spectrum::{Method, Target, spectrum};

fn main() {
    let target = Target::Entropy {
        spec: EntropySpec::new(2.0, Normalize::Dim).unwrap(),
        need_rank: false,
    };
    let sizes: Vec<(usize, usize)> = std::env::args().nth(1).map_or(
        vec![(512, 128), (256, 64), (64, 64), (600, 600), (1024, 1024)],
        |s| {
            let v: Vec<usize> = s.split("x").map(|x| x.parse().unwrap()).collect();
            vec![(v[0], v[1])]
        },
    );
    for &(rows, cols) in &sizes {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let a = Mat::<f32>::from_fn(rows, cols, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        });
        for (label, par) in [("seq", Par::Seq), ("2 threads", Par::rayon(2))] {
            let reps = std::env::var("REPS")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(if rows >= 600 { 20 } else { 500 });
            let row_major = std::env::var("ROW_MAJOR").is_ok_and(|v| v == "1");
            let view = if row_major { a.transpose() } else { a.as_ref() };
            let run = || spectrum(MatrixView::F32(view), Method::Gram, false, target, par).unwrap();
            run();
            let t = Instant::now();
            for _ in 0..reps {
                run();
            }
            println!(
                "{rows}x{cols} {label:>9}: {:>9.4} s",
                t.elapsed().as_secs_f64() / reps as f64
            );
        }
    }
}
