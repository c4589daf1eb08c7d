//! grokspec's engine: singular values and spectral entropy of matrices.

pub mod band_reduction;
pub mod bulge_chasing;
pub mod entropy;
pub mod error;
pub mod householder;
pub mod matrix;
mod simd;
pub mod spectrum;
pub mod symeig;
