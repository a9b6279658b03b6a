//! Property: for random architectures and random group masks (none pruned, random, one
//! group left), the compacted model equals the masked gated model and survives
//! export/import bit for bit.

mod common;

use common::{bits, inputs};
use dgating_core::Threshold;
use dgating_nn::layers::GateInit;
use dgating_nn::{GateSite, Mlp, MlpConfig};
use dgating_prune::{PrunePlan, compact, export, import, verify};
use proptest::prelude::*;

/// `mode` 0: keep all; 1: random with >= 1 kept; 2: exactly one kept.
fn mask(n: usize, mode: u8, seed: u64) -> Vec<bool> {
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    match mode {
        0 => vec![true; n],
        2 => {
            let k = (next() % n as u64) as usize;
            (0..n).map(|i| i == k).collect()
        }
        _ => {
            let mut m: Vec<bool> = (0..n).map(|_| next() % 2 == 0).collect();
            if !m.iter().any(|&k| k) {
                m[(next() % n as u64) as usize] = true;
            }
            m
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn compact_export_import_round_trip(
        input in 1usize..8,
        hidden in proptest::collection::vec(1usize..9, 0..3),
        output in 1usize..4,
        group_inputs in any::<bool>(),
        depth in 2usize..5,
        modes in proptest::collection::vec(0u8..3, 3),
        seed in any::<u64>(),
    ) {
        let group_inputs = group_inputs || hidden.is_empty();
        let cfg = MlpConfig { input_dim: input, hidden, output_dim: output, group_inputs, group_hidden: !group_inputs };
        let model = Mlp::with_gate_init(cfg, Some(depth), GateInit::Balanced, seed, candle_core::DType::F32,
            &candle_core::Device::Cpu).unwrap();
        let mut expected_widths = model.config().widths();
        for (i, (l, layer)) in model.layers().iter().enumerate().filter(|(_, l)| l.site() != GateSite::None).enumerate() {
            let m = mask(layer.num_groups(), modes[i % 3], seed.wrapping_add(i as u64));
            layer.drop_groups(&m).unwrap();
            let width = if layer.site() == GateSite::Outputs { l + 1 } else { l };
            expected_widths[width] = m.iter().filter(|&&k| k).count();
        }
        let plan = PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap();
        prop_assert_eq!(plan.widths_after(), expected_widths.clone());
        let c = compact(&model, &plan).unwrap();
        prop_assert_eq!(c.widths(), expected_widths.as_slice());
        let x = inputs(16, input, seed);
        let v = verify(&model, &c, &x).unwrap();
        prop_assert!(v.max_rel <= 1e-5, "{:?}", v);

        let dir = tempfile::tempdir().unwrap();
        export(&c, dir.path()).unwrap();
        let back = import(dir.path()).unwrap();
        prop_assert_eq!(&back.config, &c.config);
        for ((w, b), (w2, b2)) in c.layers.iter().zip(&back.layers) {
            prop_assert_eq!(bits(w), bits(w2));
            prop_assert_eq!(bits(b), bits(b2));
        }
        prop_assert_eq!(bits(&back.forward_full(&x).unwrap()), bits(&c.forward_full(&x).unwrap()));
    }
}
