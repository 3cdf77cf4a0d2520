//! Moving f32 tensors between Burn parameters and safetensors files.
//!
//! The `safetensors` crate is used directly (not burn-store) because the adapter file needs exact
//! control over key names and layouts: PEFT keys, PyTorch `[out, in]` layouts, and nothing else.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, View};

use crate::ModelsError;

/// One f32 tensor to be written, in row-major order.
#[derive(Debug, Clone)]
pub(crate) struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Little-endian bytes of an f32 tensor, the form safetensors stores.
struct F32Bytes {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for F32Bytes {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// A tensor read back from a file: its dtype name, shape and (for F32 only) values.
#[derive(Debug, Clone)]
pub(crate) struct FileTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub values: Option<Vec<f32>>,
}

/// Writes `tensors` to `path` with the `{"format": "pt"}` metadata transformers expects.
pub(crate) fn write_safetensors(path: &Path, tensors: Vec<NamedTensor>) -> Result<(), ModelsError> {
    let views = tensors.into_iter().map(|t| {
        let bytes = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        (
            t.name,
            F32Bytes {
                shape: t.shape,
                bytes,
            },
        )
    });
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    // `serialize` + `fs::write` rather than `serialize_to_file`, whose temporary file leaves the
    // result readable by its owner only (0600), unlike the files transformers writes.
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| ModelsError::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    std::fs::write(path, bytes).map_err(|source| ModelsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every tensor of a safetensors file, keyed by name.
pub(crate) fn read_safetensors(path: &Path) -> Result<HashMap<String, FileTensor>, ModelsError> {
    let bytes = std::fs::read(path).map_err(|source| ModelsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| ModelsError::Weights {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(file
        .iter()
        .map(|(name, view)| {
            let values = (view.dtype() == Dtype::F32).then(|| {
                view.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            });
            let tensor = FileTensor {
                dtype: format!("{:?}", view.dtype()),
                shape: view.shape().to_vec(),
                values,
            };
            (name.to_string(), tensor)
        })
        .collect())
}

/// The values of a tensor as f32, row-major.
pub(crate) fn values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, ModelsError> {
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| ModelsError::InvalidArgument(format!("cannot read a tensor: {e:?}")))
}

/// Transposes a row-major `[rows, cols]` matrix into a row-major `[cols, rows]` one.
///
/// Done on host vectors rather than with `Tensor::transpose` so that the byte layout written to
/// (or read from) the file never depends on how a backend materialises a strided view.
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(values.len(), rows * cols);
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// A matrix parameter `[rows, cols]` (Burn's layout) in PyTorch's `[cols, rows]` layout.
pub(crate) fn transposed_matrix(
    name: String,
    param: &Param<Tensor<2>>,
) -> Result<NamedTensor, ModelsError> {
    let [rows, cols] = param.val().dims();
    Ok(NamedTensor {
        name,
        shape: vec![cols, rows],
        values: transpose(&values(param.val())?, rows, cols),
    })
}

/// A parameter written as it is (vectors, embedding tables).
pub(crate) fn plain<const D: usize>(
    name: String,
    param: &Param<Tensor<D>>,
) -> Result<NamedTensor, ModelsError> {
    let value = param.val();
    Ok(NamedTensor {
        name,
        shape: value.dims().to_vec(),
        values: values(value)?,
    })
}

/// Replaces a parameter's value, keeping its id and its gradient setting (so an optimizer or a
/// frozen/trainable choice made before the import stays valid).
pub(crate) fn replace<const D: usize>(
    param: Param<Tensor<D>>,
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    let tracked = param.is_require_grad();
    param.map(|_| {
        let t = Tensor::<D>::from_data(TensorData::new(values, shape), device);
        if tracked { t.require_grad() } else { t }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        // [[1, 2, 3], [4, 5, 6]] -> [[1, 4], [2, 5], [3, 6]]
        let t = transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
        assert_eq!(t, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(transpose(&t, 3, 2), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
}
