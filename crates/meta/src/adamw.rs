//! AdamW on plain tensors, for the batched synthetic suites whose gradients are written by hand.
//!
//! Burn's optimizers update the parameters of a `Module`; the synthetic suites keep their
//! parameters as stacked tensors (runs and tasks in the leading axis) and compute gradients
//! themselves, so they step each tensor with [`AdamW`]. Since the update is element-wise, one
//! optimizer over a stack of independent problems is exactly one optimizer per problem.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters; the defaults are torch's (`lr` 1e-3, β = (0.9, 0.999), ε = 1e-8,
/// weight decay 0.01).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub epsilon: f64,
    /// Decoupled weight decay (multiplies the parameter by `1 − lr · weight_decay` each step).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// The moments of one parameter tensor.
#[derive(Debug, Clone)]
pub struct AdamW<const D: usize> {
    m: Tensor<D>,
    v: Tensor<D>,
    steps: i32,
}

impl<const D: usize> AdamW<D> {
    /// Zero moments shaped like `param`.
    pub fn new(param: &Tensor<D>) -> Self {
        Self {
            m: param.zeros_like(),
            v: param.zeros_like(),
            steps: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps as usize
    }

    /// One step of torch's `AdamW` (decay first, then the bias-corrected Adam update); returns the
    /// new parameter.
    pub fn step(&mut self, config: &AdamWConfig, param: Tensor<D>, grad: Tensor<D>) -> Tensor<D> {
        self.steps += 1;
        let b1 = config.beta1;
        let b2 = config.beta2;
        self.m = self.m.clone().mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1);
        self.v = self.v.clone().mul_scalar(b2) + (grad.clone() * grad).mul_scalar(1.0 - b2);
        let correction1 = 1.0 - b1.powi(self.steps);
        let correction2 = (1.0 - b2.powi(self.steps)).sqrt();
        let denominator = self
            .v
            .clone()
            .sqrt()
            .div_scalar(correction2)
            .add_scalar(config.epsilon);
        let decayed = if config.weight_decay == 0.0 {
            param
        } else {
            param.mul_scalar(1.0 - config.lr * config.weight_decay)
        };
        decayed - (self.m.clone() / denominator).mul_scalar(config.lr / correction1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Two steps against torch's documented AdamW algorithm written out in f64.
    #[test]
    fn two_steps_follow_the_torch_update_rule() {
        let device = Device::default();
        let config = AdamWConfig {
            lr: 0.1,
            ..Default::default()
        };
        let p0 = [1.0_f64, -2.0];
        let grads = [[0.5_f64, -1.0], [0.25, 3.0]];
        // Reference in f64.
        let mut expected = p0;
        let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..2 {
                expected[i] *= 1.0 - 0.1 * 0.01;
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
                let mh = m[i] / (1.0 - 0.9_f64.powi(t));
                let vh = v[i] / (1.0 - 0.999_f64.powi(t));
                expected[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
            }
        }
        let tensor = |v: [f64; 2]| {
            Tensor::<1>::from_data(TensorData::new(v.map(|x| x as f32).to_vec(), [2]), &device)
        };
        let mut param = tensor(p0);
        let mut opt = AdamW::new(&param);
        for g in grads {
            param = opt.step(&config, param, tensor(g));
        }
        assert_eq!(opt.steps(), 2);
        let got = param.try_into_vec_as::<f64>().unwrap();
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
        // The first step moves each entry by about lr against its gradient's sign.
        assert!(expected[0] < 0.95 && expected[1] > -2.0);
    }
}
