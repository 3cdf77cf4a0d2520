//! LoRA on Burn `Linear` layers: a frozen-or-trainable base plus a bank of per-task adapters.
//!
//! [`LoraLinear`] computes `y = x W + b + s · dropout(x) A_t B_t` where `t` is the active adapter (or no
//! adapter at all). Every task owns its own `A_t` and `B_t` as separate [`Param`]s, so a backward pass
//! with task `t` active yields gradients for `A_t`, `B_t` (and the base, unless frozen) only, and an
//! optimizer never advances the state of inactive adapters.
//!
//! Layouts follow Burn's `Linear` (`W` is `[d_input, d_output]`): `A` is `[d_input, r]` and `B` is
//! `[r, d_output]`. PEFT stores the transposes (`lora_A.weight` is `[r, in]`, `lora_B.weight` is
//! `[out, r]`), see [`LoraLinear::peft_factors`].
//!
//! ```
//! # #[allow(deprecated)]
//! # fn main() -> Result<(), adaptable_lora::LoraError> {
//! use adaptable_lora::LoraConfig;
//! use adaptable_lora::linear::LoraLinearConfig;
//! use burn::tensor::{Device, Tensor};
//!
//! let device = Device::default(); // the first backend compiled in (a feature: flex, ndarray or wgpu)
//! let config = LoraLinearConfig::new(8, 4)
//!     .with_lora(Some(LoraConfig::new(2).with_alpha(4.0)))
//!     .with_tasks(3);
//! let mut layer = config.init(&device)?;
//! layer.set_active(Some(1))?;
//! let y = layer.forward(Tensor::<2>::ones([5, 8], &device));
//! assert_eq!(y.dims(), [5, 4]);
//! # Ok(())
//! # }
//! ```

use crate::fused::{adapted, adapted_linear};
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{LoraConfig, LoraError};

/// How the down-projection `A` of a fresh adapter is drawn (`B` always starts at zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LoraInit {
    /// PEFT's default: `kaiming_uniform_(a = √5)` on `[r, in]`, i.e. `U(-1/√d_in, 1/√d_in)`.
    #[default]
    KaimingUniform,
    /// `N(0, 1/r)`, as Burn's built-in LoRA does.
    Gaussian,
}

/// Configuration of a [`LoraLinear`] layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether the base layer has a bias.
    pub bias: bool,
    /// Adapter hyper-parameters; `None` builds a plain linear layer with an empty bank.
    pub lora: Option<LoraConfig>,
    /// Number of task adapters in the bank (ignored when `lora` is `None`).
    pub tasks: usize,
    /// Initialisation of the adapters' `A` factors.
    pub init: LoraInit,
}

impl LoraLinearConfig {
    /// A biased `d_input → d_output` layer without adapters.
    pub fn new(d_input: usize, d_output: usize) -> Self {
        Self {
            d_input,
            d_output,
            bias: true,
            lora: None,
            tasks: 0,
            init: LoraInit::default(),
        }
    }

    /// Sets whether the base layer has a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets the adapter hyper-parameters.
    pub fn with_lora(mut self, lora: Option<LoraConfig>) -> Self {
        self.lora = lora;
        self
    }

    /// Sets the number of task adapters.
    pub fn with_tasks(mut self, tasks: usize) -> Self {
        self.tasks = tasks;
        self
    }

    /// Sets the initialisation of `A`.
    pub fn with_init(mut self, init: LoraInit) -> Self {
        self.init = init;
        self
    }

    /// Builds the layer: a PyTorch-style initialised base, `tasks` adapters with `B = 0`, none active.
    pub fn init(&self, device: &Device) -> Result<LoraLinear, LoraError> {
        let base = LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .init(device);
        LoraLinear::from_linear(base, self.lora.clone(), self.tasks, self.init, device)
    }
}

/// A `Linear` layer carrying a bank of per-task LoRA adapters, at most one of them active.
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// The base layer (`weight` is `[d_input, d_output]`).
    pub base: Linear,
    /// Down-projections `A_t`, one `[d_input, r]` parameter per task.
    pub lora_a: Vec<Param<Tensor<2>>>,
    /// Up-projections `B_t`, one `[r, d_output]` parameter per task.
    pub lora_b: Vec<Param<Tensor<2>>>,
    /// Dropout applied to the adapter input only (the base sees the clean input).
    pub dropout: Dropout,
    /// The adapter used by [`forward`](Self::forward), if any.
    active: Option<usize>,
    /// Rank `r` of every adapter in the bank (0 when the layer has no LoRA configuration).
    rank: usize,
    /// The factor multiplying `A B`.
    scale: f64,
    /// Whether `A` of new adapters is Gaussian rather than Kaiming-uniform.
    gaussian_init: bool,
}

impl LoraLinear {
    /// Wraps an existing `Linear` (e.g. one loaded from a checkpoint) with `tasks` fresh adapters.
    pub fn from_linear(
        base: Linear,
        lora: Option<LoraConfig>,
        tasks: usize,
        init: LoraInit,
        device: &Device,
    ) -> Result<Self, LoraError> {
        let (rank, scale, dropout) = match &lora {
            Some(cfg) => {
                cfg.validate()?;
                (cfg.rank, cfg.scale(), cfg.dropout)
            }
            None => (0, 0.0, 0.0),
        };
        let mut layer = Self {
            base,
            lora_a: Vec::new(),
            lora_b: Vec::new(),
            dropout: DropoutConfig::new(dropout).init(),
            active: None,
            rank,
            scale,
            gaussian_init: init == LoraInit::Gaussian,
        };
        if lora.is_some() {
            for _ in 0..tasks {
                layer.add_adapter(device)?;
            }
        }
        Ok(layer)
    }

    /// Input features.
    pub fn d_input(&self) -> usize {
        self.base.weight.lazy_shape().dims::<2>()[0]
    }

    /// Output features.
    pub fn d_output(&self) -> usize {
        self.base.weight.lazy_shape().dims::<2>()[1]
    }

    /// Number of adapters in the bank.
    pub fn num_adapters(&self) -> usize {
        self.lora_a.len()
    }

    /// Rank of the adapters (0 without a LoRA configuration).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The scale `s` multiplying `A B`.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The active adapter.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// Selects the adapter used by [`forward`](Self::forward); `None` runs the base alone.
    pub fn set_active(&mut self, task: Option<usize>) -> Result<(), LoraError> {
        if let Some(t) = task {
            self.check_task(t)?;
        }
        self.active = task;
        Ok(())
    }

    /// Appends a fresh adapter (`A` random, `B = 0`) and returns its index.
    ///
    /// The new adapter leaves the layer's output unchanged until `B` is trained, which is what
    /// fine-tuning on a new task starts from.
    pub fn add_adapter(&mut self, device: &Device) -> Result<usize, LoraError> {
        if self.rank == 0 {
            return Err(LoraError::NoLoraConfig);
        }
        let (d_in, d_out, r) = (self.d_input(), self.d_output(), self.rank);
        let init = if self.gaussian_init {
            Initializer::Normal {
                mean: 0.0,
                std: (1.0 / r as f64).sqrt(),
            }
        } else {
            // kaiming_uniform_(a=√5) on PEFT's [r, in] layout: gain √(1/3), fan_in = d_in.
            Initializer::KaimingUniform {
                gain: 1.0 / 3f64.sqrt(),
                fan_out_only: false,
            }
        };
        self.lora_a
            .push(init.init_with([d_in, r], Some(d_in), Some(r), device));
        self.lora_b
            .push(Initializer::Zeros.init([r, d_out], device));
        Ok(self.lora_a.len() - 1)
    }

    /// Applies the layer with the active adapter.
    ///
    /// Shapes: input `[..., d_input]`, output `[..., d_output]`.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        self.forward_with(input, self.active)
    }

    /// Applies the layer with an explicitly chosen adapter (ignoring the active one).
    ///
    /// A layer built without a LoRA configuration ignores `task`, so a model can pass one task index
    /// to all its layers when only some of them are adapted.
    ///
    /// # Panics
    ///
    /// Panics if the layer has adapters and `task` is outside the bank; [`set_active`](Self::set_active)
    /// is the checked route.
    pub fn forward_with<const D: usize>(&self, input: Tensor<D>, task: Option<usize>) -> Tensor<D> {
        let adapter = match task {
            Some(t) if self.rank > 0 => Some(t),
            _ => None,
        };
        if D == 2 && adapter.is_none() {
            return self.base.forward(input);
        }
        // Burn keeps `[batch, seq, d]·[d, d_out]` as `batch` separate products when `seq` fills
        // its row tiles; one `[batch·seq, d]` product is faster on every CPU backend we measured
        // (1.2–1.4× on flex, docs/benchmarks.md), and its backward is one product as well. The
        // fused adapter path takes rows too.
        let mut dims = input.dims();
        let rows = dims[..D - 1].iter().product();
        dims[D - 1] = self.d_output();
        let flat: Tensor<2> = input.reshape([rows, self.d_input()]);
        let out = match (adapter, &self.base.bias) {
            // Base product, bias and adapter in one operation.
            (Some(t), Some(bias)) => adapted_linear(
                flat,
                self.base.weight.val(),
                bias.val(),
                self.lora_a[t].val(),
                self.lora_b[t].val(),
                self.scale,
                &self.dropout,
            ),
            (Some(t), None) => adapted(
                self.base.forward(flat.clone()),
                flat,
                self.lora_a[t].val(),
                self.lora_b[t].val(),
                self.scale,
                &self.dropout,
            ),
            (None, _) => self.base.forward(flat),
        };
        out.reshape(dims)
    }

    /// The update `s · A_t B_t`, shaped like the base weight `[d_input, d_output]`.
    pub fn delta_weight(&self, task: usize) -> Result<Tensor<2>, LoraError> {
        self.check_task(task)?;
        Ok(self.lora_a[task]
            .val()
            .matmul(self.lora_b[task].val())
            .mul_scalar(self.scale))
    }

    /// The base weight with adapter `task` folded in: `W + s · A_t B_t`.
    pub fn merged_weight(&self, task: usize) -> Result<Tensor<2>, LoraError> {
        Ok(self.base.weight.val() + self.delta_weight(task)?)
    }

    /// A plain `Linear` equal to this layer with adapter `task` (or none) active, detached from
    /// any autodiff graph; used for inference and export.
    pub fn to_linear(&self, task: Option<usize>) -> Result<Linear, LoraError> {
        let weight = match task {
            Some(t) => self.merged_weight(t)?,
            None => self.base.weight.val(),
        };
        Ok(Linear {
            weight: Param::from_tensor(weight.detach()),
            bias: self
                .base
                .bias
                .as_ref()
                .map(|b| Param::from_tensor(b.val().detach())),
        })
    }

    /// Folds adapter `task` into the base weight and resets that adapter's `B` to zero.
    ///
    /// With `task` active the output is unchanged; the base parameter keeps its id and its
    /// trainability, so an optimizer tracking it stays valid. Other adapters now act on the merged
    /// base.
    pub fn merge(mut self, task: usize) -> Result<Self, LoraError> {
        let delta = self.delta_weight(task)?.detach();
        self.base.weight = retrack(self.base.weight, |w| w.detach() + delta);
        self.lora_b[task] = retrack(self.lora_b[task].clone(), |b| b.detach().zeros_like());
        Ok(self)
    }

    /// Stops gradients for the base weight and bias (adapters keep theirs).
    pub fn freeze_base(mut self) -> Self {
        self.base = self.base.no_grad();
        self
    }

    /// Lets the base weight and bias receive gradients again.
    pub fn unfreeze_base(mut self) -> Self {
        self.base = self.base.set_require_grad(true);
        self
    }

    /// Adapter `task` in PEFT's layout: `(lora_A [r, d_input], lora_B [d_output, r])`, unscaled.
    pub fn peft_factors(&self, task: usize) -> Result<(Tensor<2>, Tensor<2>), LoraError> {
        self.check_task(task)?;
        Ok((
            self.lora_a[task].val().transpose(),
            self.lora_b[task].val().transpose(),
        ))
    }

    fn check_task(&self, task: usize) -> Result<(), LoraError> {
        if task < self.lora_a.len() {
            Ok(())
        } else {
            Err(LoraError::TaskOutOfRange {
                task,
                tasks: self.lora_a.len(),
            })
        }
    }
}

/// Replaces a parameter's value, keeping its id, its configured trainability and (on an autodiff
/// device) gradient tracking, which a computed tensor would otherwise lose.
fn retrack<const D: usize>(
    param: Param<Tensor<D>>,
    f: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Param<Tensor<D>> {
    let tracked = param.is_require_grad();
    param.map(|t| {
        let t = f(t);
        // `detach` keeps the require-grad flag on autodiff, so the value is re-rooted as a fresh
        // untracked leaf before tracking is switched back on.
        if tracked {
            t.set_require_grad(false).require_grad()
        } else {
            t
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    fn device() -> Device {
        Device::default()
    }

    fn layer(device: &Device, tasks: usize) -> LoraLinear {
        LoraLinearConfig::new(6, 5)
            .with_lora(Some(LoraConfig::new(2).with_alpha(6.0)))
            .with_tasks(tasks)
            .init(device)
            .expect("valid config")
    }

    /// Gives every `B` random values so adapters actually change the output.
    fn randomise_b(mut l: LoraLinear) -> LoraLinear {
        l.lora_b = l
            .lora_b
            .into_iter()
            .map(|b| retrack(b, |t| t.random_like(Distribution::Normal(0.0, 1.0))))
            .collect();
        l
    }

    #[test]
    fn zero_b_leaves_base_output_unchanged() {
        let device = device();
        let mut l = layer(&device, 2);
        let x = Tensor::<3>::random([2, 3, 6], Distribution::Normal(0.0, 1.0), &device);
        let base = l.forward(x.clone()).into_data();
        l.set_active(Some(1)).expect("task 1 exists");
        l.forward(x)
            .into_data()
            .assert_approx_eq::<f32>(&base, Tolerance::absolute(1e-6));
    }

    #[test]
    fn merged_forward_matches_unmerged_with_non_unit_scale() {
        let device = device();
        let mut l = randomise_b(layer(&device, 3));
        assert_eq!(l.scale(), 3.0);
        l.set_active(Some(2)).expect("task 2 exists");
        let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
        let unmerged = l.forward(x.clone()).into_data();

        let plain = l.to_linear(Some(2)).expect("task 2 exists");
        plain
            .forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&unmerged, Tolerance::absolute(1e-5));

        let merged = l.merge(2).expect("task 2 exists");
        merged
            .forward(x)
            .into_data()
            .assert_approx_eq::<f32>(&unmerged, Tolerance::absolute(1e-5));
    }

    #[test]
    fn only_the_active_adapter_gets_gradients() {
        let device = device().autodiff();
        let mut l = randomise_b(layer(&device, 3));
        l.set_active(Some(1)).expect("task 1 exists");
        let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
        let grads = l.forward(x).sum().backward();
        assert!(l.lora_a[1].grad(&grads).is_some());
        assert!(l.lora_b[1].grad(&grads).is_some());
        for t in [0, 2] {
            assert!(l.lora_a[t].grad(&grads).is_none());
            assert!(l.lora_b[t].grad(&grads).is_none());
        }
        assert!(l.base.weight.grad(&grads).is_some());
    }

    #[test]
    fn batched_input_matches_row_by_row_in_values_and_gradients() {
        let device = device().autodiff();
        let mut l = randomise_b(layer(&device, 2));
        l.set_active(Some(1)).expect("task 1 exists");
        let x = Tensor::<3>::random([2, 3, 6], Distribution::Normal(0.0, 1.0), &device);
        let folded = l.forward(x.clone());
        assert_eq!(folded.dims(), [2, 3, 5]);
        let rows: Vec<Tensor<3>> = (0..2)
            .flat_map(|b| (0..3).map(move |s| (b, s)))
            .map(|(b, s)| {
                let row = x.clone().slice([b..b + 1, s..s + 1]).reshape([1, 6]);
                l.forward(row).reshape([1, 1, 5])
            })
            .collect();
        let by_row = Tensor::cat(
            rows.chunks(3).map(|r| Tensor::cat(r.to_vec(), 1)).collect(),
            0,
        );
        folded
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&by_row.clone().into_data(), Tolerance::absolute(1e-5));

        let grads_folded = (folded.clone() * folded).sum().backward();
        let grads_rows = (by_row.clone() * by_row).sum().backward();
        for (name, param) in [("B_1", &l.lora_b[1]), ("W", &l.base.weight)] {
            let (a, b) = (param.grad(&grads_folded), param.grad(&grads_rows));
            let (a, b) = (a.expect(name), b.expect(name));
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-4));
        }
    }

    #[test]
    fn frozen_base_gets_no_gradient_but_adapter_does() {
        let device = device().autodiff();
        let mut l = randomise_b(layer(&device, 1)).freeze_base();
        l.set_active(Some(0)).expect("task 0 exists");
        let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
        let grads = l.forward(x).sum().backward();
        assert!(l.base.weight.grad(&grads).is_none());
        assert!(l.lora_b[0].grad(&grads).is_some());
        let l = l.unfreeze_base();
        assert!(l.base.weight.is_require_grad());
    }

    #[test]
    fn merge_keeps_ids_and_gradient_tracking_on_autodiff() {
        let device = device().autodiff();
        let mut l = randomise_b(layer(&device, 2));
        let id = l.base.weight.id;
        l.set_active(Some(0)).expect("task 0 exists");
        let l = l.merge(0).expect("task 0 exists");
        assert_eq!(l.base.weight.id, id);
        let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
        let grads = l.forward(x).sum().backward();
        assert!(l.base.weight.grad(&grads).is_some());
        assert!(l.lora_b[0].grad(&grads).is_some());
    }

    #[test]
    fn fresh_adapter_is_appended_and_errors_are_reported() {
        let device = device();
        let mut l = layer(&device, 1);
        assert_eq!(l.add_adapter(&device).expect("has lora config"), 1);
        assert!(matches!(
            l.set_active(Some(5)),
            Err(LoraError::TaskOutOfRange { task: 5, tasks: 2 })
        ));
        let (a, b) = l.peft_factors(1).expect("task 1 exists");
        assert_eq!(a.dims(), [2, 6]);
        assert_eq!(b.dims(), [5, 2]);
        b.into_data()
            .assert_eq(&TensorData::zeros::<f32, _>([5, 2]), true);

        let mut plain = LoraLinearConfig::new(3, 3).init(&device).expect("valid");
        assert!(matches!(
            plain.add_adapter(&device),
            Err(LoraError::NoLoraConfig)
        ));
        assert!(matches!(
            LoraLinearConfig::new(3, 3)
                .with_lora(Some(LoraConfig::new(0)))
                .init(&device),
            Err(LoraError::ZeroRank)
        ));
    }
}
