//! The three training steps of the ConvAI2 experiment, timed: a standard-retraining step (every
//! weight, one head), a LoRA-ML step (the base plus one task's adapters on the six encoder linears
//! and its head, the task cycling over T), and a LoRA fine-tuning step (frozen base, one fresh
//! adapter and head). One batch is C contexts × K candidates × L tokens scored as (context,
//! candidate) pairs with the 2-way cross-entropy of every pair, then one AdamW step: the protocol
//! of scripts/bench_train_torch.py, which runs the same steps in PyTorch.
//!
//! `cargo bench --workspace --bench train -- [--modes train-sr,train-lora-ml,train-lora-ft]
//! [--model DIR] [--contexts 8] [--candidates 20] [--seq 64] [--iters 20] [--warmup 3] [--tasks 10]
//! [--rank 8] [--lora-dropout 0.1] [--steps]` (or `cargo xtask bench train`, which also runs the PyTorch script and prints the
//! ratios). The weights are MiniLM's from `--model` (default models/minilm), or random with its
//! shape when it is absent. Prints `BENCH shape=… mode=… tokens_per_s=… ms_per_batch=…` with the
//! median of the timed steps, and the process's peak resident memory; `--steps` also prints every
//! step's time, minor page faults and resident memory (warm-up steps included).

use std::path::PathBuf;
use std::time::Instant;

// As in the `adaptable` binary, whose workers run these steps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use adaptable_meta::retrain::{RetrainConfig, RetrainMethod, adamw_optimizer, prepare, train_step};
use adaptable_meta::{MetaModel, TaskSlot};
use adaptable_models::{EncoderConfig, EncoderInput, LoraTargets, SequenceClassifierConfig};
use adaptable_text::{RankingBatch, TextBatch, TextModel, binary_labels};
use burn::tensor::Device;

struct Options {
    modes: Vec<String>,
    model: PathBuf,
    contexts: usize,
    candidates: usize,
    seq: usize,
    iters: usize,
    warmup: usize,
    tasks: usize,
    rank: usize,
    lora_dropout: f64,
    steps: bool,
}

fn parse() -> Options {
    let mut o = Options {
        modes: ["train-sr", "train-lora-ml", "train-lora-ft"]
            .map(String::from)
            .to_vec(),
        model: PathBuf::from("models/minilm"),
        contexts: 8,
        candidates: 20,
        seq: 64,
        iters: 20,
        warmup: 3,
        tasks: 10,
        rank: 8,
        lora_dropout: 0.1,
        steps: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        let number = |v: String, default: usize| v.parse().unwrap_or(default);
        match a.as_str() {
            "--modes" => o.modes = value().split(',').map(String::from).collect(),
            "--model" => o.model = PathBuf::from(value()),
            "--contexts" => o.contexts = number(value(), o.contexts),
            "--candidates" => o.candidates = number(value(), o.candidates),
            "--seq" => o.seq = number(value(), o.seq),
            "--iters" => o.iters = number(value(), o.iters),
            "--warmup" => o.warmup = number(value(), o.warmup),
            "--tasks" => o.tasks = number(value(), o.tasks),
            "--rank" => o.rank = number(value(), o.rank),
            "--lora-dropout" => o.lora_dropout = value().parse().unwrap_or(o.lora_dropout),
            "--steps" => o.steps = true,
            // cargo bench passes --bench; anything else unknown is ignored too.
            _ => {}
        }
    }
    o
}

/// The model, from `--model` when it holds weights, else random with MiniLM's shape.
fn model(o: &Options, device: &Device) -> (TextModel, &'static str) {
    let targets = LoraTargets::ALL;
    if o.model.join("model.safetensors").is_file() {
        let model = TextModel::from_pretrained(&o.model, 2, targets, device).expect("load model");
        return (model, "minilm");
    }
    let classifier = SequenceClassifierConfig::new(EncoderConfig::minilm_l6(), 2, 1)
        .init(device)
        .expect("valid config");
    (
        TextModel {
            classifier,
            targets,
        },
        "minilm-random",
    )
}

/// One ranking batch of real-token ids (no padding), the gold candidate first.
fn batch(o: &Options, vocab: usize, device: &Device) -> TextBatch {
    let rows: Vec<Vec<u32>> = (0..o.contexts * o.candidates)
        .map(|r| {
            (0..o.seq)
                .map(|s| (1000 + (r * 131 + s * 17) % (vocab - 1000)) as u32)
                .collect()
        })
        .collect();
    let input = EncoderInput::pad(&rows, 0, device).expect("valid batch");
    let gold = vec![0; o.contexts];
    TextBatch::Ranking(RankingBatch {
        input,
        labels: binary_labels(o.candidates, &gold, device),
        candidates: o.candidates,
        gold,
    })
}

/// A `/proc/self/status` memory field (`VmHWM:` peak, `VmRSS:` current) in MB.
fn resident_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The process's minor page faults so far (`/proc/self/stat`, field 10).
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are space-separated.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(7)?.parse().ok()
}

fn main() {
    let o = parse();
    let device = Device::default().autodiff();
    device.seed(0);
    let tokens = o.contexts * o.candidates * o.seq;
    println!(
        "# {} contexts × {} candidates × {} tokens, {} warm-up and {} timed steps",
        o.contexts, o.candidates, o.seq, o.warmup, o.iters
    );
    for mode in &o.modes {
        let (base, shape) = model(&o, &device);
        let vocab = base.classifier.encoder.config().vocab_size;
        let mut config = RetrainConfig::default();
        (config.lora.rank, config.lora.alpha, config.lora.dropout) =
            (o.rank, 2.0 * o.rank as f64, o.lora_dropout);
        let (model, tasks, slot): (TextModel, usize, fn(usize) -> TaskSlot) = match mode.as_str() {
            "train-sr" => (
                prepare(base, RetrainMethod::Standard, 1, &config, &device).expect("prepare"),
                1,
                |_| TaskSlot::SHARED,
            ),
            "train-lora-ml" => (
                prepare(base, RetrainMethod::LoraMl, o.tasks, &config, &device).expect("prepare"),
                o.tasks,
                TaskSlot::adapter_and_head,
            ),
            "train-lora-ft" => (
                base.reset_task_modules(Some(&config.lora), 1, 1, &device)
                    .expect("fresh adapter")
                    .freeze_base(),
                1,
                TaskSlot::adapter_and_head,
            ),
            other => {
                eprintln!("unknown mode {other:?} (train-sr, train-lora-ml, train-lora-ft)");
                continue;
            }
        };
        let batch = batch(&o, vocab, &device);
        let mut optimizer = adamw_optimizer(0.01);
        let mut model = Some(model);
        let mut times = Vec::with_capacity(o.iters);
        for i in 0..o.warmup + o.iters {
            let t = i % tasks;
            let faults = minor_faults();
            let started = Instant::now();
            let (next, _) = train_step(
                model.take().expect("model"),
                &mut optimizer,
                1e-4,
                &batch,
                slot(t),
                ("bench", 0, i, t),
            )
            .expect("finite loss");
            let took = started.elapsed().as_secs_f64();
            if i >= o.warmup {
                times.push(took);
            }
            if o.steps {
                let faults = minor_faults().zip(faults).map(|(b, a)| b - a);
                println!(
                    "# step {i}: {:.0} ms, {} minor faults, resident {:.0} MB",
                    took * 1e3,
                    faults.map_or("?".into(), |f| f.to_string()),
                    resident_mb("VmRSS:").unwrap_or(f64::NAN)
                );
            }
            model = Some(next);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "BENCH shape={shape} mode={mode} tokens_per_s={:.0} ms_per_batch={:.1}",
            tokens as f64 / median,
            median * 1e3
        );
    }
    if let Some(mb) = resident_mb("VmHWM:") {
        println!("# peak resident memory of the process: {mb:.0} MB");
    }
}
