//! `--device`: the one flag every command that runs a model takes.

use clap::Args;
use dgating_nn::train::DeviceSpec;

/// Where a command's model computes.
#[derive(Debug, Clone, Args)]
pub struct DeviceArg {
    /// Where the model computes: cpu, cuda, cuda:N or auto (a GPU when the build has CUDA
    /// support and one is present, else the CPU).
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl DeviceArg {
    /// The parsed flag; CUDA in a build without it, or a missing GPU, is an error here.
    pub fn spec(&self) -> Result<DeviceSpec, Box<dyn std::error::Error>> {
        let spec = DeviceSpec::parse(&self.device)?;
        spec.device()?;
        Ok(spec)
    }

    /// The candle device.
    pub fn device(&self) -> Result<candle_core::Device, Box<dyn std::error::Error>> {
        Ok(self.spec()?.device()?)
    }
}
