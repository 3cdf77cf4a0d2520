//! What `adaptable retrain`, `finetune` and `evaluate` share: checking the model directory and the
//! output directory, reading task files, tokenising, finishing an output directory atomically.

use std::path::{Path, PathBuf};

use adaptable_models::{ModelFiles, ModelsError, TextTokenizer};
use adaptable_tasks::text::{LoadOptions, TextTask, load_text_task_files};
use adaptable_text::{TextBatching, TextTaskData};
use burn::tensor::Device;
use clap::Args;

use adaptable_experiments::ExperimentError;

/// Task-file and batching options shared by the text-task commands.
#[derive(Debug, Clone, Args)]
pub struct TextDataArgs {
    /// Fraction of each task held out when its lines have no `split` field.
    #[arg(long, default_value_t = 0.2)]
    pub heldout_fraction: f64,
    /// Tokens per sequence (specials included).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Examples per training batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Root seed (held-out draw, example order, initialisation, dropout).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute backend: flex, ndarray or wgpu (must be compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
}

impl TextDataArgs {
    /// Reads the task files.
    pub fn load(&self, files: &[PathBuf]) -> Result<Vec<TextTask>, ExperimentError> {
        let options = LoadOptions {
            heldout_fraction: self.heldout_fraction,
            seed: self.seed,
        };
        Ok(load_text_task_files(files, &options)?)
    }

    /// Tokenises `tasks` for `device`.
    pub fn data(
        &self,
        tasks: &[TextTask],
        tokenizer: &TextTokenizer,
        device: &Device,
    ) -> Result<Vec<TextTaskData>, ExperimentError> {
        let batching = TextBatching {
            max_len: self.max_len,
            batch_size: self.batch_size,
            eval_batch_size: 32,
            seed: self.seed,
        };
        tasks
            .iter()
            .map(|t| TextTaskData::new(t, tokenizer, batching, device).map_err(text_error))
            .collect()
    }
}

/// The library's errors as the tool's.
pub fn text_error(e: adaptable_text::TextError) -> ExperimentError {
    match e {
        adaptable_text::TextError::Tasks(e) => e.into(),
        adaptable_text::TextError::Models(e) => e.into(),
        adaptable_text::TextError::Meta(e) => e.into(),
        other => ExperimentError::InvalidOption(other.to_string()),
    }
}

/// Checks that `dir` is a model directory with weights and a tokenizer; returns its tokenizer.
pub fn model_dir(dir: &Path) -> Result<TextTokenizer, ExperimentError> {
    let files = ModelFiles::in_dir(dir);
    for file in [&files.config, &files.weights, &files.tokenizer] {
        if !file.is_file() {
            return Err(ModelsError::InvalidArgument(format!(
                "{} is missing; --model needs a directory with config.json, model.safetensors \
                 and tokenizer.json",
                file.display()
            ))
            .into());
        }
    }
    Ok(TextTokenizer::from_file(&files.tokenizer)?)
}

/// What an existing `--out` directory is.
pub enum OutState {
    /// It does not exist: write it.
    Fresh,
    /// It holds a finished run of this command (its `marker` file).
    Finished,
}

/// Refuses an output directory that exists and is not a finished run of this command (its
/// `marker` file present).
pub fn check_out(out: &Path, marker: &str, command: &str) -> Result<OutState, ExperimentError> {
    if !out.exists() {
        return Ok(OutState::Fresh);
    }
    if out.join(marker).is_file() {
        return Ok(OutState::Finished);
    }
    Err(ExperimentError::InvalidOption(format!(
        "{} exists and is not the output of a finished `adaptable {command}` (no {marker}); \
         choose a new --out directory",
        out.display()
    )))
}

/// A temporary sibling of `out` to assemble the output in, removed first if a crashed run left it.
pub fn partial_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let partial = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    partial
}

/// Runs `write` into a temporary sibling directory and renames it to `out` when it succeeds; on
/// failure nothing is left behind.
pub fn write_dir_atomically(
    out: &Path,
    write: impl FnOnce(&Path) -> Result<(), ExperimentError>,
) -> Result<(), ExperimentError> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ExperimentError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let partial = partial_dir(out);
    let result = write(&partial).and_then(|()| {
        std::fs::rename(&partial, out).map_err(|source| ExperimentError::Io {
            path: out.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}
