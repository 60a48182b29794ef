//! Run outputs: the `results/<run>/` folder, candidate tables as parquet and CSV (polars), JSON
//! manifests. Every file is written to a temporary name and renamed into place, so an
//! interrupted run never leaves a half-written file.

use polars::prelude::*;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: {source}")]
    Table { path: String, source: PolarsError },
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = temporary(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn table_error(path: &Path) -> impl FnOnce(PolarsError) -> ResultsError + '_ {
    move |source| ResultsError::Table {
        path: path.display().to_string(),
        source,
    }
}

pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ResultsError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    write_atomic(path, text.as_bytes()).map_err(io_error(path))
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), ResultsError> {
    write_atomic(path, text.as_bytes()).map_err(io_error(path))
}

/// Writes `frame` as `<stem>.parquet` and `<stem>.csv` in `dir`.
pub(crate) fn write_frame(
    frame: &mut DataFrame,
    dir: &Path,
    stem: &str,
) -> Result<(), ResultsError> {
    write_parquet(frame, &dir.join(format!("{stem}.parquet")))?;
    let csv = dir.join(format!("{stem}.csv"));
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes)
        .include_header(true)
        .finish(frame)
        .map_err(table_error(&csv))?;
    write_atomic(&csv, &bytes).map_err(io_error(&csv))
}

/// Writes `frame` as a parquet file.
pub(crate) fn write_parquet(frame: &mut DataFrame, path: &Path) -> Result<(), ResultsError> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(frame)
        .map_err(table_error(path))?;
    write_atomic(path, &bytes).map_err(io_error(path))
}

/// Reads a parquet table.
pub fn read_parquet(path: &Path) -> Result<DataFrame, ResultsError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    ParquetReader::new(file).finish().map_err(table_error(path))
}

/// A file-system friendly run name.
pub(crate) fn slug(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_parquet() {
        let dir = std::env::temp_dir().join(format!("qsearch-results-{}", std::process::id()));
        let mut frame = df!("policy" => ["ilp", "random"], "cycles" => [1.5f64, 2.5]).unwrap();
        write_frame(&mut frame, &dir, "t").unwrap();
        let back = read_parquet(&dir.join("t.parquet")).unwrap();
        assert!(back.equals(&frame));
        let csv = std::fs::read_to_string(dir.join("t.csv")).unwrap();
        assert_eq!(csv, "policy,cycles\nilp,1.5\nrandom,2.5\n");
        assert!(
            std::fs::read_dir(&dir).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp"))
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slug("zoo:mobilenet-v1:width=0.5"),
            "zoo-mobilenet-v1-width-0.5"
        );
    }
}
