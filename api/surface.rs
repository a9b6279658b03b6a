//! Lists the public declarations of a crate's sources and compares them with the checked-in
//! list `api/<crate>.txt` (shared by the crates' `public_api` tests).

use std::path::Path;

/// `path: pub ...` for every line outside `#[cfg(test)]` code that starts with `pub ` (public
/// functions, types, traits, constants, fields, re-exports and modules; `pub(crate)` is not
/// public), sorted.
pub fn surface(src: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src").display().to_string();
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            let mut in_tests = false;
            for line in text.lines() {
                let t = line.trim();
                if t.starts_with("#[cfg(test)]") {
                    in_tests = true;
                }
                if in_tests {
                    continue;
                }
                if t.starts_with("pub ") && !t.starts_with("pub(") {
                    out.push(format!("{rel}: {t}"));
                }
            }
        }
    }
    out.sort();
    out
}

/// Compares the surface of `<manifest_dir>/src` with `api/<name>.txt`; rewrites the file
/// instead when `DGATING_BLESS_API` is set.
pub fn check(manifest_dir: &str, name: &str) {
    let root = Path::new(manifest_dir);
    let now = surface(&root.join("src")).join("\n") + "\n";
    let pinned_path = root.join("..").join("api").join(format!("{name}.txt"));
    if std::env::var_os("DGATING_BLESS_API").is_some() {
        std::fs::write(&pinned_path, &now).expect("api list is writable");
        return;
    }
    let pinned = std::fs::read_to_string(&pinned_path).unwrap_or_default();
    if pinned != now {
        let old: std::collections::BTreeSet<&str> = pinned.lines().collect();
        let new: std::collections::BTreeSet<&str> = now.lines().collect();
        let removed: Vec<&&str> = old.difference(&new).collect();
        let added: Vec<&&str> = new.difference(&old).collect();
        panic!(
            "the public API of {name} changed (removed: {removed:#?}, added: {added:#?}); if intended, \
             run with DGATING_BLESS_API=1 and commit api/{name}.txt"
        );
    }
}
