//! CSV / TSV loading (plain or gzipped): a header row, one named target column, every other
//! column a numeric feature.

use std::io::Read;
use std::path::Path;

use super::task::{MAX_AUTO_CLASSES, MAX_CLASSES, number_name};
use super::{Dataset, Targets, Task, TaskChoice};
use crate::error::{Error, Result};

/// How to read a delimited text file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions<'a> {
    /// The target column's name.
    pub target: &'a str,
    /// The task, or `None` to choose it from the column ([`parse_table`] documents the rule).
    pub task: Option<Task>,
    /// Field delimiter (`b','` for CSV, `b'\t'` for TSV).
    pub delimiter: u8,
}

impl<'a> TableOptions<'a> {
    /// Comma-separated, task chosen automatically.
    pub fn csv(target: &'a str) -> Self {
        Self { target, task: None, delimiter: b',' }
    }
}

/// Whether `path` names a table this module reads: `.csv`, `.tsv`, `.csv.gz` or `.tsv.gz`
/// (any case). Returns its delimiter.
pub fn table_delimiter(path: &Path) -> Option<u8> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".csv") {
        Some(b',')
    } else if name.ends_with(".tsv") {
        Some(b'\t')
    } else {
        None
    }
}

/// Reads `path` as CSV (task chosen automatically) and parses it with [`parse_csv`]; errors
/// name the path.
pub fn load_csv(path: &Path, target: &str) -> Result<Dataset> {
    load_table(path, target, None).map(|(d, _)| d)
}

/// Reads a `.csv`, `.tsv`, `.csv.gz` or `.tsv.gz` file (gzip is detected by its magic bytes)
/// and parses it with [`parse_table`].
pub fn load_table(path: &Path, target: &str, task: Option<Task>) -> Result<(Dataset, TaskChoice)> {
    let bytes = read_maybe_gzip(path)?;
    let delimiter = table_delimiter(path).unwrap_or(b',');
    parse_table(&path.display().to_string(), &bytes, &TableOptions { target, task, delimiter })
}

/// The bytes of `path`, gunzipped when they start with the gzip magic.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| Error::data(path.display().to_string(), format!("not a valid gzip file: {e}")))?;
    Ok(out)
}

/// [`parse_table`] of comma-separated `bytes` with the task chosen automatically.
pub fn parse_csv(name: &str, bytes: &[u8], target: &str) -> Result<Dataset> {
    parse_table(name, bytes, &TableOptions::csv(target)).map(|(d, _)| d)
}

/// Parses delimited text (header row required, fields trimmed, quotes allowed, `\n` or `\r\n`
/// line ends) into a [`Dataset`] named `name`, and says which task it read.
///
/// The column named `options.target` holds the targets; every other column is a feature and
/// must hold a finite number in every row. With `options.task == None` ("auto"):
///
/// * text labels are a classification target (classes in sorted order);
/// * numbers with at most [`MAX_AUTO_CLASSES`] distinct values, all integers (`0/1`, `-1/1`,
///   `1..5`), are a classification target (classes in numeric order, named canonically:
///   `1.0` is class `1`);
/// * other numbers are a regression target;
/// * a column with one value in every row is an error: there is nothing to predict.
///
/// `Some(Task::Classification)` makes every distinct label a class (at most [`MAX_CLASSES`]);
/// `Some(Task::Regression)` requires numbers. Every error is an [`Error::Data`] naming the
/// 1-based data row, its line, the column and the offending text.
pub fn parse_table(name: &str, bytes: &[u8], options: &TableOptions<'_>) -> Result<(Dataset, TaskChoice)> {
    let rows = parse_rows(name, bytes, options.delimiter, Some(options.target), true)?;
    let (targets, choice) =
        infer_targets(options.target, &rows.target_texts, options.task).map_err(|m| Error::data(name, m))?;
    Ok((Dataset::new(name, rows.features, rows.feature_names.len(), rows.feature_names, targets)?, choice))
}

/// Reads the feature columns of a `.csv`/`.tsv` (optionally gzipped) file for prediction: every
/// column is a feature except `ignore` (the model's target column), which may be present or
/// not. The returned data set's targets are placeholders (`0.0`) and must not be scored.
pub fn load_features(path: &Path, ignore: Option<&str>) -> Result<Dataset> {
    let bytes = read_maybe_gzip(path)?;
    let name = path.display().to_string();
    let rows = parse_rows(&name, &bytes, table_delimiter(path).unwrap_or(b','), ignore, false)?;
    let n = rows.features.len() / rows.feature_names.len().max(1);
    Dataset::new(name, rows.features, rows.feature_names.len(), rows.feature_names, Targets::Values(vec![0.0; n]))
}

/// The cells of a table: feature names, row-major features, and the target column's texts.
struct Rows {
    feature_names: Vec<String>,
    features: Vec<f32>,
    target_texts: Vec<(String, Place)>,
}

/// Parses the header and every row. `target` names the column that is not a feature: with
/// `target_required` it must exist, otherwise it is skipped when present.
fn parse_rows(name: &str, bytes: &[u8], delimiter: u8, target: Option<&str>, target_required: bool) -> Result<Rows> {
    let err = |msg: String| Error::data(name, msg);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(::csv::Trim::All)
        .delimiter(delimiter)
        .from_reader(bytes);
    let header =
        reader.headers().map_err(|e| err(format!("cannot read the header row: {}", clean(&e.to_string()))))?.clone();
    if header.iter().all(str::is_empty) {
        return Err(err("empty file: expected a header row naming the columns".into()));
    }
    let columns: Vec<&str> = header.iter().collect();
    let target_col = match target {
        None => None,
        Some(target) => match columns.iter().filter(|c| **c == target).count() {
            1 => columns.iter().position(|c| *c == target),
            0 if !target_required => None,
            0 => {
                let listed: Vec<String> = columns.iter().map(|c| short(c)).collect();
                return Err(err(format!(
                    "no target column `{}`; the columns are: {}",
                    short(target),
                    listed.join(", ")
                )));
            }
            k => return Err(err(format!("target column `{}` appears {k} times in the header", short(target)))),
        },
    };
    let feature_names: Vec<String> =
        columns.iter().enumerate().filter(|(j, _)| Some(*j) != target_col).map(|(_, c)| c.to_string()).collect();
    if feature_names.is_empty() {
        return Err(err(format!("no feature columns besides the target `{}`", short(target.unwrap_or_default()))));
    }
    if let Some(k) = (1..feature_names.len()).find(|&k| feature_names[..k].contains(&feature_names[k])) {
        return Err(err(format!("column `{}` appears twice in the header", short(&feature_names[k]))));
    }

    let mut features = Vec::new();
    let mut target_texts: Vec<(String, Place)> = Vec::new();
    // Lines counted from byte offsets (`\n` only), so that `\r\n` files number right.
    let (mut seen, mut line) = (0usize, 1u64);
    for (r, record) in reader.records().enumerate() {
        let row = r + 1;
        let record = record.map_err(|e| err(format!("row {row}: {}", clean(&e.to_string()))))?;
        let mut offset = (record.position().map_or(0, |p| p.byte()) as usize).clamp(seen, bytes.len());
        // With `\r\n` the reader's position can sit on the previous line's `\n`.
        while offset < bytes.len() && matches!(bytes[offset], b'\r' | b'\n') {
            offset += 1;
        }
        line += bytes[seen..offset].iter().filter(|&&b| b == b'\n').count() as u64;
        seen = offset;
        let place = Place { row, line };
        if record.len() > columns.len() {
            return Err(err(format!("{place}: {} fields, but the header has {}", record.len(), columns.len())));
        }
        for (j, column) in columns.iter().enumerate() {
            let text = record.get(j).unwrap_or_default();
            if text.is_empty() {
                return Err(err(format!("{place}, column `{}`: missing value", short(column))));
            }
            if Some(j) == target_col {
                target_texts.push((text.to_string(), place));
                continue;
            }
            match text.parse::<f32>() {
                Ok(v) if v.is_finite() => features.push(v),
                _ => {
                    return Err(err(format!(
                        "{place}, column `{}`: `{}` is not a finite number",
                        short(column),
                        short(text)
                    )));
                }
            }
        }
    }
    if features.is_empty() {
        return Err(err("header only: no data rows".into()));
    }
    Ok(Rows { feature_names, features, target_texts })
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

/// The targets and the task they were read as; see [`parse_table`].
fn infer_targets(
    column: &str,
    texts: &[(String, Place)],
    task: Option<Task>,
) -> std::result::Result<(Targets, TaskChoice), String> {
    let column = short(column);
    let numbers: Vec<Option<f64>> = texts.iter().map(|(t, _)| t.parse::<f64>().ok()).collect();
    for ((text, place), v) in texts.iter().zip(&numbers) {
        if let Some(v) = v
            && !(v.is_finite() && (*v as f32).is_finite())
        {
            return Err(format!("{place}, column `{column}`: `{}` is not a finite f32", short(text)));
        }
    }
    let first_text = texts.iter().zip(&numbers).find(|(_, v)| v.is_none()).map(|(t, _)| t);
    let all_text = numbers.iter().all(Option::is_none);
    let classes = |reason: String| -> std::result::Result<(Targets, TaskChoice), String> {
        let targets = class_targets(&column, texts, &numbers)?;
        Ok((targets, TaskChoice { task: Task::Classification, reason }))
    };
    match task {
        Some(Task::Classification) => classes("classification, as asked (--task classification)".into()),
        Some(Task::Regression) => {
            if let Some((text, place)) = first_text {
                return Err(format!(
                    "{place}, column `{column}`: `{}` is text, but regression needs numbers",
                    short(text)
                ));
            }
            let values = numbers.iter().map(|v| v.unwrap_or_default() as f32).collect();
            let reason = "regression, as asked (--task regression)".to_string();
            Ok((Targets::Values(values), TaskChoice { task: Task::Regression, reason }))
        }
        None if all_text => classes(format!("classification: target `{column}` holds text labels")),
        None => {
            if let Some((text, place)) = first_text {
                return Err(format!(
                    "{place}, column `{column}`: `{}` is text, but other targets are numbers \
                     (pass --task classification to treat every label as a class name)",
                    short(text)
                ));
            }
            let values: Vec<f64> = numbers.iter().map(|v| v.unwrap_or_default()).collect();
            let mut distinct = values.clone();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            if distinct.len() == 1 {
                return Err(format!(
                    "target `{column}` holds one value (`{}`) in every row: there is nothing to predict",
                    number_name(distinct[0])
                ));
            }
            let integers = distinct.iter().all(|v| v.fract() == 0.0);
            if integers && distinct.len() <= MAX_AUTO_CLASSES {
                let shown: Vec<String> = distinct.iter().take(8).map(|&v| number_name(v)).collect();
                let more = if distinct.len() > 8 { ", ..." } else { "" };
                return classes(format!(
                    "classification: target `{column}` holds {} distinct integers ({}{more}), at most \
                     {MAX_AUTO_CLASSES}; pass --task regression to predict it as a number",
                    distinct.len(),
                    shown.join(", ")
                ));
            }
            let what = if integers {
                format!("{} distinct integers (more than {MAX_AUTO_CLASSES})", distinct.len())
            } else {
                "non-integer numbers".to_string()
            };
            let reason = format!(
                "regression: target `{column}` holds {what}; pass --task classification to treat its values as classes"
            );
            let values = values.into_iter().map(|v| v as f32).collect();
            Ok((Targets::Values(values), TaskChoice { task: Task::Regression, reason }))
        }
    }
}

/// Every distinct label a class: numbers named canonically and ordered by value, then text
/// labels in sorted order.
fn class_targets(
    column: &str,
    texts: &[(String, Place)],
    numbers: &[Option<f64>],
) -> std::result::Result<Targets, String> {
    let mut numeric: Vec<f64> = numbers.iter().flatten().copied().collect();
    numeric.sort_by(f64::total_cmp);
    numeric.dedup_by(|a, b| number_name(*a) == number_name(*b));
    let mut words: Vec<&str> =
        texts.iter().zip(numbers).filter(|(_, v)| v.is_none()).map(|((t, _), _)| t.as_str()).collect();
    words.sort_unstable();
    words.dedup();
    let names: Vec<String> =
        numeric.iter().map(|&v| number_name(v)).chain(words.iter().map(|w| w.to_string())).collect();
    if names.len() > MAX_CLASSES {
        return Err(format!(
            "target `{column}` has {} distinct labels; classification supports at most {MAX_CLASSES} classes",
            names.len()
        ));
    }
    let index: std::collections::HashMap<&str, u32> = names.iter().map(String::as_str).zip(0..).collect();
    let labels = texts
        .iter()
        .zip(numbers)
        .map(|((t, _), v)| match v {
            Some(v) => index[number_name(*v).as_str()],
            None => index[t.as_str()],
        })
        .collect();
    Ok(Targets::Classes { labels, num_classes: names.len(), names })
}

/// `text` for messages: cut to 40 characters, control characters escaped (a binary file
/// must not write raw bytes to the terminal).
pub(crate) fn short(text: &str) -> String {
    let cut = match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    };
    clean(&cut)
}

/// `text` with control characters (and the replacement character of invalid UTF-8) escaped.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == char::REPLACEMENT_CHARACTER {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

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
        assert_eq!(
            d.targets,
            Targets::Classes { labels: vec![0, 1, 2], num_classes: 3, names: names(&["0", "1", "2"]) }
        );
        assert_eq!(d.name, "t");
    }

    #[test]
    fn target_column_can_be_anywhere() {
        let d = parse_csv("t", b"y,a\n1,10\n0,20\n", "y").unwrap();
        assert_eq!(d.features, vec![10.0, 20.0]);
        assert_eq!(d.targets, Targets::Classes { labels: vec![1, 0], num_classes: 2, names: names(&["0", "1"]) });
    }

    #[test]
    fn text_labels_become_sorted_classes() {
        let d = parse_csv("t", b"a,y\n1,dog\n2,cat\n3,\"emu\"\n4,dog\n", "y").unwrap();
        assert_eq!(
            d.targets,
            Targets::Classes { labels: vec![1, 0, 2, 1], num_classes: 3, names: names(&["cat", "dog", "emu"]) }
        );
    }

    #[test]
    fn auto_task_rule_and_overrides() {
        let read = |csv: &[u8], task| parse_table("t", csv, &TableOptions { target: "y", task, delimiter: b',' });
        let values = |csv: &[u8]| read(csv, None).unwrap().0.targets;
        assert_eq!(values(b"a,y\n1,0.5\n2,1\n"), Targets::Values(vec![0.5, 1.0]));
        // {-1, 1} is two classes, named canonically and ordered by value.
        let (d, choice) = read(b"a,y\n1,-1\n2,1.0\n3,1\n", None).unwrap();
        assert_eq!(d.targets, Targets::Classes { labels: vec![0, 1, 1], num_classes: 2, names: names(&["-1", "1"]) });
        assert_eq!(choice.task, Task::Classification);
        assert!(choice.reason.contains("2 distinct integers") && choice.reason.contains("--task regression"));
        // An integer column with many values (an age) is a regression target.
        let ages: String = (0..=70).map(|a| format!("{a},{a}\n")).collect();
        let (d, choice) = read(format!("a,y\n{ages}").as_bytes(), None).unwrap();
        assert_eq!(d.num_classes(), None);
        assert!(choice.reason.contains("71 distinct integers"), "{}", choice.reason);
        // ...unless asked.
        let (d, _) = read(format!("a,y\n{ages}").as_bytes(), Some(Task::Classification)).unwrap();
        assert_eq!(d.num_classes(), Some(71));
        // A constant target has nothing to predict.
        let e = read(b"a,y\n1,1\n2,1\n", None).unwrap_err().to_string();
        assert!(e.contains("one value (`1`)"), "{e}");
        // Forced regression refuses text; forced classification takes mixed labels.
        assert!(
            read(b"a,y\n1,cat\n", Some(Task::Regression)).unwrap_err().to_string().contains("regression needs numbers")
        );
        let (d, _) = read(b"a,y\n1,2\n2,x\n", Some(Task::Classification)).unwrap();
        assert_eq!(d.targets.class_names().unwrap(), &names(&["2", "x"]));
        assert_eq!(read(b"a,y\n1,0\n2,1000\n", None).unwrap().0.num_classes(), Some(2));
    }

    #[test]
    fn tsv_and_gzip_and_crlf() {
        let (d, _) =
            parse_table("t", b"a\ty\n1\t0\n2\t1\n", &TableOptions { target: "y", task: None, delimiter: b'\t' })
                .unwrap();
        assert_eq!(d.features, vec![1.0, 2.0]);
        let m = message(parse_csv("t", b"a,y\r\n1,0\r\n2,1\r\nx,0\r\n", "y"));
        assert!(m.contains("row 3 (line 4)"), "{m}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b"a,y\n1,0\n2,1\n").unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        assert_eq!(load_csv(&path, "y").unwrap().len(), 2);
        assert_eq!(table_delimiter(Path::new("x.TSV.gz")), Some(b'\t'));
        assert_eq!(table_delimiter(Path::new("x.txt")), None);
    }

    #[test]
    fn control_bytes_are_escaped_in_messages() {
        let m = message(parse_csv("t", b"a,y\n\x1b[31m,0\n", "y"));
        assert!(!m.contains('\x1b') && m.contains("\\u{1b}"), "{m}");
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
