//! The CIFAR-10 / CIFAR-100 binary format, read from a directory the user brings (the data
//! sets are not in any package registry).
//!
//! * CIFAR-10: `data_batch_1.bin` … `data_batch_5.bin` (training) and `test_batch.bin`; each
//!   record is 1 label byte (0–9) and 3072 pixel bytes. Class names from
//!   `batches.meta.txt` (one per line) when present.
//! * CIFAR-100: `train.bin` and `test.bin`; each record is a coarse label byte, a fine label
//!   byte (0–99, the one used) and 3072 pixel bytes. Class names from `fine_label_names.txt`
//!   when present.
//!
//! Pixels are 32×32 per channel, channel-major (all red, then green, then blue, each row by
//! row): exactly the `C·H·W` row layout the conv nets read. They are scaled to `[0, 1]`.

use std::path::{Path, PathBuf};

use super::{Dataset, Targets};
use crate::error::{Error, Result};

/// Pixel bytes per image (3 × 32 × 32).
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    /// 10 classes, one label byte.
    Cifar10,
    /// 100 fine classes, a coarse and a fine label byte.
    Cifar100,
}

impl CifarKind {
    fn label_bytes(self) -> usize {
        match self {
            Self::Cifar10 => 1,
            Self::Cifar100 => 2,
        }
    }

    fn classes(self) -> usize {
        match self {
            Self::Cifar10 => 10,
            Self::Cifar100 => 100,
        }
    }
}

/// The CIFAR layout of `dir`, if it holds one: `(kind, training files, test file)`.
pub fn detect_cifar(dir: &Path) -> Option<(CifarKind, Vec<PathBuf>, PathBuf)> {
    if dir.join("data_batch_1.bin").is_file() {
        let train = (1..=5).map(|k| dir.join(format!("data_batch_{k}.bin"))).filter(|p| p.is_file()).collect();
        return Some((CifarKind::Cifar10, train, dir.join("test_batch.bin")));
    }
    if dir.join("train.bin").is_file() {
        return Some((CifarKind::Cifar100, vec![dir.join("train.bin")], dir.join("test.bin")));
    }
    None
}

/// Parses records of `kind` from `bytes` (named `source` in errors): the length must be a
/// whole number of records, labels in range.
pub fn parse_cifar(source: &str, bytes: &[u8], kind: CifarKind) -> Result<(Vec<f32>, Vec<u32>)> {
    let record = kind.label_bytes() + CIFAR_PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(Error::data(
            source,
            format!(
                "{} bytes is not a whole number of {record}-byte {kind:?} records ({} label byte(s) + 3x32x32 pixels): \
                 truncated or not a CIFAR binary file",
                bytes.len(),
                kind.label_bytes()
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut features = Vec::with_capacity(n * CIFAR_PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let label = r[kind.label_bytes() - 1];
        if usize::from(label) >= kind.classes() {
            return Err(Error::data(
                source,
                format!("record {i}: label {label} is not one of the {} classes", kind.classes()),
            ));
        }
        labels.push(u32::from(label));
        features.extend(r[kind.label_bytes()..].iter().map(|&p| f32::from(p) / 255.0));
    }
    Ok((features, labels))
}

fn class_names(dir: &Path, kind: CifarKind) -> Vec<String> {
    let file = match kind {
        CifarKind::Cifar10 => "batches.meta.txt",
        CifarKind::Cifar100 => "fine_label_names.txt",
    };
    let names: Vec<String> = std::fs::read_to_string(dir.join(file))
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    if names.len() == kind.classes() { names } else { super::class_names_numbered(kind.classes()) }
}

/// Reads `files` of `kind` into one data set named `name` (features `px0..px3071`).
pub fn load_cifar(name: &str, dir: &Path, files: &[PathBuf], kind: CifarKind) -> Result<Dataset> {
    if files.is_empty() {
        return Err(Error::data(name, "no CIFAR batch files"));
    }
    let (mut features, mut labels) = (vec![], vec![]);
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        let (x, y) = parse_cifar(&f.display().to_string(), &bytes, kind)?;
        features.extend(x);
        labels.extend(y);
    }
    let feature_names = (0..CIFAR_PIXELS).map(|k| format!("px{k}")).collect();
    let targets = Targets::Classes { labels, num_classes: kind.classes(), names: class_names(dir, kind) };
    Dataset::new(name, features, CIFAR_PIXELS, feature_names, targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize, kind: CifarKind) -> Vec<u8> {
        let mut out = vec![];
        for i in 0..n {
            if kind == CifarKind::Cifar100 {
                out.push(1);
            }
            out.push((i % kind.classes()) as u8);
            out.extend((0..CIFAR_PIXELS).map(|p| ((p + i) % 256) as u8));
        }
        out
    }

    #[test]
    fn cifar10_and_100_directories_read_with_their_test_sets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data_batch_1.bin"), records(3, CifarKind::Cifar10)).unwrap();
        std::fs::write(dir.path().join("data_batch_2.bin"), records(2, CifarKind::Cifar10)).unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), records(4, CifarKind::Cifar10)).unwrap();
        let names: String = (0..10).map(|k| format!("class{k}\n")).collect();
        std::fs::write(dir.path().join("batches.meta.txt"), names).unwrap();
        let (kind, train, test) = detect_cifar(dir.path()).unwrap();
        assert_eq!((kind, train.len()), (CifarKind::Cifar10, 2));
        let d = load_cifar("c", dir.path(), &train, kind).unwrap();
        assert_eq!((d.len(), d.num_features, d.num_classes()), (5, 3072, Some(10)));
        assert_eq!(d.targets.labels().unwrap(), &[0, 1, 2, 0, 1]);
        assert_eq!(d.row(1)[0], 1.0 / 255.0);
        assert_eq!(d.targets.class_names().unwrap()[3], "class3");
        assert_eq!(load_cifar("t", dir.path(), &[test], kind).unwrap().len(), 4);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.bin"), records(3, CifarKind::Cifar100)).unwrap();
        let (kind, train, _) = detect_cifar(dir.path()).unwrap();
        let d = load_cifar("c100", dir.path(), &train, kind).unwrap();
        assert_eq!((d.len(), d.num_classes()), (3, Some(100)));
        assert_eq!(d.targets.labels().unwrap(), &[0, 1, 2], "the fine label");
    }

    #[test]
    fn corrupt_files_are_clear_errors() {
        let mut bytes = records(2, CifarKind::Cifar10);
        bytes.pop();
        let e = parse_cifar("x.bin", &bytes, CifarKind::Cifar10).unwrap_err().to_string();
        assert!(e.contains("x.bin") && e.contains("truncated"), "{e}");
        let mut bytes = records(2, CifarKind::Cifar10);
        bytes[3073] = 10;
        let e = parse_cifar("x.bin", &bytes, CifarKind::Cifar10).unwrap_err().to_string();
        assert!(e.contains("record 1") && e.contains("label 10"), "{e}");
        assert!(parse_cifar("x.bin", &[], CifarKind::Cifar100).is_err());
    }
}
