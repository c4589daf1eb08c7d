//! grokspec's engine: singular values and spectral entropy of matrices,
//! computed in f64, in parallel across and within matrices.
//!
//! The modules below are pure Rust (`cargo test` needs no Python). With the
//! `python` feature this file also holds the `grokspec._core` extension
//! module: thin wrappers that turn numpy arrays into views, release the GIL,
//! run the engine and hand the results back (helpers in `python.rs`).

#![deny(missing_docs)]

pub mod band_reduction;
pub mod batch;
pub mod bulge_chasing;
pub mod dense_tridiagonal;
pub mod entropy;
pub mod error;
pub mod householder;
pub mod huge_pages;
pub mod matrix;
pub mod narrow_product;
pub mod norms;
pub mod partner;
pub mod safetensors;
pub mod safetensors_file;
mod simd;
pub mod spectrum;
pub mod symeig;
pub mod tridiagonal;

/// Large buffers on transparent huge pages (see `huge_pages`).
#[global_allocator]
static ALLOCATOR: huge_pages::HugePageAllocator = huge_pages::HugePageAllocator;

#[cfg(feature = "python")]
mod python;

#[cfg(feature = "python")]
mod extension {
    use numpy::{IntoPyArray, PyArrayMethods};
    use pyo3::prelude::*;
    use pyo3::types::PyDict;

    use crate::batch;
    use crate::matrix::MatrixView;
    use crate::python::{
        CheckpointError, DTypeError, GrokspecError, ItemErrors, NonFiniteError, ShapeError,
        SingularValueList, SpectralOptions, borrow_inputs, resolve_threads, run_items,
        spectral_columns, split_errors,
    };
    use crate::safetensors_file::{SafetensorsFile, TensorBatch};
    use crate::spectrum::{self, Method, Target};

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
        let views = inputs.views();
        let shapes: Vec<(usize, usize)> = views.iter().map(MatrixView::shape).collect();
        let results = run_items(py, &shapes, threads, |chunk, par| {
            let chunk_views: Vec<MatrixView<'_>> = chunk.iter().map(|&i| views[i]).collect();
            spectrum::spectra(&chunk_views, method, false, Target::SingularValues, par)
                .into_iter()
                .map(|r| r.map(|s| s.sigma))
                .collect()
        })?;
        let (values, errors) = split_errors(py, results);
        let values = values
            .into_iter()
            .map(|v| v.map(|s| s.into_pyarray(py)))
            .collect();
        Ok((values, errors))
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
        let options = SpectralOptions::parse(power, normalize, center, method, need_rank, threads)?;
        let inputs = borrow_inputs(&arrays)?;
        let views = inputs.views();
        let shapes: Vec<(usize, usize)> = views.iter().map(MatrixView::shape).collect();
        let results = run_items(py, &shapes, options.threads, |chunk, par| {
            let chunk_views: Vec<MatrixView<'_>> = chunk.iter().map(|&i| views[i]).collect();
            spectrum::spectra(
                &chunk_views,
                options.method,
                options.center,
                options.target,
                par,
            )
        })?;
        spectral_columns(py, &shapes, results, options.spec)
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
        let file = py.detach(|| SafetensorsFile::open(path))?;
        let header = file.header();
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

    /// Like `spectral_batch`, for tensors of safetensors files:
    /// `tensors` is `[(path, name, rows, cols)]`, each tensor seen as the
    /// row-major `rows x cols` matrix (rows * cols must be its element count).
    /// Tensors of several files (checkpoints) may be mixed, so that many small
    /// checkpoints share one parallel batch; each file is opened and its header
    /// validated once. F16 and BF16 are decoded on the fly, and each tensor is
    /// read only while it is computed.
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
        let options = SpectralOptions::parse(power, normalize, center, method, need_rank, threads)?;
        let requests = tensors
            .iter()
            .map(|(path, name, rows, cols)| (path.as_str(), name.as_str(), *rows, *cols));
        let batch = py.detach(|| TensorBatch::resolve(requests))?;
        let shapes = batch.shapes();
        let results = run_items(py, &shapes, options.threads, |chunk, par| {
            batch.spectra(chunk, options.method, options.center, options.target, par)
        })?;
        spectral_columns(py, &shapes, results, options.spec)
    }

    /// `‖A‖_F²` of one 2-D float32/float64 array, accumulated in float64 on
    /// `threads` threads with the GIL released (the approximate entropy's
    /// normalization).
    #[pyfunction]
    #[pyo3(signature = (array, *, threads = None))]
    fn frobenius_squared(
        py: Python<'_>,
        array: Bound<'_, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<f64> {
        let inputs = borrow_inputs(std::slice::from_ref(&array))?;
        let views = inputs.views();
        let threads = resolve_threads(threads)?;
        let total = py.detach(|| match views[0] {
            MatrixView::F32(m) => crate::norms::frobenius_squared(m, threads),
            MatrixView::F64(m) => crate::norms::frobenius_squared(m, threads),
            MatrixView::Packed(_) => unreachable!("numpy arrays are never packed"),
        })?;
        Ok(total)
    }

    /// `a @ v` in float32 for a 2-D float32 array `a` whose rows are
    /// contiguous (C order, or rows sliced from a C-ordered array) and a
    /// float32 block `v` of `a.shape[1]` rows and 1 to 24 columns, on
    /// `threads` threads with the GIL released: the approximate entropy's
    /// Lanczos products (`narrow_product.rs` says why not BLAS). With
    /// `transposed=True`, `a.T @ v` for `v` of `a.shape[0]` rows.
    #[pyfunction]
    #[pyo3(signature = (a, v, *, transposed = false, threads = None))]
    fn narrow_product<'py>(
        py: Python<'py>,
        a: Bound<'py, PyAny>,
        v: Bound<'py, PyAny>,
        transposed: bool,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, numpy::PyArray2<f32>>> {
        use crate::narrow_product::{WIDEST, narrow_product, narrow_transposed_product};
        let inputs = borrow_inputs(&[a, v])?;
        let views = inputs.views();
        let (MatrixView::F32(a), MatrixView::F32(v)) = (views[0], views[1]) else {
            return Err(DTypeError::new_err(
                "narrow_product multiplies float32 arrays only",
            ));
        };
        let (rows, cols) = a.shape();
        let (inner, outer) = if transposed {
            (rows, cols)
        } else {
            (cols, rows)
        };
        let b = v.ncols();
        if v.nrows() != inner || b == 0 || b > WIDEST {
            return Err(ShapeError::new_err(format!(
                "expected a block of {inner} rows and 1 to {WIDEST} columns, got {:?}",
                v.shape()
            )));
        }
        let stride = a.row_stride();
        let aligned = (a.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f32>());
        if rows == 0 || cols == 0 || a.col_stride() != 1 || stride < cols as isize || !aligned {
            return Err(ShapeError::new_err(format!(
                "expected a non-empty aligned matrix with contiguous rows, got shape ({rows}, {cols}) with element strides ({stride}, {})",
                a.col_stride()
            )));
        }
        let stride = stride.unsigned_abs();
        // SAFETY: rows are `stride` elements apart and hold `cols` contiguous
        // elements each (checked above), all inside the array borrowed by
        // `inputs`, which outlives this slice.
        let values = unsafe { std::slice::from_raw_parts(a.as_ptr(), (rows - 1) * stride + cols) };
        let block: Vec<f32> = (0..inner)
            .flat_map(|k| (0..b).map(move |j| v[(k, j)]))
            .collect();
        let threads = resolve_threads(threads)?;
        let product = py.detach(|| {
            if transposed {
                narrow_transposed_product(values, rows, cols, stride, &block, b, threads)
            } else {
                narrow_product(values, rows, cols, stride, &block, b, threads)
            }
        })?;
        product.into_pyarray(py).reshape([outer, b])
    }

    /// The thread count used when `threads=None`: `GROKSPEC_NUM_THREADS` if
    /// set, else the cores this process may use.
    #[pyfunction]
    fn default_threads() -> PyResult<usize> {
        Ok(batch::default_threads()?)
    }

    /// The vector path of the hand-written kernels in use: "avx512", "avx2" or
    /// "portable" (the CPU's best, narrowed by `GROKSPEC_ISA`).
    #[pyfunction]
    fn isa() -> &'static str {
        crate::simd::isa().name()
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
        m.add_function(wrap_pyfunction!(isa, m)?)?;
        m.add_function(wrap_pyfunction!(frobenius_squared, m)?)?;
        m.add_function(wrap_pyfunction!(narrow_product, m)?)?;
        m.add_function(wrap_pyfunction!(safetensors_header, m)?)?;
        m.add_function(wrap_pyfunction!(safetensors_spectral, m)?)?;
        m.add_function(wrap_pyfunction!(_panic_inside_engine, m)?)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("NARROW_WIDEST", crate::narrow_product::WIDEST)?;
        Ok(())
    }
}
