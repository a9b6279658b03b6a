//! `dgating`: the command-line front end. Parses arguments into validated library configs,
//! calls one library entry point per subcommand and turns errors into messages and exit
//! codes. No numeric code lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod prune;
mod train;

/// Structured sparsity by D-Gating: train, prune and export smaller dense models.
#[derive(Debug, Parser)]
#[command(name = "dgating", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// End to end on built-in data, no download: synthetic support recovery (D in {2, 3, 4}),
    /// then train, prune, export and reload a D-gated model on breast-cancer.
    Demo(demo::DemoArgs),
    /// Train a model (dense, D-Gating or a baseline) into a run directory.
    Train(Box<train::TrainArgs>),
    /// Remove the zeroed groups of a trained run and export a smaller dense model.
    Prune(prune::PruneArgs),
    /// Evaluate a training run or a compacted model.
    Eval(prune::EvalArgs),
}

fn main() -> ExitCode {
    // Thread count and allocator settings for candle on CPU (dgating_nn::runtime).
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Prune(args) => prune::run_prune(&args),
        Command::Eval(args) => prune::run_eval(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = std::error::Error::source(&*err);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
