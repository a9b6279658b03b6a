//! The training engine against the method's equivalences (docs/METHOD.md §2), using the reference
//! solvers of `dgating-core` as golden values.

use candle_core::{DType, Device};
use dgating_core::{GateConfig, GroupSparseSpec, Loss, ProxOptions, Threshold, proximal_gradient};
use dgating_nn::data::{Dataset, Targets};
use dgating_nn::optim::{OptimizerKind, Schedule};
use dgating_nn::train::engine::TensorData;
use dgating_nn::train::metrics::group_stats;
use dgating_nn::{Mlp, MlpConfig, Mode, Model, TrainConfig, Trainer};

fn linear_config(p: usize) -> MlpConfig {
    MlpConfig { input_dim: p, hidden: vec![], output_dim: 1, group_inputs: true, group_hidden: false }
}

fn full_batch_gd(mode: Mode, gate: GateConfig, lr: f64, n: usize) -> TrainConfig {
    let mut cfg = TrainConfig::new(mode, gate);
    cfg.optimizer = OptimizerKind::Sgd { momentum: 0.0 };
    cfg.schedule = Schedule::Constant;
    cfg.batch_size = n;
    cfg.lr = lr;
    cfg.epochs = 1_000_000;
    cfg
}

/// A regression problem from dgating-core as a Dataset, plus the core problem with an
/// intercept (the model's ungated bias).
fn regression(seed: u64) -> (Dataset, dgating_core::LinearProblem, dgating_core::GroupLayout) {
    let spec = GroupSparseSpec {
        samples: 100,
        groups: 8,
        group_size: 1,
        active_groups: 3,
        noise_std: 0.3,
        loss: Loss::Squared,
        seed,
    };
    let d = spec.generate().unwrap();
    let x: Vec<f32> = d.problem.x().iter().map(|&v| v as f32).collect();
    let y: Vec<f32> = d.problem.y().iter().map(|&v| v as f32).collect();
    let names = (0..8).map(|i| format!("x{i}")).collect();
    let data = Dataset::new("synthetic", x.clone(), 8, names, Targets::Values(y.clone())).unwrap();
    // Exactly the f32 values the network sees, widened, with an intercept.
    let problem = dgating_core::LinearProblem::new(
        x.iter().map(|&v| f64::from(v)).collect(),
        y.iter().map(|&v| f64::from(v)).collect(),
        8,
        Loss::Squared,
        true,
    )
    .unwrap();
    (data, problem, d.layout)
}

/// D = 2 gated linear regression trained full-batch by the nn engine (f64) reaches the
/// proximal group-lasso solution of dgating-core: relative error <= 1e-4.
#[test]
fn d2_gated_regression_matches_core_group_lasso() {
    let (data, problem, layout) = regression(11);
    let lam = 0.3 * problem.lambda_max(&layout).unwrap();
    let gate = GateConfig::new(2, lam).unwrap();
    let reference =
        proximal_gradient(&problem, &layout, &gate, &ProxOptions { max_iter: 100_000, tol: 1e-13 }).unwrap();
    assert!(reference.converged);
    assert!(reference.coef.contains(&0.0), "lambda should zero some features");

    let model = Mlp::new(linear_config(8), Some(2), 3, DType::F64, &Device::Cpu).unwrap();
    let lr = 0.5 / problem.lipschitz();
    let mut trainer = Trainer::new(&model, full_batch_gd(Mode::Dgating, gate, lr, data.len())).unwrap();
    let t = TensorData::new(&data, DType::F64, &Device::Cpu).unwrap();
    for _ in 0..20_000 {
        trainer.train_epoch(&t, &mut |_| {}).unwrap();
    }
    let (w, b) = model.layers()[0].effective().unwrap();
    let coef = w.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let intercept = b.unwrap().to_vec1::<f64>().unwrap()[0];
    let diff: f64 = coef.iter().zip(&reference.coef).map(|(a, r)| (a - r).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = reference.coef.iter().map(|r| r * r).sum::<f64>().sqrt();
    assert!(diff / norm <= 1e-4, "relative error {} (nn {coef:?} vs core {:?})", diff / norm, reference.coef);
    assert!((intercept - reference.intercept).abs() <= 1e-4 * (1.0 + reference.intercept.abs()));
}

/// Under small-step full-batch gradient descent the imbalance of every gate follows
/// `Δ(t) = Δ(0)·exp(−4λt/D)`, `t = η·steps`, within 1% over three decades of decay.
#[test]
fn imbalance_decays_exponentially() {
    let (data, _, _) = regression(12);
    let (depth, lambda, lr) = (3usize, 2.0, 0.001);
    let gate = GateConfig::new(depth, lambda).unwrap();
    let model = Mlp::new(linear_config(8), Some(depth), 5, DType::F64, &Device::Cpu).unwrap();
    // Start unbalanced: gates 1.4 everywhere (Δ_j = ||ω_j||² − 1.96 ≠ 0).
    let g = model.layers()[0].gates_var().unwrap();
    g.set(&(g.as_tensor().ones_like().unwrap() * 1.4).unwrap()).unwrap();
    let mut trainer = Trainer::new(&model, full_batch_gd(Mode::Dgating, gate, lr, data.len())).unwrap();
    let t = TensorData::new(&data, DType::F64, &Device::Cpu).unwrap();
    let sets = model.gate_sets();
    let thr = Threshold::absolute(0.0).unwrap();
    let imbalances = |_: ()| {
        let layer = &model.layers()[0];
        let layout = layer.layout().unwrap();
        let omega = layer.weight_var().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let gates = layer.gates_var().unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let gm = dgating_core::GateMatrix::new(8, depth - 1, gates).unwrap();
        dgating_core::imbalance(&layout, &[&omega], &gm).unwrap().values
    };
    let start = imbalances(());
    assert!(start.iter().all(|d| d.abs() > 0.5), "{start:?}");
    let rate = 4.0 * lambda / depth as f64;
    let steps_for_three_decades = ((1000f64).ln() / (rate * lr)).ceil() as usize;
    let mut worst = 0.0f64;
    for k in 1..=steps_for_three_decades {
        trainer.train_epoch(&t, &mut |_| {}).unwrap();
        if k % 100 == 0 || k == steps_for_three_decades {
            let expect = (-rate * lr * k as f64).exp();
            for (d0, d) in start.iter().zip(imbalances(())) {
                worst = worst.max((d / d0 - expect).abs() / expect);
            }
        }
    }
    let last = imbalances(());
    assert!(last.iter().zip(&start).all(|(d, d0)| (d / d0).abs() < 1.2e-3), "did not decay three decades");
    assert!(worst < 0.01, "imbalance deviates from exp(-4 lambda t / D) by {worst}");
    // The metrics path reports the same imbalance.
    let stats = group_stats(&sets, &model.params().unwrap(), &thr, depth).unwrap();
    let max_now = last.iter().fold(0.0f64, |m, d| m.max(d.abs()));
    assert!((stats.imbalance.unwrap().0 - max_now).abs() < 1e-12);
}
