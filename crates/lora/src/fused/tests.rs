use burn::nn::DropoutConfig;
use burn::tensor::{Device, Distribution, Tensor, TensorData, Tolerance};

use super::{adapted, adapted_linear};
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

/// Values and gradients of `Σ out ⊙ weights` for x, W, bias, A and B of the layer
/// `x W + bias + s (dropout(x) A) B`, fused or composed; `frozen` leaves W without a gradient.
fn run_linear(device: &Device, prob: f64, fused: bool, frozen: bool, shape: [usize; 4]) -> Run5 {
    let [rows, d_in, d_out, rank] = shape;
    device.seed(23);
    let random =
        |dims: Vec<usize>| Tensor::<2>::random(dims, Distribution::Normal(0.0, 1.0), device);
    let (x, weight, a, b) = (
        random(vec![rows, d_in]).require_grad(),
        random(vec![d_in, d_out]),
        random(vec![d_in, rank]).require_grad(),
        random(vec![rank, d_out]).require_grad(),
    );
    let weight = if frozen {
        weight
    } else {
        weight.require_grad()
    };
    let bias = Tensor::<1>::random([d_out], Distribution::Normal(0.0, 1.0), device).require_grad();
    let weights = random(vec![rows, d_out]);
    let layer = DropoutConfig::new(prob).init();
    let scale = 0.75;
    device.seed(99);
    let out = if fused {
        adapted_linear(
            x.clone(),
            weight.clone(),
            bias.clone(),
            a.clone(),
            b.clone(),
            scale,
            &layer,
        )
    } else {
        let base = x.clone().matmul(weight.clone()) + bias.clone().unsqueeze::<2>();
        adapted(base, x.clone(), a.clone(), b.clone(), scale, &layer)
    };
    let grads = (out.clone() * weights).sum().backward();
    let grad2 = |t: &Tensor<2>| t.grad(&grads).map(|g| g.into_data());
    (
        out.into_data(),
        [
            grad2(&x),
            grad2(&weight),
            bias.grad(&grads).map(|g| g.into_data()),
            grad2(&a),
            grad2(&b),
        ],
    )
}

/// Values and the five gradients (`None` where an input has none).
type Run5 = (TensorData, [Option<TensorData>; 5]);

#[test]
fn the_fused_linear_layer_equals_the_composed_one() {
    let _serial = crate::seeded_device_lock();
    let device = Device::default().autodiff();
    for shape in [[1400, 48, 40, 8], [13, 7, 5, 3]] {
        for (prob, frozen) in [(0.0, false), (0.1, false), (0.3, true)] {
            let (out_f, grads_f) = run_linear(&device, prob, true, frozen, shape);
            let (out_c, grads_c) = run_linear(&device, prob, false, frozen, shape);
            out_f.assert_approx_eq::<f32>(&out_c, Tolerance::rel_abs(1e-5, 1e-4));
            for (name, (f, c)) in ["x", "W", "bias", "A", "B"]
                .iter()
                .zip(grads_f.iter().zip(&grads_c))
            {
                match (f, c) {
                    (Some(f), Some(c)) => {
                        assert_eq!(f.shape(), c.shape(), "{name}");
                        let largest = c.iter::<f32>().fold(0.0_f32, |m, v| m.max(v.abs()));
                        f.assert_approx_eq::<f32>(
                            c,
                            Tolerance::rel_abs(1e-5, 1e-4 + 2e-6 * largest),
                        );
                    }
                    (None, None) => assert!(frozen && *name == "W", "{name} has no gradient"),
                    _ => panic!("{name}: a gradient on one side only"),
                }
            }
        }
    }
}
