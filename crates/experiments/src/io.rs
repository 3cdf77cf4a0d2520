//! File output that never leaves a half-written result behind.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use crate::ExperimentError;

/// Writes `bytes` to `path` atomically: into a temporary file in the same directory, flushed to disk,
/// then renamed over the target. Readers see either the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExperimentError> {
    let tmp = temp_path(path);
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ExperimentError::Io { path: p, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), ExperimentError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ExperimentError::Results {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ExperimentError> {
    let text = fs::read_to_string(path).map_err(|source| ExperimentError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ExperimentError::Results {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The temporary sibling used by [`write_atomic`] and by writers that need a path (figures).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Creates `dir` (and parents) and checks that files can be written in it.
pub fn ensure_writable_dir(dir: &Path) -> Result<(), ExperimentError> {
    fs::create_dir_all(dir).map_err(|source| ExperimentError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let probe = dir.join(format!(".write-probe.{}", std::process::id()));
    fs::write(&probe, b"").map_err(|source| ExperimentError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let _ = fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("adaptable-io-{}", std::process::id()));
        let path = dir.join("sub/out.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert!(!temp_path(&path).exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
