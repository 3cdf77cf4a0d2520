//! The Markdown report of the linear suite (`docs/results/linear.md`).

use std::fmt::Write as _;

use super::{Method, SummaryRecord, Sweep};

/// What the report is made from.
#[derive(Debug, Clone)]
pub struct LinearReportInput {
    /// The summaries of each sweep that ran.
    pub sweeps: Vec<(Sweep, Vec<SummaryRecord>)>,
    /// Figure paths relative to the report, per sweep (`.png`).
    pub figures: Vec<(Sweep, String)>,
    /// The command that produced the results.
    pub command: String,
    /// Wall time of the whole run in seconds, when measured.
    pub wall_seconds: Option<f64>,
    /// Free-form provenance lines (commit, backend, CPUs, seed).
    pub provenance: Vec<String>,
    /// Records of the defaults (`T = 3`) retrained on the population objective, when run.
    pub population_check: Vec<SummaryRecord>,
}

struct Stats {
    mean: f64,
    min: f64,
    max: f64,
}

fn stats(values: impl Iterator<Item = f64>) -> Stats {
    let v: Vec<f64> = values.collect();
    let n = v.len().max(1) as f64;
    Stats {
        mean: v.iter().sum::<f64>() / n,
        min: v.iter().copied().fold(f64::INFINITY, f64::min),
        max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

fn sci(v: f64) -> String {
    format!("{v:.2e}")
}

fn cell(s: &Stats) -> String {
    format!("{} [{}, {}]", sci(s.mean), sci(s.min), sci(s.max))
}

/// Renders the report.
pub fn render_linear_report(input: &LinearReportInput) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Linear theory suite: results\n");
    let _ = writeln!(
        md,
        "Reproduction of the paper's synthetic linear experiment (Figure 1 of v1, §6.1 of our \
         specification): retrain with standard retraining (SR) or LoRA-ML on T tasks \
         `y = (A* + U*_t U*_tᵀ) x + ε`, then fine-tune a fresh rank-r adapter `U Vᵀ` on an unseen task. \
         Cells are *mean [min, max]* over runs.\n"
    );
    let _ = writeln!(md, "Produced by:\n\n```\n{}\n```\n", input.command);
    if let Some(s) = input.wall_seconds {
        let _ = writeln!(
            md,
            "Wall time of the sweeps (sum over sweeps, excluding the build): **{s:.1} s**.\n"
        );
    }
    for line in &input.provenance {
        let _ = writeln!(md, "- {line}");
    }
    if !input.provenance.is_empty() {
        md.push('\n');
    }
    md.push_str(&theory_checks(&input.sweeps, &input.population_check));
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
            "| {} | method | FT rank | test-task loss after FT (paper metric) | ‖Â+UVᵀ−A*_new‖²_F after FT | ‖Â−A*‖²_F | ‖Â−Â_SR‖²_F |",
            sweep.symbol()
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        let mut values: Vec<f64> = records.iter().map(|r| r.value).collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        for value in values {
            for method in Method::ALL {
                let rs: Vec<&SummaryRecord> = records
                    .iter()
                    .filter(|r| r.value == value && r.method == method)
                    .collect();
                let Some(first) = rs.first() else { continue };
                let _ = writeln!(
                    md,
                    "| {value} | {} | {} | {} | {} | {} | {} |",
                    method.label(),
                    first.finetune_rank,
                    cell(&stats(rs.iter().map(|r| r.final_paper_loss))),
                    cell(&stats(rs.iter().map(|r| r.final_population_loss))),
                    sci(stats(rs.iter().map(|r| r.dist_to_a_star)).mean),
                    sci(stats(rs.iter().map(|r| r.dist_to_sr_closed_form)).mean),
                );
            }
        }
        md.push('\n');
    }
    md.push_str(
        "Columns: the paper metric is the noiseless squared error summed over the n fine-tuning inputs \
         (so it grows with n); `Â_SR = A* + mean_t U*_t U*_tᵀ` is the closed-form limit of SR (Theorem 1).\n",
    );
    md
}

/// The headline checks of the theory at the default setting (the `T = 3` point of the T sweep), on
/// the finite-sample objective and, when available, the population objective.
fn theory_checks(sweeps: &[(Sweep, Vec<SummaryRecord>)], population: &[SummaryRecord]) -> String {
    let mut md = String::new();
    let finite: Vec<&SummaryRecord> = sweeps
        .iter()
        .filter(|(s, _)| *s == Sweep::Tasks)
        .flat_map(|(_, rs)| rs.iter().filter(|r| r.value == 3.0))
        .collect();
    let population: Vec<&SummaryRecord> = population.iter().collect();
    let columns: Vec<(&str, &[&SummaryRecord])> = [
        ("finite-sample (N = 5000)", &finite[..]),
        ("population", &population[..]),
    ]
    .into_iter()
    .filter(|(_, rs)| !rs.is_empty())
    .collect();
    if columns.is_empty() {
        return md;
    }
    let mean = |rs: &[&SummaryRecord], method: Method, f: fn(&SummaryRecord) -> f64| {
        stats(rs.iter().filter(|r| r.method == method).map(|r| f(r))).mean
    };
    let _ = writeln!(md, "## Theory checks at the defaults (d=10, T=3, k=1)\n");
    let header: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let _ = writeln!(
        md,
        "| claim (retraining objective →) | {} |",
        header.join(" | ")
    );
    let _ = writeln!(md, "|---|{}", "---|".repeat(columns.len()));
    let row = |md: &mut String, claim: &str, value: &dyn Fn(&[&SummaryRecord]) -> String| {
        let cells: Vec<String> = columns.iter().map(|(_, rs)| value(rs)).collect();
        let _ = writeln!(md, "| {claim} | {} |", cells.join(" | "));
    };
    row(
        &mut md,
        "LoRA-ML recovers A* (Thm 3): ‖Â−A*‖²_F ≈ 0",
        &|rs| sci(mean(rs, Method::LoraMl, |r| r.dist_to_a_star)),
    );
    row(
        &mut md,
        "SR converges to A* + mean U*U*ᵀ (Thm 1): ‖Â_SR − closed form‖²_F ≈ 0",
        &|rs| sci(mean(rs, Method::Standard, |r| r.dist_to_sr_closed_form)),
    );
    row(
        &mut md,
        "… which is far from A*: ‖Â_SR − A*‖²_F",
        &|rs| sci(mean(rs, Method::Standard, |r| r.dist_to_a_star)),
    );
    row(
        &mut md,
        "rank-k LoRA adapts LoRA-ML's base, not SR's (Cor. 1): ‖Â+UVᵀ−A*_new‖²_F after FT, LoRA-ML vs SR",
        &|rs| {
            let (ml, sr) = (
                mean(rs, Method::LoraMl, |r| r.final_population_loss),
                mean(rs, Method::Standard, |r| r.final_population_loss),
            );
            format!(
                "{} vs {} ({:.0}× lower)",
                sci(ml),
                sci(sr),
                sr / ml.max(f64::MIN_POSITIVE)
            )
        },
    );
    md.push('\n');
    md
}
