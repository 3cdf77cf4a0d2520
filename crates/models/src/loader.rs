//! Loading Hugging Face `model.safetensors` checkpoints, strictly.
//!
//! Tensors are read with burn-store's [`SafetensorsStore`], converted with [`PyTorchToBurnAdapter`]
//! (which transposes `Linear` weights from PyTorch's `[out, in]` to Burn's `[in, out]` and renames
//! LayerNorm `weight`/`bias` to `gamma`/`beta`) and renamed with the [`KeyRemapper`] table below.
//!
//! # Key map
//!
//! The optional `roberta.` / `bert.` prefix is removed first. `P` is the path of the encoder inside
//! the module being loaded: empty for [`Encoder`], `encoder.` for [`SequenceClassifier`] and
//! [`MultipleChoiceModel`].
//!
//! | Hugging Face key | Burn path |
//! |---|---|
//! | `embeddings.word_embeddings.weight` | `P embeddings.word_embeddings.weight` |
//! | `embeddings.position_embeddings.weight` | `P embeddings.position_embeddings.weight` |
//! | `embeddings.token_type_embeddings.weight` | `P embeddings.token_type_embeddings.weight` |
//! | `embeddings.LayerNorm.{weight,bias}` | `P embeddings.layer_norm.{gamma,beta}` |
//! | `encoder.layer.N.attention.self.{query,key,value}.{weight,bias}` | `P layers.N.attention.{query,key,value}.base.{weight,bias}` |
//! | `encoder.layer.N.attention.output.dense.*` | `P layers.N.attention.output.base.*` |
//! | `encoder.layer.N.attention.output.LayerNorm.*` | `P layers.N.attention.norm.{gamma,beta}` |
//! | `encoder.layer.N.intermediate.dense.*` | `P layers.N.intermediate.base.*` |
//! | `encoder.layer.N.output.dense.*` | `P layers.N.output.base.*` |
//! | `encoder.layer.N.output.LayerNorm.*` | `P layers.N.output_norm.{gamma,beta}` |
//! | `pooler.dense.*` | `P pooler.dense.*` |
//! | `classifier.{dense,out_proj}.*` (sequence classification) | `heads.0.{dense,out_proj}.*` |
//! | `classifier.{weight,bias}` (multiple choice) | `classifier.{weight,bias}` |
//!
//! # Strictness
//!
//! Every module tensor must be found with the right shape and every file tensor must be used, and all
//! violations are reported together in one [`ModelsError::WeightMismatch`]. Two absences are
//! allowed and reported in the [`LoadReport`]: LoRA factors (`lora_a`, `lora_b`, never part of an
//! HF checkpoint) and task heads missing from the file (a head that is intentionally new).
//! File tensors that are not part of the encoder by design are ignored and listed in
//! [`LoadReport::ignored`]: pretraining heads (`lm_head.*`, `cls.*`), the `position_ids` /
//! `token_type_ids` buffers older checkpoints store, the pooler when the model has none, and a
//! `classifier.*` head when only the encoder is loaded.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    ApplyError, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::Device;

use crate::ModelsError;
use crate::config::{AdapterConfig, EncoderConfig};
use crate::encoder::Encoder;
use crate::heads::{MultipleChoiceModel, SequenceClassifier, SequenceClassifierConfig};
use crate::targets::EncoderLinear;

/// What a successful load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Module paths that received a tensor from the file.
    pub applied: Vec<String>,
    /// Head parameters absent from the file and left freshly initialised.
    pub new_head: Vec<String>,
    /// Number of LoRA factor tensors left at their initial values (HF files never contain them).
    pub fresh_adapter_tensors: usize,
    /// File tensors deliberately not used (see the module documentation).
    pub ignored: Vec<String>,
}

/// Where the encoder and the heads sit inside the module being loaded.
struct Layout {
    encoder_prefix: &'static str,
    head_patterns: &'static [(&'static str, &'static str)],
    has_pooler: bool,
    has_head: bool,
}

fn remapper(layout: &Layout) -> Result<KeyRemapper, ModelsError> {
    let p = layout.encoder_prefix;
    let mut patterns: Vec<(String, String)> = vec![
        (r"^(?:roberta|bert)\.".into(), String::new()),
        (
            r"^encoder\.layer\.([0-9]+)\.".into(),
            format!("{p}layers.${{1}}."),
        ),
        (r"^embeddings\.".into(), format!("{p}embeddings.")),
        (r"^pooler\.".into(), format!("{p}pooler.")),
    ];
    // The encoder's linear layers, from the one typed table. `ALL` lists the attention output
    // before the feed-forward output, so `attention.output.dense` is renamed before the generic
    // `output.dense` rule could see it.
    patterns.extend(EncoderLinear::ALL.into_iter().map(|which| {
        (
            format!(r"\.{}\.", which.hf_path().replace('.', r"\.")),
            format!(".{}.base.", which.burn_path()),
        )
    }));
    // Likewise the attention LayerNorm before the feed-forward one.
    patterns.extend([
        (
            r"\.attention\.output\.LayerNorm\.".into(),
            ".attention.norm.".into(),
        ),
        (r"\.output\.LayerNorm\.".into(), ".output_norm.".into()),
        (
            r"embeddings\.LayerNorm\.".into(),
            "embeddings.layer_norm.".into(),
        ),
    ]);
    patterns.extend(
        layout
            .head_patterns
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string())),
    );
    KeyRemapper::from_patterns(patterns)
        .map_err(|e| ModelsError::InvalidArgument(format!("bad key map: {e}")))
}

fn is_ignorable(path: &str, layout: &Layout) -> bool {
    let p = layout.encoder_prefix;
    path.ends_with("position_ids")
        || path.ends_with("token_type_ids")
        || path.starts_with("lm_head.")
        || path.starts_with("cls.")
        || (!layout.has_pooler && path.starts_with(&format!("{p}pooler.")))
        || (!layout.has_head && path.starts_with("classifier."))
}

fn load<M: Module>(
    module: &mut M,
    path: &Path,
    layout: &Layout,
) -> Result<LoadReport, ModelsError> {
    let weights_error = |message: String| ModelsError::Weights {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(ModelsError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .remap(remapper(layout)?)
        .allow_partial(true)
        // Mismatches are collected from the ApplyResult below so that all of them are reported.
        .validate(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| weights_error(e.to_string()))?;

    let mut report = LoadReport {
        applied: result.applied.clone(),
        ..LoadReport::default()
    };
    let mut problems = Vec::new();
    for (missing, _) in &result.missing {
        if missing.contains(".lora_a.") || missing.contains(".lora_b.") {
            report.fresh_adapter_tensors += 1;
        } else if missing.starts_with("heads.") || missing.starts_with("classifier.") {
            report.new_head.push(missing.clone());
        } else {
            problems.push(format!("missing: {missing}"));
        }
    }
    for unused in &result.unused {
        if is_ignorable(unused, layout) {
            report.ignored.push(unused.clone());
        } else {
            problems.push(format!("unexpected: {unused}"));
        }
    }
    for error in &result.errors {
        problems.push(match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => format!(
                "wrong shape: {path}: model expects {:?}, file has {:?} (after transposing Linear weights)",
                expected.as_slice(),
                found.as_slice()
            ),
            other => format!("error: {other}"),
        });
    }
    if !problems.is_empty() {
        return Err(ModelsError::WeightMismatch {
            path: path.to_path_buf(),
            problems,
        });
    }
    if !report.new_head.is_empty() {
        tracing::info!(
            "{}: {} head tensors are new (not in the checkpoint)",
            path.display(),
            report.new_head.len()
        );
    }
    Ok(report)
}

impl Encoder {
    /// Loads an HF `model.safetensors` (`RobertaModel`, `BertModel`, or any model whose encoder is
    /// under `roberta.` / `bert.`) into this encoder, strictly (see the module documentation).
    pub fn load_hf_weights(&mut self, path: impl AsRef<Path>) -> Result<LoadReport, ModelsError> {
        let layout = Layout {
            encoder_prefix: "",
            head_patterns: &[],
            has_pooler: self.pooler.is_some(),
            has_head: false,
        };
        load(self, path.as_ref(), &layout)
    }
}

impl SequenceClassifier {
    /// Loads an HF checkpoint; a `RobertaForSequenceClassification` head goes to head 0, and heads
    /// absent from the file stay new (reported in [`LoadReport::new_head`]).
    pub fn load_hf_weights(&mut self, path: impl AsRef<Path>) -> Result<LoadReport, ModelsError> {
        let layout = Layout {
            encoder_prefix: "encoder.",
            head_patterns: &[(r"^classifier\.(dense|out_proj)\.", "heads.0.${1}.")],
            has_pooler: self.encoder.pooler.is_some(),
            has_head: true,
        };
        load(self, path.as_ref(), &layout)
    }
}

impl MultipleChoiceModel {
    /// Loads an HF `RobertaForMultipleChoice` / `BertForMultipleChoice` checkpoint.
    pub fn load_hf_weights(&mut self, path: impl AsRef<Path>) -> Result<LoadReport, ModelsError> {
        let layout = Layout {
            encoder_prefix: "encoder.",
            head_patterns: &[],
            has_pooler: self.encoder.pooler.is_some(),
            has_head: true,
        };
        load(self, path.as_ref(), &layout)
    }
}

/// The files of a model directory: `config.json`, `model.safetensors`, `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// The standard file names inside `dir`.
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self {
            config: dir.join("config.json"),
            weights: dir.join("model.safetensors"),
            tokenizer: dir.join("tokenizer.json"),
        }
    }
}

/// Builds the encoder described by `dir/config.json` and loads `dir/model.safetensors` into it.
pub fn load_pretrained_encoder(
    dir: impl AsRef<Path>,
    adapters: Option<AdapterConfig>,
    device: &Device,
) -> Result<(Encoder, LoadReport), ModelsError> {
    let files = ModelFiles::in_dir(dir);
    let config = EncoderConfig::from_hf_file(&files.config)?.with_adapters(adapters);
    let mut encoder = config.init(device)?;
    let report = encoder.load_hf_weights(&files.weights)?;
    Ok((encoder, report))
}

/// Builds a [`SequenceClassifier`] from `dir` (config + weights) with `heads` heads of
/// `num_labels` classes; heads not in the checkpoint are new.
pub fn load_pretrained_classifier(
    dir: impl AsRef<Path>,
    num_labels: usize,
    heads: usize,
    adapters: Option<AdapterConfig>,
    device: &Device,
) -> Result<(SequenceClassifier, LoadReport), ModelsError> {
    let files = ModelFiles::in_dir(dir);
    let config = EncoderConfig::from_hf_file(&files.config)?.with_adapters(adapters);
    let mut model = SequenceClassifierConfig::new(config, num_labels, heads).init(device)?;
    let report = model.load_hf_weights(&files.weights)?;
    Ok((model, report))
}
