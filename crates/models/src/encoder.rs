//! The encoder: embeddings, a stack of layers and an optional pooler.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::ModelsError;
use crate::attention::mask_bias;
use crate::config::EncoderConfig;
use crate::embeddings::Embeddings;
use crate::input::EncoderInput;
use crate::layer::EncoderLayer;

/// HF's pooler: `tanh(dense(h[:, 0]))`.
#[derive(Module, Debug)]
pub struct Pooler {
    /// `h → h` projection.
    pub dense: Linear,
}

impl Pooler {
    /// Pools `[batch, seq, h]` into `[batch, h]` from the first token.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        self.dense.forward(first_token(hidden)).tanh()
    }
}

/// The hidden state of the first token (`<s>` / `[CLS]`): `[batch, seq, h] → [batch, h]`.
pub fn first_token(hidden: Tensor<3>) -> Tensor<2> {
    hidden.narrow(1, 0, 1).squeeze_dim(1)
}

/// A RoBERTa/BERT encoder whose linear layers can carry per-task LoRA adapter banks.
#[derive(Module, Debug)]
pub struct Encoder {
    /// Input embeddings.
    pub embeddings: Embeddings,
    /// Transformer layers.
    pub layers: Vec<EncoderLayer>,
    /// Optional pooler.
    pub pooler: Option<Pooler>,
    /// The architecture it was built from.
    #[module(skip)]
    config: EncoderConfig,
}

impl EncoderConfig {
    /// Builds a randomly initialised encoder (load pretrained weights with
    /// [`Encoder::load_hf_weights`](crate::loader)).
    pub fn init(&self, device: &Device) -> Result<Encoder, ModelsError> {
        self.validate()?;
        let layers = (0..self.num_hidden_layers)
            .map(|_| EncoderLayer::new(self, device))
            .collect::<Result<Vec<_>, _>>()?;
        let pooler = self.with_pooler.then(|| Pooler {
            dense: LinearConfig::new(self.hidden_size, self.hidden_size).init(device),
        });
        Ok(Encoder {
            embeddings: Embeddings::new(self, device),
            layers,
            pooler,
            config: self.clone(),
        })
    }
}

impl Encoder {
    /// The architecture.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Last hidden state `[batch, seq, h]`, with adapter `adapter` active in every adapted layer.
    ///
    /// # Panics
    ///
    /// Panics if `adapter` is not below [`num_adapters`](Self::num_adapters) (when the encoder has
    /// adapters) or if the sequence is longer than the position table.
    pub fn forward(&self, input: &EncoderInput, adapter: Option<usize>) -> Tensor<3> {
        let bias = mask_bias(&input.attention_mask);
        let mut x = self
            .embeddings
            .forward(input.input_ids.clone(), input.token_type_ids.clone());
        for layer in &self.layers {
            x = layer.forward(x, bias.clone(), adapter);
        }
        x
    }

    /// The embedding output followed by every layer's output (`num_hidden_layers + 1` tensors).
    pub fn forward_hidden_states(
        &self,
        input: &EncoderInput,
        adapter: Option<usize>,
    ) -> Vec<Tensor<3>> {
        let bias = mask_bias(&input.attention_mask);
        let mut x = self
            .embeddings
            .forward(input.input_ids.clone(), input.token_type_ids.clone());
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        states.push(x.clone());
        for layer in &self.layers {
            x = layer.forward(x, bias.clone(), adapter);
            states.push(x.clone());
        }
        states
    }

    /// Checks that `input` fits the model (sequence length and adapter index) before a forward pass.
    pub fn check_input(
        &self,
        input: &EncoderInput,
        adapter: Option<usize>,
    ) -> Result<(), ModelsError> {
        let [_, seq] = input.dims();
        let max = self.config.max_sequence_length();
        if seq > max {
            return Err(ModelsError::SequenceTooLong { len: seq, max });
        }
        if let Some(t) = adapter {
            let n = self.num_adapters();
            if n > 0 && t >= n {
                return Err(adaptable_lora::LoraError::TaskOutOfRange { task: t, tasks: n }.into());
            }
        }
        Ok(())
    }

    /// Adapters per bank (0 without adapters).
    pub fn num_adapters(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| l.linears())
            .map(|l| l.num_adapters())
            .max()
            .unwrap_or(0)
    }

    /// Appends a fresh adapter (`B = 0`) to every adapted layer and returns its index.
    pub fn add_adapter(&mut self, device: &Device) -> Result<usize, ModelsError> {
        let mut index = None;
        for layer in &mut self.layers {
            for linear in layer.linears_mut() {
                if linear.rank() > 0 {
                    index = Some(linear.add_adapter(device)?);
                }
            }
        }
        index.ok_or(ModelsError::Lora(adaptable_lora::LoraError::NoLoraConfig))
    }

    /// Freezes every base parameter (embeddings, LayerNorms, base weights, pooler); adapters stay
    /// trainable. This is the fine-tuning setting.
    pub fn freeze_base(self) -> Self {
        let mut frozen = self.no_grad();
        for layer in &mut frozen.layers {
            for linear in layer.linears_mut() {
                linear.lora_a = std::mem::take(&mut linear.lora_a)
                    .into_iter()
                    .map(|p| p.set_require_grad(true))
                    .collect();
                linear.lora_b = std::mem::take(&mut linear.lora_b)
                    .into_iter()
                    .map(|p| p.set_require_grad(true))
                    .collect();
            }
        }
        frozen
    }

    /// Replaces every adapter bank: `count` fresh adapters (`B = 0`) with `lora` on the layers
    /// `targets` selects, no adapters elsewhere (or anywhere, with `lora = None`). Base weights and
    /// their parameter ids are kept; the encoder's configuration records the new banks.
    pub fn reset_adapters(
        &mut self,
        lora: Option<&adaptable_lora::LoraConfig>,
        count: usize,
        targets: crate::LoraTargets,
        device: &Device,
    ) -> Result<(), ModelsError> {
        for layer in &mut self.layers {
            for (linear, which) in layer
                .linears_mut()
                .into_iter()
                .zip(crate::EncoderLinear::ALL)
            {
                let config = lora.filter(|_| targets.contains(which)).cloned();
                let adapters = if config.is_some() { count } else { 0 };
                *linear = adaptable_lora::linear::LoraLinear::from_linear(
                    linear.base.clone(),
                    config,
                    adapters,
                    adaptable_lora::linear::LoraInit::KaimingUniform,
                    device,
                )?;
            }
        }
        self.config.adapters =
            lora.map(|l| crate::AdapterConfig::new(l.clone(), count).with_targets(targets));
        Ok(())
    }

    /// Makes every parameter trainable again (the LoRA-ML retraining setting).
    pub fn unfreeze_base(self) -> Self {
        self.set_require_grad(true)
    }
}

impl EncoderLayer {
    /// The six encoder linear layers, in [`EncoderLinear::ALL`](crate::EncoderLinear::ALL) order
    /// (query, key, value, attention output, intermediate, output).
    pub fn linears(&self) -> [&adaptable_lora::linear::LoraLinear; 6] {
        [
            &self.attention.query,
            &self.attention.key,
            &self.attention.value,
            &self.attention.output,
            &self.intermediate,
            &self.output,
        ]
    }

    /// One of the six linear layers.
    pub fn linear(&self, which: crate::EncoderLinear) -> &adaptable_lora::linear::LoraLinear {
        self.linears()[which.index()]
    }

    /// Mutable access to the six encoder linear layers, in the same order.
    pub fn linears_mut(&mut self) -> [&mut adaptable_lora::linear::LoraLinear; 6] {
        [
            &mut self.attention.query,
            &mut self.attention.key,
            &mut self.attention.value,
            &mut self.attention.output,
            &mut self.intermediate,
            &mut self.output,
        ]
    }
}
