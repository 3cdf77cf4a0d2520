//! Run-time choice of the compute backend among those compiled in.

use std::{fmt, str::FromStr};

use burn::tensor::Device;

use crate::ExperimentError;

/// A compute backend, chosen at run time with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Burn's NdArray CPU backend (`--features ndarray`).
    Ndarray,
    /// Burn's pure-Rust Flex CPU backend with run-time selected AVX-512/AVX2 `gemm` kernels; the
    /// default, 1.5–2× faster than NdArray on our machines (docs/benchmarks.md).
    #[default]
    Flex,
    /// A GPU through wgpu (Vulkan, Metal, DX12).
    Wgpu,
}

impl Backend {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ndarray => "ndarray",
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The device of this backend, or an error naming the Cargo feature to enable.
    pub fn device(self) -> Result<Device, ExperimentError> {
        select(self)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = ExperimentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ndarray" => Ok(Backend::Ndarray),
            "flex" => Ok(Backend::Flex),
            "wgpu" => Ok(Backend::Wgpu),
            other => Err(ExperimentError::Device(format!(
                "unknown device `{other}`; expected one of: ndarray, flex, wgpu"
            ))),
        }
    }
}

// NdArray is deprecated in Burn 0.22; it stays selectable for comparison, and this is the one place
// that constructs it.
#[allow(deprecated)]
fn select(backend: Backend) -> Result<Device, ExperimentError> {
    match backend {
        #[cfg(feature = "ndarray")]
        Backend::Ndarray => Ok(Device::ndarray()),
        #[cfg(feature = "flex")]
        Backend::Flex => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[allow(unreachable_patterns)]
        other => Err(ExperimentError::Device(format!(
            "device `{other}` is not compiled into this binary; rebuild with \
             `--features {other}` (e.g. `cargo run --release -p adaptable-cli --features {other} -- …`)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_names_and_rejects_others() {
        assert_eq!("flex".parse::<Backend>().unwrap(), Backend::Flex);
        let err = "cuda".parse::<Backend>().unwrap_err().to_string();
        assert!(err.contains("unknown device `cuda`"), "{err}");
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn missing_backend_names_the_feature() {
        let err = Backend::Wgpu.device().unwrap_err().to_string();
        assert!(err.contains("--features wgpu"), "{err}");
    }
}
