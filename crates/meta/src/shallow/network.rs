//! The parameters of a batch of two-layer networks and their default initialisation.

use adaptable_lora::LowRankFactors;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, RngExt};

use crate::MetaError;

/// The shared parameters of `groups` networks `x ↦ cᵀ σ(A x)`: first layers `A` (`[groups, d, d]`)
/// and read-outs `c` (`[groups, d]`).
#[derive(Debug, Clone)]
pub struct ShallowNetworks {
    /// First layers, `[groups, d, d]`.
    pub a: Tensor<3>,
    /// Read-outs, `[groups, d]`.
    pub c: Tensor<2>,
}

impl ShallowNetworks {
    /// Draws both layers as torch's `nn.Linear` does by default (`U(−1/√d, 1/√d)`, since both
    /// layers read `d` inputs): `A` first, then `c`.
    pub fn torch_default(groups: usize, dim: usize, rng: &mut impl Rng, device: &Device) -> Self {
        let bound = 1.0 / (dim as f64).sqrt();
        let a = uniform(groups * dim * dim, bound, rng);
        let c = uniform(groups * dim, bound, rng);
        Self {
            a: Tensor::from_data(TensorData::new(a, [groups, dim, dim]), device),
            c: Tensor::from_data(TensorData::new(c, [groups, dim]), device),
        }
    }

    /// Number of networks.
    pub fn groups(&self) -> usize {
        self.a.dims()[0]
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.a.dims()[1]
    }

    /// Joins batches of networks of the same dimension along the group axis.
    pub fn cat(parts: Vec<ShallowNetworks>) -> Self {
        let (a, c) = parts.into_iter().map(|n| (n.a, n.c)).unzip();
        Self {
            a: Tensor::cat(a, 0),
            c: Tensor::cat(c, 0),
        }
    }

    /// Checks that `A` is `[groups, d, d]` and `c` is `[groups, d]`.
    pub(crate) fn check(&self) -> Result<(), MetaError> {
        let [g, d, e] = self.a.dims();
        if d != e || self.c.dims() != [g, d] {
            return Err(MetaError::Shape(format!(
                "shallow networks: A {:?} and c {:?} do not fit together",
                self.a.dims(),
                self.c.dims()
            )));
        }
        Ok(())
    }
}

/// A fresh LoRA adapter `Δ = U Vᵀ` on the first layer of each of `batch` networks, initialised as
/// the authors' (and PEFT's) LoRA: the up-projection `U` (`d × r`) zero, the down-projection `Vᵀ`
/// (`r × d`, an `nn.Linear(d, r)`) torch's default `U(−1/√d, 1/√d)`, no scaling.
pub fn lora_adapters(
    batch: usize,
    dim: usize,
    rank: usize,
    rng: &mut impl Rng,
    device: &Device,
) -> Result<LowRankFactors, MetaError> {
    let bound = 1.0 / (dim as f64).sqrt();
    // Drawn as the down-projection's weight, [batch, r, d], then transposed to V = [batch, d, r].
    let down = Tensor::<3>::from_data(
        TensorData::new(uniform(batch * rank * dim, bound, rng), [batch, rank, dim]),
        device,
    );
    let up = Tensor::<3>::zeros([batch, dim, rank], device);
    Ok(LowRankFactors::asymmetric(up, down.swap_dims(1, 2))?)
}

fn uniform(n: usize, bound: f64, rng: &mut impl Rng) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect()
}
