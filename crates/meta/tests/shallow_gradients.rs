//! The fused data pass of the shallow network against Burn's autodiff: losses and gradients, for
//! the bare network (SR) and through per-task adapters (LoRA-ML's chain rule).

use adaptable_lora::LowRankFactors;
use adaptable_meta::{
    linear::{expand_groups, sum_groups},
    shallow::{ShallowBatch, lora_adapters, loss_and_gradients},
};
use adaptable_tasks::{
    linear::gaussian_matrix,
    shallow::{ShallowSample, ShallowTaskConfig, ShallowTaskFamily},
};
use burn::tensor::{Device, Tensor, TensorData, activation::sigmoid};
use rand::{SeedableRng, rngs::StdRng};

/// `groups × tasks` samples of `n` points each (`n` not a multiple of the block width, so that the
/// padding is exercised).
fn samples(dim: usize, groups: usize, tasks: usize, n: usize) -> Vec<ShallowSample> {
    let config = ShallowTaskConfig {
        dim,
        tasks,
        ..Default::default()
    };
    let mut rng = StdRng::seed_from_u64(3);
    (0..groups)
        .flat_map(|g| {
            let family = ShallowTaskFamily::generate(&config, 10 + g as u64).unwrap();
            (0..tasks)
                .map(|t| family.sample(t, n, &mut rng))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

fn assert_close(ours: &[f32], reference: &[f32], what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}");
    let scale = reference
        .iter()
        .fold(0.0_f32, |m, v| m.max(v.abs()))
        .max(1e-3);
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a - b).abs() <= 2e-4 * scale,
            "{what}[{i}]: ours {a}, autodiff {b} (scale {scale})"
        );
    }
}

/// The summed per-problem MSE `Σ_b (1/n) Σ_i (c_bᵀ σ(W_b x_i) − y_i)²` with Burn operations.
fn burn_loss(
    w: Tensor<3>,
    c: Tensor<2>,
    data: &[ShallowSample],
    targets: fn(&ShallowSample) -> &[f64],
    device: &Device,
) -> Tensor<1> {
    let [b, d, _] = w.dims();
    let n = data[0].len();
    let x: Vec<f32> = data.iter().flat_map(|s| s.x.to_f32_vec()).collect();
    let y: Vec<f32> = data
        .iter()
        .flat_map(|s| targets(s).iter().map(|&v| v as f32))
        .collect();
    let x = tensor(x, [b, d, n], device);
    let y = tensor(y, [b, 1, n], device);
    let h = sigmoid(w.matmul(x));
    let prediction = (c.unsqueeze_dim::<3>(2) * h).sum_dim(1);
    let r = prediction - y;
    (r.clone() * r).sum().div_scalar(n as f64)
}

/// Shapes that reach every tile size of the fused pass: hidden units and input features leave
/// remainders of 1, 3 and 2 after tiles of 4, and the sample counts give one partial chunk, and
/// whole chunks followed by a partial one (chunks of 128 samples, forward tiles of 4 vectors).
#[test]
fn fused_pass_matches_autodiff_for_bare_networks() {
    for (d, n) in [(5, 37), (7, 300), (10, 1000)] {
        check_fused_pass(d, n);
    }
}

fn check_fused_pass(d: usize, n: usize) {
    let device = Device::default();
    let ad = device.clone().autodiff();
    let problems = 4;
    let data = samples(d, 2, 2, n);
    let refs: Vec<&ShallowSample> = data.iter().collect();
    let batch = ShallowBatch::from_samples(&refs).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let w: Vec<f32> = gaussian_matrix(problems, d * d, 0.5, &mut rng).to_f32_vec();
    let c: Vec<f32> = gaussian_matrix(problems, d, 1.0, &mut rng).to_f32_vec();
    let ours = loss_and_gradients(&batch, &w, &c).unwrap();

    let wt = tensor(w.clone(), [problems, d, d], &ad).require_grad();
    let ct = tensor(c.clone(), [problems, d], &ad).require_grad();
    let loss = burn_loss(wt.clone(), ct.clone(), &data, |s| &s.y, &ad);
    let total = vec(loss.clone())[0];
    let grads = loss.backward();
    assert_close(&ours.grad_w, &vec(wt.grad(&grads).unwrap()), "∂L/∂W");
    assert_close(&ours.grad_c, &vec(ct.grad(&grads).unwrap()), "∂L/∂c");
    let ours_total: f64 = ours.loss.iter().sum();
    assert!(
        (ours_total - f64::from(total)).abs() < 1e-4 * f64::from(total),
        "{ours_total} vs {total}"
    );

    // The test metric uses the noiseless targets.
    let clean = burn_loss(
        tensor(w, [problems, d, d], &device),
        tensor(c, [problems, d], &device),
        &data,
        |s| &s.y_clean,
        &device,
    );
    let clean = f64::from(vec(clean)[0]);
    let ours_clean: f64 = ours.clean_loss.iter().sum();
    assert!(
        (ours_clean - clean).abs() < 1e-4 * clean.max(1e-3),
        "{ours_clean} vs {clean}"
    );
    assert!(ours_clean < ours_total, "noise adds to the training loss");
}

#[test]
fn adapter_chain_rule_matches_autodiff_through_the_network() {
    let device = Device::default();
    let ad = device.clone().autodiff();
    let (d, groups, tasks, rank, n) = (6, 2, 3, 2, 50);
    let data = samples(d, groups, tasks, n);
    let refs: Vec<&ShallowSample> = data.iter().collect();
    let batch = ShallowBatch::from_samples(&refs).unwrap();
    let mut rng = StdRng::seed_from_u64(21);
    let a: Vec<f32> = gaussian_matrix(groups, d * d, 0.4, &mut rng).to_f32_vec();
    let c: Vec<f32> = gaussian_matrix(groups, d, 1.0, &mut rng).to_f32_vec();
    // A non-zero up-projection, so that both factor gradients are non-trivial.
    let init = lora_adapters(groups * tasks, d, rank, &mut rng, &device).unwrap();
    let u = gaussian_matrix(groups * tasks, d * rank, 0.3, &mut rng).to_f32_vec();
    let factors = LowRankFactors::asymmetric(
        tensor(u, [groups * tasks, d, rank], &device),
        init.v().clone(),
    )
    .unwrap();

    // Ours: the fused pass on W = A_g + U_t V_tᵀ, then the chain rule.
    let a_t = tensor(a.clone(), [groups, d, d], &device);
    let w = expand_groups(a_t, tasks) + factors.delta();
    let c_rows: Vec<f32> = c
        .chunks(d)
        .flat_map(|row| std::iter::repeat_n(row.to_vec(), tasks).flatten())
        .collect();
    let pass = loss_and_gradients(&batch, &vec(w), &c_rows).unwrap();
    let grad_w = tensor(pass.grad_w, [groups * tasks, d, d], &device);
    let grad_a = sum_groups(grad_w.clone(), tasks);
    let fg = factors.backprop(grad_w);
    let grad_c: Vec<f32> = pass
        .grad_c
        .chunks(d * tasks)
        .flat_map(|g| (0..d).map(move |j| (0..tasks).map(|t| g[t * d + j]).sum::<f32>()))
        .collect();

    // Autodiff on the same objective.
    let at = tensor(a, [groups, d, d], &ad).require_grad();
    let ct = tensor(c, [groups, d], &ad).require_grad();
    let ut = Tensor::<3>::from_data(factors.u().to_data(), &ad).require_grad();
    let vt = Tensor::<3>::from_data(factors.v().to_data(), &ad).require_grad();
    let wt = expand_groups(at.clone(), tasks) + ut.clone().matmul(vt.clone().swap_dims(1, 2));
    let c_expanded = ct
        .clone()
        .unsqueeze_dim::<3>(1)
        .expand([groups, tasks, d])
        .reshape([groups * tasks, d]);
    let loss = burn_loss(wt, c_expanded, &data, |s| &s.y, &ad);
    let grads = loss.backward();
    assert_close(&vec(grad_a), &vec(at.grad(&grads).unwrap()), "∂L/∂A");
    assert_close(&grad_c, &vec(ct.grad(&grads).unwrap()), "∂L/∂c");
    assert_close(&vec(fg.u), &vec(ut.grad(&grads).unwrap()), "∂L/∂U");
    assert_close(&vec(fg.v.unwrap()), &vec(vt.grad(&grads).unwrap()), "∂L/∂V");
}

#[test]
fn mismatched_shapes_are_errors() {
    let data = samples(3, 1, 2, 8);
    let refs: Vec<&ShallowSample> = data.iter().collect();
    let batch = ShallowBatch::from_samples(&refs).unwrap();
    assert!(loss_and_gradients(&batch, &[0.0; 9], &[0.0; 6]).is_err());
    let other = samples(4, 1, 1, 8);
    let mixed: Vec<&ShallowSample> = vec![&data[0], &other[0]];
    assert!(ShallowBatch::from_samples(&mixed).is_err());
}
