//! Language-model training: a tiny gated GPT learns characters, its run reloads to the same
//! function, continues, and the recipe's optimizers treat the factors as documented.

use candle_core::{DType, Device};
use dgating_nn::Model;
use dgating_nn::lm::run::{NewRun, TextSpec, load_run, train_run};
use dgating_nn::lm::train::cross_entropy;
use dgating_nn::lm::{Corpus, LmTrainConfig, TokenizerSpec};

fn tiny(dir: &std::path::Path) -> (NewRun, LmTrainConfig) {
    let text: String = Corpus::builtin("moby-dick").unwrap().text.chars().take(40_000).collect();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    let new = NewRun {
        n_layer: 1,
        n_head: 2,
        n_embd: 32,
        block_size: 32,
        gate_heads: true,
        gate_mlp: true,
        text: TextSpec { corpus: Some(path.display().to_string()), tokenizer: TokenizerSpec::Char, val_fraction: 0.1 },
    };
    let cfg = LmTrainConfig {
        steps: 80,
        batch_size: 8,
        lr: 3e-3,
        warmup: 5,
        eval_every: 40,
        eval_windows: 8,
        ..LmTrainConfig::default()
    };
    (new, cfg)
}

#[test]
fn a_tiny_gated_gpt_learns_reloads_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let (new, cfg) = tiny(tmp.path());
    let run = tmp.path().join("run");
    let mut seen = 0;
    let (config, history) = train_run(&run, Some(&new), &cfg, &Device::Cpu, |_| {
        seen += 1;
        Ok(true)
    })
    .unwrap();
    assert_eq!((seen, history.len(), config.steps_done), (2, 2, 80));
    let vocab = config.gpt().unwrap().vocab_size as f64;
    let last = history.last().unwrap();
    // Uniform guessing costs ln(vocab) ≈ 4.1 nats; 80 steps learn character frequencies.
    assert!(last.val_loss < vocab.ln() - 0.8, "val loss {} vs ln V {}", last.val_loss, vocab.ln());
    assert_eq!(last.relative_norms.len(), 2, "heads and MLP neurons of the one block");
    // Reloaded, the model computes the same logits.
    let (back_cfg, back, tok) = load_run(&run, &Device::Cpu).unwrap();
    let tok = tok.unwrap();
    assert_eq!(back_cfg, config);
    let ids = tok.encode("Call me Ishmael.").unwrap();
    let x = candle_core::Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
    let y = candle_core::Tensor::from_vec(ids[1..].to_vec(), (1, ids.len() - 1), &Device::Cpu).unwrap();
    let logits = back.forward(&x.narrow(1, 0, ids.len() - 1).unwrap()).unwrap();
    let l = cross_entropy(&logits, &y).unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    assert!(l.is_finite());
    // Continue: 20 more steps, fresh optimizers, metrics appended.
    let more = LmTrainConfig { steps: 20, eval_every: 20, ..cfg.clone() };
    let (config2, _) = train_run(&run, None, &more, &Device::Cpu, |_| Ok(true)).unwrap();
    assert_eq!(config2.steps_done, 100);
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3);
    assert!(lines.lines().last().unwrap().contains("\"step\":100"));
    // A second new run into the same directory is refused.
    assert!(train_run(&run, Some(&new), &cfg, &Device::Cpu, |_| Ok(true)).is_err());
}

#[test]
fn heads_only_gating_gates_and_penalizes_only_the_heads() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut new, cfg) = tiny(tmp.path());
    new.gate_mlp = false;
    let cfg = LmTrainConfig { steps: 10, eval_every: 10, lambda: 0.05, ..cfg };
    let run = tmp.path().join("heads");
    let (config, history) = train_run(&run, Some(&new), &cfg, &Device::Cpu, |_| Ok(true)).unwrap();
    let gpt = config.gpt().unwrap();
    assert!(gpt.group_heads && !gpt.group_mlp);
    // Only the heads have gates: one gate set, its norms in the metrics.
    let (_, model, _) = load_run(&run, &Device::Cpu).unwrap();
    let dims: Vec<String> = model.gate_sets().iter().map(|s| s.dim().to_string()).collect();
    assert_eq!(dims.len(), 1, "{dims:?}");
    assert!(dims[0].ends_with(".heads"), "{dims:?}");
    assert_eq!(history.last().unwrap().relative_norms.len(), 1);
    // The MLP carries no gate factors: its weights are ordinary parameters of the checkpoint.
    let names: Vec<String> = model.params().unwrap().iter().map(|p| p.name.clone()).collect();
    assert!(names.iter().any(|n| n.contains("mlp.fc")), "{names:?}");
    // Nothing gated at all is refused for a gated run.
    let (mut none, _) = tiny(tmp.path());
    (none.gate_heads, none.gate_mlp) = (false, false);
    let err = train_run(&tmp.path().join("none"), Some(&none), &cfg, &Device::Cpu, |_| Ok(true)).unwrap_err();
    assert!(err.to_string().contains("heads or MLP"), "{err}");
}
