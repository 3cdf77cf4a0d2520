//! Checkpoints of a retraining run that a crash can never leave half-written.
//!
//! One finished epoch is one unit: a directory `epoch-NNNN/` holding the model (`model.bpk`), the
//! optimizer (`optimizer.bpk`) and the bookkeeping (`state.json`: optimizer steps, every epoch's
//! record, the best epoch). It is written under a temporary name (`.epoch-NNNN.partial/`), every file
//! flushed to disk, and then renamed: a reader sees the whole epoch or none of it. The newest complete
//! directory is the run's state; the best model is the `model.bpk` of the best epoch's directory, which
//! is therefore kept while older directories are removed, and only after the new one is committed.
//!
//! A rerun after a crash resumes from the newest complete epoch; a `.partial` directory (a crash while
//! writing) or `.stale` directory (a crash while removing an old epoch) is ignored and cleaned up by the
//! next [`CheckpointDir::save`]. The epoch that was being written is simply trained again, from the
//! same state, with the same random streams, so the run ends with the same numbers.
//!
//! ```no_run
//! # fn demo<M: adaptable_meta::MetaModel>(prepared: M, state: adaptable_meta::retrain::RetrainState<M>)
//! # -> Result<(), adaptable_meta::MetaError> {
//! use adaptable_meta::{checkpoint::CheckpointDir, retrain::adamw_optimizer};
//!
//! let checkpoints = CheckpointDir::new("results/run/checkpoint");
//! checkpoints.save(&state)?; // after an epoch (a `RetrainObserver` does this)
//! let resumed = checkpoints.load(&prepared, adamw_optimizer(0.01))?; // None: start afresh
//! # Ok(()) }
//! ```

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use burn::{module::Module, optim::ModuleOptimizer, tensor::Bytes};
use serde::{Deserialize, Serialize};

use crate::{
    MetaError,
    retrain::{EpochRecord, RetrainState},
};

/// Called with the path after every change a checkpoint makes on disk (a file written and flushed, a
/// directory created, renamed or removed). The library never reads the environment; a program can
/// use the hook for progress, auditing, or fault injection in crash tests.
pub type WriteHook = Arc<dyn Fn(&Path) + Send + Sync>;

const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";
const EPOCH_PREFIX: &str = "epoch-";
const PARTIAL_SUFFIX: &str = ".partial";
const STALE_SUFFIX: &str = ".stale";

/// The bookkeeping of one epoch's unit (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EpochState {
    /// Epochs finished (the directory's number).
    epoch: usize,
    /// Optimizer steps taken so far.
    step: usize,
    /// The best epoch so far (0: none).
    best_epoch: usize,
    /// One record per finished epoch.
    history: Vec<EpochRecord>,
}

/// A directory of per-epoch checkpoints of one retraining run (see the [module docs](self)).
#[derive(Clone)]
pub struct CheckpointDir {
    root: PathBuf,
    hook: Option<WriteHook>,
}

impl std::fmt::Debug for CheckpointDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointDir")
            .field("root", &self.root)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl CheckpointDir {
    /// Checkpoints under `root` (created on the first save).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            hook: None,
        }
    }

    /// Calls `hook` after every change on disk (see [`WriteHook`]).
    pub fn with_write_hook(mut self, hook: WriteHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The directory holding the epoch directories.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of epoch `epoch`'s unit.
    pub fn epoch_dir(&self, epoch: usize) -> PathBuf {
        self.root.join(epoch_name(epoch))
    }

    /// Commits `state` (after its last finished epoch) as one unit, then removes the epochs that are
    /// neither the newest nor the best. A crash at any point leaves the previous unit or this one.
    pub fn save<M: Module>(&self, state: &RetrainState<M>) -> Result<(), MetaError> {
        let epoch = state.epochs_done();
        let best_epoch = state.best.1;
        self.create_dir_all(&self.root)?;
        let partial = self
            .root
            .join(format!(".{}{PARTIAL_SUFFIX}", epoch_name(epoch)));
        if partial.exists() {
            self.remove_dir_all(&partial)?;
        }
        self.create_dir(&partial)?;
        let model = record_bytes(state.model.clone().into_record().into_bytes(), &partial)?;
        self.write_file(&partial.join(MODEL), &model)?;
        let optimizer = record_bytes(state.optimizer.into_bytes(), &partial)?;
        self.write_file(&partial.join(OPTIMIZER), &optimizer)?;
        let bookkeeping = EpochState {
            epoch,
            step: state.step,
            best_epoch,
            history: state.history.clone(),
        };
        let json = serde_json::to_vec_pretty(&bookkeeping).map_err(|source| {
            MetaError::CheckpointState {
                path: partial.join(STATE),
                source,
            }
        })?;
        self.write_file(&partial.join(STATE), &json)?;
        sync_dir(&partial)?;
        let target = self.epoch_dir(epoch);
        if target.exists() {
            // Only when the directory was edited by hand: the newest unit is always the one resumed,
            // so an existing unit of this epoch is older than the state being saved.
            self.discard(&target)?;
        }
        self.rename(&partial, &target)?;
        sync_dir(&self.root)?;
        self.prune(epoch, best_epoch)
    }

    /// The newest complete unit as a [`RetrainState`], or `None` when no epoch was committed.
    /// `prepared` is the model the run started from (its structure receives the saved weights; it is
    /// also the best model while no epoch has been best) and `optimizer` a fresh optimizer of the
    /// run's kind, which receives the saved state.
    pub fn load<M: Module>(
        &self,
        prepared: &M,
        optimizer: ModuleOptimizer,
    ) -> Result<Option<RetrainState<M>>, MetaError> {
        let Some(epoch) = self.newest_epoch()? else {
            return Ok(None);
        };
        let dir = self.epoch_dir(epoch);
        let bookkeeping = read_state(&dir, epoch)?;
        let model = load_model(prepared, &dir.join(MODEL))?;
        let path = dir.join(OPTIMIZER);
        let optimizer = optimizer
            .load(&path)
            .map_err(|source| MetaError::CheckpointRecord { path, source })?;
        let best = self.best_model(prepared, &model, &bookkeeping)?;
        Ok(Some(RetrainState {
            model,
            optimizer,
            step: bookkeeping.step,
            history: bookkeeping.history,
            best: (best, bookkeeping.best_epoch),
        }))
    }

    /// The best model of the newest complete unit and its epoch (0: no epoch was better than the
    /// prepared model), or `None` when no epoch was committed. Cheaper than [`load`](Self::load): the
    /// optimizer is not read.
    pub fn load_best<M: Module>(&self, prepared: &M) -> Result<Option<(M, usize)>, MetaError> {
        let Some(epoch) = self.newest_epoch()? else {
            return Ok(None);
        };
        let bookkeeping = read_state(&self.epoch_dir(epoch), epoch)?;
        let best = match bookkeeping.best_epoch {
            0 => prepared.clone(),
            best => load_model(prepared, &self.epoch_dir(best).join(MODEL))?,
        };
        Ok(Some((best, bookkeeping.best_epoch)))
    }

    /// The number of the newest complete unit (`None`: none yet).
    pub fn newest_epoch(&self) -> Result<Option<usize>, MetaError> {
        Ok(self.units()?.into_iter().max())
    }

    /// The epochs of every complete unit on disk, in directory order.
    fn units(&self) -> Result<Vec<usize>, MetaError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io_error(&self.root, source)),
        };
        let mut epochs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io_error(&self.root, source))?;
            if let Some(epoch) = entry.file_name().to_str().and_then(parse_epoch_name) {
                epochs.push(epoch);
            }
        }
        Ok(epochs)
    }

    fn best_model<M: Module>(
        &self,
        prepared: &M,
        model: &M,
        bookkeeping: &EpochState,
    ) -> Result<M, MetaError> {
        match bookkeeping.best_epoch {
            0 => Ok(prepared.clone()),
            best if best == bookkeeping.epoch => Ok(model.clone()),
            best => load_model(prepared, &self.epoch_dir(best).join(MODEL)),
        }
    }

    /// Removes every unit that is neither `newest` nor `best`, and leftovers of interrupted saves.
    fn prune(&self, newest: usize, best: usize) -> Result<(), MetaError> {
        let entries = fs::read_dir(&self.root).map_err(|source| io_error(&self.root, source))?;
        let mut doomed = Vec::new();
        let mut leftovers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io_error(&self.root, source))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match parse_epoch_name(name) {
                Some(epoch) if epoch != newest && epoch != best => doomed.push(entry.path()),
                Some(_) => {}
                None if is_leftover(name) => leftovers.push(entry.path()),
                None => {}
            }
        }
        doomed.sort();
        leftovers.sort();
        for dir in doomed {
            self.discard(&dir)?;
        }
        for dir in leftovers {
            self.remove_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Takes a unit out of the set of complete ones (one rename), then deletes it: a crash halfway
    /// through the deletion leaves a `.stale` directory that no reader mistakes for an epoch.
    fn discard(&self, dir: &Path) -> Result<(), MetaError> {
        let mut name = dir.file_name().unwrap_or_default().to_os_string();
        name.push(STALE_SUFFIX);
        let stale = dir.with_file_name(format!(".{}", name.to_string_lossy()));
        if stale.exists() {
            self.remove_dir_all(&stale)?;
        }
        self.rename(dir, &stale)?;
        self.remove_dir_all(&stale)
    }

    fn notify(&self, path: &Path) {
        if let Some(hook) = &self.hook {
            hook(path);
        }
    }

    fn create_dir_all(&self, dir: &Path) -> Result<(), MetaError> {
        if dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        self.notify(dir);
        Ok(())
    }

    fn create_dir(&self, dir: &Path) -> Result<(), MetaError> {
        fs::create_dir(dir).map_err(|source| io_error(dir, source))?;
        self.notify(dir);
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), MetaError> {
        let mut file = fs::File::create(path).map_err(|source| io_error(path, source))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|source| io_error(path, source))?;
        self.notify(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), MetaError> {
        fs::rename(from, to).map_err(|source| io_error(to, source))?;
        self.notify(to);
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> Result<(), MetaError> {
        fs::remove_dir_all(dir).map_err(|source| io_error(dir, source))?;
        self.notify(dir);
        Ok(())
    }
}

fn epoch_name(epoch: usize) -> String {
    format!("{EPOCH_PREFIX}{epoch:04}")
}

/// `epoch-0012` → 12; anything else (temporary and stale directories, other files) → `None`.
fn parse_epoch_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix(EPOCH_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `.epoch-0012.partial` or `.epoch-0012.stale`: left by a crash, never read.
fn is_leftover(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| {
            rest.strip_suffix(PARTIAL_SUFFIX)
                .or_else(|| rest.strip_suffix(STALE_SUFFIX))
        })
        .and_then(parse_epoch_name)
        .is_some()
}

fn io_error(path: &Path, source: std::io::Error) -> MetaError {
    MetaError::CheckpointIo {
        path: path.to_path_buf(),
        source,
    }
}

fn record_bytes(
    bytes: Result<Bytes, burn::store::RecordError>,
    dir: &Path,
) -> Result<Bytes, MetaError> {
    bytes.map_err(|source| MetaError::CheckpointRecord {
        path: dir.to_path_buf(),
        source,
    })
}

/// Makes the directory's entries (files created, renamed) durable, not only the files' contents.
fn sync_dir(dir: &Path) -> Result<(), MetaError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| io_error(dir, source))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn read_state(dir: &Path, epoch: usize) -> Result<EpochState, MetaError> {
    let path = dir.join(STATE);
    let text = fs::read(&path).map_err(|source| io_error(&path, source))?;
    let state: EpochState =
        serde_json::from_slice(&text).map_err(|source| MetaError::CheckpointState {
            path: path.clone(),
            source,
        })?;
    let reason = if state.epoch != epoch {
        Some(format!(
            "records epoch {} in directory {epoch}",
            state.epoch
        ))
    } else if state.history.len() != epoch {
        Some(format!(
            "has {} epoch records for epoch {epoch}",
            state.history.len()
        ))
    } else if state.best_epoch > epoch {
        Some(format!(
            "names best epoch {} after epoch {epoch}",
            state.best_epoch
        ))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(MetaError::CheckpointInvalid { path, reason }),
        None => Ok(state),
    }
}

/// Loads saved weights into a copy of `prepared`. A loaded module comes back with its training flags
/// off (dropout disabled); `train` restores them so that resumed epochs match an uninterrupted run.
fn load_model<M: Module>(prepared: &M, path: &Path) -> Result<M, MetaError> {
    prepared
        .clone()
        .try_load_file(path)
        .map(Module::train)
        .map_err(|source| MetaError::CheckpointRecord {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_epoch_directories_count() {
        assert_eq!(parse_epoch_name("epoch-0003"), Some(3));
        assert_eq!(parse_epoch_name("epoch-12345"), Some(12345));
        for name in [
            ".epoch-0003.partial",
            "epoch-",
            "epoch-3a",
            "epoch-0003.partial",
            "state.json",
        ] {
            assert_eq!(parse_epoch_name(name), None, "{name}");
        }
        assert!(is_leftover(".epoch-0003.partial") && is_leftover(".epoch-0003.stale"));
        assert!(!is_leftover(".epoch-0003") && !is_leftover(".hidden.partial"));
    }
}
