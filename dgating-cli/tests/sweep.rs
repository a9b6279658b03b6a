//! `dgating sweep` end to end with the `ci` preset: the report is well formed, plots exist,
//! a killed sweep continues, shards merge, and a point's record matches its run.

use std::path::Path;
use std::process::Command;

mod common;
use common::write_images;

fn run_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dgating")).current_dir(cwd).args(args).output().unwrap();
    let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(!e.contains("panicked"), "{e}");
    (out.status.code().unwrap_or(-1), o, e)
}

fn records(dir: &Path) -> Vec<serde_json::Value> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("records"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    v.sort_by_key(|r: &serde_json::Value| r["id"].as_str().unwrap().to_string());
    v
}

#[test]
fn ci_preset_writes_a_report_resumes_and_shards_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Two shards into one directory, as two array-job tasks would.
    for shard in ["0/2", "1/2"] {
        let (code, _, e) = run_in(d, &["sweep", "--preset", "ci", "--out", "sw", "--shard", shard, "--quiet"]);
        assert_eq!(code, 0, "{e}");
    }
    let recs = records(&d.join("sw"));
    assert_eq!(recs.len(), 16);
    let (code, out, e) = run_in(d, &["sweep", "report", "sw"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("report of 16 of 16 points"), "{out}");
    let report = d.join("sw/report");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for needle in [
        "## Budgets",
        "## Verdict",
        "### wine",
        "In words: D-Gating",
        "fine-tuned for 2 epochs",
        "wine-metric-vs-kept.png",
        "Regenerate: `dgating sweep --preset ci --out sw`",
    ] {
        assert!(md.contains(needle), "report lacks `{needle}`");
    }
    let csv = std::fs::read_to_string(report.join("points.csv")).unwrap();
    assert_eq!(csv.lines().count(), 17);
    assert_eq!(std::fs::read_to_string(report.join("points.jsonl")).unwrap().lines().count(), 16);
    for stem in
        ["wine-metric-vs-kept", "wine-metric-vs-params", "wine-metric-vs-flops", "wine-metric-vs-kept-finetuned"]
    {
        let png = std::fs::read(report.join(format!("{stem}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5000, "{stem}.png");
        let svg = std::fs::read_to_string(report.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("dgating"), "{stem}.svg");
    }
    let verdicts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("verdicts.json")).unwrap()).unwrap();
    assert_eq!(verdicts.as_array().unwrap().len(), 8);

    // A killed sweep: one record lost, its point half-written. Rerunning redoes that point only,
    // with the same result (deterministic per seed).
    let victim = recs[5]["id"].as_str().unwrap().to_string();
    std::fs::remove_file(d.join(format!("sw/records/{victim}.json"))).unwrap();
    std::fs::write(d.join(format!("sw/points/{victim}/run/junk")), b"half").unwrap();
    let (code, out, e) = run_in(d, &["sweep", "--preset", "ci", "--out", "sw"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(out.matches("skip ").count(), 15, "{out}");
    assert!(out.contains(&format!("] {victim}:")), "{out}");
    let again = records(&d.join("sw"));
    for (a, b) in recs.iter().zip(&again) {
        for key in ["kept", "metric", "metric_finetuned", "params", "gap_found"] {
            assert_eq!(a[key], b[key], "{}: {key}", a["id"]);
        }
    }
    // A directory started with another spec is refused.
    std::fs::write(
        d.join("other.toml"),
        std::fs::read_to_string(d.join("sw/spec.toml")).unwrap().replace("name = \"ci\"", "name = \"other\""),
    )
    .unwrap();
    let (code, _, e) = run_in(d, &["sweep", "other.toml", "--out", "sw"]);
    assert_eq!(code, 1);
    assert!(e.contains("another spec"), "{e}");
}

#[test]
fn a_records_metric_is_what_its_compacted_model_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (code, _, e) = run_in(d, &["sweep", "--preset", "ci", "--out", "sw", "--shard", "2/8", "--quiet"]);
    assert_eq!(code, 0, "{e}");
    for r in records(&d.join("sw")) {
        let id = r["id"].as_str().unwrap();
        if r["point"]["method"] == "magnitude" {
            continue; // compacted in memory, not exported
        }
        let (code, out, e) = run_in(d, &["eval", &format!("sw/points/{id}/compact"), "--json"]);
        assert_eq!(code, 0, "{e}");
        let ev: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let acc = ev["evaluation"]["accuracy"].as_f64().unwrap();
        assert!((acc - r["metric"].as_f64().unwrap()).abs() < 1e-9, "{id}: eval {acc} vs record {}", r["metric"]);
        let kept: u64 = r["kept"].as_array().unwrap().iter().map(|k| k.as_u64().unwrap()).sum();
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join(format!("sw/points/{id}/compact/config.json"))).unwrap())
                .unwrap();
        assert_eq!(cfg["architecture"]["input_dim"].as_u64().unwrap(), kept, "{id}");
    }
}

/// A λ so large that every feature collapses leaves no model: the point is recorded as
/// failed, the sweep goes on, and the report lists it.
#[test]
fn collapsed_points_are_recorded_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let spec = r#"
name = "collapse"
methods = ["dense", "dgating"]
depths = [2]
sparsities = []
seeds = [0]

[[tasks]]
name = "wine"
data = "wine"
model = "linear"
epochs = 20
batch_size = 16
lr = 0.05
lambdas = [50.0]

[finetune]
epochs = 1
lr = 0.01
"#;
    std::fs::write(d.join("collapse.toml"), spec).unwrap();
    let (code, out, e) = run_in(d, &["sweep", "collapse.toml", "--out", "sw"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("wine-dgating-D2-l5.000e1-s0: no model"), "{out}");
    let md = std::fs::read_to_string(d.join("sw/report/report.md")).unwrap();
    assert!(md.contains("## Points without a model") && md.contains("constant function"), "{md}");
    // A spec that is not a preset is regenerated from the copy the sweep keeps.
    assert!(md.contains("Regenerate: `dgating sweep sw/spec.toml --out sw`"), "{md}");
    // Resume skips the failed point too.
    let (code, out, e) = run_in(d, &["sweep", "collapse.toml", "--out", "sw"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(out.matches("skip ").count(), 2, "{out}");
}

/// The synthetic task records support recovery and the coefficient error against the
/// generator's truth.
#[test]
fn synthetic_points_record_support_and_coefficient_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let spec = r#"
name = "syn"
methods = ["dgating", "magnitude"]
depths = [3]
sparsities = [0.75]
seeds = [0]

[[tasks]]
name = "synthetic"
data = "synthetic"
model = "linear"
epochs = 60
batch_size = 32
lr = 0.02
lambdas = [0.1]

[finetune]
epochs = 1
lr = 0.01
"#;
    std::fs::write(d.join("syn.toml"), spec).unwrap();
    let (code, _, e) = run_in(d, &["sweep", "syn.toml", "--out", "sw", "--quiet"]);
    assert_eq!(code, 0, "{e}");
    for r in records(&d.join("sw")) {
        assert_eq!(r["support_exact"], true, "{}", r["id"]);
        let err = r["coef_error"].as_f64().unwrap();
        // D-Gating shrinks the kept coefficients a little (the penalty's bias); the dense fit
        // behind magnitude pruning does not.
        assert!(err < 0.1, "{}: coefficient error {err}", r["id"]);
    }
}

/// A vision task (a tiny VGG-11 with batch norm on a small image directory) with every
/// filter-pruning method at the same fine-tuning budget: dense, D-Gating, magnitude,
/// L1-filter and slimming. The prune-once methods remove their target share of every
/// layer's filters (L1-filter, magnitude) or of all filters (slimming), FLOPs drop, and the
/// report compares D-Gating with them.
#[test]
fn vision_task_compares_filter_pruning_methods() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("imgs")).unwrap();
    write_images(&d.join("imgs"), "train", 64);
    write_images(&d.join("imgs"), "t10k", 32);
    let spec = r#"
name = "vision"
methods = ["dense", "dgating", "magnitude", "l1_filter", "slimming"]
depths = [3]
sparsities = [0.5]
seeds = [0]

[[tasks]]
name = "vgg"
data = "imgs"
model = "vgg11@0.0625"
epochs = 1
batch_size = 32
lr = 0.05
lambdas = [0.01]
slimming_lambda = 1e-4

[finetune]
epochs = 1
lr = 0.01
"#;
    std::fs::write(d.join("vision.toml"), spec).unwrap();
    let (code, _, e) = run_in(d, &["sweep", "vision.toml", "--out", "sw", "--jobs", "1", "--quiet"]);
    assert_eq!(code, 0, "{e}");
    let recs = records(&d.join("sw"));
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "vgg-dense-s0",
            "vgg-dgating-D3-l1.000e-2-s0",
            "vgg-l1-filter-t0.5-s0",
            "vgg-magnitude-t0.5-s0",
            "vgg-slimming-l1.000e-4-t0.5-s0"
        ]
    );
    for r in &recs {
        assert!(r["metric_finetuned"].is_number(), "{}: fine-tuned like every point", r["id"]);
        let method = r["point"]["method"].as_str().unwrap();
        if ["magnitude", "l1_filter", "slimming"].contains(&method) {
            let removed = r["removed_fraction"].as_f64().unwrap();
            assert!((removed - 0.5).abs() < 0.05, "{}: removed {removed}", r["id"]);
            assert!(r["flops"].as_u64().unwrap() < r["flops_before"].as_u64().unwrap(), "{}", r["id"]);
        }
        if ["magnitude", "l1_filter"].contains(&method) {
            // Per-layer methods remove half of each layer's filters.
            let (groups, kept) = (r["groups"].as_array().unwrap(), r["kept"].as_array().unwrap());
            for (g, k) in groups.iter().zip(kept) {
                assert_eq!(k.as_u64().unwrap(), g.as_u64().unwrap().div_ceil(2), "{}", r["id"]);
            }
        }
    }
    let md = std::fs::read_to_string(d.join("sw/report/report.md")).unwrap();
    assert!(md.contains("### vgg") && md.contains("slimming"), "{md}");
}

/// A language task: a tiny character-level GPT on a corpus file, dense, D-Gating (heads gated)
/// and magnitude at half of each block's heads, each fine-tuned the same number of steps; the
/// metric is the negative validation loss. Methods that do not apply are refused up front.
#[test]
fn language_task_prunes_heads_and_scores_validation_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("corpus.txt"), "Call me Ishmael. The whale swims in the sea.\n".repeat(200)).unwrap();
    let spec = r#"
name = "lm"
methods = ["dense", "dgating", "magnitude"]
depths = [3]
sparsities = [0.5]
seeds = [0]

[[tasks]]
name = "tiny"
data = "corpus.txt"
model = "gpt"
batch_size = 4
lr = 3e-3
lambdas = [0.01]

[tasks.lm]
n_layer = 2
n_head = 4
n_embd = 16
block_size = 16
steps = 30
groups = "heads"
finetune_steps = 5
eval_windows = 4

[finetune]
epochs = 0
lr = 1e-3
"#;
    std::fs::write(d.join("lm.toml"), spec).unwrap();
    let (code, _, e) = run_in(d, &["sweep", "lm.toml", "--out", "sw", "--jobs", "1", "--quiet"]);
    assert_eq!(code, 0, "{e}");
    let recs = records(&d.join("sw"));
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tiny-dense-s0", "tiny-dgating-D3-l1.000e-2-s0", "tiny-magnitude-t0.5-s0"]);
    let dense = &recs[0];
    for r in &recs {
        assert_eq!(r["metric_name"], "neg_val_loss", "{r}");
        let (m, ft) = (r["metric"].as_f64().unwrap(), r["metric_finetuned"].as_f64().unwrap());
        // Minus a character-level NLL: below 0, above -ln(vocabulary) by a margin after training.
        assert!(m < 0.0 && m > -4.0 && ft < 0.0, "{r}");
        // Only the two blocks' heads are groups.
        assert_eq!(r["groups"], serde_json::json!([4, 4]), "{r}");
    }
    assert_eq!(dense["kept"], serde_json::json!([4, 4]));
    assert_eq!(recs[2]["kept"], serde_json::json!([2, 2]), "magnitude keeps half of each block's heads");
    assert!(recs[2]["flops"].as_u64().unwrap() < recs[2]["flops_before"].as_u64().unwrap());
    // The D-Gating point went through `lm prune`: its export is there and loads.
    assert!(d.join("sw/points/tiny-dgating-D3-l1.000e-2-s0/compact/report.json").exists());
    let md = std::fs::read_to_string(d.join("sw/report/report.md")).unwrap();
    assert!(md.contains("### tiny") && md.contains("neg_val_loss") && md.contains("30 steps"), "{md}");

    // l1_filter has no meaning for a GPT: refused before anything runs.
    std::fs::write(d.join("bad.toml"), spec.replace(r#""magnitude"]"#, r#""magnitude", "l1_filter"]"#)).unwrap();
    let (code, _, e) = run_in(d, &["sweep", "bad.toml", "--out", "sw2"]);
    assert!(code != 0 && e.contains("language task") && e.contains("l1-filter"), "{e}");
}
