//! Times retraining epochs of the shallow network at one setting, both methods side by side.
//!
//! `cargo run --release -p adaptable-meta --example shallow_epochs -- [d] [T] [trials] [epochs]`

use std::time::Instant;

use adaptable_lora::MatrixAdapterBank;
use adaptable_meta::shallow::{
    ShallowBatch, ShallowNetworks, ShallowRetrainConfig, lora_adapters, retrain,
};
use adaptable_tasks::shallow::{ShallowSample, ShallowTaskConfig, ShallowTaskFamily};
use burn::tensor::Device;
use rand::{SeedableRng, rngs::StdRng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (dim, tasks, trials, epochs) = (arg(1, 10), arg(2, 3), arg(3, 10), arg(4, 1000));
    let device = Device::default();
    let config = ShallowTaskConfig {
        dim,
        tasks,
        ..Default::default()
    };
    let mut rng = StdRng::seed_from_u64(0);
    let samples: Vec<ShallowSample> = (0..trials)
        .flat_map(|g| {
            let family = ShallowTaskFamily::generate(&config, g as u64).expect("valid config");
            (0..tasks)
                .map(|t| family.sample(t, config.retrain_samples, &mut rng))
                .collect::<Vec<_>>()
        })
        .collect();
    let refs: Vec<&ShallowSample> = samples.iter().collect();
    let batch = ShallowBatch::from_samples(&refs)?;
    let retrain_config = ShallowRetrainConfig {
        epochs,
        ..Default::default()
    };
    let init = ShallowNetworks::torch_default(trials, dim, &mut rng, &device);
    let bank = MatrixAdapterBank::new(
        lora_adapters(trials * tasks, dim, config.rank, &mut rng, &device)?,
        tasks,
    )?;
    // The fused pass alone, for comparison with whole epochs.
    let (w, c) = (
        vec![0.1_f32; trials * tasks * dim * dim],
        vec![0.5_f32; trials * tasks * dim],
    );
    let started = Instant::now();
    for _ in 0..epochs {
        std::hint::black_box(adaptable_meta::shallow::loss_and_gradients(&batch, &w, &c)?);
    }
    println!(
        "fused pass alone: {:.3} ms per call (one method, one thread)",
        1e3 * started.elapsed().as_secs_f64() / epochs as f64
    );
    if std::env::var_os("FUSED_ONLY").is_some() {
        return Ok(());
    }
    let started = Instant::now();
    let (sr, ml) = std::thread::scope(|s| {
        let sr = s.spawn(|| retrain(&batch, tasks, init.clone(), None, &retrain_config));
        let ml = s.spawn(|| retrain(&batch, tasks, init.clone(), Some(bank), &retrain_config));
        (sr.join(), ml.join())
    });
    let seconds = started.elapsed().as_secs_f64();
    let (sr, ml) = (
        sr.map_err(|_| "SR thread panicked")??,
        ml.map_err(|_| "LoRA-ML thread panicked")??,
    );
    println!(
        "d={dim} T={tasks} trials={trials}: {epochs} epochs of SR and LoRA-ML in {seconds:.2} s \
         ({:.3} ms/epoch); final loss SR {:.4}, LoRA-ML {:.4}",
        1e3 * seconds / epochs as f64,
        sr.final_loss.iter().sum::<f64>() / trials as f64,
        ml.final_loss.iter().sum::<f64>() / trials as f64,
    );
    Ok(())
}
