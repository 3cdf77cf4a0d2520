//! Runs a ConvAI2 profile: retrain every method and seed, fine-tune on every unseen persona, and keep
//! every finished piece on disk so that a rerun continues where it stopped, and so that parts of a
//! profile run separately (`--seed-range`, `--methods`) into one directory merge into one table.

use std::{
    fmt::Write as _,
    ops::Range,
    path::{Path, PathBuf},
    time::Instant,
};

use adaptable_meta::{
    MetaError, MetaModel, TaskData,
    checkpoint::CheckpointDir,
    finetune::{FinetuneMethod, finetune},
    retrain::{RetrainMethod, RetrainState, prepare, retrain},
};
use adaptable_models::{
    EncoderConfig, LoraTargets, ModelType, SequenceClassifierConfig, TextTokenizer,
    load_pretrained_classifier,
};
use adaptable_tasks::convai2::{
    Convai2Data, PersonaSplit, PersonaTask, build_split, default_valid_path,
};
use burn::tensor::Device;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{
    Convai2Profile, LoraMlRank, PairFormatSetting,
    data::{Batching, ConvaiTask, PairEncoder},
    model::ConvaiModel,
    outputs::{FinetuneKey, FinetuneRecord, RetrainKey, RetrainRecord, finetune_id},
};
use crate::{
    ExperimentError,
    checkpointed::CheckpointedRun,
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
    /// Progress bars are drawn here (hidden: [`Convai2RunOptions::quiet`]).
    pub progress: MultiProgress,
    /// The shipped-data directory and models directory are looked up from here.
    pub workspace: PathBuf,
    /// The seeds this invocation runs (absent: all of the profile's); the results of every seed
    /// found in `out` are reported.
    pub seeds: Option<Range<usize>>,
}

impl Convai2RunOptions {
    /// Options with progress bars on standard error and every seed.
    pub fn new(out: PathBuf, device: Device, workspace: PathBuf) -> Self {
        Self {
            out,
            device,
            progress: MultiProgress::new(),
            workspace,
            seeds: None,
        }
    }

    /// No progress bars.
    pub fn quiet(mut self) -> Self {
        self.progress = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        self
    }
}

fn meta(e: MetaError) -> ExperimentError {
    ExperimentError::Meta(e)
}

/// Where the profile's model comes from.
struct ModelSource {
    /// The directory with the weights (absent for `random-tiny`).
    dir: Option<PathBuf>,
    /// The tokenizer file.
    tokenizer: PathBuf,
    /// The encoder's configuration.
    config: EncoderConfig,
    /// Why the weights cannot be loaded, when they are missing: planning works without them (from the
    /// shipped tokenizer and the built-in configuration), running does not.
    missing: Option<String>,
}

/// The model directory, tokenizer and configuration of the profile's model source.
fn model_source(
    profile: &Convai2Profile,
    workspace: &Path,
) -> Result<ModelSource, ExperimentError> {
    let source = profile.model.source.as_str();
    if source == "random-tiny" {
        return Ok(ModelSource {
            dir: None,
            tokenizer: workspace.join("datasets/roberta-tokenizer/tokenizer.json"),
            config: tiny_config(),
            missing: None,
        });
    }
    let dir = match source {
        "minilm" | "roberta-base" => adaptable_models::default_models_dir().join(source),
        path => PathBuf::from(path),
    };
    let absent = ["config.json", "model.safetensors", "tokenizer.json"]
        .into_iter()
        .find(|file| !dir.join(file).is_file());
    let Some(file) = absent else {
        return Ok(ModelSource {
            config: EncoderConfig::from_hf_file(dir.join("config.json"))?,
            tokenizer: dir.join("tokenizer.json"),
            dir: Some(dir),
            missing: None,
        });
    };
    let missing = |hint: &str| {
        format!(
            "model `{source}`: {} is missing; {hint}",
            dir.join(file).display()
        )
    };
    let (shipped, config) = match source {
        "minilm" => (
            "datasets/minilm-tokenizer/tokenizer.json",
            EncoderConfig::minilm_l6(),
        ),
        "roberta-base" => (
            "datasets/roberta-tokenizer/tokenizer.json",
            EncoderConfig::roberta_base(),
        ),
        _ => {
            return Err(ExperimentError::InvalidOption(missing(
                "point `model.source` at a directory with config.json, model.safetensors and tokenizer.json",
            )));
        }
    };
    Ok(ModelSource {
        tokenizer: workspace.join(shipped),
        config,
        missing: Some(missing(&format!("run `cargo xtask fetch-model {source}`"))),
        dir: Some(dir),
    })
}

/// The small random RoBERTa of the `random-tiny` source.
fn tiny_config() -> EncoderConfig {
    let mut config = EncoderConfig::roberta_base();
    config.hidden_size = 32;
    config.num_hidden_layers = 2;
    config.num_attention_heads = 4;
    config.intermediate_size = 64;
    config.max_position_embeddings = 130;
    config
}

/// A fresh classifier with the foundation model's weights (one shared head, no adapters).
fn foundation(
    dir: Option<&Path>,
    targets: LoraTargets,
    device: &Device,
) -> Result<ConvaiModel, ExperimentError> {
    let classifier = match dir {
        Some(dir) => load_pretrained_classifier(dir, 2, 1, None, device)?.0,
        None => SequenceClassifierConfig::new(tiny_config(), 2, 1).init(device)?,
    };
    Ok(ConvaiModel {
        classifier,
        targets,
    })
}

/// Loads the ConvAI2 data: a directory (validation and optionally train file), a train file (the
/// test personas then come from the shipped validation file, as in the paper's code), or one
/// validation file; absent: the shipped validation file.
pub fn load_data(path: Option<&Path>) -> Result<Convai2Data, ExperimentError> {
    let Some(path) = path else {
        return Ok(Convai2Data::load_default()?);
    };
    let is_train_file = path.is_file()
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("train"));
    Ok(if is_train_file {
        Convai2Data::from_files(&default_valid_path(), Some(path))?
    } else {
        Convai2Data::load(path)?
    })
}

/// Builds the tasks of a persona split (batch order and negatives are seeded per run later).
fn tasks_of(
    personas: &[PersonaTask],
    profile: &Convai2Profile,
    encoder: &PairEncoder<'_>,
    max_len: usize,
    device: &Device,
) -> Result<Vec<ConvaiTask>, ExperimentError> {
    let options = profile.split.example_options();
    personas
        .iter()
        .map(|persona| {
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
            };
            Ok(ConvaiTask::new(
                &train, &heldout, encoder, max_len, batching, 0, device,
            )?)
        })
        .collect()
}

/// Gives every task the batch order and negatives of `seed` (`role`: `retrain` or `test`). Keyed by
/// the seed and the task only, so that every method sees the same batches under one seed.
fn reseed_tasks(tasks: &mut [ConvaiTask], seed: usize, role: &str) {
    for (i, task) in tasks.iter_mut().enumerate() {
        task.reseed(derive_seed(seed as u64, &["data", role, &i.to_string()]));
    }
}

fn bar(progress: &MultiProgress, len: usize, prefix: String) -> ProgressBar {
    let bar = progress.add(ProgressBar::new(len as u64));
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

/// The checkpoints of the retraining run in `dir`; their writes report to the process's write hook.
fn checkpoints_of(dir: &Path) -> CheckpointDir {
    CheckpointDir::new(dir.join("checkpoint")).with_write_hook(write_hook())
}

/// One retraining run and the fine-tunings that start from its best epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrainUnit {
    /// The method.
    pub method: RetrainMethod,
    /// LoRA-ML's task-adapter rank (0 for the methods without adapters).
    pub retrain_rank: usize,
    /// The seed.
    pub seed: usize,
    /// The fine-tunings: kind and adapter rank (0 for the head).
    pub finetunes: Vec<(FinetuneMethod, usize)>,
    /// Directory name under `retrain/` and `finetune/`: the method id, with the rank for LoRA-ML
    /// retrained at each fine-tuning rank (`lora-ml-r4`).
    pub id: String,
}

/// The retraining runs of `profile` for `seeds`, seed by seed, methods in profile order.
pub fn plan_units(profile: &Convai2Profile, seeds: Range<usize>) -> Vec<RetrainUnit> {
    let mut units = Vec::new();
    for seed in seeds {
        for &method in &profile.methods {
            let kinds = profile.finetune.kinds_for(method);
            let all: Vec<(FinetuneMethod, usize)> = kinds
                .iter()
                .flat_map(|&k| {
                    profile
                        .finetune
                        .ranks_of(k)
                        .into_iter()
                        .map(move |r| (k, r))
                })
                .collect();
            match (method, profile.lora_ml_rank) {
                (RetrainMethod::LoraMl, LoraMlRank::Finetune) => {
                    for &rank in &profile.finetune.ranks {
                        units.push(RetrainUnit {
                            method,
                            retrain_rank: rank,
                            seed,
                            finetunes: all.iter().copied().filter(|f| f.1 == rank).collect(),
                            id: format!("{}-r{rank}", method.id()),
                        });
                    }
                }
                (RetrainMethod::LoraMl, LoraMlRank::Retrain) => units.push(RetrainUnit {
                    method,
                    retrain_rank: profile.retrain.lora.rank,
                    seed,
                    finetunes: all,
                    id: method.id().to_string(),
                }),
                _ => units.push(RetrainUnit {
                    method,
                    retrain_rank: 0,
                    seed,
                    finetunes: all,
                    id: method.id().to_string(),
                }),
            }
        }
    }
    units
}

impl RetrainUnit {
    /// `out/retrain/<id>/seed<s>`.
    pub fn retrain_dir(&self, out: &Path) -> PathBuf {
        out.join("retrain")
            .join(&self.id)
            .join(format!("seed{}", self.seed))
    }

    /// `out/finetune/<id>/seed<s>/rank<r>/task<k>.json` (rank 0: head fine-tuning).
    pub fn finetune_file(&self, out: &Path, rank: usize, task: usize) -> PathBuf {
        out.join("finetune")
            .join(&self.id)
            .join(format!("seed{}", self.seed))
            .join(format!("rank{rank}"))
            .join(format!("task{task}.json"))
    }

    /// The profile with this run's retraining settings (LoRA-ML's rank).
    fn profile(&self, profile: &Convai2Profile) -> Convai2Profile {
        let mut profile = profile.clone();
        if self.method == RetrainMethod::LoraMl {
            profile.retrain.lora.rank = self.retrain_rank;
        }
        profile
    }
}

/// What a finished profile run produced.
#[derive(Debug, Clone)]
pub struct Convai2RunSummary {
    /// One record per finished retraining run of every seed found (failed ones included).
    pub retrain: Vec<RetrainRecord>,
    /// One record per finished fine-tuning run.
    pub finetune: Vec<FinetuneRecord>,
    /// Persona ids of the test tasks, in task order.
    pub test_personas: Vec<usize>,
    /// Runs (retrainings and fine-tunings) of the whole profile, and how many of them are done.
    pub runs: (usize, usize),
    /// Notes for the report: pair format, lengths, cut pairs, candidates.
    pub notes: String,
}

/// A profile ready to run: data tokenised, the runs planned.
pub struct Convai2Run {
    profile: Convai2Profile,
    options: Convai2RunOptions,
    model_dir: Option<PathBuf>,
    missing_weights: Option<String>,
    split: PersonaSplit,
    has_train_split: bool,
    retrain_tasks: Vec<ConvaiTask>,
    test_tasks: Vec<ConvaiTask>,
    units: Vec<RetrainUnit>,
    notes: String,
}

impl Convai2Run {
    /// Loads the model's tokenizer and the data, tokenises every task and plans the runs.
    pub fn prepare(
        profile: &Convai2Profile,
        options: &Convai2RunOptions,
    ) -> Result<Self, ExperimentError> {
        let started = Instant::now();
        if let Some(seeds) = &options.seeds
            && (seeds.start >= seeds.end || seeds.end > profile.seeds)
        {
            return Err(ExperimentError::InvalidOption(format!(
                "seed range {}..{} is not a non-empty part of the profile's seeds 0..{}",
                seeds.start, seeds.end, profile.seeds
            )));
        }
        let ModelSource {
            dir: model_dir,
            tokenizer,
            config,
            missing,
        } = model_source(profile, &options.workspace)?;
        let tokenizer = TextTokenizer::from_file(&tokenizer)?;
        let data = load_data(profile.data.path.as_deref())?;
        let split = build_split(&data, &profile.split)?;
        let format = profile
            .data
            .pair_format
            .unwrap_or_else(|| PairFormatSetting::default_for(config.model_type));
        let limit = config.max_sequence_length();
        let max_len = profile.data.max_len.unwrap_or(limit).min(limit);
        let encoder = PairEncoder::new(&tokenizer, format.format(), config.type_vocab_size);
        let device = &options.device;
        let retrain_tasks = tasks_of(&split.retrain, profile, &encoder, max_len, device)?;
        let test_tasks = tasks_of(&split.test, profile, &encoder, max_len, device)?;
        let pairs: usize = retrain_tasks
            .iter()
            .chain(&test_tasks)
            .map(ConvaiTask::pairs)
            .sum();
        let family = match config.model_type {
            ModelType::Roberta => "RoBERTa",
            ModelType::Bert => "BERT",
        };
        let notes = format!(
            "Model `{}` ({family}); pair format `{}`; at most {max_len} tokens per pair ({} of {pairs} pairs cut); \
             K = {} candidates per training example, all 20 at evaluation; retraining personas from the {} split.",
            profile.model.source,
            format.id(),
            encoder.cut_pairs(),
            profile.data.negatives + 1,
            if data.train.is_some() {
                "train"
            } else {
                "validation"
            },
        );
        tracing::info!(
            retrain_tasks = retrain_tasks.len(),
            test_tasks = test_tasks.len(),
            cut_pairs = encoder.cut_pairs(),
            "ConvAI2 tasks tokenised in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(Self {
            units: plan_units(profile, 0..profile.seeds),
            profile: profile.clone(),
            options: options.clone(),
            model_dir,
            missing_weights: missing,
            has_train_split: data.train.is_some(),
            split,
            retrain_tasks,
            test_tasks,
            notes,
        })
    }

    fn in_range(&self, unit: &RetrainUnit) -> bool {
        self.options
            .seeds
            .as_ref()
            .is_none_or(|r| r.contains(&unit.seed))
    }

    /// Forward-token equivalents of a retraining run and of one fine-tuning per test task: the
    /// weights of the progress bar and of the cost estimate. A token through forward and backward
    /// counts as `train_cost`, an evaluated token as 1.
    fn work(&self) -> (f64, Vec<f64>, Vec<f64>) {
        let train_cost = self
            .profile
            .cost
            .as_ref()
            .map_or(4.0, |c| c.eval_tokens_per_s / c.train_tokens_per_s);
        let epochs = self.profile.retrain.optim.epochs as f64;
        let retrain: f64 = self
            .retrain_tasks
            .iter()
            .map(|t| epochs * (train_cost * t.train_tokens() as f64 + t.eval_tokens() as f64))
            .sum();
        let ft_epochs = self.profile.finetune.optim.epochs as f64;
        // LoRA fine-tuning back-propagates through the encoder; head fine-tuning does not.
        let lora: Vec<f64> = self
            .test_tasks
            .iter()
            .map(|t| {
                ft_epochs * train_cost * t.train_tokens() as f64
                    + (ft_epochs + 1.0) * t.eval_tokens() as f64
            })
            .collect();
        let head: Vec<f64> = self
            .test_tasks
            .iter()
            .map(|t| {
                ft_epochs * t.train_tokens() as f64 + (ft_epochs + 1.0) * t.eval_tokens() as f64
            })
            .collect();
        (retrain, lora, head)
    }

    /// Runs (total, done) and work (total, done) of this invocation's seeds, from the files in the
    /// output directory.
    pub fn progress_counts(&self) -> ((usize, usize), (f64, f64)) {
        let (retrain_work, lora, head) = self.work();
        let out = &self.options.out;
        let (mut runs, mut done, mut work, mut work_done) = (0, 0, 0.0, 0.0);
        for unit in self.units.iter().filter(|u| self.in_range(u)) {
            runs += 1;
            work += retrain_work;
            if unit.retrain_dir(out).join("result.json").is_file() {
                done += 1;
                work_done += retrain_work;
            }
            for &(kind, rank) in &unit.finetunes {
                let costs = if kind == FinetuneMethod::Lora {
                    &lora
                } else {
                    &head
                };
                for (k, cost) in costs.iter().enumerate() {
                    runs += 1;
                    work += cost;
                    if unit.finetune_file(out, rank, k).is_file() {
                        done += 1;
                        work_done += cost;
                    }
                }
            }
        }
        ((runs, done), (work, work_done))
    }

    /// The whole-run progress bar: runs done / total, elapsed time and an estimate of the rest
    /// (weighted by each run's tokens, so that long retrainings count for what they cost).
    pub fn progress_bar(&self) -> ProgressBar {
        let ((runs, done), (work, work_done)) = self.progress_counts();
        let bar = self
            .options
            .progress
            .add(ProgressBar::new(work.round() as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>28} [{bar:30}] {msg} {elapsed} (ETA {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("#>-"),
        );
        bar.set_prefix("ConvAI2 runs");
        bar.set_position(work_done.round() as u64);
        bar.reset_eta();
        bar.set_message(format!("{done}/{runs} runs"));
        bar
    }

    /// Updates `bar` from the files in the output directory.
    pub fn update_progress(&self, bar: &ProgressBar) {
        let ((runs, done), (_, work_done)) = self.progress_counts();
        bar.set_position(work_done.round() as u64);
        bar.set_message(format!("{done}/{runs} runs"));
    }

    /// The work of this invocation and, with the profile's measured rates, an estimate of its time.
    pub fn plan_text(&self) -> String {
        let mut text = String::new();
        let units: Vec<&RetrainUnit> = self.units.iter().filter(|u| self.in_range(u)).collect();
        let tasks = self.test_tasks.len();
        let finetunes: usize = units.iter().map(|u| u.finetunes.len() * tasks).sum();
        let _ = writeln!(text, "{}", self.notes);
        if let Some(missing) = &self.missing_weights {
            let _ = writeln!(text, "note: {missing} (needed to run, not to plan)");
        }
        if self.profile.data.require_train && !self.has_train_split {
            let _ = writeln!(
                text,
                "warning: this profile retrains on the train split, which is missing: pass --data (the estimate below uses the validation personas)"
            );
        }
        let _ = writeln!(
            text,
            "{} retraining run(s) on {} personas ({} epochs each) and {finetunes} fine-tuning run(s) on {tasks} unseen personas ({} epochs each):",
            units.len(),
            self.retrain_tasks.len(),
            self.profile.retrain.optim.epochs,
            self.profile.finetune.optim.epochs
        );
        for unit in &units {
            let fts: Vec<String> = unit
                .finetunes
                .iter()
                .map(|&(k, r)| match k {
                    FinetuneMethod::Lora => format!("lora r={r}"),
                    FinetuneMethod::LastLayer => finetune_id(k).to_string(),
                })
                .collect();
            let _ = writeln!(
                text,
                "  seed {} {}: then {} × {tasks} personas",
                unit.seed,
                unit.id,
                fts.join(", ")
            );
        }
        let train: usize = self
            .retrain_tasks
            .iter()
            .map(ConvaiTask::train_tokens)
            .sum();
        let eval: usize = self.retrain_tasks.iter().map(ConvaiTask::eval_tokens).sum();
        let ft_train: usize = self.test_tasks.iter().map(ConvaiTask::train_tokens).sum();
        let ft_eval: usize = self.test_tasks.iter().map(ConvaiTask::eval_tokens).sum();
        let _ = writeln!(
            text,
            "tokens per epoch (padded): retraining {train} trained + {eval} evaluated; fine-tuning, all unseen personas, {ft_train} trained + {ft_eval} evaluated"
        );
        let ((runs, done), (work, work_done)) = self.progress_counts();
        match &self.profile.cost {
            Some(cost) => {
                let seconds = (work - work_done) / cost.eval_tokens_per_s;
                let _ = writeln!(
                    text,
                    "estimated time: {:.1} h for the {} run(s) not done yet of {runs} (at {:.0} tokens/s trained, {:.0} evaluated; {})",
                    seconds / 3600.0,
                    runs - done,
                    cost.train_tokens_per_s,
                    cost.eval_tokens_per_s,
                    cost.measured_on
                );
            }
            None => {
                let _ = writeln!(
                    text,
                    "no time estimate: the profile has no [cost] section ({:.3e} forward-token equivalents left)",
                    work - work_done
                );
            }
        }
        text
    }

    /// Runs (or resumes) this invocation's seeds, then collects every finished run in the output
    /// directory.
    pub fn run(&mut self) -> Result<Convai2RunSummary, ExperimentError> {
        if let Some(missing) = &self.missing_weights {
            return Err(ExperimentError::InvalidOption(missing.clone()));
        }
        if self.profile.data.require_train && !self.has_train_split {
            return Err(ExperimentError::InvalidOption(
                "this profile retrains on the ConvAI2 train split: pass --data with \
                 train_self_original.txt (or a directory holding it and valid_self_original.txt)"
                    .into(),
            ));
        }
        let overall = self.progress_bar();
        let units: Vec<RetrainUnit> = self
            .units
            .iter()
            .filter(|u| self.in_range(u))
            .cloned()
            .collect();
        for unit in &units {
            self.run_unit(unit, &overall)?;
            self.update_progress(&overall);
        }
        overall.finish_and_clear();
        self.collect()
    }

    fn run_unit(
        &mut self,
        unit: &RetrainUnit,
        overall: &ProgressBar,
    ) -> Result<(), ExperimentError> {
        let options = &self.options;
        let device = options.device.clone();
        let profile = unit.profile(&self.profile);
        let seed = unit.seed;
        let method = unit.method;
        let dir = unit.retrain_dir(&options.out);
        reseed_tasks(&mut self.retrain_tasks, seed, "retrain");
        let key = RetrainKey {
            method,
            retrain_rank: unit.retrain_rank,
            seed,
            candidates: profile.data.negatives + 1,
        };
        let record = retrain_one(
            &profile,
            options,
            self.model_dir.as_deref(),
            &self.retrain_tasks,
            key,
            &dir,
        )?;
        self.update_progress(overall);
        if record.failure.is_some() {
            return Ok(());
        }
        let prepared = seeded_prepared(
            &profile,
            self.model_dir.as_deref(),
            method,
            self.retrain_tasks.len(),
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
        reseed_tasks(&mut self.test_tasks, seed, "test");
        for &(kind, rank) in &unit.finetunes {
            for (k, task) in self.test_tasks.iter().enumerate() {
                let file = unit.finetune_file(&options.out, rank, k);
                if file.is_file() {
                    continue;
                }
                // Keyed by the seed, the fine-tuning and the task, not the retraining method: both
                // bases of a paired cell start from the same adapter and head initialisation.
                device.seed(derive_seed(
                    seed as u64,
                    &[
                        "finetune",
                        finetune_id(kind),
                        &rank.to_string(),
                        &k.to_string(),
                    ],
                ));
                let config = profile.finetune.config(rank);
                let steps = config.optim.epochs * task.train_len();
                let bar = bar(
                    &options.progress,
                    steps,
                    format!(
                        "{} seed {seed} {} r={rank} task {k}",
                        unit.id,
                        finetune_id(kind)
                    ),
                );
                let t0 = Instant::now();
                let outcome = finetune(&base, task, kind, &config, &device, || bar.inc(1));
                bar.finish_and_clear();
                let key = FinetuneKey {
                    method,
                    retrain_rank: unit.retrain_rank,
                    finetune: kind,
                    seed,
                    rank,
                    task: k,
                    persona: self.split.test[k].id,
                };
                let record = match outcome {
                    Ok(outcome) => {
                        FinetuneRecord::finished(key, outcome, t0.elapsed().as_secs_f64())
                    }
                    Err(e @ MetaError::NonFiniteLoss { .. }) => {
                        FinetuneRecord::failed(key, e.to_string())
                    }
                    Err(e) => return Err(meta(e)),
                };
                tracing::info!(
                    method = unit.id.as_str(),
                    seed,
                    finetune = finetune_id(kind),
                    rank,
                    task = k,
                    best = record.best,
                    "fine-tuned"
                );
                write_json(&file, &record)?;
                self.update_progress(overall);
            }
        }
        Ok(())
    }

    /// Every finished run of every seed in the output directory, in plan order (so that parts
    /// run separately report exactly what one whole run does).
    pub fn collect(&self) -> Result<Convai2RunSummary, ExperimentError> {
        let out = &self.options.out;
        let mut retrain = Vec::new();
        let mut finetune = Vec::new();
        let mut runs = (0, 0);
        for unit in &self.units {
            runs.0 += 1 + unit.finetunes.len() * self.test_tasks.len();
            let result = unit.retrain_dir(out).join("result.json");
            if !result.is_file() {
                continue;
            }
            retrain.push(read_json::<RetrainRecord>(&result)?);
            runs.1 += 1;
            for &(_, rank) in &unit.finetunes {
                for k in 0..self.test_tasks.len() {
                    let file = unit.finetune_file(out, rank, k);
                    if file.is_file() {
                        finetune.push(read_json::<FinetuneRecord>(&file)?);
                        runs.1 += 1;
                    }
                }
            }
        }
        Ok(Convai2RunSummary {
            retrain,
            finetune,
            test_personas: self.split.test.iter().map(|t| t.id).collect(),
            runs,
            notes: self.notes.clone(),
        })
    }
}

/// Runs (or resumes) a profile: [`Convai2Run::prepare`], then [`Convai2Run::run`].
pub fn run_profile(
    profile: &Convai2Profile,
    options: &Convai2RunOptions,
) -> Result<Convai2RunSummary, ExperimentError> {
    Convai2Run::prepare(profile, options)?.run()
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
    key: RetrainKey,
    dir: &Path,
) -> Result<RetrainRecord, ExperimentError> {
    let (method, seed) = (key.method, key.seed);
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
    let mut checkpointer = CheckpointedRun::new(
        checkpoints,
        bar(
            &options.progress,
            remaining,
            format!("retrain {} seed {seed}", method.id()),
        ),
        device,
        seed as u64,
        method.id(),
    );
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
    checkpointer.bar().finish_and_clear();
    let record = match outcome {
        Ok(outcome) => {
            RetrainRecord::finished(key, &outcome, trainable, t0.elapsed().as_secs_f64())
        }
        Err(e @ MetaError::NonFiniteLoss { .. }) => {
            tracing::error!(method = method.id(), seed, "retraining failed: {e}");
            RetrainRecord::failed(key, trainable, e.to_string())
        }
        Err(e) => return Err(meta(e)),
    };
    write_json(&result_file, &record)?;
    Ok(record)
}
