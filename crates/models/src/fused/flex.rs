//! The Flex implementation: the [`cpu`](super::cpu) kernels on Flex tensors' host memory, in
//! place where the storage is not shared, and Flex's own kernels for layouts they do not handle.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::tensor::DType;

use super::{FusedOps, attention_cpu, attention_rows_reference, cpu};

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
}
