//! Word + position + token-type embeddings, LayerNorm and dropout.

use adaptable_lora::dropout::dropout;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::config::{EncoderConfig, ModelType};
use crate::layer::normalize;

/// The input embeddings of a RoBERTa/BERT encoder.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// Token embeddings `[vocab, h]`.
    pub word_embeddings: Embedding,
    /// Position embeddings `[max_positions, h]`.
    pub position_embeddings: Embedding,
    /// Segment embeddings `[type_vocab, h]`.
    pub token_type_embeddings: Embedding,
    /// LayerNorm over the sum.
    pub layer_norm: LayerNorm,
    /// Dropout after the LayerNorm.
    pub dropout: Dropout,
    /// Whether positions follow RoBERTa's `padding_idx + 1` convention.
    roberta_positions: bool,
    /// The padding id (RoBERTa's `padding_idx`).
    pad_token_id: usize,
    /// The LayerNorm's ε.
    layer_norm_eps: f64,
}

impl Embeddings {
    /// Builds randomly initialised embeddings (`N(0, 0.02)` as in HF).
    pub fn new(config: &EncoderConfig, device: &Device) -> Self {
        let init = burn::nn::Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let h = config.hidden_size;
        Self {
            word_embeddings: EmbeddingConfig::new(config.vocab_size, h)
                .with_initializer(init.clone())
                .init(device),
            position_embeddings: EmbeddingConfig::new(config.max_position_embeddings, h)
                .with_initializer(init.clone())
                .init(device),
            token_type_embeddings: EmbeddingConfig::new(config.type_vocab_size, h)
                .with_initializer(init)
                .init(device),
            layer_norm: LayerNormConfig::new(h)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            roberta_positions: config.model_type == ModelType::Roberta,
            pad_token_id: config.pad_token_id,
            layer_norm_eps: config.layer_norm_eps,
        }
    }

    /// Position ids for `input_ids` `[batch, seq]`.
    ///
    /// RoBERTa numbers real tokens `pad+1, pad+2, ...` and gives padding `pad` (as HF's
    /// `create_position_ids_from_input_ids`, which looks at the ids, not the attention mask); BERT
    /// uses `0..seq` for every row.
    pub fn position_ids(&self, input_ids: &Tensor<2, Int>) -> Tensor<2, Int> {
        let [batch, seq] = input_ids.dims();
        if self.roberta_positions {
            let real = input_ids
                .clone()
                .not_equal_elem(self.pad_token_id as i64)
                .int();
            (real.clone().cumsum(1) * real).add_scalar(self.pad_token_id as i64)
        } else {
            Tensor::<1, Int>::arange(0..seq as i64, &input_ids.device())
                .unsqueeze_dim::<2>(0)
                .expand([batch, seq])
        }
    }

    /// Embeds `[batch, seq]` ids into `[batch, seq, h]`.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
    ) -> Tensor<3> {
        let positions = self.position_ids(&input_ids);
        let token_types = token_type_ids.unwrap_or_else(|| input_ids.zeros_like());
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(token_types);
        dropout(
            &self.dropout,
            normalize(&self.layer_norm, self.layer_norm_eps, x),
        )
    }
}
