//! Paired statistics of two retraining methods over (test persona, seed) cells: the mean difference
//! with a paired t interval, win counts and the smallest effect the design can detect.
//!
//! Every cell fine-tunes both methods' bases on the same persona with the same seed (same data
//! order, same adapter and head initialisation), so the difference in a cell removes the persona's
//! difficulty. The cells of one seed share a retrained base, so they are not independent: the
//! interval over cells is the design's nominal one, and [`PairedDifference::seed_interval`] (a t
//! interval over the per-seed mean differences) is the conservative one.

/// Mean, sample standard deviation (n − 1) and count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub sd: f64,
    /// Number of values.
    pub n: usize,
}

impl Moments {
    /// The moments of `values` (`None` when empty).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = if n < 2 {
            0.0
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt()
        };
        Some(Self { mean, sd, n })
    }

    /// Standard error of the mean (`None` for one value).
    pub fn se(&self) -> Option<f64> {
        (self.n >= 2).then(|| self.sd / (self.n as f64).sqrt())
    }

    /// The two-sided 95 % t interval of the mean (`None` for one value).
    pub fn t_interval_95(&self) -> Option<(f64, f64)> {
        let se = self.se()?;
        let t = student_t_quantile(0.975, (self.n - 1) as f64);
        Some((self.mean - t * se, self.mean + t * se))
    }

    /// The smallest true mean difference a two-sided 5 % paired t test detects with 80 % power,
    /// given this spread: `(t₀.₉₇₅ + t₀.₈₀) · sd / √n` (`None` for one value).
    pub fn minimal_detectable_effect(&self) -> Option<f64> {
        let se = self.se()?;
        let df = (self.n - 1) as f64;
        Some((student_t_quantile(0.975, df) + student_t_quantile(0.80, df)) * se)
    }
}

/// One (test persona, seed) cell: the two methods' accuracies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Test task index.
    pub task: usize,
    /// Seed.
    pub seed: usize,
    /// The method under test (e.g. LoRA-ML).
    pub treated: f64,
    /// The baseline (SR).
    pub baseline: f64,
}

/// The paired comparison of a method with the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedDifference {
    /// Differences `treated − baseline` over cells.
    pub cells: Moments,
    /// Per-seed mean differences (mean over that seed's cells).
    pub seeds: Moments,
    /// Cells where the treated method is better.
    pub wins: usize,
    /// Cells where the baseline is better.
    pub losses: usize,
    /// Cells with equal accuracy.
    pub ties: usize,
}

impl PairedDifference {
    /// The comparison over `cells` (`None` when there are none).
    pub fn of(cells: &[Cell]) -> Option<Self> {
        let diffs: Vec<f64> = cells.iter().map(|c| c.treated - c.baseline).collect();
        let mut seeds: Vec<usize> = cells.iter().map(|c| c.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        let seed_means: Vec<f64> = seeds
            .iter()
            .map(|&s| {
                let d: Vec<f64> = cells
                    .iter()
                    .filter(|c| c.seed == s)
                    .map(|c| c.treated - c.baseline)
                    .collect();
                d.iter().sum::<f64>() / d.len() as f64
            })
            .collect();
        Some(Self {
            cells: Moments::of(&diffs)?,
            seeds: Moments::of(&seed_means)?,
            wins: diffs.iter().filter(|&&d| d > 0.0).count(),
            losses: diffs.iter().filter(|&&d| d < 0.0).count(),
            ties: diffs.iter().filter(|&&d| d == 0.0).count(),
        })
    }

    /// The 95 % paired t interval over cells.
    pub fn cell_interval(&self) -> Option<(f64, f64)> {
        self.cells.t_interval_95()
    }

    /// The 95 % t interval over the per-seed mean differences.
    pub fn seed_interval(&self) -> Option<(f64, f64)> {
        self.seeds.t_interval_95()
    }
}

/// The `p` quantile of Student's t with `df` degrees of freedom (`0 < p < 1`, `df > 0`), by
/// bisection on the distribution function.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -student_t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while student_t_cdf(hi, df) < p {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * regularized_incomplete_beta(x, 0.5 * df, 0.5);
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// I_x(a, b), by the continued fraction (modified Lentz), on the side where it converges fast.
fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..500 {
        let m = f64::from(m);
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        h *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-13).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95 % critical values and one-sided 80 % ones from standard t tables.
        for (df, t975, t80) in [
            (1.0, 12.7062, 1.3764),
            (4.0, 2.7764, 0.9410),
            (9.0, 2.2622, 0.8834),
            (49.0, 2.0096, 0.8489),
            (1000.0, 1.9623, 0.8420),
        ] {
            let q = student_t_quantile(0.975, df);
            assert!((q - t975).abs() < 1e-3, "df {df}: {q} vs {t975}");
            let q = student_t_quantile(0.80, df);
            assert!((q - t80).abs() < 1e-3, "df {df}: {q} vs {t80}");
        }
        assert!((student_t_cdf(0.0, 3.0) - 0.5).abs() < 1e-12);
        assert!((student_t_quantile(0.025, 4.0) + 2.7764).abs() < 1e-3);
    }

    #[test]
    fn a_hand_computed_paired_interval() {
        // Two seeds × three tasks. Differences: seed 0: +0.10, 0, +0.20; seed 1: −0.10, +0.10, +0.30.
        let cells: Vec<Cell> = [
            (0, 0, 0.60, 0.50),
            (1, 0, 0.40, 0.40),
            (2, 0, 0.70, 0.50),
            (0, 1, 0.40, 0.50),
            (1, 1, 0.50, 0.40),
            (2, 1, 0.80, 0.50),
        ]
        .into_iter()
        .map(|(task, seed, treated, baseline)| Cell {
            task,
            seed,
            treated,
            baseline,
        })
        .collect();
        let d = PairedDifference::of(&cells).unwrap();
        // Mean 0.6 / 6 = 0.1; squared deviations 0, 0.01, 0.01, 0.04, 0, 0.04 → var 0.1 / 5 = 0.02;
        // sd = 0.141421; se = sd / √6 = 0.057735; t(0.975, 5) = 2.570582; half width 0.148413.
        assert!((d.cells.mean - 0.1).abs() < 1e-12);
        assert!((d.cells.sd - 0.02_f64.sqrt()).abs() < 1e-12);
        let (lo, hi) = d.cell_interval().unwrap();
        assert!((lo - (0.1 - 0.148_413)).abs() < 1e-5, "{lo}");
        assert!((hi - (0.1 + 0.148_413)).abs() < 1e-5, "{hi}");
        assert_eq!((d.wins, d.losses, d.ties), (4, 1, 1));
        // Seed means 0.1 and 0.1: no spread between seeds.
        assert_eq!(d.seeds.n, 2);
        assert!(d.seeds.sd.abs() < 1e-12);
        // MDE = (t(0.975, 5) + t(0.8, 5)) · se = (2.570582 + 0.919544) · 0.057735 = 0.201503.
        let mde = d.cells.minimal_detectable_effect().unwrap();
        assert!((mde - 0.201_503).abs() < 1e-5, "{mde}");
    }

    #[test]
    fn one_cell_has_no_interval() {
        let d = PairedDifference::of(&[Cell {
            task: 0,
            seed: 0,
            treated: 0.5,
            baseline: 0.25,
        }])
        .unwrap();
        assert_eq!(d.cell_interval(), None);
        assert_eq!(d.cells.minimal_detectable_effect(), None);
        assert!(PairedDifference::of(&[]).is_none());
    }
}
