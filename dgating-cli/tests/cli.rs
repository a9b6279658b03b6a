//! The `dgating` binary end to end: exit codes and messages for good and bad input.

use std::process::Command;

fn dgating(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dgating")).args(args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn train_writes_a_run_and_resume_of_a_finished_run_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let (code, stdout, stderr) =
        dgating(&["train", "--data", "wine", "--model", "linear", "--epochs", "3", "--lambda", "0.05", "--out", out_s]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("epoch   3"), "{stdout}");
    for f in ["config.json", "model.safetensors", "optimizer.safetensors", "state.json", "metrics.jsonl"] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().count(), 3);
    // Training into the same directory again is refused, not overwritten.
    let (code, _, stderr) = dgating(&["train", "--data", "wine", "--model", "linear", "--epochs", "1", "--out", out_s]);
    assert_ne!(code, 0);
    assert!(stderr.contains("already holds a run"), "{stderr}");
    let (code, _, stderr) = dgating(&["train", "--resume", out_s]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn bad_input_gives_a_message_and_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--depth", "1"], "D must be >= 2"),
        (&["--lambda=-0.5"], "lambda must be finite and >= 0"),
        (&["--lr", "0"], "learning rate"),
        (&["--model", "resnet"], "unknown model `resnet`"),
        (&["--data", "imagenet"], "imagenet"),
        (&["--mode", "l1"], "unknown mode `l1`"),
        (&["--optimizer", "lion"], "unknown optimizer `lion`"),
        (&["--data", "/nonexistent/file.csv", "--target", "y"], "/nonexistent/file.csv"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["train", "--epochs", "1", "--out", out_s];
        args.extend_from_slice(extra);
        let (code, _, stderr) = dgating(&args);
        assert_eq!(code, 1, "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: expected `{needle}` in: {stderr}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
        assert!(!out.join("model.safetensors").exists(), "{extra:?} left files behind");
    }
}

#[test]
fn csv_with_a_bad_cell_names_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "a,b,y\n1,2,0\n3,oops,1\n").unwrap();
    let out = dir.path().join("run");
    let (code, _, stderr) =
        dgating(&["train", "--data", csv.to_str().unwrap(), "--target", "y", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("oops") && stderr.contains("`b`"), "{stderr}");
}

/// The demo end to end: synthetic recovery, then train, prune, export and reload on
/// breast-cancer. The export on disk loads and matches the gated run; a re-run replaces the
/// demo's own output and a directory holding anything else is refused untouched.
#[test]
fn demo_runs_end_to_end_and_its_export_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let out_s = out.to_str().unwrap();
    // The language part with 40 training steps instead of the demo's 800 (CI time).
    let (code, stdout, stderr) = dgating(&["demo", "--out", out_s, "--lm-steps", "40"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.matches(" yes ").count(), 3, "{stdout}");
    assert!(stdout.contains("3. language model") && stdout.contains("greedy tokens identical: true"), "{stdout}");
    assert!(out.join("lm-compact/tokenizer.json").exists());
    assert!(stdout.contains("reloaded from disk") && stdout.contains("kept features"), "{stdout}");
    let compact = out.join("compact");
    for f in ["model.safetensors", "config.json", "report.json"] {
        assert!(compact.join(f).exists(), "missing compact/{f}");
    }
    let model = dgating_prune::import(&compact).unwrap();
    assert!(model.config.architecture.input_dim() < 30, "no feature removed: {:?}", model.config.dims);
    assert!(model.config.provenance.read_out.is_some());
    let check = dgating_prune::check_export(&out.join("gated"), &compact).unwrap();
    assert!(check.verification.max_rel <= 1e-5, "{:?}", check.verification);
    assert_eq!(check.gated.accuracy, check.compacted.accuracy);
    let (code, stdout, stderr) = dgating(&["eval", compact.to_str().unwrap(), "--data", "breast-cancer"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("compacted model on 569 rows"), "{stdout}");

    let (code, _, stderr) = dgating(&["demo", "--out", out_s, "--lm-steps", "10"]);
    assert_eq!(code, 0, "re-run: {stderr}");
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let (code, _, stderr) = dgating(&["demo", "--out", out_s, "--lm-steps", "10"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("notes.txt") && !stderr.contains("panicked"), "{stderr}");
    assert!(out.join("notes.txt").exists() && compact.join("model.safetensors").exists());
}

#[test]
fn prune_and_eval_a_trained_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = dir.path().join("small");
    let (code, _, stderr) = dgating(&[
        "train",
        "--data",
        "wine",
        "--model",
        "linear",
        "--lambda",
        "0.2",
        "--epochs",
        "60",
        "--batch-size",
        "16",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) =
        dgating(&["prune", run.to_str().unwrap(), "--threshold-rel", "0.01", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("removed") && stdout.contains("max rel"), "{stdout}");
    // Explicit thresholds replace the default read-out: no gap rule.
    assert!(stdout.contains("threshold absolute 0e0, relative 1e-2 (no gap rule)"), "{stdout}");
    assert!(out.join("model.safetensors").exists() && out.join("config.json").exists());
    let (code, stdout, stderr) = dgating(&["eval", out.to_str().unwrap(), "--data", "wine"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("compacted model on 178 rows"), "{stdout}");
    // No flags: the default read-out, with its cut-off and gap per layer.
    let out2 = dir.path().join("small-default");
    let (code, stdout, stderr) = dgating(&["prune", run.to_str().unwrap(), "--out", out2.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("read-out: gap rule (factor 10)") && stdout.contains("; cut "), "{stdout}");
    // Bad inputs: negative threshold, gap factor <= 1, a directory that holds no model, corrupt weights.
    let (code, _, stderr) = dgating(&["prune", run.to_str().unwrap(), "--threshold-abs=-1", "--out", "/tmp/x"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("threshold"), "{stderr}");
    let (code, _, stderr) = dgating(&["prune", run.to_str().unwrap(), "--gap-factor", "1", "--out", "/tmp/x"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("gap factor"), "{stderr}");
    let (code, _, stderr) = dgating(&["eval", dir.path().to_str().unwrap(), "--data", "wine"]);
    assert_eq!(code, 1, "{stderr}");
    std::fs::write(out.join("model.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    let (code, _, stderr) = dgating(&["eval", out.to_str().unwrap(), "--data", "wine"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("model.safetensors") && !stderr.contains("panicked"), "{stderr}");
}
