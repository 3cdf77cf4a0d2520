//! The adapter path of [`LoraLinear`](crate::linear::LoraLinear) as one backend operation:
//! `base + s · (dropout(x) A) B`.
//!
//! Composed from Burn's operations, a LoRA adapter with dropout costs about ten passes over
//! activation-sized tensors per layer and step — the mask, the masked input, two skinny products
//! and their scaling and sum forward, as many backward — while its arithmetic is a few per cent of
//! the base layer's. Composed, a LoRA-ML retraining step of the encoder cost 1.29× a
//! standard-retraining step in the training-step bench (1.15× fused; docs/benchmarks.md). On Flex
//! [`adapted`] runs the whole path in one pass over the rows, forward and
//! backward ([`host`](crate::host) kernels): the dropout mask is a function of the element index
//! ([`MaskStream`](crate::host::MaskStream)), so it is rebuilt in the backward instead of stored,
//! and the result is added to the base output in place. The mask is the one
//! [`dropout`](crate::dropout::dropout) would draw for the same device seed. Other backends compose
//! Burn's operations (and store the mask for the backward).

mod autodiff;
pub(crate) mod host_backends;

use burn::backend::{Backend, TensorMetadata, backend_extension, tensor::FloatTensor};
use burn::nn::Dropout;
use burn::tensor::{Distribution, Tensor};

/// `base + scale · (dropout(x) A) B` for `x` `[rows, d_in]`, `A` `[d_in, r]`, `B` `[r, d_out]` and
/// `base` `[rows, d_out]`, with the dropout of [`dropout`](crate::dropout::dropout): active only
/// when `dropout` is training, its probability is positive and `x` is on an autodiff device, and
/// then drawing one seed from the device's random stream.
pub fn adapted(
    base: Tensor<2>,
    x: Tensor<2>,
    a: Tensor<2>,
    b: Tensor<2>,
    scale: f64,
    dropout: &Dropout,
) -> Tensor<2> {
    let (keep, seed) = dropout_seed(dropout, &x.device());
    let (out, _saved) = <burn::backend::Dispatch as AdapterOps>::adapter_forward(
        base.into_dispatch(),
        x.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
        seed.into_dispatch(),
        scale,
        keep,
    );
    Tensor::from_dispatch(out)
}

/// A LoRA linear layer with its adapter as one operation:
/// `x W + bias + scale · (dropout(x) A) B` for `x` `[rows, d_in]`, `W` `[d_in, d_out]` (Burn's
/// `Linear` layout), `bias` `[d_out]`, `A` `[d_in, r]`, `B` `[r, d_out]`, with the dropout of
/// [`adapted`].
///
/// Beyond [`adapted`], the bias is added and its gradient summed in the adapter kernels' passes,
/// and on Flex the adapter's `∂x` is added in place to the base product's `∂x = ∂out Wᵀ` instead
/// of being a second tensor that autodiff then adds: in a LoRA-ML step of the encoder that
/// separate sum and its buffer were about as much memory traffic as the adapter kernels' own.
pub fn adapted_linear(
    x: Tensor<2>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    a: Tensor<2>,
    b: Tensor<2>,
    scale: f64,
    dropout: &Dropout,
) -> Tensor<2> {
    let device = x.device();
    let (keep, seed) = dropout_seed(dropout, &device);
    let (out, _saved) = <burn::backend::Dispatch as AdapterOps>::adapted_linear_forward(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
        seed.into_dispatch(),
        scale,
        keep,
    );
    Tensor::from_dispatch(out)
}

/// The keep probability and the seed tensor of an adapter's dropout: one draw from the device's
/// stream when the dropout is active (training, positive probability, autodiff device).
fn dropout_seed(dropout: &Dropout, device: &burn::tensor::Device) -> (f64, Tensor<1>) {
    let active = dropout.training.is_enabled() && device.is_autodiff() && dropout.prob > 0.0;
    if active {
        (
            1.0 - dropout.prob,
            Tensor::<1>::random([2], Distribution::Default, device),
        )
    } else {
        (1.0, Tensor::<1>::zeros([2], device))
    }
}

/// The adapter path per backend. The defaults compose Burn's operations with a mask sampled by the
/// backend's own generator; the host backends override them (`host_backends`).
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(feature = "wgpu"),
    Autodiff,
)]
pub trait AdapterOps: Backend {
    /// `base + scale · (x ⊙ mask) A B`, where the mask keeps each element with probability `keep`
    /// (no mask when `keep ≥ 1`), and what [`adapter_backward`](AdapterOps::adapter_backward)
    /// needs besides `x`, `A` and `B`: the mask itself, or on host backends the `seed` it was
    /// built from.
    fn adapter_forward(
        base: FloatTensor<Self>,
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        seed: FloatTensor<Self>,
        scale: f64,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_adapter::<Self>(base, x, a, b, seed, scale, keep, |x, _| {
            Self::float_mul_scalar(
                Self::float_random(
                    x.shape(),
                    Distribution::Bernoulli(keep),
                    &x.device(),
                    x.dtype().into(),
                ),
                (1.0 / keep).into(),
            )
        })
    }

    /// Gradients `(∂x, ∂A, ∂B)` of the adapter path given the output gradient `grad`, with `saved`
    /// the second output of [`adapter_forward`](AdapterOps::adapter_forward).
    fn adapter_backward(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        saved: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let mask = (keep < 1.0).then_some(saved);
        composed_backward::<Self>(x, a, b, mask, grad, scale)
    }

    /// The forward of [`adapted_linear`]: the output and the saved tensor of
    /// [`adapter_forward`](AdapterOps::adapter_forward).
    #[allow(clippy::too_many_arguments)]
    fn adapted_linear_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        seed: FloatTensor<Self>,
        scale: f64,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let base = biased_product::<Self>(x.clone(), weight, bias);
        Self::adapter_forward(base, x, a, b, seed, scale, keep)
    }

    /// Gradients `(∂x, ∂W, ∂bias, ∂A, ∂B)` of [`adapted_linear`] given the output gradient
    /// `grad`; `∂x` and `∂W` are computed only when `need_x` and `need_weight` (otherwise those
    /// two results are unspecified tensors), as autodiff skips the gradients of frozen inputs.
    // The tuple is spelled out: `backend_extension` reads the return type as written, and an
    // alias would hide its tensors.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn adapted_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        saved: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
        keep: f64,
        need_x: bool,
        need_weight: bool,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        composed_linear_backward::<Self>(
            x,
            weight,
            a,
            b,
            saved,
            grad,
            scale,
            keep,
            need_x,
            need_weight,
        )
    }
}

/// [`AdapterOps::adapted_linear_backward`] from Burn's products and the backend's
/// [`adapter_backward`](AdapterOps::adapter_backward).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn composed_linear_backward<B: AdapterOps>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    saved: FloatTensor<B>,
    grad: FloatTensor<B>,
    scale: f64,
    keep: f64,
    need_x: bool,
    need_weight: bool,
) -> (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
) {
    let grad_bias = column_sums::<B>(grad.clone());
    let grad_weight = if need_weight {
        B::float_matmul(B::float_transpose(x.clone()), grad.clone())
    } else {
        grad_bias.clone()
    };
    let (adapter_x, grad_a, grad_b) =
        B::adapter_backward(x, a, b, saved, grad.clone(), scale, keep);
    let grad_x = if need_x {
        B::float_add(B::float_matmul(grad, B::float_transpose(weight)), adapter_x)
    } else {
        adapter_x
    };
    (grad_x, grad_weight, grad_bias, grad_a, grad_b)
}

/// `x W + bias` from Burn's operations.
fn biased_product<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    add_bias::<B>(B::float_matmul(x, weight), bias)
}

/// `rows + bias`, `bias` `[d_out]` broadcast over the rows of `rows` `[n, d_out]`.
fn add_bias<B: Backend>(rows: FloatTensor<B>, bias: FloatTensor<B>) -> FloatTensor<B> {
    let d_out = bias.shape().num_elements();
    B::float_add(
        rows,
        B::float_reshape(bias, burn::tensor::Shape::new([1, d_out])),
    )
}

/// The column sums of a `[rows, cols]` tensor, `[cols]`.
fn column_sums<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let cols = t.shape()[1];
    B::float_reshape(B::float_sum_dim(t, 0), burn::tensor::Shape::new([cols]))
}

/// [`AdapterOps::adapter_forward`] from Burn's operations, with the mask (when `keep < 1`) from
/// `mask(x, seed)`; the saved tensor is the mask, or the unused seed without dropout.
#[allow(clippy::too_many_arguments)]
fn composed_adapter<B: Backend>(
    base: FloatTensor<B>,
    x: FloatTensor<B>,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    seed: FloatTensor<B>,
    scale: f64,
    keep: f64,
    mask: impl FnOnce(&FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    if keep >= 1.0 {
        return (composed_forward::<B>(base, x, a, b, None, scale), seed);
    }
    let mask = mask(&x, seed);
    let out = composed_forward::<B>(base, x, a, b, Some(mask.clone()), scale);
    (out, mask)
}

/// The adapter path from Burn's operations.
fn composed_forward<B: Backend>(
    base: FloatTensor<B>,
    x: FloatTensor<B>,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    mask: Option<FloatTensor<B>>,
    scale: f64,
) -> FloatTensor<B> {
    let xm = match mask {
        Some(mask) => B::float_mul(x, mask),
        None => x,
    };
    let up = B::float_matmul(B::float_matmul(xm, a), b);
    B::float_add(base, B::float_mul_scalar(up, scale.into()))
}

/// The gradients of [`composed_forward`] from Burn's operations: with `xm = x ⊙ mask`,
/// `∂down = s · G Bᵀ`, `∂B = s · (xm A)ᵀ G`, `∂A = xmᵀ ∂down`, `∂x = (∂down Aᵀ) ⊙ mask`.
fn composed_backward<B: Backend>(
    x: FloatTensor<B>,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    mask: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
    scale: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let xm = match &mask {
        Some(mask) => B::float_mul(x, mask.clone()),
        None => x,
    };
    let down = B::float_matmul(xm.clone(), a.clone());
    let grad_down = B::float_mul_scalar(
        B::float_matmul(grad.clone(), B::float_transpose(b)),
        scale.into(),
    );
    let grad_b = B::float_mul_scalar(
        B::float_matmul(B::float_transpose(down), grad),
        scale.into(),
    );
    let grad_a = B::float_matmul(B::float_transpose(xm), grad_down.clone());
    let grad_x = B::float_matmul(grad_down, B::float_transpose(a));
    let grad_x = match mask {
        Some(mask) => B::float_mul(grad_x, mask),
        None => grad_x,
    };
    (grad_x, grad_a, grad_b)
}

#[cfg(test)]
mod tests;
