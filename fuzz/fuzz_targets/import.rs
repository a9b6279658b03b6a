//! Fuzzes the compacted-model loader: `config.json` bytes and `model.safetensors` bytes from
//! one input (first two bytes: length of the config part). Any input must give `Ok` or `Err`,
//! never a panic or an unbounded allocation.
//!
//! `cargo fuzz run import fuzz/corpus/import -- -max_total_time=60` (needs cargo-fuzz).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (usize::from(data[0]) << 8 | usize::from(data[1])).min(data.len() - 2);
    let (config, model) = data[2..].split_at(split);
    if let Ok(cfg) = dgating_prune::parse_config(Path::new("config.json"), config) {
        let _ = dgating_prune::parse_model(cfg, Path::new("model.safetensors"), model);
    }
});
