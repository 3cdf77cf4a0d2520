//! The encoder's adaptable linear layers, as one typed list, and sets of them as LoRA targets.
//!
//! [`EncoderLinear`] is the single table of the six linear layers of a transformer layer: the
//! loader's key map, the PEFT export/import names and LoRA targeting all read their names from it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ModelsError;

/// One of the six linear layers of an encoder layer, in forward order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EncoderLinear {
    /// Attention query projection (HF `attention.self.query`).
    Query,
    /// Attention key projection (HF `attention.self.key`).
    Key,
    /// Attention value projection (HF `attention.self.value`).
    Value,
    /// Attention output projection (HF `attention.output.dense`).
    AttentionOutput,
    /// Feed-forward up-projection (HF `intermediate.dense`).
    Intermediate,
    /// Feed-forward down-projection (HF `output.dense`).
    Output,
}

impl EncoderLinear {
    /// All six, in forward order (the order of [`EncoderLayer::linears`](crate::layer::EncoderLayer::linears)).
    pub const ALL: [EncoderLinear; 6] = [
        EncoderLinear::Query,
        EncoderLinear::Key,
        EncoderLinear::Value,
        EncoderLinear::AttentionOutput,
        EncoderLinear::Intermediate,
        EncoderLinear::Output,
    ];

    /// Position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The short name used in configs and on the command line (`query`, `key`, `value`,
    /// `attention_output`, `intermediate`, `output`).
    pub fn name(self) -> &'static str {
        match self {
            EncoderLinear::Query => "query",
            EncoderLinear::Key => "key",
            EncoderLinear::Value => "value",
            EncoderLinear::AttentionOutput => "attention_output",
            EncoderLinear::Intermediate => "intermediate",
            EncoderLinear::Output => "output",
        }
    }

    /// The module path inside a transformers layer (`attention.self.query`, ...,
    /// `output.dense`): the suffix PEFT's `target_modules` match.
    pub fn hf_path(self) -> &'static str {
        match self {
            EncoderLinear::Query => "attention.self.query",
            EncoderLinear::Key => "attention.self.key",
            EncoderLinear::Value => "attention.self.value",
            EncoderLinear::AttentionOutput => "attention.output.dense",
            EncoderLinear::Intermediate => "intermediate.dense",
            EncoderLinear::Output => "output.dense",
        }
    }

    /// The module path inside our [`EncoderLayer`](crate::layer::EncoderLayer)
    /// (`attention.query`, ..., `output`).
    pub fn burn_path(self) -> &'static str {
        match self {
            EncoderLinear::Query => "attention.query",
            EncoderLinear::Key => "attention.key",
            EncoderLinear::Value => "attention.value",
            EncoderLinear::AttentionOutput => "attention.output",
            EncoderLinear::Intermediate => "intermediate",
            EncoderLinear::Output => "output",
        }
    }

    /// Parses a short name or an HF module path (`query` or `attention.self.query`,
    /// `attention_output` or `attention.output.dense`, ...).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|l| l.name() == text || l.hf_path() == text)
    }
}

impl fmt::Display for EncoderLinear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which encoder linear layers carry LoRA adapters: any subset of [`EncoderLinear`].
///
/// Written in configs and on the command line as `all`, `query-value`, or a comma-separated list of
/// names (`query,value,intermediate`; HF paths such as `attention.output.dense` are accepted too).
/// In TOML and JSON a list of names is accepted as well.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoraTargets {
    /// Bit `l.index()` is set when linear `l` is targeted.
    mask: u8,
}

impl LoraTargets {
    /// Query, key, value, attention output, intermediate and output (the paper's LoRA-ML setting).
    pub const ALL: LoraTargets = LoraTargets { mask: 0b11_1111 };
    /// Query and value only (the original LoRA paper's choice).
    pub const QUERY_VALUE: LoraTargets = LoraTargets {
        mask: (1 << EncoderLinear::Query as u8) | (1 << EncoderLinear::Value as u8),
    };
    /// No layer.
    pub const NONE: LoraTargets = LoraTargets { mask: 0 };

    /// The set of `linears`.
    pub fn of(linears: impl IntoIterator<Item = EncoderLinear>) -> Self {
        Self {
            mask: linears
                .into_iter()
                .fold(0, |mask, l| mask | (1 << l.index())),
        }
    }

    /// Whether `linear` is targeted.
    pub fn contains(self, linear: EncoderLinear) -> bool {
        self.mask & (1 << linear.index()) != 0
    }

    /// Whether no layer is targeted.
    pub fn is_empty(self) -> bool {
        self.mask == 0
    }

    /// The targeted layers, in forward order.
    pub fn iter(self) -> impl Iterator<Item = EncoderLinear> {
        EncoderLinear::ALL
            .into_iter()
            .filter(move |&l| self.contains(l))
    }
}

impl Default for LoraTargets {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Debug for LoraTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoraTargets({self})")
    }
}

impl fmt::Display for LoraTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LoraTargets::ALL => f.write_str("all"),
            LoraTargets::QUERY_VALUE => f.write_str("query-value"),
            _ => {
                let names: Vec<&str> = self.iter().map(EncoderLinear::name).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl FromStr for LoraTargets {
    type Err = ModelsError;

    fn from_str(text: &str) -> Result<Self, ModelsError> {
        match text.trim() {
            "all" | "all-linear" => return Ok(Self::ALL),
            "query-value" => return Ok(Self::QUERY_VALUE),
            _ => {}
        }
        let linears = text
            .split(',')
            .map(|name| {
                EncoderLinear::parse(name).ok_or_else(|| {
                    ModelsError::InvalidArgument(format!(
                        "unknown LoRA target {:?}: expected all, query-value, or a comma-separated \
                         list of query, key, value, attention_output, intermediate, output",
                        name.trim()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::of(linears))
    }
}

impl Serialize for LoraTargets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for LoraTargets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            List(Vec<String>),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Text(text) => text,
            Written::List(names) => names.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_subsets_parse() {
        for l in EncoderLinear::ALL {
            assert_eq!(EncoderLinear::parse(l.name()), Some(l));
            assert_eq!(EncoderLinear::parse(l.hf_path()), Some(l));
            assert_eq!(EncoderLinear::ALL[l.index()], l);
        }
        assert_eq!("all".parse::<LoraTargets>().unwrap(), LoraTargets::ALL);
        let qv: LoraTargets = "value, query".parse().unwrap();
        assert_eq!(qv, LoraTargets::QUERY_VALUE);
        assert_eq!(qv.to_string(), "query-value");
        let some: LoraTargets = "key,attention.output.dense".parse().unwrap();
        assert_eq!(
            some.iter().collect::<Vec<_>>(),
            [EncoderLinear::Key, EncoderLinear::AttentionOutput]
        );
        assert_eq!(some.to_string(), "key,attention_output");
        assert_eq!(some.to_string().parse::<LoraTargets>().unwrap(), some);
        let err = "query,dense".parse::<LoraTargets>().unwrap_err();
        assert!(err.to_string().contains("\"dense\""), "{err}");
    }

    #[test]
    fn serde_accepts_the_old_names_and_lists() {
        #[derive(Deserialize, Serialize)]
        struct S {
            t: LoraTargets,
        }
        let s: S = serde_json::from_str(r#"{"t":"query-value"}"#).unwrap();
        assert_eq!(s.t, LoraTargets::QUERY_VALUE);
        let s: S = serde_json::from_str(r#"{"t":["query","output"]}"#).unwrap();
        assert_eq!(
            s.t,
            LoraTargets::of([EncoderLinear::Query, EncoderLinear::Output])
        );
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"t":"query,output"}"#
        );
        assert!(serde_json::from_str::<S>(r#"{"t":"qv"}"#).is_err());
    }
}
