//! Dropout with a fast mask on the CPU backends.
//!
//! Burn's [`Dropout`] samples every mask element from the device's random stream as a float, compares
//! it with the keep probability, and multiplies twice (by the mask, then by `1/keep`). On Flex the
//! sampling alone took 12 % of a standard-retraining step of the encoder and 35 % of a LoRA-ML step,
//! which also masks the input of each of the six adapted linears of every layer (perf profile of the
//! ConvAI2 workers; docs/benchmarks.md). [`dropout`] computes the same function — the identity
//! outside training or without autodiff, otherwise `x ⊙ m` with `m = 1/keep` with probability `keep`
//! and 0 otherwise — with a cheaper mask: one 64-bit seed is drawn from the device's random stream
//! per call (as a tensor, read only by the host backends), so
//! [`Device::seed`](burn::tensor::Device::seed) still fixes every mask, and on Flex and NdArray the
//! host expands it with SplitMix64, two mask elements per 64-bit output. Other backends sample the
//! mask with their own generator.
//!
//! On Flex, dropout is also one operation with its own backward: the forward multiplies by the
//! mask in place, in one pass split across the cores, and the backward rebuilds the mask from the
//! seed ([`MaskStream`] is a function of the element index) instead of keeping it, so a training
//! step stores no dropout masks (MiniLM: ≈ 60 MB per layer on a 10,240-token batch). Other backends
//! multiply by a stored mask.
//!
//! Every dropout of the crate and of the encoder goes through [`dropout`]; the module stays Burn's
//! [`Dropout`], so records and checkpoints are unchanged.

use burn::backend::{Backend, TensorMetadata, backend_extension, tensor::FloatTensor};
use burn::nn::Dropout;
use burn::tensor::{Distribution, Tensor, TensorData};

use crate::host::MaskStream;

/// `input` with each element zeroed with probability `dropout.prob` and the others scaled by
/// `1 / (1 − prob)`, when `dropout` is training and `input` is on an autodiff device; else `input`.
pub fn dropout<const D: usize>(dropout: &Dropout, input: Tensor<D>) -> Tensor<D> {
    let device = input.device();
    if !dropout.training.is_enabled() || !device.is_autodiff() || dropout.prob == 0.0 {
        return input;
    }
    // The seed stays a tensor: a backend that samples the mask itself never reads it, so a GPU
    // is not synchronised once per dropout.
    let seed = Tensor::<1>::random([2], Distribution::Default, &device);
    let (out, _saved) = <burn::backend::Dispatch as DropoutOps>::dropout_forward(
        input.into_dispatch(),
        1.0 - dropout.prob,
        seed.into_dispatch(),
    );
    Tensor::from_dispatch(out)
}

/// The dropout mask as a backend operation, so that the CPU backends can build it on the host.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(feature = "wgpu"),
    Autodiff,
)]
pub trait DropoutOps: Backend {
    /// A tensor shaped like `like` whose elements are `1 / keep` with probability `keep` and 0
    /// otherwise. `seed` (two uniform draws from the device's stream) drives the host
    /// implementation; the default samples with the backend's own generator and ignores it.
    fn dropout_mask(
        like: FloatTensor<Self>,
        keep: f64,
        _seed: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let mask = Self::float_random(
            like.shape(),
            Distribution::Bernoulli(keep),
            &like.device(),
            like.dtype().into(),
        );
        Self::float_mul_scalar(mask, (1.0 / keep).into())
    }

    /// `input ⊙ mask` with the mask of [`dropout_mask`](DropoutOps::dropout_mask), and what
    /// [`dropout_backward`](DropoutOps::dropout_backward) needs: the mask, or on Flex the `seed`
    /// it is rebuilt from.
    fn dropout_forward(
        input: FloatTensor<Self>,
        keep: f64,
        seed: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let mask = Self::dropout_mask(input.clone(), keep, seed);
        (Self::float_mul(input, mask.clone()), mask)
    }

    /// The input gradient `grad ⊙ mask`, with `saved` the second output of
    /// [`dropout_forward`](DropoutOps::dropout_forward).
    fn dropout_backward(
        grad: FloatTensor<Self>,
        saved: FloatTensor<Self>,
        _keep: f64,
    ) -> FloatTensor<Self> {
        Self::float_mul(grad, saved)
    }
}

/// The mask built on the host (for backends whose tensors live in host memory).
#[cfg(any(feature = "flex", feature = "ndarray"))]
pub(crate) fn host_mask<B: Backend>(
    like: FloatTensor<B>,
    keep: f64,
    seed: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = like.shape();
    let values = mask_values(shape.num_elements(), keep, host_seed::<B>(seed));
    B::float_from_data(TensorData::new(values, shape), &like.device())
}

/// The bits of the seed tensor's values as one `u64`. Host backends have their data at hand, so
/// the read completes at its first poll; were it ever pending, the mask would use seed 0.
#[cfg(any(feature = "flex", feature = "ndarray"))]
pub fn host_seed<B: Backend>(seed: FloatTensor<B>) -> u64 {
    use std::task::{Context, Poll, Waker};
    let read = std::pin::pin!(B::float_into_data(seed));
    let Poll::Ready(Ok(data)) = read.poll(&mut Context::from_waker(Waker::noop())) else {
        return 0;
    };
    data.try_to_vec::<f32>().map_or(0, |values| {
        values
            .iter()
            .fold(0_u64, |s, v| (s << 32) | u64::from(v.to_bits()))
    })
}

#[cfg(feature = "flex")]
impl DropoutOps for burn::backend::Flex {
    fn dropout_mask(
        like: FloatTensor<Self>,
        keep: f64,
        seed: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        host_mask::<Self>(like, keep, seed)
    }

    fn dropout_forward(
        input: FloatTensor<Self>,
        keep: f64,
        seed: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let stream = MaskStream::new(keep, host_seed::<Self>(seed.clone()));
        (flex_masked(input, keep, &stream, seed.clone()), seed)
    }

    fn dropout_backward(
        grad: FloatTensor<Self>,
        saved: FloatTensor<Self>,
        keep: f64,
    ) -> FloatTensor<Self> {
        // Flex's forward always saves the seed.
        let stream = MaskStream::new(keep, host_seed::<Self>(saved.clone()));
        flex_masked(grad, keep, &stream, saved)
    }
}

/// `values ⊙ mask` on Flex: in place (a copy first if the storage is shared) for plain `f32`
/// tensors, otherwise through a mask tensor built from the same `seed`.
#[cfg(feature = "flex")]
fn flex_masked(
    mut values: FloatTensor<burn::backend::Flex>,
    keep: f64,
    stream: &MaskStream,
    seed: FloatTensor<burn::backend::Flex>,
) -> FloatTensor<burn::backend::Flex> {
    use burn::backend::Flex;
    use burn::backend::ops::FloatTensorOps;
    if !crate::fused::host_backends::flex::plain(&values) {
        let mask = host_mask::<Flex>(values.clone(), keep, seed);
        return Flex::float_mul(values, mask);
    }
    let n = values.layout().num_elements();
    crate::host::apply_mask(&mut values.storage_mut::<f32>()[..n], stream);
    values
}

#[cfg(feature = "ndarray")]
impl DropoutOps for burn::backend::NdArray {
    fn dropout_mask(
        like: FloatTensor<Self>,
        keep: f64,
        seed: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        host_mask::<Self>(like, keep, seed)
    }
}

#[cfg(feature = "wgpu")]
impl DropoutOps for burn::backend::Cube {}

impl<B: Backend + DropoutOps, C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy>
    DropoutOps for burn::backend::Autodiff<B, C>
{
    fn dropout_mask(
        like: FloatTensor<Self>,
        keep: f64,
        seed: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // A constant of the graph: no gradient flows into the mask.
        <Self as burn::backend::AutodiffBackend>::from_inner(B::dropout_mask(
            like.into_primitive(),
            keep,
            seed.into_primitive(),
        ))
    }

    fn dropout_forward(
        input: FloatTensor<Self>,
        keep: f64,
        seed: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        use burn::backend::AutodiffBackend;
        use burn::backend::autodiff::ops::{Backward, OpsKind};
        let seed = seed.into_primitive();
        match DropoutBackward
            .prepare::<C>([input.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, saved) = B::dropout_forward(input.into_primitive(), keep, seed);
                let state = (saved.clone(), keep);
                (prep.finish(state, out), Self::from_inner(saved))
            }
            OpsKind::UnTracked(prep) => {
                let (out, saved) = B::dropout_forward(input.into_primitive(), keep, seed);
                (prep.finish(out), Self::from_inner(saved))
            }
        }
    }
}

/// The backward step of [`DropoutOps::dropout_forward`] under autodiff; its state is the saved
/// mask or seed and the keep probability.
#[derive(Debug)]
struct DropoutBackward;

impl<B: Backend + DropoutOps> burn::backend::autodiff::ops::Backward<B, 1> for DropoutBackward {
    type State = (FloatTensor<B>, f64);

    fn backward(
        self,
        ops: burn::backend::autodiff::ops::Ops<Self::State, 1>,
        grads: &mut burn::backend::autodiff::grads::Gradients,
        _checkpointer: &mut burn::backend::autodiff::checkpoint::base::Checkpointer,
    ) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (saved, keep) = ops.state;
        if let Some(node) = node {
            grads.register::<B>(node.id, B::dropout_backward(grad, saved, keep));
        }
    }
}

/// `n` mask values: `1 / keep` with probability `keep`, else 0; SplitMix64 from `seed`, the low
/// and high 32 bits of each output deciding two elements (see [`MaskStream`]).
pub fn mask_values(n: usize, keep: f64, seed: u64) -> Vec<f32> {
    let mut out = vec![0.0_f32; n];
    MaskStream::new(keep, seed).fill(0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use burn::nn::DropoutConfig;
    use burn::tensor::Device;

    use super::*;

    /// The generator as first written: one SplitMix64 state advanced in sequence.
    fn sequential_mask(n: usize, keep: f64, seed: u64) -> Vec<f32> {
        let threshold = (keep * 4_294_967_296.0) as u64;
        let value = |bits: u64| {
            if bits < threshold {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        };
        let mut state = seed;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            out.push(value(z & 0xFFFF_FFFF));
            out.push(value(z >> 32));
        }
        out.truncate(n);
        out
    }

    #[test]
    fn the_vectorised_mask_is_the_sequential_splitmix_stream() {
        // The committed ConvAI2 results were made with the sequential generator.
        for n in [0, 1, 2, 31, 32, 33, 1000, 4099] {
            for (keep, seed) in [(0.9, 1), (0.5, u64::MAX), (0.1, 12345)] {
                assert_eq!(
                    mask_values(n, keep, seed),
                    sequential_mask(n, keep, seed),
                    "n {n}"
                );
            }
        }
    }

    #[test]
    fn the_mask_keeps_the_right_fraction_at_the_right_scale() {
        for keep in [0.9, 0.5, 0.25] {
            let n = 200_000;
            let mask = mask_values(n, keep, 42);
            let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64 / n as f64;
            // Binomial standard error is at most 0.0012 here; 5 of them.
            assert!((kept - keep).abs() < 0.006, "keep {keep}: kept {kept}");
            assert!(mask.iter().all(|&m| m == 0.0 || m == (1.0 / keep) as f32));
            let mean = mask.iter().map(|&m| f64::from(m)).sum::<f64>() / n as f64;
            assert!((mean - 1.0).abs() < 0.02, "keep {keep}: mean {mean}");
        }
        assert_ne!(mask_values(64, 0.5, 1), mask_values(64, 0.5, 2));
        assert_eq!(mask_values(63, 0.5, 7), mask_values(63, 0.5, 7));
    }

    #[test]
    fn dropout_is_seeded_by_the_device_and_passes_gradients_through_the_mask() {
        let _serial = crate::seeded_device_lock();
        let device = Device::default().autodiff();
        let layer = DropoutConfig::new(0.3).init();
        let run = |seed: u64| {
            device.seed(seed);
            let x = Tensor::<2>::ones([64, 48], &device).require_grad();
            let y = dropout(&layer, x.clone());
            let grads = y.clone().sum().backward();
            let grad = x.grad(&grads).expect("gradient").to_data();
            (y.into_data(), grad)
        };
        let (y1, g1) = run(5);
        let (y2, g2) = run(5);
        let (y3, _) = run(6);
        assert_eq!(y1, y2, "same device seed, same mask");
        assert_eq!(g1, g2);
        assert_ne!(y1, y3, "another seed, another mask");
        // With x = 1 the output is the mask itself, and so is the gradient of its sum.
        assert_eq!(y1, g1);
        let values = y1.try_to_vec::<f32>().expect("f32");
        let kept = values.iter().filter(|&&v| v != 0.0).count() as f64 / values.len() as f64;
        assert!((kept - 0.7).abs() < 0.05, "kept {kept}");
    }

    #[test]
    fn dropout_in_one_operation_is_the_input_times_the_mask_forward_and_backward() {
        type Ops = burn::backend::Dispatch;
        let _serial = crate::seeded_device_lock();
        let device = Device::default().autodiff();
        device.seed(3);
        // Large enough to be split across threads, odd so that the last block is partial; the
        // transposed view exercises non-contiguous inputs.
        for transposed in [false, true] {
            let x = Tensor::<2>::random([301, 517], Distribution::Default, &device);
            let x = if transposed { x.transpose() } else { x }.require_grad();
            let w = Tensor::<2>::random(x.dims(), Distribution::Default, &device);
            let seed = Tensor::<1>::random([2], Distribution::Default, &device);
            let mask = Tensor::<2>::from_dispatch(<Ops as DropoutOps>::dropout_mask(
                x.clone().inner().into_dispatch(),
                0.8,
                seed.clone().inner().into_dispatch(),
            ));
            let (y, _) = <Ops as DropoutOps>::dropout_forward(
                x.clone().into_dispatch(),
                0.8,
                seed.into_dispatch(),
            );
            let y = Tensor::<2>::from_dispatch(y);
            let grads = (y.clone() * w.clone()).sum().backward();
            let grad = x.grad(&grads).expect("gradient");
            assert_eq!(
                y.inner().into_data(),
                (x.inner() * mask.clone()).into_data(),
                "transposed {transposed}"
            );
            assert_eq!(
                grad.into_data(),
                (w.inner() * mask).into_data(),
                "transposed {transposed}"
            );
        }
    }

    #[test]
    fn without_training_or_autodiff_dropout_is_the_identity() {
        let plain = Device::default();
        let layer = DropoutConfig::new(0.5).init();
        let x = Tensor::<2>::ones([4, 4], &plain);
        assert_eq!(dropout(&layer, x.clone()).into_data(), x.into_data());
    }
}
