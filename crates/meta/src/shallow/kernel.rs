//! The fused data pass of the two-layer network: forward, squared loss and the gradients with
//! respect to the first layer and the read-out, for a batch of independent problems.
//!
//! Each problem `b` has a first layer `W_b` (`d × d`), a read-out `c_b` (`d`) and samples
//! `(x_i, y_i)`; the prediction is `ŷ_i = c_bᵀ σ(W_b x_i)` and the loss the mean squared error
//! `(1/n) Σ_i (ŷ_i − y_i)²`. Its gradients are
//! `∂L/∂c = (2/n) Σ_i r_i h_i` and `∂L/∂W = (2/n) Σ_i (r_i c ⊙ h_i ⊙ (1 − h_i)) x_iᵀ`
//! with `h_i = σ(W x_i)` and `r_i = ŷ_i − y_i`.
//!
//! The samples are walked in chunks of [`CHUNK`] whose hidden activations stay in L1. In each
//! chunk the forward product `W X` and the gradient product `Δ Xᵀ` run as register tiles of
//! SIMD vectors (pulp picks AVX-512 or AVX2 at run time): 4 hidden units × 4 vectors of samples,
//! and 4 hidden units × 4 input features, so that every loaded vector feeds four fused
//! multiply-adds and the accumulators never leave registers. Written with tensor operations
//! instead, each epoch would stream several `[problems, d, n]` intermediates through memory, for
//! 40 000 epochs; written as one loop per sample block, the accumulators of `∂L/∂W` would go
//! through L1 on every multiply-add and the forward sums would wait on one another.
//!
//! Sums over samples are kept per SIMD lane and reduced at the end, so the result depends on the
//! vector width: bit-identical on hosts with the same instruction set, not across AVX-512 and
//! AVX2 hosts.

use adaptable_tasks::shallow::ShallowSample;

use crate::MetaError;
use pulp::{Simd, bytemuck};

/// The sample count is padded to a multiple of this (the widest SIMD vector, AVX-512's 16 lanes).
pub const LANES: usize = 16;
/// Samples per chunk: a chunk's hidden activations (`d × CHUNK` values) stay in L1.
const CHUNK: usize = 128;
/// Hidden units per register tile (of the forward product and of the gradient product).
const ROWS: usize = 4;
/// Vectors of samples per forward register tile.
const VECTORS: usize = 4;
/// Input features per gradient register tile.
const COLS: usize = 4;

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
    fn with_simd<S: Simd>(self, simd: S) {
        let Pass { batch, w, c, out } = self;
        let d = batch.dim;
        let PassOutput {
            loss,
            clean_loss,
            grad_w,
            grad_c,
        } = out;
        let mut scratch = Scratch::new(simd, d);
        for b in 0..batch.problems {
            let problem = Problem {
                simd,
                d,
                x: (0..d)
                    .map(|i| vectors::<S>(&batch.x[(b * d + i) * batch.padded..][..batch.padded]))
                    .collect(),
                w: &w[b * d * d..][..d * d],
                c: &c[b * d..][..d],
            };
            let (l, lc) = problem.run(
                batch,
                b,
                &mut scratch,
                &mut grad_w[b * d * d..][..d * d],
                &mut grad_c[b * d..][..d],
            );
            loss[b] = l;
            clean_loss[b] = lc;
        }
    }
}

#[inline(always)]
fn vectors<S: Simd>(values: &[f32]) -> &[S::f32s] {
    // pulp's vector types are `repr(C)` arrays of f32 (alignment 4) and every row is a whole
    // number of LANES long, so the cast cannot fail.
    bytemuck::cast_slice(values)
}

/// Buffers of one pass, reused across its problems.
struct Scratch<V> {
    /// Hidden activations of the chunk, then their gradients, `[d][chunk vectors]`.
    hidden: Vec<V>,
    prediction: Vec<V>,
    acc_w: Vec<V>,
    acc_c: Vec<V>,
}

impl<V: Copy> Scratch<V> {
    #[inline(always)]
    fn new<S: Simd<f32s = V>>(simd: S, d: usize) -> Self {
        let zero = simd.splat_f32s(0.0);
        let chunk = CHUNK / S::F32_LANES;
        Self {
            hidden: vec![zero; d * chunk],
            prediction: vec![zero; chunk],
            acc_w: vec![zero; d * d],
            acc_c: vec![zero; d],
        }
    }
}

/// One problem's parameters and inputs, as the tiles read them.
struct Problem<'a, S: Simd> {
    simd: S,
    d: usize,
    /// Input rows as vectors, `[d][padded / lanes]`.
    x: Vec<&'a [S::f32s]>,
    w: &'a [f32],
    c: &'a [f32],
}

impl<S: Simd> Problem<'_, S> {
    /// Vectors per chunk.
    const CHUNK_VECTORS: usize = CHUNK / S::F32_LANES;

    /// The pass over problem `b` of `batch`; returns its two losses and writes its gradients.
    #[inline(always)]
    fn run(
        &self,
        batch: &ShallowBatch,
        b: usize,
        scratch: &mut Scratch<S::f32s>,
        grad_w: &mut [f32],
        grad_c: &mut [f32],
    ) -> (f64, f64) {
        let (simd, d, chunk) = (self.simd, self.d, Self::CHUNK_VECTORS);
        let padded = batch.padded;
        let mask = vectors::<S>(&batch.mask);
        let y = vectors::<S>(&batch.y[b * padded..][..padded]);
        let y_clean = vectors::<S>(&batch.y_clean[b * padded..][..padded]);
        let zero = simd.splat_f32s(0.0);
        let one = simd.splat_f32s(1.0);
        let scale = simd.splat_f32s(2.0 / batch.samples as f32);
        let Scratch {
            hidden,
            prediction,
            acc_w,
            acc_c,
        } = scratch;
        acc_w.fill(zero);
        acc_c.fill(zero);
        let (mut sq, mut sq_clean) = (zero, zero);
        let total = padded / S::F32_LANES;
        for first in (0..total).step_by(chunk) {
            let count = chunk.min(total - first);
            prediction.fill(zero);
            for j0 in (0..d).step_by(ROWS) {
                let mut v = 0;
                while v + VECTORS <= count {
                    self.forward_rows::<VECTORS>(j0, first, v, hidden, prediction);
                    v += VECTORS;
                }
                for v in v..count {
                    self.forward_rows::<1>(j0, first, v, hidden, prediction);
                }
            }
            for v in 0..count {
                let at = first + v;
                let r = simd.mul_f32s(simd.sub_f32s(prediction[v], y[at]), mask[at]);
                let rc = simd.mul_f32s(simd.sub_f32s(prediction[v], y_clean[at]), mask[at]);
                sq = simd.mul_add_f32s(r, r, sq);
                sq_clean = simd.mul_add_f32s(rc, rc, sq_clean);
                let g = simd.mul_f32s(r, scale);
                for j in 0..d {
                    let h = hidden[j * chunk + v];
                    acc_c[j] = simd.mul_add_f32s(g, h, acc_c[j]);
                    let gc = simd.mul_f32s(g, simd.splat_f32s(self.c[j]));
                    hidden[j * chunk + v] =
                        simd.mul_f32s(simd.mul_f32s(gc, h), simd.sub_f32s(one, h));
                }
            }
            for j0 in (0..d).step_by(ROWS) {
                for i0 in (0..d).step_by(COLS) {
                    self.gradient_tile(hidden, acc_w, j0, i0, first, count);
                }
            }
        }
        for (dst, acc) in grad_w.iter_mut().zip(acc_w.iter()) {
            *dst = simd.reduce_sum_f32s(*acc);
        }
        for (dst, acc) in grad_c.iter_mut().zip(acc_c.iter()) {
            *dst = simd.reduce_sum_f32s(*acc);
        }
        let n = batch.samples as f64;
        let mean = |v: S::f32s| {
            bytemuck::cast_slice::<S::f32s, f32>(std::slice::from_ref(&v))
                .iter()
                .map(|&s| f64::from(s))
                .sum::<f64>()
                / n
        };
        (mean(sq), mean(sq_clean))
    }

    /// The forward tile of hidden units `j0..` (up to [`ROWS`]) on `V` vectors of samples.
    #[inline(always)]
    fn forward_rows<const V: usize>(
        &self,
        j0: usize,
        first: usize,
        v: usize,
        hidden: &mut [S::f32s],
        prediction: &mut [S::f32s],
    ) {
        match self.d - j0 {
            1 => self.forward_tile::<1, V>(j0, first, v, hidden, prediction),
            2 => self.forward_tile::<2, V>(j0, first, v, hidden, prediction),
            3 => self.forward_tile::<3, V>(j0, first, v, hidden, prediction),
            _ => self.forward_tile::<ROWS, V>(j0, first, v, hidden, prediction),
        }
    }

    /// `h = σ(W x)` for `R` hidden units on `V` vectors of samples, accumulated into the
    /// prediction `cᵀ h`.
    #[inline(always)]
    fn forward_tile<const R: usize, const V: usize>(
        &self,
        j0: usize,
        first: usize,
        v: usize,
        hidden: &mut [S::f32s],
        prediction: &mut [S::f32s],
    ) {
        let (simd, d) = (self.simd, self.d);
        let mut z = [[simd.splat_f32s(0.0); V]; R];
        for (i, row) in self.x.iter().enumerate() {
            let inputs = &row[first + v..][..V];
            for (r, z) in z.iter_mut().enumerate() {
                let w = simd.splat_f32s(self.w[(j0 + r) * d + i]);
                for (z, &x) in z.iter_mut().zip(inputs) {
                    *z = simd.mul_add_f32s(w, x, *z);
                }
            }
        }
        for (r, z) in z.iter().enumerate() {
            let c = simd.splat_f32s(self.c[j0 + r]);
            for (k, &z) in z.iter().enumerate() {
                let mut h = z;
                // Lane by lane: the compiler vectorises the branch-free polynomial.
                for lane in bytemuck::cast_slice_mut::<S::f32s, f32>(std::slice::from_mut(&mut h)) {
                    *lane = sigmoid(*lane);
                }
                hidden[(j0 + r) * Self::CHUNK_VECTORS + v + k] = h;
                prediction[v + k] = simd.mul_add_f32s(c, h, prediction[v + k]);
            }
        }
    }

    /// Adds the chunk's `Δ Xᵀ` to the gradient rows `j0..` and columns `i0..` (up to 4 × 4).
    #[inline(always)]
    fn gradient_tile(
        &self,
        dz: &[S::f32s],
        acc: &mut [S::f32s],
        j0: usize,
        i0: usize,
        first: usize,
        count: usize,
    ) {
        macro_rules! by_size {
            ($($r:literal),*; $cols:tt) => {
                match (self.d - j0).min(ROWS) {
                    $( $r => by_size!(@cols $r $cols), )*
                    _ => unreachable!("a tile has 1 to ROWS rows"),
                }
            };
            (@cols $r:literal ($($c:literal),*)) => {
                match (self.d - i0).min(COLS) {
                    $( $c => self.gradient_tile_of::<$r, $c>(dz, acc, j0, i0, first, count), )*
                    _ => unreachable!("a tile has 1 to COLS columns"),
                }
            };
        }
        by_size!(1, 2, 3, 4; (1, 2, 3, 4))
    }

    #[inline(always)]
    fn gradient_tile_of<const R: usize, const C: usize>(
        &self,
        dz: &[S::f32s],
        acc_w: &mut [S::f32s],
        j0: usize,
        i0: usize,
        first: usize,
        count: usize,
    ) {
        let d = self.d;
        let chunk = Self::CHUNK_VECTORS;
        let mut acc: [[S::f32s; C]; R] =
            std::array::from_fn(|r| std::array::from_fn(|k| acc_w[(j0 + r) * d + i0 + k]));
        let rows: [&[S::f32s]; R] = std::array::from_fn(|r| &dz[(j0 + r) * chunk..][..count]);
        let cols: [&[S::f32s]; C] = std::array::from_fn(|k| &self.x[i0 + k][first..][..count]);
        for v in 0..count {
            for (acc, row) in acc.iter_mut().zip(&rows) {
                for (acc, col) in acc.iter_mut().zip(&cols) {
                    *acc = self.simd.mul_add_f32s(row[v], col[v], *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            acc_w[(j0 + r) * d + i0..][..C].copy_from_slice(acc);
        }
    }
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
    let shifted = t + ROUNDER;
    let m = shifted - ROUNDER;
    let f = (t - m) * std::f32::consts::LN_2;
    let mut p = 1.0 / 720.0_f32;
    p = p * f + 1.0 / 120.0;
    p = p * f + 1.0 / 24.0;
    p = p * f + 1.0 / 6.0;
    p = p * f + 0.5;
    p = p * f + 1.0;
    p = p * f + 1.0;
    // `shifted`'s low mantissa bits hold m itself (two's complement, since |m| ≤ 126 < 2²²), so
    // the exponent of 2^m comes from integer arithmetic on the bits. `m as i32` gives the same
    // number but, as a saturating cast, costs compares and blends that made the whole pass 2×
    // slower.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127);
    let exp_neg_z = p * f32::from_bits(biased << 23);
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
