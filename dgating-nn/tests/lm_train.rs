//! Language-model training: a tiny gated GPT learns characters, its run reloads to the same
//! function, continues, and the recipe's optimizers treat the factors as documented.

use candle_core::{DType, Device};
use dgating_nn::Model;
use dgating_nn::lm::run::{NewRun, TextSpec, load_run, train_run};
use dgating_nn::lm::train::cross_entropy;
use dgating_nn::lm::{Corpus, LmTrainConfig, TokenizerSpec};
use dgating_nn::model::HeadGroup;

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
        head_group: HeadGroup::Whole,
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

/// The gates' rate is constant until `gate_decay_from`, then a cosine to 0 at the last step;
/// out-of-range values are refused, and a run config written before the field existed reads
/// as constant.
#[test]
fn the_gate_rate_decays_only_in_the_tail() {
    let cfg = LmTrainConfig { gate_lr: 0.1, gate_decay_from: 0.6, ..LmTrainConfig::default() };
    let total = 101; // steps 0..=100: t = step / 100
    assert_eq!(cfg.gate_lr_at(0, total), 0.1);
    assert_eq!(cfg.gate_lr_at(60, total), 0.1);
    assert!((cfg.gate_lr_at(80, total) - 0.05).abs() < 1e-12, "half-way down the cosine");
    assert!(cfg.gate_lr_at(100, total).abs() < 1e-12, "0 at the last step");
    assert!(cfg.gate_lr_at(70, total) > cfg.gate_lr_at(90, total));
    let constant = LmTrainConfig { gate_lr: 0.1, ..LmTrainConfig::default() };
    assert!((0..total).all(|s| constant.gate_lr_at(s, total) == 0.1));
    for bad in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(LmTrainConfig { gate_decay_from: bad, ..cfg.clone() }.check().is_err(), "{bad}");
    }
    let mut old = serde_json::to_value(LmTrainConfig::default()).unwrap();
    old.as_object_mut().unwrap().remove("gate_decay_from");
    let back: LmTrainConfig = serde_json::from_value(old).unwrap();
    assert_eq!(back.gate_decay_from, 1.0);
}

/// The training loop uses that rate: with `gate_decay_from = 0.5` over 2 steps the second
/// step has gate rate 0, so the gates end where one constant-rate step left them, while the
/// other weights (Adam) still move.
#[test]
fn train_lm_steps_the_gates_at_the_scheduled_rate() {
    use dgating_nn::lm::train_lm;
    use dgating_nn::model::{Gpt, GptConfig};
    use dgating_nn::{GateInit, ParamRole};
    let text: Vec<u32> = (0..4000u32).map(|i| (i * 7 + i / 13) % 11).collect();
    let gpt = GptConfig::nano(11, 16, 1, 2, 16).unwrap();
    let run = |steps, gate_decay_from| {
        let model = Gpt::new(gpt.clone(), Some(3), GateInit::Balanced, 5, DType::F32, &Device::Cpu).unwrap();
        let cfg = LmTrainConfig {
            steps,
            batch_size: 4,
            warmup: 1,
            lambda: 0.01,
            gate_decay_from,
            eval_every: steps,
            eval_windows: 2,
            ..LmTrainConfig::default()
        };
        train_lm(&model, &cfg, &text, &text, |_| Ok(true)).unwrap();
        let store = model.params().unwrap();
        let values = |gate: bool| -> Vec<f32> {
            store
                .iter()
                .filter(|p| (p.role == ParamRole::Gate) == gate)
                .flat_map(|p| p.var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect()
        };
        (values(true), values(false))
    };
    let (gates_two, rest_two) = run(2, 0.5);
    let (gates_one, rest_one) = run(1, 1.0);
    assert!(!gates_one.is_empty());
    assert_eq!(gates_two, gates_one, "the last step must not move the gates");
    assert_ne!(rest_two, rest_one, "the other weights keep training");
    let (gates_const, _) = run(2, 1.0);
    assert_ne!(gates_const, gates_one, "at a constant rate the second step moves the gates");
}

/// A call that continues a schedule (`schedule_offset`, `schedule_steps`: a model cut out of
/// a gated one at step K of N) takes the rates the uninterrupted run takes at the same steps,
/// after re-warming Adam's fresh moments, draws the batches the uninterrupted run draws
/// there, and reports global step numbers; a continuation past the schedule's end is refused.
#[test]
fn a_continued_schedule_picks_up_rates_batches_and_step_numbers() {
    use dgating_nn::GateInit;
    use dgating_nn::lm::train::{batch_rng, sample_batch};
    use dgating_nn::lm::train_lm;
    use dgating_nn::model::{Gpt, GptConfig};
    let whole = LmTrainConfig { steps: 100, warmup: 10, gate_decay_from: 0.5, ..LmTrainConfig::default() };
    let rest = LmTrainConfig { steps: 60, schedule_offset: 40, schedule_steps: Some(100), ..whole.clone() };
    rest.check().unwrap();
    assert_eq!(rest.schedule_len(), 100);
    // Re-warm-up over `warmup` steps towards the schedule's rate, then the schedule itself.
    assert!((rest.lr_at_call_step(0) - whole.lr_at(40, 100) / 10.0).abs() < 1e-15);
    assert!((rest.lr_at_call_step(4) - whole.lr_at(44, 100) * 0.5).abs() < 1e-15);
    for s in 10..60 {
        assert_eq!(rest.lr_at_call_step(s), whole.lr_at(40 + s, 100), "step {s}");
    }
    // The first call of a cut run follows the long schedule, not one of its own length.
    let head = LmTrainConfig { steps: 40, schedule_steps: Some(100), ..whole.clone() };
    assert_eq!(head.lr_at_call_step(39), whole.lr_at(39, 100));
    assert!(head.lr_at_call_step(39) > LmTrainConfig { steps: 40, ..whole.clone() }.lr_at_call_step(39));

    let tokens: Vec<u32> = (0..5000u32).map(|i| (i * 7 + i / 13) % 11).collect();
    let mut a = batch_rng(&whole, &tokens, 16);
    let mut b = batch_rng(&rest, &tokens, 16);
    for _ in 0..40 {
        sample_batch(&tokens, whole.batch_size, 16, &mut a, &Device::Cpu).unwrap();
    }
    for _ in 0..3 {
        let (xa, _) = sample_batch(&tokens, whole.batch_size, 16, &mut a, &Device::Cpu).unwrap();
        let (xb, _) = sample_batch(&tokens, whole.batch_size, 16, &mut b, &Device::Cpu).unwrap();
        assert_eq!(xa.to_vec2::<u32>().unwrap(), xb.to_vec2::<u32>().unwrap());
    }

    let over = LmTrainConfig { steps: 61, ..rest.clone() };
    let err = over.check().unwrap_err().to_string();
    assert!(err.contains("ends before step 101"), "{err}");

    let m = Gpt::new(GptConfig::nano(11, 16, 1, 2, 16).unwrap(), None, GateInit::Balanced, 0, DType::F32, &Device::Cpu)
        .unwrap();
    let cont = LmTrainConfig {
        steps: 4,
        batch_size: 2,
        depth: None,
        eval_every: 2,
        eval_windows: 2,
        schedule_offset: 6,
        schedule_steps: Some(10),
        ..LmTrainConfig::default()
    };
    let h = train_lm(&m, &cont, &tokens[..4000], &tokens[4000..], |_| Ok(true)).unwrap();
    assert_eq!(h.iter().map(|e| e.step).collect::<Vec<_>>(), vec![8, 10]);
    assert_eq!(h[1].tokens_seen, 10 * 2 * 16);
}

/// The dense phase before `gate_from`: with gates initialized to 1 the gated model trains
/// exactly as the dense one (same effective weights), the gates do not move, and nothing is
/// penalized; from `gate_from` on the gates move.
#[test]
fn before_gate_from_a_gated_model_trains_as_the_dense_one() {
    use dgating_nn::lm::train_lm;
    use dgating_nn::model::{Gpt, GptConfig};
    use dgating_nn::{GateInit, ParamRole};
    let tokens: Vec<u32> = (0..6000u32).map(|i| (i * 7 + i / 13) % 11).collect();
    let (train, val) = tokens.split_at(5000);
    let config = GptConfig::nano(11, 16, 1, 2, 16).unwrap();
    let cfg = LmTrainConfig {
        steps: 6,
        batch_size: 4,
        lr: 3e-3,
        warmup: 2,
        eval_every: 6,
        eval_windows: 2,
        lambda: 0.5,
        gate_from: 6,
        ..LmTrainConfig::default()
    };
    let dense = Gpt::new(config.clone(), None, GateInit::Ones, 3, DType::F32, &Device::Cpu).unwrap();
    let gated = Gpt::new(config, Some(3), GateInit::Ones, 3, DType::F32, &Device::Cpu).unwrap();
    train_lm(&dense, &LmTrainConfig { depth: None, gate_from: 0, ..cfg.clone() }, train, val, |_| Ok(true)).unwrap();
    train_lm(&gated, &cfg, train, val, |_| Ok(true)).unwrap();
    let (d, g) = (dense.effective().unwrap(), gated.effective().unwrap());
    for (k, t) in &d {
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = g[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-6, "{k}: {diff}");
    }
    let gates = |m: &Gpt| -> Vec<f32> {
        let store = m.params().unwrap();
        store
            .iter()
            .filter(|p| p.role == ParamRole::Gate)
            .flat_map(|p| p.var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect()
    };
    assert!(gates(&gated).iter().all(|&v| v == 1.0));
    // Two more steps past gate_from: now the gates train.
    let more = LmTrainConfig { steps: 2, schedule_offset: 6, schedule_steps: Some(8), ..cfg };
    train_lm(&gated, &more, train, val, |_| Ok(true)).unwrap();
    assert!(gates(&gated).iter().any(|&v| v != 1.0));
}

/// The cut at `cut_at`: groups at most `cut_threshold` of their kind's largest are zero from
/// then on, the kept ones' gates are 1 (folded into the weights) and stay so, the function
/// is unchanged by the fold, and the kept weights keep training.
#[test]
fn the_cut_zeroes_small_groups_for_good_and_freezes_the_gates() {
    use dgating_nn::lm::train::{cut_groups, group_norms};
    use dgating_nn::lm::train_lm;
    use dgating_nn::model::{Gpt, GptConfig};
    use dgating_nn::{GateInit, ParamRole};
    let tokens: Vec<u32> = (0..6000u32).map(|i| (i * 7 + i / 13) % 11).collect();
    let (train, val) = tokens.split_at(5000);
    let config = GptConfig::nano(11, 16, 2, 4, 16).unwrap();
    let cfg = LmTrainConfig {
        steps: 10,
        batch_size: 4,
        lr: 3e-3,
        warmup: 2,
        eval_every: 10,
        eval_windows: 2,
        gate_from: 2,
        cut_at: Some(6),
        cut_threshold: 0.8,
        ..LmTrainConfig::default()
    };
    cfg.check().unwrap();
    assert!(LmTrainConfig { cut_at: Some(1), ..cfg.clone() }.check().is_err(), "a cut before gate_from");
    assert!(LmTrainConfig { cut_threshold: 1.0, ..cfg.clone() }.check().is_err());
    // The fold alone keeps the function.
    let m = Gpt::new(config.clone(), Some(3), GateInit::Balanced, 4, DType::F32, &Device::Cpu).unwrap();
    let x =
        candle_core::Tensor::from_vec((0..16u32).map(|i| i % 11).collect::<Vec<_>>(), (1, 16), &Device::Cpu).unwrap();
    let before = m.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let kept = cut_groups(&m, 0.0).unwrap();
    assert!(kept.iter().all(|(_, k)| k.iter().all(|&b| b)));
    let after = m.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = before.iter().zip(&after).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-4, "{diff}");

    let m = Gpt::new(config, Some(3), GateInit::Balanced, 4, DType::F32, &Device::Cpu).unwrap();
    let store = m.params().unwrap();
    let head = LmTrainConfig { steps: 6, schedule_steps: Some(10), ..cfg.clone() };
    train_lm(&m, &head, train, val, |_| Ok(true)).unwrap();
    let norms_at_cut = group_norms(&m).unwrap();
    train_lm(&m, &LmTrainConfig { steps: 4, schedule_offset: 6, ..cfg.clone() }, train, val, |_| Ok(true)).unwrap();
    let norms = group_norms(&m).unwrap();
    let mut removed = 0;
    for ((dim, at_cut), (_, now)) in norms_at_cut.iter().zip(&norms) {
        let kind = dim.rsplit('.').next().unwrap();
        let largest = norms_at_cut
            .iter()
            .filter(|(d, _)| d.ends_with(kind))
            .flat_map(|(_, n)| n.iter().copied())
            .fold(0.0, f64::max);
        for (a, b) in at_cut.iter().zip(now) {
            if *a <= 0.8 * largest {
                assert_eq!(*b, 0.0, "{dim}: a cut group came back");
                removed += 1;
            } else {
                assert!(*b > 0.0, "{dim}");
            }
        }
    }
    assert!(removed > 0, "the threshold 0.8 removes some groups: {norms_at_cut:?}");
    for p in store.iter().filter(|p| p.role == ParamRole::Gate) {
        let v = p.var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|&g| g == 0.0 || g == 1.0), "{}: gates after the cut {v:?}", p.name);
    }
    // One call through all three phases ends the same way: gates 1 or 0, some groups zero.
    let one =
        Gpt::new(GptConfig::nano(11, 16, 2, 4, 16).unwrap(), Some(3), GateInit::Balanced, 4, DType::F32, &Device::Cpu)
            .unwrap();
    train_lm(&one, &cfg, train, val, |_| Ok(true)).unwrap();
    let zero = group_norms(&one).unwrap().iter().flat_map(|(_, n)| n.clone()).filter(|&v| v == 0.0).count();
    assert!(zero > 0);
    for p in one.params().unwrap().iter().filter(|p| p.role == ParamRole::Gate) {
        assert!(
            p.var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|&g| g == 0.0 || g == 1.0)
        );
    }
    // The cut run's rates restart their warm-up at gate_from and at cut_at.
    let full = LmTrainConfig { warmup: 2, ..cfg };
    assert!((full.lr_at_call_step(2) - full.lr_at(2, 10) / 2.0).abs() < 1e-15);
    assert!((full.lr_at_call_step(6) - full.lr_at(6, 10) / 2.0).abs() < 1e-15);
    assert_eq!(full.lr_at_call_step(7), full.lr_at(7, 10));
}
