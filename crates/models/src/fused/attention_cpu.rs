//! Multi-head attention on projection rows, on plain `f32` slices: the inference kernel behind
//! [`attention_rows`](super::attention_rows) on Flex.
//!
//! It reads the heads straight out of the `[batch·seq, hidden]` projections and writes the
//! context in the same layout, so neither the split into `[batch, heads, seq, d]` nor the merge
//! back is materialised, and it needs no matrix-product calls: at BERT-sized heads (`seq` and `d`
//! in the tens) the per-call overhead of a general product is larger than the work.

use pulp::Simd;

use super::cpu::{BlockKernel, exp, par_blocks};

/// How many `f32` one vector of `S` holds.
#[inline(always)]
pub(super) fn lanes<S: Simd>() -> usize {
    std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>()
}

/// `x` (at most one vector of values) as a vector, zero-filled past its end; a whole vector is a
/// plain load (pulp's partial load branches on the length through a jump table).
#[inline(always)]
pub(super) fn load<S: Simd>(simd: S, x: &[f32]) -> S::f32s {
    match S::as_simd_f32s(x) {
        ([whole], []) => *whole,
        _ => simd.partial_load_f32s(x),
    }
}

/// Writes the first `x.len()` lanes of `value` (at most one vector) to `x`.
#[inline(always)]
pub(super) fn store<S: Simd>(simd: S, x: &mut [f32], value: S::f32s) {
    match S::as_mut_simd_f32s(x) {
        ([whole], []) => *whole = value,
        _ => simd.partial_store_f32s(x, value),
    }
}

/// `Σᵢ coef[i] · row(i)` for one vector of columns, in four independent accumulator chains (one
/// chain would wait on the latency of every multiply-add).
#[inline(always)]
pub(super) fn weighted_sum<S: Simd>(
    simd: S,
    coef: &[f32],
    row: impl Fn(usize) -> S::f32s,
) -> S::f32s {
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; 4];
    let quads = coef.len() / 4;
    for i in 0..quads {
        for (lane, a) in acc.iter_mut().enumerate() {
            let r = 4 * i + lane;
            *a = simd.mul_add_f32s(simd.splat_f32s(coef[r]), row(r), *a);
        }
    }
    for (r, &c) in coef.iter().enumerate().skip(4 * quads) {
        acc[0] = simd.mul_add_f32s(simd.splat_f32s(c), row(r), acc[0]);
    }
    simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]))
}

/// The largest value of `x` (at least `f32::MIN`).
#[inline(always)]
pub(super) fn max_of<S: Simd>(simd: S, x: &[f32]) -> f32 {
    let (head, tail) = S::as_simd_f32s(x);
    let lanes = head
        .iter()
        .fold(simd.splat_f32s(f32::MIN), |m, &v| simd.max_f32s(m, v));
    tail.iter()
        .fold(simd.reduce_max_f32s(lanes), |m, &v| m.max(v))
}

/// `Σ x`.
#[inline(always)]
pub(super) fn sum_of<S: Simd>(simd: S, x: &[f32]) -> f32 {
    let (head, tail) = S::as_simd_f32s(x);
    let lanes = head
        .iter()
        .fold(simd.splat_f32s(0.0), |acc, &v| simd.add_f32s(acc, v));
    simd.reduce_sum_f32s(lanes) + tail.iter().sum::<f32>()
}

/// Replaces every query row of `q` with its attention context: for batch `b` (rows
/// `b·seq..(b+1)·seq`) and head `h` (columns `h·d..(h+1)·d`, `d = hidden / heads`),
/// `softmax(q kᵀ / √d + bias_b) v`.
///
/// `q`, `k` and `v` are `[batch·seq, hidden]` row-major and `bias` is `[batch, seq]`, added to
/// the scores of every query of its batch (0 for real keys, a huge negative value for padding).
/// The caller checks the lengths: `q`, `k`, `v` of equal length, a multiple of `bias.len()`, and
/// `hidden` a multiple of `heads`.
pub fn attention_rows(q: &mut [f32], k: &[f32], v: &[f32], bias: &[f32], seq: usize, heads: usize) {
    if q.is_empty() || seq == 0 {
        return;
    }
    let block = seq * (q.len() / bias.len());
    let kernel = Attention {
        k,
        v,
        bias,
        seq,
        block,
        heads,
    };
    par_blocks(q, block, kernel);
}

/// [`attention_rows`]' inputs other than the queries, shared by the threads; `block` is one batch
/// element's `seq · hidden` values.
struct Attention<'a> {
    k: &'a [f32],
    v: &'a [f32],
    bias: &'a [f32],
    seq: usize,
    block: usize,
    heads: usize,
}

impl BlockKernel for Attention<'_> {
    #[inline(always)]
    fn run<S: Simd>(&self, simd: S, first: usize, q: &mut [f32]) {
        let (seq, block) = (self.seq, self.block);
        let mut scratch = Scratch::default();
        for (i, qb) in q.chunks_exact_mut(block).enumerate() {
            let b = first + i;
            attention_batch(
                simd,
                qb,
                &self.k[b * block..(b + 1) * block],
                &self.v[b * block..(b + 1) * block],
                &self.bias[b * seq..(b + 1) * seq],
                self.heads,
                &mut scratch,
            );
        }
    }
}

/// Per-thread buffers: one head's scaled keys transposed (`[d, seq]`) and one query's scores.
#[derive(Default)]
struct Scratch {
    keys_t: Vec<f32>,
    scores: Vec<f32>,
}

/// [`attention_rows`] for one batch element (`seq` rows), every head.
#[inline(always)]
fn attention_batch<S: Simd>(
    simd: S,
    q: &mut [f32],
    k: &[f32],
    v: &[f32],
    bias: &[f32],
    heads: usize,
    s: &mut Scratch,
) {
    let seq = bias.len();
    let hidden = q.len() / seq;
    let d = hidden / heads;
    let scale = 1.0 / (d as f32).sqrt();
    s.keys_t.resize(d * seq, 0.0);
    s.scores.resize(seq, 0.0);
    for h in 0..heads {
        let cols = h * d..(h + 1) * d;
        // Transposed so that a query's scores are d row updates of length seq; scaling the keys
        // (seq·d values) is cheaper than scaling every score (seq² values).
        for (j, row) in k.chunks_exact(hidden).enumerate() {
            for (c, &value) in row[cols.clone()].iter().enumerate() {
                s.keys_t[c * seq + j] = value * scale;
            }
        }
        for row in q.chunks_exact_mut(hidden) {
            let query = &mut row[cols.clone()];
            // Scores, one vector of keys at a time (partial loads cover a ragged end).
            for start in (0..seq).step_by(lanes::<S>()) {
                let end = (start + lanes::<S>()).min(seq);
                let dot = weighted_sum(simd, query, |c| {
                    load(simd, &s.keys_t[c * seq + start..c * seq + end])
                });
                let biased = simd.add_f32s(dot, load(simd, &bias[start..end]));
                store(simd, &mut s.scores[start..end], biased);
            }
            let max = max_of(simd, &s.scores);
            for score in s.scores.iter_mut() {
                *score = exp(*score - max);
            }
            let inv_sum = 1.0 / sum_of(simd, &s.scores);
            // Context, one vector of columns at a time; the query is no longer needed, so its
            // slot takes the context.
            for start in (0..d).step_by(lanes::<S>()) {
                let end = (start + lanes::<S>()).min(d);
                let (from, to) = (cols.start + start, cols.start + end);
                let context = weighted_sum(simd, &s.scores, |j| {
                    load(simd, &v[j * hidden + from..j * hidden + to])
                });
                let normalised = simd.mul_f32s(context, simd.splat_f32s(inv_sum));
                store(simd, &mut query[start..end], normalised);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention for one (batch, head, query) in f64, straight from the definition.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        bias: &[f32],
        (seq, hidden, heads): (usize, usize, usize),
        b: usize,
        h: usize,
        i: usize,
    ) -> Vec<f64> {
        let d = hidden / heads;
        let at = |t: &[f32], row: usize, c: usize| t[(b * seq + row) * hidden + h * d + c] as f64;
        let scores: Vec<f64> = (0..seq)
            .map(|j| {
                (0..d).map(|c| at(q, i, c) * at(k, j, c)).sum::<f64>() / (d as f64).sqrt()
                    + bias[b * seq + j] as f64
            })
            .collect();
        let max = scores.iter().copied().fold(f64::MIN, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        (0..d)
            .map(|c| (0..seq).map(|j| weights[j] * at(v, j, c)).sum::<f64>() / total)
            .collect()
    }

    #[test]
    fn matches_the_definition_with_padding_and_uneven_widths() {
        // d = 20 exercises the vector remainder; 5 batches split unevenly over threads.
        let (batch, seq, heads, d) = (5, 37, 3, 20);
        let hidden = heads * d;
        let n = batch * seq * hidden;
        let wave = |phase: f32| -> Vec<f32> {
            (0..n)
                .map(|i| (i as f32 * 0.37 + phase).sin() * 1.5)
                .collect()
        };
        let (q, k, v) = (wave(0.0), wave(1.0), wave(2.0));
        // Batch 1 pads its last 10 keys, batch 3 every key (then the weights are uniform).
        let mut bias = vec![0.0f32; batch * seq];
        bias[seq + seq - 10..2 * seq].fill(f32::MIN);
        bias[3 * seq..4 * seq].fill(f32::MIN);
        let mut out = q.clone();
        attention_rows(&mut out, &k, &v, &bias, seq, heads);
        let mut worst = 0.0f64;
        for b in 0..batch {
            for h in 0..heads {
                for i in 0..seq {
                    let expected = reference(&q, &k, &v, &bias, (seq, hidden, heads), b, h, i);
                    for (c, e) in expected.iter().enumerate() {
                        let got = out[(b * seq + i) * hidden + h * d + c] as f64;
                        worst = worst.max((got - e).abs());
                    }
                }
            }
        }
        assert!(worst < 2e-5, "max |error| {worst}");
    }

    #[test]
    fn large_inputs_split_across_threads_give_the_same_result_as_one_block() {
        let (batch, seq, heads, d) = (8, 64, 4, 32);
        let hidden = heads * d;
        let n = batch * seq * hidden;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 101) as f32 * 0.02 - 1.0)
            .collect();
        let bias = vec![0.0f32; batch * seq];
        let mut together = x.clone();
        attention_rows(&mut together, &x, &x, &bias, seq, heads);
        // One batch at a time: below the parallel threshold, so one thread.
        let block = seq * hidden;
        for b in 0..batch {
            let mut alone = x[b * block..(b + 1) * block].to_vec();
            let kv = &x[b * block..(b + 1) * block];
            attention_rows(&mut alone, kv, kv, &bias[..seq], seq, heads);
            assert_eq!(alone, together[b * block..(b + 1) * block], "batch {b}");
        }
    }
}
