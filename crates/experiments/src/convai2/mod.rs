//! The ConvAI2 language experiment (paper Table 1): retrain an encoder on persona tasks with SR,
//! LoRA-ML, last-layer-ML or Reptile, fine-tune fresh LoRA adapters or heads on unseen personas,
//! report hits@1 with paired statistics.

mod data;
mod model;
mod outputs;
mod paired;
mod profile;
mod runner;

pub use data::{Batching, ConvaiBatch, ConvaiTask, PairEncoder};
pub use model::{ConvaiModel, binary_labels};
pub use outputs::{
    FINETUNE_EPOCHS_HEADER, FinetuneKey, FinetuneRecord, RETRAIN_HEADER, RetrainKey, RetrainRecord,
    SUMMARY_HEADER, SummaryRow, finetune_id, prior_loss, read_summary, write_csvs, write_report,
};
pub use paired::{Cell, Moments, PairedDifference, student_t_cdf, student_t_quantile};
pub use profile::{
    Convai2Profile, CostSection, DataSection, FinetuneSection, LoraMlRank, ModelSection, PROFILES,
    PairFormatSetting, Pairing,
};
pub use runner::{
    Convai2Run, Convai2RunOptions, Convai2RunSummary, RetrainUnit, load_data, plan_units,
    run_profile,
};

use std::path::Path;

use crate::ExperimentError;

/// Writes the CSVs of `summary` and the report computed from them (`table.md`, figures) into
/// `dir`; returns the table.
pub fn write_outputs(dir: &Path, summary: &Convai2RunSummary) -> Result<String, ExperimentError> {
    write_csvs(dir, summary)?;
    let (runs, done) = summary.runs;
    let mut notes = summary.notes.clone();
    if done < runs {
        notes.push_str(&format!(
            "\n\n**Incomplete: {done} of {runs} runs done**; run the remaining seeds (`--seed-range`) into the same directory."
        ));
    }
    crate::io::write_atomic(&dir.join(NOTES_FILE), notes.as_bytes())?;
    write_report(dir, &notes)
}

/// The run's notes (model, pair format, cut pairs, completeness), kept next to the CSVs so that
/// `adaptable convai2 report` can repeat them.
pub const NOTES_FILE: &str = "notes.md";

/// Recomputes `table.md` and the figures in `dir` from its CSVs (and `notes.md`, if present).
pub fn report_dir(dir: &Path) -> Result<String, ExperimentError> {
    let notes = std::fs::read_to_string(dir.join(NOTES_FILE)).unwrap_or_default();
    write_report(dir, notes.trim())
}
