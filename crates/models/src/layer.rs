//! One post-LayerNorm transformer encoder layer.

use adaptable_lora::dropout::dropout;
use adaptable_lora::linear::{LoraLinear, LoraLinearConfig};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, LinearConfig};
use burn::tensor::activation::{gelu_approximate, relu};
use burn::tensor::{Device, Tensor};

use crate::ModelsError;
use crate::attention::SelfAttention;
use crate::config::{Activation, EncoderConfig};
use crate::fused::{gelu_exact, layer_norm};
use crate::targets::EncoderLinear;

/// A transformer layer: self-attention, then `LayerNorm(h + dropout(output(act(intermediate(h)))))`.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// The attention block (with its own residual and LayerNorm).
    pub attention: SelfAttention,
    /// Feed-forward up-projection (HF `intermediate.dense`).
    pub intermediate: LoraLinear,
    /// Feed-forward down-projection (HF `output.dense`).
    pub output: LoraLinear,
    /// Post-residual LayerNorm (HF `output.LayerNorm`).
    pub output_norm: LayerNorm,
    /// Dropout on the feed-forward output.
    pub dropout: Dropout,
    /// Feed-forward activation.
    #[module(skip)]
    activation: Activation,
    /// The LayerNorms' ε.
    layer_norm_eps: f64,
}

impl EncoderLayer {
    /// Builds the layer with random weights.
    pub fn new(config: &EncoderConfig, device: &Device) -> Result<Self, ModelsError> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Ok(Self {
            attention: SelfAttention::new(config, device)?,
            intermediate: adapted_linear(config, EncoderLinear::Intermediate, h, i, device)?,
            output: adapted_linear(config, EncoderLinear::Output, i, h, device)?,
            output_norm: LayerNormConfig::new(h)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            activation: config.hidden_act,
            layer_norm_eps: config.layer_norm_eps,
        })
    }

    /// Applies the layer to `[batch, seq, h]` with adapter `adapter` (or none).
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>, adapter: Option<usize>) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let h = self
            .attention
            .forward(x, mask_bias, adapter)
            .reshape([batch * seq, hidden]);
        let inner = self.intermediate.forward_with(h.clone(), adapter);
        let inner = match self.activation {
            Activation::Gelu => gelu_exact(inner),
            Activation::GeluTanh => gelu_approximate(inner),
            Activation::Relu => relu(inner),
        };
        let out = dropout(&self.dropout, self.output.forward_with(inner, adapter));
        normalize(&self.output_norm, self.layer_norm_eps, out + h).reshape([batch, seq, hidden])
    }
}

/// Applies `norm` (built with `epsilon`) through the fused LayerNorm kernel.
pub(crate) fn normalize<const D: usize>(norm: &LayerNorm, epsilon: f64, x: Tensor<D>) -> Tensor<D> {
    match &norm.beta {
        Some(beta) => layer_norm(x, norm.gamma.val(), beta.val(), epsilon),
        None => norm.forward(x),
    }
}

/// A `d_in → d_out` encoder linear layer, with the configured adapter bank when `which` is targeted.
///
/// Base weights start as `N(0, 0.02)` like HF's `_init_weights`; pretrained weights replace them.
pub(crate) fn adapted_linear(
    config: &EncoderConfig,
    which: EncoderLinear,
    d_in: usize,
    d_out: usize,
    device: &Device,
) -> Result<LoraLinear, ModelsError> {
    let base = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device);
    let adapters = config
        .adapters
        .as_ref()
        .filter(|a| a.targets.contains(which));
    let layer = match adapters {
        Some(a) => LoraLinear::from_linear(base, Some(a.lora.clone()), a.tasks, a.init, device)?,
        None => LoraLinear::from_linear(
            base,
            None,
            0,
            LoraLinearConfig::new(d_in, d_out).init,
            device,
        )?,
    };
    Ok(layer)
}
