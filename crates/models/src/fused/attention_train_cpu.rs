//! Multi-head attention for training on plain `f32` slices, forward and backward: the kernels
//! behind [`attention_train`](super::attention_train) on Flex.
//!
//! Like the [inference kernel](super::attention_cpu) they read the heads straight out of the
//! `[batch·seq, hidden]` projection rows and write results in that layout. The forward also keeps
//! the attention probabilities `P` (before dropout) for the backward; the dropout mask on `P` is a
//! [`MaskStream`] over the `[batch, heads, seq, seq]` elements, so the backward rebuilds it
//! instead of reading a stored one. With `S = s · q kᵀ + bias` (`s = 1/√d`), `P = softmax(S)`,
//! `P̃ = P ⊙ mask` and context `c = P̃ v`, the backward is `∂v = P̃ᵀ ∂c`,
//! `∂P = (∂c vᵀ) ⊙ mask`, `∂S = P ⊙ (∂P − rowsum(∂P ⊙ P))`, `∂q = s · ∂S k`, `∂k = s · ∂Sᵀ q`.

use adaptable_lora::host::{MaskStream, threads};
use pulp::Simd;

use super::attention_cpu::{lanes, load, max_of, store, sum_of, weighted_sum};
use super::cpu::exp;

/// Below this many context values one thread is faster than starting another.
const PARALLEL_MIN: usize = 1 << 14;

/// The shapes of one call: `batch · seq` rows of `hidden = heads · d` values, the dropout mask on
/// the probabilities (none when dropout is off).
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Batch elements.
    pub batch: usize,
    /// Tokens per batch element.
    pub seq: usize,
    /// Heads; `hidden` is a multiple of it.
    pub heads: usize,
    /// Values per row.
    pub hidden: usize,
    /// The dropout mask on the attention probabilities.
    pub mask: Option<MaskStream>,
}

impl AttentionShape {
    fn d(&self) -> usize {
        self.hidden / self.heads
    }

    /// Values of one batch element in the row layout.
    fn rows_block(&self) -> usize {
        self.seq * self.hidden
    }

    /// Values of one batch element's probabilities.
    fn probs_block(&self) -> usize {
        self.heads * self.seq * self.seq
    }

    fn check(&self, rows: &[&[f32]], probs: usize, bias: usize) {
        let n = self.batch * self.rows_block();
        assert!(
            self.heads > 0
                && self.hidden.is_multiple_of(self.heads)
                && rows.iter().all(|r| r.len() == n)
                && probs == self.batch * self.probs_block()
                && bias == self.batch * self.seq,
            "attention kernel: slices do not match {self:?}"
        );
    }
}

/// A kernel over a range of batch elements with `N` outputs, each split by batch element.
trait BatchKernel<const N: usize>: Sync {
    /// Values of one batch element in each output.
    fn blocks(&self) -> [usize; N];
    /// Processes batch elements `first..` whose outputs are `outs`.
    fn run<S: Simd>(&self, simd: S, first: usize, outs: [&mut [f32]; N]);
}

/// Runs `kernel` over every batch element, the elements split across [`threads`].
fn par_batches<const N: usize, K: BatchKernel<N>>(batch: usize, outs: [&mut [f32]; N], kernel: &K) {
    let run = |first: usize, outs: [&mut [f32]; N]| {
        pulp::Arch::new().dispatch(Dispatched {
            kernel,
            first,
            outs,
        })
    };
    let blocks = kernel.blocks();
    let threads = threads().min(batch);
    if threads <= 1 || batch * blocks[0] < PARALLEL_MIN {
        return run(0, outs);
    }
    let per_thread = batch.div_ceil(threads);
    let mut rests = outs;
    std::thread::scope(|scope| {
        let run = &run;
        let mut first = 0;
        while first < batch {
            let count = per_thread.min(batch - first);
            let mut taken: [&mut [f32]; N] = std::array::from_fn(|_| Default::default());
            for (i, rest) in rests.iter_mut().enumerate() {
                let (head, tail) = std::mem::take(rest).split_at_mut(count * blocks[i]);
                taken[i] = head;
                *rest = tail;
            }
            scope.spawn(move || run(first, taken));
            first += count;
        }
    });
}

/// One call of a batch kernel for pulp (a struct: pulp calls closures out of line).
struct Dispatched<'a, const N: usize, K> {
    kernel: &'a K,
    first: usize,
    outs: [&'a mut [f32]; N],
}

impl<const N: usize, K: BatchKernel<N>> pulp::WithSimd for Dispatched<'_, N, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        self.kernel.run(simd, self.first, self.outs)
    }
}

/// Writes `head`'s columns of `rows` (`seq` rows of `hidden`), times `scale`, transposed into `t`
/// (`[d, seq]`), so that products over the rows become row updates of length `seq`.
#[inline(always)]
fn transpose_head(
    rows: &[f32],
    hidden: usize,
    cols: std::ops::Range<usize>,
    scale: f32,
    t: &mut [f32],
) {
    let seq = rows.len() / hidden;
    for (j, row) in rows.chunks_exact(hidden).enumerate() {
        for (c, &value) in row[cols.clone()].iter().enumerate() {
            t[c * seq + j] = value * scale;
        }
    }
}

/// `out[j] = Σ_c coef[c] · t[c][j]` for `t` `[coef.len(), out.len()]`, a vector of `j` at a time.
#[inline(always)]
fn row_products<S: Simd>(simd: S, coef: &[f32], t: &[f32], out: &mut [f32]) {
    let n = out.len();
    for start in (0..n).step_by(lanes::<S>()) {
        let end = (start + lanes::<S>()).min(n);
        let dot = weighted_sum(simd, coef, |c| load(simd, &t[c * n + start..c * n + end]));
        store(simd, &mut out[start..end], dot);
    }
}

/// `out[cols] = scale · Σ_j coef[j] · rows[j][cols]` (`rows` of `hidden` values), a vector of
/// columns at a time.
#[inline(always)]
fn combine_rows<S: Simd>(
    simd: S,
    coef: &[f32],
    rows: &[f32],
    hidden: usize,
    cols: std::ops::Range<usize>,
    scale: f32,
    out: &mut [f32],
) {
    let d = cols.len();
    for start in (0..d).step_by(lanes::<S>()) {
        let end = (start + lanes::<S>()).min(d);
        let (from, to) = (cols.start + start, cols.start + end);
        let sum = weighted_sum(simd, coef, |j| {
            load(simd, &rows[j * hidden + from..j * hidden + to])
        });
        store(
            simd,
            &mut out[start..end],
            simd.mul_f32s(sum, simd.splat_f32s(scale)),
        );
    }
}

/// Per-thread buffers.
#[derive(Default)]
struct Scratch {
    /// One head's rows transposed, `[d, seq]`.
    t: Vec<f32>,
    /// One row of mask values.
    mask: Vec<f32>,
    /// One row of probabilities after dropout (forward) or of `∂P` (backward).
    row: Vec<f32>,
    /// One head's `P̃` (`[seq, seq]`), then transposed.
    dropped: Vec<f32>,
    /// One head's `∂S` (`[seq, seq]`), then transposed.
    grad_scores: Vec<f32>,
    /// The transposes of `dropped` and `grad_scores`.
    transposed: Vec<f32>,
}

impl Scratch {
    fn size(&mut self, seq: usize, d: usize) {
        self.t.resize(d * seq, 0.0);
        self.mask.resize(seq, 1.0);
        self.row.resize(seq, 0.0);
        self.dropped.resize(seq * seq, 0.0);
        self.grad_scores.resize(seq * seq, 0.0);
        self.transposed.resize(seq * seq, 0.0);
    }

    /// Sets `mask` to the mask values of row `row` of head `h` of batch element `b` (all 1
    /// without dropout).
    #[inline(always)]
    fn fill_mask(&mut self, shape: &AttentionShape, b: usize, h: usize, row: usize) {
        if let Some(stream) = &shape.mask {
            let seq = shape.seq;
            stream.fill_inline(((b * shape.heads + h) * seq + row) * seq, &mut self.mask);
        }
    }
}

/// The transpose of the square `[n, n]` matrix `m` into `t`.
#[inline(always)]
fn transpose_square(m: &[f32], n: usize, t: &mut [f32]) {
    for (i, row) in m.chunks_exact(n).enumerate() {
        for (j, &value) in row.iter().enumerate() {
            t[j * n + i] = value;
        }
    }
}

/// The training forward: writes the context of every query row to `context` and the attention
/// probabilities (before dropout) to `probs` (`[batch, heads, seq, seq]`).
///
/// # Panics
///
/// If the slices do not match `shape` (`bias` is `[batch, seq]`).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &[f32],
    context: &mut [f32],
    probs: &mut [f32],
    shape: AttentionShape,
) {
    shape.check(&[q, k, v, context], probs.len(), bias.len());
    let kernel = Forward {
        q,
        k,
        v,
        bias,
        shape,
    };
    par_batches(shape.batch, [context, probs], &kernel);
}

struct Forward<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    bias: &'a [f32],
    shape: AttentionShape,
}

impl BatchKernel<2> for Forward<'_> {
    fn blocks(&self) -> [usize; 2] {
        [self.shape.rows_block(), self.shape.probs_block()]
    }

    #[inline(always)]
    fn run<S: Simd>(&self, simd: S, first: usize, [context, probs]: [&mut [f32]; 2]) {
        let shape = &self.shape;
        let (seq, hidden, d) = (shape.seq, shape.hidden, shape.d());
        let (rows_block, probs_block) = (shape.rows_block(), shape.probs_block());
        let scale = 1.0 / (d as f32).sqrt();
        let mut s = Scratch::default();
        s.size(seq, d);
        let blocks = context
            .chunks_exact_mut(rows_block)
            .zip(probs.chunks_exact_mut(probs_block));
        for (i, (context, probs)) in blocks.enumerate() {
            let b = first + i;
            let at = b * rows_block..(b + 1) * rows_block;
            let (q, k, v) = (&self.q[at.clone()], &self.k[at.clone()], &self.v[at]);
            let bias = &self.bias[b * seq..(b + 1) * seq];
            for h in 0..shape.heads {
                let cols = h * d..(h + 1) * d;
                // Scaling the keys (seq·d values) is cheaper than scaling the seq² scores.
                transpose_head(k, hidden, cols.clone(), scale, &mut s.t);
                for (row, p) in probs[h * seq * seq..(h + 1) * seq * seq]
                    .chunks_exact_mut(seq)
                    .enumerate()
                {
                    let query = &q[row * hidden + cols.start..row * hidden + cols.end];
                    row_products(simd, query, &s.t, p);
                    for (score, &b) in p.iter_mut().zip(bias) {
                        *score += b;
                    }
                    let max = max_of(simd, p);
                    for score in p.iter_mut() {
                        *score = exp(*score - max);
                    }
                    let inv_sum = 1.0 / sum_of(simd, p);
                    for score in p.iter_mut() {
                        *score *= inv_sum;
                    }
                    s.fill_mask(shape, b, h, row);
                    for ((out, &p), &m) in s.row.iter_mut().zip(p.iter()).zip(&s.mask) {
                        *out = p * m;
                    }
                    let out = &mut context[row * hidden + cols.start..row * hidden + cols.end];
                    combine_rows(simd, &s.row, v, hidden, cols.clone(), 1.0, out);
                }
            }
        }
    }
}

/// The training backward: from the context gradient `grad` and the forward's inputs and `probs`,
/// writes `∂q`, `∂k` and `∂v` (row layout, overwritten).
///
/// # Panics
///
/// If the slices do not match `shape`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    grad: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    grads: [&mut [f32]; 3],
    shape: AttentionShape,
) {
    let [gq, gk, gv] = grads;
    shape.check(
        &[grad, q, k, v, gq, gk, gv],
        probs.len(),
        shape.batch * shape.seq,
    );
    let kernel = Backward {
        grad,
        q,
        k,
        v,
        probs,
        shape,
    };
    par_batches(shape.batch, [gq, gk, gv], &kernel);
}

struct Backward<'a> {
    grad: &'a [f32],
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    probs: &'a [f32],
    shape: AttentionShape,
}

impl BatchKernel<3> for Backward<'_> {
    fn blocks(&self) -> [usize; 3] {
        [self.shape.rows_block(); 3]
    }

    #[inline(always)]
    fn run<S: Simd>(&self, simd: S, first: usize, [gq, gk, gv]: [&mut [f32]; 3]) {
        let shape = &self.shape;
        let (seq, hidden, d) = (shape.seq, shape.hidden, shape.d());
        let (rows_block, probs_block) = (shape.rows_block(), shape.probs_block());
        let scale = 1.0 / (d as f32).sqrt();
        let mut s = Scratch::default();
        s.size(seq, d);
        let blocks = gq
            .chunks_exact_mut(rows_block)
            .zip(gk.chunks_exact_mut(rows_block))
            .zip(gv.chunks_exact_mut(rows_block));
        for (i, ((gq, gk), gv)) in blocks.enumerate() {
            let b = first + i;
            let at = b * rows_block..(b + 1) * rows_block;
            let (grad, q, k, v) = (
                &self.grad[at.clone()],
                &self.q[at.clone()],
                &self.k[at.clone()],
                &self.v[at],
            );
            let probs = &self.probs[b * probs_block..(b + 1) * probs_block];
            for h in 0..shape.heads {
                let cols = h * d..(h + 1) * d;
                transpose_head(v, hidden, cols.clone(), 1.0, &mut s.t);
                let head_probs = &probs[h * seq * seq..(h + 1) * seq * seq];
                for (row, p) in head_probs.chunks_exact(seq).enumerate() {
                    let grad_row = &grad[row * hidden + cols.start..row * hidden + cols.end];
                    // ∂P̃ = ∂c vᵀ for this query.
                    let grad_p = &mut s.row;
                    row_products(simd, grad_row, &s.t, grad_p);
                    s.fill_mask(shape, b, h, row);
                    let (grad_p, mask) = (&mut s.row, &s.mask);
                    let dropped = &mut s.dropped[row * seq..(row + 1) * seq];
                    let mut projection = 0.0;
                    for (((g, kept), &p), &m) in
                        grad_p.iter_mut().zip(dropped.iter_mut()).zip(p).zip(mask)
                    {
                        *kept = p * m;
                        *g *= m;
                        projection += *g * p;
                    }
                    let grad_scores = &mut s.grad_scores[row * seq..(row + 1) * seq];
                    for ((gs, &g), &p) in grad_scores.iter_mut().zip(grad_p.iter()).zip(p) {
                        *gs = p * (g - projection);
                    }
                    let out = &mut gq[row * hidden + cols.start..row * hidden + cols.end];
                    combine_rows(simd, grad_scores, k, hidden, cols.clone(), scale, out);
                }
                // Keys and values: sums over the queries, i.e. over the columns of ∂S and P̃.
                transpose_square(&s.grad_scores, seq, &mut s.transposed);
                for (j, coef) in s.transposed.chunks_exact(seq).enumerate() {
                    let out = &mut gk[j * hidden + cols.start..j * hidden + cols.end];
                    combine_rows(simd, coef, q, hidden, cols.clone(), scale, out);
                }
                transpose_square(&s.dropped, seq, &mut s.transposed);
                for (j, coef) in s.transposed.chunks_exact(seq).enumerate() {
                    let out = &mut gv[j * hidden + cols.start..j * hidden + cols.end];
                    combine_rows(simd, coef, grad, hidden, cols.clone(), 1.0, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
