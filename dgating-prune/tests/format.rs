//! The exported format: exact round trip, pinned tensor names, and typed errors naming the
//! file and tensor for every kind of bad input.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{bits, hidden_model, inputs};
use dgating_core::Threshold;
use dgating_prune::{Compacted, Error, PrunePlan, compact, export, import};

fn small_model() -> Compacted {
    let model = hidden_model(5, &[6, 4], 3, 3, 21);
    model.layers()[0].drop_groups(&[true, false, true, true, false, true]).unwrap();
    model.layers()[1].drop_groups(&[false, true, true, false]).unwrap();
    compact(&model, &PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap()).unwrap()
}

fn exported() -> (tempfile::TempDir, Compacted) {
    let dir = tempfile::tempdir().unwrap();
    let m = small_model();
    export(&m, dir.path()).unwrap();
    (dir, m)
}

/// Rewrites `model.safetensors` with `tensors` and `format` metadata.
fn write_tensors(dir: &Path, tensors: &[(&str, Tensor)], format: &str) {
    let meta = HashMap::from([("format".to_string(), format.to_string())]);
    let data: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    std::fs::write(dir.join("model.safetensors"), safetensors::serialize(data, Some(meta)).unwrap()).unwrap();
}

/// The tensors in layer order: `layers.0.weight`, `layers.0.bias`, `layers.1.weight`, ...
fn original_tensors(m: &Compacted) -> Vec<(String, Tensor)> {
    let t = m.tensors().unwrap();
    (0..3)
        .flat_map(|l| {
            let (w, b) = (format!("layers.{l}.weight"), format!("layers.{l}.bias"));
            [(w.clone(), t[&w].clone()), (b.clone(), t[&b].clone())]
        })
        .collect()
}

fn rewrite(dir: &Path, m: &Compacted, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let mut t = original_tensors(m);
    edit(&mut t);
    let refs: Vec<(&str, Tensor)> = t.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    write_tensors(dir, &refs, "dgating-compact-v2");
}

#[test]
fn round_trip_is_exact_and_names_are_pinned() {
    let (dir, m) = exported();
    let mut files: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["config.json", "model.safetensors"], "no temp files left behind");
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<&str> = st.names();
    names.sort();
    assert_eq!(
        names,
        ["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight", "layers.2.bias", "layers.2.weight"]
    );
    assert_eq!(st.tensor("layers.1.weight").unwrap().shape(), &[2, 4]);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "dgating-compact-v2");

    // The config fields third-party loaders read (docs/FORMAT.md).
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["architecture", "dims", "format", "held_out", "input", "provenance"]);
    assert_eq!(json["format"], "dgating-compact-v2");
    assert_eq!(
        json["architecture"],
        serde_json::json!({"type": "mlp", "input_dim": 5, "hidden": [4, 2], "output_dim": 3,
            "group_inputs": false, "group_hidden": true})
    );
    assert_eq!(json["dims"][1], serde_json::json!({"name": "hidden.0", "original": 6, "kept": [0, 2, 3, 5]}));
    assert_eq!(json["dims"][2], serde_json::json!({"name": "hidden.1", "original": 4, "kept": [1, 2]}));
    let mut input: Vec<&str> = json["input"].as_object().unwrap().keys().map(String::as_str).collect();
    input.sort();
    assert_eq!(input, ["class_names", "features", "names", "standardizer", "target", "task"]);

    let loaded = import(dir.path()).unwrap();
    assert_eq!(loaded.config, m.config);
    let (a, b) = (m.tensors().unwrap(), loaded.tensors().unwrap());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, t) in &a {
        assert_eq!(bits(t), bits(&b[k]), "{k}");
    }
    let x = inputs(10, 5, 1);
    assert_eq!(bits(&m.forward_full(&x).unwrap()), bits(&loaded.forward_full(&x).unwrap()));
}

fn assert_names(err: &Error, file: &str, tensor: Option<&str>) {
    let msg = err.to_string();
    assert!(msg.contains(file), "error should name {file}: {msg}");
    if let Some(t) = tensor {
        assert!(msg.contains(t), "error should name tensor {t}: {msg}");
    }
}

#[test]
fn corrupt_and_truncated_weights_are_format_errors() {
    let (dir, _) = exported();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for bad in [bytes[..bytes.len() - 5].to_vec(), bytes[..7].to_vec(), vec![], b"garbage garbage garbage".to_vec()] {
        std::fs::write(&path, &bad).unwrap();
        let err = import(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        assert_names(&err, "model.safetensors", None);
    }
    // Header length pointing far past the end.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &huge).unwrap();
    assert!(matches!(import(dir.path()).unwrap_err(), Error::Format { .. }));
    std::fs::remove_file(&path).unwrap();
    let err = import(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_names(&err, "model.safetensors", None);
}

#[test]
fn missing_unknown_misshapen_and_mistyped_tensors_are_named() {
    let (dir, m) = exported();
    rewrite(dir.path(), &m, |t| t.retain(|(n, _)| n != "layers.1.bias"));
    let err = import(dir.path()).unwrap_err();
    assert!(matches!(&err, Error::MissingTensor { name, .. } if name == "layers.1.bias"), "{err}");
    assert_names(&err, "model.safetensors", Some("layers.1.bias"));

    rewrite(dir.path(), &m, |t| t[0].1 = t[0].1.t().unwrap().contiguous().unwrap());
    let err = import(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { name, expected, actual, .. }
            if name == "layers.0.weight" && expected == &[4, 5] && actual == &[5, 4]),
        "{err}"
    );
    assert_names(&err, "model.safetensors", Some("layers.0.weight"));

    rewrite(dir.path(), &m, |t| t[2].1 = t[2].1.to_dtype(DType::F64).unwrap());
    let err = import(dir.path()).unwrap_err();
    assert!(matches!(&err, Error::Dtype { name, .. } if name == "layers.1.weight"), "{err}");
    assert_names(&err, "model.safetensors", Some("layers.1.weight"));

    rewrite(dir.path(), &m, |t| t.push(("layers.0.gates".into(), Tensor::ones(4, DType::F32, &Device::Cpu).unwrap())));
    let err = import(dir.path()).unwrap_err();
    assert!(matches!(&err, Error::UnknownTensor { name, .. } if name == "layers.0.gates"), "{err}");

    rewrite(dir.path(), &m, |t| t[1].1 = t[1].1.affine(0.0, f64::NAN).unwrap());
    let err = import(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    assert_names(&err, "model.safetensors", Some("layers.0.bias"));

    let t = original_tensors(&m);
    let refs: Vec<(&str, Tensor)> = t.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    write_tensors(dir.path(), &refs, "dgating-compact-v0");
    let err = import(dir.path()).unwrap_err();
    assert!(matches!(&err, Error::UnknownVersion { version, .. } if version == "dgating-compact-v0"), "{err}");
    assert_names(&err, "model.safetensors", None);
}

#[test]
fn bad_configs_are_named_errors() {
    let (dir, m) = exported();
    let path = dir.path().join("config.json");
    let json = std::fs::read_to_string(&path).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        f(&mut v);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        import(dir.path()).unwrap_err()
    };
    let err = edit(&|v| v["format"] = "dgating-compact-v9".into());
    assert!(matches!(&err, Error::UnknownVersion { version, .. } if version == "dgating-compact-v9"), "{err}");
    assert_names(&err, "config.json", None);
    let err = edit(&|v| v["architecture"]["type"] = "gpt".into());
    assert!(matches!(err, Error::Format { .. }), "{err}");
    assert_names(&err, "config.json", None);
    // Sizes that agree with the kept indices but not with the weights.
    let err = edit(&|v| {
        v["architecture"]["hidden"] = serde_json::json!([4, 3]);
        v["dims"][2]["kept"] = serde_json::json!([0, 1, 2]);
    });
    assert!(matches!(&err, Error::ShapeMismatch { name, .. } if name.starts_with("layers.1.")), "{err}");
    let err = edit(&|v| v["dims"][0]["kept"] = serde_json::json!([0, 1, 2, 9, 3]));
    assert!(matches!(err, Error::Format { .. }), "{err}");
    let err = edit(&|v| v["dims"][1]["kept"] = serde_json::json!([0, 2, 3]));
    assert!(matches!(err, Error::Format { .. }), "kept indices must fit the size: {err}");
    let err = edit(&|v| v["dims"][3]["kept"] = serde_json::json!([0, 1]));
    assert!(matches!(err, Error::Format { .. }), "outputs cannot shrink: {err}");
    let err = edit(&|v| v["input"]["names"] = serde_json::json!(["a"]));
    assert!(matches!(err, Error::Format { .. }), "{err}");
    let err = edit(&|v| v.as_object_mut().unwrap().remove("dims").map(|_| ()).unwrap());
    assert_names(&err, "config.json", None);

    std::fs::write(&path, &json[..json.len() / 2]).unwrap();
    let err = import(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    assert_names(&err, "config.json", None);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(import(dir.path()).unwrap_err(), Error::Io { .. }));
    // A valid model exports again over the damaged directory.
    export(&m, dir.path()).unwrap();
    assert!(import(dir.path()).is_ok());
}

/// Provenance is informational: a config without it (or with a `null` training record) still
/// loads, and so does one whose per-set records lack a decision.
#[test]
fn provenance_is_informational() {
    let (dir, m) = exported();
    let path = dir.path().join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(v["provenance"]["read_out"].is_object(), "export records the read-out: {v}");
    v["provenance"] = serde_json::json!({
        "mode": null, "depth": null, "lambda": null, "read_out": null, "training": null,
        "groups": [{"dim": "hidden.0", "groups": 6, "removed": 2, "decision": null}]
    });
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let loaded = import(dir.path()).unwrap();
    assert_eq!(loaded.config.provenance.read_out, None);
    assert_eq!(loaded.config.provenance.groups[0].decision, None);
    assert_eq!(loaded.config.dims, m.config.dims);
}

/// A `dgating-compact-v1` file (written by the MLP-only code) loads as the v2 config of the same
/// MLP: the same kept indices and the same outputs.
#[test]
fn v1_files_load_as_v2() {
    let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-wine");
    let c = import(&v1).unwrap();
    assert_eq!(c.config.format, "dgating-compact-v2");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(v1.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["format"], "dgating-compact-v1");
    let widths: Vec<usize> = serde_json::from_value(json["widths"].clone()).unwrap();
    assert_eq!(c.config.architecture, dgating_nn::Architecture::from_widths(&widths).unwrap());
    let kept: Vec<usize> = serde_json::from_value(json["kept_inputs"].clone()).unwrap();
    assert_eq!(c.config.kept_input_indices(), kept);
    assert_eq!(c.config.provenance.mode.as_deref(), Some("dgating"));
    assert!(c.config.input.standardizer.is_some());
    // Re-exported, it is a v2 file with the same function.
    let dir = tempfile::tempdir().unwrap();
    export(&c, dir.path()).unwrap();
    let back = import(dir.path()).unwrap();
    let x = inputs(7, 13, 3);
    assert_eq!(bits(&back.forward_full(&x).unwrap()), bits(&c.forward_full(&x).unwrap()));
}
