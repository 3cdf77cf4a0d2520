//! Exact (erf) GELU as a Burn backend extension, with a fast CPU kernel for Flex.
//!
//! Flex evaluates GELU and its derivative element by element with `libm`'s scalar `erff`/`expf`
//! on one thread, which made the activation the largest cost of the encoder after the matrix
//! products (docs/benchmarks.md). The Flex kernels here compute the same functions with
//! branch-free polynomial `erf`/`exp` approximations that the compiler vectorises, split across
//! the available cores and in place where the tensor is not shared. Other backends keep their own
//! GELU. With autodiff the activation records one backward step that calls the backend's
//! derivative kernel.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::{Autodiff, Backend, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;

/// GELU with the exact normal CDF, `x · Φ(x)`.
pub fn gelu_exact<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as GeluOps>::gelu_exact(
        x.into_dispatch(),
    ))
}

/// Exact GELU and its derivative, per backend.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(feature = "wgpu"),
    Autodiff,
)]
pub trait GeluOps: Backend {
    /// `x · Φ(x)`.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad · (Φ(x) + x · φ(x))`.
    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }
}

#[cfg(feature = "ndarray")]
impl GeluOps for burn::backend::NdArray {}

#[cfg(feature = "wgpu")]
impl GeluOps for burn::backend::Cube {}

#[cfg(feature = "flex")]
impl GeluOps for burn::backend::Flex {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::backend::ops::ActivationOps;
        if flex::plain(&x) {
            flex::gelu(x)
        } else {
            Self::gelu(x)
        }
    }

    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::backend::ops::ActivationOps;
        if flex::plain(&x) && flex::plain(&grad) && x.layout().shape() == grad.layout().shape() {
            flex::gelu_backward(x, grad)
        } else {
            Self::gelu_backward(x, grad)
        }
    }
}

impl<B: Backend + GeluOps, C: CheckpointStrategy> GeluOps for Autodiff<B, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluBackward;

        impl<B: Backend + GeluOps> Backward<B, 1> for GeluBackward {
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

/// The kernels on Flex tensors' host memory, in place where the tensor is not shared.
#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::FlexTensor;
    use burn::tensor::DType;

    /// Contiguous f32 from the start of its storage: the layout the kernels handle.
    pub fn plain(t: &FlexTensor) -> bool {
        t.dtype() == DType::F32 && t.is_contiguous() && t.layout().start_offset() == 0
    }

    /// GELU of a [`plain`] `x`.
    pub fn gelu(mut x: FlexTensor) -> FlexTensor {
        let n = x.layout().num_elements();
        // Copies first only when the storage is shared (copy on write).
        super::cpu::gelu(&mut x.storage_mut::<f32>()[..n]);
        x
    }

    /// `grad · gelu'(x)` for [`plain`] tensors of one shape, written over `grad`.
    pub fn gelu_backward(x: FlexTensor, mut grad: FlexTensor) -> FlexTensor {
        let n = x.layout().num_elements();
        super::cpu::gelu_backward(
            &x.storage::<f32>()[..n],
            &mut grad.storage_mut::<f32>()[..n],
        );
        grad
    }
}

/// The element kernels, on plain slices.
pub(crate) mod cpu {
    /// Below this many elements one thread is faster than starting another.
    const PARALLEL_MIN: usize = 1 << 16;

    /// Runs `f(x_chunk, out_chunk)` over matching chunks of `x` and `out` on every available core
    /// (`x` may be empty: then every `x_chunk` is).
    fn par_chunks(x: &[f32], out: &mut [f32], f: impl Fn(&[f32], &mut [f32]) + Sync) {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads == 1 || out.len() < PARALLEL_MIN {
            return f(x, out);
        }
        let chunk = out.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let f = &f;
            for (i, os) in out.chunks_mut(chunk).enumerate() {
                let xs = x.get(i * chunk..i * chunk + os.len()).unwrap_or_default();
                scope.spawn(move || f(xs, os));
            }
        });
    }

    /// `x ← x · Φ(x)`.
    pub fn gelu(x: &mut [f32]) {
        // The values are read and overwritten in place, so there is no separate input.
        par_chunks(&[], x, |_, xs| {
            for v in xs {
                *v *= 0.5 * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
            }
        });
    }

    /// `grad ← grad · (Φ(x) + x · φ(x))`.
    pub fn gelu_backward(x: &[f32], grad: &mut [f32]) {
        par_chunks(x, grad, |xs, gs| {
            for (g, &v) in gs.iter_mut().zip(xs) {
                *g *= gelu_derivative(v);
            }
        });
    }

    #[inline(always)]
    fn gelu_derivative(v: f32) -> f32 {
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
        cdf + v * INV_SQRT_2PI * exp(-0.5 * v * v)
    }

    // Plain `a * b + c` rather than `mul_add`: without FMA enabled at compile time `mul_add`
    // is a call to a software `fmaf`.

    /// `erf(x)` as the rational approximation `x · P(x²) / Q(x²)` on `[-4, 4]` (erf is ±1 to f32
    /// precision beyond), branch-free so that loops over it vectorise; the coefficients are the
    /// ones XLA and Eigen use for `f32` (absolute error at most 3.3e-7, tested).
    #[inline(always)]
    pub fn erf(x: f32) -> f32 {
        let x = x.clamp(-4.0, 4.0);
        let x2 = x * x;
        let mut p = -2.726_142_3e-10_f32;
        p = p * x2 + 2.770_681_4e-8;
        p = p * x2 + -2.101_024e-6;
        p = p * x2 + -5.692_506_4e-5;
        p = p * x2 + -7.349_906_3e-4;
        p = p * x2 + -2.954_6e-3;
        p = p * x2 + -1.609_603_3e-2;
        let mut q = -1.456_607_2e-5_f32;
        q = q * x2 + -2.133_740_6e-4;
        q = q * x2 + -1.682_827e-3;
        q = q * x2 + -7.373_329e-3;
        q = q * x2 + -1.426_474e-2;
        x * p / q
    }

    /// `exp(x)` for `x ≤ 0` (the normal density's exponent): `2^n · 2^f` with `n` an integer and
    /// `|f| ≤ 1/2`, `2^f` by its degree-6 Taylor polynomial (relative error at most 1e-6 on
    /// `[-18, 0]`, from rounding `x · log₂e`).
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        // Round to nearest by adding and subtracting 1.5·2²³ (exact for |t| < 2²²): `round()`
        // would be a libm call on baseline x86-64 and stop the loop from vectorising.
        const ROUNDER: f32 = 12_582_912.0;
        let t = (x * std::f32::consts::LOG2_E).max(-126.0);
        let n = (t + ROUNDER) - ROUNDER;
        let f = (t - n) * std::f32::consts::LN_2;
        let mut p = 1.0 / 720.0_f32;
        p = p * f + 1.0 / 120.0;
        p = p * f + 1.0 / 24.0;
        p = p * f + 1.0 / 6.0;
        p = p * f + 0.5;
        p = p * f + 1.0;
        p = p * f + 1.0;
        // 2^n through the exponent bits; n ∈ [-126, 0] keeps the result normal.
        p * f32::from_bits(((n as i32 + 127) as u32) << 23)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn grid() -> impl Iterator<Item = f32> {
            (-6000..=6000).map(|i| i as f32 * 1e-3)
        }

        #[test]
        fn erf_matches_libm() {
            let worst = grid()
                .map(|x| (erf(x) as f64 - libm_erf(x as f64)).abs())
                .fold(0.0, f64::max);
            // 3.3e-7 measured: a few f32 ulps of erf near ±1.
            assert!(worst < 5e-7, "max |erf error| {worst}");
        }

        #[test]
        fn exp_matches_std_on_the_densitys_range() {
            let worst = grid()
                .map(|x| -0.5 * x * x)
                .map(|x| ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs())
                .fold(0.0, f64::max);
            // 1.0e-6 measured at x = -18, where rounding x·log₂e dominates.
            assert!(worst < 2e-6, "max relative exp error {worst}");
            assert_eq!(exp(-200.0), exp(-126.0 * std::f32::consts::LN_2));
        }

        #[test]
        fn gelu_and_its_derivative_match_the_closed_form() {
            let x: Vec<f32> = grid().step_by(7).collect();
            let mut y = x.clone();
            gelu(&mut y);
            let mut slope = vec![1.0; x.len()];
            gelu_backward(&x, &mut slope);
            for ((&v, &y), &s) in x.iter().zip(&y).zip(&slope) {
                let v = v as f64;
                let cdf = 0.5 * (1.0 + libm_erf(v / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
                assert!((y as f64 - v * cdf).abs() < 1e-6, "gelu({v})");
                assert!((s as f64 - (cdf + v * pdf)).abs() < 1e-6, "gelu'({v})");
            }
        }

        #[test]
        fn parallel_chunks_cover_every_element() {
            let n = PARALLEL_MIN * 3 + 17;
            let x: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.05 - 2.0).collect();
            let g: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
            let mut y = x.clone();
            gelu(&mut y);
            let mut back = g.clone();
            gelu_backward(&x, &mut back);
            for i in 0..n {
                let expected = 0.5 * x[i] * (1.0 + erf(x[i] * std::f32::consts::FRAC_1_SQRT_2));
                assert_eq!(y[i], expected, "gelu, element {i}");
                assert_eq!(
                    back[i],
                    g[i] * gelu_derivative(x[i]),
                    "backward, element {i}"
                );
            }
        }

        /// erf in f64 by its Maclaurin series (|x| < 3) or continued fraction (|x| ≥ 3): a
        /// reference independent of the approximation under test.
        fn libm_erf(x: f64) -> f64 {
            if x.abs() >= 3.0 {
                // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …))))
                let a = x.abs();
                let mut frac = 0.0;
                for k in (1..60).rev() {
                    frac = (k as f64 / 2.0) / (a + frac);
                }
                let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + frac);
                return (1.0 - erfc).copysign(x);
            }
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::gelu;
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::gelu_exact;

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
}
