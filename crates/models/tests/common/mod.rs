//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor};
use serde_json::Value;

/// `crates/models/tests/fixtures/...`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The repository's `datasets/...`.
pub fn dataset(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets")
        .join(rel)
}

pub fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is valid JSON")
}

/// Flattens nested JSON arrays of numbers.
pub fn flat_f32(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat_f32).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number") as f32],
        other => panic!("not a number array: {other}"),
    }
}

pub fn rows_u32(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .expect("array of rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect()
        })
        .collect()
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The CPU backend the tests run on: flex (the default), ndarray when only `ndarray` is compiled in.
#[allow(deprecated, unreachable_code)]
pub fn cpu() -> Device {
    #[cfg(feature = "flex")]
    return Device::flex();
    #[cfg(feature = "ndarray")]
    return Device::ndarray();
    panic!("no CPU backend compiled in (features flex or ndarray)")
}

/// Collects `path -> (shape, gradient)` for every float parameter of a module.
pub struct GradCollector<'a> {
    grads: &'a Gradients,
    path: Vec<String>,
    pub out: HashMap<String, (Vec<usize>, Option<Vec<f32>>)>,
}

impl<'a> GradCollector<'a> {
    pub fn collect<M: Module>(
        module: &M,
        grads: &'a Gradients,
    ) -> HashMap<String, (Vec<usize>, Option<Vec<f32>>)> {
        let mut c = Self {
            grads,
            path: Vec::new(),
            out: HashMap::new(),
        };
        module.visit(&mut c);
        c.out
    }
}

impl ModuleVisitor for GradCollector<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let shape = value.dims().to_vec();
        let grad = value.grad(self.grads).map(to_vec);
        self.out.insert(self.path.join("."), (shape, grad));
    }
}
