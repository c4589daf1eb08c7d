//! The binding layer's helpers (compiled with the `python` feature only):
//! grokspec's exception hierarchy and the mapping of `Error` onto it,
//! borrowing numpy arrays as engine views, option parsing, running a batch
//! with the GIL released, and packing results into numpy columns.

use faer::MatRef;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::batch;
use crate::entropy::{self, EntropySpec, Normalize};
use crate::error::Error;
use crate::matrix::MatrixView;
use crate::spectrum::{Method, Spectrum, Target};

create_exception!(
    grokspec,
    GrokspecError,
    PyException,
    "Base class of every error grokspec raises on purpose."
);
create_exception!(
    grokspec,
    ShapeError,
    GrokspecError,
    "An input has the wrong number of dimensions or an empty axis."
);
create_exception!(
    grokspec,
    DTypeError,
    GrokspecError,
    "An input has a dtype grokspec cannot analyse (integer, bool, complex, ...)."
);
create_exception!(
    grokspec,
    NonFiniteError,
    GrokspecError,
    "An input contains NaN or infinity."
);
create_exception!(
    grokspec,
    CheckpointError,
    GrokspecError,
    "A checkpoint file cannot be read (truncated, corrupt, or lying about its contents)."
);

impl From<Error> for PyErr {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Shape(_) => ShapeError::new_err(message),
            Error::DType(_) => DTypeError::new_err(message),
            Error::NonFinite(_) => NonFiniteError::new_err(message),
            Error::InvalidArgument(_) => PyValueError::new_err(message),
            Error::Checkpoint(_) => CheckpointError::new_err(message),
            Error::NoConvergence(_) | Error::Internal(_) => GrokspecError::new_err(message),
        }
    }
}

/// The options the spectral functions share, parsed once.
#[derive(Debug, Clone, Copy)]
pub struct SpectralOptions {
    /// The entropy's definition.
    pub spec: EntropySpec,
    /// How the spectra are computed.
    pub method: Method,
    /// Whether columns are centred first.
    pub center: bool,
    /// What must be certified (the entropy, and the rank if asked).
    pub target: Target,
    /// As given (None: the default thread count).
    pub threads: Option<usize>,
}

impl SpectralOptions {
    /// Checks the keyword arguments of `spectral_batch` and
    /// `safetensors_spectral`; a bad value raises `ValueError`.
    pub fn parse(
        power: f64,
        normalize: &str,
        center: bool,
        method: &str,
        need_rank: bool,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let spec = EntropySpec::new(power, Normalize::parse(normalize)?)?;
        Ok(Self {
            spec,
            method: Method::parse(method)?,
            center,
            target: Target::Entropy { spec, need_rank },
            threads,
        })
    }
}

/// A numpy array borrowed read-only for the duration of a call.
pub enum Input<'py> {
    /// float32 data.
    F32(PyReadonlyArray2<'py, f32>),
    /// float64 data.
    F64(PyReadonlyArray2<'py, f64>),
}

impl Input<'_> {
    /// The engine's view of the array (no copy).
    pub fn view(&self) -> MatrixView<'_> {
        match self {
            Self::F32(a) => MatrixView::F32(faer_view(a.as_array())),
            Self::F64(a) => MatrixView::F64(faer_view(a.as_array())),
        }
    }
}

/// The same memory seen by faer, strides included (numpy's may be negative).
fn faer_view<T>(a: numpy::ndarray::ArrayView2<'_, T>) -> MatRef<'_, T> {
    let (rows, cols) = a.dim();
    let strides = a.strides();
    // SAFETY: the pointer, shape and element strides describe exactly the
    // elements of `a`, which stay borrowed for the returned lifetime.
    unsafe { MatRef::from_raw_parts(a.as_ptr(), rows, cols, strides[0], strides[1]) }
}

/// Checks that every item is a 2-D float32/float64 numpy array; the error
/// names the item, its shape and its dtype.
pub fn borrow_inputs<'py>(arrays: &[Bound<'py, PyAny>]) -> PyResult<Vec<Input<'py>>> {
    let count = arrays.len();
    arrays
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let context = |message: String| {
                if count == 1 {
                    message
                } else {
                    format!("matrix {index} of {count}: {message}")
                }
            };
            let Ok(array) = item.cast::<PyUntypedArray>() else {
                let type_name = item.get_type().name()?;
                return Err(PyTypeError::new_err(context(format!(
                    "expected a numpy array, got {type_name}"
                ))));
            };
            let dtype = array.dtype();
            if array.ndim() != 2 {
                return Err(ShapeError::new_err(context(format!(
                    "expected a 2-D matrix, got shape {:?} ({} dimensions)",
                    array.shape(),
                    array.ndim()
                ))));
            }
            let py = item.py();
            if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
                Ok(Input::F32(item.cast::<PyArray2<f32>>()?.readonly()))
            } else if dtype.is_equiv_to(&numpy::dtype::<f64>(py)) {
                Ok(Input::F64(item.cast::<PyArray2<f64>>()?.readonly()))
            } else {
                Err(DTypeError::new_err(context(format!(
                    "expected float32 or float64 data, got dtype {} (shape {:?})",
                    dtype.str()?,
                    array.shape()
                ))))
            }
        })
        .collect()
}

fn resolve_threads(threads: Option<usize>) -> Result<usize, Error> {
    match threads {
        Some(0) => Err(Error::InvalidArgument(
            "threads must be at least 1".to_owned(),
        )),
        Some(n) => Ok(n),
        None => batch::default_threads(),
    }
}

/// Runs `compute` on chunks of items of the given shapes with the GIL
/// released (one result per index given); errors name the item when there
/// are several. Every batch goes through here, so no call site can forget
/// to release the GIL or to map the errors.
pub fn run_items<T: Send>(
    py: Python<'_>,
    shapes: &[(usize, usize)],
    threads: Option<usize>,
    compute: impl Fn(&[usize], faer::Par) -> Vec<Result<T, Error>> + Sync + Send,
) -> PyResult<Vec<Result<T, Error>>> {
    let threads = resolve_threads(threads)?;
    let costs: Vec<f64> = shapes.iter().map(|&(r, c)| batch::cost(r, c)).collect();
    let count = shapes.len();
    let results = py.detach(|| batch::run(&costs, threads, compute))?;
    Ok(results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.map_err(|e| {
                if count == 1 {
                    e
                } else {
                    e.context(&format!("matrix {i} of {count}"))
                }
            })
        })
        .collect())
}

/// Each matrix's singular values, None where it failed.
pub type SingularValueList<'py> = Vec<Option<Bound<'py, PyArray1<f64>>>>;

/// `(index, exception)` for each matrix that failed.
pub type ItemErrors = Vec<(usize, Py<PyAny>)>;

/// Splits per-item results into values (None where failed) and errors.
pub fn split_errors<T>(
    py: Python<'_>,
    results: Vec<Result<T, Error>>,
) -> (Vec<Option<T>>, ItemErrors) {
    let mut errors = Vec::new();
    let values = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push((i, PyErr::from(e).into_value(py).into_any()));
                None
            }
        })
        .collect();
    (values, errors)
}

/// Section 1's statistics of each computed spectrum as columns, plus the
/// per-matrix errors.
pub fn spectral_columns<'py>(
    py: Python<'py>,
    shapes: &[(usize, usize)],
    results: Vec<Result<Spectrum, Error>>,
    spec: EntropySpec,
) -> PyResult<(Bound<'py, PyDict>, ItemErrors)> {
    let (spectra, errors) = split_errors(py, results);
    let stats: Vec<Option<entropy::Stats>> = spectra
        .iter()
        .map(|s| s.as_ref().map(|s| s.stats(spec)))
        .collect();
    let column = |f: fn(&entropy::Stats) -> f64| -> Vec<f64> {
        stats
            .iter()
            .map(|s| s.as_ref().map_or(f64::NAN, f))
            .collect()
    };
    let columns = PyDict::new(py);
    columns.set_item("entropy", column(|s| s.entropy).into_pyarray(py))?;
    columns.set_item("sigma_max", column(|s| s.sigma_max).into_pyarray(py))?;
    columns.set_item(
        "frobenius_norm",
        column(|s| s.frobenius_norm).into_pyarray(py),
    )?;
    columns.set_item("stable_rank", column(|s| s.stable_rank).into_pyarray(py))?;
    columns.set_item(
        "effective_rank",
        column(|s| s.effective_rank).into_pyarray(py),
    )?;
    let ranks: Vec<i64> = stats
        .iter()
        .map(|s| s.as_ref().map_or(-1, |s| s.numerical_rank as i64))
        .collect();
    columns.set_item("numerical_rank", ranks.into_pyarray(py))?;
    let side = |f: fn(&(usize, usize)) -> usize| -> Vec<i64> {
        shapes.iter().map(|s| f(s) as i64).collect()
    };
    columns.set_item("rows", side(|s| s.0).into_pyarray(py))?;
    columns.set_item("cols", side(|s| s.1).into_pyarray(py))?;
    let methods: Vec<&str> = spectra
        .iter()
        .map(|s| s.as_ref().map_or("failed", |s: &Spectrum| s.method.name()))
        .collect();
    columns.set_item("method", methods)?;
    Ok((columns, errors))
}
