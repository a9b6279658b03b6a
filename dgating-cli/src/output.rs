//! How the command talks to people and scripts: error messages with hints, broken pipes,
//! JSON lines.

use std::error::Error;
use std::io::ErrorKind;

/// Restores the default `SIGPIPE` action, so that `dgating eval ... | head` ends quietly when
/// the reader goes away, like other Unix tools, instead of panicking on the failed write
/// (Rust ignores `SIGPIPE` by default). Files are written atomically, so being stopped by
/// the signal never leaves a half-written file behind.
pub fn die_quietly_on_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: resetting a signal disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Prints `err` for a person: its message, the causes that add something, and a hint for
/// operating-system errors.
pub fn report_error(err: &(dyn Error + 'static)) {
    let message = err.to_string();
    eprintln!("error: {message}");
    let mut shown = message;
    let mut hint = None;
    let mut source: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(s) = source {
        let text = s.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown.push_str(&text);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            hint = io_hint(io.kind());
        }
        source = s.source();
    }
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}

fn io_hint(kind: ErrorKind) -> Option<&'static str> {
    Some(match kind {
        ErrorKind::NotFound => "check the path; a run directory is what `dgating train` wrote (see --out)",
        ErrorKind::PermissionDenied => "check the permissions of that path, or choose another directory",
        ErrorKind::StorageFull => "free some disk space; files are written atomically, so nothing was half-written",
        ErrorKind::ReadOnlyFilesystem => "choose a directory on a writable file system",
        ErrorKind::IsADirectory | ErrorKind::NotADirectory => "check whether the path names a file or a directory",
        _ => return None,
    })
}

/// One JSON line on stdout.
pub fn json_line(value: &serde_json::Value) {
    println!("{value}");
}

/// A percentage or `-`.
pub fn pct(a: Option<f64>) -> String {
    a.map(|a| format!("{:.2}%", 100.0 * a)).unwrap_or_else(|| "-".into())
}

/// `a, b, c`.
pub fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `inputs 13, hidden.0 64, outputs 3`: the size of every dim.
pub fn sizes(sizes: &std::collections::BTreeMap<String, usize>) -> String {
    sizes.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}
