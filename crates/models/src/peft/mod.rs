//! PEFT-format LoRA adapters and Hugging Face-format base weights.
//!
//! * [`export_adapter`] writes one task's adapter (and optionally its head) as a PEFT LoRA
//!   directory: `adapter_config.json` + `adapter_model.safetensors`, loadable with
//!   `PeftModel.from_pretrained(RobertaForSequenceClassification.from_pretrained(base), dir)`.
//! * [`import_adapter`] appends such an adapter (and head) to a model's banks after strict checks:
//!   every problem (rank, alpha, target modules, missing / unexpected keys, shapes, dtypes) is
//!   reported together in one [`PeftMismatch`](crate::ModelsError::PeftMismatch) error, and the
//!   model is left untouched.
//! * [`export_base`] writes the base (optionally with one adapter merged and one head) as an HF
//!   `model.safetensors` + `config.json`.
//! * [`export_model_dir`] writes a (retrained) base encoder as a complete HF model directory
//!   (`config.json`, `model.safetensors`, tokenizer files), atomically.
//! * [`inspect`] summarises an adapter directory.
//!
//! # Key map
//!
//! `P` is `roberta` or `bert` (the encoder's `model_type`), `N` a layer index. Burn stores `Linear`
//! weights `[in, out]`; PyTorch and PEFT store `[out, in]`, so every matrix is transposed.
//!
//! | Our tensor | PEFT key (`adapter_model.safetensors`) | Shape |
//! |---|---|---|
//! | `layers.N.attention.query.lora_a[t]` `[h, r]` | `base_model.model.P.encoder.layer.N.attention.self.query.lora_A.weight` | `[r, h]` |
//! | `layers.N.attention.query.lora_b[t]` `[r, h]` | `base_model.model.P.encoder.layer.N.attention.self.query.lora_B.weight` | `[h, r]` |
//! | `key`, `value` | `...attention.self.{key,value}.lora_{A,B}.weight` | as query |
//! | `layers.N.attention.output` | `...layer.N.attention.output.dense.lora_{A,B}.weight` | as query |
//! | `layers.N.intermediate` | `...layer.N.intermediate.dense.lora_{A,B}.weight` | `[r, h]`, `[i, r]` |
//! | `layers.N.output` | `...layer.N.output.dense.lora_{A,B}.weight` | `[r, i]`, `[h, r]` |
//! | `heads[k].dense.{weight,bias}` | `base_model.model.classifier.dense.{weight,bias}` | `[h, h]`, `[h]` |
//! | `heads[k].out_proj.{weight,bias}` | `base_model.model.classifier.out_proj.{weight,bias}` | `[labels, h]`, `[labels]` |
//!
//! The head is saved the way PEFT saves a `modules_to_save` module: under the module's own name, with
//! the `modules_to_save.default.` infix removed (`get_peft_model_state_dict` strips it, and
//! `set_peft_model_state_dict` puts it back on load).
//!
//! `target_modules` is written as the list of full module names
//! (`roberta.encoder.layer.0.attention.self.query`, ...), not PEFT's usual short names
//! `["query", "key", "value", "dense"]`: `"dense"` would also match `classifier.dense` (and a
//! pooler's dense), while PEFT matches a list entry by equality or as a `.`-suffix, so full names
//! select exactly the adapted layers with every PEFT release. On import, both styles (and
//! `"all-linear"`) are accepted as long as they select exactly the layers the model adapts;
//! head modules are left out of the matching when `modules_to_save` contains `"classifier"`,
//! as PEFT wraps them instead.

mod base;
mod config;
mod export;
mod import;
mod tensors;

pub use base::{TOKENIZER_FILES, export_base, export_model_dir};
pub use config::{PeftAdapterConfig, TargetModules};
pub use export::export_adapter;
pub use import::{
    ImportReport, PeftSummary, PeftTensorInfo, import_adapter, infer_targets, inspect,
};

use adaptable_lora::linear::LoraLinear;

use crate::config::ModelType;
use crate::encoder::Encoder;
use crate::targets::EncoderLinear;

/// File name of the adapter configuration inside a PEFT directory.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// File name of the adapter weights inside a PEFT directory.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Prefix PEFT gives every key of a `PeftModel` around a transformers model.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// The attribute under which transformers nests the encoder (`roberta` or `bert`).
pub fn hf_prefix(model_type: ModelType) -> &'static str {
    match model_type {
        ModelType::Roberta => "roberta",
        ModelType::Bert => "bert",
    }
}

/// The HF module name of linear `which` of layer `layer` (`roberta.encoder.layer.0.attention.self.query`).
pub fn linear_module_name(model_type: ModelType, layer: usize, which: EncoderLinear) -> String {
    format!(
        "{}.encoder.layer.{layer}.{}",
        hf_prefix(model_type),
        which.hf_path()
    )
}

/// Every encoder linear layer with its HF module name, in layer then [`EncoderLinear::ALL`] order.
pub(crate) fn named_linears(encoder: &Encoder) -> Vec<(String, &LoraLinear)> {
    let model_type = encoder.config().model_type;
    encoder
        .layers
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| {
            layer
                .linears()
                .into_iter()
                .zip(EncoderLinear::ALL)
                .map(move |(linear, which)| (linear_module_name(model_type, i, which), linear))
        })
        .collect()
}
