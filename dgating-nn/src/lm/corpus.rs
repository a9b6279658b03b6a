//! Text corpora: the built-in Moby Dick, or any UTF-8 file; split into training and
//! validation text *by position* (the first part trains, the rest validates: no shuffling,
//! so no sentence is in both).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Name of the built-in corpus.
pub const MOBY_DICK: &str = "moby-dick";
/// Names accepted by [`Corpus::builtin`].
pub const BUILTIN_CORPORA: &[&str] = &[MOBY_DICK];

/// Herman Melville, *Moby Dick* (public-domain text; `data/README.md` says where it comes
/// from), gzip-compressed.
const MOBY_DICK_GZ: &[u8] = include_bytes!("../../data/moby-dick.txt.gz");

/// A UTF-8 text and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// `moby-dick` or the file path.
    pub name: String,
    /// The text.
    pub text: String,
}

impl Corpus {
    /// A built-in corpus by name ([`BUILTIN_CORPORA`]).
    pub fn builtin(name: &str) -> Result<Self> {
        if name != MOBY_DICK {
            return Err(Error::UnknownName { kind: "corpus", name: name.into(), known: BUILTIN_CORPORA.join(", ") });
        }
        let mut bytes = vec![];
        flate2::read::GzDecoder::new(MOBY_DICK_GZ)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::data(MOBY_DICK, format!("corrupt built-in corpus: {e}")))?;
        Self::from_bytes(MOBY_DICK, bytes)
    }

    /// A built-in name, or else a file.
    pub fn load(spec: &str) -> Result<Self> {
        if BUILTIN_CORPORA.contains(&spec) { Self::builtin(spec) } else { Self::from_file(Path::new(spec)) }
    }

    /// Any UTF-8 file (a BOM is kept as text).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&path.display().to_string(), bytes)
    }

    /// UTF-8 bytes; empty text or invalid UTF-8 (with the byte offset of the first bad byte)
    /// are errors.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            Error::data(name, format!("not UTF-8: invalid byte 0x{:02x} at byte offset {at}", e.as_bytes()[at]))
        })?;
        if text.trim().is_empty() {
            return Err(Error::data(name, "the corpus is empty (no text to train on)"));
        }
        Ok(Self { name: name.into(), text })
    }

    /// `(train, validation)`: the first `1 − val_fraction` of the tokens and the rest.
    pub fn split_tokens(tokens: &[u32], val_fraction: f64) -> Result<(&[u32], &[u32])> {
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            return Err(Error::Config(format!("the validation fraction must be in (0, 1), got {val_fraction}")));
        }
        let cut = ((tokens.len() as f64) * (1.0 - val_fraction)).round() as usize;
        Ok(tokens.split_at(cut.min(tokens.len())))
    }
}
