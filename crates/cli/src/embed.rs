//! `adaptable embed`: sentence embeddings from a pretrained encoder, one JSON array per text.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use adaptable_models::{
    ModelFiles, ModelsError, Pooling, TextTokenizer, default_models_dir, l2_normalize,
    load_pretrained_encoder,
};
use clap::ValueEnum;

use adaptable_experiments::ExperimentError;
use adaptable_experiments::device::Backend;

/// Pooling on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    /// Mean over real tokens (sentence-transformers' choice for all-MiniLM-L6-v2).
    Mean,
    /// The first token (`<s>` / `[CLS]`).
    Cls,
}

/// Arguments of `adaptable embed`.
///
/// With all-MiniLM-L6-v2, `--pooling mean --normalize` (the defaults of sentence-transformers)
/// reproduces its embeddings.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedArgs {
    /// Model directory with config.json, model.safetensors and tokenizer.json
    /// [default: $ADAPTABLE_MODELS_DIR/minilm or WORKSPACE/models/minilm].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// How token states become one vector.
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: PoolingArg,
    /// Divide every embedding by its L2 norm.
    #[arg(long)]
    pub normalize: bool,
    /// Longest token sequence; longer texts lose their end (all-MiniLM-L6-v2 was trained with 256).
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// Texts embedded per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Compute backend: flex, ndarray or wgpu (must be compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Texts to embed; without any, one text per line of standard input.
    pub texts: Vec<String>,
}

/// Runs `adaptable embed`: prints one JSON array of floats per input text, in input order.
pub fn run_embed(args: &EmbedArgs) -> Result<(), ExperimentError> {
    let device = args.device.parse::<Backend>()?.device()?;
    let dir = args
        .model
        .clone()
        .unwrap_or_else(|| default_models_dir().join("minilm"));
    let files = ModelFiles::in_dir(&dir);
    if !files.config.is_file() {
        return Err(ModelsError::InvalidArgument(format!(
            "{} has no config.json; run `cargo xtask fetch-model minilm` or pass --model DIR",
            dir.display()
        ))
        .into());
    }
    let texts = if args.texts.is_empty() {
        read_stdin_lines()?
    } else {
        args.texts.clone()
    };
    if texts.is_empty() {
        return Err(
            ModelsError::EmptyInput("no texts given (arguments or stdin lines)".into()).into(),
        );
    }
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?;
    let (encoder, _) = load_pretrained_encoder(&dir, None, &device)?;
    let max_len = args.max_len.min(encoder.config().max_sequence_length());
    let pooling = match args.pooling {
        PoolingArg::Mean => Pooling::Mean,
        PoolingArg::Cls => Pooling::Cls,
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for chunk in refs.chunks(args.batch_size.max(1)) {
        let input = tokenizer.encode_batch(chunk, max_len)?.to_input(&device)?;
        let hidden = encoder.forward(&input, None);
        let mut pooled = pooling.pool(hidden, &input.attention_mask);
        if args.normalize {
            pooled = l2_normalize(pooled);
        }
        let [rows, dim] = pooled.dims();
        let values = pooled
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| ModelsError::InvalidArgument(format!("cannot read embeddings: {e:?}")))?;
        for row in values.chunks(dim).take(rows) {
            let line = serde_json::to_string(row)
                .map_err(|e| ModelsError::InvalidArgument(format!("cannot serialise: {e}")))?;
            writeln!(out, "{line}").map_err(|source| ExperimentError::Io {
                path: PathBuf::from("<stdout>"),
                source,
            })?;
        }
    }
    Ok(())
}

fn read_stdin_lines() -> Result<Vec<String>, ExperimentError> {
    std::io::stdin()
        .lock()
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ExperimentError::Io {
            path: PathBuf::from("<stdin>"),
            source,
        })
}
