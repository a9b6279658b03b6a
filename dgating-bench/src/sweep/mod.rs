//! `dgating sweep`: the paper's comparisons over a grid — tasks × methods × depths ×
//! strengths × seeds at equal budgets — resumable, shardable over machines, reported with
//! means, spreads, Pareto fronts, plots and a verdict per task.
//!
//! ```text
//! SweepSpec (TOML or preset) --points--> [Point] --shard I/N--> run_point --> records/<id>.json
//! records/*.json (any shards) --write_report--> report/{points.csv, points.jsonl, settings.csv,
//!                                                      pareto.csv, verdicts.json, *.svg, *.png, report.md}
//! ```

pub mod jobs;
pub mod lm_point;
pub mod plot;
pub mod point;
pub mod record;
pub mod report;
pub mod runner;
pub mod spec;

pub use jobs::run_shard_processes;
pub use point::{Point, Shard, points};
pub use record::PointRecord;
pub use report::{ReportFiles, Setting, Verdict, write_report};
pub use runner::{AfterEpoch, FinetuneBudget, SweepProgress, finetune_compacted, run_sweep};
pub use spec::{FinetuneSpec, Grid, LmGroups, LmTaskSpec, Method, SweepSpec, TaskSpec};
