//! The experiment harness: `cargo run --release -p dgating-bench --bin harness -- <experiment> [OUT_DIR]`.
//! Experiments: `lenet-sparsity` (default output `docs/results/lenet-sparsity`).

use std::path::PathBuf;
use std::process::ExitCode;

use dgating_bench::experiments::lenet_sparsity::{self, LenetConfig};

fn main() -> ExitCode {
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("lenet-sparsity") => {
            let out = args.get(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("docs/results/lenet-sparsity"));
            lenet_sparsity::run(&LenetConfig::default(), &out, &mut |m| eprintln!("{m}"))
                .map(|r| println!("{}", lenet_sparsity::markdown(&r)))
        }
        _ => {
            eprintln!("usage: harness lenet-sparsity [OUT_DIR]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
