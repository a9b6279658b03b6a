//! Atomic files: checkpoints never exist half-written.
//!
//! Every write goes to a temporary file in the target directory, is flushed to disk and then
//! renamed over the destination (rename is atomic on POSIX file systems). Tensor files carry
//! the epoch in their safetensors metadata so a resume can tell files of different epochs
//! apart instead of mixing them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// Metadata key holding the format tag.
pub const FORMAT_KEY: &str = "format";
/// Format tag of a gated (training) checkpoint.
pub const CHECKPOINT_FORMAT: &str = "dgating-checkpoint-v1";
/// Metadata key holding the completed epoch.
pub const EPOCH_KEY: &str = "epoch";

/// Writes `bytes` to `path` atomically (temp file + fsync + rename).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(tmp, e))?;
        f.sync_all().map_err(|e| Error::io(tmp, e))
    })
}

/// Runs `write` on a temporary path next to `path`, then renames it into place; the temp
/// file is removed if `write` fails.
pub fn atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")))?;
    let tmp: PathBuf = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Saves named tensors as safetensors with `metadata`, atomically.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Result<()> {
    let data: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let bytes = safetensors::serialize(data, Some(metadata))
        .map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
    atomic_write(path, &bytes)
}

/// Loads every tensor of a safetensors file and its metadata; corrupt or truncated files are
/// errors naming the file.
pub fn load_tensors(path: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::Checkpoint { path: path.into(), message: m };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let t =
            candle_core::safetensors::Load::load(&view, device).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        out.insert(name, t);
    }
    Ok((out, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let t = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let meta = HashMap::from([(EPOCH_KEY.to_string(), "3".to_string())]);
        save_tensors(&path, &[("a".into(), t.clone())], meta).unwrap();
        let (loaded, meta) = load_tensors(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded["a"].to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
        assert_eq!(meta[EPOCH_KEY], "3");
        // No temp file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = load_tensors(&path, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("m.safetensors"), "{err}");
        assert!(load_tensors(&dir.path().join("missing"), &Device::Cpu).is_err());
    }

    #[test]
    fn failed_write_leaves_destination_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        atomic_write(&path, b"old").unwrap();
        let r = atomic_with(&path, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(Error::Config("crash".into()))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
