//! The retraining and fine-tuning algorithms on a tiny model: what each step may and may not change.

use adaptable_lora::{
    LoraConfig,
    linear::{LoraInit, LoraLinear},
};
use adaptable_meta::{
    MetaError, MetaModel, OptimizerSchedule, TaskData, TaskSlot, count_trainable,
    finetune::{FinetuneConfig, FinetuneMethod, finetune},
    retrain::{
        NoObserver, RetrainConfig, RetrainMethod, adamw_optimizer, prepare, retrain, train_step,
    },
};
use burn::{
    module::Module,
    nn::{Linear, LinearConfig, loss::CrossEntropyLossConfig},
    tensor::{Device, Int, Tensor, TensorData},
};

#[derive(Module, Debug)]
struct Tiny {
    base: LoraLinear,
    heads: Vec<Linear>,
}

#[derive(Clone)]
struct Batch {
    x: Tensor<2>,
    y: Tensor<1, Int>,
}

impl MetaModel for Tiny {
    type Batch = Batch;

    fn loss(&self, batch: &Batch, slot: TaskSlot) -> Tensor<1> {
        let hidden = self.base.forward_with(batch.x.clone(), slot.adapter).tanh();
        let logits = self.heads[slot.head].forward(hidden);
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, batch.y.clone())
    }

    fn correct(&self, batch: &Batch, slot: TaskSlot) -> Result<(usize, usize), MetaError> {
        let hidden = self.base.forward_with(batch.x.clone(), slot.adapter).tanh();
        let pred = self.heads[slot.head]
            .forward(hidden)
            .argmax(1)
            .flatten::<1>(0, 1);
        let hits: i64 = pred.equal(batch.y.clone()).int().sum().into_scalar::<i64>();
        Ok((hits as usize, batch.y.dims()[0]))
    }

    fn reset_task_modules(
        self,
        lora: Option<&LoraConfig>,
        adapters: usize,
        heads: usize,
        device: &Device,
    ) -> Result<Self, MetaError> {
        let base = LoraLinear::from_linear(
            self.base.base,
            lora.cloned(),
            adapters,
            LoraInit::Gaussian,
            device,
        )
        .map_err(|e| MetaError::Model(e.to_string()))?;
        let heads = (0..heads)
            .map(|_| LinearConfig::new(3, 2).init(device))
            .collect();
        Ok(Tiny { base, heads })
    }

    fn freeze_base(self) -> Self {
        Tiny {
            base: self.base.freeze_base(),
            heads: self.heads,
        }
    }

    fn trainable_params(&self) -> usize {
        count_trainable(self)
    }
}

struct Task(Batch);

impl TaskData for Task {
    type Batch = Batch;

    fn train_batches(&self, _epoch: usize) -> Result<Vec<Batch>, MetaError> {
        Ok(vec![self.0.clone()])
    }

    fn eval_batches(&self) -> Result<Vec<Batch>, MetaError> {
        Ok(vec![self.0.clone()])
    }

    fn train_len(&self) -> usize {
        1
    }
}

/// The default backend (flex unless only another one is compiled in).
fn device() -> Device {
    Device::default().autodiff()
}

fn tiny(device: &Device) -> Tiny {
    device.seed(7);
    Tiny {
        base: LoraLinear::from_linear(
            LinearConfig::new(4, 3).init(device),
            None,
            0,
            LoraInit::Gaussian,
            device,
        )
        .unwrap(),
        heads: vec![],
    }
}

fn task(seed: u64, device: &Device) -> Task {
    let x: Vec<f32> = (0..32)
        .map(|i| (((i as u64 * 7919 + seed * 104_729) % 97) as f32 / 48.5) - 1.0)
        .collect();
    let y: Vec<i64> = (0..8).map(|i| ((i as u64 + seed) % 2) as i64).collect();
    Task(Batch {
        x: Tensor::from_data(TensorData::new(x, [8, 4]), device),
        y: Tensor::from_data(TensorData::new(y, [8]), device),
    })
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.inner().try_into_vec_as::<f32>().unwrap()
}

fn config() -> RetrainConfig {
    RetrainConfig {
        optim: OptimizerSchedule {
            epochs: 1,
            lr: 1e-2,
            warmup_fraction: 0.0,
            ..Default::default()
        },
        lora: LoraConfig::new(2).with_alpha(4.0),
        ..Default::default()
    }
}

#[test]
fn a_lora_ml_step_on_task_t_changes_the_base_adapter_t_and_head_t_only() {
    let device = device();
    let model = prepare(tiny(&device), RetrainMethod::LoraMl, 3, &config(), &device).unwrap();
    let before = model.clone();
    let mut optimizer = adamw_optimizer(0.01);
    let batch = task(1, &device).0;
    // Two steps: with B = 0 the first step moves only B; the second moves A too.
    let (model, _) = train_step(
        model,
        &mut optimizer,
        1e-2,
        &batch,
        TaskSlot::adapter_and_head(1),
        ("test", 1, 0, 1),
    )
    .unwrap();
    let (after, _) = train_step(
        model,
        &mut optimizer,
        1e-2,
        &batch,
        TaskSlot::adapter_and_head(1),
        ("test", 1, 1, 1),
    )
    .unwrap();

    assert_ne!(
        values(before.base.base.weight.val()),
        values(after.base.base.weight.val()),
        "base must move"
    );
    for t in 0..3 {
        let a_changed = values(before.base.lora_a[t].val()) != values(after.base.lora_a[t].val());
        let b_changed = values(before.base.lora_b[t].val()) != values(after.base.lora_b[t].val());
        let head_changed =
            values(before.heads[t].weight.val()) != values(after.heads[t].weight.val());
        assert_eq!(a_changed && b_changed, t == 1, "adapter {t}");
        assert_eq!(
            a_changed || b_changed,
            t == 1,
            "adapter {t} (no partial moves elsewhere)"
        );
        assert_eq!(head_changed, t == 1, "head {t}");
    }
}

#[test]
fn standard_retraining_has_no_adapters_and_one_head() {
    let device = device();
    let model = prepare(
        tiny(&device),
        RetrainMethod::Standard,
        3,
        &config(),
        &device,
    )
    .unwrap();
    assert_eq!(model.base.num_adapters(), 0);
    assert_eq!(model.heads.len(), 1);
    let tasks: Vec<Task> = (0..3).map(|s| task(s, &device)).collect();
    let out = retrain(
        model,
        &tasks,
        RetrainMethod::Standard,
        &config(),
        &mut NoObserver,
        None,
    )
    .unwrap();
    assert_eq!(out.best.base.num_adapters(), 0);
    assert_eq!(out.history.len(), 1);
    assert_eq!(out.history[0].heldout_accuracy.len(), 3);
    assert_eq!(out.trainable_params, 4 * 3 + 3 + 3 * 2 + 2);
}

#[test]
fn fine_tuning_leaves_the_base_bit_identical() {
    let device = device();
    let base = tiny(&device);
    let weight = values(base.base.base.weight.val());
    let bias = values(base.base.base.bias.as_ref().unwrap().val());
    let cfg = FinetuneConfig {
        optim: OptimizerSchedule {
            epochs: 3,
            lr: 1e-2,
            ..Default::default()
        },
        lora: LoraConfig::new(2).with_alpha(4.0),
    };
    let t = task(3, &device);
    let out = finetune(&base, &t, FinetuneMethod::Lora, &cfg, &device, || {}).unwrap();
    assert_eq!(out.accuracy.len(), 4, "initial plus one per epoch");
    // The adapter (A: 4×2, B: 2×3) and the head (3×2 + 2) are all that trains.
    assert_eq!(out.trainable_params, 4 * 2 + 2 * 3 + 3 * 2 + 2);
    assert_eq!(values(base.base.base.weight.val()), weight);
    // The fine-tuned copy's base must not have moved either: re-run and inspect the model directly.
    let mut model = base
        .clone()
        .reset_task_modules(Some(&cfg.lora), 1, 1, &device)
        .unwrap()
        .freeze_base();
    let mut optimizer = adamw_optimizer(0.01);
    for step in 0..3 {
        model = train_step(
            model,
            &mut optimizer,
            1e-2,
            &t.0,
            TaskSlot::adapter_and_head(0),
            ("ft", 1, step, 0),
        )
        .unwrap()
        .0;
    }
    assert_eq!(values(model.base.base.weight.val()), weight);
    assert_eq!(values(model.base.base.bias.as_ref().unwrap().val()), bias);
    assert_ne!(
        values(model.base.lora_b[0].val()),
        vec![0.0; 6],
        "the adapter must train"
    );
    let head_only = finetune(&base, &t, FinetuneMethod::LastLayer, &cfg, &device, || {}).unwrap();
    assert_eq!(head_only.trainable_params, 3 * 2 + 2);
}

#[test]
fn reptile_moves_the_base_toward_the_task_solution() {
    let device = device();
    let mut cfg = config();
    cfg.optim.weight_decay = 0.0;
    let model = prepare(tiny(&device), RetrainMethod::Reptile, 1, &cfg, &device).unwrap();
    let t = task(5, &device);
    // The task solution Reptile chases: the weights after its inner loop from the same start.
    let mut fast = model.clone();
    let mut inner = adamw_optimizer(0.0);
    for i in 0..cfg.reptile.inner_steps {
        fast = train_step(
            fast,
            &mut inner,
            cfg.reptile.inner_lr,
            &t.0,
            TaskSlot::SHARED,
            ("inner", 1, i, 0),
        )
        .unwrap()
        .0;
    }
    let theta = values(model.base.base.weight.val());
    let phi = values(fast.base.base.weight.val());
    // A warm-up of zero makes the single outer step use the full outer learning rate.
    let out = retrain(
        model,
        std::slice::from_ref(&t),
        RetrainMethod::Reptile,
        &cfg,
        &mut NoObserver,
        None,
    )
    .unwrap();
    assert_eq!(out.best_epoch, 1);
    let moved = values(out.best.base.base.weight.val());
    let toward: f32 = theta
        .iter()
        .zip(&phi)
        .zip(&moved)
        .map(|((th, ph), mv)| (mv - th) * (ph - th))
        .sum();
    assert!(
        toward > 0.0,
        "Reptile moved away from the adapted weights: {toward}"
    );
    for ((th, ph), mv) in theta.iter().zip(&phi).zip(&moved) {
        if (ph - th).abs() > 1e-5 {
            assert_eq!(
                (mv - th).signum(),
                (ph - th).signum(),
                "coordinate moved the wrong way"
            );
        }
    }
}

#[test]
fn optimizer_and_model_checkpoints_resume_exactly() {
    let device = device();
    let dir = std::env::temp_dir().join(format!("adaptable-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = prepare(tiny(&device), RetrainMethod::LoraMl, 2, &config(), &device).unwrap();
    let batch = task(2, &device).0;
    let slot = TaskSlot::adapter_and_head(0);
    let mut optimizer = adamw_optimizer(0.01);
    let (model, _) = train_step(model, &mut optimizer, 1e-2, &batch, slot, ("t", 1, 0, 0)).unwrap();
    model.clone().save_file(dir.join("m.bpk")).unwrap();
    optimizer.save(dir.join("o.bpk")).unwrap();
    let (straight, _) =
        train_step(model, &mut optimizer, 1e-2, &batch, slot, ("t", 1, 1, 0)).unwrap();

    // A freshly built model (new parameter ids) restored from the files must take the same step.
    let fresh = prepare(tiny(&device), RetrainMethod::LoraMl, 2, &config(), &device).unwrap();
    let restored = fresh.load_file(dir.join("m.bpk"));
    let mut restored_opt = adamw_optimizer(0.01).load(dir.join("o.bpk")).unwrap();
    let (resumed, _) = train_step(
        restored,
        &mut restored_opt,
        1e-2,
        &batch,
        slot,
        ("t", 1, 1, 0),
    )
    .unwrap();
    assert_eq!(
        values(straight.base.base.weight.val()),
        values(resumed.base.base.weight.val())
    );
    assert_eq!(
        values(straight.base.lora_b[0].val()),
        values(resumed.base.lora_b[0].val())
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn last_layer_ml_trains_per_task_heads_on_a_shared_base_without_adapters() {
    let device = device();
    let model = prepare(
        tiny(&device),
        RetrainMethod::LastLayerMl,
        3,
        &config(),
        &device,
    )
    .unwrap();
    assert_eq!(model.base.num_adapters(), 0);
    assert_eq!(model.heads.len(), 3);
    let before = model.clone();
    let tasks: Vec<Task> = (0..3).map(|s| task(s, &device)).collect();
    let out = retrain(
        model,
        &tasks,
        RetrainMethod::LastLayerMl,
        &config(),
        &mut NoObserver,
        None,
    )
    .unwrap();
    // One epoch, one batch per task: the base and every head moved.
    assert_ne!(
        values(before.base.base.weight.val()),
        values(out.best.base.base.weight.val())
    );
    for t in 0..3 {
        assert_ne!(
            values(before.heads[t].weight.val()),
            values(out.best.heads[t].weight.val()),
            "head {t}"
        );
    }
    assert_eq!(out.history[0].heldout_accuracy.len(), 3);
}
