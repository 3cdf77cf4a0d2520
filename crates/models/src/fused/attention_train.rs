//! Multi-head attention for training as one operation: [`attention_train`], with the composed
//! reference the backends without a kernel run.

use adaptable_lora::dropout::DropoutOps;
use burn::backend::{Backend, TensorMetadata, tensor::FloatTensor};
use burn::nn::Dropout;
use burn::tensor::{Distribution, Shape, Tensor};

use super::FusedOps;

/// Multi-head attention on projection rows for training: for every batch element and head,
/// `dropout(softmax(q kᵀ / √d + bias)) v`, in the layouts of
/// [`attention_rows`](super::attention_rows) (`q`, `k`, `v` `[batch·seq, hidden]`, `mask_bias`
/// `[batch, seq]`, the context `[batch·seq, hidden]`).
///
/// The dropout on the probabilities is [`dropout`](adaptable_lora::dropout::dropout)'s: active
/// when `dropout` is training, its probability is positive and the inputs are on an autodiff
/// device, drawing one seed from the device's random stream, so the mask is the one that
/// function would apply to the `[batch, heads, seq, seq]` probabilities. On Flex the whole
/// operation, forward and backward, runs in the kernels of
/// [`attention_train_cpu`](super::attention_train_cpu), which keep only the probabilities for
/// the backward (the mask is rebuilt from its seed); elsewhere it is composed of Burn's
/// operations.
///
/// # Panics
///
/// If the shapes disagree (as [`attention_rows`](super::attention_rows)).
pub fn attention_train(
    q: Tensor<2>,
    k: Tensor<2>,
    v: Tensor<2>,
    mask_bias: Tensor<2>,
    heads: usize,
    dropout: &Dropout,
) -> Tensor<2> {
    let [rows, hidden] = q.dims();
    let [batch, seq] = mask_bias.dims();
    assert!(
        k.dims() == [rows, hidden]
            && v.dims() == [rows, hidden]
            && rows == batch * seq
            && heads > 0
            && hidden.is_multiple_of(heads),
        "attention_train: q {:?}, k {:?}, v {:?}, bias {:?}, {heads} heads",
        q.dims(),
        k.dims(),
        v.dims(),
        mask_bias.dims()
    );
    let device = q.device();
    let active = dropout.training.is_enabled() && device.is_autodiff() && dropout.prob > 0.0;
    let (keep, seed) = if active {
        (
            1.0 - dropout.prob,
            Tensor::<1>::random([2], Distribution::Default, &device),
        )
    } else {
        (1.0, Tensor::<1>::zeros([2], &device))
    };
    let (context, _saved) = <burn::backend::Dispatch as FusedOps>::attention_train_forward(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask_bias.into_dispatch(),
        seed.into_dispatch(),
        heads,
        keep,
    );
    Tensor::from_dispatch(context)
}

/// The split of `[batch·seq, hidden]` rows into `[batch, heads, seq, d]` and back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heads {
    batch: usize,
    seq: usize,
    heads: usize,
    hidden: usize,
}

impl Heads {
    pub(super) fn of<B: Backend>(
        q: &FloatTensor<B>,
        mask_bias: &FloatTensor<B>,
        heads: usize,
    ) -> Self {
        let (batch, seq) = (mask_bias.shape()[0], mask_bias.shape()[1]);
        Self {
            batch,
            seq,
            heads,
            hidden: q.shape()[1],
        }
    }

    fn split<B: Backend>(&self, t: FloatTensor<B>) -> FloatTensor<B> {
        let shape = Shape::new([self.batch, self.seq, self.heads, self.hidden / self.heads]);
        B::float_swap_dims(B::float_reshape(t, shape), 1, 2)
    }

    fn merge<B: Backend>(&self, t: FloatTensor<B>) -> FloatTensor<B> {
        let rows = Shape::new([self.batch * self.seq, self.hidden]);
        B::float_reshape(B::float_swap_dims(t, 1, 2), rows)
    }

    fn scale(&self) -> f64 {
        1.0 / ((self.hidden / self.heads) as f64).sqrt()
    }
}

/// The composed forward: the context and the probabilities `P` and mask (`None` without
/// dropout), both `[batch, heads, seq, seq]`.
pub(super) fn composed_forward<B: Backend + DropoutOps>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    mask_bias: FloatTensor<B>,
    seed: FloatTensor<B>,
    heads: usize,
    keep: f64,
) -> (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>) {
    let h = Heads::of::<B>(&q, &mask_bias, heads);
    let probs = composed_probs::<B>(q, k, mask_bias, heads);
    let mask = (keep < 1.0).then(|| B::dropout_mask(probs.clone(), keep, seed));
    let dropped = match &mask {
        Some(mask) => B::float_mul(probs.clone(), mask.clone()),
        None => probs.clone(),
    };
    let context = h.merge::<B>(B::float_matmul(dropped, h.split::<B>(v)));
    (context, probs, mask)
}

/// The attention probabilities `softmax(q kᵀ / √d + bias)`, `[batch, heads, seq, seq]`.
pub(super) fn composed_probs<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    mask_bias: FloatTensor<B>,
    heads: usize,
) -> FloatTensor<B> {
    let h = Heads::of::<B>(&q, &mask_bias, heads);
    let bias = B::float_reshape(mask_bias, Shape::new([h.batch, 1, 1, h.seq]));
    let q = B::float_mul_scalar(h.split::<B>(q), h.scale().into());
    let scores = B::float_add(
        B::float_matmul(q, B::float_swap_dims(h.split::<B>(k), 2, 3)),
        bias,
    );
    let max = B::float_max_dim(scores.clone(), 3);
    let exp = B::float_exp(B::float_sub(scores, max));
    B::float_div(exp.clone(), B::float_sum_dim(exp, 3))
}

/// The composed backward: `(∂q, ∂k, ∂v)` from the context gradient `grad`, the probabilities
/// and the mask of [`composed_forward`].
#[allow(clippy::too_many_arguments)]
pub(super) fn composed_backward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    mask_bias: &FloatTensor<B>,
    probs: FloatTensor<B>,
    mask: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
    heads: usize,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let h = Heads::of::<B>(&q, mask_bias, heads);
    let (q, k, v, grad) = (
        h.split::<B>(q),
        h.split::<B>(k),
        h.split::<B>(v),
        h.split::<B>(grad),
    );
    let masked = |t: FloatTensor<B>| match &mask {
        Some(mask) => B::float_mul(t, mask.clone()),
        None => t,
    };
    let dropped = masked(probs.clone());
    let grad_v = B::float_matmul(B::float_swap_dims(dropped, 2, 3), grad.clone());
    let grad_probs = masked(B::float_matmul(grad, B::float_swap_dims(v, 2, 3)));
    let projection = B::float_sum_dim(B::float_mul(grad_probs.clone(), probs.clone()), 3);
    let grad_scores = B::float_mul(probs, B::float_sub(grad_probs, projection));
    let scale = h.scale().into();
    let grad_q = B::float_mul_scalar(B::float_matmul(grad_scores.clone(), k), scale);
    let grad_k = B::float_mul_scalar(
        B::float_matmul(B::float_swap_dims(grad_scores, 2, 3), q),
        scale,
    );
    (
        h.merge::<B>(grad_q),
        h.merge::<B>(grad_k),
        h.merge::<B>(grad_v),
    )
}

#[cfg(test)]
mod tests {
    use burn::backend::Dispatch;
    use burn::tensor::{Device, Tolerance};

    use super::*;

    /// `q`, `k`, `v` `[batch·seq, hidden]` on `device`, a bias padding the last keys of batch
    /// element 1 and every key of the last, an upstream gradient and a fixed seed.
    fn inputs(device: &Device) -> ([Tensor<2>; 3], Tensor<2>, Tensor<2>, Tensor<1>) {
        let (batch, seq, hidden) = (4, 24, 48);
        let rows = || {
            Tensor::<2>::random(
                [batch * seq, hidden],
                Distribution::Normal(0.0, 1.0),
                device,
            )
        };
        let mut bias = vec![0.0f32; batch * seq];
        bias[2 * seq - 5..2 * seq].fill(f32::MIN);
        bias[(batch - 1) * seq..].fill(f32::MIN);
        let bias =
            Tensor::<2>::from_data(burn::tensor::TensorData::new(bias, [batch, seq]), device);
        let seed = Tensor::<1>::from_data([0.25f32, 0.75], device);
        ([rows(), rows(), rows()], bias, rows(), seed)
    }

    /// Context and `(∂q, ∂k, ∂v)` of `sum(context ⊙ weight)`, with `forward` on Dispatch
    /// primitives under autodiff.
    fn run(
        [q, k, v]: [Tensor<2>; 3],
        bias: &Tensor<2>,
        weight: &Tensor<2>,
        seed: &Tensor<1>,
        forward: impl Fn([FloatTensor<Dispatch>; 4], FloatTensor<Dispatch>) -> FloatTensor<Dispatch>,
    ) -> Vec<burn::tensor::TensorData> {
        let leaves = [q, k, v].map(|t| t.detach().require_grad());
        let [q, k, v] = leaves.clone().map(|t| t.into_dispatch());
        let context = Tensor::<2>::from_dispatch(forward(
            [q, k, v, bias.clone().into_dispatch()],
            seed.clone().into_dispatch(),
        ));
        let grads = (context.clone() * weight.clone()).sum().backward();
        let mut out = vec![context.into_data()];
        out.extend(leaves.map(|t| t.grad(&grads).expect("gradient").into_data()));
        out
    }

    #[test]
    fn the_fused_operation_matches_autodiff_of_the_composed_one() {
        let device = Device::default().autodiff();
        device.seed(11);
        let (qkv, bias, weight, seed) = inputs(&device);
        for keep in [1.0, 0.8] {
            let fused = run(qkv.clone(), &bias, &weight, &seed, |[q, k, v, b], s| {
                <Dispatch as FusedOps>::attention_train_forward(q, k, v, b, s, 4, keep).0
            });
            let composed = run(qkv.clone(), &bias, &weight, &seed, |[q, k, v, b], s| {
                composed_forward::<Dispatch>(q, k, v, b, s, 4, keep).0
            });
            for (name, (ours, reference)) in ["context", "∂q", "∂k", "∂v"]
                .iter()
                .zip(fused.iter().zip(&composed))
            {
                println!("keep {keep}: {name}");
                ours.assert_approx_eq::<f32>(reference, Tolerance::absolute(2e-5));
            }
        }
    }

    #[test]
    fn the_composed_backward_matches_autodiff_of_the_composed_forward() {
        // The path of backends without kernels, checked on this one.
        let device = Device::default().autodiff();
        device.seed(12);
        let (qkv, bias, weight, seed) = inputs(&device);
        let keep = 0.7;
        let reference = run(qkv.clone(), &bias, &weight, &seed, |[q, k, v, b], s| {
            composed_forward::<Dispatch>(q, k, v, b, s, 4, keep).0
        });
        let plain = |t: &Tensor<2>| t.clone().inner().into_dispatch();
        let [q, k, v] = qkv.each_ref().map(plain);
        let (_, probs, mask) = composed_forward::<Dispatch>(
            q.clone(),
            k.clone(),
            v.clone(),
            plain(&bias),
            seed.clone().inner().into_dispatch(),
            4,
            keep,
        );
        let (gq, gk, gv) =
            composed_backward::<Dispatch>(q, k, v, &plain(&bias), probs, mask, plain(&weight), 4);
        for (name, (ours, reference)) in ["∂q", "∂k", "∂v"]
            .iter()
            .zip([gq, gk, gv].into_iter().zip(&reference[1..]))
        {
            println!("{name}");
            Tensor::<2>::from_dispatch(ours)
                .into_data()
                .assert_approx_eq::<f32>(reference, Tolerance::absolute(2e-5));
        }
    }
}
