//! The Markdown report of the shallow suite (`docs/results/shallow.md`).

use std::fmt::Write as _;

use super::{SummaryRecord, curve_label, median_and_range};
use crate::linear::{Method, Sweep};

/// What the report is made from.
#[derive(Debug, Clone)]
pub struct ShallowReportInput {
    /// The summaries of each sweep that ran.
    pub sweeps: Vec<(Sweep, Vec<SummaryRecord>)>,
    /// Figure paths relative to the report, per sweep (`.png`).
    pub figures: Vec<(Sweep, String)>,
    /// The command that produced the results.
    pub command: String,
    /// Wall time in seconds of the settings computed by this command (reused ones count 0).
    pub wall_seconds: Option<f64>,
    /// Free-form provenance lines (backend, CPU, seed, settings).
    pub provenance: Vec<String>,
    /// The task rank `k` (the base fine-tuning rank).
    pub base_rank: usize,
    /// The default `T` and `d`, whose point the headline compares.
    pub defaults: (usize, usize),
}

/// A gap below this factor between the medians is called small in the reading.
const SMALL_GAP: f64 = 2.0;

fn sci(v: f64) -> String {
    format!("{v:.2e}")
}

fn medians(records: &[SummaryRecord], f: fn(&SummaryRecord) -> f64) -> (f64, f64, f64) {
    median_and_range(&records.iter().map(f).collect::<Vec<_>>())
}

/// The (value, rank) points of a sweep, each with its SR and LoRA-ML records.
fn points(
    records: &[SummaryRecord],
) -> Vec<(usize, usize, Vec<SummaryRecord>, Vec<SummaryRecord>)> {
    let mut keys: Vec<(usize, usize)> =
        records.iter().map(|r| (r.value, r.finetune_rank)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|(value, rank)| {
            let pick = |m: Method| -> Vec<SummaryRecord> {
                records
                    .iter()
                    .filter(|r| r.value == value && r.finetune_rank == rank && r.method == m)
                    .cloned()
                    .collect()
            };
            (value, rank, pick(Method::Standard), pick(Method::LoraMl))
        })
        .collect()
}

/// Renders the report.
pub fn render_shallow_report(input: &ShallowReportInput) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Shallow-network suite: results\n");
    let _ = writeln!(
        md,
        "Reproduction of the paper's v2 nonlinear synthetic experiment (§6.2 of our specification): \
         tasks `y = cᵀ σ((A + U_t U_tᵀ) x) + ε`, a two-layer sigmoid network retrained with standard \
         retraining (SR) or LoRA-ML (one rank-k adapter per task on the first layer), then a fresh \
         LoRA adapter fine-tuned on an unseen task with the layers frozen. The metric is the MSE \
         against the noiseless targets on the n fine-tuning inputs. Cells are *median [central range]* \
         over trials, the central range being the sorted 4th and 8th of 10 trials as the authors print it.\n"
    );
    let _ = writeln!(md, "Produced by:\n\n```\n{}\n```\n", input.command);
    if let Some(s) = input.wall_seconds {
        let _ = writeln!(
            md,
            "Wall time of the settings computed by that command (excluding the build): **{s:.1} s**.\n"
        );
    }
    for line in &input.provenance {
        let _ = writeln!(md, "- {line}");
    }
    if !input.provenance.is_empty() {
        md.push('\n');
    }
    md.push_str(&reading(input));
    for (sweep, records) in &input.sweeps {
        let _ = writeln!(
            md,
            "## Varying {} ({})\n",
            sweep.symbol(),
            sweep.description()
        );
        if let Some((_, fig)) = input.figures.iter().find(|(s, _)| s == sweep) {
            let _ = writeln!(md, "![vary-{}]({fig})\n", sweep.symbol());
        }
        let _ = writeln!(
            md,
            "| {} | method | FT rank | test loss after FT | test loss before FT | retraining loss (Σ over tasks) |",
            sweep.symbol()
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (value, rank, sr, ml) in points(records) {
            for (method, rs) in [(Method::Standard, &sr), (Method::LoraMl, &ml)] {
                if rs.is_empty() {
                    continue;
                }
                let (m, lo, hi) = medians(rs, |r| r.final_test_loss);
                let _ = writeln!(
                    md,
                    "| {value} | {} | {rank} | {} [{}, {}] | {} | {} |",
                    method.label(),
                    sci(m),
                    sci(lo),
                    sci(hi),
                    sci(medians(rs, |r| r.initial_test_loss).0),
                    sci(medians(rs, |r| r.final_retrain_loss).0),
                );
            }
        }
        md.push('\n');
    }
    md
}

/// The reading against the paper's claim that LoRA-ML improves over SR, computed from the
/// medians: the default point first, then every point where the gap is small or reversed.
fn reading(input: &ShallowReportInput) -> String {
    let mut md = String::from("## Reading against the paper's claim\n\n");
    let _ = writeln!(
        md,
        "The paper reports (qualitatively, no numbers recovered) that LoRA-ML consistently beats SR \
         after fine-tuning. Per point, the ratio SR median / LoRA-ML median of the final test loss \
         (above 1: LoRA-ML better):\n"
    );
    let (default_t, default_d) = input.defaults;
    let mut lines = Vec::new();
    let mut worse = Vec::new();
    let mut small = Vec::new();
    let mut total = 0;
    for (sweep, records) in &input.sweeps {
        for (value, rank, sr, ml) in points(records) {
            if sr.is_empty() || ml.is_empty() {
                continue;
            }
            total += 1;
            let (s, m) = (
                medians(&sr, |r| r.final_test_loss).0,
                medians(&ml, |r| r.final_test_loss).0,
            );
            let ratio = s / m;
            let label = curve_label(*sweep, value, Method::LoraMl, rank, input.base_rank)
                .replace(", LoRA-ML", "");
            let is_default = match sweep {
                Sweep::Tasks => value == default_t,
                _ => value == default_d,
            } && rank == input.base_rank;
            lines.push(format!(
                "{label}: {ratio:.2}× (SR {}, LoRA-ML {}){}",
                sci(s),
                sci(m),
                if is_default { " — the defaults" } else { "" }
            ));
            if ratio <= 1.0 {
                worse.push(label);
            } else if ratio < SMALL_GAP {
                small.push(label);
            }
        }
    }
    let _ = writeln!(
        md,
        "{}\n",
        lines
            .iter()
            .map(|l| format!("- {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let better = total - worse.len();
    let _ = writeln!(
        md,
        "LoRA-ML's median is below SR's at {better} of {total} points.{}{}\n",
        if worse.is_empty() {
            String::new()
        } else {
            format!(
                " **Reversed (SR as good or better)** at: {}.",
                worse.join("; ")
            )
        },
        if small.is_empty() {
            String::new()
        } else {
            format!(
                " The gap is small (less than {SMALL_GAP}×) at: {}.",
                small.join("; ")
            )
        }
    );
    md
}
