//! Times `narrow_product` (a row-major float32 `N x N` matrix times a
//! row-major `N x B` block) and `narrow_transposed_product` on `THREADS` threads:
//! `cargo run --release --example narrow_product_timing -- N B THREADS`
//! (milliseconds per product, each of seven rounds; compare with
//! `python benches/approx_products.py`, which times numpy's BLAS beside it).

use std::time::Instant;

use grokspec_core::narrow_product::{narrow_product, narrow_transposed_product};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("N B THREADS"))
        .collect();
    let (n, b, threads) = (args[0], args[1], args[2]);
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let a: Vec<f32> = (0..n * n).map(|_| next()).collect();
    let v: Vec<f32> = (0..n * b).map(|_| next()).collect();
    let ms = |start: Instant| format!("{:.1}", start.elapsed().as_secs_f64() * 1e3);
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        let y = narrow_product(&a, n, n, n, &v, b, threads).expect("a valid shape");
        forward.push(ms(t));
        let t = Instant::now();
        let z = narrow_transposed_product(&a, n, n, n, &y, b, threads).expect("a valid shape");
        backward.push(ms(t));
        std::hint::black_box(z);
    }
    println!(
        "{n}x{n}, {b} columns, {threads} threads: A V {} ms; Aᵀ Y {} ms",
        forward.join(" "),
        backward.join(" ")
    );
}
