//! The Flex implementation: the [`cpu`](super::cpu) kernels on Flex tensors' host memory, in
//! place where the storage is not shared, and Flex's own kernels for layouts they do not handle.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::tensor::DType;

use adaptable_lora::dropout::{DropoutOps, host_seed};
use adaptable_lora::host::MaskStream;
use burn::tensor::TensorData;

use super::attention_train::{composed_backward, composed_forward};
use super::attention_train_cpu::{AttentionShape, attention_backward, attention_forward};
use super::{FusedOps, attention_cpu, attention_rows_reference, cpu};

/// A Flex tensor of the given shape holding `values`.
fn tensor(values: Vec<f32>, dims: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims.into()))
}

/// The kernels' shape of an attention call, when every tensor has the layout they handle.
fn attention_shape(
    tensors: &[&FlexTensor],
    mask_bias: &FlexTensor,
    heads: usize,
    keep: f64,
    seed: &FlexTensor,
) -> Option<AttentionShape> {
    let all_plain = tensors.iter().all(|t| plain(t)) && plain(mask_bias);
    let shape = tensors.first()?.layout().shape();
    let bias = mask_bias.layout().shape();
    (all_plain && shape.num_dims() == 2 && bias.num_dims() == 2).then(|| AttentionShape {
        batch: bias[0],
        seq: bias[1],
        heads,
        hidden: shape[1],
        mask: (keep < 1.0).then(|| MaskStream::new(keep, host_seed::<Flex>(seed.clone()))),
    })
}

/// Contiguous f32 from the start of its storage: the layout the kernels handle.
fn plain(t: &FlexTensor) -> bool {
    t.dtype() == DType::F32 && t.is_contiguous() && t.layout().start_offset() == 0
}

/// The tensor's values, writable; copies first only when the storage is shared.
fn values(t: &mut FlexTensor) -> &mut [f32] {
    let n = t.layout().num_elements();
    &mut t.storage_mut::<f32>()[..n]
}

impl FusedOps for Flex {
    fn attention_rows(
        mut q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        let n = q.layout().num_elements();
        let seq = mask_bias.layout().shape()[1];
        let bias_len = mask_bias.layout().num_elements();
        if ![&q, &k, &v, &mask_bias].into_iter().all(plain) {
            return attention_rows_reference::<Self>(q, k, v, mask_bias, heads);
        }
        // The context replaces the queries in place (each query is read before its slot is
        // written); q is copied first only when its storage is shared, e.g. with k or v.
        attention_cpu::attention_rows(
            values(&mut q),
            &k.storage::<f32>()[..n],
            &v.storage::<f32>()[..n],
            &mask_bias.storage::<f32>()[..bias_len],
            seq,
            heads,
        );
        q
    }

    fn attention_train_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        seed: FloatTensor<Self>,
        heads: usize,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let Some(shape) = attention_shape(&[&q, &k, &v], &mask_bias, heads, keep, &seed) else {
            // The backward reads the probabilities either way.
            let (context, probs, _mask) =
                composed_forward::<Self>(q, k, v, mask_bias, seed, heads, keep);
            return (context, probs);
        };
        let n = q.layout().num_elements();
        let (batch, seq) = (shape.batch, shape.seq);
        let mut context = vec![0.0; n];
        let mut probs = vec![0.0; batch * heads * seq * seq];
        attention_forward(
            &q.storage::<f32>()[..n],
            &k.storage::<f32>()[..n],
            &v.storage::<f32>()[..n],
            &mask_bias.storage::<f32>()[..batch * seq],
            &mut context,
            &mut probs,
            shape,
        );
        (
            tensor(context, [batch * seq, shape.hidden]),
            tensor(probs, [batch, heads, seq, seq]),
        )
    }

    fn attention_train_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        saved: FloatTensor<Self>,
        seed: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        heads: usize,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let probs = saved;
        let shape = attention_shape(&[&q, &k, &v, &grad], &mask_bias, heads, keep, &seed)
            .filter(|_| plain(&probs));
        let Some(shape) = shape else {
            let mask = (keep < 1.0).then(|| Self::dropout_mask(probs.clone(), keep, seed));
            return composed_backward::<Self>(q, k, v, &mask_bias, probs, mask, grad, heads);
        };
        let n = q.layout().num_elements();
        let dims = [shape.batch * shape.seq, shape.hidden];
        let mut grads = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
        let [gq, gk, gv] = &mut grads;
        attention_backward(
            &grad.storage::<f32>()[..n],
            &q.storage::<f32>()[..n],
            &k.storage::<f32>()[..n],
            &v.storage::<f32>()[..n],
            &probs.storage::<f32>()[..probs.layout().num_elements()],
            [gq, gk, gv],
            shape,
        );
        let [gq, gk, gv] = grads.map(|g| tensor(g, dims));
        (gq, gk, gv)
    }

    fn gelu_exact(mut x: FloatTensor<Self>) -> FloatTensor<Self> {
        if !plain(&x) {
            return Self::gelu(x);
        }
        cpu::gelu(values(&mut x));
        x
    }

    fn gelu_exact_backward(x: FloatTensor<Self>, mut grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if !plain(&x) || !plain(&grad) || x.layout().shape() != grad.layout().shape() {
            return Self::gelu_backward(x, grad);
        }
        let n = x.layout().num_elements();
        cpu::gelu_backward(&x.storage::<f32>()[..n], values(&mut grad));
        grad
    }

    fn layer_norm_last(
        mut x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let width = x.layout().shape().last().copied().unwrap_or(0);
        let fits = |t: &FlexTensor| plain(t) && t.layout().num_elements() == width;
        if width == 0 || !plain(&x) || !fits(&gamma) || !fits(&beta) {
            return Self::layer_norm(x, gamma, Some(beta), epsilon);
        }
        cpu::layer_norm(
            values(&mut x),
            &gamma.storage::<f32>()[..width],
            &beta.storage::<f32>()[..width],
            epsilon as f32,
        );
        x
    }

    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let width = x.layout().shape().last().copied().unwrap_or(0);
        let n = x.layout().num_elements();
        let fits = plain(&x)
            && plain(&gamma)
            && plain(&grad)
            && width > 0
            && gamma.layout().num_elements() == width
            && x.layout().shape() == grad.layout().shape();
        if !fits {
            return super::composed_layer_norm_backward::<Self>(x, gamma, grad, epsilon);
        }
        let mut grad_x = vec![0.0; n];
        let (grad_gamma, grad_beta) = cpu::layer_norm_backward(
            &x.storage::<f32>()[..n],
            &gamma.storage::<f32>()[..width],
            &grad.storage::<f32>()[..n],
            epsilon as f32,
            &mut grad_x,
        );
        (
            tensor(grad_x, x.layout().shape().clone()),
            tensor(grad_gamma, [width]),
            tensor(grad_beta, [width]),
        )
    }
}
