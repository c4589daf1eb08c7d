//! Spectral entropy and the other statistics of one singular-value spectrum
//! (grokspec's SPEC §1), and a bound on how far the entropy can move when
//! the spectrum is known only up to an absolute error.

use crate::error::Error;
use crate::matrix::exact_scale;

/// What `K` the entropy is divided by (`ln K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// `K = min(rows, cols)`.
    Dim,
    /// `K = cols` (the dimension of the covariance `A^T A`).
    Cols,
    /// `K` = the numerical rank (WeightWatcher's convention).
    Rank,
    /// Not normalized: the entropy in nats.
    None,
}

impl Normalize {
    /// Parses the Python-facing name.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "dim" => Ok(Self::Dim),
            "cols" => Ok(Self::Cols),
            "rank" => Ok(Self::Rank),
            "none" => Ok(Self::None),
            other => Err(Error::InvalidArgument(format!(
                "normalize must be one of 'dim', 'cols', 'rank', 'none', got {other:?}"
            ))),
        }
    }
}

/// The entropy's definition: weights `w_i = sigma_i ^ power`, normalized by
/// `ln K`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropySpec {
    /// 2 (eigenvalues of `A^T A`, the default) or 1 (singular values); any
    /// positive finite power is accepted.
    pub power: f64,
    /// Which `K`.
    pub normalize: Normalize,
}

impl EntropySpec {
    /// Checks the power.
    pub fn new(power: f64, normalize: Normalize) -> Result<Self, Error> {
        if !(power.is_finite() && power > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "power must be a positive number, got {power}"
            )));
        }
        Ok(Self { power, normalize })
    }
}

/// Every statistic of SPEC §1, from one decomposition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// The largest singular value.
    pub sigma_max: f64,
    /// `sqrt(sum sigma_i^2)`.
    pub frobenius_norm: f64,
    /// `||A||_F^2 / sigma_max^2` (NaN for a zero matrix).
    pub stable_rank: f64,
    /// The (normalized) entropy.
    pub entropy: f64,
    /// `exp(H)` with `H` in nats (NaN for a zero matrix).
    pub effective_rank: f64,
    /// `#{sigma_i > sigma_max * max(rows, cols) * eps}`.
    pub numerical_rank: usize,
}

/// The threshold below which a singular value does not count towards the
/// numerical rank: `sigma_max * max(rows, cols) * eps(dtype)`.
pub fn rank_threshold(sigma_max: f64, rows: usize, cols: usize, epsilon: f64) -> f64 {
    sigma_max * rows.max(cols) as f64 * epsilon
}

/// The statistics of the descending singular values `sigma` of a
/// `rows x cols` matrix whose element type has machine epsilon `epsilon`.
///
/// Any finite magnitudes: the values are first brought near 1 by an exact
/// power of two (`matrix::exact_scale`), so that their squares neither
/// overflow (singular values of 1e200) nor underflow (1e-300) — the entropy
/// and the ranks depend only on their ratios. `sigma_max` and
/// `frobenius_norm` are in the units of `sigma`; the norm is infinite only
/// when the true value exceeds f64::MAX.
pub fn stats(sigma: &[f64], rows: usize, cols: usize, epsilon: f64, spec: EntropySpec) -> Stats {
    let sigma_max = sigma.first().copied().unwrap_or(0.0);
    let unit = exact_scale(sigma_max);
    let scaled: Vec<f64> = sigma.iter().map(|s| s * unit).collect();
    let scaled_max = sigma_max * unit;
    let squares: f64 = scaled.iter().map(|s| s * s).sum();
    let threshold = rank_threshold(scaled_max, rows, cols, epsilon);
    let numerical_rank = scaled.iter().filter(|&&s| s > threshold).count();
    let nats = entropy_nats(&scaled, spec.power);
    let k = match spec.normalize {
        Normalize::Dim => Some(sigma.len()),
        Normalize::Cols => Some(cols),
        Normalize::Rank => Some(numerical_rank),
        Normalize::None => None,
    };
    let entropy = match k {
        // K = 1 (or 0): ln K = 0, and 0/0 is NaN by definition.
        Some(k) if k <= 1 => f64::NAN,
        Some(k) => nats / (k as f64).ln(),
        None => nats,
    };
    Stats {
        sigma_max,
        frobenius_norm: squares.sqrt() / unit,
        stable_rank: if scaled_max > 0.0 {
            squares / (scaled_max * scaled_max)
        } else {
            f64::NAN
        },
        entropy,
        effective_rank: nats.exp(),
        numerical_rank,
    }
}

/// `H = -sum p_i ln p_i` in nats with `p_i = sigma_i^power / sum_j sigma_j^power`;
/// NaN when every weight is zero. Scale-invariant, and computed so at any
/// finite magnitude (see `stats`).
pub fn entropy_nats(sigma: &[f64], power: f64) -> f64 {
    let unit = exact_scale(sigma.iter().fold(0.0, |m: f64, &s| m.max(s)));
    let weights: Vec<f64> = sigma.iter().map(|&s| weight(s * unit, power)).collect();
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || total.is_nan() {
        return f64::NAN;
    }
    // Filter on p, not w: a tiny weight can be positive while w / total
    // underflows to 0, and 0 * ln 0 would be NaN. (0 - sum, not -sum: a
    // single nonzero weight gives +0, not -0.)
    0.0 - weights
        .iter()
        .map(|&w| w / total)
        .filter(|&p| p > 0.0)
        .map(|p| p * p.ln())
        .sum::<f64>()
}

/// `sigma ^ power`, exact for the two common powers.
fn weight(sigma: f64, power: f64) -> f64 {
    if power == 2.0 {
        sigma * sigma
    } else if power == 1.0 {
        sigma
    } else {
        sigma.powf(power)
    }
}

/// An upper bound on `|H(true) - H(computed)|` in nats when each computed
/// squared singular value `lambda_i` may be off by up to `delta` (absolute).
///
/// Each weight lies in an interval, so each probability moves by at most
/// `t_i = (dw_i + p_i * sum_j dw_j) / S_low`, and `-x ln x` moves by at most
/// `-t ln t` when its argument moves by `t <= 1/e` (its modulus of
/// continuity). Returns infinity when the bound is not informative.
pub fn entropy_error_bound(squared: &[f64], delta: f64, power: f64) -> f64 {
    let half = power / 2.0;
    // `weight` spares the default power 2 (x^1) a call to glibc's `pow`,
    // ~1.5% of a batch of 64 x (512x128).
    let raise = |x: f64| weight(x, half);
    let interval = |lambda: f64| {
        let low = raise((lambda - delta).max(0.0));
        let high = raise(lambda.max(0.0) + delta);
        (low, high)
    };
    let (mut low_total, mut width_total, mut total) = (0.0, 0.0, 0.0);
    for &lambda in squared {
        let (low, high) = interval(lambda);
        low_total += low;
        width_total += high - low;
        total += raise(lambda.max(0.0));
    }
    if low_total <= 0.0 {
        return f64::INFINITY;
    }
    let mut bound = 0.0;
    for &lambda in squared {
        let (low, high) = interval(lambda);
        let p = raise(lambda.max(0.0)) / total;
        let t = ((high - low) + p * width_total) / low_total;
        if t > (-1.0_f64).exp() {
            return f64::INFINITY;
        }
        if t > 0.0 {
            bound -= t * t.ln();
        }
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(power: f64, normalize: Normalize) -> EntropySpec {
        EntropySpec::new(power, normalize).unwrap()
    }

    #[test]
    fn flat_spectrum_has_entropy_one_and_rank_one_has_zero() {
        let flat = vec![2.0; 16];
        let s = stats(&flat, 16, 16, f64::EPSILON, spec(2.0, Normalize::Dim));
        assert!((s.entropy - 1.0).abs() < 1e-15);
        assert!((s.effective_rank - 16.0).abs() < 1e-12);
        assert!((s.stable_rank - 16.0).abs() < 1e-12);
        let mut rank_one = vec![0.0; 16];
        rank_one[0] = 3.0;
        let s = stats(&rank_one, 16, 16, f64::EPSILON, spec(1.0, Normalize::Dim));
        assert_eq!(s.entropy, 0.0);
        assert_eq!(s.numerical_rank, 1);
        assert_eq!(s.sigma_max, 3.0);
    }

    #[test]
    fn normalizations_divide_by_the_documented_k() {
        let sigma = [3.0, 2.0, 1.0];
        let nats = entropy_nats(&sigma, 2.0);
        let by = |n| stats(&sigma, 3, 8, f64::EPSILON, spec(2.0, n)).entropy;
        assert!((by(Normalize::Dim) - nats / 3f64.ln()).abs() < 1e-15);
        assert!((by(Normalize::Cols) - nats / 8f64.ln()).abs() < 1e-15);
        assert!((by(Normalize::Rank) - nats / 3f64.ln()).abs() < 1e-15);
        assert_eq!(by(Normalize::None), nats);
    }

    #[test]
    fn degenerate_cases_follow_the_spec() {
        // K = 1: normalized entropy is NaN, "none" gives 0.
        let one = stats(&[5.0], 1, 1, f64::EPSILON, spec(2.0, Normalize::Dim));
        assert!(one.entropy.is_nan());
        assert_eq!(
            stats(&[5.0], 1, 1, f64::EPSILON, spec(2.0, Normalize::None)).entropy,
            0.0
        );
        // A zero matrix: NaN whatever the normalization.
        for n in [
            Normalize::Dim,
            Normalize::Cols,
            Normalize::Rank,
            Normalize::None,
        ] {
            let zero = stats(&[0.0, 0.0], 2, 2, f64::EPSILON, spec(2.0, n));
            assert!(zero.entropy.is_nan(), "{n:?}");
            assert!(zero.stable_rank.is_nan());
            assert_eq!(zero.numerical_rank, 0);
        }
    }

    #[test]
    fn weights_that_underflow_relative_to_the_total_do_not_make_nan() {
        // The SVD of an all-ones matrix returns singular values down to 1e-178;
        // squared, they are denormal and vanish against the total.
        let sigma = [14.4, 9.7e-16, 1.1e-31, 5.5e-48, 4.4e-178];
        let h = entropy_nats(&sigma, 2.0);
        assert!((0.0..1e-28).contains(&h), "{h}");
    }

    #[test]
    fn invalid_options_are_refused() {
        assert!(matches!(
            Normalize::parse("rows"),
            Err(Error::InvalidArgument(_))
        ));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(EntropySpec::new(bad, Normalize::Dim).is_err());
        }
    }

    #[test]
    fn error_bound_covers_an_actual_perturbation() {
        // Every eigenvalue well above delta: the bound must be small and must hold.
        let squared: Vec<f64> = (0..50).map(|i| 10f64.powf(-(i as f64) / 12.0)).collect();
        let delta = 1e-9;
        for power in [1.0, 2.0] {
            let bound = entropy_error_bound(&squared, delta, power);
            // Push every value by +-delta in an alternating pattern.
            let moved: Vec<f64> = squared
                .iter()
                .enumerate()
                .map(|(i, l)| (l + if i % 2 == 0 { delta } else { -delta }).max(0.0))
                .collect();
            let sqrt = |v: &[f64]| v.iter().map(|x| x.sqrt()).collect::<Vec<_>>();
            let change =
                (entropy_nats(&sqrt(&squared), power) - entropy_nats(&sqrt(&moved), power)).abs();
            assert!(
                change <= bound,
                "power {power}: change {change} > bound {bound}"
            );
            assert!(
                bound < 1e-5,
                "power {power}: bound {bound} is not informative"
            );
        }
        // Power 1 on a rank-deficient spectrum is not certifiable at this delta.
        let mut deficient = squared.clone();
        deficient.extend(std::iter::repeat_n(0.0, 50));
        assert!(
            entropy_error_bound(&deficient, delta, 1.0)
                > entropy_error_bound(&deficient, delta, 2.0)
        );
    }
}
