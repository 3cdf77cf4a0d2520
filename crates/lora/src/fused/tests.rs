use burn::nn::DropoutConfig;
use burn::tensor::{Device, Distribution, Tensor, TensorData, Tolerance};

use super::adapted;
use crate::dropout::dropout;

/// Values, gradients of `Σ out ⊙ weights` for base, x, A and B.
type Run = (TensorData, [TensorData; 4]);

fn run(device: &Device, prob: f64, fused: bool, shape: [usize; 4]) -> Run {
    let [rows, d_in, d_out, rank] = shape;
    device.seed(17);
    let leaf = |dims: [usize; 2]| {
        Tensor::<2>::random(dims, Distribution::Normal(0.0, 1.0), device).require_grad()
    };
    let (base, x, a, b) = (
        leaf([rows, d_out]),
        leaf([rows, d_in]),
        leaf([d_in, rank]),
        leaf([rank, d_out]),
    );
    let weights = Tensor::<2>::random([rows, d_out], Distribution::Normal(0.0, 1.0), device);
    let layer = DropoutConfig::new(prob).init();
    let scale = 0.75;
    device.seed(99);
    let out = if fused {
        adapted(base.clone(), x.clone(), a.clone(), b.clone(), scale, &layer)
    } else {
        let down = dropout(&layer, x.clone()).matmul(a.clone());
        base.clone() + down.matmul(b.clone()).mul_scalar(scale)
    };
    let grads = (out.clone() * weights).sum().backward();
    let grad = |t: &Tensor<2>| t.grad(&grads).expect("gradient").into_data();
    (out.into_data(), [grad(&base), grad(&x), grad(&a), grad(&b)])
}

#[test]
fn the_fused_path_equals_the_composed_one_with_the_same_mask_and_gradients() {
    let _serial = crate::seeded_device_lock();
    let device = Device::default().autodiff();
    // 1,400 × 48 inputs are split across threads on a multi-core host; 13 rows leave a ragged
    // row block; rank 12 fills one lane group and part of another.
    for shape in [[1400, 48, 40, 8], [13, 7, 5, 3], [64, 16, 24, 12]] {
        for prob in [0.0, 0.1, 0.5] {
            let (out_f, grads_f) = run(&device, prob, true, shape);
            let (out_c, grads_c) = run(&device, prob, false, shape);
            out_f.assert_approx_eq::<f32>(&out_c, Tolerance::rel_abs(1e-5, 1e-4));
            for (name, (f, c)) in ["base", "x", "A", "B"]
                .iter()
                .zip(grads_f.iter().zip(&grads_c))
            {
                assert_eq!(f.shape(), c.shape(), "{name}");
                // Sums over up to 1,400 rows with cancellation: the error scales with the
                // largest entry, not with each entry.
                let largest = c.iter::<f32>().fold(0.0_f32, |m, v| m.max(v.abs()));
                f.assert_approx_eq::<f32>(c, Tolerance::rel_abs(1e-5, 1e-4 + 2e-6 * largest));
            }
        }
    }
}

#[test]
fn the_fused_path_is_deterministic_and_the_dropout_varies_with_the_seed() {
    let _serial = crate::seeded_device_lock();
    let device = Device::default().autodiff();
    let shape = [40, 16, 8, 4];
    let (first, grads_first) = run(&device, 0.3, true, shape);
    let (second, grads_second) = run(&device, 0.3, true, shape);
    assert_eq!(first, second);
    assert_eq!(grads_first[1], grads_second[1]);
    let (no_dropout, _) = run(&device, 0.0, true, shape);
    assert_ne!(first, no_dropout, "a dropout of 0.3 must change the output");
}

#[test]
fn without_autodiff_the_fused_path_has_no_dropout() {
    let device = Device::default();
    let x = Tensor::<2>::ones([6, 4], &device);
    let a = Tensor::<2>::ones([4, 2], &device);
    let b = Tensor::<2>::ones([2, 3], &device);
    let base = Tensor::<2>::zeros([6, 3], &device);
    let out = adapted(base, x, a, b, 0.5, &DropoutConfig::new(0.5).init());
    // Each entry: 0.5 · (4 · 1) · 2 = 4.
    out.into_data().assert_approx_eq::<f32>(
        &TensorData::from([[4.0_f32; 3]; 6]),
        Tolerance::absolute(1e-6),
    );
}
