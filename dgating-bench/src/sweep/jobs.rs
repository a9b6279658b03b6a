//! Local concurrency: `N` shard processes of the same sweep on one machine, each with
//! `cores / N` compute threads. On the 2-core machine, two processes at one thread each
//! finished a sweep 1.55–1.75× sooner than one process at two threads (docs/SWEEP.md): the
//! GEMMs of these small models do not keep two threads busy, two independent points do. This
//! is the same mechanism as `--shard` across machines, started here instead of by a scheduler.

use std::path::Path;
use std::process::{Command, ExitStatus};

use crate::error::{Error, Result};

/// Runs `exe` with `args` plus `--shard i/jobs` for every `i < jobs`, all at once, each with
/// `RAYON_NUM_THREADS = threads`, and waits for all of them. An exit status other than success
/// is an error naming the shard (the others still finish: their records are kept).
pub fn run_shard_processes(exe: &Path, args: &[String], jobs: usize, threads: usize) -> Result<()> {
    if jobs == 0 {
        return Err(Error::InvalidConfig("--jobs must be >= 1".into()));
    }
    let mut children = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let child = Command::new(exe)
            .args(args)
            .arg("--shard")
            .arg(format!("{i}/{jobs}"))
            .env("RAYON_NUM_THREADS", threads.max(1).to_string())
            .spawn()
            .map_err(|e| Error::io(exe, e))?;
        children.push(child);
    }
    let statuses: Vec<(usize, std::io::Result<ExitStatus>)> =
        children.into_iter().enumerate().map(|(i, mut c)| (i, c.wait())).collect();
    for (i, s) in statuses {
        match s {
            Ok(s) if s.success() => {}
            Ok(s) => return Err(Error::InvalidConfig(format!("shard {i}/{jobs} failed ({s}); rerun to continue"))),
            Err(e) => return Err(Error::io(exe, e)),
        }
    }
    Ok(())
}
