//! The retraining and fine-tuning algorithms on a tiny model: what each step may and may not change.

mod tiny;

use adaptable_lora::LoraConfig;
use adaptable_meta::{
    MetaModel, OptimizerSchedule, TaskSlot,
    finetune::{FinetuneConfig, FinetuneMethod, finetune},
    retrain::{NoObserver, RetrainMethod, adamw_optimizer, prepare, retrain, train_step},
};
use burn::module::Module;
use tiny::{Task, config, device, task, tiny, values};

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
