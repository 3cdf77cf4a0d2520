//! Golden tests against the tiny random RoBERTa produced with HF transformers
//! (fixtures copied from shared/datasets/tiny-roberta-golden, see its gen_golden.py).

mod common;

use adaptable_models::{EncoderConfig, EncoderInput, MultipleChoiceModel, cross_entropy};
use burn::tensor::{Int, Tensor, TensorData};
use common::*;

const TOL: f32 = 1e-4;

fn golden_input(golden: &serde_json::Value, device: &burn::tensor::Device) -> EncoderInput {
    let ids = rows_u32(&golden["input_ids"]);
    let mask = rows_u32(&golden["attention_mask"]);
    EncoderInput::from_rows(&ids, &mask, None, device).expect("valid batch")
}

#[test]
fn hidden_states_match_hf() {
    let device = cpu();
    let golden = read_json(&fixture("tiny-roberta/golden.json"));
    let config = EncoderConfig::from_hf_file(fixture("tiny-roberta/config.json")).expect("config");
    let mut encoder = config.with_pooler(true).init(&device).expect("encoder");
    let report = encoder
        .load_hf_weights(fixture("tiny-roberta/model.safetensors"))
        .expect("strict load succeeds");
    assert_eq!(report.applied.len(), 39, "every tensor of the file is used");
    assert!(report.new_head.is_empty() && report.ignored.is_empty());

    let input = golden_input(&golden, &device);
    let positions = encoder.embeddings.position_ids(&input.input_ids);
    let expected_positions: Vec<i64> = rows_u32(&golden["position_ids"])
        .into_iter()
        .flatten()
        .map(i64::from)
        .collect();
    assert_eq!(
        positions
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("ints"),
        expected_positions
    );

    let states = encoder.forward_hidden_states(&input, None);
    let expected = golden["hidden_states"].as_array().expect("hidden states");
    assert_eq!(states.len(), expected.len());
    for (i, (got, want)) in states.iter().zip(expected).enumerate() {
        let diff = max_abs_diff(&to_vec(got.clone()), &flat_f32(want));
        assert!(diff < TOL, "hidden state {i}: max |diff| = {diff}");
    }
    let last = encoder.forward(&input, None);
    let diff = max_abs_diff(
        &to_vec(last.clone()),
        &flat_f32(&golden["last_hidden_state"]),
    );
    assert!(diff < TOL, "last_hidden_state: max |diff| = {diff}");

    let pooled = encoder.pooler.as_ref().expect("pooler").forward(last);
    let diff = max_abs_diff(&to_vec(pooled), &flat_f32(&golden["pooler_output"]));
    assert!(diff < TOL, "pooler_output: max |diff| = {diff}");
}

fn load_mc(device: &burn::tensor::Device) -> MultipleChoiceModel {
    let config = EncoderConfig::from_hf_file(fixture("tiny-roberta/multiple-choice/config.json"))
        .expect("config")
        // HF produced the golden in eval mode; on an autodiff device dropout would be active.
        .with_dropout(0.0);
    let mut model = MultipleChoiceModel::new(&config, device).expect("model");
    let report = model
        .load_hf_weights(fixture("tiny-roberta/multiple-choice/model.safetensors"))
        .expect("strict load succeeds");
    assert!(report.new_head.is_empty(), "the classifier is in the file");
    model
}

fn mc_input(golden: &serde_json::Value, device: &burn::tensor::Device) -> (EncoderInput, usize) {
    let ids = rows_u32(&golden["input_ids"][0]);
    let mask = rows_u32(&golden["attention_mask"][0]);
    let choices = ids.len();
    (
        EncoderInput::from_rows(&ids, &mask, None, device).expect("valid batch"),
        choices,
    )
}

#[test]
fn multiple_choice_logits_and_loss_match_hf() {
    let device = cpu();
    let golden = read_json(&fixture("tiny-roberta/multiple-choice/golden.json"));
    let model = load_mc(&device);
    let (input, choices) = mc_input(&golden, &device);
    let logits = model.forward(&input, choices, None);
    assert_eq!(logits.dims(), [1, 3]);
    let diff = max_abs_diff(&to_vec(logits.clone()), &flat_f32(&golden["logits"]));
    assert!(diff < TOL, "logits: max |diff| = {diff}");

    let labels = Tensor::<1, Int>::from_data(TensorData::from([0i64]), &device);
    let loss = to_vec(cross_entropy(logits, labels))[0];
    let want = golden["loss"].as_f64().expect("loss") as f32;
    assert!((loss - want).abs() < TOL, "loss {loss} vs {want}");
}

/// HF parameter name of the multiple-choice model → Burn path in [`MultipleChoiceModel`].
fn burn_path(hf: &str) -> String {
    let mut p = hf.strip_prefix("roberta.").unwrap_or(hf).to_string();
    if let Some(rest) = p.strip_prefix("encoder.layer.") {
        p = format!("encoder.layers.{rest}");
    } else if p.starts_with("embeddings.") || p.starts_with("pooler.") {
        p = format!("encoder.{p}");
    }
    for (from, to) in [
        (".attention.self.query.", ".attention.query.base."),
        (".attention.self.key.", ".attention.key.base."),
        (".attention.self.value.", ".attention.value.base."),
        (".attention.output.dense.", ".attention.output.base."),
        (".attention.output.LayerNorm.", ".attention.norm."),
        (".intermediate.dense.", ".intermediate.base."),
        (".output.dense.", ".output.base."),
        (".output.LayerNorm.", ".output_norm."),
        ("embeddings.LayerNorm.", "embeddings.layer_norm."),
    ] {
        p = p.replace(from, to);
    }
    let is_norm = p.contains("norm.");
    if is_norm {
        if let Some(stem) = p.strip_suffix(".weight") {
            p = format!("{stem}.gamma");
        } else if let Some(stem) = p.strip_suffix(".bias") {
            p = format!("{stem}.beta");
        }
    }
    p
}

fn l2(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn multiple_choice_gradients_match_hf() {
    let device = cpu().autodiff();
    let golden = read_json(&fixture("tiny-roberta/multiple-choice/golden.json"));
    let model = load_mc(&device);
    let (input, choices) = mc_input(&golden, &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::from([0i64]), &device);
    let loss = cross_entropy(model.forward(&input, choices, None), labels);
    let grads = loss.backward();
    let ours = GradCollector::collect(&model, &grads);

    let norms = golden["grad_l2_norms"].as_object().expect("norms");
    assert_eq!(norms.len(), 41);
    let mut checked_full = 0;
    for (name, want_norm) in norms {
        let path = burn_path(name);
        let (shape, grad) = ours
            .get(&path)
            .unwrap_or_else(|| panic!("{name} -> {path} is not a parameter"));
        let grad = grad
            .as_ref()
            .unwrap_or_else(|| panic!("{path} has no gradient"));
        let want_norm = want_norm.as_f64().expect("norm") as f32;
        let got_norm = l2(grad);
        assert!(
            (got_norm - want_norm).abs() <= 1e-3 * want_norm.max(1e-4),
            "{name}: |grad| {got_norm} vs {want_norm}"
        );
        if let Some(full) = golden["grads_full"].get(name) {
            let mut want = flat_f32(full);
            // HF stores Linear weights [out, in]; Burn's are [in, out].
            let is_linear_weight = shape.len() == 2 && !path.contains("embeddings");
            if is_linear_weight {
                let (rows, cols) = (shape[1], shape[0]);
                want = (0..cols)
                    .flat_map(|c| (0..rows).map(move |r| (r, c)))
                    .map(|(r, c)| want[r * cols + c])
                    .collect();
            }
            let err = l2(&grad
                .iter()
                .zip(&want)
                .map(|(a, b)| a - b)
                .collect::<Vec<_>>());
            // The golden values are rounded to 1e-7, which bounds how well a near-zero gradient
            // (the classifier bias: choice gradients sum to zero) can agree.
            assert!(
                err <= 1e-3 * l2(&want) + 2e-6,
                "{name}: relative gradient error {} (|g| = {})",
                err / l2(&want).max(1e-12),
                l2(&want)
            );
            checked_full += 1;
        }
    }
    assert_eq!(checked_full, 35);
    // Softmax is invariant to key biases, so their gradient is exactly zero (up to rounding).
    let key_bias = ours["encoder.layers.0.attention.key.base.bias"]
        .1
        .as_ref()
        .expect("grad");
    assert!(l2(key_bias) < 1e-6);
}

#[test]
fn fresh_adapters_keep_the_golden_output_and_only_the_active_one_trains() {
    use adaptable_lora::LoraConfig;
    use adaptable_models::{AdapterConfig, LoraTargets};

    let device = cpu().autodiff();
    let golden = read_json(&fixture("tiny-roberta/golden.json"));
    let adapters = AdapterConfig::new(LoraConfig::new(2).with_alpha(8.0), 2);
    let config = EncoderConfig::from_hf_file(fixture("tiny-roberta/config.json"))
        .expect("config")
        .with_dropout(0.0)
        .with_adapters(Some(adapters.clone()));
    let mut encoder = config.init(&device).expect("encoder");
    let report = encoder
        .load_hf_weights(fixture("tiny-roberta/model.safetensors"))
        .expect("adapters are not expected in the file");
    // 2 layers × 6 linears × 2 tasks × (A, B)
    assert_eq!(report.fresh_adapter_tensors, 48);
    assert_eq!(report.ignored.len(), 2, "pooler unused");

    let input = golden_input(&golden, &device);
    let out = encoder.forward(&input, Some(1));
    let diff = max_abs_diff(
        &to_vec(out.clone()),
        &flat_f32(&golden["last_hidden_state"]),
    );
    assert!(diff < TOL, "B = 0 adapters change nothing: {diff}");

    let grads = out.sum().backward();
    let ours = GradCollector::collect(&encoder, &grads);
    let has = |p: &str| ours[p].1.is_some();
    assert!(has("layers.0.attention.query.lora_b.1"));
    assert!(!has("layers.0.attention.query.lora_b.0"));
    assert!(
        has("layers.1.output.base.weight"),
        "the base trains too (LoRA-ML)"
    );

    let frozen = encoder.freeze_base();
    let grads = frozen.forward(&input, Some(0)).sum().backward();
    let ours = GradCollector::collect(&frozen, &grads);
    assert!(ours["layers.1.intermediate.lora_b.0"].1.is_some());
    assert!(ours["layers.1.intermediate.base.weight"].1.is_none());
    assert!(ours["embeddings.word_embeddings.weight"].1.is_none());

    // Query+value targeting leaves the other linears plain.
    let qv = EncoderConfig::from_hf_file(fixture("tiny-roberta/config.json"))
        .expect("config")
        .with_adapters(Some(adapters.with_targets(LoraTargets::QUERY_VALUE)))
        .init(&device)
        .expect("encoder");
    assert_eq!(qv.layers[0].attention.value.num_adapters(), 2);
    assert_eq!(qv.layers[0].attention.key.num_adapters(), 0);
    assert_eq!(qv.layers[0].intermediate.num_adapters(), 0);
}
