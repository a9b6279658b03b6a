//! `dgating sweep`: thin wrapper over `dgating_bench::sweep`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use dgating_bench::sweep::{Shard, SweepProgress, SweepSpec, run_shard_processes, run_sweep, write_report};

/// Arguments of `dgating sweep`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    command: Option<SweepCommand>,
    /// The grid as TOML (see `--preset` for examples: `dgating sweep --preset ci --print-spec`).
    spec: Option<PathBuf>,
    /// A built-in grid instead of a file: ci (about a minute), paper-cpu (hours on 2 cores),
    /// paper-gpu, vision-cpu (conv nets and filter-pruning baselines; many hours on 2 cores).
    #[arg(long, conflicts_with = "spec")]
    preset: Option<String>,
    /// The sweep directory (records, runs and the report). Rerunning continues a sweep.
    #[arg(long, required_unless_present = "print_spec")]
    out: Option<PathBuf>,
    /// Run only shard I of N (0-based; `I/N`), e.g. one task of a Slurm job array; all
    /// shards write to the same --out, then `dgating sweep report DIR` merges them.
    #[arg(long)]
    shard: Option<String>,
    /// Points run at once, as separate processes with cores/JOBS compute threads each
    /// (default: one per core; two processes at one thread were 1.55-1.75x faster than one at
    /// two threads on 2 cores). Results are the same as with one job.
    #[arg(long, conflicts_with = "shard")]
    jobs: Option<usize>,
    /// Do not write the report at the end (shards started by --jobs; run `sweep report`).
    #[arg(long, hide = true)]
    no_report: bool,
    /// Where every point computes (cpu, cuda, cuda:N, auto); overrides the spec's `device`.
    #[arg(long)]
    device: Option<String>,
    /// Print the spec as TOML and exit.
    #[arg(long)]
    print_spec: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum SweepCommand {
    /// Merge whatever records are in DIR (from any shards) into DIR/report.
    Report {
        /// The sweep directory.
        dir: PathBuf,
    },
}

pub fn run(args: &SweepArgs) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(SweepCommand::Report { dir }) = &args.command {
        let files = write_report(dir)?;
        let of = files.expected.map(|e| format!(" of {e}")).unwrap_or_default();
        println!("report of {}{of} points: {} ({} plots)", files.points, files.markdown.display(), files.plots.len());
        return Ok(());
    }
    let spec = match (&args.spec, &args.preset) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            SweepSpec::from_toml(&text)?
        }
        (None, Some(p)) => SweepSpec::preset(p)?,
        (None, None) => {
            return Err(
                format!("give a spec file or --preset ({})", dgating_bench::sweep::spec::PRESETS.join(", ")).into()
            );
        }
    };
    let mut spec = spec;
    if let Some(d) = &args.device {
        spec.device = dgating_nn::train::DeviceSpec::parse(d)?;
        spec.device.device()?;
    }
    if args.print_spec {
        print!("{}", spec.to_toml()?);
        return Ok(());
    }
    let out = args.out.as_ref().ok_or("--out is required")?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let jobs = args.jobs.unwrap_or(if args.shard.is_some() { 1 } else { cores });
    if jobs > 1 {
        // The same sweep as `jobs` shard processes; they share the directory, then one report.
        let exe = std::env::current_exe()?;
        let mut child_args: Vec<String> = vec!["sweep".into()];
        match (&args.spec, &args.preset) {
            (Some(p), _) => child_args.push(p.display().to_string()),
            (None, Some(p)) => child_args.extend(["--preset".into(), p.clone()]),
            (None, None) => {}
        }
        child_args.extend(["--out".into(), out.display().to_string(), "--no-report".into()]);
        if args.quiet {
            child_args.push("--quiet".into());
        }
        if let Some(d) = &args.device {
            child_args.extend(["--device".into(), d.clone()]);
        }
        run_shard_processes(&exe, &child_args, jobs, (cores / jobs).max(1))?;
    } else {
        run_one(&spec, out, args)?;
    }
    if args.no_report {
        return Ok(());
    }
    let files = write_report(out)?;
    if !args.quiet {
        let of = files.expected.map(|e| format!(" of {e}")).unwrap_or_default();
        println!("report of {}{of} points: {}", files.points, files.markdown.display());
    }
    Ok(())
}

fn run_one(spec: &SweepSpec, out: &std::path::Path, args: &SweepArgs) -> Result<(), Box<dyn std::error::Error>> {
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let quiet = args.quiet;
    let mut progress = |p: &SweepProgress| {
        if quiet {
            return;
        }
        match p {
            SweepProgress::Skipped(id) => println!("skip {id} (finished)"),
            SweepProgress::Failed { position, of, failure } => {
                println!("[{position}/{of}] {}: no model ({})", failure.id, failure.error)
            }
            SweepProgress::Done { position, of, record } => println!(
                "[{position}/{of}] {}: kept {}/{} groups, {} {:.4}{} ({:.1} s)",
                record.id,
                record.kept.iter().sum::<usize>(),
                record.groups.iter().sum::<usize>(),
                record.metric_name,
                record.metric,
                record.metric_finetuned.map(|m| format!(", fine-tuned {m:.4}")).unwrap_or_default(),
                record.train_seconds + record.finetune_seconds
            ),
        }
    };
    run_sweep(spec, out, shard, &mut progress)?;
    Ok(())
}
