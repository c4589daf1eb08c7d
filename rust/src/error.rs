//! The engine's one error type. Pure Rust: the binding layer (`python.rs`)
//! maps each variant onto grokspec's Python exception hierarchy.

use std::fmt;

/// Everything the engine can refuse or fail at. Each message names the
/// offending input (its index in a batch, shape and dtype) so that the
/// Python user sees what went wrong without a Rust backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input is not a 2-D matrix, or one of its axes is empty.
    Shape(String),
    /// The input's element type is not a real floating-point type.
    DType(String),
    /// The input holds NaN or infinity.
    NonFinite(String),
    /// An option has a value outside its domain (an unknown method, a
    /// non-positive power, ...).
    InvalidArgument(String),
    /// An iterative decomposition did not converge (never seen on finite
    /// input; reported rather than returning wrong numbers).
    NoConvergence(String),
    /// A checkpoint file is truncated, corrupt or inconsistent.
    Checkpoint(String),
    /// A bug: a panic inside the engine, caught before it reached Python.
    Internal(String),
}

impl Error {
    /// The same error with `context` (for example "matrix 3 of 64") put in
    /// front of its message.
    pub fn context(self, context: &str) -> Self {
        let wrap = |message: String| format!("{context}: {message}");
        match self {
            Self::Shape(m) => Self::Shape(wrap(m)),
            Self::DType(m) => Self::DType(wrap(m)),
            Self::NonFinite(m) => Self::NonFinite(wrap(m)),
            Self::InvalidArgument(m) => Self::InvalidArgument(wrap(m)),
            Self::NoConvergence(m) => Self::NoConvergence(wrap(m)),
            Self::Checkpoint(m) => Self::Checkpoint(wrap(m)),
            Self::Internal(m) => Self::Internal(wrap(m)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shape(m)
            | Self::DType(m)
            | Self::NonFinite(m)
            | Self::InvalidArgument(m)
            | Self::NoConvergence(m)
            | Self::Checkpoint(m) => f.write_str(m),
            Self::Internal(m) => write!(f, "internal error (please report it): {m}"),
        }
    }
}

impl std::error::Error for Error {}
