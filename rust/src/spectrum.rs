//! Singular values of one matrix, by SVD or through the Gram matrix, and the
//! `auto` method that takes the Gram route whenever it can prove the result
//! meets grokspec's accuracy bar.
//!
//! Everything is computed in f64 whatever the input type: the Gram route
//! squares the condition number, and an f32 eigensolver would put noise of
//! ~1e-7 * lambda_max on every small eigenvalue (enough to move the entropy
//! of an ill-conditioned 4096 x 4096 matrix by more than 1e-6).

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::svd::{self, ComputeSvdVectors};
use faer::prelude::{IntoConst, ReborrowMut};
use faer::{Accum, MatMut, Par};

use crate::entropy::{self, EntropySpec, Normalize, Stats};
use crate::error::Error;
use crate::matrix::{MatrixView, Prepared};
use crate::symeig::{SymEigParams, tridiagonalize_column_major};
use crate::tridiagonal::tridiagonal_eigenvalues_many;

/// How the singular values are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The Gram route when its error bound certifies the requested quantity,
    /// the SVD otherwise.
    Auto,
    /// Values-only SVD of the matrix.
    Svd,
    /// Eigenvalues of the Gram matrix of the short side (2-4x cheaper).
    Gram,
}

impl Method {
    /// Parses the Python-facing name.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "auto" => Ok(Self::Auto),
            "svd" => Ok(Self::Svd),
            "gram" => Ok(Self::Gram),
            other => Err(Error::InvalidArgument(format!(
                "method must be one of 'auto', 'svd', 'gram', got {other:?}"
            ))),
        }
    }

    /// The Python-facing name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Svd => "svd",
            Self::Gram => "gram",
        }
    }
}

/// The accuracy `auto` guarantees for the normalized entropy; the public
/// bar is 1e-6, and the margin covers the bound's own rounding model.
pub const ENTROPY_TOLERANCE: f64 = 1e-7;

/// What will be computed from the spectrum, which decides whether the Gram
/// route is accurate enough under `Method::Auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The singular values themselves, to `min(1e-5, 100 eps) * sigma_max`.
    SingularValues,
    /// The entropy (and, if `need_rank`, a certain numerical rank).
    Entropy {
        /// The entropy's definition.
        spec: EntropySpec,
        /// Whether the numerical rank must be exact.
        need_rank: bool,
    },
}

/// The singular values of one matrix and how they were obtained.
///
/// They are computed for `scale * A`, with `scale` the power of two that
/// brings the largest entry of `A` near 1 (`matrix::exact_scale`), and only
/// then unscaled (exactly). Since `sigma_max <= ||A||_F <= sqrt(rows * cols)
/// max |a_ij|`, an unscaled value can exceed f64::MAX (and become infinite)
/// only for entries within a factor `sqrt(rows * cols)` of f64::MAX; and a
/// singular value far below the largest of a denormal input rounds in the
/// denormal range. The statistics are computed from the scaled values, so
/// neither case touches the entropy or the ranks.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// Descending, `min(rows, cols)` of them, in the input's units.
    pub sigma: Vec<f64>,
    /// The same singular values of `scale * A`.
    pub scaled_sigma: Vec<f64>,
    /// The power of two the input was multiplied by.
    pub scale: f64,
    /// `Svd` or `Gram` (never `Auto`).
    pub method: Method,
    /// `(rows, cols)` of the input.
    pub shape: (usize, usize),
    /// Machine epsilon of the input's element type.
    pub epsilon: f64,
}

impl Spectrum {
    /// Section 1's statistics of this spectrum.
    pub fn stats(&self, spec: EntropySpec) -> Stats {
        let (rows, cols) = self.shape;
        let mut stats = entropy::stats(&self.scaled_sigma, rows, cols, self.epsilon, spec);
        stats.sigma_max /= self.scale;
        stats.frobenius_norm /= self.scale;
        stats
    }
}

/// Computes the singular values of `view` (centred first if `center`).
pub fn spectrum(
    view: MatrixView<'_>,
    method: Method,
    center: bool,
    target: Target,
    par: Par,
) -> Result<Spectrum, Error> {
    spectra(&[view], method, center, target, par)
        .pop()
        .expect("one result per matrix")
}

/// The singular values of several matrices, computed in the calling thread
/// (with `par` inside each). On the Gram route the tridiagonal eigenvalue
/// problems of all of them are solved together, which keeps the core busy
/// (see `tridiagonal`).
pub fn spectra(
    views: &[MatrixView<'_>],
    method: Method,
    center: bool,
    target: Target,
    par: Par,
) -> Vec<Result<Spectrum, Error>> {
    // Stage 1: each matrix to its tridiagonal (or straight to a result).
    let mut workspace = GramWorkspace::default();
    let mut staged: Vec<Result<Staged<'_>, Error>> = views
        .iter()
        .map(|&view| {
            let prepared = Prepared::new(view, center)?;
            if method == Method::Svd {
                let sigma = svd_values(&prepared, par)?;
                return Ok(Staged::Done(finish(&prepared, sigma, Method::Svd)));
            }
            Ok(Staged::Tridiagonal(gram_tridiagonal(
                prepared,
                par,
                &mut workspace,
            )))
        })
        .collect();
    // Free the Gram buffers now: stage 3 may fall back to an SVD, which
    // needs its own copy of a matrix.
    drop(workspace);
    // Stage 2: the eigenvalues of every tridiagonal at once.
    let problems: Vec<(&[f64], &[f64])> = staged
        .iter()
        .filter_map(|s| match s {
            Ok(Staged::Tridiagonal(t)) => Some((t.diag.as_slice(), t.subdiag.as_slice())),
            _ => None,
        })
        .collect();
    let mut eigenvalues = tridiagonal_eigenvalues_many(&problems).into_iter();
    // Stage 3: certify and finish each.
    staged
        .drain(..)
        .map(|stage| match stage? {
            Staged::Done(spectrum) => Ok(spectrum),
            Staged::Tridiagonal(t) => {
                let mut lambda = eigenvalues.next().expect("one result per problem")?;
                lambda.reverse();
                let gram = t.eigenvalues(lambda);
                if method == Method::Gram || gram.certifies(target, t.prepared.view()) {
                    Ok(finish(&t.prepared, gram.sigma(), Method::Gram))
                } else {
                    let sigma = svd_values(&t.prepared, par)?;
                    Ok(finish(&t.prepared, sigma, Method::Svd))
                }
            }
        })
        .collect()
}

/// A matrix between the stages of `spectra`.
enum Staged<'a> {
    Done(Spectrum),
    Tridiagonal(GramTridiagonal<'a>),
}

/// The Gram matrix of a prepared input, reduced to tridiagonal form.
struct GramTridiagonal<'a> {
    prepared: Prepared<'a>,
    diag: Vec<f64>,
    subdiag: Vec<f64>,
    trace: f64,
}

impl GramTridiagonal<'_> {
    /// Attaches the error bound to the (descending) eigenvalues.
    fn eigenvalues(&self, lambda: Vec<f64>) -> GramEigenvalues {
        let (rows, cols) = self.prepared.tall_shape();
        let lambda_max = lambda.first().copied().unwrap_or(0.0).max(0.0);
        // Rounding model: the product's error grows like sqrt(rows) * eps * ||B||_F^2
        // (Higham & Mary's probabilistic bound; blocked summation does better),
        // and the orthogonal reductions add a backward error ~ cols * eps * ||G||_2.
        // The factor 4 is a safety margin.
        let delta =
            4.0 * f64::EPSILON * ((rows as f64).sqrt() * self.trace + cols as f64 * lambda_max);
        GramEigenvalues::with_null_space_zeroed(lambda, delta, cols)
    }
}

fn finish(prepared: &Prepared<'_>, scaled_sigma: Vec<f64>, method: Method) -> Spectrum {
    let view = prepared.view();
    let scale = prepared.scale();
    Spectrum {
        sigma: scaled_sigma.iter().map(|s| s / scale).collect(),
        scaled_sigma,
        scale,
        method,
        shape: view.shape(),
        epsilon: view.epsilon(),
    }
}

/// The eigenvalues of the scaled Gram matrix with an absolute error bound.
struct GramEigenvalues {
    /// Descending eigenvalues of `B^T B` for the scaled tall `B`.
    lambda: Vec<f64>,
    /// Bound on `|lambda_i(computed) - lambda_i(exact)|`.
    delta: f64,
}

impl GramEigenvalues {
    fn sigma(&self) -> Vec<f64> {
        self.lambda.iter().map(|l| l.max(0.0).sqrt()).collect()
    }

    /// Whether these eigenvalues meet the accuracy bar for `target`.
    fn certifies(&self, target: Target, view: MatrixView<'_>) -> bool {
        let lambda_max = self.lambda.first().copied().unwrap_or(0.0);
        if lambda_max <= 0.0 {
            // A zero matrix is exact either way.
            return true;
        }
        match target {
            Target::SingularValues => {
                // |sqrt(l + d) - sqrt(l)| <= sqrt(d): relative to sigma_max.
                let tolerance = (100.0 * view.epsilon()).min(1e-5);
                (self.delta / lambda_max).sqrt() <= tolerance
            }
            Target::Entropy { spec, need_rank } => {
                let (rows, cols) = view.shape();
                let rank_certain = !(need_rank || spec.normalize == Normalize::Rank)
                    || self.rank_is_certain(rows.max(cols), view.epsilon());
                if !rank_certain {
                    return false;
                }
                let k = match spec.normalize {
                    Normalize::Dim | Normalize::Rank | Normalize::None => self.lambda.len(),
                    Normalize::Cols => cols,
                };
                let nats_bound = entropy::entropy_error_bound(&self.lambda, self.delta, spec.power);
                k <= 1 || nats_bound / (k as f64).ln() <= ENTROPY_TOLERANCE
            }
        }
    }

    /// True when no eigenvalue is within the error bound of the rank
    /// threshold, so the numerical rank cannot be wrong.
    fn rank_is_certain(&self, long_side: usize, epsilon: f64) -> bool {
        let lambda_max = self.lambda[0];
        let factor = (long_side as f64 * epsilon).powi(2);
        let (low, high) = (
            (lambda_max - self.delta) * factor - self.delta,
            (lambda_max + self.delta) * factor + self.delta,
        );
        !self.lambda.iter().any(|&l| l >= low && l <= high)
    }
}

/// Rows converted per block when forming the Gram matrix: ~32 MB of f64,
/// and at least 256 rows so that each block product stays efficient.
fn block_rows(rows: usize, cols: usize) -> usize {
    ((1 << 22) / cols).max(256).min(rows)
}

/// Narrower row-major data keeps row-major blocks (see `gram_tridiagonal`).
const ROW_MAJOR_BELOW: usize = 128;

/// The Gram matrix and the float64 row blocks of one matrix after another,
/// in buffers kept for the whole of a `spectra` call: fresh ones per matrix
/// were fresh pages from the system each time (a 384² Gram matrix and its
/// row block are 1.2 MB each), and zeroing them cost page faults worth ~8%
/// of a batch of 384 x 384 matrices.
#[derive(Default)]
struct GramWorkspace {
    gram: Vec<f64>,
    rows: Vec<f64>,
}

/// The first `len` values of `buffer`, grown as needed (with zeros).
fn prefix(buffer: &mut Vec<f64>, len: usize) -> &mut [f64] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

fn gram_tridiagonal<'a>(
    prepared: Prepared<'a>,
    par: Par,
    workspace: &mut GramWorkspace,
) -> GramTridiagonal<'a> {
    let (rows, cols) = prepared.tall_shape();
    // Only the lower triangle is written and read (the previous matrix's
    // values may linger above the diagonal).
    let gram_storage = prefix(&mut workspace.gram, cols * cols);
    let mut gram = MatMut::from_column_major_slice_mut(gram_storage, cols, cols);
    let block = block_rows(rows, cols);
    // Column-major blocks, except for narrow row-major data. faer's product
    // of a row-major block with its transpose took twice as long at 4096²
    // (2 threads: 1.25-2.05 s against 0.77-0.93 s including the transposing
    // copy; numpy's C order makes that the common case). Since the copy
    // writes eight rows at a time (`Prepared::write_rows`) column-major
    // blocks win from 128 columns on too (`examples/batch_probe.rs`, one
    // thread, µs per matrix, row-major / column-major blocks, two rounds:
    // 512x128 594 / 552, 384x384 6024-6060 / 5649, 1536x384 12746-12954 /
    // 10811-10819, 4096x256 11545-12533 / 9905-10119); below, they tie
    // (128x128, 1024x96, 4096x64) or the sequential copy wins (8192x64:
    // 1763-2193 / 1826-2246).
    let row_major = prepared.prefers_row_major() && cols < ROW_MAJOR_BELOW;
    let rows_storage = prefix(&mut workspace.rows, block * cols);
    let mut buffer = if row_major {
        MatMut::from_column_major_slice_mut(rows_storage, cols, block).transpose_mut()
    } else {
        MatMut::from_column_major_slice_mut(rows_storage, block, cols)
    };
    let mut start = 0;
    while start < rows {
        let len = block.min(rows - start);
        let mut rows_block = buffer.rb_mut().subrows_mut(0, len);
        prepared.write_rows(start, rows_block.rb_mut());
        let rows_block = rows_block.into_const();
        triangular::matmul(
            gram.rb_mut(),
            BlockStructure::TriangularLower,
            if start == 0 {
                Accum::Replace
            } else {
                Accum::Add
            },
            rows_block.transpose(),
            BlockStructure::Rectangular,
            rows_block,
            BlockStructure::Rectangular,
            1.0,
            par,
        );
        start += len;
    }
    let trace: f64 = (0..cols).map(|i| gram[(i, i)]).sum();
    let (diag, subdiag) = tridiagonalize_column_major(
        &mut workspace.gram[..cols * cols],
        cols,
        par,
        SymEigParams::for_dimension(cols),
    );
    GramTridiagonal {
        prepared,
        diag,
        subdiag,
        trace,
    }
}

impl GramEigenvalues {
    /// Sets to zero the eigenvalues that are rounding noise of an exactly
    /// rank-deficient matrix.
    ///
    /// The exact zero eigenvalues of `B^T B` come out as noise of a few
    /// `eps * lambda_max`; their square roots (~1e-8 sigma_max) would weigh in
    /// an entropy with `power < 2`. They are zeroed only when at least three
    /// decades separate them from the smallest eigenvalue above the noise
    /// ceiling `tau = 8 sqrt(n) eps lambda_max`; a spectrum that runs smoothly
    /// through the ceiling is left alone, since its small values are still
    /// more accurate than zero. The error bound grows by `tau` to cover this.
    fn with_null_space_zeroed(mut lambda: Vec<f64>, delta: f64, n: usize) -> Self {
        let lambda_max = lambda.first().copied().unwrap_or(0.0).max(0.0);
        let tau = 8.0 * (n as f64).sqrt() * f64::EPSILON * lambda_max;
        let noise_from = lambda.iter().position(|&l| l <= tau);
        if let Some(r) = noise_from
            && r > 0
            && lambda[r - 1] >= 1e3 * tau
        {
            lambda[r..].fill(0.0);
        }
        Self {
            lambda,
            delta: delta + tau,
        }
    }
}

fn svd_values(prepared: &Prepared<'_>, par: Par) -> Result<Vec<f64>, Error> {
    let tall = prepared.to_tall_f64();
    let (rows, cols) = tall.shape();
    let mut sigma = faer::diag::Diag::<f64>::zeros(cols);
    let scratch = svd::svd_scratch::<f64>(
        rows,
        cols,
        ComputeSvdVectors::No,
        ComputeSvdVectors::No,
        par,
        Default::default(),
    );
    let mut buffer = MemBuffer::new(scratch);
    svd::svd(
        tall.as_ref(),
        sigma.as_mut(),
        None,
        None,
        par,
        MemStack::new(&mut buffer),
        Default::default(),
    )
    .map_err(|_| Error::NoConvergence(format!("the SVD did not converge ({rows}x{cols})")))?;
    let mut sigma: Vec<f64> = sigma.column_vector().iter().map(|s| s.abs()).collect();
    sigma.sort_unstable_by(|x, y| y.total_cmp(x));
    Ok(sigma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// nalgebra's SVD: an independent implementation of the reference.
    fn oracle_sigma(a: &Mat<f64>) -> Vec<f64> {
        let m = nalgebra::DMatrix::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)]);
        let mut s: Vec<f64> = m.singular_values().iter().copied().collect();
        s.sort_unstable_by(|x, y| y.total_cmp(x));
        s
    }

    /// A matrix with prescribed singular values `sigma` (random orthogonal factors).
    fn with_singular_values(rows: usize, cols: usize, sigma: &[f64], seed: u64) -> Mat<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let u = Mat::<f64>::from_fn(rows, rows, |_, _| rng.random::<f64>() - 0.5)
            .qr()
            .compute_Q();
        let v = Mat::<f64>::from_fn(cols, cols, |_, _| rng.random::<f64>() - 0.5)
            .qr()
            .compute_Q();
        let s = Mat::<f64>::from_fn(rows, cols, |i, j| if i == j { sigma[i] } else { 0.0 });
        &u * &s * v.transpose()
    }

    fn entropy_target(power: f64, normalize: Normalize) -> Target {
        Target::Entropy {
            spec: EntropySpec::new(power, normalize).unwrap(),
            need_rank: false,
        }
    }

    #[test]
    fn both_methods_match_nalgebra_on_tall_wide_and_square() {
        let mut rng = StdRng::seed_from_u64(11);
        for &(r, c) in &[
            (1, 1),
            (1, 7),
            (7, 1),
            (40, 13),
            (13, 40),
            (64, 64),
            (700, 600),
        ] {
            let a = Mat::<f64>::from_fn(r, c, |_, _| rng.random::<f64>() * 2.0 - 1.0);
            let want = oracle_sigma(&a);
            for method in [Method::Svd, Method::Gram] {
                let got = spectrum(
                    MatrixView::F64(a.as_ref()),
                    method,
                    false,
                    Target::SingularValues,
                    Par::Seq,
                )
                .unwrap();
                assert_eq!(got.sigma.len(), r.min(c));
                for (g, w) in got.sigma.iter().zip(&want) {
                    let tol = if method == Method::Svd { 1e-12 } else { 1e-7 };
                    assert!(
                        (g - w).abs() <= tol * want[0],
                        "{method:?} {r}x{c}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn matrices_of_many_shapes_in_one_call_match_each_alone() {
        // One `spectra` call reuses its Gram buffers from matrix to matrix:
        // a smaller matrix after a larger one finds old values above its
        // diagonal and past its end, which must not leak into its result.
        let mut rng = StdRng::seed_from_u64(12);
        let shapes = [
            (300, 200),
            (20, 40),
            (90, 90),
            (5, 3),
            (150, 160),
            (700, 600),
            (64, 8),
        ];
        let matrices: Vec<Mat<f64>> = shapes
            .iter()
            .map(|&(r, c)| Mat::<f64>::from_fn(r, c, |_, _| rng.random::<f64>() * 2.0 - 1.0))
            .collect();
        let views: Vec<MatrixView<'_>> = matrices
            .iter()
            .map(|a| MatrixView::F64(a.as_ref()))
            .collect();
        for par in [Par::Seq, Par::rayon(2)] {
            let together = spectra(&views, Method::Gram, false, Target::SingularValues, par);
            for ((a, view), got) in matrices.iter().zip(&views).zip(together) {
                let got = got.unwrap().sigma;
                let alone =
                    spectrum(*view, Method::Gram, false, Target::SingularValues, par).unwrap();
                assert_eq!(got, alone.sigma, "{:?}", a.shape());
                let want = oracle_sigma(a);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-7 * want[0],
                        "{:?}: {g} vs {w}",
                        a.shape()
                    );
                }
            }
        }
    }

    #[test]
    fn auto_takes_the_gram_route_only_when_it_is_certified() {
        let sigma: Vec<f64> = (0..60)
            .map(|i| 10f64.powf(-8.0 * i as f64 / 59.0))
            .collect();
        let a = with_singular_values(80, 60, &sigma, 5);
        let view = MatrixView::F64(a.as_ref());
        let by = |target| {
            spectrum(view, Method::Auto, false, target, Par::Seq)
                .unwrap()
                .method
        };
        // Power 2: tiny singular values barely move the entropy -> Gram is enough.
        assert_eq!(by(entropy_target(2.0, Normalize::Dim)), Method::Gram);
        // Power 1 with sigma down to 1e-8: Gram's sqrt(noise) is not certifiable.
        assert_eq!(by(entropy_target(1.0, Normalize::Dim)), Method::Svd);
        // float64 singular values to 100 eps: only the SVD.
        assert_eq!(by(Target::SingularValues), Method::Svd);
        // The rank of a float64 matrix with sigma_min = 1e-8 sigma_max is ambiguous for Gram.
        assert_eq!(
            by(Target::Entropy {
                spec: EntropySpec::new(2.0, Normalize::Dim).unwrap(),
                need_rank: true
            }),
            Method::Svd
        );
    }

    #[test]
    fn auto_entropy_is_within_the_bar_for_ill_conditioned_float32() {
        // Condition number 1e8, float32 input: the reference is float64 on the same values.
        let sigma: Vec<f64> = (0..150)
            .map(|i| 10f64.powf(-8.0 * i as f64 / 149.0))
            .collect();
        let a64 = with_singular_values(300, 150, &sigma, 9);
        let a32 = Mat::<f32>::from_fn(300, 150, |i, j| a64[(i, j)] as f32);
        let exact = Mat::<f64>::from_fn(300, 150, |i, j| f64::from(a32[(i, j)]));
        let want_sigma = oracle_sigma(&exact);
        for power in [1.0, 2.0] {
            let spec = EntropySpec::new(power, Normalize::Dim).unwrap();
            let want = entropy::stats(&want_sigma, 300, 150, f64::from(f32::EPSILON), spec).entropy;
            let target = Target::Entropy {
                spec,
                need_rank: false,
            };
            let got = spectrum(
                MatrixView::F32(a32.as_ref()),
                Method::Auto,
                false,
                target,
                Par::Seq,
            )
            .unwrap();
            let got = got.stats(spec).entropy;
            assert!((got - want).abs() <= 1e-6, "power {power}: {got} vs {want}");
        }
    }

    #[test]
    fn gram_is_exact_on_the_null_space_of_rank_deficient_matrices() {
        let mut rng = StdRng::seed_from_u64(4);
        let left = Mat::<f64>::from_fn(150, 5, |_, _| rng.random::<f64>() - 0.5);
        let right = Mat::<f64>::from_fn(5, 120, |_, _| rng.random::<f64>() - 0.5);
        let a = &left * &right;
        let got = spectrum(
            MatrixView::F64(a.as_ref()),
            Method::Gram,
            false,
            Target::SingularValues,
            Par::Seq,
        )
        .unwrap();
        assert!(got.sigma[..5].iter().all(|&s| s > 0.0));
        assert!(
            got.sigma[5..].iter().all(|&s| s == 0.0),
            "{:?}",
            &got.sigma[..8]
        );
        // A spectrum running smoothly down through the noise is not truncated.
        let sigma: Vec<f64> = (0..60)
            .map(|i| 10f64.powf(-9.0 * i as f64 / 59.0))
            .collect();
        let smooth = with_singular_values(80, 60, &sigma, 1);
        let got = spectrum(
            MatrixView::F64(smooth.as_ref()),
            Method::Gram,
            false,
            Target::SingularValues,
            Par::Seq,
        )
        .unwrap();
        assert!(got.sigma.iter().filter(|&&s| s == 0.0).count() < 5);
    }

    #[test]
    fn extreme_magnitudes_neither_overflow_nor_underflow() {
        let sigma = [3.0, 2.0, 1.0];
        let base = with_singular_values(5, 3, &sigma, 2);
        for scale in [1e-200, 1e200] {
            let a = Mat::<f64>::from_fn(5, 3, |i, j| base[(i, j)] * scale);
            for method in [Method::Svd, Method::Gram] {
                let got = spectrum(
                    MatrixView::F64(a.as_ref()),
                    method,
                    false,
                    Target::SingularValues,
                    Par::Seq,
                )
                .unwrap();
                for (g, w) in got.sigma.iter().zip(&sigma) {
                    assert!(
                        (g / (w * scale) - 1.0).abs() < 1e-7,
                        "{method:?} at {scale}: {g}"
                    );
                }
            }
        }
    }
    /// `a` times the power of two that brings its largest entry into
    /// [1/2, 1), applied in exact steps of at most 2^±64 (independent of the
    /// engine's own `exact_scale`): the matrix a float64 reference works on.
    fn scaled_into_unit_range(a: &Mat<f64>) -> Mat<f64> {
        let max = a
            .col_iter()
            .flat_map(|c| c.iter().map(|v| v.abs()).collect::<Vec<_>>())
            .fold(0.0, f64::max);
        let mut exponent = 0i32;
        let mut m = max;
        while m >= 1.0 {
            m /= 2.0;
            exponent -= 1;
        }
        while m < 0.5 {
            m *= 2.0;
            exponent += 1;
        }
        let mut out = a.clone();
        while exponent != 0 {
            let step = exponent.clamp(-64, 64);
            let factor = 2f64.powi(step);
            out = Mat::from_fn(out.nrows(), out.ncols(), |i, j| out[(i, j)] * factor);
            exponent -= step;
        }
        out
    }

    /// The normalized entropy (`normalize = "dim"`) of singular values near 1.
    fn reference_entropy(sigma: &[f64], power: f64) -> f64 {
        let w: Vec<f64> = sigma.iter().map(|s| s.powf(power)).collect();
        let total: f64 = w.iter().sum();
        let h: f64 = w
            .iter()
            .map(|x| x / total)
            .filter(|&p| p > 0.0)
            .map(|p| -p * p.ln())
            .sum();
        h / (sigma.len() as f64).ln()
    }

    fn entropy_of(view: MatrixView<'_>, method: Method, power: f64) -> Result<f64, Error> {
        let spec = EntropySpec::new(power, Normalize::Dim).unwrap();
        let target = Target::Entropy {
            spec,
            need_rank: false,
        };
        Ok(spectrum(view, method, false, target, Par::Seq)?
            .stats(spec)
            .entropy)
    }

    #[test]
    fn the_reported_extreme_scale_cases_are_right_by_every_method() {
        let m =
            |rows: [[f64; 2]; 2], scale: f64| Mat::<f64>::from_fn(2, 2, |i, j| rows[i][j] * scale);
        let h_31_12 = 0.550_047_759_582_757_2; // [[3,1],[1,2]]: p = (0.8727, 0.1273)
        let h_diag_12 = 0.721_928_094_887_362_3; // diag(1, 2): p = (0.2, 0.8)
        let cases = [
            (m([[1.0, 1.0], [1.0, -1.0]], 1e200), 1.0),
            (m([[3.0, 1.0], [1.0, 2.0]], 1e160), h_31_12),
            (m([[1.0, 0.0], [0.0, 2.0]], 1e-300), h_diag_12),
            // Denormal entries: 1e-310 rounds to ~44 bits, 3 and 2 times the
            // smallest denormal are exact.
            (m([[3.0, 1.0], [1.0, 2.0]], 1e-310), h_31_12),
            (m([[3.0, 1.0], [1.0, 2.0]], f64::from_bits(1)), h_31_12),
            (m([[1.0, 0.0], [0.0, 2.0]], f64::from_bits(1)), h_diag_12),
        ];
        for (a, want) in &cases {
            for method in [Method::Svd, Method::Gram, Method::Auto] {
                let got = entropy_of(MatrixView::F64(a.as_ref()), method, 2.0)
                    .unwrap_or_else(|e| panic!("{method:?} on {a:?}: {e}"));
                assert!(
                    (got - want).abs() <= 1e-9,
                    "{method:?} on {a:?}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn extreme_and_mixed_scales_match_a_float64_reference_on_the_scaled_matrix() {
        let mut rng = StdRng::seed_from_u64(3);
        let base = Mat::<f64>::from_fn(40, 24, |_, _| rng.random::<f64>() * 2.0 - 1.0);
        let scaled = |factor: f64| Mat::<f64>::from_fn(40, 24, |i, j| base[(i, j)] * factor);
        let mut mixed = scaled(1.0);
        for j in 0..24 {
            mixed[(0, j)] *= 1e200;
        }
        let mut mixed_tiny = scaled(1e-300);
        for i in 0..40 {
            mixed_tiny[(i, 3)] *= 1e-15; // a denormal column
        }
        let inputs = [
            ("1e300", scaled(1e300)),
            ("1e306", scaled(1e306)),
            ("1e-300", scaled(1e-300)),
            ("1e-310 (denormal)", scaled(1e-310)),
            ("1e-320 (denormal)", scaled(1e-320)),
            ("1e150", scaled(1e150)),
            ("mixed 1e200 row", mixed),
            ("mixed denormal column", mixed_tiny),
        ];
        for (name, a) in &inputs {
            let reference = scaled_into_unit_range(a);
            let want_sigma = oracle_sigma(&reference);
            for power in [1.0, 2.0] {
                let want = reference_entropy(&want_sigma, power);
                for method in [Method::Svd, Method::Gram, Method::Auto] {
                    let got = entropy_of(MatrixView::F64(a.as_ref()), method, power).unwrap();
                    assert!(
                        (got - want).abs() <= 1e-6,
                        "{name}, {method:?}, power {power}: {got} vs {want}"
                    );
                }
            }
            // The singular values come back in the input's units.
            let got = spectrum(
                MatrixView::F64(a.as_ref()),
                Method::Svd,
                false,
                Target::SingularValues,
                Par::Seq,
            )
            .unwrap();
            let ratio = got.sigma[0] / want_sigma[0];
            let factor = a[(0, 0)] / reference[(0, 0)];
            assert!(
                (ratio / factor - 1.0).abs() < 1e-12,
                "{name}: sigma_max {} vs {}",
                got.sigma[0],
                want_sigma[0] * factor
            );
            let stats = got.stats(EntropySpec::new(2.0, Normalize::Dim).unwrap());
            assert!(
                stats.sigma_max.is_finite() && stats.sigma_max > 0.0,
                "{name}"
            );
            assert!(
                stats.frobenius_norm.is_finite() && stats.frobenius_norm >= stats.sigma_max,
                "{name}"
            );
        }
    }

    #[test]
    fn float32_extremes_and_denormals() {
        let mut rng = StdRng::seed_from_u64(8);
        let base = Mat::<f64>::from_fn(30, 20, |_, _| rng.random::<f64>() * 2.0 - 1.0);
        for factor in [3e38_f64, 1e-40] {
            let a = Mat::<f32>::from_fn(30, 20, |i, j| (base[(i, j)] * factor) as f32);
            let exact = Mat::<f64>::from_fn(30, 20, |i, j| f64::from(a[(i, j)]));
            let want = reference_entropy(&oracle_sigma(&scaled_into_unit_range(&exact)), 2.0);
            for method in [Method::Svd, Method::Gram, Method::Auto] {
                let got = entropy_of(MatrixView::F32(a.as_ref()), method, 2.0).unwrap();
                assert!(
                    (got - want).abs() <= 1e-6,
                    "{factor:e} {method:?}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn singular_values_beyond_f64_are_infinite_but_the_statistics_hold() {
        // sigma = 3e308 > f64::MAX: the only way an unscaled value can overflow.
        let a = Mat::<f64>::from_fn(2, 2, |_, _| 1.5e308);
        let spec = EntropySpec::new(2.0, Normalize::Dim).unwrap();
        for method in [Method::Svd, Method::Gram] {
            let got = spectrum(
                MatrixView::F64(a.as_ref()),
                method,
                false,
                Target::SingularValues,
                Par::Seq,
            )
            .unwrap();
            assert_eq!(got.sigma[0], f64::INFINITY);
            let stats = got.stats(spec);
            assert_eq!(stats.entropy, 0.0);
            assert!((stats.stable_rank - 1.0).abs() < 1e-12);
            assert_eq!(stats.numerical_rank, 1);
        }
    }

    #[test]
    fn centring_survives_column_sums_that_overflow() {
        // 3000 rows of ~1e307: every column sum overflows in the input's units.
        let mut rng = StdRng::seed_from_u64(12);
        let base = Mat::<f64>::from_fn(3000, 6, |_, j| 1.0 + j as f64 + 0.5 * rng.random::<f64>());
        let huge = Mat::<f64>::from_fn(3000, 6, |i, j| base[(i, j)] * 1e307);
        let spec = EntropySpec::new(2.0, Normalize::Dim).unwrap();
        let target = Target::Entropy {
            spec,
            need_rank: false,
        };
        let entropy = |a: &Mat<f64>| {
            spectrum(
                MatrixView::F64(a.as_ref()),
                Method::Svd,
                true,
                target,
                Par::Seq,
            )
            .unwrap()
            .stats(spec)
            .entropy
        };
        let reference = scaled_into_unit_range(&huge);
        let means: Vec<f64> = (0..6)
            .map(|j| (0..3000).map(|i| reference[(i, j)]).sum::<f64>() / 3000.0)
            .collect();
        let centred = Mat::<f64>::from_fn(3000, 6, |i, j| reference[(i, j)] - means[j]);
        let want = reference_entropy(&oracle_sigma(&centred), 2.0);
        let got = entropy(&huge);
        assert!((got - want).abs() <= 1e-9, "{got} vs {want}");
        assert!((entropy(&base) - want).abs() <= 1e-9);
    }
}
