//! [`export()`] and [`import()`]: a compacted model as `model.safetensors` + `config.json`
//! (layout in `docs/FORMAT.md`).
//!
//! Import trusts nothing: the config must parse and be consistent, the format tag must be
//! known, every tensor the architecture's structure names must be present as `F32` with the
//! shape it implies, no other tensor may be present and every value must be finite. Every
//! failure is a typed error that names the file (and the tensor); a hostile or truncated file
//! never panics. `dgating-compact-v1` files are read too and converted to the v2 config.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dgating_nn::train::checkpoint::{FORMAT_KEY, atomic_write, save_tensors};
use safetensors::{Dtype, SafeTensors};

use crate::compact::Compacted;
use crate::error::{Error, Result};
use crate::format::{COMPACT_FORMAT, COMPACT_FORMAT_V1, CONFIG_FILE, CompactConfig, MODEL_FILE};

/// Writes `dir/model.safetensors` (metadata `{"format": "dgating-compact-v2"}`) and
/// `dir/config.json`, each atomically; creates `dir` if needed. The weights are written
/// first, so a crash in between leaves no config pointing at missing weights of a new model.
pub fn export(model: &Compacted, dir: &Path) -> Result<()> {
    model.config.check().map_err(|m| Error::format(dir.join(CONFIG_FILE), m))?;
    let path = dir.join(MODEL_FILE);
    let expected = model.config.architecture.structure()?.tensors();
    let tensors = model.tensors()?;
    let mut out = Vec::with_capacity(expected.len());
    for (name, shape) in expected {
        let t = tensors.get(&name).ok_or_else(|| Error::MissingTensor { path: path.clone(), name: name.clone() })?;
        if t.dims() != shape.as_slice() {
            return Err(Error::ShapeMismatch { path, name, expected: shape, actual: t.dims().to_vec() });
        }
        out.push((name, t.to_dtype(DType::F32)?.contiguous()?));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.into(), source: e })?;
    let meta = HashMap::from([(FORMAT_KEY.to_string(), COMPACT_FORMAT.to_string())]);
    save_tensors(&path, &out, meta)?;
    let json =
        serde_json::to_vec_pretty(&model.config).map_err(|e| Error::format(dir.join(CONFIG_FILE), e.to_string()))?;
    atomic_write(&dir.join(CONFIG_FILE), &json)?;
    Ok(())
}

/// Reads and validates `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<CompactConfig> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    parse_config(&path, &bytes)
}

/// Parses and validates the bytes of a `config.json` (`path` only names it in errors); a v1
/// config comes back converted to v2.
pub fn parse_config(path: &Path, bytes: &[u8]) -> Result<CompactConfig> {
    let path = path.to_path_buf();
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::format(&path, format!("not valid JSON: {e}")))?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(COMPACT_FORMAT) => {}
        Some(COMPACT_FORMAT_V1) => return crate::legacy::from_v1(value).map_err(|m| Error::format(&path, m)),
        Some(other) => return Err(Error::UnknownVersion { path, version: other.into() }),
        None => return Err(Error::format(&path, "no string field `format`")),
    }
    let config: CompactConfig = serde_json::from_value(value).map_err(|e| Error::format(&path, e.to_string()))?;
    config.check().map_err(|m| Error::format(&path, m))?;
    Ok(config)
}

/// Loads a model written by [`export`] (or by anyone following `docs/FORMAT.md`), v2 or v1.
pub fn import(dir: &Path) -> Result<Compacted> {
    let config = read_config(dir)?;
    let path = dir.join(MODEL_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    parse_model(config, &path, &bytes)
}

/// Builds a model from a validated config and the bytes of its `model.safetensors` (`path`
/// only names it in errors). The file's `format` tag may be either version: the weights of a
/// v1 and a v2 MLP are the same tensors under the same keys, and the config (already checked)
/// decides which tensors must be there. Never panics on hostile bytes (fuzzed: `fuzz/`).
pub fn parse_model(config: CompactConfig, path: &Path, bytes: &[u8]) -> Result<Compacted> {
    let path = path.to_path_buf();
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| Error::format(&path, format!("not a safetensors file: {e}")))?;
    let tag = meta.metadata().as_ref().and_then(|m| m.get(FORMAT_KEY)).cloned();
    match tag.as_deref() {
        Some(COMPACT_FORMAT | COMPACT_FORMAT_V1) => {}
        Some(other) => return Err(Error::UnknownVersion { path, version: other.into() }),
        None => return Err(Error::format(&path, format!("no `{FORMAT_KEY}` metadata"))),
    }
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| Error::format(&path, format!("not a safetensors file: {e}")))?;
    let expected = config.architecture.structure()?.tensors();
    if let Some(name) = st.names().into_iter().filter(|n| !expected.contains_key(*n)).min() {
        return Err(Error::UnknownTensor { path, name: name.to_string() });
    }
    let mut tensors = BTreeMap::new();
    for (name, shape) in expected {
        let view = st.tensor(&name).map_err(|_| Error::MissingTensor { path: path.clone(), name: name.clone() })?;
        if view.dtype() != Dtype::F32 {
            return Err(Error::Dtype { path, name, dtype: format!("{:?}", view.dtype()) });
        }
        if view.shape() != shape.as_slice() {
            return Err(Error::ShapeMismatch { path, name, expected: shape, actual: view.shape().to_vec() });
        }
        let data = view.data();
        if data.len() != 4 * shape.iter().product::<usize>() {
            return Err(Error::format(&path, format!("tensor `{name}`: {} bytes for shape {shape:?}", data.len())));
        }
        let values: Vec<f32> = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::format(&path, format!("tensor `{name}` holds non-finite values")));
        }
        tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    let model = config.architecture.from_tensors(&tensors)?;
    Ok(Compacted { config, model })
}
