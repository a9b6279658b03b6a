//! The loader on hostile bytes: random and mutated `model.safetensors` contents give `Ok` or a
//! typed error, never a panic (the same property `fuzz/` checks with libFuzzer).

use std::path::Path;

use dgating_prune::{parse_config, parse_model};
use proptest::prelude::*;

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
    fn random_config_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_config(Path::new("config.json"), &bytes);
    }
}
