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

#[test]
fn demo_runs() {
    let (code, stdout, stderr) = dgating(&["demo"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.matches(" yes ").count(), 3, "{stdout}");
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
    assert!(out.join("model.safetensors").exists() && out.join("config.json").exists());
    let (code, stdout, stderr) = dgating(&["eval", out.to_str().unwrap(), "--data", "wine"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("compacted model on 178 rows"), "{stdout}");
    // Bad inputs: negative threshold, a directory that holds no model, corrupt weights.
    let (code, _, stderr) = dgating(&["prune", run.to_str().unwrap(), "--threshold-abs=-1", "--out", "/tmp/x"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("threshold"), "{stderr}");
    let (code, _, stderr) = dgating(&["eval", dir.path().to_str().unwrap(), "--data", "wine"]);
    assert_eq!(code, 1, "{stderr}");
    std::fs::write(out.join("model.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    let (code, _, stderr) = dgating(&["eval", out.to_str().unwrap(), "--data", "wine"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("model.safetensors") && !stderr.contains("panicked"), "{stderr}");
}
