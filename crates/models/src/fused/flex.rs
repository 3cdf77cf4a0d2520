//! The Flex implementation: the [`cpu`](super::cpu) kernels on Flex tensors' host memory, in
//! place where the storage is not shared, and Flex's own kernels for layouts they do not handle.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::tensor::DType;

use super::{FusedOps, cpu};

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
