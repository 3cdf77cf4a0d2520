//! File output that never leaves a half-written result behind, and the one place every durable write
//! of the runners reports to (see [`set_write_hook`]).

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use adaptable_meta::checkpoint::WriteHook;

use crate::ExperimentError;

static HOOK: OnceLock<WriteHook> = OnceLock::new();

/// Installs a process-wide hook called with the path after every durable write of this crate: each
/// [`write_atomic`] (and figure) once its rename is done, and each step of the retraining checkpoints
/// the runners write (they pass [`write_hook`] to `adaptable_meta::checkpoint::CheckpointDir`).
/// Nothing is installed unless a program asks; the `adaptable` binary installs
/// [`abort_after_writes`] when `ADAPTABLE_FAULT_AFTER_WRITES` is set. Returns `false` (and changes
/// nothing) when a hook was installed before.
pub fn set_write_hook(hook: WriteHook) -> bool {
    HOOK.set(hook).is_ok()
}

/// The hook to hand to other writers (checkpoints): it calls the one installed with
/// [`set_write_hook`], if any.
pub fn write_hook() -> WriteHook {
    Arc::new(notify_write)
}

fn notify_write(path: &Path) {
    if let Some(hook) = HOOK.get() {
        hook(path);
    }
}

/// A hook that aborts the process (no destructors, no flushing: as a crash or `kill -9` would) right
/// after its `n`-th durable write, for tests of what a rerun makes of every possible crash point.
/// It prints the write it stops after on stderr first.
pub fn abort_after_writes(n: usize) -> WriteHook {
    let count = AtomicUsize::new(0);
    Arc::new(move |path: &Path| {
        let done = count.fetch_add(1, Ordering::SeqCst) + 1;
        if done == n {
            eprintln!(
                "fault injection: aborting after durable write {done} ({})",
                path.display()
            );
            std::process::abort();
        }
    })
}

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> ExperimentError + use<> {
    let p = p.to_path_buf();
    move |source| ExperimentError::Io { path: p, source }
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same directory, flushed to disk,
/// then renamed over the target. Readers see either the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExperimentError> {
    let tmp = temp_path(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    drop(file);
    commit_temp(&tmp, path)
}

/// Flushes the finished temporary file `tmp` to disk and renames it over `path`: the last step of
/// every atomic write, which the write hook sees.
pub fn commit_temp(tmp: &Path, path: &Path) -> Result<(), ExperimentError> {
    fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(tmp))?;
    fs::rename(tmp, path).map_err(io_err(path))?;
    notify_write(path);
    Ok(())
}

/// A 64-bit FNV-1a digest of `bytes`, as 16 hex digits: enough to tell whether a file is the one a
/// manifest names (it guards against stale or mixed files, not against tampering).
pub fn content_digest(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// The digests ([`content_digest`]) of the files `names` in `dir`, read back from disk: the part of a
/// manifest that ties it to exactly these files.
pub fn digest_files(
    dir: &Path,
    names: &[String],
) -> Result<BTreeMap<String, String>, ExperimentError> {
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            Ok((name.clone(), content_digest(&bytes)))
        })
        .collect()
}

/// Whether every file of `digests` is in `dir` with that digest (a manifest still describes the
/// directory: no file missing, replaced or half-rewritten by a later, interrupted run).
pub fn files_match(dir: &Path, digests: &BTreeMap<String, String>) -> bool {
    digests.iter().all(|(name, digest)| {
        fs::read(dir.join(name)).is_ok_and(|bytes| content_digest(&bytes) == *digest)
    })
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
    fn the_digest_is_fnv1a() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(content_digest(b""), "cbf29ce484222325");
        assert_eq!(content_digest(b"a"), "af63dc4c8601ec8c");
    }

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
