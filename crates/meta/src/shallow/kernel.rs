//! The fused data pass of the two-layer network: forward, squared loss and the gradients with
//! respect to the first layer and the read-out, for a batch of independent problems.
//!
//! Each problem `b` has a first layer `W_b` (`d × d`), a read-out `c_b` (`d`) and samples
//! `(x_i, y_i)`; the prediction is `ŷ_i = c_bᵀ σ(W_b x_i)` and the loss the mean squared error
//! `(1/n) Σ_i (ŷ_i − y_i)²`. Its gradients are
//! `∂L/∂c = (2/n) Σ_i r_i h_i` and `∂L/∂W = (2/n) Σ_i (r_i c ⊙ h_i ⊙ (1 − h_i)) x_iᵀ`
//! with `h_i = σ(W x_i)` and `r_i = ŷ_i − y_i`.
//!
//! One pass over the samples does all of it with every intermediate in registers or L1, in blocks
//! of [`LANES`] samples that the compiler vectorises (AVX-512 or AVX2, picked at run time through
//! pulp). Written with tensor operations instead, each epoch would stream several
//! `[problems, d, n]` intermediates through memory, for 40 000 epochs.

use adaptable_tasks::shallow::ShallowSample;

use crate::MetaError;

/// Samples per vectorised block.
pub const LANES: usize = 16;

/// The samples of a batch of problems, laid out for the fused pass.
///
/// Inputs are stored feature-major per problem (`[problems, d, padded]`) and the sample count is
/// padded to a multiple of [`LANES`] with zero inputs that a mask keeps out of the loss.
#[derive(Debug, Clone, PartialEq)]
pub struct ShallowBatch {
    problems: usize,
    dim: usize,
    samples: usize,
    padded: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    y_clean: Vec<f32>,
    mask: Vec<f32>,
}

impl ShallowBatch {
    /// Stacks samples of equal dimension and size, one per problem.
    pub fn from_samples(samples: &[&ShallowSample]) -> Result<Self, MetaError> {
        let first = samples
            .first()
            .ok_or_else(|| MetaError::Shape("no samples to stack".into()))?;
        let (dim, n) = (first.x.rows(), first.len());
        if n == 0 || dim == 0 {
            return Err(MetaError::Data("an empty sample".into()));
        }
        if samples
            .iter()
            .any(|s| s.x.rows() != dim || s.x.cols() != n || s.len() != n || s.y_clean.len() != n)
        {
            return Err(MetaError::Shape(format!(
                "samples of different shapes in one batch (expected {dim} × {n})"
            )));
        }
        let padded = n.div_ceil(LANES) * LANES;
        let problems = samples.len();
        let mut x = vec![0.0; problems * dim * padded];
        let mut y = vec![0.0; problems * padded];
        let mut y_clean = vec![0.0; problems * padded];
        for (b, s) in samples.iter().enumerate() {
            for i in 0..dim {
                let row = &mut x[(b * dim + i) * padded..][..n];
                for (k, v) in row.iter_mut().enumerate() {
                    *v = s.x.get(i, k) as f32;
                }
            }
            for (dst, src) in y[b * padded..][..n].iter_mut().zip(&s.y) {
                *dst = *src as f32;
            }
            for (dst, src) in y_clean[b * padded..][..n].iter_mut().zip(&s.y_clean) {
                *dst = *src as f32;
            }
        }
        let mask = (0..padded).map(|k| f32::from(u8::from(k < n))).collect();
        Ok(Self {
            problems,
            dim,
            samples: n,
            padded,
            x,
            y,
            y_clean,
            mask,
        })
    }

    /// Number of problems.
    pub fn problems(&self) -> usize {
        self.problems
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Samples per problem `n`.
    pub fn samples(&self) -> usize {
        self.samples
    }
}

/// The outcome of one pass: losses and gradients of every problem.
#[derive(Debug, Clone, PartialEq)]
pub struct PassOutput {
    /// Mean squared error against the (noisy) training targets, `[problems]`.
    pub loss: Vec<f64>,
    /// Mean squared error against the noiseless targets, `[problems]` (the test metric).
    pub clean_loss: Vec<f64>,
    /// `∂loss/∂W`, `[problems, d, d]` row-major.
    pub grad_w: Vec<f32>,
    /// `∂loss/∂c`, `[problems, d]`.
    pub grad_c: Vec<f32>,
}

/// Runs the fused pass for every problem: `w` is `[problems, d, d]` (row `j` maps the input to
/// hidden unit `j`), `c` is `[problems, d]`.
pub fn loss_and_gradients(
    batch: &ShallowBatch,
    w: &[f32],
    c: &[f32],
) -> Result<PassOutput, MetaError> {
    let (p, d) = (batch.problems, batch.dim);
    if w.len() != p * d * d || c.len() != p * d {
        return Err(MetaError::Shape(format!(
            "fused pass: {} first-layer and {} read-out values for {p} problems of dimension {d}",
            w.len(),
            c.len()
        )));
    }
    let mut out = PassOutput {
        loss: vec![0.0; p],
        clean_loss: vec![0.0; p],
        grad_w: vec![0.0; p * d * d],
        grad_c: vec![0.0; p * d],
    };
    pulp::Arch::new().dispatch(Pass {
        batch,
        w,
        c,
        out: &mut out,
    });
    Ok(out)
}

/// One call of the pass, for pulp to compile with the instructions it picked (a struct, not a
/// closure: pulp calls closures through an out-of-line shim compiled for the baseline only).
struct Pass<'a> {
    batch: &'a ShallowBatch,
    w: &'a [f32],
    c: &'a [f32],
    out: &'a mut PassOutput,
}

impl pulp::WithSimd for Pass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Pass { batch, w, c, out } = self;
        let d = batch.dim;
        let PassOutput {
            loss,
            clean_loss,
            grad_w,
            grad_c,
        } = out;
        for b in 0..batch.problems {
            let (l, lc) = problem(
                batch,
                b,
                &w[b * d * d..][..d * d],
                &c[b * d..][..d],
                &mut grad_w[b * d * d..][..d * d],
                &mut grad_c[b * d..][..d],
            );
            loss[b] = l;
            clean_loss[b] = lc;
        }
    }
}

type Lanes = [f32; LANES];

#[inline(always)]
fn lanes(slice: &[f32]) -> &Lanes {
    slice[..LANES]
        .try_into()
        .expect("blocks are whole LANES wide")
}

/// The pass over one problem; returns its two losses and writes its gradients.
#[inline(always)]
fn problem(
    batch: &ShallowBatch,
    b: usize,
    w: &[f32],
    c: &[f32],
    grad_w: &mut [f32],
    grad_c: &mut [f32],
) -> (f64, f64) {
    let (d, padded) = (batch.dim, batch.padded);
    let x = &batch.x[b * d * padded..][..d * padded];
    let y = &batch.y[b * padded..][..padded];
    let y_clean = &batch.y_clean[b * padded..][..padded];
    let scale = 2.0 / batch.samples as f32;
    // Per-lane accumulators, reduced once at the end.
    let mut acc_w = vec![[0.0_f32; LANES]; d * d];
    let mut acc_c = vec![[0.0_f32; LANES]; d];
    let mut hidden = vec![[0.0_f32; LANES]; d];
    let mut sq = [0.0_f32; LANES];
    let mut sq_clean = [0.0_f32; LANES];
    for start in (0..padded).step_by(LANES) {
        let mut prediction = [0.0_f32; LANES];
        for j in 0..d {
            let mut z = [0.0_f32; LANES];
            for i in 0..d {
                let wji = w[j * d + i];
                let xi = lanes(&x[i * padded + start..]);
                for l in 0..LANES {
                    z[l] = wji.mul_add(xi[l], z[l]);
                }
            }
            let h = &mut hidden[j];
            for l in 0..LANES {
                h[l] = sigmoid(z[l]);
                prediction[l] += c[j] * h[l];
            }
        }
        let mask = lanes(&batch.mask[start..]);
        let (yb, ycb) = (lanes(&y[start..]), lanes(&y_clean[start..]));
        let mut g = [0.0_f32; LANES];
        for l in 0..LANES {
            let r = (prediction[l] - yb[l]) * mask[l];
            let rc = (prediction[l] - ycb[l]) * mask[l];
            sq[l] += r * r;
            sq_clean[l] += rc * rc;
            g[l] = r * scale;
        }
        for j in 0..d {
            let h = &hidden[j];
            let mut dz = [0.0_f32; LANES];
            for l in 0..LANES {
                acc_c[j][l] += g[l] * h[l];
                dz[l] = g[l] * c[j] * h[l] * (1.0 - h[l]);
            }
            for i in 0..d {
                let xi = lanes(&x[i * padded + start..]);
                let acc = &mut acc_w[j * d + i];
                for l in 0..LANES {
                    acc[l] = dz[l].mul_add(xi[l], acc[l]);
                }
            }
        }
    }
    for (dst, acc) in grad_w.iter_mut().zip(&acc_w) {
        *dst = acc.iter().sum();
    }
    for (dst, acc) in grad_c.iter_mut().zip(&acc_c) {
        *dst = acc.iter().sum();
    }
    let n = batch.samples as f64;
    let total = |v: &Lanes| v.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
    (total(&sq), total(&sq_clean))
}

/// The logistic function `1 / (1 + e^{−z})`, branch-free so that loops over it vectorise:
/// `e^{−z} = 2^m · 2^f` with `m` an integer and `|f| ≤ 1/2`, `2^f` by its degree-6 Taylor
/// polynomial (relative error about 1e-6 before rounding; tested against `f64`).
#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    // Round to nearest by adding and subtracting 1.5·2²³ (exact for |t| < 2²²); `round()` would be
    // a libm call on baseline x86-64 and stop the loop from vectorising.
    const ROUNDER: f32 = 12_582_912.0;
    // Beyond ±126 binary orders the result is 0 or 1 to f32 precision; the clamp keeps 2^m normal.
    let t = (-z * std::f32::consts::LOG2_E).clamp(-126.0, 126.0);
    let m = (t + ROUNDER) - ROUNDER;
    let f = (t - m) * std::f32::consts::LN_2;
    let mut p = 1.0 / 720.0_f32;
    p = p * f + 1.0 / 120.0;
    p = p * f + 1.0 / 24.0;
    p = p * f + 1.0 / 6.0;
    p = p * f + 0.5;
    p = p * f + 1.0;
    p = p * f + 1.0;
    let exp_neg_z = p * f32::from_bits(((m as i32 + 127) as u32) << 23);
    1.0 / (1.0 + exp_neg_z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_matches_f64_everywhere() {
        for i in -20_000..=20_000 {
            let z = i as f32 * 5e-3;
            let exact = 1.0 / (1.0 + (-(z as f64)).exp());
            let ours = f64::from(sigmoid(z));
            assert!(
                (ours - exact).abs() <= 2e-7 + 2e-6 * exact,
                "σ({z}) = {ours}, exact {exact}"
            );
        }
        assert_eq!(sigmoid(500.0), 1.0);
        assert!(sigmoid(-500.0) >= 0.0 && sigmoid(-500.0) < 1e-30);
    }
}
