//! IDX loading (the MNIST / Fashion-MNIST format): an images file of `u8 [N, rows, cols]` and
//! a labels file of `u8 [N]`, each raw or gzipped.
//!
//! An IDX file is a big-endian header — magic `0x0000 TT DD` (element type `TT`, `DD`
//! dimensions), then `DD` `u32` sizes — followed by the elements. The header is untrusted: the
//! data is read through a limit of the declared size, so a corrupt header can neither
//! allocate more than the file holds nor overflow.

use std::io::{ErrorKind, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use super::{Dataset, Targets};
use crate::error::{Error, Result};

/// Element type `u8` with 3 dimensions.
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Element type `u8` with 1 dimension.
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest buffer reserved up front for gzipped data, whose size is unknown until it is
/// decoded; beyond it the buffer grows with the data actually read.
const MAX_RESERVE: usize = 1 << 26;

/// Reads both files and parses them with the rules of [`parse_idx`]; errors name the file.
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset> {
    let image_bytes = std::fs::read(images).map_err(|e| Error::io(images, e))?;
    let label_bytes = std::fs::read(labels).map_err(|e| Error::io(labels, e))?;
    let (image_src, label_src) = (images.display().to_string(), labels.display().to_string());
    parse_sources(&image_src, &image_src, &image_bytes, &label_src, &label_bytes)
}

/// Parses an IDX images file (`0x00000803`, `u8 [N, rows, cols]`) and labels file
/// (`0x00000801`, `u8 [N]`), each gunzipped first when it starts with the gzip magic
/// `1f 8b`, into a [`Dataset`] named `name`: pixels scaled to `[0, 1]`, features `px0..`,
/// and 10 classes (or `max label + 1` if larger).
///
/// Errors ([`Error::Data`]): bad magic, an element type other than `u8`, the wrong number of
/// dimensions, a truncated file or trailing bytes, a corrupt gzip stream, `N` differing between
/// the files, no images or empty images.
pub fn parse_idx(name: &str, images: &[u8], labels: &[u8]) -> Result<Dataset> {
    parse_sources(name, &format!("{name} (images)"), images, &format!("{name} (labels)"), labels)
}

fn parse_sources(name: &str, image_src: &str, images: &[u8], label_src: &str, labels: &[u8]) -> Result<Dataset> {
    let mut image_reader = Source::open(images);
    let image_dims = read_header(image_src, &mut image_reader.reader, IMAGES_MAGIC)?;
    let mut label_reader = Source::open(labels);
    let label_dims = read_header(label_src, &mut label_reader.reader, LABELS_MAGIC)?;
    let (n, rows, cols) = (image_dims[0], image_dims[1], image_dims[2]);
    if n != label_dims[0] {
        return Err(Error::data(name, format!("{n} images but {} labels", label_dims[0])));
    }
    if n == 0 {
        return Err(Error::data(image_src, "no images"));
    }
    if rows == 0 || cols == 0 {
        return Err(Error::data(image_src, format!("empty images of {rows}x{cols} pixels")));
    }
    let labels = read_body(label_src, &mut label_reader, &label_dims)?;
    let pixels = read_body(image_src, &mut image_reader, &image_dims)?;
    let max_label = labels.iter().copied().max().map_or(0, usize::from);
    let num_classes = if max_label < 10 { 10 } else { max_label + 1 };
    let num_features = rows * cols;
    let features = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    let feature_names = (0..num_features).map(|k| format!("px{k}")).collect();
    let names = super::class_names_numbered(num_classes);
    let targets = Targets::Classes { labels: labels.into_iter().map(u32::from).collect(), num_classes, names };
    Dataset::new(name, features, num_features, feature_names, targets)
}

/// A file's bytes, read through a gunzip when they start with the gzip magic.
struct Source<'a> {
    reader: Box<dyn Read + 'a>,
    /// An upper bound on the decoded length, so that a corrupt header cannot make us reserve
    /// more than the file can hold.
    reserve: usize,
}

impl<'a> Source<'a> {
    fn open(bytes: &'a [u8]) -> Self {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            // Deflate expands at most ~1032:1.
            Self { reader: Box::new(GzDecoder::new(bytes)), reserve: bytes.len().saturating_mul(1032) }
        } else {
            Self { reader: Box::new(bytes), reserve: bytes.len() }
        }
    }
}

/// Reads and checks the header; returns the declared dimensions.
fn read_header(src: &str, reader: &mut dyn Read, expected: u32) -> Result<Vec<usize>> {
    let mut magic = [0u8; 4];
    read_exact(src, reader, &mut magic, "header")?;
    let found = u32::from_be_bytes(magic);
    let expected_dims = (expected & 0xff) as u8;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(Error::data(src, format!("bad magic 0x{found:08x}: not an IDX file (expected 0x{expected:08x})")));
    }
    if magic[2] != 0x08 {
        let kind = match magic[2] {
            0x09 => "i8",
            0x0b => "i16",
            0x0c => "i32",
            0x0d => "f32",
            0x0e => "f64",
            _ => "unknown",
        };
        return Err(Error::data(
            src,
            format!("unsupported element type 0x{:02x} ({kind}): only u8 (0x08) is supported", magic[2]),
        ));
    }
    if magic[3] != expected_dims {
        return Err(Error::data(
            src,
            format!(
                "{} dimensions, expected {expected_dims} (magic 0x{found:08x}, expected 0x{expected:08x})",
                magic[3]
            ),
        ));
    }
    let mut dims = Vec::with_capacity(usize::from(expected_dims));
    for _ in 0..expected_dims {
        let mut d = [0u8; 4];
        read_exact(src, reader, &mut d, "header")?;
        dims.push(usize::try_from(u32::from_be_bytes(d)).map_err(|_| Error::data(src, "dimension too large"))?);
    }
    Ok(dims)
}

/// Reads exactly the declared `dims` product of bytes and checks that nothing follows.
fn read_body(src: &str, source: &mut Source<'_>, dims: &[usize]) -> Result<Vec<u8>> {
    let len = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::data(src, format!("declared size {dims:?} overflows")))?;
    let mut data = Vec::with_capacity(len.min(source.reserve).min(MAX_RESERVE));
    let limit = u64::try_from(len).unwrap_or(u64::MAX).saturating_add(1);
    source.reader.by_ref().take(limit).read_to_end(&mut data).map_err(|e| read_error(src, &e))?;
    if data.len() < len {
        return Err(Error::data(
            src,
            format!("truncated: the header declares {dims:?} = {len} bytes, found {}", data.len()),
        ));
    }
    if data.len() > len {
        return Err(Error::data(src, format!("trailing bytes after the {len} declared by the header {dims:?}")));
    }
    Ok(data)
}

fn read_exact(src: &str, reader: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<()> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => Error::data(src, format!("truncated {what}")),
        _ => read_error(src, &e),
    })
}

/// An I/O error while reading from memory can only come from the gzip decoder.
fn read_error(src: &str, e: &std::io::Error) -> Error {
    Error::data(src, format!("corrupt gzip data: {e}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;

    use super::*;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        dims.iter().for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
        out
    }

    /// `n` images of 2x3 pixels (pixel k of image i = 40 i + k) and labels `i % 3`.
    fn files(n: u32) -> (Vec<u8>, Vec<u8>) {
        let mut images = header(IMAGES_MAGIC, &[n, 2, 3]);
        images.extend((0..n).flat_map(|i| (0..6).map(move |k| (40 * i + k) as u8)));
        let mut labels = header(LABELS_MAGIC, &[n]);
        labels.extend((0..n).map(|i| (i % 3) as u8));
        (images, labels)
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn message(r: Result<Dataset>) -> String {
        match r {
            Err(Error::Data { source_name, message }) => format!("{source_name}: {message}"),
            other => panic!("expected a data error, got {other:?}"),
        }
    }

    fn check(d: &Dataset) {
        assert_eq!((d.len(), d.num_features, d.num_classes()), (4, 6, Some(10)));
        assert_eq!(d.row(1), &[40.0 / 255.0, 41.0 / 255.0, 42.0 / 255.0, 43.0 / 255.0, 44.0 / 255.0, 45.0 / 255.0]);
        assert_eq!(d.targets.labels().unwrap(), &[0, 1, 2, 0]);
        assert_eq!(d.feature_names, vec!["px0", "px1", "px2", "px3", "px4", "px5"]);
    }

    #[test]
    fn round_trip_raw_and_gzip_files() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = files(4);
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let (ri, rl) = (write("images-idx3-ubyte", &images), write("labels-idx1-ubyte", &labels));
        let (gi, gl) = (write("images-idx3-ubyte.gz", &gz(&images)), write("labels-idx1-ubyte.gz", &gz(&labels)));
        check(&load_idx(&ri, &rl).unwrap());
        check(&load_idx(&gi, &gl).unwrap());
        check(&load_idx(&gi, &rl).unwrap());
        assert_eq!(load_idx(&ri, &rl).unwrap().name, ri.display().to_string());
        assert!(matches!(load_idx(&dir.path().join("x"), &rl), Err(Error::Io { .. })));
    }

    #[test]
    fn large_labels_widen_the_class_count() {
        let (images, mut labels) = files(4);
        labels[8] = 12;
        assert_eq!(parse_idx("t", &images, &labels).unwrap().num_classes(), Some(13));
    }

    #[test]
    fn corrupt_magic_and_types_are_errors() {
        let (images, labels) = files(4);
        let mut bad = images.clone();
        bad[0] = 0x12;
        assert!(message(parse_idx("t", &bad, &labels)).contains("bad magic"));
        let mut float = images.clone();
        float[2] = 0x0d;
        assert!(message(parse_idx("t", &float, &labels)).contains("unsupported element type 0x0d (f32)"));
        let m = message(parse_idx("t", &labels, &labels));
        assert!(m.starts_with("t (images)") && m.contains("1 dimensions, expected 3"), "{m}");
        assert!(message(parse_idx("t", &images, &images)).contains("t (labels)"));
    }

    #[test]
    fn truncated_and_trailing_data_are_errors() {
        let (images, labels) = files(4);
        assert!(message(parse_idx("t", &images[..images.len() - 1], &labels)).contains("truncated"));
        assert!(message(parse_idx("t", &images[..10], &labels)).contains("truncated header"));
        assert!(message(parse_idx("t", &images, &[])).contains("truncated header"));
        let g = gz(&images);
        assert!(message(parse_idx("t", &g[..g.len() / 2], &labels)).contains("t (images)"));
        let mut long = images.clone();
        long.push(0);
        assert!(message(parse_idx("t", &long, &labels)).contains("trailing"));
    }

    #[test]
    fn count_mismatch_and_empty_images_are_errors() {
        let (images, _) = files(4);
        let (_, labels) = files(3);
        assert!(message(parse_idx("t", &images, &labels)).contains("4 images but 3 labels"));
        let (images, labels) = files(0);
        assert!(message(parse_idx("t", &images, &labels)).contains("no images"));
        let empty = header(IMAGES_MAGIC, &[1, 0, 28]);
        assert!(message(parse_idx("t", &empty, &header(LABELS_MAGIC, &[1]))).contains("empty images"));
    }

    #[test]
    fn a_huge_declared_size_does_not_allocate_it() {
        let mut images = header(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX]);
        images.extend_from_slice(&[1, 2, 3]);
        let mut labels = header(LABELS_MAGIC, &[u32::MAX]);
        labels.extend_from_slice(&[1, 2, 3]);
        assert!(parse_idx("t", &images, &labels).is_err());
        assert!(parse_idx("t", &gz(&images), &gz(&labels)).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            images in proptest::collection::vec(any::<u8>(), 0..200),
            labels in proptest::collection::vec(any::<u8>(), 0..50),
        ) {
            let _ = parse_idx("fuzz", &images, &labels);
            let _ = parse_idx("fuzz", &gz(&images), &labels);
        }

        #[test]
        fn random_headers_and_bodies_never_panic(
            dims in proptest::array::uniform3(prop_oneof![0u32..5, Just(u32::MAX), any::<u32>()]),
            n_labels in prop_oneof![0u32..5, any::<u32>()],
            body in proptest::collection::vec(any::<u8>(), 0..120),
            label_body in proptest::collection::vec(any::<u8>(), 0..6),
        ) {
            let mut images = header(IMAGES_MAGIC, &dims);
            images.extend_from_slice(&body);
            let mut labels = header(LABELS_MAGIC, &[n_labels]);
            labels.extend_from_slice(&label_body);
            if let Ok(d) = parse_idx("fuzz", &images, &labels) {
                prop_assert!(d.features.iter().all(|p| (0.0..=1.0).contains(p)));
                prop_assert_eq!(d.len(), dims[0] as usize);
            }
        }
    }
}
