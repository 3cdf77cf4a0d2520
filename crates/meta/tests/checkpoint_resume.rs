//! Checkpoints of a retraining run: a crash at any write of any epoch's checkpoint resumes to the
//! same run, the newest and the best epoch are kept, and a damaged checkpoint is an error with its
//! cause.

mod tiny;

use std::{
    error::Error as _,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, Once,
        atomic::{AtomicUsize, Ordering},
    },
};

use adaptable_meta::{
    MetaError,
    checkpoint::{CheckpointDir, WriteHook},
    retrain::{
        EpochRecord, RetrainConfig, RetrainMethod, RetrainObserver, RetrainState, prepare, retrain,
    },
};
use burn::tensor::Device;
use tiny::{Task, Tiny, config, device, task, tiny, values};

const EPOCHS: usize = 4;
const TASKS: u64 = 3;

/// The device's random stream is shared by the tests of this binary, which run on parallel threads;
/// a test that compares two runs holds this lock so that no other test draws in between.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The panic payload of a simulated crash (other panics are test failures and are reported).
struct InjectedCrash;

fn quiet_injected_crashes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<InjectedCrash>().is_none() {
                default(info);
            }
        }));
    });
}

/// A hook that "crashes" (panics with [`InjectedCrash`]) right after the `n`-th write.
fn crash_after(n: usize) -> WriteHook {
    let count = AtomicUsize::new(0);
    Arc::new(move |_: &Path| {
        if count.fetch_add(1, Ordering::SeqCst) + 1 == n {
            std::panic::panic_any(InjectedCrash);
        }
    })
}

/// Reseeds every epoch (as a run with dropout must) and checkpoints it; optionally stops the run
/// with its own error after an epoch.
struct Saving {
    checkpoints: CheckpointDir,
    device: Device,
    stop_after: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("stopped after epoch {0}")]
struct Stopped(usize);

impl RetrainObserver<Tiny> for Saving {
    fn on_epoch_start(&mut self, epoch: usize) {
        self.device.seed(1000 + epoch as u64);
    }

    fn on_epoch(&mut self, state: &RetrainState<Tiny>) -> Result<(), MetaError> {
        self.checkpoints.save(state)?;
        match self.stop_after {
            Some(epoch) if epoch == state.epochs_done() => {
                Err(MetaError::Observer(Box::new(Stopped(epoch))))
            }
            _ => Ok(()),
        }
    }
}

fn run_config() -> RetrainConfig {
    let mut cfg = config();
    cfg.optim.epochs = EPOCHS;
    cfg.lora.dropout = 0.2;
    cfg
}

fn tasks(device: &Device) -> Vec<Task> {
    (0..TASKS).map(|s| task(s, device)).collect()
}

fn prepared(device: &Device) -> Tiny {
    prepare(
        tiny(device),
        RetrainMethod::LoraMl,
        TASKS as usize,
        &run_config(),
        device,
    )
    .unwrap()
}

/// What a run ends with: its records, its best epoch and the best model's weights.
#[derive(Debug, PartialEq)]
struct Ending {
    history: Vec<EpochRecord>,
    best_epoch: usize,
    weights: Vec<Vec<f32>>,
}

fn weights(model: &Tiny) -> Vec<Vec<f32>> {
    let mut w = vec![values(model.base.base.weight.val())];
    for t in 0..TASKS as usize {
        w.push(values(model.base.lora_a[t].val()));
        w.push(values(model.base.lora_b[t].val()));
        w.push(values(model.heads[t].weight.val()));
    }
    w
}

/// Runs (or resumes, from what `checkpoints` holds) to the end.
fn run(checkpoints: CheckpointDir, stop_after: Option<usize>) -> Result<Ending, MetaError> {
    let device = device();
    let prepared = prepared(&device);
    let resume = checkpoints.load(&prepared, run_config().optim.optimizer())?;
    let mut observer = Saving {
        checkpoints,
        device: device.clone(),
        stop_after,
    };
    let outcome = retrain(
        prepared,
        &tasks(&device),
        RetrainMethod::LoraMl,
        &run_config(),
        &mut observer,
        resume,
    )?;
    Ok(Ending {
        history: outcome.history,
        best_epoch: outcome.best_epoch,
        weights: weights(&outcome.best),
    })
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("adaptable-meta-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_crash_at_any_write_of_any_epoch_resumes_to_the_same_run() {
    let _serial = exclusive();
    quiet_injected_crashes();
    let reference_dir = scratch("reference");
    let reference = run(CheckpointDir::new(&reference_dir), None).unwrap();
    assert_eq!(reference.history.len(), EPOCHS);

    let mut crash_points = 0;
    for n in 1.. {
        let dir = scratch(&format!("crash{n}"));
        let crashed = catch_unwind(AssertUnwindSafe(|| {
            run(
                CheckpointDir::new(&dir).with_write_hook(crash_after(n)),
                None,
            )
        }));
        match crashed {
            Err(payload) => assert!(payload.is::<InjectedCrash>(), "write {n}: a real panic"),
            Ok(ending) => {
                // Past the last write: nothing was interrupted.
                assert_eq!(ending.unwrap(), reference);
                std::fs::remove_dir_all(&dir).unwrap();
                break;
            }
        }
        crash_points += 1;
        // What a crash leaves: complete epochs, and hidden leftovers that no reader takes for one.
        for name in entries(&dir) {
            let complete = name.strip_prefix("epoch-").is_some_and(|d| d.len() == 4);
            let leftover = name.starts_with(".epoch-")
                && (name.ends_with(".partial") || name.ends_with(".stale"));
            assert!(complete || leftover, "crash after write {n}: {name}");
        }
        let resumed = run(CheckpointDir::new(&dir), None).unwrap();
        assert_eq!(resumed, reference, "crash after write {n}");
        // The newest and the best epoch survive. (A crash after the last commit may leave an
        // older epoch or a leftover that only a later save would remove; never one that is read.)
        let on_disk = entries(&dir);
        for kept in [EPOCHS, reference.best_epoch] {
            let name = format!("epoch-{kept:04}");
            assert!(
                on_disk.contains(&name),
                "crash after write {n}: {on_disk:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Every epoch writes at least a directory, three files and a rename.
    assert!(
        crash_points >= 5 * EPOCHS,
        "only {crash_points} crash points"
    );
    std::fs::remove_dir_all(reference_dir).unwrap();
}

#[test]
fn a_stopped_run_resumes_from_each_epoch_with_its_best_model() {
    let _serial = exclusive();
    let reference_dir = scratch("straight");
    let reference = run(CheckpointDir::new(&reference_dir), None).unwrap();
    let dir = scratch("stopped");
    for epoch in 1..EPOCHS {
        let stopped = run(CheckpointDir::new(&dir), Some(epoch)).unwrap_err();
        let MetaError::Observer(source) = &stopped else {
            panic!("not the observer's error: {stopped}");
        };
        assert_eq!(source.to_string(), format!("stopped after epoch {epoch}"));
        assert!(stopped.source().is_some());
        assert_eq!(
            CheckpointDir::new(&dir).newest_epoch().unwrap(),
            Some(epoch)
        );
    }
    assert_eq!(run(CheckpointDir::new(&dir), None).unwrap(), reference);
    let device = device();
    let (best, best_epoch) = CheckpointDir::new(&dir)
        .load_best(&prepared(&device))
        .unwrap()
        .unwrap();
    assert_eq!(best_epoch, reference.best_epoch);
    assert_eq!(weights(&best), reference.weights);
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(reference_dir).unwrap();
}

#[test]
fn leftovers_of_crashes_are_ignored_then_removed() {
    let _serial = exclusive();
    let dir = scratch("leftovers");
    run(CheckpointDir::new(&dir), Some(1)).unwrap_err();
    // A half-written next epoch and a half-deleted old one, as crashes leave them.
    std::fs::create_dir_all(dir.join(".epoch-0002.partial")).unwrap();
    std::fs::write(dir.join(".epoch-0002.partial/model.bpk"), b"half").unwrap();
    std::fs::create_dir_all(dir.join(".epoch-0007.stale")).unwrap();
    assert_eq!(CheckpointDir::new(&dir).newest_epoch().unwrap(), Some(1));
    run(CheckpointDir::new(&dir), None).unwrap();
    assert!(
        entries(&dir).iter().all(|e| e.starts_with("epoch-")),
        "{:?}",
        entries(&dir)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_damaged_checkpoint_is_an_error_naming_the_file_with_its_cause() {
    let _serial = exclusive();
    let dir = scratch("damaged");
    run(CheckpointDir::new(&dir), Some(2)).unwrap_err();
    let device = device();
    let optimizer = || run_config().optim.optimizer();

    std::fs::write(dir.join("epoch-0002/state.json"), b"{ not json").unwrap();
    let err = CheckpointDir::new(&dir)
        .load(&prepared(&device), optimizer())
        .err()
        .expect("a damaged state.json must not load");
    assert!(matches!(err, MetaError::CheckpointState { .. }), "{err}");
    assert!(err.to_string().contains("epoch-0002/state.json"), "{err}");
    assert!(err.source().is_some());

    std::fs::remove_dir_all(dir.join("epoch-0002")).unwrap();
    std::fs::write(dir.join("epoch-0001/model.bpk"), b"truncated").unwrap();
    let err = CheckpointDir::new(&dir)
        .load(&prepared(&device), optimizer())
        .err()
        .expect("a damaged model must not load");
    assert!(matches!(err, MetaError::CheckpointRecord { .. }), "{err}");
    assert!(err.to_string().contains("epoch-0001/model.bpk"), "{err}");
    assert!(err.source().is_some());
    std::fs::remove_dir_all(dir).unwrap();
}
