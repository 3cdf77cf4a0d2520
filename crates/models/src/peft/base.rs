//! Writing the (retrained) base as a Hugging Face `model.safetensors` + `config.json`.

use std::path::Path;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use serde_json::{Value, json};

use super::export::head_tensors;
use super::tensors::{NamedTensor, plain, transposed_matrix, values, write_safetensors};
use super::{hf_prefix, linear_module_name};
use crate::ModelsError;
use crate::config::{Activation, EncoderConfig, ModelType};
use crate::heads::SequenceClassifier;
use crate::targets::EncoderLinear;

/// Writes `model`'s encoder (and head `head`, if given) to `dir` as HF `model.safetensors` and
/// `config.json`, creating `dir` if needed.
///
/// With `merge_adapter = Some(t)`, adapter `t` is folded into every adapted layer
/// (`W + s · A_t B_t`), so the files alone reproduce the model with adapter `t` active; with
/// `None` the base weights are written as they are. Linear weights are transposed back to
/// PyTorch's `[out, in]` and LayerNorm `gamma`/`beta` become `weight`/`bias`; keys carry the
/// `roberta.` / `bert.` prefix, which `RobertaModel`, `BertModel` and the `...ForSequenceClassification`
/// classes all accept. With a head the architecture is `RobertaForSequenceClassification` (RoBERTa
/// only, see [`export_adapter`](super::export_adapter)); without, `RobertaModel` / `BertModel`.
/// [`load_pretrained_classifier`](crate::load_pretrained_classifier) reads the result back.
pub fn export_base(
    model: &SequenceClassifier,
    head: Option<usize>,
    merge_adapter: Option<usize>,
    dir: &Path,
) -> Result<(), ModelsError> {
    let encoder = &model.encoder;
    let config = encoder.config();
    let p = hf_prefix(config.model_type);
    let mut tensors = Vec::new();

    let e = &encoder.embeddings;
    for (name, table) in [
        ("word_embeddings", &e.word_embeddings.weight),
        ("position_embeddings", &e.position_embeddings.weight),
        ("token_type_embeddings", &e.token_type_embeddings.weight),
    ] {
        tensors.push(plain(format!("{p}.embeddings.{name}.weight"), table)?);
    }
    tensors.extend(layer_norm(
        &format!("{p}.embeddings.LayerNorm"),
        &e.layer_norm,
    )?);

    for (i, layer) in encoder.layers.iter().enumerate() {
        for (linear, which) in layer.linears().into_iter().zip(EncoderLinear::ALL) {
            let task = merge_adapter.filter(|_| linear.rank() > 0);
            let merged = linear.to_linear(task)?;
            let name = linear_module_name(config.model_type, i, which);
            tensors.extend(linear_tensors(&name, &merged)?);
        }
        let prefix = format!("{p}.encoder.layer.{i}");
        tensors.extend(layer_norm(
            &format!("{prefix}.attention.output.LayerNorm"),
            &layer.attention.norm,
        )?);
        tensors.extend(layer_norm(
            &format!("{prefix}.output.LayerNorm"),
            &layer.output_norm,
        )?);
    }
    if let Some(pooler) = &encoder.pooler {
        tensors.extend(linear_tensors(&format!("{p}.pooler.dense"), &pooler.dense)?);
    }

    let architecture = match (head, config.model_type) {
        (Some(h), ModelType::Roberta) => {
            let classifier = model.heads.get(h).ok_or_else(|| {
                ModelsError::InvalidArgument(format!(
                    "head {h} is out of range: the model has {} heads",
                    model.heads.len()
                ))
            })?;
            tensors.extend(head_tensors("classifier", classifier)?);
            "RobertaForSequenceClassification"
        }
        (Some(_), ModelType::Bert) => {
            return Err(ModelsError::InvalidArgument(
                "only RoBERTa heads have an HF counterpart (RobertaClassificationHead); \
                 export the base without a head"
                    .into(),
            ));
        }
        (None, ModelType::Roberta) => "RobertaModel",
        (None, ModelType::Bert) => "BertModel",
    };

    std::fs::create_dir_all(dir).map_err(|source| ModelsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = hf_config_json(config, architecture, head.map(|_| model.num_labels()));
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&json)
        .map_err(|e| ModelsError::InvalidArgument(format!("cannot serialise config: {e}")))?;
    std::fs::write(&path, text + "\n").map_err(|source| ModelsError::Io { path, source })?;
    write_safetensors(&dir.join("model.safetensors"), tensors)
}

fn linear_tensors(name: &str, linear: &Linear) -> Result<Vec<NamedTensor>, ModelsError> {
    let mut out = vec![transposed_matrix(format!("{name}.weight"), &linear.weight)?];
    if let Some(bias) = &linear.bias {
        out.push(plain(format!("{name}.bias"), bias)?);
    }
    Ok(out)
}

fn layer_norm(name: &str, norm: &LayerNorm) -> Result<Vec<NamedTensor>, ModelsError> {
    let gamma: &Param<Tensor<1>> = &norm.gamma;
    let weight = plain(format!("{name}.weight"), gamma)?;
    // HF LayerNorms always have a bias; a bias-free one is the same function with zeros.
    let bias = match &norm.beta {
        Some(beta) => plain(format!("{name}.bias"), beta)?,
        None => NamedTensor {
            name: format!("{name}.bias"),
            shape: weight.shape.clone(),
            values: vec![0.0; values(gamma.val())?.len()],
        },
    };
    Ok(vec![weight, bias])
}

/// `config.json` in transformers' form for `config`.
fn hf_config_json(config: &EncoderConfig, architecture: &str, num_labels: Option<usize>) -> Value {
    let hidden_act = match config.hidden_act {
        Activation::Gelu => "gelu",
        Activation::GeluTanh => "gelu_new",
        Activation::Relu => "relu",
    };
    let mut json = json!({
        "architectures": [architecture],
        "model_type": hf_prefix(config.model_type),
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": hidden_act,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
        "pad_token_id": config.pad_token_id,
        "classifier_dropout": config.classifier_dropout,
        "position_embedding_type": "absolute",
        "initializer_range": 0.02,
    });
    if let (Some(n), Value::Object(map)) = (num_labels, &mut json) {
        // transformers derives `num_labels` from `id2label`.
        let id2label: serde_json::Map<String, Value> = (0..n)
            .map(|i| (i.to_string(), Value::String(format!("LABEL_{i}"))))
            .collect();
        let label2id: serde_json::Map<String, Value> =
            (0..n).map(|i| (format!("LABEL_{i}"), json!(i))).collect();
        map.insert("id2label".into(), Value::Object(id2label));
        map.insert("label2id".into(), Value::Object(label2id));
    }
    json
}

/// Tokenizer files that transformers' `AutoTokenizer` reads; [`export_model_dir`] copies those
/// present in the source directory.
pub const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
];

/// Writes `model`'s base encoder (no adapter, no head) as a complete Hugging Face model directory
/// that `AutoModel.from_pretrained(dir)` and [`load_pretrained_encoder`](crate::load_pretrained_encoder)
/// load: `config.json`, `model.safetensors` and the [`TOKENIZER_FILES`] found in `tokenizer_dir`
/// (`tokenizer.json` is required).
///
/// This is how a retrained base (LoRA-ML keeps the base and discards the retraining adapters and
/// heads) leaves Burn. The directory is assembled under a temporary sibling name and renamed into
/// place, so `dir` either does not exist or is complete; `dir` must not exist yet.
pub fn export_model_dir(
    model: &SequenceClassifier,
    tokenizer_dir: &Path,
    dir: &Path,
) -> Result<(), ModelsError> {
    if dir.exists() {
        return Err(ModelsError::InvalidArgument(format!(
            "{} already exists; choose a new output directory",
            dir.display()
        )));
    }
    let tokenizer = tokenizer_dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(ModelsError::Tokenizer {
            path: Some(tokenizer),
            message: "file not found; the exported model needs its tokenizer".into(),
        });
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let partial = dir.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let written = (|| {
        export_base(model, None, None, &partial)?;
        for file in TOKENIZER_FILES {
            let from = tokenizer_dir.join(file);
            if from.is_file() {
                std::fs::copy(&from, partial.join(file))
                    .map_err(|source| ModelsError::Io { path: from, source })?;
            }
        }
        std::fs::rename(&partial, dir).map_err(|source| ModelsError::Io {
            path: dir.to_path_buf(),
            source,
        })
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    written
}
