//! CSV loading: a header row, one named target column, every other column a numeric feature.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Dataset, Targets};
use crate::error::{Error, Result};

/// Largest number of classes inferred from an integer target column; above it the column is
/// treated as a regression target.
const MAX_INFERRED_CLASSES: usize = 1000;

/// Reads `path` and parses it with [`parse_csv`]; errors name the path.
pub fn load_csv(path: &Path, target: &str) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_csv(&path.display().to_string(), &bytes, target)
}

/// Parses CSV `bytes` (header row required, fields trimmed, quotes allowed) into a
/// [`Dataset`] named `name`.
///
/// The column named `target` holds the targets; every other column is a feature and must hold
/// a finite number in every row. Targets become [`Targets::Classes`] when every value is an
/// integer in `0..=K-1` with at least two distinct values and `K <= 1000` (`num_classes =
/// max + 1`); text labels become classes numbered in sorted order; other numbers become
/// [`Targets::Values`]. Every error is an [`Error::Data`] naming the 1-based data row, its
/// line, the column and the offending text.
pub fn parse_csv(name: &str, bytes: &[u8], target: &str) -> Result<Dataset> {
    let err = |msg: String| Error::data(name, msg);
    let mut reader =
        ::csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(::csv::Trim::All).from_reader(bytes);
    let header = reader.headers().map_err(|e| err(format!("cannot read the header row: {e}")))?.clone();
    if header.iter().all(str::is_empty) {
        return Err(err("empty file: expected a header row naming the columns".into()));
    }
    let columns: Vec<&str> = header.iter().collect();
    let target_col = match columns.iter().filter(|c| **c == target).count() {
        1 => columns.iter().position(|c| *c == target).unwrap_or_default(),
        0 => return Err(err(format!("no target column `{target}`; the columns are: {}", columns.join(", ")))),
        k => return Err(err(format!("target column `{target}` appears {k} times in the header"))),
    };
    let feature_names: Vec<String> =
        columns.iter().enumerate().filter(|(j, _)| *j != target_col).map(|(_, c)| c.to_string()).collect();
    if feature_names.is_empty() {
        return Err(err(format!("no feature columns besides the target `{target}`")));
    }

    let mut features = Vec::new();
    let mut target_texts: Vec<(String, Place)> = Vec::new();
    for (r, record) in reader.records().enumerate() {
        let row = r + 1;
        let record = record.map_err(|e| err(format!("row {row}: {e}")))?;
        let place = Place { row, line: record.position().map_or(0, |p| p.line()) };
        if record.len() > columns.len() {
            return Err(err(format!("{place}: {} fields, but the header has {}", record.len(), columns.len())));
        }
        for (j, column) in columns.iter().enumerate() {
            let text = record.get(j).unwrap_or_default();
            if text.is_empty() {
                return Err(err(format!("{place}, column `{column}`: missing value")));
            }
            if j == target_col {
                target_texts.push((text.to_string(), place));
                continue;
            }
            match text.parse::<f32>() {
                Ok(v) if v.is_finite() => features.push(v),
                _ => return Err(err(format!("{place}, column `{column}`: `{}` is not a finite number", short(text)))),
            }
        }
    }
    if target_texts.is_empty() {
        return Err(err("header only: no data rows".into()));
    }
    let targets = infer_targets(target, &target_texts).map_err(err)?;
    Dataset::new(name, features, feature_names.len(), feature_names, targets)
}

/// Where a cell is, for messages: the 1-based data row and the 1-based line of the file.
#[derive(Debug, Clone, Copy)]
struct Place {
    row: usize,
    line: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {} (line {})", self.row, self.line)
    }
}

/// Integer class ids, text labels (sorted) or real values; see [`parse_csv`].
fn infer_targets(column: &str, texts: &[(String, Place)]) -> std::result::Result<Targets, String> {
    let numbers: Vec<Option<f64>> = texts.iter().map(|(t, _)| t.parse::<f64>().ok()).collect();
    if numbers.iter().all(Option::is_none) {
        let ids: BTreeMap<&str, u32> = texts.iter().map(|(t, _)| (t.as_str(), 0)).collect();
        let ids: BTreeMap<&str, u32> = ids.into_keys().zip(0..).collect();
        let labels = texts.iter().map(|(t, _)| ids[t.as_str()]).collect();
        return Ok(Targets::Classes { labels, num_classes: ids.len() });
    }
    let mut values = Vec::with_capacity(texts.len());
    for ((text, place), v) in texts.iter().zip(&numbers) {
        match v {
            Some(v) if v.is_finite() && (*v as f32).is_finite() => values.push(*v),
            Some(_) => return Err(format!("{place}, column `{column}`: `{}` is not a finite f32", short(text))),
            None => {
                return Err(format!(
                    "{place}, column `{column}`: `{}` is text, but other targets are numbers",
                    short(text)
                ));
            }
        }
    }
    let is_id = |v: f64| v >= 0.0 && v.fract() == 0.0 && v < MAX_INFERRED_CLASSES as f64;
    if values.iter().all(|&v| is_id(v)) {
        let num_classes = values.iter().fold(0.0f64, |a, &b| a.max(b)) as usize + 1;
        let mut seen = vec![false; num_classes];
        values.iter().for_each(|&v| seen[v as usize] = true);
        if seen.iter().filter(|s| **s).count() >= 2 {
            return Ok(Targets::Classes { labels: values.iter().map(|&v| v as u32).collect(), num_classes });
        }
    }
    Ok(Targets::Values(values.into_iter().map(|v| v as f32).collect()))
}

/// `text`, cut to 40 characters for messages.
fn short(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(r: Result<Dataset>) -> String {
        match r {
            Err(Error::Data { message, .. }) => message,
            other => panic!("expected a data error, got {other:?}"),
        }
    }

    #[test]
    fn parses_features_and_integer_classes() {
        let d = parse_csv("t", b"a, b ,y\n1,2,0\n3.5,-4e1,1\n\n5,6,2\n", "y").unwrap();
        assert_eq!(d.feature_names, vec!["a", "b"]);
        assert_eq!(d.features, vec![1.0, 2.0, 3.5, -40.0, 5.0, 6.0]);
        assert_eq!(d.targets, Targets::Classes { labels: vec![0, 1, 2], num_classes: 3 });
        assert_eq!(d.name, "t");
    }

    #[test]
    fn target_column_can_be_anywhere() {
        let d = parse_csv("t", b"y,a\n1,10\n0,20\n", "y").unwrap();
        assert_eq!(d.features, vec![10.0, 20.0]);
        assert_eq!(d.targets, Targets::Classes { labels: vec![1, 0], num_classes: 2 });
    }

    #[test]
    fn text_labels_become_sorted_classes() {
        let d = parse_csv("t", b"a,y\n1,dog\n2,cat\n3,\"emu\"\n4,dog\n", "y").unwrap();
        assert_eq!(d.targets, Targets::Classes { labels: vec![1, 0, 2, 1], num_classes: 3 });
    }

    #[test]
    fn non_integer_or_single_valued_targets_are_values() {
        let values = |csv: &[u8]| parse_csv("t", csv, "y").unwrap().targets;
        assert_eq!(values(b"a,y\n1,0.5\n2,1\n"), Targets::Values(vec![0.5, 1.0]));
        assert_eq!(values(b"a,y\n1,1\n2,1\n"), Targets::Values(vec![1.0, 1.0]));
        assert_eq!(values(b"a,y\n1,-1\n2,1\n"), Targets::Values(vec![-1.0, 1.0]));
        assert_eq!(values(b"a,y\n1,0\n2,1000\n"), Targets::Values(vec![0.0, 1000.0]));
        assert_eq!(values(b"a,y\n1,0\n2,999\n").num_classes(), Some(1000));
    }

    #[test]
    fn missing_cell_names_row_line_and_column() {
        let m = message(parse_csv("t", b"a,b,y\n1,2,0\n3,,1\n", "y"));
        assert!(m.contains("row 2 (line 3)") && m.contains("`b`") && m.contains("missing"), "{m}");
        let m = message(parse_csv("t", b"a,b,y\n1,2,0\n3\n", "y"));
        assert!(m.contains("row 2 (line 3)") && m.contains("`b`") && m.contains("missing"), "{m}");
        let m = message(parse_csv("t", b"a,y\n1,0\n2,\n", "y"));
        assert!(m.contains("row 2") && m.contains("`y`"), "{m}");
    }

    #[test]
    fn non_numeric_cell_names_row_column_and_text() {
        let m = message(parse_csv("t", b"a,b,y\n1,2,0\n3,4,1\n5,x7,0\n", "y"));
        assert!(m.contains("row 3 (line 4)") && m.contains("`b`") && m.contains("`x7`"), "{m}");
        let m = message(parse_csv("t", b"a,y\nnan,0\n", "y"));
        assert!(m.contains("`nan`") && m.contains("finite"), "{m}");
    }

    #[test]
    fn missing_target_column_lists_the_columns() {
        let m = message(parse_csv("t", b"alpha,beta\n1,2\n", "label"));
        assert!(m.contains("`label`") && m.contains("alpha, beta"), "{m}");
        let m = message(parse_csv("t", b"y,y\n1,2\n", "y"));
        assert!(m.contains("2 times"), "{m}");
        let m = message(parse_csv("t", b"y\n1\n", "y"));
        assert!(m.contains("no feature columns"), "{m}");
    }

    #[test]
    fn empty_file_and_header_only_are_errors() {
        assert!(message(parse_csv("t", b"", "y")).contains("empty file"));
        assert!(message(parse_csv("t", b"\n\n", "y")).contains("empty file"));
        assert!(message(parse_csv("t", b"a,y\n", "y")).contains("no data rows"));
        assert!(message(parse_csv("t", b"a,y", "y")).contains("no data rows"));
    }

    #[test]
    fn other_row_errors() {
        assert!(message(parse_csv("t", b"a,y\n1,0,9\n", "y")).contains("3 fields"));
        let m = message(parse_csv("t", b"a,y\n1,0\n2,cat\n", "y"));
        assert!(m.contains("row 2") && m.contains("`cat`") && m.contains("text"), "{m}");
        assert!(message(parse_csv("t", b"a,y\n1,1e300\n", "y")).contains("finite f32"));
        assert!(message(parse_csv("t", b"a,y\n1e39,0\n", "y")).contains("`1e39`"));
        assert!(parse_csv("t", b"a,y\n\xff,0\n", "y").is_err());
    }

    #[test]
    fn load_csv_reads_a_file_and_names_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, "a,y\n1,0\n2,1\n").unwrap();
        let d = load_csv(&path, "y").unwrap();
        assert_eq!((d.len(), d.name.as_str()), (2, path.to_str().unwrap()));
        let missing = dir.path().join("nope.csv");
        assert!(matches!(load_csv(&missing, "y"), Err(Error::Io { path, .. }) if path == missing));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_csv("fuzz", &bytes, "y");
        }

        #[test]
        fn csv_like_text_never_panics_and_results_are_consistent(text in "[y0-9a,.\\-e\n\" ]{0,200}") {
            if let Ok(d) = parse_csv("fuzz", text.as_bytes(), "y") {
                prop_assert_eq!(d.features.len(), d.len() * d.num_features);
                prop_assert!(d.features.iter().all(|v| v.is_finite()));
            }
        }
    }
}
