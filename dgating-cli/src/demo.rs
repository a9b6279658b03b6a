//! `dgating demo`: the synthetic support-recovery experiment of `dgating-bench`.

use clap::Args;
use dgating_bench::experiments::synthetic_recovery::{self, RecoveryConfig};

/// Arguments of `dgating demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 2025)]
    seed: u64,
    /// Noise standard deviation of the targets.
    #[arg(long, default_value_t = 0.5)]
    noise: f64,
    /// Print the full report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = RecoveryConfig::default();
    config.data.seed = args.seed;
    config.data.noise_std = args.noise;
    let report = synthetic_recovery::run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let d = &config.data;
    println!(
        "synthetic group-sparse regression: n={} samples, {} groups of {}, {} active, noise std {}, seed {}",
        d.samples, d.groups, d.group_size, d.active_groups, d.noise_std, d.seed
    );
    println!("true support: {:?}   lambda_max = {:.4}", report.true_support, report.lambda_max);
    println!(
        "{:>2}  {:>9}  {:<24} {:>6}  {:>10}  {:>10}",
        "D", "lambda", "recovered support", "exact", "coef error", "iterations"
    );
    for r in &report.rows {
        let conv = if r.converged { "" } else { " (not converged)" };
        println!(
            "{:>2}  {:>9.5}  {:<24} {:>6}  {:>10.4}  {:>10}{conv}",
            r.depth,
            r.lambda,
            format!("{:?}", r.recovered),
            if r.exact { "yes" } else { "no" },
            r.coef_rel_error,
            r.iterations
        );
    }
    println!("coef error = ||beta_hat - beta|| / ||beta||; support = groups with ||w_j|| above the threshold");
    Ok(())
}
