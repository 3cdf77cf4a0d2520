//! The host backends: Flex runs the fused [`host`](crate::host) kernels on its tensors' memory;
//! NdArray composes Burn's operations with the host mask, so both see the same masks.

#[cfg(any(feature = "flex", feature = "ndarray"))]
use burn::backend::tensor::FloatTensor;

#[cfg(any(feature = "flex", feature = "ndarray"))]
use super::AdapterOps;
#[cfg(feature = "ndarray")]
use super::composed_adapter;
#[cfg(feature = "flex")]
use super::{add_bias, composed_backward, composed_forward, composed_linear_backward};
#[cfg(any(feature = "flex", feature = "ndarray"))]
use crate::dropout::host_mask;
#[cfg(feature = "flex")]
use crate::dropout::host_seed;

#[cfg(feature = "wgpu")]
impl AdapterOps for burn::backend::Cube {}

#[cfg(feature = "ndarray")]
impl AdapterOps for burn::backend::NdArray {
    fn adapter_forward(
        base: FloatTensor<Self>,
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        seed: FloatTensor<Self>,
        scale: f64,
        keep: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_adapter::<Self>(base, x, a, b, seed, scale, keep, |x, seed| {
            host_mask::<Self>(x.clone(), keep, seed)
        })
    }
}

#[cfg(feature = "flex")]
pub(crate) mod flex {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::{Backend, TensorMetadata};
    use burn::tensor::{DType, TensorData};

    use super::*;
    use crate::host::{AdapterShape, MaskStream, adapter_backward, adapter_forward};

    /// A tensor of the backend from host values.
    fn host_tensor<B: Backend, const D: usize>(
        values: Vec<f32>,
        dims: [usize; D],
        device: &B::Device,
    ) -> FloatTensor<B> {
        B::float_from_data(TensorData::new(values, dims), device)
    }

    /// Contiguous f32 from the start of its storage: the layout the kernels handle.
    pub(crate) fn plain(t: &FlexTensor) -> bool {
        t.dtype() == DType::F32 && t.is_contiguous() && t.layout().start_offset() == 0
    }

    fn values(t: &FlexTensor) -> &[f32] {
        &t.storage::<f32>()[..t.layout().num_elements()]
    }

    /// The kernels' shape of a call, if every tensor is 2-D, plain and consistent.
    fn shape_of(
        out: &FlexTensor,
        x: &FlexTensor,
        a: &FlexTensor,
        b: &FlexTensor,
        scale: f64,
        mask: Option<MaskStream>,
    ) -> Option<AdapterShape> {
        let dims = |t: &FlexTensor| -> Option<[usize; 2]> {
            let s = t.layout().shape();
            (s.num_dims() == 2 && plain(t)).then(|| [s[0], s[1]])
        };
        let ([rows, d_out], [x_rows, d_in], [a_in, rank], [b_rank, b_out]) =
            (dims(out)?, dims(x)?, dims(a)?, dims(b)?);
        (x_rows == rows && a_in == d_in && b_rank == rank && b_out == d_out).then_some(
            AdapterShape {
                rows,
                d_in,
                d_out,
                rank,
                scale: scale as f32,
                mask,
            },
        )
    }

    fn stream(keep: f64, seed: FloatTensor<Flex>) -> Option<MaskStream> {
        (keep < 1.0).then(|| MaskStream::new(keep, host_seed::<Flex>(seed)))
    }

    impl AdapterOps for Flex {
        fn adapter_forward(
            mut base: FloatTensor<Self>,
            x: FloatTensor<Self>,
            a: FloatTensor<Self>,
            b: FloatTensor<Self>,
            seed: FloatTensor<Self>,
            scale: f64,
            keep: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let Some(shape) = shape_of(&base, &x, &a, &b, scale, stream(keep, seed.clone())) else {
                // An unusual layout: the composed path, with the mask stored as the other
                // backends store it.
                let mask = (keep < 1.0).then(|| host_mask::<Self>(x.clone(), keep, seed.clone()));
                let out = composed_forward::<Self>(base, x, a, b, mask.clone(), scale);
                return (out, mask.unwrap_or(seed));
            };
            let n = base.layout().num_elements();
            // In place: the base output is not shared during training (a product's backward keeps
            // its inputs, not its output); were it shared, `storage_mut` copies it first.
            adapter_forward(
                &mut base.storage_mut::<f32>()[..n],
                values(&x),
                values(&a),
                values(&b),
                None,
                shape,
            );
            (base, seed)
        }

        fn adapter_backward(
            x: FloatTensor<Self>,
            a: FloatTensor<Self>,
            b: FloatTensor<Self>,
            saved: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            scale: f64,
            keep: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            // The forward saved the seed (1-D) when it ran the kernels, the mask (2-D) otherwise.
            let from_seed = saved.layout().shape().num_dims() == 1;
            let mask = if from_seed {
                stream(keep, saved.clone())
            } else {
                None
            };
            let shape = shape_of(&grad, &x, &a, &b, scale, mask).filter(|_| from_seed);
            let Some(shape) = shape else {
                let mask = (keep < 1.0).then(|| {
                    if from_seed {
                        host_mask::<Self>(x.clone(), keep, saved)
                    } else {
                        saved
                    }
                });
                return composed_backward::<Self>(x, a, b, mask, grad, scale);
            };
            let mut grad_x = vec![0.0; shape.rows * shape.d_in];
            let grads = adapter_backward(
                values(&grad),
                values(&x),
                values(&a),
                values(&b),
                &mut grad_x,
                false,
                shape,
            );
            let (grad_a, grad_b) = (grads.a, grads.b);
            let device = x.device();
            let tensor = |v: Vec<f32>, dims: [usize; 2]| host_tensor::<Self, 2>(v, dims, &device);
            (
                tensor(grad_x, [shape.rows, shape.d_in]),
                tensor(grad_a, [shape.d_in, shape.rank]),
                tensor(grad_b, [shape.rank, shape.d_out]),
            )
        }

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
            // Flex's own product: a fresh tensor the kernels then finish in place.
            let mut out = Self::float_matmul(x.clone(), weight);
            let shape = shape_of(&out, &x, &a, &b, scale, stream(keep, seed.clone()));
            let d_out = out.layout().shape()[1];
            let Some(shape) =
                shape.filter(|_| plain(&bias) && bias.layout().num_elements() == d_out)
            else {
                let base = add_bias::<Self>(out, bias);
                return Self::adapter_forward(base, x, a, b, seed, scale, keep);
            };
            let n = out.layout().num_elements();
            adapter_forward(
                &mut out.storage_mut::<f32>()[..n],
                values(&x),
                values(&a),
                values(&b),
                Some(values(&bias)),
                shape,
            );
            (out, seed)
        }

        #[allow(clippy::type_complexity)]
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
            // The forward saved the seed (1-D) when it ran the kernels, the mask (2-D) otherwise.
            let from_seed = saved.layout().shape().num_dims() == 1;
            let mask = if from_seed {
                stream(keep, saved.clone())
            } else {
                None
            };
            let shape = shape_of(&grad, &x, &a, &b, scale, mask).filter(|_| from_seed);
            let Some(shape) = shape else {
                return composed_linear_backward::<Self>(
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
                );
            };
            let grad_weight = need_weight
                .then(|| Self::float_matmul(Self::float_transpose(x.clone()), grad.clone()));
            let device = x.device();
            let n_x = shape.rows * shape.d_in;
            // The base product's ∂x is fresh, so the adapter's is added to it in place.
            let (mut grad_x, accumulate) = if need_x {
                let base_x = Self::float_matmul(grad.clone(), Self::float_transpose(weight));
                (base_x, true)
            } else {
                (
                    host_tensor::<Self, 2>(vec![0.0; n_x], [shape.rows, shape.d_in], &device),
                    false,
                )
            };
            let grads = adapter_backward(
                values(&grad),
                values(&x),
                values(&a),
                values(&b),
                &mut grad_x.storage_mut::<f32>()[..n_x],
                accumulate,
                shape,
            );
            let grad_bias = host_tensor::<Self, 1>(grads.bias, [shape.d_out], &device);
            (
                grad_x,
                grad_weight.unwrap_or_else(|| grad_bias.clone()),
                grad_bias,
                host_tensor::<Self, 2>(grads.a, [shape.d_in, shape.rank], &device),
                host_tensor::<Self, 2>(grads.b, [shape.rank, shape.d_out], &device),
            )
        }
    }
}
