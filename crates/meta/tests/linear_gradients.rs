//! The hand-written gradients of the linear objectives against Burn autodiff, finite differences and
//! the loss computed directly from the samples.

use adaptable_lora::LowRankFactors;
use adaptable_meta::linear::BatchedStatistics;
use adaptable_tasks::linear::{LinearTaskConfig, LinearTaskFamily, gaussian_matrix};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{SeedableRng, rngs::StdRng};

/// The default backend (flex unless only another one is compiled in).
fn device() -> Device {
    Device::default()
}

fn family() -> (LinearTaskFamily, Vec<adaptable_tasks::linear::TaskSample>) {
    let config = LinearTaskConfig {
        dim: 4,
        tasks: 2,
        rank: 1,
        ..Default::default()
    };
    let family = LinearTaskFamily::generate(&config, 5).unwrap();
    let mut rng = StdRng::seed_from_u64(6);
    let samples = (0..2).map(|t| family.sample(t, 50, &mut rng)).collect();
    (family, samples)
}

fn vec(t: Tensor<3>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

#[test]
fn loss_from_statistics_equals_the_loss_on_the_samples() {
    let device = device();
    let (_, samples) = family();
    let stats: Vec<_> = samples.iter().map(|s| s.statistics()).collect();
    let batched = BatchedStatistics::from_statistics(&stats, &device).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let ms: Vec<_> = (0..2)
        .map(|_| gaussian_matrix(4, 4, 1.0, &mut rng))
        .collect();
    let m_tensor = Tensor::<3>::from_data(
        TensorData::new(ms.iter().flat_map(|m| m.to_f32_vec()).collect(), [2, 4, 4]),
        &device,
    );
    let ours = batched.loss(m_tensor).try_into_vec_as::<f64>().unwrap();
    for (b, (m, s)) in ms.iter().zip(&samples).enumerate() {
        let residual = s.y.sub(&m.matmul(&s.x));
        let direct = residual.frobenius_sq() / (2.0 * s.len() as f64);
        assert!(
            (ours[b] - direct).abs() <= 1e-4 * direct.max(1.0),
            "{} vs {direct}",
            ours[b]
        );
    }
}

#[test]
fn gradient_matches_autodiff_and_finite_differences() {
    let device = device();
    let ad = device.clone().autodiff();
    let (_, samples) = family();
    let stats: Vec<_> = samples.iter().map(|s| s.statistics()).collect();
    let plain = BatchedStatistics::from_statistics(&stats, &device).unwrap();
    let tracked = BatchedStatistics::from_statistics(&stats, &ad).unwrap();

    let mut rng = StdRng::seed_from_u64(2);
    let a = Tensor::<3>::from_data(
        TensorData::new(
            gaussian_matrix(2 * 4, 4, 1.0, &mut rng).to_f32_vec(),
            [2, 4, 4],
        ),
        &device,
    );
    let factors = LowRankFactors::gaussian_symmetric(2, 4, 1, 0.5, &mut rng, &device);

    // Analytic: ∂L/∂A = G, ∂L/∂U = (G + Gᵀ) U with G = (A + UUᵀ) Σxx − Σyx.
    let g = plain.gradient(a.clone() + factors.delta());
    let analytic_u = factors.backprop(g.clone()).u;

    // Autodiff of the same loss.
    let a_ad = Tensor::<3>::from_data(a.to_data(), &ad).require_grad();
    let u_ad = Tensor::<3>::from_data(factors.u().to_data(), &ad).require_grad();
    let loss = tracked
        .loss(a_ad.clone() + LowRankFactors::symmetric(u_ad.clone()).delta())
        .sum();
    let grads = loss.backward();
    let close = |x: &[f32], y: &[f32], tol: f32| {
        x.iter()
            .zip(y)
            .all(|(p, q)| (p - q).abs() <= tol * (1.0 + q.abs()))
    };
    assert!(close(
        &vec(g.clone()),
        &vec(a_ad.grad(&grads).unwrap()),
        1e-4
    ));
    assert!(close(
        &vec(analytic_u.clone()),
        &vec(u_ad.grad(&grads).unwrap()),
        1e-4
    ));

    // Central finite differences in f64 through the sample loss, on a few coordinates of U.
    let u0 = vec(factors.u().clone());
    let a0 = vec(a);
    let (_, samples) = family();
    let loss_at = |u: &[f32]| -> f64 {
        samples
            .iter()
            .enumerate()
            .map(|(b, s)| {
                let d = 4;
                let m = adaptable_tasks::Matrix::from_fn(d, d, |i, j| {
                    f64::from(a0[b * 16 + i * d + j])
                        + f64::from(u[b * d + i]) * f64::from(u[b * d + j])
                });
                s.y.sub(&m.matmul(&s.x)).frobenius_sq() / (2.0 * s.len() as f64)
            })
            .sum()
    };
    let analytic_u = vec(analytic_u);
    for idx in [0, 3, 5, 7] {
        let h = 1e-3_f32;
        let (mut plus, mut minus) = (u0.clone(), u0.clone());
        plus[idx] += h;
        minus[idx] -= h;
        let fd = (loss_at(&plus) - loss_at(&minus)) / (2.0 * f64::from(h));
        let an = f64::from(analytic_u[idx]);
        assert!(
            (fd - an).abs() <= 2e-3 * (1.0 + an.abs()),
            "coordinate {idx}: fd {fd} vs analytic {an}"
        );
    }
}
