use super::*;

/// Inputs of a small call: `batch · seq` rows of `heads · d` values.
struct Case {
    batch: usize,
    seq: usize,
    heads: usize,
    hidden: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    grad: Vec<f32>,
    bias: Vec<f32>,
}

impl Case {
    fn new(batch: usize, seq: usize, heads: usize, d: usize) -> Self {
        let hidden = heads * d;
        let n = batch * seq * hidden;
        let wave = |phase: f32| -> Vec<f32> {
            (0..n)
                .map(|i| (i as f32 * 0.37 + phase).sin() * 1.5)
                .collect()
        };
        // Batch 1 pads its last 3 keys; the last batch element pads every key.
        let mut bias = vec![0.0f32; batch * seq];
        bias[2 * seq - 3..2 * seq].fill(f32::MIN);
        bias[(batch - 1) * seq..].fill(f32::MIN);
        Self {
            batch,
            seq,
            heads,
            hidden,
            q: wave(0.0),
            k: wave(1.0),
            v: wave(2.0),
            grad: wave(3.0),
            bias,
        }
    }

    fn shape(&self, mask: Option<MaskStream>) -> AttentionShape {
        AttentionShape {
            batch: self.batch,
            seq: self.seq,
            heads: self.heads,
            hidden: self.hidden,
            mask,
        }
    }

    /// Context, probabilities and `(∂q, ∂k, ∂v)` from the kernels.
    fn kernels(&self, mask: Option<MaskStream>) -> (Vec<f32>, Vec<f32>, [Vec<f32>; 3]) {
        let shape = self.shape(mask);
        let n = self.q.len();
        let mut context = vec![0.0; n];
        let mut probs = vec![0.0; self.batch * self.heads * self.seq * self.seq];
        attention_forward(
            &self.q,
            &self.k,
            &self.v,
            &self.bias,
            &mut context,
            &mut probs,
            shape,
        );
        let mut grads = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
        let [gq, gk, gv] = &mut grads;
        attention_backward(
            &self.grad,
            &self.q,
            &self.k,
            &self.v,
            &probs,
            [gq, gk, gv],
            shape,
        );
        (context, probs, grads)
    }

    /// The same in f64 straight from the definition, with the mask values `mask`
    /// (`[batch, heads, seq, seq]`).
    // Indexed loops, so that the code reads as the formulas.
    #[allow(clippy::needless_range_loop)]
    fn reference(&self, mask: &[f32]) -> (Vec<f64>, Vec<f64>, [Vec<f64>; 3]) {
        let (seq, hidden, heads) = (self.seq, self.hidden, self.heads);
        let d = hidden / heads;
        let s = 1.0 / (d as f64).sqrt();
        let n = self.q.len();
        let mut context = vec![0.0; n];
        let mut probs = vec![0.0; mask.len()];
        let mut grads = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
        let at = |t: &[f32], b: usize, row: usize, h: usize, c: usize| {
            f64::from(t[(b * seq + row) * hidden + h * d + c])
        };
        for b in 0..self.batch {
            for h in 0..heads {
                let m = |i: usize, j: usize| f64::from(mask[((b * heads + h) * seq + i) * seq + j]);
                let mut p = vec![vec![0.0; seq]; seq];
                for (i, p) in p.iter_mut().enumerate() {
                    let scores: Vec<f64> = (0..seq)
                        .map(|j| {
                            s * (0..d)
                                .map(|c| at(&self.q, b, i, h, c) * at(&self.k, b, j, h, c))
                                .sum::<f64>()
                                + f64::from(self.bias[b * seq + j])
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::MIN, f64::max);
                    let total: f64 = scores.iter().map(|x| (x - max).exp()).sum();
                    for j in 0..seq {
                        p[j] = (scores[j] - max).exp() / total;
                        probs[((b * heads + h) * seq + i) * seq + j] = p[j];
                    }
                }
                for i in 0..seq {
                    let row = (b * seq + i) * hidden + h * d;
                    for c in 0..d {
                        context[row + c] = (0..seq)
                            .map(|j| p[i][j] * m(i, j) * at(&self.v, b, j, h, c))
                            .sum();
                    }
                    let grad_p: Vec<f64> = (0..seq)
                        .map(|j| {
                            m(i, j)
                                * (0..d)
                                    .map(|c| at(&self.grad, b, i, h, c) * at(&self.v, b, j, h, c))
                                    .sum::<f64>()
                        })
                        .collect();
                    let projection: f64 = (0..seq).map(|j| grad_p[j] * p[i][j]).sum();
                    for j in 0..seq {
                        let grad_score = p[i][j] * (grad_p[j] - projection);
                        let key_row = (b * seq + j) * hidden + h * d;
                        for c in 0..d {
                            grads[0][row + c] += s * grad_score * at(&self.k, b, j, h, c);
                            grads[1][key_row + c] += s * grad_score * at(&self.q, b, i, h, c);
                            grads[2][key_row + c] += p[i][j] * m(i, j) * at(&self.grad, b, i, h, c);
                        }
                    }
                }
            }
        }
        (context, probs, grads)
    }
}

fn worst(got: &[f32], expected: &[f64]) -> f64 {
    assert_eq!(got.len(), expected.len());
    got.iter()
        .zip(expected)
        .map(|(&g, &e)| (f64::from(g) - e).abs())
        .fold(0.0, f64::max)
}

#[test]
fn forward_and_backward_match_the_definition_with_dropout_and_padding() {
    // d = 20 exercises the vector remainder and seq = 13 ragged rows; the second case is large
    // enough to be split across threads, so the mask offsets of later batch elements count.
    for (case, stream) in [
        (Case::new(5, 13, 3, 20), None),
        (Case::new(5, 13, 3, 20), Some(MaskStream::new(0.7, 99))),
        (Case::new(8, 32, 4, 16), Some(MaskStream::new(0.9, 7))),
    ] {
        assert!(
            case.q.len() >= PARALLEL_MIN || case.batch < 8,
            "the large case must reach the parallel threshold"
        );
        let probs_len = case.batch * case.heads * case.seq * case.seq;
        let mut mask = vec![1.0; probs_len];
        if let Some(stream) = &stream {
            stream.fill(0, &mut mask);
        }
        let (context, probs, grads) = case.kernels(stream);
        let (e_context, e_probs, e_grads) = case.reference(&mask);
        assert!(worst(&probs, &e_probs) < 1e-5, "probabilities");
        assert!(worst(&context, &e_context) < 5e-5, "context");
        for (name, (g, e)) in ["q", "k", "v"].iter().zip(grads.iter().zip(&e_grads)) {
            let w = worst(g, e);
            assert!(w < 1e-4, "∂{name}: max |error| {w}");
        }
    }
}

#[test]
fn padded_keys_get_zero_probability_and_no_output_is_subnormal() {
    // Subnormal floats slow every later product that reads them by orders of magnitude on Intel
    // cores; a padded key's probability used to be 2^-126 / row sum, which is one.
    let case = Case::new(5, 13, 3, 20);
    let (context, probs, grads) = case.kernels(Some(MaskStream::new(0.9, 3)));
    let seq = case.seq;
    // Batch element 1 pads its last 3 keys (and is not fully padded).
    for h in 0..case.heads {
        for row in 0..seq {
            let at = ((case.heads + h) * seq + row) * seq;
            let padded = &probs[at + seq - 3..at + seq];
            assert_eq!(padded, [0.0; 3], "head {h}, query {row}");
        }
    }
    let all = context.iter().chain(&probs).chain(grads.iter().flatten());
    let subnormal = all.filter(|v| v.is_subnormal()).count();
    assert_eq!(subnormal, 0, "subnormal values in the kernels' outputs");
}
