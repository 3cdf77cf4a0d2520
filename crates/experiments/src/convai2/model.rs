//! The encoder classifier as a [`MetaModel`](adaptable_meta::MetaModel): the library's
//! [`TextModel`](adaptable_text::TextModel), whose ranking batches are the paper's (context,
//! candidate) cross-encoder rows scored by their class-1 logit.

/// The ConvAI2 model is the library's text model.
pub use adaptable_text::TextModel as ConvaiModel;
/// Labels of a ranking batch: 1 on each example's gold row.
pub use adaptable_text::binary_labels;
