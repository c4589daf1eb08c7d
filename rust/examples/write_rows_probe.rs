//! Times the float32 -> float64 transposing copy that feeds the Gram product
//! of a row-major matrix (a C-ordered numpy array) into column-major blocks:
//! `cargo run --release --example write_rows_probe -- N...` (median of 15).
//! A tuning aid.

use std::time::Instant;

use faer::{Mat, MatMut};
use grokspec_core::matrix::{MatrixView, Prepared};

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    for n in std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a whole number"))
    {
        let a = Mat::<f32>::from_fn(n, n, |i, j| ((i * 31 + j * 17) % 101) as f32 - 50.0);
        // The transpose of a column-major matrix is row-major.
        let prepared = Prepared::new(MatrixView::F32(a.transpose()), false).expect("finite data");
        let mut storage = vec![0.0f64; n * n];
        let times = (0..15)
            .map(|_| {
                let block = MatMut::from_column_major_slice_mut(&mut storage, n, n);
                let t = Instant::now();
                prepared.write_rows(0, block);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        println!("{n} x {n} float32, row-major: {:.2} ms", median(times));
    }
}
