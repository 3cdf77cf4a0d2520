//! Exact GELU, LayerNorm and attention (inference and training) as a Burn backend extension,
//! with fast CPU kernels for Flex.
//!
//! On Flex, GELU and its derivative ran element by element with `libm`'s scalar `erff`/`expf` on
//! one thread, and LayerNorm with a per-element division (Welford's update); after the matrix
//! products these were the largest costs of the encoder (docs/benchmarks.md). The Flex kernels
//! here ([`cpu`]) compute the same functions with loops compiled for the CPU's widest vectors,
//! split across the available cores and in place where the tensor is not shared;
//! [`attention_rows`] ([`attention_cpu`]) computes multi-head attention straight from the
//! projection rows, and [`attention_train`] ([`attention_train_cpu`]) does the same for training,
//! with dropout on the probabilities and its own backward. Other backends keep their own kernels
//! or compose Burn's operations. With autodiff each operation records one backward step instead
//! of one per elementary operation: GELU's calls the backend's derivative kernel, LayerNorm's
//! the closed form (a three-pass kernel on Flex, composed of element-wise operations elsewhere).

pub mod attention_cpu;
mod attention_train;
pub mod attention_train_cpu;
mod autodiff;
pub mod cpu;
#[cfg(feature = "flex")]
mod flex;

use adaptable_lora::dropout::DropoutOps;
use burn::backend::{Backend, TensorMetadata, backend_extension, tensor::FloatTensor};

pub use attention_train::attention_train;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Shape, Tensor};

/// GELU with the exact normal CDF, `x · Φ(x)`.
pub fn gelu_exact<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::gelu_exact(
        x.into_dispatch(),
    ))
}

/// LayerNorm over the last dimension, `(x − mean) / √(var + ε) · γ + β` (biased variance), as
/// Burn's `layer_norm` computes it.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::layer_norm_last(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    ))
}

/// Multi-head scaled dot-product attention on projection rows, without autodiff: for every batch
/// element and head, `softmax(q kᵀ / √d + bias) v`, with `d = hidden / heads`.
///
/// `q`, `k`, `v` are the projections `[batch·seq, hidden]` (heads side by side in each row, as the
/// query/key/value layers produce them), `mask_bias` is `[batch, seq]` and is added to every
/// query's scores (see [`mask_bias`](crate::attention::mask_bias)); the result is the context in
/// the same `[batch·seq, hidden]` layout, ready for the output projection. On Flex one kernel
/// reads and writes that layout directly; elsewhere it is Burn's `attention` between a split
/// into heads and a merge.
///
/// # Panics
///
/// If the shapes disagree (`k`, `v` unlike `q`, `batch·seq` rows, `hidden` not a multiple of
/// `heads`).
pub fn attention_rows(
    q: Tensor<2>,
    k: Tensor<2>,
    v: Tensor<2>,
    mask_bias: Tensor<2>,
    heads: usize,
) -> Tensor<2> {
    let [rows, hidden] = q.dims();
    let [batch, seq] = mask_bias.dims();
    assert!(
        k.dims() == [rows, hidden] && v.dims() == [rows, hidden],
        "attention_rows: q {:?}, k {:?} and v {:?} differ",
        q.dims(),
        k.dims(),
        v.dims()
    );
    assert!(
        rows == batch * seq && heads > 0 && hidden % heads == 0,
        "attention_rows: {rows} rows of {hidden} for a [{batch}, {seq}] bias and {heads} heads"
    );
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::attention_rows(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask_bias.into_dispatch(),
        heads,
    ))
}

/// [`attention_rows`] from Burn's own operations: split into heads, `attention`, merge.
fn attention_rows_reference<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    mask_bias: FloatTensor<B>,
    heads: usize,
) -> FloatTensor<B> {
    let (rows, hidden) = (q.shape()[0], q.shape()[1]);
    let (batch, seq) = (mask_bias.shape()[0], mask_bias.shape()[1]);
    let split = |t: FloatTensor<B>| {
        B::float_swap_dims(
            B::float_reshape(t, Shape::new([batch, seq, heads, hidden / heads])),
            1,
            2,
        )
    };
    // Kernels index the bias per (query, key) tile: give it its full [batch, 1, seq, seq] shape.
    let bias = B::float_expand(
        B::float_reshape(mask_bias, Shape::new([batch, 1, 1, seq])),
        Shape::new([batch, 1, seq, seq]),
    );
    let context = B::attention(
        split(q),
        split(k),
        split(v),
        None,
        Some(bias),
        AttentionModuleOptions::default(),
    );
    B::float_reshape(
        B::float_swap_dims(context, 1, 2),
        Shape::new([rows, hidden]),
    )
}

/// The fused operations, per backend; the default bodies are Burn's own operations.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(feature = "wgpu"),
    Autodiff,
)]
pub trait FusedOps: Backend + DropoutOps {
    /// The forward of [`attention_train`]: the context, and what
    /// [`attention_train_backward`](FusedOps::attention_train_backward) needs besides the
    /// inputs (by default the dropout mask, or the unused seed without dropout; on Flex the
    /// probabilities). `keep` is the probability of keeping an attention weight (1: no dropout)
    /// and `seed` drives the mask as in [`DropoutOps::dropout_mask`].
    fn attention_train_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        seed: FloatTensor<Self>,
        heads: usize,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (context, _probs, mask) = attention_train::composed_forward::<Self>(
            q,
            k,
            v,
            mask_bias,
            seed.clone(),
            heads,
            keep,
        );
        (context, mask.unwrap_or(seed))
    }

    /// Gradients `(∂q, ∂k, ∂v)` of [`attention_train`] given the context gradient `grad`, with
    /// `saved` the second output of the forward.
    #[allow(clippy::too_many_arguments)]
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
        let _ = seed;
        // The probabilities are recomputed rather than stored next to the mask.
        let probs =
            attention_train::composed_probs::<Self>(q.clone(), k.clone(), mask_bias.clone(), heads);
        let mask = (keep < 1.0).then_some(saved);
        attention_train::composed_backward::<Self>(q, k, v, &mask_bias, probs, mask, grad, heads)
    }

    /// See [`attention_rows`].
    fn attention_rows(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        attention_rows_reference::<Self>(q, k, v, mask_bias, heads)
    }

    /// `x · Φ(x)`.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad · (Φ(x) + x · φ(x))`.
    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }

    /// LayerNorm over the last dimension.
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// Gradients of [`layer_norm_last`](FusedOps::layer_norm_last) with respect to `x`, `γ` and
    /// `β`, given the output gradient `grad`: with `x̂ = (x − mean)·r`, `r = 1/√(var + ε)` and
    /// `g = grad·γ`, `∂x = r·(g − mean(g) − x̂·mean(g·x̂))`, `∂γ = Σ grad·x̂`, `∂β = Σ grad`.
    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed_layer_norm_backward::<Self>(x, gamma, grad, epsilon)
    }
}

/// [`FusedOps::layer_norm_last_backward`] composed of the backend's element-wise operations.
fn composed_layer_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let last = shape.num_dims() - 1;
    let width = shape[last];
    let rows = shape.num_elements() / width.max(1);
    let centered = B::float_sub(x.clone(), B::float_mean_dim(x, last));
    let variance = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), last);
    let inv_std = B::float_recip(B::float_sqrt(B::float_add_scalar(variance, epsilon.into())));
    let normalized = B::float_mul(centered, inv_std.clone());
    let mut broadcast = vec![1; last + 1];
    broadcast[last] = width;
    let broadcast = burn::tensor::Shape::from(broadcast);
    let scaled = B::float_mul(grad.clone(), B::float_reshape(gamma, broadcast));
    let mean_scaled = B::float_mean_dim(scaled.clone(), last);
    let mean_projection = B::float_mean_dim(B::float_mul(scaled.clone(), normalized.clone()), last);
    let grad_x = B::float_mul(
        inv_std,
        B::float_sub(
            B::float_sub(scaled, mean_scaled),
            B::float_mul(normalized.clone(), mean_projection),
        ),
    );
    let flat = |t: FloatTensor<B>| B::float_reshape(t, burn::tensor::Shape::new([rows, width]));
    let column_sums = |t: FloatTensor<B>| {
        B::float_reshape(
            B::float_sum_dim(flat(t), 0),
            burn::tensor::Shape::new([width]),
        )
    };
    let grad_gamma = column_sums(B::float_mul(grad.clone(), normalized));
    let grad_beta = column_sums(grad);
    (grad_x, grad_gamma, grad_beta)
}

#[cfg(feature = "ndarray")]
impl FusedOps for burn::backend::NdArray {}

#[cfg(feature = "wgpu")]
impl FusedOps for burn::backend::Cube {}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::gelu;
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::{attention_rows, gelu_exact, layer_norm};

    /// Values and input gradients of `ours` and `reference` on the same random input, weighted by a
    /// random upstream gradient; `transpose` feeds a non-contiguous view.
    fn compare(
        ours: fn(Tensor<3>) -> Tensor<3>,
        reference: fn(Tensor<3>) -> Tensor<3>,
        transpose: bool,
    ) {
        let device = Device::default().autodiff();
        let x = Tensor::<3>::random([3, 70, 90], Distribution::Normal(0.0, 3.0), &device);
        let weight = Tensor::<3>::random([3, 70, 90], Distribution::Default, &device);
        let (weight, x) = if transpose {
            (weight.swap_dims(1, 2), x.swap_dims(1, 2))
        } else {
            (weight, x)
        };
        let run = |f: fn(Tensor<3>) -> Tensor<3>| {
            let leaf = x.clone().detach().require_grad();
            let y = f(leaf.clone());
            let grads = (y.clone() * weight.clone()).sum().backward();
            (
                y.into_data(),
                leaf.grad(&grads).expect("gradient").into_data(),
            )
        };
        let (y, dx) = run(ours);
        let (y_ref, dx_ref) = run(reference);
        y.assert_approx_eq::<f32>(&y_ref, Tolerance::absolute(2e-6));
        dx.assert_approx_eq::<f32>(&dx_ref, Tolerance::absolute(2e-5));
        // Without autodiff, too.
        let plain = x.clone().inner();
        ours(plain.clone())
            .into_data()
            .assert_approx_eq::<f32>(&reference(plain).into_data(), Tolerance::absolute(2e-6));
    }

    #[test]
    fn gelu_matches_burns_values_and_gradients() {
        compare(gelu_exact, gelu, false);
        compare(gelu_exact, gelu, true);
    }

    #[test]
    fn layer_norm_matches_burns_values_and_all_three_gradients() {
        let device = Device::default().autodiff();
        for transpose in [false, true] {
            // Transposed: the same [3, 50, 64] shape as a non-contiguous view (rows of 64 values
            // stride through memory), which the Flex kernel leaves to Burn's own.
            let shape = if transpose { [64, 50, 3] } else { [3, 50, 64] };
            let x = Tensor::<3>::random(shape, Distribution::Normal(1.0, 2.0), &device);
            let weight = Tensor::<3>::random(shape, Distribution::Default, &device);
            let (x, weight) = if transpose {
                (x.swap_dims(0, 2), weight.swap_dims(0, 2))
            } else {
                (x, weight)
            };
            let width = x.dims()[2];
            let gamma = Tensor::<1>::random([width], Distribution::Normal(1.0, 0.3), &device);
            let beta = Tensor::<1>::random([width], Distribution::Normal(0.0, 0.3), &device);
            let run = |ours: bool| {
                let (x, gamma, beta) = (
                    x.clone().detach().require_grad(),
                    gamma.clone().detach().require_grad(),
                    beta.clone().detach().require_grad(),
                );
                let y = if ours {
                    layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-5)
                } else {
                    burn::tensor::module::layer_norm(
                        x.clone(),
                        gamma.clone(),
                        Some(beta.clone()),
                        1e-5,
                    )
                };
                let grads = (y.clone() * weight.clone()).sum().backward();
                let grad = |t: &Tensor<3>| t.grad(&grads).expect("gradient").into_data();
                let grad1 = |t: &Tensor<1>| t.grad(&grads).expect("gradient").into_data();
                [y.into_data(), grad(&x), grad1(&gamma), grad1(&beta)]
            };
            // Sums over 150 rows (∂β ≈ 1600) differ in the last bits with the summation order.
            let tolerance = Tolerance::rel_abs(1e-5, 5e-5);
            for (ours, reference) in run(true).iter().zip(run(false).iter()) {
                ours.assert_approx_eq::<f32>(reference, tolerance);
            }
            // Without autodiff, too.
            let plain = x.clone().inner();
            let (g, b) = (gamma.clone().inner(), beta.clone().inner());
            layer_norm(plain.clone(), g.clone(), b.clone(), 1e-5)
                .into_data()
                .assert_approx_eq::<f32>(
                    &burn::tensor::module::layer_norm(plain, g, Some(b), 1e-5).into_data(),
                    Tolerance::absolute(2e-6),
                );
        }
    }

    #[test]
    fn attention_rows_matches_burns_attention_on_every_path() {
        let device = Device::default();
        let (batch, seq, heads, d) = (3, 40, 4, 24);
        let hidden = heads * d;
        let rnd = || {
            Tensor::<2>::random(
                [batch * seq, hidden],
                Distribution::Normal(0.0, 1.0),
                &device,
            )
        };
        let (q, k, v) = (rnd(), rnd(), rnd());
        // Batch 1 pads its last 15 keys.
        let mask = Tensor::<2, burn::tensor::Int>::ones([batch, seq], &device)
            .slice_assign([1..2, seq - 15..seq], Tensor::zeros([1, 15], &device));
        let bias = crate::attention::mask_bias(&mask);
        let split = |t: Tensor<2>| t.reshape([batch, seq, heads, d]).swap_dims(1, 2);
        let expected = burn::tensor::module::attention(
            split(q.clone()),
            split(k.clone()),
            split(v.clone()),
            None,
            Some(bias.clone().expand([batch, 1, seq, seq])),
            burn::tensor::ops::AttentionModuleOptions::default(),
        )
        .swap_dims(1, 2)
        .reshape([batch * seq, hidden])
        .into_data();
        let bias = bias.reshape([batch, seq]);
        let check = |got: Tensor<2>| {
            got.into_data()
                .assert_approx_eq::<f32>(&expected, Tolerance::absolute(2e-5))
        };
        // The kernel (contiguous inputs), the fallback (a transposed view as q), and the default
        // implementation through autodiff.
        check(attention_rows(
            q.clone(),
            k.clone(),
            v.clone(),
            bias.clone(),
            heads,
        ));
        let q_view = Tensor::<2>::from_data(q.clone().transpose().into_data(), &device).transpose();
        check(attention_rows(
            q_view,
            k.clone(),
            v.clone(),
            bias.clone(),
            heads,
        ));
        let ad = device.autodiff();
        let on = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &ad);
        check(attention_rows(on(&q), on(&k), on(&v), on(&bias), heads).inner());
    }
}
