//! Multi-head self-attention with padding mask, adapted projections and the post-LayerNorm residual.

use adaptable_lora::dropout::dropout;
use adaptable_lora::linear::LoraLinear;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::ModelsError;
use crate::config::EncoderConfig;
use crate::fused::{attention_rows, attention_train};
use crate::layer::{adapted_linear, normalize};
use crate::targets::EncoderLinear;

/// Self-attention block: `LayerNorm(x + dropout(output(attention(x))))`.
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub query: LoraLinear,
    /// Key projection.
    pub key: LoraLinear,
    /// Value projection.
    pub value: LoraLinear,
    /// Output projection (HF `attention.output.dense`).
    pub output: LoraLinear,
    /// Post-residual LayerNorm (HF `attention.output.LayerNorm`).
    pub norm: LayerNorm,
    /// Dropout on attention probabilities.
    pub attention_dropout: Dropout,
    /// Dropout on the projected output.
    pub dropout: Dropout,
    /// Number of heads.
    num_heads: usize,
    /// The LayerNorm's ε.
    layer_norm_eps: f64,
}

impl SelfAttention {
    /// Builds the block with random weights.
    pub fn new(config: &EncoderConfig, device: &Device) -> Result<Self, ModelsError> {
        let h = config.hidden_size;
        Ok(Self {
            query: adapted_linear(config, EncoderLinear::Query, h, h, device)?,
            key: adapted_linear(config, EncoderLinear::Key, h, h, device)?,
            value: adapted_linear(config, EncoderLinear::Value, h, h, device)?,
            output: adapted_linear(config, EncoderLinear::AttentionOutput, h, h, device)?,
            norm: LayerNormConfig::new(h)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            attention_dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            num_heads: config.num_attention_heads,
            layer_norm_eps: config.layer_norm_eps,
        })
    }

    /// Applies the block to `x` `[batch, seq, h]`; `mask_bias` `[batch, 1, 1, seq]` is added to the
    /// attention scores (0 for real keys, a huge negative number for padding).
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>, adapter: Option<usize>) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        // Projections run on [batch·seq, h] so each is one large matrix product rather than a
        // broadcast batched one.
        let rows = x.reshape([batch * seq, hidden]);
        let q = self.query.forward_with(rows.clone(), adapter);
        let k = self.key.forward_with(rows.clone(), adapter);
        let v = self.value.forward_with(rows.clone(), adapter);
        let bias = mask_bias.reshape([batch, seq]);
        // Without autodiff there is no dropout and no backward: the inference kernel.
        let context = if q.device().is_autodiff() {
            attention_train(q, k, v, bias, self.num_heads, &self.attention_dropout)
        } else {
            attention_rows(q, k, v, bias, self.num_heads)
        };
        let out = dropout(&self.dropout, self.output.forward_with(context, adapter));
        normalize(&self.norm, self.layer_norm_eps, out + rows).reshape([batch, seq, hidden])
    }
}

/// Turns a `[batch, seq]` 1/0 attention mask into the additive bias `[batch, 1, 1, seq]`.
///
/// HF adds the most negative f32 to masked scores; any value that underflows `exp` to 0 gives the
/// same probabilities, and `f32::MIN` keeps fully padded rows finite (uniform) instead of NaN.
pub fn mask_bias(attention_mask: &Tensor<2, Int>) -> Tensor<4> {
    let [batch, seq] = attention_mask.dims();
    attention_mask
        .clone()
        .equal_elem(0)
        .float()
        .mul_scalar(f32::MIN)
        .reshape([batch, 1, 1, seq])
}
