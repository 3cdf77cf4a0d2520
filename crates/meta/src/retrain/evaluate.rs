//! Held-out accuracy of every task through its own slot.

use crate::{MetaError, MetaModel, TaskData, TaskSlot};

/// Accuracy of every task on its evaluation batches, with `slot(t)` for task `t`, in evaluation
/// mode (no dropout, no autodiff graph).
pub fn evaluate_tasks<M, D>(
    model: &M,
    tasks: &[D],
    slot: impl Fn(usize) -> TaskSlot,
) -> Result<Vec<f64>, MetaError>
where
    M: MetaModel,
    D: TaskData<Batch = M::Batch>,
{
    let model = model.valid();
    tasks
        .iter()
        .enumerate()
        .map(|(t, task)| {
            let (mut correct, mut total) = (0, 0);
            for batch in task.eval_batches()? {
                let (c, n) = model.correct(&batch, slot(t))?;
                correct += c;
                total += n;
            }
            if total == 0 {
                return Err(MetaError::Data(format!(
                    "task {t} has no held-out examples"
                )));
            }
            Ok(correct as f64 / total as f64)
        })
        .collect()
}
