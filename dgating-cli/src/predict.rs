//! `dgating predict`: one prediction per input row, in order, with class names.

use std::path::PathBuf;

use clap::Args;
use dgating_prune::predict_dir_on;

use crate::device::DeviceArg;

/// Arguments of `dgating predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A training run or a compacted model directory.
    model_dir: PathBuf,
    /// The rows to predict: a .csv/.tsv file (optionally .gz; columns matched to the model's
    /// by name, the target column may be absent), a built-in name or an IDX directory.
    #[arg(long)]
    data: String,
    /// Add one probability column `p_CLASS` per class (classifiers).
    #[arg(long)]
    proba: bool,
    /// Write the predictions to this CSV file (atomically) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(args: &PredictArgs) -> Result<(), Box<dyn std::error::Error>> {
    let predictions = predict_dir_on(&args.model_dir, &args.data, &args.device.device()?)?;
    let csv = predictions.to_csv(args.proba);
    match &args.out {
        Some(path) => dgating_nn::train::checkpoint::atomic_write(path, csv.as_bytes())?,
        None => print!("{csv}"),
    }
    Ok(())
}
