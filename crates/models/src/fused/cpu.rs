//! The element kernels on plain `f32` slices: exact GELU, its derivative and LayerNorm rows,
//! written so that the compiler vectorises them, and split across the available cores (also
//! used by the [attention kernel](super::attention_cpu)).

// The parallel driver and its thread count are shared with the LoRA kernels, so one setting
// bounds both.
pub(super) use adaptable_lora::host::{BlockKernel, par_blocks, par_blocks_for};

/// Runs `f(x_chunk, out_chunk)` over matching chunks of `x` and `out` (see [`par_blocks`]; `x`
/// may be empty: then every `x_chunk` is); chunk lengths are multiples of `align`.
fn par_chunks(x: &[f32], out: &mut [f32], align: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    par_blocks(
        out,
        align,
        #[inline(always)]
        |first: usize, os: &mut [f32]| {
            let start = first * align;
            f(x.get(start..start + os.len()).unwrap_or_default(), os)
        },
    );
}

/// `x ← x · Φ(x)`.
pub fn gelu(x: &mut [f32]) {
    // The values are read and overwritten in place, so there is no separate input.
    par_chunks(
        &[],
        x,
        1,
        #[inline(always)]
        |_, xs| {
            for v in xs {
                *v *= 0.5 * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
            }
        },
    );
}

/// `grad ← grad · (Φ(x) + x · φ(x))`.
pub fn gelu_backward(x: &[f32], grad: &mut [f32]) {
    par_chunks(
        x,
        grad,
        1,
        #[inline(always)]
        |xs, gs| {
            for (g, &v) in gs.iter_mut().zip(xs) {
                *g *= gelu_derivative(v);
            }
        },
    );
}

/// LayerNorm of each row of `x` (rows of `gamma.len()` values), in place:
/// `(x − mean) / √(var + ε) · γ + β` with the biased variance.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], epsilon: f32) {
    let width = gamma.len();
    par_chunks(
        &[],
        x,
        width,
        #[inline(always)]
        |_, rows| {
            for row in rows.chunks_exact_mut(width) {
                let mean = lane_sum(row, |v| v) / width as f32;
                let var = lane_sum(row, |v| (v - mean) * (v - mean)) / width as f32;
                let scale = 1.0 / (var + epsilon).sqrt();
                for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
                    *v = (*v - mean) * scale * g + b;
                }
            }
        },
    );
}

/// The gradients of [`layer_norm`] given the output gradient `grad`: writes `∂x` to `grad_x`
/// and returns `(∂γ, ∂β)`. With `x̂ = (x − mean)·r`, `r = 1/√(var + ε)` and `g = grad·γ`:
/// `∂x = r·(g − mean(g) − x̂·mean(g·x̂))`, `∂γ = Σ_rows grad·x̂`, `∂β = Σ_rows grad`.
///
/// Three passes split across the cores: the rows' mean and `r`, then `∂x` by rows, then `∂γ` and
/// `∂β` by columns (each thread sums whole columns in row order, so the result does not depend
/// on the thread count).
///
/// # Panics
///
/// If `x`, `grad` and `grad_x` differ in length or are not whole rows of `gamma.len()` values.
pub fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    grad: &[f32],
    epsilon: f32,
    grad_x: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    assert!(
        width > 0
            && x.len() == grad.len()
            && x.len() == grad_x.len()
            && x.len().is_multiple_of(width),
        "layer_norm_backward: {} inputs, {} gradients, {} outputs for rows of {width}",
        x.len(),
        grad.len(),
        grad_x.len()
    );
    // (mean, r) per row.
    let mut stats = vec![0.0f32; 2 * (x.len() / width)];
    par_blocks_for(
        x.len(),
        &mut stats,
        2,
        #[inline(always)]
        |first: usize, stats: &mut [f32]| {
            for (i, pair) in stats.chunks_exact_mut(2).enumerate() {
                let row = &x[(first + i) * width..(first + i + 1) * width];
                let mean = lane_sum(row, |v| v) / width as f32;
                let var = lane_sum(row, |v| (v - mean) * (v - mean)) / width as f32;
                pair[0] = mean;
                pair[1] = 1.0 / (var + epsilon).sqrt();
            }
        },
    );
    let stats = &stats;
    par_blocks(
        grad_x,
        width,
        #[inline(always)]
        |first: usize, out: &mut [f32]| {
            for (i, out) in out.chunks_exact_mut(width).enumerate() {
                let row = first + i;
                let (mean, r) = (stats[2 * row], stats[2 * row + 1]);
                let (x, grad) = (&x[row * width..][..width], &grad[row * width..][..width]);
                // g = grad·γ into `out`, then its two means.
                for ((o, &d), &g) in out.iter_mut().zip(grad).zip(gamma) {
                    *o = d * g;
                }
                let mean_g = lane_sum(out, |v| v) / width as f32;
                let mut dot = [0.0f32; 8];
                for (k, (&g, &v)) in out.iter().zip(x).enumerate() {
                    dot[k % 8] += g * ((v - mean) * r);
                }
                let mean_gx = dot.iter().sum::<f32>() / width as f32;
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = r * (*o - mean_g - (v - mean) * r * mean_gx);
                }
            }
        },
    );
    // (∂γ[c], ∂β[c]) interleaved, so that a block is one column.
    let mut sums = vec![0.0f32; 2 * width];
    par_blocks_for(
        2 * x.len(),
        &mut sums,
        2,
        #[inline(always)]
        |first: usize, out: &mut [f32]| {
            let columns = first..first + out.len() / 2;
            for (row, (x, grad)) in x
                .chunks_exact(width)
                .zip(grad.chunks_exact(width))
                .enumerate()
            {
                let (mean, r) = (stats[2 * row], stats[2 * row + 1]);
                let (x, grad) = (&x[columns.clone()], &grad[columns.clone()]);
                for ((pair, &v), &d) in out.chunks_exact_mut(2).zip(x).zip(grad) {
                    pair[0] += d * ((v - mean) * r);
                    pair[1] += d;
                }
            }
        },
    );
    sums.chunks_exact(2).map(|p| (p[0], p[1])).unzip()
}

/// `Σ f(v)` over `row` in eight interleaved partial sums, an order the compiler may vectorise
/// (a single running sum is a dependency chain it must keep).
#[inline(always)]
pub(super) fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline(always)]
fn gelu_derivative(v: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
    cdf + v * INV_SQRT_2PI * exp(-0.5 * v * v)
}

// Plain `a * b + c` rather than `mul_add`: without FMA enabled at compile time `mul_add`
// is a call to a software `fmaf`.

/// `erf(x)` as the rational approximation `x · P(x²) / Q(x²)` on `[-4, 4]` (erf is ±1 to f32
/// precision beyond), branch-free so that loops over it vectorise; the coefficients are the
/// ones XLA and Eigen use for `f32` (absolute error at most 3.3e-7, tested).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329e-3;
    q = q * x2 + -1.426_474e-2;
    x * p / q
}

/// Below this `x · log₂e`, [`exp`] is 0.
const EXP_FLUSH: f32 = -100.0;

/// `exp(x)` for `x ≤ 0` (the normal density's and the softmax's exponents): `2^n · 2^f` with `n` an
/// integer and `|f| ≤ 1/2`, `2^f` by its degree-6 Taylor polynomial (relative error at most 1e-6 on
/// `[-18, 0]`, from rounding `x · log₂e`); exactly 0 below `2^-100` (`x < -69.3`).
///
/// The flush is for speed, and it keeps every result a normal float: a masked attention score
/// (`f32::MIN`) used to come out as `2^-126`, which the softmax's division made subnormal, and
/// subnormal operands slow x86 arithmetic by orders of magnitude on Intel cores (a padded batch's
/// SR step took 21.8 s instead of 1.1 s on the Intel Xeon host, docs/benchmarks.md). Above the
/// flush, a probability divided by a row sum of at most 2²³ terms stays normal. What is flushed is
/// below f32's resolution next to the row's largest term (which is 1).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Round to nearest by adding and subtracting 1.5·2²³ (exact for |t| < 2²²): `round()`
    // would be a libm call on baseline x86-64 and stop the loop from vectorising.
    const ROUNDER: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E;
    let clamped = t.max(EXP_FLUSH);
    let n = (clamped + ROUNDER) - ROUNDER;
    let f = (clamped - n) * std::f32::consts::LN_2;
    let mut p = 1.0 / 720.0_f32;
    p = p * f + 1.0 / 120.0;
    p = p * f + 1.0 / 24.0;
    p = p * f + 1.0 / 6.0;
    p = p * f + 0.5;
    p = p * f + 1.0;
    p = p * f + 1.0;
    // 2^n through the exponent bits; n ∈ [-100, 0] keeps the result normal.
    let value = p * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if t < EXP_FLUSH { 0.0 } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adaptable_lora::host::PARALLEL_MIN;

    fn grid() -> impl Iterator<Item = f32> {
        (-6000..=6000).map(|i| i as f32 * 1e-3)
    }

    #[test]
    fn erf_matches_libm() {
        let worst = grid()
            .map(|x| (erf(x) as f64 - libm_erf(x as f64)).abs())
            .fold(0.0, f64::max);
        // 3.3e-7 measured: a few f32 ulps of erf near ±1.
        assert!(worst < 5e-7, "max |erf error| {worst}");
    }

    #[test]
    fn exp_matches_std_on_the_densitys_range() {
        let worst = grid()
            .map(|x| -0.5 * x * x)
            .map(|x| ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs())
            .fold(0.0, f64::max);
        // 1.0e-6 measured at x = -18, where rounding x·log₂e dominates.
        assert!(worst < 2e-6, "max relative exp error {worst}");
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
    }

    #[test]
    fn exp_is_zero_or_a_normal_float() {
        let mut x = 0.0_f32;
        while x > -200.0 {
            let y = exp(x);
            assert!(y == 0.0 || y.is_normal(), "exp({x}) = {y:e}");
            x -= 1e-3;
        }
        // Where it flushes, the true value is below 2^-100.
        assert!(exp(-69.3) > 0.0 && exp(-69.4) == 0.0);
    }

    #[test]
    fn gelu_and_its_derivative_match_the_closed_form() {
        let x: Vec<f32> = grid().step_by(7).collect();
        let mut y = x.clone();
        gelu(&mut y);
        let mut slope = vec![1.0; x.len()];
        gelu_backward(&x, &mut slope);
        for ((&v, &y), &s) in x.iter().zip(&y).zip(&slope) {
            let v = v as f64;
            let cdf = 0.5 * (1.0 + libm_erf(v / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((y as f64 - v * cdf).abs() < 1e-6, "gelu({v})");
            assert!((s as f64 - (cdf + v * pdf)).abs() < 1e-6, "gelu'({v})");
        }
    }

    #[test]
    fn layer_norm_rows_match_a_two_pass_f64_reference() {
        let width = 384;
        let rows = PARALLEL_MIN / width * 3 + 5; // several chunks and an uneven split
        let x: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 3.0 + (i / width % 11) as f32)
            .collect();
        let gamma: Vec<f32> = (0..width).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..width).map(|i| (i % 5) as f32 * 0.2 - 0.4).collect();
        let mut y = x.clone();
        layer_norm(&mut y, &gamma, &beta, 1e-12);
        for (row_in, row_out) in x.chunks(width).zip(y.chunks(width)) {
            let mean = row_in.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
            let var = row_in
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / width as f64;
            for (i, (&v, &out)) in row_in.iter().zip(row_out).enumerate() {
                let expected =
                    (v as f64 - mean) / (var + 1e-12).sqrt() * gamma[i] as f64 + beta[i] as f64;
                assert!((out as f64 - expected).abs() < 1e-5, "{out} vs {expected}");
            }
        }
    }

    #[test]
    fn layer_norm_gradients_match_an_f64_reference() {
        let width = 390; // not a multiple of the vector width
        let rows = PARALLEL_MIN / width * 2 + 3; // several chunks and an uneven split
        let x: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 3.0 + (i / width % 11) as f32)
            .collect();
        let grad: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 104_729) % 997) as f32 * 0.002 - 1.0)
            .collect();
        let gamma: Vec<f32> = (0..width).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
        let epsilon = 1e-5;
        let mut grad_x = vec![0.0; x.len()];
        let (grad_gamma, grad_beta) = layer_norm_backward(&x, &gamma, &grad, epsilon, &mut grad_x);
        let (mut e_gamma, mut e_beta) = (vec![0.0f64; width], vec![0.0f64; width]);
        for (row, (x, d)) in x.chunks(width).zip(grad.chunks(width)).enumerate() {
            let w = width as f64;
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / w;
            let var = x
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / w;
            let r = 1.0 / (var + f64::from(epsilon)).sqrt();
            let xhat: Vec<f64> = x.iter().map(|&v| (f64::from(v) - mean) * r).collect();
            let g: Vec<f64> = d
                .iter()
                .zip(&gamma)
                .map(|(&d, &g)| f64::from(d * g))
                .collect();
            let mean_g = g.iter().sum::<f64>() / w;
            let mean_gx = g.iter().zip(&xhat).map(|(g, x)| g * x).sum::<f64>() / w;
            for c in 0..width {
                let expected = r * (g[c] - mean_g - xhat[c] * mean_gx);
                let got = f64::from(grad_x[row * width + c]);
                assert!(
                    (got - expected).abs() < 2e-4,
                    "∂x[{row}, {c}]: {got} vs {expected}"
                );
                e_gamma[c] += f64::from(d[c]) * xhat[c];
                e_beta[c] += f64::from(d[c]);
            }
        }
        for c in 0..width {
            let (dg, db) = (f64::from(grad_gamma[c]), f64::from(grad_beta[c]));
            assert!(
                (dg - e_gamma[c]).abs() < 1e-3 * (1.0 + e_gamma[c].abs()),
                "∂γ[{c}]"
            );
            assert!(
                (db - e_beta[c]).abs() < 1e-3 * (1.0 + e_beta[c].abs()),
                "∂β[{c}]"
            );
        }
    }

    #[test]
    fn parallel_chunks_cover_every_element() {
        let n = PARALLEL_MIN * 3 + 17;
        let x: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.05 - 2.0).collect();
        let g: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
        let mut y = x.clone();
        gelu(&mut y);
        let mut back = g.clone();
        gelu_backward(&x, &mut back);
        for i in 0..n {
            let expected = 0.5 * x[i] * (1.0 + erf(x[i] * std::f32::consts::FRAC_1_SQRT_2));
            assert_eq!(y[i], expected, "gelu, element {i}");
            assert_eq!(
                back[i],
                g[i] * gelu_derivative(x[i]),
                "backward, element {i}"
            );
        }
    }

    /// erf in f64 by its Maclaurin series (|x| < 3) or continued fraction (|x| ≥ 3): a
    /// reference independent of the approximation under test.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() >= 3.0 {
            // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …))))
            let a = x.abs();
            let mut frac = 0.0;
            for k in (1..60).rev() {
                frac = (k as f64 / 2.0) / (a + frac);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + frac);
            return (1.0 - erfc).copysign(x);
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
