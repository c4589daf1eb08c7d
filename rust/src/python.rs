//! The binding layer's helpers (compiled with the `python` feature only):
//! grokspec's exception hierarchy and the mapping of `Error` onto it,
//! borrowing numpy arrays as engine views, option parsing, running a batch
//! with the GIL released, and packing results into numpy columns.

use std::collections::HashSet;

use faer::MatRef;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods,
    PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{create_exception, intern};

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

/// The numpy arrays of one call, each a 2-D float32 or float64 matrix,
/// with read-only borrows (rust-numpy's borrow protocol, which other Rust
/// extensions honour) that cover every one of them for as long as this
/// lives.
///
/// The borrows are taken once per array that owns the memory, not once per
/// matrix: rust-numpy checks each new borrow against every borrow already
/// held on the same memory, so borrowing the 16,000 views of one 3-D stack
/// one by one took time quadratic in their number (0.4 s for 16,000 2x2
/// matrices, 1.6 s for 32,000). A view whose memory lies inside its base
/// array (what `list(stack)` gives) is covered by one borrow of that base.
pub struct Inputs<'py> {
    arrays: Vec<Array<'py>>,
    _borrows: Vec<Borrow<'py>>,
}

/// One input array, its dtype checked.
enum Array<'py> {
    F32(Bound<'py, PyArray2<f32>>),
    F64(Bound<'py, PyArray2<f64>>),
}

/// A read-only borrow held for the duration of a call.
#[expect(dead_code, reason = "held only for its Drop, which ends the borrow")]
enum Borrow<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

impl Inputs<'_> {
    /// The engine's view of each array (no copy).
    pub fn views(&self) -> Vec<MatrixView<'_>> {
        self.arrays
            .iter()
            .map(|array| match array {
                // SAFETY (both arms): `_borrows` holds a read-only borrow of
                // memory that contains all of this array's elements, for as
                // long as the returned views (which borrow `self`) live, so no
                // Rust code may write them meanwhile.
                Array::F32(a) => MatrixView::F32(faer_view(unsafe { a.as_array() })),
                Array::F64(a) => MatrixView::F64(faer_view(unsafe { a.as_array() })),
            })
            .collect()
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

/// Checks that every item is a 2-D float32/float64 numpy array (the error
/// names the item, its shape and its dtype) and borrows them all.
pub fn borrow_inputs<'py>(items: &[Bound<'py, PyAny>]) -> PyResult<Inputs<'py>> {
    let count = items.len();
    let mut arrays = Vec::with_capacity(count);
    let mut borrows = Vec::new();
    let mut covered = HashSet::new();
    for (index, item) in items.iter().enumerate() {
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
        if array.ndim() != 2 {
            return Err(ShapeError::new_err(context(format!(
                "expected a 2-D matrix, got shape {:?} ({} dimensions)",
                array.shape(),
                array.ndim()
            ))));
        }
        let py = item.py();
        let dtype = array.dtype();
        if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
            let typed = item.cast::<PyArray2<f32>>()?;
            cover(typed, &mut covered, &mut borrows, Borrow::F32)?;
            arrays.push(Array::F32(typed.clone()));
        } else if dtype.is_equiv_to(&numpy::dtype::<f64>(py)) {
            let typed = item.cast::<PyArray2<f64>>()?;
            cover(typed, &mut covered, &mut borrows, Borrow::F64)?;
            arrays.push(Array::F64(typed.clone()));
        } else {
            return Err(DTypeError::new_err(context(format!(
                "expected float32 or float64 data, got dtype {} (shape {:?})",
                dtype.str()?,
                array.shape()
            ))));
        }
    }
    Ok(Inputs {
        arrays,
        _borrows: borrows,
    })
}

/// Makes sure a read-only borrow covers `array`: its base array's, when the
/// base has the same dtype and holds all of `array`'s elements (one borrow
/// per base, remembered in `covered`), else its own.
fn cover<'py, T: numpy::Element>(
    array: &Bound<'py, PyArray2<T>>,
    covered: &mut HashSet<usize>,
    borrows: &mut Vec<Borrow<'py>>,
    wrap: fn(PyReadonlyArrayDyn<'py, T>) -> Borrow<'py>,
) -> PyResult<()> {
    let base = array.getattr(intern!(array.py(), "base"))?;
    if let Ok(base) = base.cast::<PyArrayDyn<T>>()
        && let (Some(inner), Some(outer)) = (extent(array), extent(base))
        && outer.0 <= inner.0
        && inner.1 <= outer.1
    {
        if covered.insert(base.as_ptr() as usize) {
            borrows.push(wrap(base.try_readonly()?));
        }
        return Ok(());
    }
    borrows.push(wrap(array.to_dyn().try_readonly()?));
    Ok(())
}

/// The byte range `[first, last)` an array's elements occupy; None when it
/// has no element.
fn extent<T: numpy::Element, D: numpy::ndarray::Dimension>(
    array: &Bound<'_, numpy::PyArray<T, D>>,
) -> Option<(usize, usize)> {
    let untyped = array.as_untyped();
    if untyped.shape().contains(&0) {
        return None;
    }
    let data = array.data() as isize;
    let (mut low, mut high) = (data, data);
    for (&dim, &stride) in untyped.shape().iter().zip(untyped.strides()) {
        let span = isize::try_from(dim - 1).ok()?.checked_mul(stride)?;
        if span < 0 {
            low = low.checked_add(span)?;
        } else {
            high = high.checked_add(span)?;
        }
    }
    let item_size = isize::try_from(std::mem::size_of::<T>()).ok()?;
    Some((low as usize, high.checked_add(item_size)? as usize))
}

/// `threads` as given (0 refused), or the default count when None.
pub fn resolve_threads(threads: Option<usize>) -> Result<usize, Error> {
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
