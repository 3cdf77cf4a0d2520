//! Exact GELU and LayerNorm as a Burn backend extension, with fast CPU kernels for Flex.
//!
//! On Flex, GELU and its derivative ran element by element with `libm`'s scalar `erff`/`expf` on
//! one thread, and LayerNorm with a per-element division (Welford's update); after the matrix
//! products these were the largest costs of the encoder (docs/benchmarks.md). The Flex kernels
//! here ([`cpu`]) compute the same functions with loops the compiler vectorises, split across
//! the available cores and in place where the tensor is not shared. Other backends keep their own
//! kernels. With autodiff, GELU records one backward step that calls the backend's derivative
//! kernel, and LayerNorm keeps Burn's differentiable composition.

pub mod cpu;
#[cfg(feature = "flex")]
mod flex;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::{Autodiff, Backend, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;

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

/// The fused operations, per backend; the default bodies are Burn's own operations.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(feature = "wgpu"),
    Autodiff,
)]
pub trait FusedOps: Backend {
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
}

#[cfg(feature = "ndarray")]
impl FusedOps for burn::backend::NdArray {}

#[cfg(feature = "wgpu")]
impl FusedOps for burn::backend::Cube {}

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluBackward;

        impl<B: Backend + FusedOps> Backward<B, 1> for GeluBackward {
            type State = burn::backend::autodiff::NodeId;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let input = checkpointer.retrieve_node_output(ops.state);
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::gelu_exact_backward(input, grad)
                });
            }
        }

        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::gelu_exact(x.primitive().clone()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_exact(x.into_primitive())),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::gelu;
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::{gelu_exact, layer_norm};

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
    fn layer_norm_matches_burns_values_and_gradients() {
        fn ours(x: Tensor<3>) -> Tensor<3> {
            let (gamma, beta) = params(&x);
            layer_norm(x, gamma, beta, 1e-5)
        }
        fn reference(x: Tensor<3>) -> Tensor<3> {
            let (gamma, beta) = params(&x);
            burn::tensor::module::layer_norm(x, gamma, Some(beta), 1e-5)
        }
        /// Scale and shift that differ per feature, on the input's device.
        fn params(x: &Tensor<3>) -> (Tensor<1>, Tensor<1>) {
            let width = x.dims()[2];
            let ramp = Tensor::<1, burn::tensor::Int>::arange(0..width as i64, &x.device()).float();
            (
                ramp.clone().mul_scalar(0.01).add_scalar(0.5),
                ramp.mul_scalar(-0.02),
            )
        }
        compare(ours, reference, false);
        compare(ours, reference, true);
    }
}
