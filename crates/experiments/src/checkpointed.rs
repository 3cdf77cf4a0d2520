//! The observer of a long retraining run: a progress bar, the device's random stream reseeded at
//! every epoch, and a checkpoint unit written after every epoch, so that a killed run resumes to
//! exactly the numbers of an uninterrupted one. The ConvAI2 runner and `adaptable retrain` use it.

use adaptable_meta::MetaError;
use adaptable_meta::checkpoint::CheckpointDir;
use adaptable_meta::retrain::{RetrainObserver, RetrainState};
use burn::module::Module;
use burn::tensor::Device;
use indicatif::ProgressBar;

use crate::seed::derive_seed;

/// Progress, reseeding and per-epoch checkpoints of one retraining run.
pub struct CheckpointedRun {
    checkpoints: CheckpointDir,
    bar: ProgressBar,
    device: Device,
    seed: u64,
    stream: String,
}

impl CheckpointedRun {
    /// Saves into `checkpoints` and counts optimizer steps on `bar`. Before epoch `e` trains, the
    /// device's random stream (dropout) is seeded from `seed`, `stream` (e.g. the method's id) and
    /// `e − 1`, so that an epoch draws the same numbers whether or not the run was resumed before it.
    pub fn new(
        checkpoints: CheckpointDir,
        bar: ProgressBar,
        device: &Device,
        seed: u64,
        stream: &str,
    ) -> Self {
        Self {
            checkpoints,
            bar,
            device: device.clone(),
            seed,
            stream: stream.to_string(),
        }
    }

    /// The progress bar (to finish or clear it when the run ends).
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl<M: Module> RetrainObserver<M> for CheckpointedRun {
    fn on_epoch_start(&mut self, epoch: usize) {
        let epochs_done = (epoch - 1).to_string();
        self.device.seed(derive_seed(
            self.seed,
            &["retrain-epoch", &self.stream, &epochs_done],
        ));
    }

    fn on_step(&mut self, _step: usize) {
        self.bar.inc(1);
    }

    fn on_epoch(&mut self, state: &RetrainState<M>) -> Result<(), MetaError> {
        self.checkpoints.save(state)
    }
}
