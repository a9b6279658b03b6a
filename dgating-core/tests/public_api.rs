//! The public surface of `dgating-core`, pinned: every `pub` declaration of `src/` (first line,
//! with its file) must match `api/dgating-core.txt`. An accidental change fails here; an
//! intended one is recorded by regenerating the list (`DGATING_BLESS_API=1 cargo test -p
//! dgating-core --test public_api`) and shows up in review as a diff of that file.

#[path = "../../api/surface.rs"]
mod surface;

#[test]
fn public_api_is_pinned() {
    surface::check(env!("CARGO_MANIFEST_DIR"), "dgating-core");
}
