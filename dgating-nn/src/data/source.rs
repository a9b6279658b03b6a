//! [`load`]: one string that names a data set, as typed after `--data` on the command line.

use std::fs;
use std::path::{Path, PathBuf};

use super::cifar::{detect_cifar, load_cifar};
use super::csv::table_delimiter;
use super::{BUILTIN, Dataset, Task, TaskChoice, builtin, load_idx, load_table};

/// Where Debian's `dataset-fashion-mnist` puts the full Fashion-MNIST IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable that overrides [`FASHION_MNIST_DIR`].
pub const FASHION_MNIST_ENV: &str = "DGATING_FASHION_MNIST_DIR";

/// The directory of the full Fashion-MNIST (`--data fashion-mnist`): `$DGATING_FASHION_MNIST_DIR`
/// or [`FASHION_MNIST_DIR`], which must hold the four IDX files; otherwise an error that says
/// how to get them.
pub fn fashion_mnist_dir() -> Result<PathBuf> {
    let dir = std::env::var_os(FASHION_MNIST_ENV).map_or_else(|| PathBuf::from(FASHION_MNIST_DIR), PathBuf::from);
    let files = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ];
    if let Some(missing) = files.iter().find(|f| !dir.join(f).is_file()) {
        return Err(Error::data(
            "fashion-mnist",
            format!(
                "the full Fashion-MNIST is not installed ({} has no {missing}). On Debian/Ubuntu: \
                 `sudo apt-get install dataset-fashion-mnist` (puts the IDX files under {FASHION_MNIST_DIR}); \
                 or download the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist \
                 into a directory and set {FASHION_MNIST_ENV} to it (or pass that directory as --data). \
                 The built-in 10,000-image subset needs no install: --data fashion-mnist-10k",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// The directory a data spec names: `fashion-mnist` resolves to [`fashion_mnist_dir`], any
/// other spec is taken as written.
fn resolve(spec: &str) -> Result<PathBuf> {
    if spec == "fashion-mnist" { fashion_mnist_dir() } else { Ok(PathBuf::from(spec)) }
}
use crate::error::{Error, Result};

/// Loads `spec` with the task chosen automatically; see [`load_with`].
pub fn load(spec: &str, target: Option<&str>) -> Result<Dataset> {
    load_with(spec, target, None).map(|(d, _)| d)
}

/// Loads `spec`, which is one of:
///
/// * a built-in name ([`BUILTIN`]; `target` is ignored: their targets are fixed);
/// * a path ending in `.csv`, `.tsv`, `.csv.gz` or `.tsv.gz`, whose column `target` holds the
///   targets (required: a [`Error::Config`] says `--target` is missing otherwise), read as
///   `task` (`None`: chosen by the rule of [`parse_table`](super::parse_table));
/// * a directory with an IDX images file named like `*images*idx3*` and a labels file like
///   `*labels*idx1*`, raw or gzipped. `train-*` files are preferred (the MNIST and Debian
///   Fashion-MNIST layout `train-images-idx3-ubyte.gz`), then the first name in sorted order;
///   [`load_idx_test`] reads the `t10k-*` pair.
///
/// Returns the data and the task it was read as, with the reason. A path that does not exist
/// is an [`Error::Data`] naming it and the accepted forms.
pub fn load_with(spec: &str, target: Option<&str>, task: Option<Task>) -> Result<(Dataset, TaskChoice)> {
    let fixed = |d: Dataset, what: &str| {
        let reason = match d.targets.class_names() {
            Some(c) => format!("classification: {what} with {} classes", c.len()),
            None => format!("regression: {what} with a real-valued target"),
        };
        let choice = TaskChoice { task: d.targets.task(), reason };
        if let Some(t) = task
            && t != choice.task
        {
            return Err(Error::Config(format!(
                "{spec} is a {} data set; --task {t} does not apply to it",
                choice.task
            )));
        }
        Ok((d, choice))
    };
    if BUILTIN.contains(&spec) {
        return fixed(builtin(spec)?, &format!("the built-in data set `{spec}`"));
    }
    let resolved = resolve(spec)?;
    let path = resolved.as_path();
    if table_delimiter(path).is_some() && path.is_file() {
        let target = target.ok_or_else(|| {
            Error::Config(format!("`--target` is required for the table {spec}: name its target column"))
        })?;
        return load_table(path, target, task);
    }
    if let Some((kind, train, _)) = path.is_dir().then(|| detect_cifar(path)).flatten() {
        return fixed(load_cifar(spec, path, &train, kind)?, "CIFAR binary data");
    }
    if path.is_dir() {
        let (images, labels) = find_idx_pair(path)?;
        let mut data = load_idx(&images, &labels)?;
        data.name = spec.to_string();
        return fixed(data, "IDX image data");
    }
    let what = if path.exists() { "is not a .csv/.tsv file (optionally .gz) or a directory" } else { "does not exist" };
    Err(Error::data(
        spec,
        format!(
            "{what}: expected a built-in data set ({}), a .csv/.tsv file or a directory of IDX files",
            BUILTIN.join(", ")
        ),
    ))
}

/// The test set of an IDX directory that ships one (`t10k-images-idx3-ubyte[.gz]` and
/// `t10k-labels-idx1-ubyte[.gz]`, the MNIST / Fashion-MNIST layout; `fashion-mnist` names the
/// installed one) or of a CIFAR directory (`test_batch.bin`, `test.bin`); `None` otherwise.
pub fn load_idx_test(dir: &Path) -> Result<Option<Dataset>> {
    let resolved = if dir == Path::new("fashion-mnist") { fashion_mnist_dir()? } else { dir.to_path_buf() };
    let dir = resolved.as_path();
    if !dir.is_dir() {
        return Ok(None);
    }
    if let Some((kind, _, test)) = detect_cifar(dir) {
        if !test.is_file() {
            return Ok(None);
        }
        return Ok(Some(load_cifar(&format!("{} (test)", dir.display()), dir, &[test], kind)?));
    }
    let find = |kind: &str| -> Result<Option<PathBuf>> {
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
            let lower = name.to_string_lossy().to_ascii_lowercase();
            if lower.starts_with("t10k-") && lower.contains(kind) {
                return Ok(Some(dir.join(name)));
            }
        }
        Ok(None)
    };
    match (find("images-idx3")?, find("labels-idx1")?) {
        (Some(images), Some(labels)) => {
            let mut data = load_idx(&images, &labels)?;
            data.name = format!("{} (t10k)", dir.display());
            Ok(Some(data))
        }
        _ => Ok(None),
    }
}

/// The IDX images and labels files of `dir`.
fn find_idx_pair(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.path().is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    let pick = |kind: &str, idx: &str| {
        let lower = |n: &String| n.to_ascii_lowercase();
        let matching: Vec<&String> =
            names.iter().filter(|n| lower(n).contains(kind) && lower(n).contains(idx)).collect();
        matching.iter().find(|n| lower(n).starts_with("train-")).or(matching.first()).map(|n| dir.join(n.as_str()))
    };
    match (pick("images", "idx3"), pick("labels", "idx1")) {
        (Some(images), Some(labels)) => Ok((images, labels)),
        _ => Err(Error::data(
            dir.display().to_string(),
            "no IDX data: expected files named like `*images*idx3*` and `*labels*idx1*` \
             (e.g. train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw IDX files of `n` 1x2 images whose pixels and labels are all `value`.
    fn write_idx(dir: &Path, images: &str, labels: &str, n: u8, value: u8) {
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, n, 0, 0, 0, 1, 0, 0, 0, 2];
        img.extend(std::iter::repeat_n(value, 2 * usize::from(n)));
        let mut lab = vec![0, 0, 8, 1, 0, 0, 0, n];
        lab.extend(std::iter::repeat_n(value, usize::from(n)));
        fs::write(dir.join(images), img).unwrap();
        fs::write(dir.join(labels), lab).unwrap();
    }

    /// `--data fashion-mnist` reads the Debian package's files, or says how to get them.
    #[test]
    fn fashion_mnist_is_found_or_explained() {
        let installed = Path::new(FASHION_MNIST_DIR).join("t10k-labels-idx1-ubyte.gz").is_file();
        if std::env::var_os(FASHION_MNIST_ENV).is_some() {
            return;
        }
        match fashion_mnist_dir() {
            Ok(dir) => assert!(installed && dir == Path::new(FASHION_MNIST_DIR)),
            Err(e) => {
                assert!(!installed);
                let m = e.to_string();
                assert!(m.contains("apt-get install dataset-fashion-mnist") && m.contains(FASHION_MNIST_ENV), "{m}");
                assert!(load("fashion-mnist", None).is_err());
            }
        }
        if installed {
            let test = load_idx_test(Path::new("fashion-mnist")).unwrap().unwrap();
            assert_eq!((test.len(), test.num_features), (10_000, 784));
        }
    }

    #[test]
    fn builtin_names_load_without_files() {
        assert_eq!(load("wine", None).unwrap().len(), 178);
        assert_eq!(load("synthetic", Some("ignored")).unwrap().len(), 600);
    }

    #[test]
    fn csv_paths_need_a_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.CSV");
        fs::write(&path, "a,label\n1,0\n2,1\n").unwrap();
        let spec = path.to_str().unwrap();
        assert_eq!(load(spec, Some("label")).unwrap().len(), 2);
        match load(spec, None) {
            Err(Error::Config(m)) => assert!(m.contains("--target") && m.contains(spec), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn idx_directories_prefer_train_files() {
        let dir = tempfile::tempdir().unwrap();
        write_idx(dir.path(), "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 2, 1);
        write_idx(dir.path(), "train-images-idx3-ubyte", "train-labels-idx1-ubyte", 3, 2);
        let spec = dir.path().to_str().unwrap();
        let d = load(spec, None).unwrap();
        assert_eq!((d.len(), d.num_features, d.name.as_str()), (3, 2, spec));

        let plain = tempfile::tempdir().unwrap();
        write_idx(plain.path(), "images-idx3-ubyte", "labels-idx1-ubyte", 2, 1);
        assert_eq!(load(plain.path().to_str().unwrap(), None).unwrap().len(), 2);
    }

    #[test]
    fn missing_paths_and_empty_directories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        match load(missing.to_str().unwrap(), None) {
            Err(Error::Data { source_name, message }) => {
                assert_eq!(source_name, missing.to_str().unwrap());
                assert!(message.contains("does not exist") && message.contains("wine"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(load("wnie", None), Err(Error::Data { .. })));
        let m = load(dir.path().to_str().unwrap(), None).unwrap_err().to_string();
        assert!(m.contains("idx3"), "{m}");
        let csv_missing = dir.path().join("x.csv");
        let m = load(csv_missing.to_str().unwrap(), Some("y")).unwrap_err().to_string();
        assert!(m.contains("x.csv") && m.contains("does not exist"), "{m}");
    }
}
