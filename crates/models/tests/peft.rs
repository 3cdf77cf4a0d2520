//! PEFT export/import on the tiny random RoBERTa fixture: round trip, an independent merged-weights
//! computation from the exported file, the HF base export, and strict validation.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use adaptable_lora::LoraConfig;
use adaptable_models::peft::{export_adapter, export_base, import_adapter, infer_targets, inspect};
use adaptable_models::{
    AdapterConfig, EncoderConfig, EncoderInput, LoraTargets, ModelsError, SequenceClassifier,
    SequenceClassifierConfig, load_pretrained_classifier,
};
use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use common::*;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

const LABELS: usize = 3;
const PATHS: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// Rank 2, alpha 6: scale 3, so a mistaken scale cannot go unnoticed.
fn lora() -> LoraConfig {
    LoraConfig::new(2).with_alpha(6.0)
}

fn fixture_config(adapters: Option<AdapterConfig>) -> EncoderConfig {
    EncoderConfig::from_hf_file(fixture("tiny-roberta/config.json"))
        .expect("config")
        .with_dropout(0.0)
        .with_adapters(adapters)
}

/// The fixture's weights with `tasks` adapters on every encoder linear layer and one fresh head.
fn classifier(tasks: Option<usize>, device: &Device) -> SequenceClassifier {
    let adapters = tasks.map(|t| AdapterConfig::new(lora(), t));
    let mut model = SequenceClassifierConfig::new(fixture_config(adapters), LABELS, 1)
        .init(device)
        .expect("model");
    model
        .load_hf_weights(fixture("tiny-roberta/model.safetensors"))
        .expect("strict load");
    model
}

fn random(shape: [usize; 2], std: f64, device: &Device) -> Param<Tensor<2>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Normal(0.0, std),
        device,
    ))
}

/// Gives every `B` (zero at initialisation) and the head random values so both matter.
fn randomise(model: &mut SequenceClassifier, device: &Device) {
    for layer in &mut model.encoder.layers {
        for linear in layer.linears_mut() {
            let dims = [linear.rank(), linear.d_output()];
            for b in &mut linear.lora_b {
                *b = random(dims, 0.5, device);
            }
        }
    }
    let head = &mut model.heads[0];
    head.dense.weight = random([32, 32], 0.3, device);
    head.out_proj.weight = random([32, LABELS], 0.3, device);
}

fn input(device: &Device) -> EncoderInput {
    let golden = read_json(&fixture("tiny-roberta/golden.json"));
    let ids = rows_u32(&golden["input_ids"]);
    let mask = rows_u32(&golden["attention_mask"]);
    EncoderInput::from_rows(&ids, &mask, None, device).expect("valid batch")
}

/// A fresh empty directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adaptable-peft-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn bits(t: Tensor<2>) -> Vec<u32> {
    to_vec(t).into_iter().map(f32::to_bits).collect()
}

/// Reads a safetensors file with the `safetensors` crate alone (not through the code under test).
fn read_file(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).expect("file exists");
    let file = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    file.iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name.to_string(), (view.shape().to_vec(), values))
        })
        .collect()
}

fn write_file(path: &Path, tensors: &HashMap<String, (Vec<usize>, Vec<f32>)>) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            let b = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), shape.clone(), b)
        })
        .collect();
    let views = bytes.iter().map(|(name, shape, b)| {
        let view = TensorView::new(Dtype::F32, shape.clone(), b).expect("consistent view");
        (name.clone(), view)
    });
    safetensors::serialize_to_file(views, None, path).expect("write");
}

#[test]
fn export_then_import_is_bit_identical() {
    let device = cpu();
    let mut model = classifier(Some(1), &device);
    randomise(&mut model, &device);
    let dir = scratch("roundtrip");
    let config = export_adapter(&model, 0, Some(0), &lora(), "tiny-roberta", &dir).expect("export");
    assert_eq!((config.r, config.lora_alpha, config.scale()), (2, 6.0, 3.0));
    assert_eq!(config.modules_to_save, Some(vec!["classifier".to_string()]));

    // PEFT's names and layouts: lora_A [r, in], lora_B [out, r], head weights [out, in].
    let summary = inspect(&dir).expect("inspect");
    assert_eq!(summary.tensors.len(), 2 * 6 * 2 + 4);
    let shape = |name: &str| {
        summary
            .tensors
            .iter()
            .find(|t| t.name == format!("base_model.model.{name}"))
            .unwrap_or_else(|| panic!("{name} missing"))
            .shape
            .clone()
    };
    let l0 = "roberta.encoder.layer.0";
    assert_eq!(
        shape(&format!("{l0}.attention.self.query.lora_A.weight")),
        [2, 32]
    );
    assert_eq!(
        shape(&format!("{l0}.intermediate.dense.lora_B.weight")),
        [64, 2]
    );
    assert_eq!(shape(&format!("{l0}.output.dense.lora_A.weight")), [2, 64]);
    assert_eq!(shape("classifier.out_proj.weight"), [LABELS, 32]);
    assert_eq!(shape("classifier.out_proj.bias"), [LABELS]);
    let cfg = fixture_config(None);
    assert_eq!(
        infer_targets(&summary.config, &cfg).expect("targets"),
        LoraTargets::ALL
    );

    // A model without adapters but with banks of the same rank and scale.
    let mut fresh = classifier(Some(0), &device);
    let report = import_adapter(&mut fresh, &dir, &device).expect("import");
    assert_eq!((report.adapter, report.head), (0, Some(1)));
    for (ours, theirs) in model.encoder.layers.iter().zip(&fresh.encoder.layers) {
        for (a, b) in ours.linears().into_iter().zip(theirs.linears()) {
            assert_eq!(bits(a.lora_a[0].val()), bits(b.lora_a[0].val()));
            assert_eq!(bits(a.lora_b[0].val()), bits(b.lora_b[0].val()));
        }
    }
    let (h0, h1) = (&model.heads[0], &fresh.heads[1]);
    assert_eq!(bits(h0.dense.weight.val()), bits(h1.dense.weight.val()));
    assert_eq!(
        bits(h0.out_proj.weight.val()),
        bits(h1.out_proj.weight.val())
    );

    let x = input(&device);
    let want = to_vec(model.forward(&x, Some(0), 0));
    let got = to_vec(fresh.forward(&x, Some(0), 1));
    assert_eq!(want, got, "identical weights give identical logits");

    // Exporting the imported adapter reproduces the file byte for byte.
    let again = scratch("roundtrip-again");
    export_adapter(&fresh, 0, Some(1), &lora(), "tiny-roberta", &again).expect("export");
    for file in ["adapter_model.safetensors", "adapter_config.json"] {
        let a = std::fs::read(dir.join(file)).expect("read");
        let b = std::fs::read(again.join(file)).expect("read");
        assert!(a == b, "{file} differs after a round trip");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn any_subset_of_targets_exports_and_imports_with_identical_logits() {
    let device = cpu();
    let targets: LoraTargets = "key,intermediate".parse().expect("valid targets");
    let adapters = AdapterConfig::new(lora(), 1).with_targets(targets);
    let mut model = SequenceClassifierConfig::new(fixture_config(Some(adapters)), LABELS, 1)
        .init(&device)
        .expect("model");
    model
        .load_hf_weights(fixture("tiny-roberta/model.safetensors"))
        .expect("strict load");
    randomise(&mut model, &device);
    let dir = scratch("subset");
    let config = export_adapter(&model, 0, Some(0), &lora(), "tiny-roberta", &dir).expect("export");
    let layers = fixture_config(None).num_hidden_layers;
    assert_eq!(
        inspect(&dir).expect("inspect").tensors.len(),
        2 * 2 * layers + 4
    );
    assert_eq!(
        infer_targets(&config, &fixture_config(None)).expect("targets"),
        targets
    );

    let banks = AdapterConfig::new(lora(), 0).with_targets(targets);
    let mut fresh = SequenceClassifierConfig::new(fixture_config(Some(banks)), LABELS, 1)
        .init(&device)
        .expect("model");
    fresh
        .load_hf_weights(fixture("tiny-roberta/model.safetensors"))
        .expect("strict load");
    let report = import_adapter(&mut fresh, &dir, &device).expect("import");
    let x = input(&device);
    let want = to_vec(model.forward(&x, Some(0), 0));
    let got = to_vec(fresh.forward(&x, Some(report.adapter), report.head.expect("head")));
    assert_eq!(want, got);

    // A model adapting other layers is refused, naming a layer the file does not adapt.
    let mut other = classifier(Some(0), &device);
    let err = import_adapter(&mut other, &dir, &device).expect_err("targets differ");
    assert!(err.to_string().contains("attention.self.query"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn adapter_forward_matches_weights_merged_from_the_exported_file() {
    let device = cpu();
    let mut model = classifier(Some(1), &device);
    randomise(&mut model, &device);
    let dir = scratch("merged");
    export_adapter(&model, 0, Some(0), &lora(), "tiny-roberta", &dir).expect("export");
    let file = read_file(&dir.join("adapter_model.safetensors"));
    let scale = 6.0_f32 / 2.0;

    // PEFT's definition: W_pt [out, in] += scale · B [out, r] · A [r, in]; Burn stores W as [in, out].
    let mut plain = classifier(None, &device);
    plain.heads = model.heads.clone();
    for (i, layer) in plain.encoder.layers.iter_mut().enumerate() {
        for (slot, linear) in layer.linears_mut().into_iter().enumerate() {
            let name = format!("base_model.model.roberta.encoder.layer.{i}.{}", PATHS[slot]);
            let (a_shape, a) = &file[&format!("{name}.lora_A.weight")];
            let (b_shape, b) = &file[&format!("{name}.lora_B.weight")];
            let (r, d_in, d_out) = (a_shape[0], a_shape[1], b_shape[0]);
            assert_eq!(b_shape[1], r);
            let mut w = to_vec(linear.base.weight.val());
            for o in 0..d_out {
                for j in 0..d_in {
                    let delta: f32 = (0..r).map(|k| b[o * r + k] * a[k * d_in + j]).sum();
                    w[j * d_out + o] += scale * delta;
                }
            }
            linear.base.weight = Param::from_tensor(Tensor::from_data(
                TensorData::new(w, [d_in, d_out]),
                &device,
            ));
        }
    }

    let x = input(&device);
    let adapted = to_vec(model.forward(&x, Some(0), 0));
    let merged = to_vec(plain.forward(&x, None, 0));
    let base = to_vec(model.forward(&x, None, 0));
    assert!(
        max_abs_diff(&adapted, &base) > 1e-2,
        "the adapter must change the logits for the test to mean anything"
    );
    let diff = max_abs_diff(&adapted, &merged);
    assert!(
        diff < 1e-5,
        "adapter vs merged weights: max |diff| = {diff}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exported_base_with_merged_adapter_loads_back_as_an_hf_checkpoint() {
    let device = cpu();
    let mut model = classifier(Some(2), &device);
    randomise(&mut model, &device);
    let dir = scratch("base");
    export_base(&model, Some(0), Some(1), &dir).expect("export base");

    let (loaded, report) =
        load_pretrained_classifier(&dir, LABELS, 1, None, &device).expect("strict HF load");
    assert!(report.new_head.is_empty() && report.ignored.is_empty());
    let config = EncoderConfig::from_hf_file(dir.join("config.json")).expect("config");
    assert_eq!(config, fixture_config(None));

    let x = input(&device);
    let want = to_vec(model.forward(&x, Some(1), 0));
    let got = to_vec(loaded.forward(&x, None, 0));
    let diff = max_abs_diff(&want, &got);
    assert!(diff < 1e-5, "merged export vs adapter: max |diff| = {diff}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn strict_import_reports_every_problem_and_leaves_the_model_alone() {
    let device = cpu();
    let mut model = classifier(Some(1), &device);
    randomise(&mut model, &device);
    let dir = scratch("strict");
    export_adapter(&model, 0, Some(0), &lora(), "tiny-roberta", &dir).expect("export");

    // Config: wrong rank, wrong alpha, one target module dropped.
    let config_path = dir.join("adapter_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).expect("read")).expect("json");
    config["r"] = 3.into();
    config["lora_alpha"] = 8.0.into();
    let targets = config["target_modules"].as_array_mut().expect("list");
    let dropped = targets.remove(1);
    std::fs::write(&config_path, config.to_string()).expect("write");

    // Weights: one key missing, one wrong shape, one unexpected.
    let weights_path = dir.join("adapter_model.safetensors");
    let mut tensors = read_file(&weights_path);
    let l = "base_model.model.roberta.encoder.layer";
    let missing = format!("{l}.1.attention.self.value.lora_B.weight");
    assert!(tensors.remove(&missing).is_some());
    let reshaped = format!("{l}.0.intermediate.dense.lora_A.weight");
    tensors.insert(reshaped.clone(), (vec![2, 31], vec![0.0; 62]));
    let unexpected = format!("{l}.2.attention.self.query.lora_A.weight");
    tensors.insert(unexpected.clone(), (vec![2, 32], vec![0.0; 64]));
    write_file(&weights_path, &tensors);

    let mut fresh = classifier(Some(0), &device);
    let err = import_adapter(&mut fresh, &dir, &device).expect_err("mismatched adapter");
    let ModelsError::PeftMismatch { problems, .. } = &err else {
        panic!("expected PeftMismatch, got {err}");
    };
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("rank: the file has r = 3"), "{problems:#?}");
    assert!(has("alpha: lora_alpha = 8"), "{problems:#?}");
    let dropped = dropped.as_str().expect("name");
    assert!(has(&format!("the model adapts {dropped}")), "{problems:#?}");
    assert!(has(&format!("missing: {missing}")), "{problems:#?}");
    assert!(has(&format!("wrong shape: {reshaped}")), "{problems:#?}");
    assert!(has(&format!("unexpected: {unexpected}")), "{problems:#?}");
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(err.to_string().contains("does not match the model"));

    // Nothing was appended.
    assert_eq!(fresh.encoder.num_adapters(), 0);
    assert_eq!(fresh.heads.len(), 1);

    // A model without adapter banks cannot take the adapter either.
    let mut plain = classifier(None, &device);
    let err = import_adapter(&mut plain, &dir, &device).expect_err("no banks");
    assert!(err.to_string().contains("no adapter banks"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes the inputs of `scripts/peft_check.py` and checks them: `base/` (an HF
/// `RobertaForSequenceClassification` whose head is NOT the adapter's, so the check fails unless
/// PEFT loads the head from the adapter), `adapter/` (PEFT), `merged/` (HF, adapter folded in) and
/// `reference.json` (inputs and our logits with the adapter). Directory: `$ADAPTABLE_PEFT_CHECK_DIR`
/// (kept for the script) or a temporary directory (removed).
#[test]
fn write_peft_check_files() {
    let device = cpu();
    let mut model = classifier(Some(1), &device);
    randomise(&mut model, &device);
    let other = model.add_head(&device);
    model.heads[other].dense.weight = random([32, 32], 0.3, &device);
    model.heads[other].out_proj.weight = random([32, LABELS], 0.3, &device);

    let keep = std::env::var_os("ADAPTABLE_PEFT_CHECK_DIR").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("adaptable-peft-check-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    export_base(&model, Some(other), None, &dir.join("base")).expect("base");
    export_adapter(&model, 0, Some(0), &lora(), "../base", &dir.join("adapter")).expect("adapter");
    export_base(&model, Some(0), Some(0), &dir.join("merged")).expect("merged");

    let golden = read_json(&fixture("tiny-roberta/golden.json"));
    let x = input(&device);
    let logits = model.forward(&x, Some(0), 0);
    let [rows, labels] = logits.dims();
    let reference = serde_json::json!({
        "input_ids": golden["input_ids"],
        "attention_mask": golden["attention_mask"],
        "logits": to_vec(logits),
        "shape": [rows, labels],
        "base_head_logits": to_vec(model.forward(&x, Some(0), other)),
    });
    std::fs::write(dir.join("reference.json"), reference.to_string()).expect("write");
    for file in [
        "base/config.json",
        "base/model.safetensors",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "merged/config.json",
        "merged/model.safetensors",
    ] {
        assert!(dir.join(file).is_file(), "{file} was not written");
    }
    // The two heads must differ, or the script could not tell whether PEFT loaded the adapter's.
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).expect("read"))
            .expect("json");
    assert_ne!(reference["logits"], reference["base_head_logits"]);
    match keep {
        Some(dir) => println!("wrote {}", dir.display()),
        None => {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
