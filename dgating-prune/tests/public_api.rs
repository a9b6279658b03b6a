//! The public surface of `dgating-prune`, pinned like `dgating-core`'s (see
//! `dgating-core/tests/public_api.rs`): `api/dgating-prune.txt`.

#[path = "../../api/surface.rs"]
mod surface;

#[test]
fn public_api_is_pinned() {
    surface::check(env!("CARGO_MANIFEST_DIR"), "dgating-prune");
}
