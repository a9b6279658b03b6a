//! `dgating lm ...` end to end on a tiny configuration: train, prune, generate, score,
//! import-gpt2, export-gpt2, and the bad inputs the issue lists.

use std::path::Path;
use std::process::Command;

fn dgating(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dgating")).args(args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

const TINY: &[&str] = &[
    "--n-layer",
    "2",
    "--n-head",
    "4",
    "--n-embd",
    "16",
    "--block-size",
    "16",
    "--steps",
    "30",
    "--batch-size",
    "4",
    "--eval-every",
    "15",
    "--eval-windows",
    "4",
    "--lr",
    "3e-3",
    "--warmup",
    "3",
];

#[test]
fn train_prune_generate_score_on_a_tiny_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Call me Ishmael. The whale swims in the sea.\n".repeat(200);
    let corpus = dir.path().join("c.txt");
    std::fs::write(&corpus, text).unwrap();
    let run = dir.path().join("run");
    let (run_s, corpus_s) = (run.to_str().unwrap(), corpus.to_str().unwrap());
    // Heads and MLP neurons gated (the default gates only heads).
    let mut args = vec!["lm", "train", "--out", run_s, "--corpus", corpus_s, "--json", "--gate", "all"];
    args.extend_from_slice(TINY);
    let (code, stdout, stderr) = dgating(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "two evaluations and a summary: {stdout}");
    assert_eq!(json(&stdout)["steps_done"], 30);
    for f in ["config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl"] {
        assert!(run.join(f).exists(), "{f}");
    }
    // Prune with a relative threshold that surely removes some heads and neurons.
    let small = dir.path().join("small");
    let (code, stdout, stderr) =
        dgating(&["lm", "prune", run_s, "--out", small.to_str().unwrap(), "--threshold-rel", "0.6", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let r = json(&stdout);
    assert!(r["max_rel_diff"].as_f64().unwrap() <= 1e-4, "{r}");
    assert_eq!(r["same_greedy_tokens"], true);
    assert!(r["after"]["params"].as_u64().unwrap() < r["before"]["params"].as_u64().unwrap());
    assert!(small.join("tokenizer.json").exists());
    // Generate and score with the compacted model; the run's own validation text by default.
    let (code, stdout, stderr) = dgating(&[
        "lm",
        "generate",
        small.to_str().unwrap(),
        "--prompt",
        "Call",
        "--max-tokens",
        "20",
        "--temperature",
        "0",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout)["tokens"], 20);
    let (code, stdout, stderr) = dgating(&["lm", "score", run_s, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let s = json(&stdout);
    assert!(s["mean_nll"].as_f64().unwrap() > 0.0 && s["tokens"].as_u64().unwrap() > 100, "{s}");
    let (code, stdout, _) = dgating(&["lm", "score", small.to_str().unwrap(), corpus_s, "--json"]);
    assert_eq!(code, 0);
    assert!((json(&stdout)["perplexity"].as_f64().unwrap()).is_finite());
    // Continue the run.
    let (code, _, stderr) =
        dgating(&["lm", "train", "--resume", run_s, "--steps", "5", "--eval-every", "5", "--quiet"]);
    assert_eq!(code, 0, "{stderr}");
    // What only a new run can choose (its shape, text, tokenizer, gated groups) is a usage
    // error with --resume, not silently ignored.
    for flag in [["--gate", "heads"], ["--n-head", "2"], ["--tokenizer", "bpe"], ["--corpus", corpus_s]] {
        let mut args = vec!["lm", "train", "--resume", run_s, "--steps", "1", "--quiet"];
        args.extend(flag);
        let (code, _, stderr) = dgating(&args);
        assert_eq!(code, 2, "{flag:?}: {stderr}");
        assert!(stderr.contains("--resume"), "{flag:?}: {stderr}");
    }

    // --device on every lm command that runs a model: `auto` falls back to the CPU and scores
    // the same; an unknown device or CUDA in a build without it is a clear error.
    let (code, stdout, stderr) =
        dgating(&["lm", "score", small.to_str().unwrap(), corpus_s, "--json", "--device", "auto"]);
    assert_eq!(code, 0, "{stderr}");
    let auto = json(&stdout)["mean_nll"].as_f64().unwrap();
    let (_, stdout, _) = dgating(&["lm", "score", small.to_str().unwrap(), corpus_s, "--json"]);
    assert_eq!(auto, json(&stdout)["mean_nll"].as_f64().unwrap());
    let out2 = dir.path().join("small2");
    let with_device = |device: &str| -> Vec<(i32, String, String)> {
        [
            vec!["lm", "train", "--resume", run_s, "--steps", "1", "--quiet", "--device", device],
            vec!["lm", "prune", run_s, "--out", out2.to_str().unwrap(), "--device", device],
            vec!["lm", "generate", run_s, "--prompt", "Call", "--device", device],
            vec!["lm", "score", run_s, "--device", device],
        ]
        .iter()
        .map(|args| dgating(args))
        .collect()
    };
    for (code, _, e) in with_device("tpu") {
        assert!(code != 0 && e.contains("unknown device `tpu`"), "{e}");
    }
    if !cfg!(feature = "cuda") {
        for (code, _, e) in with_device("cuda:1") {
            assert!(code != 0 && e.contains("no CUDA support"), "{e}");
        }
    }
    assert!(!out2.exists());

    // Bad input: a prompt longer than the context, a character the tokenizer never saw.
    let long = "a".repeat(40);
    let (code, _, stderr) = dgating(&["lm", "generate", run_s, "--prompt", &long]);
    assert!(code != 0 && stderr.contains("block_size"), "{stderr}");
    let (code, _, stderr) = dgating(&["lm", "generate", run_s, "--prompt", "Zebra"]);
    assert!(code != 0 && stderr.contains("byte offset 0"), "{stderr}");
}

#[test]
fn bad_corpora_and_token_ids_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"the whale\nna\xefve\n").unwrap();
    for (file, needle) in [(&empty, "empty"), (&latin1, "byte offset 12")] {
        let out = dir.path().join("r");
        let mut args = vec!["lm", "train", "--out", out.to_str().unwrap(), "--corpus", file.to_str().unwrap()];
        args.extend_from_slice(TINY);
        let (code, _, stderr) = dgating(&args);
        assert!(code != 0 && stderr.contains(needle), "{stderr}");
    }
}

#[test]
fn imported_gpt2_scores_like_transformers() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dgating-nn/tests/data/gpt2-tiny");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("gpt2");
    let (code, stdout, stderr) =
        dgating(&["lm", "import-gpt2", fixture.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("2 blocks, heads 4/4"), "{stdout}");
    let ids = dir.path().join("ids.txt");
    let seq: Vec<String> = (0..16).map(|i| ((7 * i + 3) % 61).to_string()).collect();
    std::fs::write(&ids, seq.join(" ")).unwrap();
    let (code, stdout, stderr) =
        dgating(&["lm", "score", run.to_str().unwrap(), "--token-ids", ids.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    // transformers' mean NLL (dgating-nn/tests/reference/gpt2_fixture.py).
    let nll = json(&stdout)["mean_nll"].as_f64().unwrap();
    assert!((nll - 4.4075832367).abs() < 1e-5, "{nll}");
    std::fs::write(&ids, "1 2 61").unwrap();
    let (code, _, stderr) = dgating(&["lm", "score", run.to_str().unwrap(), "--token-ids", ids.to_str().unwrap()]);
    assert!(code != 0 && stderr.contains("outside the vocabulary"), "{stderr}");
}

#[test]
fn gate_heads_gates_only_the_heads_and_prune_keeps_the_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.txt");
    std::fs::write(&corpus, "Call me Ishmael. The whale swims in the sea.\n".repeat(200)).unwrap();
    let run = dir.path().join("run");
    let mut args = vec!["lm", "train", "--out", run.to_str().unwrap(), "--corpus", corpus.to_str().unwrap()];
    // Heads gated on their output path (v and the projection), the form a pruned head keeps
    // nothing of; the rest of the pipeline is the same.
    args.extend_from_slice(&["--gate", "heads", "--head-group", "output", "--quiet"]);
    args.extend_from_slice(TINY);
    let (code, _, stderr) = dgating(&args);
    assert_eq!(code, 0, "{stderr}");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    let gpt = &config["architecture"];
    assert_eq!((gpt["group_heads"].as_bool(), gpt["group_mlp"].as_bool()), (Some(true), Some(false)), "{gpt}");
    assert_eq!(gpt["head_group"].as_str(), Some("output"), "{gpt}");
    // The default recipe: dense for the first third of the 30 steps, gated to 7/15, then cut.
    let train = &config["train"];
    assert_eq!((train["gate_from"].as_u64(), train["cut_at"].as_u64()), (Some(10), Some(14)), "{train}");
    assert_eq!((train["lambda"].as_f64(), train["gate_init"].as_str()), (Some(0.03), Some("ones")), "{train}");
    // A relative threshold that removes heads; the MLP has no gates, so its width stays.
    let small = dir.path().join("small");
    let (code, stdout, stderr) = dgating(&[
        "lm",
        "prune",
        run.to_str().unwrap(),
        "--out",
        small.to_str().unwrap(),
        "--threshold-rel",
        "0.9",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let r = json(&stdout);
    let sizes = &r["after"]["sizes"];
    assert_eq!((sizes["blocks.0.mlp"].as_u64(), sizes["blocks.1.mlp"].as_u64()), (Some(64), Some(64)), "{r}");
    let removed: u64 = r["groups"].as_array().unwrap().iter().map(|g| g["removed"].as_u64().unwrap()).sum();
    assert!(
        removed > 0 && r["groups"].as_array().unwrap().iter().all(|g| g["dim"].as_str().unwrap().ends_with(".heads")),
        "{r}"
    );
    assert!(r["max_rel_diff"].as_f64().unwrap() <= 1e-4, "{r}");

    // The pruned model as a transformers GPT-2 directory (pruned_heads), imported back: it
    // scores exactly like the compacted export.
    let hf = dir.path().join("hf");
    let (code, stdout, stderr) =
        dgating(&["lm", "export-gpt2", small.to_str().unwrap(), "--out", hf.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let w = json(&stdout);
    let pruned: usize = w["pruned_heads"].as_array().unwrap().iter().map(|p| p.as_array().unwrap().len()).sum();
    assert_eq!(pruned as u64, removed, "{w}");
    assert!(hf.join("tokenizer.json").exists());
    let back = dir.path().join("back");
    let (code, _, stderr) =
        dgating(&["lm", "import-gpt2", hf.to_str().unwrap(), "--out", back.to_str().unwrap(), "--no-gates"]);
    assert_eq!(code, 0, "{stderr}");
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "1 5 9 2 7 3 8 4 6 0 1 2").unwrap();
    let score = |d: &Path| {
        let (code, stdout, stderr) =
            dgating(&["lm", "score", d.to_str().unwrap(), "--token-ids", ids.to_str().unwrap(), "--json"]);
        assert_eq!(code, 0, "{stderr}");
        json(&stdout)["mean_nll"].as_f64().unwrap()
    };
    let (a, b) = (score(&small), score(&back));
    assert!((a - b).abs() <= 1e-5 * a.abs(), "compacted {a} vs exported and re-imported {b}");
}
