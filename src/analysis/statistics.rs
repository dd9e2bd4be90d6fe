//! Rank statistics for judging a canary against the primary, as Kayenta/Flagger-style canary analysis does:
//! the canary's metric samples (latencies, error rates, ...) are compared with the primary's by a Mann-Whitney U
//! test, and the relative difference of the medians says how large the change is.
//!
//! The test is rank-based, so it needs no assumption about the shape of the metric's distribution, and results
//! match SciPy's `scipy.stats.mannwhitneyu(x, y, alternative=..., method='auto', use_continuity=True)`:
//!
//! * Ties get the mean of the ranks they span (midranks).
//! * Exact p-value (the null distribution of U is counted, not approximated) when there are no ties and the smaller
//!   sample has at most 8 values — SciPy's `'auto'` rule. We additionally require the larger sample to have at most
//!   1000 values so the counting table stays small; SciPy has no such cap.
//! * Otherwise the normal approximation, with the tie-corrected variance and a continuity correction of 0.5.

use statrs::distribution::{ContinuousCDF, Normal};

const EXACT_MAX_SMALLER: usize = 8;
const EXACT_MAX_LARGER: usize = 1_000;

/// Which change counts against the canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alternative {
    /// The canary's values tend to be larger than the primary's (e.g. latency went up).
    Greater,
    /// The canary's values tend to be smaller (e.g. throughput went down).
    Less,
    /// Any shift in either direction.
    TwoSided,
}

/// Result of [`mann_whitney_u`].
#[derive(Clone, Debug, PartialEq)]
pub struct MannWhitney {
    /// U statistic of the canary sample (x): `R_x - m(m+1)/2`, what SciPy reports as `statistic`.
    pub u: f64,
    /// Tie-corrected z-score of `u` without continuity correction; positive when the canary tends to be larger,
    /// 0.0 when all values are equal. Informational: it is reported whether or not the p-value is exact.
    pub z: f64,
    /// p-value for the chosen alternative, in [0, 1].
    pub p_value: f64,
    /// True when the p-value comes from the exact null distribution rather than the normal approximation.
    pub exact: bool,
}

/// Mann-Whitney U test of x (canary) vs y (primary).
///
/// Exact p-value when there are no ties, the smaller sample has at most 8 values and the larger at most 1000;
/// normal approximation (tie-corrected variance, continuity correction) otherwise. Returns `None` when either
/// sample is empty or contains a NaN or infinite value.
pub fn mann_whitney_u(x: &[f64], y: &[f64], alt: Alternative) -> Option<MannWhitney> {
    if x.is_empty() || y.is_empty() || !x.iter().chain(y).all(|v| v.is_finite()) {
        return None;
    }
    let (m, n) = (x.len(), y.len());
    let (rank_sum_x, tie_term) = rank_sum_and_ties(x, y);
    let (mf, nf) = (m as f64, n as f64);
    let total = mf + nf;
    let u1 = rank_sum_x - mf * (mf + 1.0) / 2.0;
    let mean = mf * nf / 2.0;
    // Sizes and tie term are integers, so when every value is tied this is exactly (N+1) - (N+1) = 0 and the
    // `sd > 0.0` tests below are reliable.
    let sd = (mf * nf / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0))))
        .max(0.0)
        .sqrt();
    let z = if sd > 0.0 { (u1 - mean) / sd } else { 0.0 };

    // Like SciPy, every alternative is reduced to an upper tail P(U >= u): "less" looks at the primary's U, and
    // two-sided doubles the tail of the larger of the two U values.
    let (u, factor) = match alt {
        Alternative::Greater => (u1, 1.0),
        Alternative::Less => (mf * nf - u1, 1.0),
        Alternative::TwoSided => (u1.max(mf * nf - u1), 2.0),
    };
    let exact = tie_term == 0.0 && m.min(n) <= EXACT_MAX_SMALLER && m.max(n) <= EXACT_MAX_LARGER;
    let tail = if exact {
        // Without ties U is an integer, so the cast is lossless.
        let counts = exact_u_counts(m, n);
        let total: u128 = counts.iter().sum();
        counts[u as usize..].iter().sum::<u128>() as f64 / total as f64
    } else if sd > 0.0 {
        Normal::standard().sf((u - mean - 0.5) / sd)
    } else {
        // All values equal: no evidence of any shift. SciPy reaches 1.0 via sf(-inf); we avoid the 0/0.
        1.0
    };
    Some(MannWhitney {
        u: u1,
        z,
        p_value: (factor * tail).clamp(0.0, 1.0),
        exact,
    })
}

/// Sum of the midranks of `x` in the pooled sample, and the tie term `sum(t^3 - t)` over groups of tied values.
fn rank_sum_and_ties(x: &[f64], y: &[f64]) -> (f64, f64) {
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut tie_term, mut start) = (0.0, 0.0, 0);
    while start < pooled.len() {
        let end = start + pooled[start..].iter().take_while(|p| p.0 == pooled[start].0).count();
        // 1-based ranks start+1..=end share their mean; always a multiple of 0.5, so f64 holds it exactly.
        let midrank = (start + 1 + end) as f64 / 2.0;
        rank_sum += midrank * pooled[start..end].iter().filter(|p| p.1).count() as f64;
        let t = (end - start) as f64;
        tie_term += t * t * t - t;
        start = end;
    }
    (rank_sum, tie_term)
}

/// Number of arrangements of m x-values and n y-values (no ties) giving U = 0..=m*n.
///
/// These are the coefficients of the Gaussian binomial `[m+n choose m]_q = prod_{i=1..k} (1 - q^(l+i)) / (1 - q^i)`
/// with k = min(m, n), l = max(m, n), built one factor at a time in a single buffer: O(k * m * n) time and
/// O(m * n) memory. Counts are exact: intermediates stay below 2 * C(m+n, m), which fits i128 well beyond 50x50.
fn exact_u_counts(m: usize, n: usize) -> Vec<u128> {
    let (k, l) = (m.min(n), m.max(n));
    let len = k * l + 1;
    let mut c = vec![0i128; len];
    c[0] = 1;
    for i in 1..=k {
        // Multiply by (1 - q^(l+i)); descending so each term reads the unmodified lower coefficient.
        for j in (l + i..len).rev() {
            c[j] -= c[j - l - i];
        }
        // Divide by (1 - q^i), i.e. g[j] = f[j] + g[j-i]; ascending so g[j-i] is already the quotient. Terms above
        // degree k*l that the truncated multiplication dropped cannot affect lower coefficients.
        for j in i..len {
            c[j] += c[j - i];
        }
    }
    c.into_iter().map(|v| v as u128).collect()
}

/// Median of `xs`; `None` when empty or when any value is NaN or infinite. Even lengths average the middle two.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || !xs.iter().all(|v| v.is_finite()) {
        return None;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    // Halving before adding keeps the mean of two huge values finite.
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        sorted[mid - 1] / 2.0 + sorted[mid] / 2.0
    })
}

/// Relative effect size: `(median(canary) - median(primary)) / |median(primary)|`.
///
/// When the primary median is 0 there is no scale to divide by: the result is 0.0 if the canary median is also 0,
/// otherwise `+inf` or `-inf` with the sign of the difference, so any threshold on the effect size trips.
/// `None` when either median is undefined (see [`median`]).
pub fn relative_effect(canary: &[f64], primary: &[f64]) -> Option<f64> {
    let (c, p) = (median(canary)?, median(primary)?);
    let diff = c - p;
    Some(match (p == 0.0, diff == 0.0) {
        (true, true) => 0.0,
        (true, false) => f64::INFINITY.copysign(diff),
        (false, _) => diff / p.abs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Alternative::{Greater, Less, TwoSided};

    fn close(got: f64, want: f64) -> bool {
        let err = (got - want).abs();
        err <= 1e-12 || err <= 1e-9 * want.abs()
    }

    /// Checks U exactly, the method, and p for [two-sided, greater, less] against recorded SciPy values.
    fn check(x: &[f64], y: &[f64], exact: bool, u: f64, p: [f64; 3]) {
        for (alt, want) in [TwoSided, Greater, Less].into_iter().zip(p) {
            let r = mann_whitney_u(x, y, alt).unwrap();
            assert_eq!(r.u, u, "{alt:?}");
            assert_eq!(r.exact, exact, "{alt:?}");
            assert!(close(r.p_value, want), "{alt:?}: p = {}, SciPy {want}", r.p_value);
        }
    }

    // All references: scipy 1.17.1, scipy.stats.mannwhitneyu(x, y, alternative=alt, method=...), with
    // use_continuity=True (the default); p listed as [two-sided, greater, less].

    #[test]
    fn exact_3x4_canary_smaller() {
        // mannwhitneyu([1.5, 2.0, 3.25], [2.5, 4.0, 5.5, 6.0], alternative=alt, method='exact')
        //   -> U=1.0, p = 0.11428571428571428, 0.9714285714285714, 0.05714285714285714
        let p = [0.11428571428571428, 0.9714285714285714, 0.05714285714285714];
        check(&[1.5, 2.0, 3.25], &[2.5, 4.0, 5.5, 6.0], true, 1.0, p);
    }

    #[test]
    fn exact_5x5() {
        // mannwhitneyu([12.0, 15.0, 11.0, 19.0, 17.0], [10.0, 9.0, 14.0, 8.0, 13.0], alternative=alt, method='exact')
        //   -> U=21.0, p = 0.09523809523809523, 0.047619047619047616, 0.9722222222222222
        let (x, y) = ([12.0, 15.0, 11.0, 19.0, 17.0], [10.0, 9.0, 14.0, 8.0, 13.0]);
        let p = [0.09523809523809523, 0.047619047619047616, 0.9722222222222222];
        check(&x, &y, true, 21.0, p);
        // Without ties the tie-corrected z is the rank-sum z: scipy.stats.ranksums(x, y).statistic
        assert!(close(mann_whitney_u(&x, &y, Greater).unwrap().z, 1.775592090748118));
    }

    #[test]
    fn exact_7x6() {
        // mannwhitneyu([0.31, 0.45, 0.28, 0.52, 0.61, 0.39, 0.47], [0.22, 0.35, 0.19, 0.41, 0.25, 0.30],
        //              alternative=alt, method='exact') -> U=36.0, p = 0.03496503496503496, 0.01748251748251748,
        //              0.9889277389277389
        let x = [0.31, 0.45, 0.28, 0.52, 0.61, 0.39, 0.47];
        let p = [0.03496503496503496, 0.01748251748251748, 0.9889277389277389];
        check(&x, &[0.22, 0.35, 0.19, 0.41, 0.25, 0.30], true, 36.0, p);
    }

    #[test]
    fn auto_picks_exact_when_one_sample_has_at_most_8() {
        // mannwhitneyu(x, y, alternative=alt) with the default method='auto' (exact here; method='asymptotic'
        // would give two-sided 0.027890529120246504) -> U=77.0, p = 0.02524410573946178, 0.01262205286973089,
        // 0.9899341112963405
        let x = [3.1, 4.7, 2.2, 5.9, 6.3, 4.1, 3.8, 5.2];
        let y = [2.9, 3.3, 1.8, 4.4, 2.5, 3.0, 3.6, 2.1, 4.9, 1.6, 2.7, 3.4];
        let p = [0.02524410573946178, 0.01262205286973089, 0.9899341112963405];
        check(&x, &y, true, 77.0, p);
        let big: Vec<f64> = (0..1001).map(f64::from).collect();
        assert!(!mann_whitney_u(&[0.5, 10.5, 20.5], &big, Greater).unwrap().exact);
    }

    #[test]
    fn asymptotic_small_with_ties() {
        // mannwhitneyu([3, 5, 5, 7, 8, 8], [1, 3, 4, 5, 5, 6, 2], alternative=alt, method='asymptotic')
        //   -> U=33.5, p = 0.08128792804317761, 0.040643964021588805, 0.9705228114904713
        let (x, y) = ([3.0, 5.0, 5.0, 7.0, 8.0, 8.0], [1.0, 3.0, 4.0, 5.0, 5.0, 6.0, 2.0]);
        let p = [0.08128792804317761, 0.040643964021588805, 0.9705228114904713];
        check(&x, &y, false, 33.5, p);
    }

    #[test]
    fn asymptotic_20x20_no_ties() {
        // mannwhitneyu(X20, Y20, alternative=alt, method='asymptotic') -> U=280.0,
        //   p = 0.03151710207456157, 0.015758551037280785, 0.9852795577939586
        const X20: [f64; 20] = [
            140.9, 312.7, 313.5, 276.7, 257.8, 272.6, 311.8, 170.2, 116.0, 183.1, 159.3, 287.2, 249.3, 273.2, 300.2,
            277.2, 215.4, 278.9, 165.6, 254.8,
        ];
        const Y20: [f64; 20] = [
            156.1, 159.1, 195.1, 192.6, 167.7, 261.1, 280.0, 188.4, 210.2, 213.6, 224.3, 198.7, 222.6, 276.2, 160.0,
            215.9, 252.4, 201.5, 110.9, 123.5,
        ];
        let p = [0.03151710207456157, 0.015758551037280785, 0.9852795577939586];
        check(&X20, &Y20, false, 280.0, p);
    }

    #[test]
    fn asymptotic_30x25_with_ties() {
        // mannwhitneyu(X30, Y25, alternative=alt, method='asymptotic') -> U=522.5,
        //   p = 0.012473916120168415, 0.0062369580600842075, 0.9940558413241248
        let x30 = [
            2, 7, 4, 12, 11, 3, 7, 12, 11, 9, 8, 1, 9, 6, 2, 3, 7, 9, 7, 8, 11, 9, 5, 8, 8, 2, 1, 8, 5, 8,
        ];
        let y25 = [
            3, 2, 1, 4, 8, 4, 4, 6, 10, 4, 6, 4, 6, 4, 7, 6, 7, 10, 1, 6, 4, 3, 2, 0, 4,
        ];
        let (x, y): (Vec<f64>, Vec<f64>) = (x30.map(f64::from).to_vec(), y25.map(f64::from).to_vec());
        let p = [0.012473916120168415, 0.0062369580600842075, 0.9940558413241248];
        check(&x, &y, false, 522.5, p);
        // Tie-corrected z: scipy.stats.norm.isf(mannwhitneyu(X30, Y25, alternative='greater',
        //   method='asymptotic', use_continuity=False).pvalue) -> 2.5069440708245287
        assert!(close(mann_whitney_u(&x, &y, Greater).unwrap().z, 2.5069440708245287));
    }

    #[test]
    fn identical_samples_give_p_one() {
        // mannwhitneyu([4.2]*5, [4.2]*6, alternative=alt, method='asymptotic') -> U=15.0, p = 1.0 for all three
        check(&[4.2; 5], &[4.2; 6], false, 15.0, [1.0, 1.0, 1.0]);
        assert_eq!(mann_whitney_u(&[4.2; 5], &[4.2; 6], TwoSided).unwrap().z, 0.0);
    }

    #[test]
    fn textbook_shier_2004_diabetes_ages() {
        // Shier (2004), "Statistics: 2.3 The Mann-Whitney U Test": U_M = 17, U_F = 3, exact two-sided p = 0.11.
        // mannwhitneyu(males, females, method='exact') -> U=17.0, p=0.1111111111111111
        let (males, females) = ([19.0, 22.0, 16.0, 29.0, 24.0], [20.0, 11.0, 17.0, 12.0]);
        let r = mann_whitney_u(&males, &females, TwoSided).unwrap();
        assert_eq!((r.u, r.exact), (17.0, true));
        assert!(close(r.p_value, 0.1111111111111111) && (r.p_value - 0.11).abs() < 0.005);
        // mannwhitneyu(females, males, alternative='less', method='exact') -> U=3.0, p=0.05555555555555555
        let r = mann_whitney_u(&females, &males, Less).unwrap();
        assert_eq!(r.u, 3.0);
        assert!(close(r.p_value, 0.05555555555555555));
    }

    #[test]
    fn exact_counts_are_the_null_distribution() {
        assert_eq!(exact_u_counts(2, 2), [1, 1, 2, 1, 1]);
        let c = exact_u_counts(50, 50);
        assert_eq!(c.len(), 2501);
        // C(100, 50): every arrangement is counted exactly once, without overflow.
        assert_eq!(c.iter().sum::<u128>(), 100_891_344_545_564_193_334_812_497_256);
        assert!(c.iter().zip(c.iter().rev()).all(|(a, b)| a == b));
    }

    #[test]
    fn rejects_missing_or_non_finite_data() {
        assert_eq!(mann_whitney_u(&[], &[1.0], TwoSided), None);
        assert_eq!(mann_whitney_u(&[1.0], &[], TwoSided), None);
        assert_eq!(mann_whitney_u(&[1.0, f64::NAN], &[2.0], Greater), None);
        assert_eq!(mann_whitney_u(&[1.0], &[2.0, f64::INFINITY], Less), None);
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
        assert_eq!(relative_effect(&[1.0], &[]), None);
    }

    #[test]
    fn median_and_relative_effect() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::MAX, f64::MAX]), Some(f64::MAX));
        assert_eq!(
            relative_effect(&[110.0, 130.0, 120.0], &[100.0, 90.0, 110.0]),
            Some(0.2)
        );
        assert_eq!(relative_effect(&[-3.0], &[-2.0]), Some(-0.5));
        assert_eq!(relative_effect(&[0.0, 0.0], &[0.0]), Some(0.0));
        assert_eq!(relative_effect(&[0.5], &[0.0, 0.0, 1.0]), Some(f64::INFINITY));
        assert_eq!(relative_effect(&[-0.5], &[0.0]), Some(f64::NEG_INFINITY));
    }
}
