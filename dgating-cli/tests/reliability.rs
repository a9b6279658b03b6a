//! The cases of docs/RELIABILITY.md through the binary: every one used to give a silent wrong
//! answer, mix up runs or lose data, and must now be right or a clear error (exit != 0, a
//! sentence, no file changed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dgating")
}

/// Runs the binary in `cwd`: `(exit code, stdout, stderr)`.
fn run_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).current_dir(cwd).args(args).output().expect("binary runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(!stderr.contains("panicked"), "panic for {args:?}: {stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dgating-nn/data").join(name)
}

/// A CSV as a header and rows of cells.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    (header, lines.map(|l| l.split(',').map(String::from).collect()).collect())
}

fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) {
    let mut s = header.join(",") + "\n";
    for r in rows {
        s.push_str(&r.join(","));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// Breast-cancer with text labels `no` / `yes` in a column `label`.
fn cancer_yes_no(path: &Path) {
    let (mut header, mut rows) = read_csv(&repo_file("breast_cancer.csv"));
    let t = header.iter().position(|h| h == "target").unwrap();
    header[t] = "label".into();
    for r in &mut rows {
        r[t] = if r[t] == "1" { "yes".into() } else { "no".into() };
    }
    write_csv(path, &header, &rows);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn train_linear(cwd: &Path, data: &str, target: Option<&str>, out: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["train", "--data", data, "--model", "linear", "--lambda", "0.01", "--out", out];
    if !extra.contains(&"--epochs") {
        args.extend(["--epochs", "8"]);
    }
    if let Some(t) = target {
        args.extend(["--target", t]);
    }
    args.extend_from_slice(extra);
    run_in(cwd, &args)
}

fn accuracy(stdout: &str) -> f64 {
    let i = stdout.find("accuracy ").expect("an accuracy") + 9;
    stdout[i..].split('%').next().unwrap().parse().unwrap()
}

/// Case 1: columns are matched by name, in any order; unknown or missing columns are errors
/// that name them.
#[test]
fn columns_are_matched_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("cancer.csv");
    cancer_yes_no(&csv);
    let (code, _, e) = train_linear(d, s(&csv), Some("label"), "run", &[]);
    assert_eq!(code, 0, "{e}");
    let (code, base, e) = run_in(d, &["eval", "run", "--data", s(&csv)]);
    assert_eq!(code, 0, "{e}");
    // Same columns, reversed order.
    let (header, rows) = read_csv(&csv);
    let rev = |v: &Vec<String>| v.iter().rev().cloned().collect::<Vec<_>>();
    let reordered = d.join("reordered.csv");
    write_csv(&reordered, &rev(&header), &rows.iter().map(rev).collect::<Vec<_>>());
    let (code, out, e) = run_in(d, &["eval", "run", "--data", s(&reordered)]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(accuracy(&out), accuracy(&base), "{out} vs {base}");
    assert!(accuracy(&out) > 90.0, "{out}");
    // A renamed column is an error naming it (and the compacted model says the same).
    let mut renamed = header.clone();
    renamed[0] = "radius".into();
    let bad = d.join("renamed.csv");
    write_csv(&bad, &renamed, &rows);
    let (code, _, e) = run_in(d, &["eval", "run", "--data", s(&bad)]);
    assert_eq!(code, 1);
    assert!(e.contains("unknown column `radius`"), "{e}");
    let (code, _, e) = run_in(d, &["prune", "run", "--out", "small"]);
    assert_eq!(code, 0, "{e}");
    let (code, out, e) = run_in(d, &["eval", "small", "--data", s(&reordered)]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(accuracy(&out), accuracy(&base), "{out}");
    let dropped = d.join("dropped.csv");
    let keep: Vec<usize> = (1..header.len()).collect();
    write_csv(
        &dropped,
        &keep.iter().map(|&j| header[j].clone()).collect::<Vec<_>>(),
        &rows.iter().map(|r| keep.iter().map(|&j| r[j].clone()).collect()).collect::<Vec<_>>(),
    );
    let (code, _, e) = run_in(d, &["eval", "run", "--data", s(&dropped)]);
    assert_eq!(code, 1);
    assert!(e.contains(&format!("missing column `{}`", header[0])), "{e}");
}

/// Case 2: labels are mapped by class name; a label the model does not know is an error.
#[test]
fn labels_are_mapped_by_class_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("cancer.csv");
    cancer_yes_no(&csv);
    let (code, _, e) = train_linear(d, s(&csv), Some("label"), "run", &[]);
    assert_eq!(code, 0, "{e}");
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("run/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["class_names"], serde_json::json!(["no", "yes"]));
    // Only `yes` rows: one class present, still mapped to the model's `yes`.
    let (header, rows) = read_csv(&csv);
    let t = header.iter().position(|h| h == "label").unwrap();
    let yes: Vec<Vec<String>> = rows.iter().filter(|r| r[t] == "yes").cloned().collect();
    let only_yes = d.join("yes.csv");
    write_csv(&only_yes, &header, &yes);
    let (code, out, e) = run_in(d, &["eval", "run", "--data", s(&only_yes)]);
    assert_eq!(code, 0, "{e}");
    assert!(accuracy(&out) > 90.0, "{out}");
    // `no` renamed to `zzz` flips the sorted order: an error, not 4% accuracy.
    let zzz: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r[t] == "no" {
                r[t] = "zzz".into();
            }
            r
        })
        .collect();
    let flipped = d.join("zzz.csv");
    write_csv(&flipped, &header, &zzz);
    let (code, _, e) = run_in(d, &["eval", "run", "--data", s(&flipped)]);
    assert_eq!(code, 1);
    assert!(e.contains("label `zzz` is not a class of the model") && e.contains("no, yes"), "{e}");
    // The export records the class names too (FORMAT.md).
    let (code, _, e) = run_in(d, &["prune", "run", "--out", "small"]);
    assert_eq!(code, 0, "{e}");
    let exp: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("small/config.json")).unwrap()).unwrap();
    assert_eq!(exp["input"]["class_names"], serde_json::json!(["no", "yes"]));
    let (code, _, e) = run_in(d, &["eval", "small", "--data", s(&flipped)]);
    assert_eq!(code, 1);
    assert!(e.contains("`zzz`"), "{e}");
    // A classifier given a real-valued target gets a sentence, not a tensor error.
    let real: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r[t] = "0.5".into();
            r
        })
        .collect();
    let reg = d.join("real.csv");
    write_csv(&reg, &header, &real);
    let (code, _, e) = run_in(d, &["eval", "run", "--data", s(&reg)]);
    assert_eq!(code, 1);
    assert!(e.contains("label `0.5` is not a class"), "{e}");
}

/// Case 3: the task is chosen by a stated rule and printed; `--task` overrides it; a
/// one-class target is an error.
#[test]
fn task_is_chosen_visibly_and_can_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ages: String = (0..200).map(|i| format!("{},{},{}\n", i % 7, (i * 13) % 5, (i * 7) % 71)).collect();
    std::fs::write(d.join("age.csv"), format!("a,b,age\n{ages}")).unwrap();
    let (code, out, e) = train_linear(d, "age.csv", Some("age"), "r-age", &["--epochs", "1"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("task: regression") && out.contains("71 distinct integers"), "{out}");
    let (code, out, e) =
        train_linear(d, "age.csv", Some("age"), "r-age-cls", &["--epochs", "1", "--task", "classification"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("as asked"), "{out}");

    let pm: String = (0..100).map(|i| format!("{},{}\n", i, if i % 2 == 0 { -1 } else { 1 })).collect();
    std::fs::write(d.join("pm.csv"), format!("a,y\n{pm}")).unwrap();
    let (code, out, e) = train_linear(d, "pm.csv", Some("y"), "r-pm", &["--epochs", "1"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("task: classification") && out.contains("-1, 1"), "{out}");

    std::fs::write(d.join("ones.csv"), "a,y\n1,1\n2,1\n3,1\n4,1\n5,1\n").unwrap();
    let (code, _, e) = train_linear(d, "ones.csv", Some("y"), "r-ones", &[]);
    assert_eq!(code, 1);
    assert!(e.contains("one value (`1`)"), "{e}");
    std::fs::write(d.join("cat.csv"), "a,y\n1,cat\n2,cat\n3,cat\n4,cat\n5,cat\n").unwrap();
    let (code, _, e) = train_linear(d, "cat.csv", Some("y"), "r-cat", &[]);
    assert_eq!(code, 1);
    assert!(e.contains("one class (`cat`)") && e.contains("at least two"), "{e}");
    let (code, _, e) = train_linear(d, "cat.csv", Some("y"), "r-cat", &["--task", "regression"]);
    assert_eq!(code, 1);
    assert!(e.contains("regression needs numbers"), "{e}");
    assert!(!d.join("r-ones").exists() && !d.join("r-cat").exists(), "a refused run left a directory");
}

/// Case 4: a run directory is locked: a second writer gets a clear error and the directory
/// holds one run's files.
#[test]
fn one_process_per_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Deterministic: this test holds the lock itself.
    std::fs::create_dir(d.join("held")).unwrap();
    let lock = std::fs::File::create(d.join("held/.dgating.lock")).unwrap();
    lock.try_lock().unwrap();
    let (code, _, e) = train_linear(d, "wine", None, "held", &[]);
    assert_eq!(code, 1);
    assert!(e.contains("in use by another dgating process"), "{e}");
    assert_eq!(std::fs::read_dir(d.join("held")).unwrap().count(), 1, "files written under a held lock");
    drop(lock);
    // Two real processes started together: exactly one run wins, and its files agree.
    let spawn = |lambda: &str| {
        Command::new(bin())
            .current_dir(d)
            .args([
                "train", "--data", "wine", "--model", "linear", "--epochs", "40", "--lambda", lambda, "--out", "race",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("0.01"), spawn("0.02"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ok: Vec<bool> = [&a, &b].iter().map(|o| o.status.success()).collect();
    assert_eq!(ok.iter().filter(|&&x| x).count(), 1, "both or neither succeeded: {ok:?}");
    let loser = if ok[0] { &b } else { &a };
    let msg = String::from_utf8_lossy(&loser.stderr);
    assert!(msg.contains("in use by another dgating process") || msg.contains("already holds a run"), "{msg}");
    let lambda = if ok[0] { 0.01 } else { 0.02 };
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("race/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["train"]["gate"]["lambda"].as_f64(), Some(lambda));
    assert_eq!(std::fs::read_to_string(d.join("race/metrics.jsonl")).unwrap().lines().count(), 40);
    // Pruning a run that is being written is refused too.
    let lock = std::fs::File::open(d.join("race/.dgating.lock")).unwrap();
    lock.try_lock().unwrap();
    let (code, _, e) = run_in(d, &["prune", "race", "--out", "small"]);
    assert_eq!(code, 1);
    assert!(e.contains("in use"), "{e}");
    assert!(!d.join("small").exists());
}

/// Case 5: prune refuses a non-empty target unless `--force`.
#[test]
fn prune_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, e) = train_linear(d, "wine", None, "run", &[]);
    assert_eq!(code, 0, "{e}");
    std::fs::create_dir(d.join("theirs")).unwrap();
    std::fs::write(d.join("theirs/model.safetensors"), b"someone's weights").unwrap();
    std::fs::write(d.join("theirs/config.json"), b"{}").unwrap();
    let (code, _, e) = run_in(d, &["prune", "run", "--out", "theirs"]);
    assert_eq!(code, 1);
    assert!(e.contains("is not empty") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(d.join("theirs/model.safetensors")).unwrap(), b"someone's weights");
    let (code, _, e) = run_in(d, &["prune", "run", "--out", "theirs", "--force"]);
    assert_eq!(code, 0, "{e}");
    dgating_prune::import(&d.join("theirs")).unwrap();
}

/// Case 6: a process killed before its first checkpoint leaves no dead end; a run stopped by a
/// non-finite loss in its first epoch neither blocks its directory nor prunes to untrained
/// weights.
#[test]
fn early_crashes_leave_no_dead_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, e) = train_linear(d, "wine", None, "full", &["--epochs", "2"]);
    assert_eq!(code, 0, "{e}");
    // What kill -9 during the first checkpoint leaves: config.json and a temp file.
    std::fs::create_dir(d.join("killed")).unwrap();
    std::fs::copy(d.join("full/config.json"), d.join("killed/config.json")).unwrap();
    std::fs::write(d.join("killed/.model.safetensors.tmp-999999"), vec![0u8; 4096]).unwrap();
    let (code, _, e) = run_in(d, &["train", "--resume", "killed"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(std::fs::read_to_string(d.join("killed/metrics.jsonl")).unwrap().lines().count(), 2);
    assert!(!d.join("killed/.model.safetensors.tmp-999999").exists());
    // ...and a fresh `train` may take such a directory over.
    std::fs::create_dir(d.join("killed2")).unwrap();
    std::fs::copy(d.join("full/config.json"), d.join("killed2/config.json")).unwrap();
    let (code, _, e) = train_linear(d, "wine", None, "killed2", &[]);
    assert_eq!(code, 0, "{e}");
    // Case 10 and 6: the first update overflows every weight. The error names the step where
    // it happened (not a later loss, nor the epoch's last step) and the parameter.
    let (code, _, e) = train_linear(d, "wine", None, "nan", &["--lr", "1e300", "--warmup", "0"]);
    assert_eq!(code, 1);
    assert!(e.contains("non-finite parameter `layers.0.") && e.contains("epoch 1, step 1;"), "{e}");
    let (code, _, e) = run_in(d, &["prune", "nan", "--out", "nan-small"]);
    assert_eq!(code, 1);
    assert!(e.contains("has not completed an epoch") && e.contains("non-finite"), "{e}");
    assert!(!d.join("nan-small").exists());
    let (code, _, e) = train_linear(d, "wine", None, "nan", &[]);
    assert_eq!(code, 0, "{e}");
}

/// Case 7: resume rejects flags it would ignore, extends with `--epochs`, and refuses changed
/// config, missing metrics and changed data.
#[test]
fn resume_does_what_it_is_told_or_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("cancer.csv");
    cancer_yes_no(&csv);
    let (code, _, e) = train_linear(d, s(&csv), Some("label"), "run", &["--epochs", "3"]);
    assert_eq!(code, 0, "{e}");
    for flag in [["--lambda", "0.5"], ["--data", "wine"], ["--mode", "dense"]] {
        let (code, _, e) = run_in(d, &["train", "--resume", "run", flag[0], flag[1]]);
        assert_eq!(code, 2, "{flag:?}");
        assert!(e.contains("cannot be used with") && e.contains(flag[0]), "{e}");
    }
    let (code, _, e) = run_in(d, &["train", "--resume", "run", "--epochs", "5"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(std::fs::read_to_string(d.join("run/metrics.jsonl")).unwrap().lines().count(), 5);
    let (code, _, e) = run_in(d, &["train", "--resume", "run", "--epochs", "2"]);
    assert_eq!(code, 1);
    assert!(e.contains("below the 5 epochs already done"), "{e}");
    // Changed data.
    let original = std::fs::read(&csv).unwrap();
    let (header, mut rows) = read_csv(&csv);
    rows[0][0] = "99".into();
    write_csv(&csv, &header, &rows);
    let (code, _, e) = run_in(d, &["train", "--resume", "run", "--epochs", "6"]);
    assert_eq!(code, 1);
    assert!(e.contains("data changed"), "{e}");
    let (code, _, e) = run_in(d, &["prune", "run", "--out", "small"]);
    assert_eq!(code, 1);
    assert!(e.contains("data changed"), "{e}");
    std::fs::write(&csv, original).unwrap();
    // An edited config.json.
    let cfg_path = d.join("run/config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace("\"lambda\": 0.01", "\"lambda\": 0.5")).unwrap();
    let (code, _, e) = run_in(d, &["train", "--resume", "run"]);
    assert_eq!(code, 1);
    assert!(e.contains("config.json") && e.contains("changed since training started"), "{e}");
    std::fs::write(&cfg_path, cfg).unwrap();
    // A deleted metrics.jsonl.
    std::fs::remove_file(d.join("run/metrics.jsonl")).unwrap();
    let (code, _, e) = run_in(d, &["train", "--resume", "run"]);
    assert_eq!(code, 1);
    assert!(e.contains("metrics.jsonl"), "{e}");
}

/// Case 8: a closed stdout ends the process quietly (no panic, no exit 101).
#[test]
fn broken_pipe_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, e) = train_linear(d, "wine", None, "run", &[]);
    assert_eq!(code, 0, "{e}");
    // 180 000 rows of predictions: far more than a pipe buffer.
    let (header, rows) = read_csv(&repo_file("wine.csv"));
    let many: Vec<Vec<String>> = rows.iter().cycle().take(180_000).cloned().collect();
    write_csv(&d.join("many.csv"), &header, &many);
    let mut child = Command::new(bin())
        .current_dir(d)
        .args(["predict", "run", "--data", "many.csv", "--proba"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

/// Case 9: metrics are appended and the state stays small.
#[test]
fn per_epoch_writes_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, e) = train_linear(d, "wine", None, "run", &["--epochs", "30"]);
    assert_eq!(code, 0, "{e}");
    let state = std::fs::read_to_string(d.join("run/state.json")).unwrap();
    assert!(state.len() < 400 && !state.contains("train_loss"), "{state}");
    assert_eq!(std::fs::read_to_string(d.join("run/metrics.jsonl")).unwrap().lines().count(), 30);
}

/// Predict: one row per input row, in order, with class names; a run and its compacted model
/// agree; `--proba` and `--out`.
#[test]
fn predict_writes_class_names_in_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("cancer.csv");
    cancer_yes_no(&csv);
    let (code, _, e) = train_linear(d, s(&csv), Some("label"), "run", &["--epochs", "20"]);
    assert_eq!(code, 0, "{e}");
    let (code, _, e) = run_in(d, &["prune", "run", "--out", "small"]);
    assert_eq!(code, 0, "{e}");
    // Without the target column.
    let (header, rows) = read_csv(&csv);
    let t = header.iter().position(|h| h == "label").unwrap();
    let cols: Vec<usize> = (0..header.len()).filter(|&j| j != t).collect();
    write_csv(
        &d.join("x.csv"),
        &cols.iter().map(|&j| header[j].clone()).collect::<Vec<_>>(),
        &rows.iter().map(|r| cols.iter().map(|&j| r[j].clone()).collect()).collect::<Vec<_>>(),
    );
    let (code, out, e) = run_in(d, &["predict", "run", "--data", "x.csv"]);
    assert_eq!(code, 0, "{e}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "prediction");
    assert_eq!(lines.len(), rows.len() + 1);
    let agree = lines[1..].iter().zip(&rows).filter(|(p, r)| **p == r[t]).count();
    assert!(agree as f64 > 0.9 * rows.len() as f64, "{agree} of {}", rows.len());
    let (code, _, e) = run_in(d, &["predict", "small", "--data", s(&csv), "--proba", "--out", "p.csv"]);
    assert_eq!(code, 0, "{e}");
    let p = std::fs::read_to_string(d.join("p.csv")).unwrap();
    let plines: Vec<&str> = p.lines().collect();
    assert_eq!(plines[0], "prediction,p_no,p_yes");
    for (a, b) in lines[1..].iter().zip(&plines[1..]) {
        assert_eq!(*a, b.split(',').next().unwrap());
    }
}

/// `--json` gives one parsable object per line with documented keys; `--quiet` prints nothing.
#[test]
fn json_and_quiet_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out, e) = train_linear(d, "wine", None, "run", &["--epochs", "3", "--json"]);
    assert_eq!(code, 0, "{e}");
    let objs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs.len(), 5, "{out}");
    assert_eq!(objs[0]["event"], "start");
    assert_eq!(objs[0]["task"], "classification");
    assert_eq!(objs[1]["event"], "epoch");
    assert!(objs[1]["metrics"]["val_accuracy"].is_number());
    assert_eq!(objs[4]["event"], "summary");
    assert_eq!(objs[4]["epochs_done"], 3);
    let (code, out, e) = run_in(d, &["prune", "run", "--out", "small", "--json"]);
    assert_eq!(code, 0, "{e}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(report["after"]["params"].is_number() && report["verification"]["max_abs"].is_number());
    let (code, out, e) = run_in(d, &["eval", "small", "--json"]);
    assert_eq!(code, 0, "{e}");
    let ev: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ev["loss_kind"], "cross_entropy");
    assert_eq!(ev["samples"], 36);
    let (code, out, e) = train_linear(d, "wine", None, "quiet", &["--epochs", "2", "--quiet"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.is_empty(), "{out}");
}

/// Regression metrics beside the loss, labelled; the held-out score of a compacted model;
/// per-epoch lines in logs; the default warm-up leaves its warm-up; `train` twice without
/// --out.
#[test]
fn scripting_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out, e) = run_in(d, &["train", "--data", "synthetic", "--model", "linear", "--epochs", "4"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(out.matches("val RMSE").count(), 4, "one line per epoch in a log: {out}");
    let (code, out2, e) = run_in(d, &["train", "--data", "synthetic", "--model", "linear", "--epochs", "1"]);
    assert_eq!(code, 0, "{e}");
    let runs: Vec<String> =
        std::fs::read_dir(d.join("runs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(runs.len(), 2, "{runs:?} {out2}");
    let run = d.join("runs/synthetic-linear-dgating-1");
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    // 480 rows / 128 = 4 steps per epoch, 16 steps: 5% is 1 step of warm-up.
    assert_eq!(cfg["train"]["schedule"]["warmup"], 1);
    let (code, out, e) = run_in(d, &["prune", s(&run), "--out", "small"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("RMSE") && out.contains("R2"), "{out}");
    let (code, out, e) = run_in(d, &["eval", "small"]);
    assert_eq!(code, 0, "{e}");
    assert!(
        out.contains("on 120 rows of the held-out split") && out.contains("1/2 MSE") && out.contains("RMSE"),
        "{out}"
    );
}

/// Held-out data: `--test-fraction`, `--val-data`, and the t10k files of an IDX directory.
#[test]
fn held_out_data_choices() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out, e) = train_linear(d, "wine", None, "tf", &["--epochs", "1", "--test-fraction", "0.5"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("89 training rows, 89 held-out rows"), "{out}");
    let (code, _, e) = train_linear(d, "wine", None, "tf2", &["--test-fraction", "1.5"]);
    assert_eq!(code, 1);
    assert!(e.contains("(0, 1)"), "{e}");
    let (header, rows) = read_csv(&repo_file("wine.csv"));
    write_csv(&d.join("train.csv"), &header, &rows[..150]);
    let rev = |v: &Vec<String>| v.iter().rev().cloned().collect::<Vec<_>>();
    write_csv(&d.join("val.csv"), &rev(&header), &rows[150..].iter().map(rev).collect::<Vec<_>>());
    let (code, out, e) =
        train_linear(d, "train.csv", Some("target"), "vd", &["--epochs", "1", "--val-data", "val.csv"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("150 training rows, 28 held-out rows (the file val.csv)"), "{out}");
    // IDX with t10k files.
    let idx = d.join("idx");
    std::fs::create_dir(&idx).unwrap();
    let write = |name: &str, n: u8, offset: u8| {
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, n, 0, 0, 0, 2, 0, 0, 0, 2];
        let mut lab = vec![0, 0, 8, 1, 0, 0, 0, n];
        for i in 0..n {
            let c = (i + offset) % 2;
            img.extend([c * 200, 10, 10, c * 200]);
            lab.push(c);
        }
        std::fs::write(idx.join(format!("{name}-images-idx3-ubyte")), img).unwrap();
        std::fs::write(idx.join(format!("{name}-labels-idx1-ubyte")), lab).unwrap();
    };
    write("train", 40, 0);
    write("t10k", 10, 1);
    let (code, out, e) = train_linear(d, s(&idx), None, "idx-run", &["--epochs", "1"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("40 training rows, 10 held-out rows (the t10k-* files"), "{out}");
}

/// Messages for people: no Rust debug output, valid ranges, OS errors once with a hint,
/// no raw control bytes, TSV and gzip, help lists real commands, completions.
#[test]
fn messages_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, e) = train_linear(d, "wine", None, "m", &["--momentum", "1.0"]);
    assert_eq!(code, 1);
    assert!(e.contains("[0, 1)") && !e.contains("Sgd {"), "{e}");
    // Devices: a build without CUDA says so; `auto` falls back to the CPU.
    if !cfg!(feature = "cuda") {
        let (code, _, e) = train_linear(d, "wine", None, "gpu", &["--device", "cuda"]);
        assert_eq!(code, 1);
        assert!(e.contains("no CUDA support") && e.contains("--features cuda"), "{e}");
        assert!(!d.join("gpu").exists());
    }
    let (code, _, e) = train_linear(d, "wine", None, "tpu", &["--device", "tpu"]);
    assert_eq!(code, 1);
    assert!(e.contains("unknown device `tpu`") && e.contains("cuda:N"), "{e}");
    let (code, _, e) = train_linear(d, "wine", None, "auto", &["--device", "auto", "--epochs", "1"]);
    assert_eq!(code, 0, "{e}");
    // Every command that runs a model takes --device, with the same rules.
    let with_device = |device: &str| -> Vec<(i32, String, String)> {
        let out = format!("compact-{device}");
        [
            vec!["eval", "auto", "--device", device],
            vec!["predict", "auto", "--data", "wine", "--device", device],
            vec!["prune", "auto", "--out", out.as_str(), "--device", device],
            vec!["sweep", "--preset", "ci", "--out", "sweep", "--print-spec", "--device", device],
        ]
        .iter()
        .map(|args| run_in(d, args))
        .collect()
    };
    for (code, _, e) in with_device("auto") {
        assert_eq!(code, 0, "{e}");
    }
    assert!(d.join("compact-auto/model.safetensors").exists());
    for (code, _, e) in with_device("tpu") {
        assert_eq!(code, 1);
        assert!(e.contains("unknown device `tpu`"), "{e}");
    }
    if !cfg!(feature = "cuda") {
        for (code, _, e) in with_device("cuda:1") {
            assert_eq!(code, 1);
            assert!(e.contains("no CUDA support"), "{e}");
        }
        assert!(!d.join("compact-cuda:1").exists());
    }
    let (code, _, e) = train_linear(d, "wine", None, "m", &["--lr-floor", "1.5"]);
    assert_eq!(code, 1);
    assert!(e.contains("floor must be in [0, 1]"), "{e}");
    let (code, _, e) =
        train_linear(d, "wine", None, "floor", &["--lr-floor", "0.5", "--lr-tail", "0.3", "--epochs", "2"]);
    assert_eq!(code, 0, "{e}");
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("floor/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["train"]["schedule"]["kind"], "cosine_floor");
    assert_eq!(cfg["train"]["schedule"]["floor"], 0.5);
    std::fs::write(d.join("afile"), "x").unwrap();
    let (code, _, e) = train_linear(d, "wine", None, "afile/run", &[]);
    assert_eq!(code, 1);
    assert!(e.contains("afile") && e.matches("os error").count() == 1 && e.contains("hint:"), "{e}");
    let (code, _, e) = run_in(d, &["train", "--resume", "no-such-run"]);
    assert_eq!(code, 1);
    assert!(e.contains("no-such-run") && e.contains("is not a run directory"), "{e}");
    let (code, _, e) = train_linear(d, "no-such.csv", Some("y"), "x", &[]);
    assert_eq!(code, 1);
    assert!(e.contains("no-such.csv") && e.contains("does not exist"), "{e}");
    std::fs::write(d.join("bin.csv"), b"a,y\n\x1b[2J\x07,0\n").unwrap();
    let (code, _, e) = train_linear(d, "bin.csv", Some("y"), "b", &[]);
    assert_eq!(code, 1);
    assert!(!e.contains('\x1b') && !e.contains('\x07'), "{e:?}");
    let crlf: String = (0..20).map(|i| format!("{i},{}\r\n", i % 2)).collect::<String>() + "x,1\r\n";
    std::fs::write(d.join("crlf.csv"), format!("a,y\r\n{crlf}")).unwrap();
    let (code, _, e) = train_linear(d, "crlf.csv", Some("y"), "c", &[]);
    assert_eq!(code, 1);
    assert!(e.contains("row 21 (line 22)"), "{e}");
    // TSV and gzip.
    let (header, rows) = read_csv(&repo_file("wine.csv"));
    let tsv: String =
        std::iter::once(header.join("\t")).chain(rows.iter().map(|r| r.join("\t"))).collect::<Vec<_>>().join("\n");
    std::fs::write(d.join("wine.tsv"), &tsv).unwrap();
    let (code, _, e) = train_linear(d, "wine.tsv", Some("target"), "tsv", &["--epochs", "1"]);
    assert_eq!(code, 0, "{e}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, std::fs::read(repo_file("wine.csv")).unwrap().as_slice()).unwrap();
    std::fs::write(d.join("wine.csv.gz"), gz.finish().unwrap()).unwrap();
    let (code, _, e) = run_in(d, &["eval", "tsv", "--data", "wine.csv.gz"]);
    assert_eq!(code, 0, "{e}");
    let (code, out, _) = run_in(d, &["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("predict") && out.contains("sweep"), "{out}");
    let (code, out, _) = run_in(d, &["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(out.contains("dgating") && out.contains("complete"), "{}", &out[..200.min(out.len())]);
    let (code, out, e) = run_in(d, &["prune", "tsv", "--out", "tsv-small"]);
    assert_eq!(code, 0, "{e}");
    assert!(out.contains("kept features") && !out.contains("Inputs"), "{out}");
}

/// kill -9 in the middle of training, then `--resume`: the same bits as a run that was never
/// interrupted.
#[test]
fn kill_9_then_resume_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = |out: &'static str| -> Vec<&'static str> {
        vec![
            "train",
            "--data",
            "breast-cancer",
            "--model",
            "mlp",
            "--epochs",
            "40",
            "--batch-size",
            "16",
            "--lambda",
            "0.01",
            "--out",
            out,
        ]
    };
    let (code, _, e) = run_in(d, &args("whole"));
    assert_eq!(code, 0, "{e}");
    let mut child = Command::new(bin())
        .current_dir(d)
        .args(args("killed"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = d.join("killed/metrics.jsonl");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map(|m| m.lines().count()).unwrap_or(0) < 3 {
        assert!(start.elapsed().as_secs() < 120, "training did not progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (code, _, e) = run_in(d, &["train", "--resume", "killed"]);
    assert_eq!(code, 0, "{e}");
    let tensors = |run: &str| {
        let (t, _) = dgating_nn::train::checkpoint::load_tensors(
            &d.join(run).join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let mut v: Vec<(String, Vec<u32>)> = t
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()))
            .collect();
        v.sort();
        v
    };
    assert!(tensors("whole") == tensors("killed"), "resumed weights differ from the uninterrupted run");
    assert_eq!(std::fs::read_to_string(&metrics).unwrap().lines().count(), 40);
}
