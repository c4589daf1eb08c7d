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
use faer::{Accum, Mat, Par};

use crate::entropy::{self, EntropySpec, Normalize, Stats};
use crate::error::Error;
use crate::matrix::{MatrixView, Prepared};
use crate::symeig::{SymEigParams, tridiagonalize};
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
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// Descending, `min(rows, cols)` of them, in the input's units.
    pub sigma: Vec<f64>,
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
        entropy::stats(&self.sigma, self.shape.0, self.shape.1, self.epsilon, spec)
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
    let mut staged: Vec<Result<Staged<'_>, Error>> = views
        .iter()
        .map(|&view| {
            let prepared = Prepared::new(view, center)?;
            if method == Method::Svd {
                let sigma = svd_values(&prepared, par)?;
                return Ok(Staged::Done(finish(&prepared, sigma, Method::Svd)));
            }
            Ok(Staged::Tridiagonal(gram_tridiagonal(prepared, par)))
        })
        .collect();
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

fn finish(prepared: &Prepared<'_>, sigma_scaled: Vec<f64>, method: Method) -> Spectrum {
    let view = prepared.view();
    Spectrum {
        sigma: sigma_scaled
            .into_iter()
            .map(|s| s / prepared.scale())
            .collect(),
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

fn gram_tridiagonal(prepared: Prepared<'_>, par: Par) -> GramTridiagonal<'_> {
    let (rows, cols) = prepared.tall_shape();
    let mut gram = Mat::<f64>::zeros(cols, cols);
    let block = block_rows(rows, cols);
    // A row-major block when the source is row-major keeps the copy sequential.
    let mut buffer = if prepared.prefers_row_major() {
        Mat::<f64>::zeros(cols, block)
    } else {
        Mat::<f64>::zeros(block, cols)
    };
    let mut start = 0;
    while start < rows {
        let len = block.min(rows - start);
        let mut rows_block = if prepared.prefers_row_major() {
            buffer.as_mut().transpose_mut().subrows_mut(0, len)
        } else {
            buffer.as_mut().subrows_mut(0, len)
        };
        prepared.write_rows(start, rows_block.rb_mut());
        let rows_block = rows_block.into_const();
        triangular::matmul(
            gram.as_mut(),
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
    let (diag, subdiag) = tridiagonalize(gram.as_mut(), par, SymEigParams::for_dimension(cols));
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
}
