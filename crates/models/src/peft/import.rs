//! Reading a PEFT LoRA directory: strict validation, then appending to the adapter and head banks.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::config::PeftAdapterConfig;
use super::export::same_scale;
use super::tensors::{FileTensor, read_safetensors, replace, transpose};
use super::{
    ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, PEFT_PREFIX, linear_module_name, named_linears,
};
use crate::ModelsError;
use crate::config::EncoderConfig;
use crate::heads::SequenceClassifier;
use crate::targets::{EncoderLinear, LoraTargets};

/// What [`import_adapter`] added to the model.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// Index of the new adapter in every adapted layer's bank.
    pub adapter: usize,
    /// Index of the new head, when the directory saves the classifier.
    pub head: Option<usize>,
    /// Tensors read from the file.
    pub tensors: usize,
    /// The adapter's configuration.
    pub config: PeftAdapterConfig,
}

/// One tensor of an adapter file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeftTensorInfo {
    /// PEFT key.
    pub name: String,
    /// safetensors dtype (`F32`, `F16`, ...).
    pub dtype: String,
    /// Shape as stored (PyTorch layout).
    pub shape: Vec<usize>,
}

/// The contents of a PEFT adapter directory, from [`inspect`].
#[derive(Debug, Clone)]
pub struct PeftSummary {
    /// The directory.
    pub dir: PathBuf,
    /// `adapter_config.json`.
    pub config: PeftAdapterConfig,
    /// Every tensor, sorted by name.
    pub tensors: Vec<PeftTensorInfo>,
}

impl PeftSummary {
    /// Total number of stored values.
    pub fn parameters(&self) -> usize {
        self.tensors
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}

impl fmt::Display for PeftSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "{}", self.dir.display())?;
        writeln!(
            f,
            "  {} r={} lora_alpha={} (scale {}) use_rslora={} dropout={} task_type={}",
            c.peft_type,
            c.r,
            c.lora_alpha,
            c.scale(),
            c.use_rslora,
            c.lora_dropout,
            c.task_type.as_deref().unwrap_or("-")
        )?;
        writeln!(
            f,
            "  base model: {}",
            c.base_model_name_or_path.as_deref().unwrap_or("-")
        )?;
        writeln!(f, "  modules_to_save: {:?}", c.modules_to_save)?;
        writeln!(
            f,
            "  {} tensors, {} values",
            self.tensors.len(),
            self.parameters()
        )?;
        for t in &self.tensors {
            writeln!(f, "    {} {} {:?}", t.name, t.dtype, t.shape)?;
        }
        Ok(())
    }
}

/// Reads an adapter directory without a model.
pub fn inspect(dir: &Path) -> Result<PeftSummary, ModelsError> {
    let config = PeftAdapterConfig::from_file(&dir.join(ADAPTER_CONFIG_FILE))?;
    let mut tensors: Vec<PeftTensorInfo> = read_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE))?
        .into_iter()
        .map(|(name, t)| PeftTensorInfo {
            name,
            dtype: t.dtype,
            shape: t.shape,
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(PeftSummary {
        dir: dir.to_path_buf(),
        config,
        tensors,
    })
}

/// The [`LoraTargets`] that select exactly the modules `config` targets in an encoder built from
/// `encoder`, so that a model built for the adapter can be made before importing it.
///
/// Any subset of [`EncoderLinear`] is accepted, as long as it is the same in every layer (per-layer
/// selections have no [`LoraTargets`] counterpart) and not empty.
pub fn infer_targets(
    config: &PeftAdapterConfig,
    encoder: &EncoderConfig,
) -> Result<LoraTargets, ModelsError> {
    let mut per_layer = Vec::with_capacity(encoder.num_hidden_layers);
    for layer in 0..encoder.num_hidden_layers {
        let mut targeted = Vec::new();
        for which in EncoderLinear::ALL {
            let name = linear_module_name(encoder.model_type, layer, which);
            let hit = config.target_modules.matches(&name).ok_or_else(|| {
                ModelsError::PeftConfig(format!(
                    "target_modules {:?}: regular expressions are not supported, list the modules",
                    config.target_modules
                ))
            })?;
            if hit {
                targeted.push(which);
            }
        }
        per_layer.push(LoraTargets::of(targeted));
    }
    let first = per_layer.first().copied().unwrap_or(LoraTargets::NONE);
    if let Some(layer) = per_layer.iter().position(|&t| t != first) {
        return Err(ModelsError::PeftConfig(format!(
            "target_modules {:?} select {} in layer 0 but {} in layer {layer}; \
             only the same layers in every encoder layer are supported",
            config.target_modules, first, per_layer[layer]
        )));
    }
    if first.is_empty() {
        return Err(ModelsError::PeftConfig(format!(
            "target_modules {:?} select none of the encoder's linear layers",
            config.target_modules
        )));
    }
    Ok(first)
}

/// What a key of the file must look like, and where its values go.
struct Expected {
    /// PyTorch-layout shape.
    shape: Vec<usize>,
    /// Where the values go.
    target: Target,
}

#[derive(Clone, Copy)]
enum Target {
    /// `lora_A` (`true`) or `lora_B` of linear `index` in [`named_linears`] order.
    Lora { index: usize, a: bool },
    /// Head tensor: `dense` (`true`) or `out_proj`, weight (`true`) or bias.
    Head { dense: bool, weight: bool },
}

/// Imports the PEFT LoRA directory `dir` into `model`: appends one adapter to every adapted layer
/// (and one head, when `modules_to_save` contains `"classifier"`) and fills them from the file.
///
/// Everything is checked before the model is changed: `peft_type`, unsupported options (DoRA,
/// `fan_in_fan_out`, trained biases, per-module ranks), rank and scale against the model's
/// adapter banks, `target_modules` against the adapted layers, and every key, shape and dtype of
/// `adapter_model.safetensors`. All problems found are returned together in one
/// [`ModelsError::PeftMismatch`]; the model is then left untouched.
pub fn import_adapter(
    model: &mut SequenceClassifier,
    dir: &Path,
    device: &Device,
) -> Result<ImportReport, ModelsError> {
    let config = PeftAdapterConfig::from_file(&dir.join(ADAPTER_CONFIG_FILE))?;
    let file = read_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE))?;
    let (expected, problems) = check(model, &config, &file);
    if !problems.is_empty() {
        return Err(ModelsError::PeftMismatch {
            dir: dir.to_path_buf(),
            problems,
        });
    }

    let adapter = model.encoder.add_adapter(device)?;
    let head = config.saves_head().then(|| model.add_head(device));
    let mut linears: Vec<_> = model
        .encoder
        .layers
        .iter_mut()
        .flat_map(|l| l.linears_mut())
        .collect();
    for (key, exp) in &expected {
        // `check` guarantees presence, dtype F32 and shape.
        let values = file[key].values.clone().unwrap_or_default();
        let (rows, cols) = (exp.shape[0], exp.shape.get(1).copied().unwrap_or(1));
        match exp.target {
            Target::Lora { index, a } => {
                let linear = &mut linears[index];
                let burn = transpose(&values, rows, cols);
                if a {
                    let p = linear.lora_a[adapter].clone();
                    linear.lora_a[adapter] = replace(p, burn, [cols, rows], device);
                } else {
                    let p = linear.lora_b[adapter].clone();
                    linear.lora_b[adapter] = replace(p, burn, [cols, rows], device);
                }
            }
            Target::Head { dense, weight } => {
                let Some(h) = head else { continue };
                let classifier = &mut model.heads[h];
                let linear = if dense {
                    &mut classifier.dense
                } else {
                    &mut classifier.out_proj
                };
                if weight {
                    let w = transpose(&values, rows, cols);
                    linear.weight = replace(linear.weight.clone(), w, [cols, rows], device);
                } else if let Some(b) = linear.bias.take() {
                    linear.bias = Some(replace(b, values, [rows], device));
                }
            }
        }
    }
    Ok(ImportReport {
        adapter,
        head,
        tensors: file.len(),
        config,
    })
}

/// Every expected key (with its destination) and every problem of the directory.
fn check(
    model: &SequenceClassifier,
    config: &PeftAdapterConfig,
    file: &HashMap<String, FileTensor>,
) -> (BTreeMap<String, Expected>, Vec<String>) {
    let mut problems = Vec::new();
    check_options(config, &mut problems);

    let linears = named_linears(&model.encoder);
    let Some((_, first)) = linears.iter().find(|(_, l)| l.rank() > 0) else {
        problems.push("the model has no adapter banks: build it with adapters of rank r".into());
        return (BTreeMap::new(), problems);
    };
    let (rank, scale) = (first.rank(), first.scale());
    if config.r != rank {
        problems.push(format!(
            "rank: the file has r = {}, the model's adapters have rank {rank}",
            config.r
        ));
    }
    if !same_scale(config.scale(), scale) {
        problems.push(format!(
            "alpha: lora_alpha = {} (use_rslora = {}) gives scale {}, the model's adapters use \
             scale {scale}",
            config.lora_alpha,
            config.use_rslora,
            config.scale()
        ));
    }
    check_targets(config, &linears, &mut problems);

    let mut expected = BTreeMap::new();
    for (index, (name, linear)) in linears.iter().enumerate() {
        if linear.rank() == 0 {
            continue;
        }
        for (a, suffix, shape) in [
            (true, "lora_A", vec![rank, linear.d_input()]),
            (false, "lora_B", vec![linear.d_output(), rank]),
        ] {
            let target = Target::Lora { index, a };
            expected.insert(
                format!("{PEFT_PREFIX}{name}.{suffix}.weight"),
                Expected { shape, target },
            );
        }
    }
    if config.saves_head() {
        let h = model.encoder.config().hidden_size;
        let labels = model.num_labels();
        for (dense, module, out) in [(true, "dense", h), (false, "out_proj", labels)] {
            let key = format!("{PEFT_PREFIX}classifier.{module}");
            for (suffix, weight, shape) in
                [("weight", true, vec![out, h]), ("bias", false, vec![out])]
            {
                expected.insert(
                    format!("{key}.{suffix}"),
                    Expected {
                        shape,
                        target: Target::Head { dense, weight },
                    },
                );
            }
        }
    }

    let mut names: Vec<&String> = file.keys().collect();
    names.sort();
    for name in names {
        let tensor = &file[name];
        let Some(exp) = expected.get(name) else {
            problems.push(format!("unexpected: {name} {:?}", tensor.shape));
            continue;
        };
        if tensor.shape != exp.shape {
            problems.push(format!(
                "wrong shape: {name}: the model expects {:?}, the file has {:?}",
                exp.shape, tensor.shape
            ));
        }
        if tensor.values.is_none() {
            problems.push(format!(
                "wrong dtype: {name} is {}, only F32 is supported",
                tensor.dtype
            ));
        }
    }
    for (name, exp) in &expected {
        if !file.contains_key(name) {
            problems.push(format!("missing: {name} {:?}", exp.shape));
        }
    }
    (expected, problems)
}

/// Options this crate cannot represent.
fn check_options(config: &PeftAdapterConfig, problems: &mut Vec<String>) {
    if config.peft_type != "LORA" {
        problems.push(format!("peft_type is {:?}, not \"LORA\"", config.peft_type));
    }
    if config.use_dora {
        problems.push("use_dora: DoRA adapters are not supported".into());
    }
    if config.fan_in_fan_out {
        problems.push("fan_in_fan_out: only nn.Linear layouts are supported".into());
    }
    if config.bias != "none" {
        problems.push(format!(
            "bias is {:?}: trained biases are not supported, only \"none\"",
            config.bias
        ));
    }
    if !config.rank_pattern.is_empty() || !config.alpha_pattern.is_empty() {
        problems.push("rank_pattern / alpha_pattern: per-module ranks are not supported".into());
    }
    if config
        .layers_to_transform
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        problems.push("layers_to_transform: per-layer selection is not supported".into());
    }
    if let Some(modules) = &config.modules_to_save {
        // PEFT's SEQ_CLS task adds "classifier" and "score"; `score` does not exist in RoBERTa.
        for m in modules {
            if m != "classifier" && m != "score" {
                problems.push(format!("modules_to_save: {m:?} is not supported"));
            }
        }
    }
}

/// `target_modules` must select exactly the adapted layers (and no head layer, unless the head is
/// saved in full, which PEFT does instead of adapting it).
fn check_targets(
    config: &PeftAdapterConfig,
    linears: &[(String, &adaptable_lora::linear::LoraLinear)],
    problems: &mut Vec<String>,
) {
    for (name, linear) in linears {
        let Some(hit) = config.target_modules.matches(name) else {
            problems.push(format!(
                "target_modules {:?}: regular expressions are not supported, list the modules",
                config.target_modules
            ));
            return;
        };
        match (hit, linear.rank() > 0) {
            (true, false) => problems.push(format!(
                "target_modules: {name} is adapted in the file but has no adapter bank in the model"
            )),
            (false, true) => problems.push(format!(
                "target_modules: the model adapts {name} but the file's target_modules do not"
            )),
            _ => {}
        }
    }
    if !config.saves_head() {
        for name in ["classifier.dense", "classifier.out_proj"] {
            if config.target_modules.matches(name) == Some(true) {
                problems.push(format!(
                    "target_modules: {name} (head) would carry an adapter, which is not supported"
                ));
            }
        }
    }
}
