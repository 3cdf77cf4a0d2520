//! The three training steps of the ConvAI2 experiment, timed: a standard-retraining step (every
//! weight, one head), a LoRA-ML step (the base plus one task's adapters on the six encoder linears
//! and its head, the task cycling over T), and a LoRA fine-tuning step (frozen base, one fresh
//! adapter and head). One batch is C contexts × K candidates × L tokens scored as (context,
//! candidate) pairs with the 2-way cross-entropy of every pair, then one AdamW step: the protocol
//! of scripts/bench_train_torch.py, which runs the same steps in PyTorch.
//!
//! `cargo bench --workspace --bench train -- [--modes train-sr,train-lora-ml,train-lora-ft]
//! [--model DIR] [--contexts 8] [--candidates 20] [--seq 64] [--iters 20] [--warmup 3] [--tasks 10]
//! [--rank 8] [--lora-dropout 0.1] [--steps] [--interleave] [--padded]` (or `cargo xtask bench
//! train`, which also runs the PyTorch script and prints the ratios). The weights are MiniLM's
//! from `--model` (default: `$ADAPTABLE_MODELS_DIR/minilm`, else the workspace's models/minilm,
//! whichever directory `cargo bench` runs the bench from), or random with its shape when that
//! holds no weights (the shape name then reads `minilm-random`). Prints `BENCH shape=… mode=…
//! tokens_per_s=… ms_per_batch=…` with the
//! median of the timed steps, and the process's peak resident memory; `--steps` also prints every
//! step's time, minor page faults and resident memory (warm-up steps included).
//!
//! By default each mode runs its steps alone, one mode after the other (run one mode per process
//! for its peak memory). `--interleave` holds every mode's model at once and runs one step of each
//! in turn, then prints `RATIO` lines: each mode's step time over the first mode's, the geometric
//! mean of the per-round ratios with its 95 % interval. Steps run back to back see the same host,
//! so the ratio does not carry the host's drift between rounds (±10–30 % on our VMs).
//!
//! Every row has L real tokens unless `--padded`: then row r has L/2 + r mod (L/2 + 1) of them and
//! the batch is padded to L, as the experiment's batches are padded to their longest pair, so the
//! attention masks are exercised (the step time still counts the padded positions).

use std::path::PathBuf;
use std::time::Instant;

// As in the `adaptable` binary, whose workers run these steps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use adaptable_experiments::convai2::Moments;
use adaptable_meta::retrain::{RetrainConfig, RetrainMethod, adamw_optimizer, prepare, train_step};
use adaptable_meta::{MetaModel, TaskSlot};
use adaptable_models::{EncoderConfig, EncoderInput, LoraTargets, SequenceClassifierConfig};
use adaptable_text::{RankingBatch, TextBatch, TextModel, binary_labels};
use burn::optim::ModuleOptimizer;
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
    interleave: bool,
    padded: bool,
}

fn parse() -> Options {
    let mut o = Options {
        modes: ["train-sr", "train-lora-ml", "train-lora-ft"]
            .map(String::from)
            .to_vec(),
        model: adaptable_models::default_models_dir().join("minilm"),
        contexts: 8,
        candidates: 20,
        seq: 64,
        iters: 20,
        warmup: 3,
        tasks: 10,
        rank: 8,
        lora_dropout: 0.1,
        steps: false,
        interleave: false,
        padded: false,
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
            "--interleave" => o.interleave = true,
            "--padded" => o.padded = true,
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

/// One ranking batch of real-token ids (padded only with `--padded`), the gold candidate first.
fn batch(o: &Options, vocab: usize, device: &Device) -> TextBatch {
    let rows: Vec<Vec<u32>> = (0..o.contexts * o.candidates)
        .map(|r| {
            let len = if o.padded {
                o.seq / 2 + r % (o.seq / 2 + 1)
            } else {
                o.seq
            };
            (0..len)
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

/// One mode's model, optimizer and batch, stepped one training step at a time.
struct Runner {
    mode: String,
    model: Option<TextModel>,
    optimizer: ModuleOptimizer,
    batch: TextBatch,
    tasks: usize,
    slot: fn(usize) -> TaskSlot,
    steps: usize,
    times: Vec<f64>,
}

impl Runner {
    /// The runner of `mode`, or `None` (with a message) for an unknown mode.
    fn new(o: &Options, mode: &str, device: &Device) -> Option<(Self, &'static str)> {
        let (base, shape) = model(o, device);
        let vocab = base.classifier.encoder.config().vocab_size;
        let mut config = RetrainConfig::default();
        (config.lora.rank, config.lora.alpha, config.lora.dropout) =
            (o.rank, 2.0 * o.rank as f64, o.lora_dropout);
        let (model, tasks, slot): (TextModel, usize, fn(usize) -> TaskSlot) = match mode {
            "train-sr" => (
                prepare(base, RetrainMethod::Standard, 1, &config, device).expect("prepare"),
                1,
                |_| TaskSlot::SHARED,
            ),
            "train-lora-ml" => (
                prepare(base, RetrainMethod::LoraMl, o.tasks, &config, device).expect("prepare"),
                o.tasks,
                TaskSlot::adapter_and_head,
            ),
            "train-lora-ft" => (
                base.reset_task_modules(Some(&config.lora), 1, 1, device)
                    .expect("fresh adapter")
                    .freeze_base(),
                1,
                TaskSlot::adapter_and_head,
            ),
            other => {
                eprintln!("unknown mode {other:?} (train-sr, train-lora-ml, train-lora-ft)");
                return None;
            }
        };
        let runner = Self {
            mode: mode.to_string(),
            model: Some(model),
            optimizer: adamw_optimizer(0.01),
            batch: batch(o, vocab, device),
            tasks,
            slot,
            steps: 0,
            times: Vec::with_capacity(o.iters),
        };
        Some((runner, shape))
    }

    /// Runs one step; its time counts from the `warmup`-th step on.
    fn step(&mut self, o: &Options) {
        let (i, t) = (self.steps, self.steps % self.tasks);
        let faults = minor_faults();
        let started = Instant::now();
        let (next, _) = train_step(
            self.model.take().expect("model"),
            &mut self.optimizer,
            1e-4,
            &self.batch,
            (self.slot)(t),
            ("bench", 0, i, t),
        )
        .expect("finite loss");
        let took = started.elapsed().as_secs_f64();
        self.model = Some(next);
        self.steps += 1;
        if i >= o.warmup {
            self.times.push(took);
        }
        if o.steps {
            let faults = minor_faults().zip(faults).map(|(b, a)| b - a);
            println!(
                "# {} step {i}: {:.0} ms, {} minor faults, resident {:.0} MB",
                self.mode,
                took * 1e3,
                faults.map_or("?".into(), |f| f.to_string()),
                resident_mb("VmRSS:").unwrap_or(f64::NAN)
            );
        }
    }

    /// The median timed step, in seconds.
    fn median(&self) -> f64 {
        let mut times = self.times.clone();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }
}

/// Runs the warm-up and timed rounds, one step of each runner per round.
fn run_rounds(runners: &mut [Runner], o: &Options) {
    for _ in 0..o.warmup + o.iters {
        for runner in runners.iter_mut() {
            runner.step(o);
        }
    }
}

/// Per-round ratios of `other`'s step time to `first`'s from interleaved runs: the steps of one
/// round ran back to back, so the host's drift between rounds cancels. Prints their geometric mean
/// with a 95 % t interval (on their logarithms) and the range of single rounds.
fn print_ratio(first: &Runner, other: &Runner) {
    let logs: Vec<f64> = first
        .times
        .iter()
        .zip(&other.times)
        .map(|(a, b)| (b / a).ln())
        .collect();
    let Some(m) = Moments::of(&logs) else { return };
    let (lo, hi) = m.t_interval_95().unwrap_or((m.mean, m.mean));
    let (min, max) = logs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    println!(
        "RATIO {} / {} = {:.3} (95 % CI {:.3}–{:.3}; rounds {:.3}–{:.3}; n = {})",
        other.mode,
        first.mode,
        m.mean.exp(),
        lo.exp(),
        hi.exp(),
        min.exp(),
        max.exp(),
        m.n
    );
}

fn main() {
    let o = parse();
    let device = Device::default().autodiff();
    device.seed(0);
    let tokens = o.contexts * o.candidates * o.seq;
    println!(
        "# {} contexts × {} candidates × {} tokens{}, {} warm-up and {} timed steps{}",
        o.contexts,
        o.candidates,
        o.seq,
        if o.padded { " (padded rows)" } else { "" },
        o.warmup,
        o.iters,
        if o.interleave {
            ", modes interleaved step by step"
        } else {
            ""
        }
    );
    let report = |runner: &Runner, shape: &str| {
        let median = runner.median();
        println!(
            "BENCH shape={shape} mode={} tokens_per_s={:.0} ms_per_batch={:.1}",
            runner.mode,
            tokens as f64 / median,
            median * 1e3
        );
    };
    if o.interleave {
        // Every mode's model lives at once; each round runs one step of every mode in turn.
        let (mut runners, shapes): (Vec<Runner>, Vec<&str>) = o
            .modes
            .iter()
            .filter_map(|m| Runner::new(&o, m, &device))
            .unzip();
        run_rounds(&mut runners, &o);
        for (runner, shape) in runners.iter().zip(&shapes) {
            report(runner, shape);
        }
        if let Some((first, others)) = runners.split_first() {
            for other in others {
                print_ratio(first, other);
            }
        }
    } else {
        for mode in &o.modes {
            let Some((mut runner, shape)) = Runner::new(&o, mode, &device) else {
                continue;
            };
            run_rounds(std::slice::from_mut(&mut runner), &o);
            report(&runner, shape);
        }
    }
    if let Some(mb) = resident_mb("VmHWM:") {
        println!("# peak resident memory of the process: {mb:.0} MB");
    }
}
