//! Encoder throughput: forward and forward+backward tokens/s at batch 32 × sequence 64 for the
//! all-MiniLM-L6-v2 and roberta-base shapes, random weights, dropout off, default CPU backend.
//!
//! `cargo bench --workspace --bench encoder -- [--shapes minilm,roberta-base] [--iters N]
//! [--batch B] [--seq L] [--profile] [--backend flex|ndarray|wgpu]` (or `cargo xtask bench encoder`;
//! ndarray and wgpu need the crate built with that feature).
//! Each result is printed as a `BENCH shape=… mode=… tokens_per_s=… ms_per_batch=… gflops=…` line;
//! `--profile` adds breakdowns of the forward and the forward+backward pass by operation.

use std::time::Instant;

// As in the `adaptable` binary: without a caching allocator, page faults on freshly mapped
// activation buffers cost 10–25 % of the time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use adaptable_models::fused::{
    attention_rows, attention_train, gelu_exact, layer_norm as fused_layer_norm,
};
use adaptable_models::{EncoderConfig, EncoderInput};
use burn::nn::DropoutConfig;
use burn::tensor::{Device, Distribution, Tensor};

struct Options {
    shapes: Vec<String>,
    iters: usize,
    batch: usize,
    seq: usize,
    profile: bool,
    backend: String,
}

fn parse() -> Options {
    let mut o = Options {
        shapes: vec!["minilm".into(), "roberta-base".into()],
        iters: 5,
        batch: 32,
        seq: 64,
        profile: false,
        backend: "flex".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match a.as_str() {
            "--shapes" => o.shapes = value().split(',').map(String::from).collect(),
            "--iters" => o.iters = value().parse().unwrap_or(o.iters),
            "--batch" => o.batch = value().parse().unwrap_or(o.batch),
            "--seq" => o.seq = value().parse().unwrap_or(o.seq),
            "--profile" => o.profile = true,
            "--backend" => o.backend = value(),
            // cargo bench passes --bench; anything else unknown is ignored too.
            _ => {}
        }
    }
    o
}

fn config(shape: &str) -> Option<EncoderConfig> {
    let c = match shape {
        "minilm" => EncoderConfig::minilm_l6(),
        "roberta-base" => EncoderConfig::roberta_base(),
        _ => return None,
    };
    Some(c.with_dropout(0.0))
}

/// Forward FLOPs per batch: projections and feed-forward (2·tokens·(4h² + 2hI)) plus attention
/// scores and mixing (4·tokens·L·h), per layer.
fn forward_flops(c: &EncoderConfig, batch: usize, seq: usize) -> f64 {
    let (h, i, n) = (
        c.hidden_size as f64,
        c.intermediate_size as f64,
        c.num_hidden_layers as f64,
    );
    let tokens = (batch * seq) as f64;
    n * (2.0 * tokens * (4.0 * h * h + 2.0 * h * i) + 4.0 * tokens * seq as f64 * h)
}

fn input(c: &EncoderConfig, batch: usize, seq: usize, device: &Device) -> EncoderInput {
    // Real-token ids away from the padding id; no padding so every position counts.
    let rows: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            (0..seq)
                .map(|s| (3 + (b * 131 + s * 17) % (c.vocab_size - 3)) as u32)
                .collect()
        })
        .collect();
    EncoderInput::pad(&rows, c.pad_token_id as u32, device).expect("valid batch")
}

fn time<F: FnMut()>(iters: usize, mut f: F) -> f64 {
    f(); // warm-up: allocations, thread pool, lazy parameter initialisation
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() / iters as f64
}

fn report(shape: &str, mode: &str, secs: f64, tokens: usize, flops: f64) {
    println!(
        "BENCH shape={shape} mode={mode} tokens_per_s={:.0} ms_per_batch={:.1} gflops={:.1}",
        tokens as f64 / secs,
        secs * 1e3,
        flops / secs / 1e9
    );
}

/// Finishes one profiled operation: reads the result back, or on an autodiff device runs the
/// backward pass of its sum.
fn finish<const D: usize>(y: Tensor<D>) {
    if y.is_autodiff() {
        let _ = y.sum().backward();
    } else {
        let _ = y.into_data();
    }
}

/// Times each operation of one layer in isolation at the benchmark's shapes and scales by the
/// number of layers: the forward pass on a plain device, forward+backward on an autodiff one
/// (inputs and weights then require gradients, and attention takes the training path).
fn profile(c: &EncoderConfig, batch: usize, seq: usize, iters: usize, device: &Device) {
    let (h, i, heads) = (c.hidden_size, c.intermediate_size, c.num_attention_heads);
    let n = c.num_hidden_layers as f64;
    let rows = batch * seq;
    let backward = device.is_autodiff();
    let leaf = |t: Tensor<2>| if backward { t.require_grad() } else { t };
    let rnd = |shape: [usize; 2]| {
        leaf(Tensor::<2>::random(
            shape,
            Distribution::Normal(0.0, 0.1),
            device,
        ))
    };
    let x = rnd([rows, h]);
    let (w_h, w_up, w_down) = (rnd([h, h]), rnd([h, i]), rnd([i, h]));
    let up = rnd([rows, i]);
    let row_bias = Tensor::<2>::zeros([batch, seq], device);
    let gamma = Tensor::<1>::ones([h], device);
    let beta = Tensor::<1>::zeros([h], device);
    let (gamma, beta) = if backward {
        (gamma.require_grad(), beta.require_grad())
    } else {
        (gamma, beta)
    };
    let bias = leaf(Tensor::<2>::zeros([1, h], device));
    let attention_name = if backward {
        "attention training kernel on projection rows"
    } else {
        "attention kernel on projection rows"
    };
    let no_dropout = DropoutConfig::new(0.0).init();
    let mut parts: Vec<(&str, f64)> = vec![
        (
            "4 h×h projections (q,k,v,out)",
            4.0 * time(iters, || finish(x.clone().matmul(w_h.clone()))),
        ),
        (
            "feed-forward up h×I",
            time(iters, || finish(x.clone().matmul(w_up.clone()))),
        ),
        (
            "feed-forward down I×h",
            time(iters, || finish(up.clone().matmul(w_down.clone()))),
        ),
        (
            attention_name,
            time(iters, || {
                // On the projection rows directly: no head split or merge.
                let (q, kv, bias) = (x.clone(), x.clone(), row_bias.clone());
                if backward {
                    finish(attention_train(q, kv.clone(), kv, bias, heads, &no_dropout))
                } else {
                    finish(attention_rows(q, kv.clone(), kv, bias, heads))
                }
            }),
        ),
        (
            "gelu (exact)",
            time(iters, || finish(gelu_exact(up.clone()))),
        ),
        (
            "2 LayerNorm + residual adds",
            2.0 * time(iters, || {
                let y = x.clone() + x.clone();
                finish(fused_layer_norm(y, gamma.clone(), beta.clone(), 1e-12))
            }),
        ),
        (
            "bias adds of the 6 linears",
            (4.0 + 2.0 + i as f64 / h as f64) * time(iters, || finish(x.clone() + bias.clone())),
        ),
    ];
    for p in &mut parts {
        p.1 *= n;
    }
    let total: f64 = parts.iter().map(|p| p.1).sum();
    println!(
        "PROFILE {} (per batch, {} layers, ops timed in isolation):",
        if backward {
            "forward+backward"
        } else {
            "forward"
        },
        c.num_hidden_layers
    );
    for (name, secs) in parts {
        println!(
            "PROFILE   {name:<44} {:>8.1} ms  {:>5.1} %",
            secs * 1e3,
            100.0 * secs / total
        );
    }
    println!("PROFILE   {:<44} {:>8.1} ms", "sum", total * 1e3);
}

/// The backend named on the command line, among those compiled in (flex by default,
/// `--features ndarray` for ndarray, `--features wgpu` for the default GPU).
#[allow(deprecated, unreachable_code)]
fn device(name: &str) -> Device {
    #[cfg(feature = "flex")]
    if name == "flex" {
        return Device::flex();
    }
    #[cfg(feature = "ndarray")]
    if name == "ndarray" {
        return Device::ndarray();
    }
    #[cfg(feature = "wgpu")]
    if name == "wgpu" {
        return Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    }
    panic!("backend {name:?} is not compiled in (features: ndarray, flex, wgpu)");
}

fn main() {
    let o = parse();
    let device = device(&o.backend);
    println!("# backend {}", o.backend);
    let tokens = o.batch * o.seq;
    for shape in &o.shapes {
        let Some(c) = config(shape) else {
            eprintln!("unknown shape {shape:?} (minilm, roberta-base)");
            continue;
        };
        let flops = forward_flops(&c, o.batch, o.seq);

        let encoder = c.init(&device).expect("valid config");
        let x = input(&c, o.batch, o.seq, &device);
        let fwd = time(o.iters, || {
            let _ = encoder.forward(&x, None).sum().into_data();
        });
        report(shape, "forward", fwd, tokens, flops);

        let train = device.clone().autodiff();
        let encoder = c.init(&train).expect("valid config");
        let x = input(&c, o.batch, o.seq, &train);
        let fb = time(o.iters, || {
            let grads = encoder.forward(&x, None).powi_scalar(2).mean().backward();
            let w = encoder.layers[0].attention.query.base.weight.val();
            let _ = w.grad(&grads).map(|g| g.into_data());
        });
        report(shape, "forward+backward", fb, tokens, 3.0 * flops);

        if o.profile {
            profile(&c, o.batch, o.seq, o.iters, &device);
            profile(&c, o.batch, o.seq, o.iters, &train);
        }
    }
}
