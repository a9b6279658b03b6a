//! The loader on hostile bytes: random and mutated `model.safetensors` and `config.json`
//! contents, of a v1 file (the fuzz corpus seed) and of a v2 export of a residual MLP, give
//! `Ok` or a typed error, never a panic (the same property `fuzz/` checks with libFuzzer).

use std::path::Path;
use std::sync::OnceLock;

use dgating_core::Threshold;
use dgating_nn::layers::GateInit;
use dgating_nn::{Architecture, ResidualMlpConfig};
use dgating_prune::{PrunePlan, compact, export, parse_config, parse_model};
use proptest::prelude::*;

/// `(config.json, model.safetensors)` of a v2 export: a residual MLP (stream and hidden
/// groups), compacted with nothing removed.
fn v2_seed() -> &'static (Vec<u8>, Vec<u8>) {
    static SEED: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    SEED.get_or_init(|| {
        let arch = Architecture::ResidualMlp(ResidualMlpConfig {
            input_dim: 3,
            width: 4,
            blocks: vec![2],
            output_dim: 2,
            group_stream: true,
            group_hidden: true,
        });
        let model = arch.build(Some(2), GateInit::Ones, 1, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let c = compact(&model, &PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        export(&c, dir.path()).unwrap();
        let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
        (read("config.json"), read("model.safetensors"))
    })
}

#[test]
fn the_v2_seed_is_a_valid_model() {
    let (cfg, model) = v2_seed();
    let cfg = parse_config(Path::new("config.json"), cfg).unwrap();
    parse_model(cfg, Path::new("model.safetensors"), model).unwrap();
}

fn seed() -> (Vec<u8>, Vec<u8>) {
    let bytes = include_bytes!("../../fuzz/corpus/import/wine-linear");
    let n = usize::from(bytes[0]) << 8 | usize::from(bytes[1]);
    (bytes[2..2 + n].to_vec(), bytes[2 + n..].to_vec())
}

#[test]
fn the_seed_is_a_valid_model() {
    let (cfg, model) = seed();
    let cfg = parse_config(Path::new("config.json"), &cfg).unwrap();
    parse_model(cfg, Path::new("model.safetensors"), &model).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_model_bytes_never_panic(flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let (cfg, mut model) = seed();
        for (at, byte) in flips {
            let i = at % model.len();
            model[i] = byte;
        }
        model.truncate(cut % (model.len() + 1));
        let cfg = parse_config(Path::new("config.json"), &cfg).unwrap();
        let _ = parse_model(cfg, Path::new("model.safetensors"), &model);
    }

    #[test]
    fn mutated_v2_files_never_panic(
        model_flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        config_flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let (cfg, model) = v2_seed();
        let (mut cfg, mut model) = (cfg.clone(), model.clone());
        for (at, byte) in model_flips {
            let i = at % model.len();
            model[i] = byte;
        }
        model.truncate(cut % (model.len() + 1));
        for (at, byte) in config_flips {
            let i = at % cfg.len();
            cfg[i] = byte;
        }
        if let Ok(cfg) = parse_config(Path::new("config.json"), &cfg) {
            let _ = parse_model(cfg, Path::new("model.safetensors"), &model);
        }
    }

    #[test]
    fn random_config_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_config(Path::new("config.json"), &bytes);
    }
}

/// A v1 config may leave "all features kept" implicit; converting it lists the indices, so a
/// hostile width is refused before anything that size is allocated.
#[test]
fn a_v1_config_with_a_huge_width_is_an_error_not_an_allocation() {
    let (cfg, _) = seed();
    let mut v: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    let huge = 1u64 << 50;
    v["input_dim_full"] = huge.into();
    v["widths"][0] = huge.into();
    v["kept_inputs"] = serde_json::Value::Null;
    v["provenance"]["original_widths"][0] = huge.into();
    let err = parse_config(Path::new("config.json"), &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
}
