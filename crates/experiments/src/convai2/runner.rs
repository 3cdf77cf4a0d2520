//! Runs a ConvAI2 profile: retrain every method and seed, fine-tune on every unseen persona, and keep
//! every finished piece on disk so that a rerun continues where it stopped.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use adaptable_meta::{
    MetaError, MetaModel, TaskData,
    checkpoint::CheckpointDir,
    finetune::finetune,
    retrain::{RetrainMethod, RetrainObserver, RetrainState, prepare, retrain},
};
use adaptable_models::{
    EncoderConfig, LoraTargets, SequenceClassifierConfig, TextTokenizer, load_pretrained_classifier,
};
use adaptable_tasks::convai2::{Convai2Data, PersonaTask, build_split};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};

use super::{
    Convai2Profile,
    data::{Batching, ConvaiTask},
    model::ConvaiModel,
    outputs::{FinetuneRecord, RetrainRecord},
};
use crate::{
    ExperimentError,
    io::{read_json, write_hook, write_json},
    seed::derive_seed,
};

/// Options that are not part of the profile.
#[derive(Debug, Clone)]
pub struct Convai2RunOptions {
    /// Output directory (`results/convai2/<profile>`).
    pub out: PathBuf,
    /// Training device (autodiff is enabled on it).
    pub device: Device,
    /// Hide progress bars.
    pub quiet: bool,
    /// The shipped-data directory and models directory are looked up from here.
    pub workspace: PathBuf,
}

fn meta(e: MetaError) -> ExperimentError {
    ExperimentError::Meta(e)
}

/// The model directory and tokenizer for the profile's model source.
fn model_source(
    profile: &Convai2Profile,
    workspace: &Path,
) -> Result<(Option<PathBuf>, PathBuf), ExperimentError> {
    let source = profile.model.source.as_str();
    if source == "random-tiny" {
        return Ok((
            None,
            workspace.join("datasets/roberta-tokenizer/tokenizer.json"),
        ));
    }
    let dir = match source {
        "minilm" | "roberta-base" => adaptable_models::default_models_dir().join(source),
        path => PathBuf::from(path),
    };
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        if !dir.join(file).is_file() {
            let hint = if matches!(source, "minilm" | "roberta-base") {
                format!("run `cargo xtask fetch-model {source}`")
            } else {
                "point `model.source` at a directory with config.json, model.safetensors and tokenizer.json".into()
            };
            return Err(ExperimentError::InvalidOption(format!(
                "model `{source}`: {} is missing; {hint}",
                dir.join(file).display()
            )));
        }
    }
    let tokenizer = dir.join("tokenizer.json");
    Ok((Some(dir), tokenizer))
}

/// A fresh classifier with the foundation model's weights (one shared head, no adapters).
fn foundation(
    dir: Option<&Path>,
    targets: LoraTargets,
    device: &Device,
) -> Result<ConvaiModel, ExperimentError> {
    let classifier = match dir {
        Some(dir) => load_pretrained_classifier(dir, 2, 1, None, device)?.0,
        None => {
            let mut config = EncoderConfig::roberta_base();
            config.hidden_size = 32;
            config.num_hidden_layers = 2;
            config.num_attention_heads = 4;
            config.intermediate_size = 64;
            config.max_position_embeddings = 130;
            SequenceClassifierConfig::new(config, 2, 1).init(device)?
        }
    };
    Ok(ConvaiModel {
        classifier,
        targets,
    })
}

/// Builds the tasks of a persona split.
fn tasks_of(
    personas: &[PersonaTask],
    profile: &Convai2Profile,
    tokenizer: &TextTokenizer,
    role: &str,
    device: &Device,
) -> Result<Vec<ConvaiTask>, ExperimentError> {
    let options = profile.split.example_options();
    personas
        .iter()
        .enumerate()
        .map(|(i, persona)| {
            let mut train = persona.train_examples(&options)?;
            let mut heldout = persona.heldout_examples(&options)?;
            if let Some(n) = profile.data.max_train_examples {
                train.truncate(n);
            }
            if let Some(n) = profile.data.max_heldout_examples {
                heldout.truncate(n);
            }
            let batching = Batching {
                batch_size: profile.data.batch_size,
                eval_batch_size: profile.data.eval_batch_size,
                negatives: profile.data.negatives,
                seed: derive_seed(profile.split.seed, &[role, &i.to_string()]),
            };
            Ok(ConvaiTask::new(
                &train,
                &heldout,
                tokenizer,
                profile.data.max_len,
                batching,
                device,
            )?)
        })
        .collect()
}

fn bar(quiet: bool, len: usize, prefix: String) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>28} [{bar:30}] {pos}/{len} steps {elapsed} (ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}

/// The observer of a retraining run: progress, reseeding, and a checkpoint unit after every epoch.
struct Checkpointer {
    checkpoints: CheckpointDir,
    bar: ProgressBar,
    /// Reseeds the device's random stream (dropout) for the epoch that starts, so that a resumed run
    /// draws exactly what an uninterrupted one does.
    reseed: Box<dyn Fn(usize)>,
}

impl RetrainObserver<ConvaiModel> for Checkpointer {
    fn on_epoch_start(&mut self, epoch: usize) {
        (self.reseed)(epoch - 1);
    }

    fn on_step(&mut self, _step: usize) {
        self.bar.inc(1);
    }

    fn on_epoch(&mut self, state: &RetrainState<ConvaiModel>) -> Result<(), MetaError> {
        self.checkpoints.save(state)
    }
}

/// The checkpoints of the retraining run in `dir`; their writes report to the process's write hook.
fn checkpoints_of(dir: &Path) -> CheckpointDir {
    CheckpointDir::new(dir.join("checkpoint")).with_write_hook(write_hook())
}

/// What a finished profile run produced.
#[derive(Debug, Clone)]
pub struct Convai2RunSummary {
    /// One record per retraining run (failed ones included).
    pub retrain: Vec<RetrainRecord>,
    /// One record per fine-tuning run.
    pub finetune: Vec<FinetuneRecord>,
    /// Persona ids of the test tasks, in task order.
    pub test_personas: Vec<usize>,
}

/// Runs (or resumes) a profile.
pub fn run_profile(
    profile: &Convai2Profile,
    options: &Convai2RunOptions,
) -> Result<Convai2RunSummary, ExperimentError> {
    let started = Instant::now();
    let device = options.device.clone();
    let (model_dir, tokenizer_path) = model_source(profile, &options.workspace)?;
    let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
    let data = match &profile.data.path {
        Some(path) => Convai2Data::load(path)?,
        None => Convai2Data::load_default()?,
    };
    let split = build_split(&data, &profile.split)?;
    let retrain_tasks = tasks_of(&split.retrain, profile, &tokenizer, "retrain", &device)?;
    let test_tasks = tasks_of(&split.test, profile, &tokenizer, "test", &device)?;
    tracing::info!(
        retrain_tasks = retrain_tasks.len(),
        test_tasks = test_tasks.len(),
        "ConvAI2 tasks tokenised in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut retrain_records = Vec::new();
    let mut finetune_records = Vec::new();
    for seed in 0..profile.seeds {
        for &method in &profile.methods {
            let dir = options
                .out
                .join("retrain")
                .join(method.id())
                .join(format!("seed{seed}"));
            let record = retrain_one(
                profile,
                options,
                model_dir.as_deref(),
                &retrain_tasks,
                method,
                seed,
                &dir,
            )?;
            let failed = record.failure.is_some();
            retrain_records.push(record);
            if failed {
                continue;
            }
            let prepared = seeded_prepared(
                profile,
                model_dir.as_deref(),
                method,
                retrain_tasks.len(),
                seed,
                &device,
            )?;
            let checkpoints = checkpoints_of(&dir);
            let Some((base, _)) = checkpoints.load_best(&prepared)? else {
                return Err(ExperimentError::MissingCheckpoint {
                    checkpoint: checkpoints.root().to_path_buf(),
                    result: dir.join("result.json"),
                });
            };
            for rank in profile.finetune.effective_ranks() {
                for (k, task) in test_tasks.iter().enumerate() {
                    let file = options
                        .out
                        .join("finetune")
                        .join(method.id())
                        .join(format!("seed{seed}"))
                        .join(format!("rank{rank}"))
                        .join(format!("task{k}.json"));
                    if let Ok(done) = read_json::<FinetuneRecord>(&file) {
                        finetune_records.push(done);
                        continue;
                    }
                    device.seed(derive_seed(
                        seed as u64,
                        &["finetune", method.id(), &rank.to_string(), &k.to_string()],
                    ));
                    let config = profile.finetune.config(rank);
                    let steps = config.optim.epochs * task.train_len();
                    let bar = bar(
                        options.quiet,
                        steps,
                        format!("{} seed {seed} r={rank} task {k}", method.id()),
                    );
                    let t0 = Instant::now();
                    let outcome = finetune(
                        &base,
                        task,
                        profile.finetune.method,
                        &config,
                        &device,
                        || bar.inc(1),
                    );
                    bar.finish_and_clear();
                    let record = match outcome {
                        Ok(outcome) => FinetuneRecord::finished(
                            method,
                            seed,
                            rank,
                            k,
                            split.test[k].id,
                            outcome,
                            t0.elapsed().as_secs_f64(),
                        ),
                        Err(e @ MetaError::NonFiniteLoss { .. }) => FinetuneRecord::failed(
                            method,
                            seed,
                            rank,
                            k,
                            split.test[k].id,
                            e.to_string(),
                        ),
                        Err(e) => return Err(meta(e)),
                    };
                    tracing::info!(
                        method = method.id(),
                        seed,
                        rank,
                        task = k,
                        best = record.best,
                        "fine-tuned"
                    );
                    write_json(&file, &record)?;
                    finetune_records.push(record);
                }
            }
        }
    }
    Ok(Convai2RunSummary {
        retrain: retrain_records,
        finetune: finetune_records,
        test_personas: split.test.iter().map(|t| t.id).collect(),
    })
}

/// The foundation model prepared for `method`, with the seed's initialisation of adapters and heads.
fn seeded_prepared(
    profile: &Convai2Profile,
    model_dir: Option<&Path>,
    method: RetrainMethod,
    tasks: usize,
    seed: usize,
    device: &Device,
) -> Result<ConvaiModel, ExperimentError> {
    device.seed(derive_seed(seed as u64, &["retrain-init", method.id()]));
    let model = foundation(model_dir, profile.model.targets, device)?;
    prepare(model, method, tasks, &profile.retrain, device).map_err(meta)
}

fn retrain_one(
    profile: &Convai2Profile,
    options: &Convai2RunOptions,
    model_dir: Option<&Path>,
    tasks: &[ConvaiTask],
    method: RetrainMethod,
    seed: usize,
    dir: &Path,
) -> Result<RetrainRecord, ExperimentError> {
    let result_file = dir.join("result.json");
    if let Ok(done) = read_json::<RetrainRecord>(&result_file) {
        tracing::info!(
            method = method.id(),
            seed,
            "retraining already finished; reusing it"
        );
        return Ok(done);
    }
    let device = &options.device;
    let prepared = seeded_prepared(profile, model_dir, method, tasks.len(), seed, device)?;
    let checkpoints = checkpoints_of(dir);
    let resume = checkpoints.load(&prepared, profile.retrain.optim.optimizer())?;
    if let Some(state) = &resume {
        tracing::info!(
            method = method.id(),
            seed,
            epochs_done = state.epochs_done(),
            "resuming retraining from its checkpoint"
        );
    }
    let done = resume.as_ref().map_or(0, RetrainState::epochs_done);
    let per_epoch = match method {
        RetrainMethod::Reptile => tasks.len(),
        _ => tasks.iter().map(TaskData::train_len).sum(),
    };
    let remaining = profile.retrain.optim.epochs.saturating_sub(done) * per_epoch;
    let reseed = {
        let device = device.clone();
        move |epochs_done: usize| {
            device.seed(derive_seed(
                seed as u64,
                &["retrain-epoch", method.id(), &epochs_done.to_string()],
            ));
        }
    };
    let mut checkpointer = Checkpointer {
        checkpoints,
        bar: bar(
            options.quiet,
            remaining,
            format!("retrain {} seed {seed}", method.id()),
        ),
        reseed: Box::new(reseed),
    };
    let trainable = prepared.trainable_params();
    let t0 = Instant::now();
    let outcome = retrain(
        prepared,
        tasks,
        method,
        &profile.retrain,
        &mut checkpointer,
        resume,
    );
    checkpointer.bar.finish_and_clear();
    let record = match outcome {
        Ok(outcome) => RetrainRecord::finished(
            method,
            seed,
            &outcome,
            trainable,
            t0.elapsed().as_secs_f64(),
        ),
        Err(e @ MetaError::NonFiniteLoss { .. }) => {
            tracing::error!(method = method.id(), seed, "retraining failed: {e}");
            RetrainRecord::failed(method, seed, trainable, e.to_string())
        }
        Err(e) => return Err(meta(e)),
    };
    write_json(&result_file, &record)?;
    Ok(record)
}
