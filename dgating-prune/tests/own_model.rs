//! The `own_model` example as a test: a model written outside the presets trains, prunes,
//! saves, reloads and matches the masked gated model through the public API.

#[path = "../examples/own_model.rs"]
mod own_model;

#[test]
fn a_model_of_your_own_is_gated_pruned_and_reloaded() {
    own_model::main().expect("the own-model example passes its own check");
}
