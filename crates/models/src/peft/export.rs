//! Writing one task's adapter (and head) as a PEFT LoRA directory.

use std::path::Path;

use adaptable_lora::{LoraConfig, LoraError};

use super::config::PeftAdapterConfig;
use super::tensors::{NamedTensor, transpose, transposed_matrix, values, write_safetensors};
use super::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, PEFT_PREFIX, named_linears};
use crate::ModelsError;
use crate::config::ModelType;
use crate::heads::{ClassificationHead, SequenceClassifier};

/// Writes adapter `adapter` of `model` (and head `head`, if given) to `dir` as a PEFT LoRA
/// directory, creating `dir` if needed; returns the configuration written.
///
/// `lora` supplies `alpha`, the scaling rule and the dropout, which the layers do not all record;
/// every adapted layer must have its rank and scale. The adapted layers (those with an adapter
/// bank) become `target_modules`. `base_model_name` goes to `base_model_name_or_path`.
///
/// The head is only exported for RoBERTa: `BertForSequenceClassification` classifies the pooler
/// output with one linear layer, which has no counterpart of our `dense → tanh → out_proj` head.
pub fn export_adapter(
    model: &SequenceClassifier,
    adapter: usize,
    head: Option<usize>,
    lora: &LoraConfig,
    base_model_name: &str,
    dir: &Path,
) -> Result<PeftAdapterConfig, ModelsError> {
    lora.validate()?;
    let mut tensors = Vec::new();
    let mut targets = Vec::new();
    for (name, linear) in named_linears(&model.encoder) {
        if linear.rank() == 0 {
            continue;
        }
        if linear.rank() != lora.rank || !same_scale(linear.scale(), lora.scale()) {
            return Err(ModelsError::InvalidArgument(format!(
                "{name} has adapters of rank {} and scale {}, but the LoRA config says rank {} \
                 and scale {}",
                linear.rank(),
                linear.scale(),
                lora.rank,
                lora.scale()
            )));
        }
        if adapter >= linear.num_adapters() {
            return Err(LoraError::TaskOutOfRange {
                task: adapter,
                tasks: linear.num_adapters(),
            }
            .into());
        }
        // Ours: A [in, r], B [r, out]; PEFT: lora_A [r, in], lora_B [out, r].
        tensors.push(transposed_matrix(
            format!("{PEFT_PREFIX}{name}.lora_A.weight"),
            &linear.lora_a[adapter],
        )?);
        tensors.push(transposed_matrix(
            format!("{PEFT_PREFIX}{name}.lora_B.weight"),
            &linear.lora_b[adapter],
        )?);
        targets.push(name);
    }
    if targets.is_empty() {
        return Err(LoraError::NoLoraConfig.into());
    }

    let mut config = PeftAdapterConfig::from_lora(lora, targets);
    config.task_type = Some("SEQ_CLS".into());
    config.base_model_name_or_path = Some(base_model_name.to_string());
    if let Some(h) = head {
        let classifier = model.heads.get(h).ok_or_else(|| {
            ModelsError::InvalidArgument(format!(
                "head {h} is out of range: the model has {} heads",
                model.heads.len()
            ))
        })?;
        if model.encoder.config().model_type != ModelType::Roberta {
            return Err(ModelsError::InvalidArgument(
                "only RoBERTa heads have an HF counterpart (RobertaClassificationHead); \
                 export the adapter without a head"
                    .into(),
            ));
        }
        tensors.extend(head_tensors(
            &format!("{PEFT_PREFIX}classifier"),
            classifier,
        )?);
        config.modules_to_save = Some(vec!["classifier".into()]);
    }

    std::fs::create_dir_all(dir).map_err(|source| ModelsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    config.write(&dir.join(ADAPTER_CONFIG_FILE))?;
    write_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE), tensors)?;
    Ok(config)
}

/// A RoBERTa classification head under `prefix` (`<prefix>.dense.weight`, ...), PyTorch layout.
pub(crate) fn head_tensors(
    prefix: &str,
    head: &ClassificationHead,
) -> Result<Vec<NamedTensor>, ModelsError> {
    let mut out = Vec::with_capacity(4);
    for (name, linear) in [("dense", &head.dense), ("out_proj", &head.out_proj)] {
        let [d_in, d_out] = linear.weight.val().dims();
        out.push(NamedTensor {
            name: format!("{prefix}.{name}.weight"),
            shape: vec![d_out, d_in],
            values: transpose(&values(linear.weight.val())?, d_in, d_out),
        });
        // HF heads always have biases; a bias-free head is written with zeros (the same function).
        let bias = match &linear.bias {
            Some(b) => values(b.val())?,
            None => vec![0.0; d_out],
        };
        out.push(NamedTensor {
            name: format!("{prefix}.{name}.bias"),
            shape: vec![d_out],
            values: bias,
        });
    }
    Ok(out)
}

/// Scales computed by different formulas (`alpha / r` vs a stored `f64`) compared with a relative
/// tolerance.
pub(crate) fn same_scale(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}
