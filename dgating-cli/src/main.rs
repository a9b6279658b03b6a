//! `dgating`: the command-line front end. Parses arguments into validated library configs,
//! calls one library entry point per subcommand and turns errors into messages and exit
//! codes (0 success, 1 error, 2 usage). No numeric code lives here.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod demo;
mod device;
mod lm;
mod output;
mod predict;
mod prune;
mod sweep;
mod train;

/// Structured sparsity by D-Gating: train a model whose unneeded groups (input features,
/// neurons) collapse to zero, prune it into a smaller dense model, evaluate it, predict with
/// it, and compare it with the baselines over a grid.
#[derive(Debug, Parser)]
#[command(name = "dgating", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// End to end on built-in data, no download: synthetic support recovery (D in {2, 3, 4}),
    /// then train, prune, export and reload a D-gated model on breast-cancer.
    Demo(demo::DemoArgs),
    /// Train a model (dense, D-Gating or a baseline) into a run directory, or resume one.
    Train(Box<train::TrainArgs>),
    /// Remove the zeroed groups of a trained run and export a smaller dense model.
    Prune(prune::PruneArgs),
    /// Score a training run or a compacted model (default: the run's held-out rows).
    Eval(prune::EvalArgs),
    /// Predict every row of a file with a training run or a compacted model.
    Predict(predict::PredictArgs),
    /// Run a grid of methods x depths x strengths x seeds at equal budgets, and report it
    /// (`dgating sweep report DIR` merges shards).
    Sweep(sweep::SweepArgs),
    /// Language models: train a gated GPT, prune its heads and MLP neurons, generate, score,
    /// import a transformers GPT-2.
    Lm(lm::LmArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // Thread count and allocator settings for candle on CPU (dgating_nn::runtime).
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    output::die_quietly_on_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Prune(args) => prune::run_prune(&args),
        Command::Eval(args) => prune::run_eval(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Lm(args) => lm::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "dgating", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::report_error(&*err);
            ExitCode::FAILURE
        }
    }
}
