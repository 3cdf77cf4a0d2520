//! A padded batch of token ids ready for the encoder.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::ModelsError;

/// Token ids, attention mask and token types of a right-padded batch, each `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct EncoderInput {
    /// Token ids.
    pub input_ids: Tensor<2, Int>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor<2, Int>,
    /// Segment ids (`None` means all zeros).
    pub token_type_ids: Option<Tensor<2, Int>>,
}

impl EncoderInput {
    /// Builds a batch from already padded rows; `mask` marks real tokens with 1.
    pub fn from_rows(
        ids: &[Vec<u32>],
        mask: &[Vec<u32>],
        token_types: Option<&[Vec<u32>]>,
        device: &Device,
    ) -> Result<Self, ModelsError> {
        let batch = ids.len();
        if batch == 0 {
            return Err(ModelsError::EmptyInput("the batch has no sequences".into()));
        }
        let seq = ids[0].len();
        if seq == 0 {
            return Err(ModelsError::EmptyInput("sequences have no tokens".into()));
        }
        let to_tensor = |rows: &[Vec<u32>], what: &str| -> Result<Tensor<2, Int>, ModelsError> {
            if rows.len() != batch || rows.iter().any(|r| r.len() != seq) {
                return Err(ModelsError::InvalidArgument(format!(
                    "{what} must be {batch} rows of {seq} entries (pad the batch first)"
                )));
            }
            let flat: Vec<i64> = rows.iter().flatten().map(|&v| i64::from(v)).collect();
            Ok(Tensor::from_data(
                TensorData::new(flat, [batch, seq]),
                device,
            ))
        };
        Ok(Self {
            input_ids: to_tensor(ids, "input ids")?,
            attention_mask: to_tensor(mask, "attention mask")?,
            token_type_ids: token_types
                .map(|t| to_tensor(t, "token type ids"))
                .transpose()?,
        })
    }

    /// Right-pads variable-length rows with `pad_id` and builds the mask.
    pub fn pad(rows: &[Vec<u32>], pad_id: u32, device: &Device) -> Result<Self, ModelsError> {
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len());
        let mut mask = Vec::with_capacity(rows.len());
        for row in rows {
            let mut r = row.clone();
            r.resize(seq, pad_id);
            ids.push(r);
            let mut m = vec![1u32; row.len()];
            m.resize(seq, 0);
            mask.push(m);
        }
        Self::from_rows(&ids, &mask, None, device)
    }

    /// `[batch, seq]`.
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }
}
