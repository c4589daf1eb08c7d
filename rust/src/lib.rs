//! grokspec's engine: singular values and spectral entropy of matrices,
//! computed in f64, in parallel across and within matrices.
//!
//! The pure modules know nothing of Python; this file is only the
//! `grokspec._core` extension module: thin wrappers that turn numpy arrays
//! into views, release the GIL, run the engine and hand the results back.

pub mod band_reduction;
pub mod batch;
pub mod bulge_chasing;
pub mod entropy;
pub mod error;
pub mod householder;
pub mod matrix;
pub mod safetensors;
mod simd;
pub mod spectrum;
pub mod symeig;
pub mod tridiagonal;

use faer::MatRef;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::entropy::{EntropySpec, Normalize};
use crate::error::{CheckpointError, DTypeError, Error, GrokspecError, NonFiniteError, ShapeError};
use crate::matrix::{MatrixView, PackedDtype, PackedMatrix};
use crate::spectrum::{Method, Spectrum, Target};

/// A numpy array borrowed read-only for the duration of a call.
enum Input<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

impl Input<'_> {
    fn view(&self) -> MatrixView<'_> {
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
fn borrow_inputs<'py>(arrays: &[Bound<'py, PyAny>]) -> PyResult<Vec<Input<'py>>> {
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
                return Err(pyo3::exceptions::PyTypeError::new_err(context(format!(
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
/// are several.
fn run_items<T: Send>(
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
type SingularValueList<'py> = Vec<Option<Bound<'py, PyArray1<f64>>>>;

/// `(index, exception)` for each matrix that failed.
type ItemErrors = Vec<(usize, Py<PyAny>)>;

/// Splits per-item results into values (None where failed) and errors.
fn split_errors<T>(py: Python<'_>, results: Vec<Result<T, Error>>) -> (Vec<Option<T>>, ItemErrors) {
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

/// Singular values (descending, float64) of each 2-D float32/float64 array.
///
/// Returns `(values, errors)`: `values[i]` is None where matrix `i` failed,
/// and `errors` lists `(i, exception)`.
#[pyfunction]
#[pyo3(signature = (arrays, *, method = "auto", threads = None))]
fn singular_values_batch<'py>(
    py: Python<'py>,
    arrays: Vec<Bound<'py, PyAny>>,
    method: &str,
    threads: Option<usize>,
) -> PyResult<(SingularValueList<'py>, ItemErrors)> {
    let method = Method::parse(method)?;
    let inputs = borrow_inputs(&arrays)?;
    let views: Vec<MatrixView<'_>> = inputs.iter().map(Input::view).collect();
    let shapes: Vec<(usize, usize)> = views.iter().map(MatrixView::shape).collect();
    let results = run_items(py, &shapes, threads, |chunk, par| {
        let chunk_views: Vec<MatrixView<'_>> = chunk.iter().map(|&i| views[i]).collect();
        spectrum::spectra(&chunk_views, method, false, Target::SingularValues, par)
            .into_iter()
            .map(|r| r.map(|s| s.sigma))
            .collect()
    })?;
    let (values, errors) = split_errors(py, results);
    Ok((
        values
            .into_iter()
            .map(|v| v.map(|s| s.into_pyarray(py)))
            .collect(),
        errors,
    ))
}

/// Spectral entropy and the other statistics of each 2-D float32/float64
/// array, as columns: a dict of equal-length numpy arrays (`entropy`,
/// `sigma_max`, `frobenius_norm`, `stable_rank`, `effective_rank`,
/// `numerical_rank`, `rows`, `cols`) plus `method` (a list of "svd", "gram"
/// or "failed"). Failed matrices get NaN (or -1) and appear in `errors`.
#[pyfunction]
#[pyo3(signature = (arrays, *, power = 2.0, normalize = "dim", center = false, method = "auto", need_rank = false, threads = None))]
fn spectral_batch<'py>(
    py: Python<'py>,
    arrays: Vec<Bound<'py, PyAny>>,
    power: f64,
    normalize: &str,
    center: bool,
    method: &str,
    need_rank: bool,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyDict>, ItemErrors)> {
    let spec = EntropySpec::new(power, Normalize::parse(normalize)?)?;
    let method = Method::parse(method)?;
    let inputs = borrow_inputs(&arrays)?;
    let views: Vec<MatrixView<'_>> = inputs.iter().map(Input::view).collect();
    let shapes: Vec<(usize, usize)> = views.iter().map(MatrixView::shape).collect();
    let target = Target::Entropy { spec, need_rank };
    let results = run_items(py, &shapes, threads, |chunk, par| {
        let chunk_views: Vec<MatrixView<'_>> = chunk.iter().map(|&i| views[i]).collect();
        spectrum::spectra(&chunk_views, method, center, target, par)
    })?;
    spectral_columns(py, &shapes, results, spec)
}

/// Section 1's statistics of each computed spectrum as columns, plus the
/// per-matrix errors.
fn spectral_columns<'py>(
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
    columns.set_item(
        "rows",
        shapes
            .iter()
            .map(|s| s.0 as i64)
            .collect::<Vec<_>>()
            .into_pyarray(py),
    )?;
    columns.set_item(
        "cols",
        shapes
            .iter()
            .map(|s| s.1 as i64)
            .collect::<Vec<_>>()
            .into_pyarray(py),
    )?;
    let methods: Vec<&str> = spectra
        .iter()
        .map(|s| s.as_ref().map_or("failed", |s: &Spectrum| s.method.name()))
        .collect();
    columns.set_item("method", methods)?;
    Ok((columns, errors))
}

/// Opens a safetensors file and validates its header against the file.
fn open_safetensors(path: &str) -> Result<(std::fs::File, safetensors::Header), Error> {
    use std::io::Read;
    let fail =
        |what: &str, e: std::io::Error| Error::Checkpoint(format!("{path}: cannot {what}: {e}"));
    let mut file = std::fs::File::open(path).map_err(|e| fail("open", e))?;
    let len = file.metadata().map_err(|e| fail("stat", e))?.len();
    let mut length = [0u8; 8];
    file.read_exact(&mut length).map_err(|_| {
        Error::Checkpoint(format!(
            "{path}: file of {len} bytes is too short for a safetensors header"
        ))
    })?;
    let header_len = u64::from_le_bytes(length)
        .min(safetensors::MAX_HEADER_BYTES + 1)
        .min(len.saturating_sub(8));
    let mut prefix = length.to_vec();
    prefix.resize(8 + header_len as usize, 0);
    file.read_exact(&mut prefix[8..])
        .map_err(|e| fail("read the header", e))?;
    let header = safetensors::parse_header(&prefix, len).map_err(|e| e.context(path))?;
    Ok((file, header))
}

/// `(name, dtype, shape)` of one tensor in a safetensors header.
type TensorEntry = (String, String, Vec<usize>);

/// The tensors of a safetensors file as `[(name, dtype, shape)]` and its
/// `__metadata__`; a truncated, corrupt or lying header raises
/// `CheckpointError`.
#[pyfunction]
fn safetensors_header<'py>(
    py: Python<'py>,
    path: &str,
) -> PyResult<(Vec<TensorEntry>, Bound<'py, PyDict>)> {
    let (_, header) = py.detach(|| open_safetensors(path))?;
    let tensors = header
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.dtype.name().to_owned(), t.shape.clone()))
        .collect();
    let metadata = PyDict::new(py);
    for (k, v) in &header.metadata {
        metadata.set_item(k, v)?;
    }
    Ok((tensors, metadata))
}

/// Like `spectral_batch`, for tensors of safetensors files read through
/// memory maps: `tensors` is `[(path, name, rows, cols)]`, each tensor seen
/// as the row-major `rows x cols` matrix (rows * cols must be its element
/// count). Tensors of several files (checkpoints) may be mixed, so that many
/// small checkpoints share one parallel batch; each file is opened and its
/// header validated once. F16 and BF16 are decoded on the fly; no tensor is
/// copied whole, and each is mapped only while it is computed.
#[pyfunction]
#[pyo3(signature = (tensors, *, power = 2.0, normalize = "dim", center = false, method = "auto", need_rank = false, threads = None))]
fn safetensors_spectral<'py>(
    py: Python<'py>,
    tensors: Vec<(String, String, usize, usize)>,
    power: f64,
    normalize: &str,
    center: bool,
    method: &str,
    need_rank: bool,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyDict>, ItemErrors)> {
    let spec = EntropySpec::new(power, Normalize::parse(normalize)?)?;
    let method = Method::parse(method)?;
    let mut files: Vec<(String, std::fs::File, safetensors::Header)> = Vec::new();
    let mut items = Vec::with_capacity(tensors.len());
    for (path, name, rows, cols) in &tensors {
        let file_index = match files.iter().position(|(p, ..)| p == path) {
            Some(index) => index,
            None => {
                let (file, header) = py.detach(|| open_safetensors(path))?;
                files.push((path.clone(), file, header));
                files.len() - 1
            }
        };
        let header = &files[file_index].2;
        let info = header
            .tensors
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| Error::Checkpoint(format!("{path}: no tensor named {name:?}")))?;
        let dtype = match info.dtype {
            safetensors::Dtype::F16 => PackedDtype::F16,
            safetensors::Dtype::BF16 => PackedDtype::BF16,
            safetensors::Dtype::F32 => PackedDtype::F32,
            safetensors::Dtype::F64 => PackedDtype::F64,
            other => {
                return Err(DTypeError::new_err(format!(
                    "{name}: expected a floating-point tensor, got {}",
                    other.name()
                )));
            }
        };
        if rows
            .checked_mul(*cols)
            .and_then(|n| n.checked_mul(dtype.size()))
            != Some(info.end - info.start)
        {
            return Err(ShapeError::new_err(format!(
                "{name}: {rows} x {cols} does not match the tensor's shape {:?}",
                info.shape
            )));
        }
        items.push(PackedItem {
            file: file_index,
            name: name.as_str(),
            offset: header.data_start + info.start,
            len: info.end - info.start,
            dtype,
            rows: *rows,
            cols: *cols,
        });
    }
    let shapes: Vec<(usize, usize)> = items.iter().map(|item| (item.rows, item.cols)).collect();
    let target = Target::Entropy { spec, need_rank };
    let results = run_items(py, &shapes, threads, |chunk, par| {
        // Map this chunk's tensors; a failure to map is that tensor's error.
        let mapped: Vec<Result<MappedBytes, Error>> = chunk
            .iter()
            .map(|&i| {
                let item = &items[i];
                let (path, file, _) = &files[item.file];
                map_range(file, item.offset, item.len).map_err(|e| {
                    Error::Checkpoint(format!("{path}: cannot map {}: {e}", item.name))
                })
            })
            .collect();
        let mut views = Vec::new();
        let mut outcome: Vec<Option<Result<Spectrum, Error>>> = Vec::new();
        for (&i, bytes) in chunk.iter().zip(&mapped) {
            let item = &items[i];
            match bytes
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|b| PackedMatrix::new(b, item.dtype, item.rows, item.cols))
            {
                Ok(packed) => {
                    views.push(MatrixView::Packed(packed));
                    outcome.push(None);
                }
                Err(e) => outcome.push(Some(Err(e.context(item.name)))),
            }
        }
        let mut computed = spectrum::spectra(&views, method, center, target, par).into_iter();
        outcome
            .into_iter()
            .map(|o| o.unwrap_or_else(|| computed.next().expect("one result per view")))
            .collect()
    })?;
    spectral_columns(py, &shapes, results, spec)
}

/// One tensor to compute: where it lies in which opened file, and as what matrix.
struct PackedItem<'a> {
    file: usize,
    name: &'a str,
    offset: usize,
    len: usize,
    dtype: PackedDtype,
    rows: usize,
    cols: usize,
}

/// Tensors up to this size are read into memory instead of mapped: one
/// `pread` is cheaper than setting up a map and faulting in its pages.
const READ_INSTEAD_OF_MAP: usize = 4 << 20;

/// `len` bytes of `file` from `offset`: read when small, memory-mapped
/// read-only when large.
fn map_range(file: &std::fs::File, offset: usize, len: usize) -> std::io::Result<MappedBytes> {
    if len <= READ_INSTEAD_OF_MAP {
        let mut bytes = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(file, &mut bytes, offset as u64)?;
        return Ok(MappedBytes::Read(bytes));
    }
    // SAFETY: a read-only map of a range the validated header places inside
    // the file; a file truncated by another process during the scan is
    // outside what any reader of memory-mapped files can guard against.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset as u64)
            .len(len)
            .map(file)?
    };
    // The engine reads each tensor front to back, more than once.
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(MappedBytes::Map(map))
}

/// A tensor's bytes: read into memory, or mapped.
enum MappedBytes {
    Read(Vec<u8>),
    Map(memmap2::Mmap),
}

impl std::ops::Deref for MappedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Read(bytes) => bytes,
            Self::Map(map) => map,
        }
    }
}

/// The thread count used when `threads=None`: `GROKSPEC_NUM_THREADS` if
/// set, else the cores this process may use.
#[pyfunction]
fn default_threads() -> PyResult<usize> {
    Ok(batch::default_threads()?)
}

/// Panics inside the engine's batch runner, to prove in tests that a Rust
/// panic reaches Python as a `GrokspecError`, never as a crash.
#[pyfunction]
fn _panic_inside_engine(py: Python<'_>) -> PyResult<()> {
    let results = py.detach(|| {
        batch::run(&[1.0, 1.0], 2, |chunk, _| {
            chunk
                .iter()
                .map(|&i| {
                    if i == 1 {
                        panic!("deliberate test panic")
                    } else {
                        Ok(())
                    }
                })
                .collect()
        })
    })?;
    for result in results {
        result?;
    }
    Ok(())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("GrokspecError", py.get_type::<GrokspecError>())?;
    m.add("ShapeError", py.get_type::<ShapeError>())?;
    m.add("DTypeError", py.get_type::<DTypeError>())?;
    m.add("NonFiniteError", py.get_type::<NonFiniteError>())?;
    m.add("CheckpointError", py.get_type::<CheckpointError>())?;
    m.add_function(wrap_pyfunction!(singular_values_batch, m)?)?;
    m.add_function(wrap_pyfunction!(spectral_batch, m)?)?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(safetensors_header, m)?)?;
    m.add_function(wrap_pyfunction!(safetensors_spectral, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_inside_engine, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
