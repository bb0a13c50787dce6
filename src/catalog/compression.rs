//! Compressed files: which compression a connector's files use (as it says, else from their
//! names; a folder of rotated logs may hold plain and compressed ones) and the names'
//! suffixes. Parquet compresses inside its files and takes none.

use std::path::Path;

use datafusion::datasource::file_format::file_compression_type::FileCompressionType;

use super::connector::{Format, RawConnector};
use crate::util::problem::{Pos, Problems};
use crate::util::yaml::pos;

/// The files' compression: as the connector says, else from the file names (`.csv.gz`).
pub fn kinds(
    raw: &RawConnector,
    format: Format,
    full: &Path,
    rel: &str,
    base_ext: &str,
    name: &str,
    problems: &mut Problems,
) -> Option<Vec<FileCompressionType>> {
    let named = |s: &str| match s {
        "gzip" | "gz" => Some(FileCompressionType::GZIP),
        "zstd" | "zst" => Some(FileCompressionType::ZSTD),
        "bzip2" | "bz2" => Some(FileCompressionType::BZIP2),
        "xz" => Some(FileCompressionType::XZ),
        "none" | "" => Some(FileCompressionType::UNCOMPRESSED),
        _ => None,
    };
    let chosen = match &raw.compression {
        Some(c) => match named(c.value.trim()) {
            Some(t) => t,
            None => {
                problems.push_hint(
                    pos(c),
                    format!("connector `{name}`: unknown compression `{}`", c.value),
                    "use gzip, zstd, bzip2, xz or none",
                );
                return None;
            }
        },
        None => {
            // The path's own suffix, else the first compressed file of the format in a folder.
            let suffix = |p: &str| -> FileCompressionType {
                let lower = p.to_ascii_lowercase();
                [".gz", ".zst", ".bz2", ".xz"]
                    .iter()
                    .find(|s| lower.ends_with(*s))
                    .and_then(|s| named(&s[1..]))
                    .unwrap_or(FileCompressionType::UNCOMPRESSED)
            };
            let own = suffix(rel);
            if own.is_compressed() || !full.is_dir() {
                own
            } else {
                let mut kinds: Vec<FileCompressionType> = Vec::new();
                for f in files_with(full, base_ext) {
                    let k = suffix(&f);
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
                if kinds.is_empty() {
                    kinds.push(FileCompressionType::UNCOMPRESSED);
                }
                return check_parquet(kinds, raw, format, name, problems);
            }
        }
    };
    check_parquet(vec![chosen], raw, format, name, problems)
}

fn check_parquet(
    kinds: Vec<FileCompressionType>,
    raw: &RawConnector,
    format: Format,
    name: &str,
    problems: &mut Problems,
) -> Option<Vec<FileCompressionType>> {
    let chosen =
        kinds.iter().copied().find(FileCompressionType::is_compressed).unwrap_or(FileCompressionType::UNCOMPRESSED);
    if chosen.is_compressed() && format == Format::Parquet {
        let at = raw.compression.as_ref().or(raw.path.as_ref()).map_or(Pos::new(1, 1), pos);
        problems.push_hint(
            at,
            format!("connector `{name}`: Parquet files are not compressed from outside"),
            "Parquet compresses inside the file; drop `compression:` and read the .parquet files as they are",
        );
        return None;
    }
    Some(kinds)
}

/// The file-name suffix of a compression (`.gz`), empty when uncompressed.
pub fn ext_of(c: FileCompressionType) -> &'static str {
    use datafusion::common::parsers::CompressionTypeVariant as V;
    match *c.get_variant() {
        V::GZIP => ".gz",
        V::ZSTD => ".zst",
        V::BZIP2 => ".bz2",
        V::XZ => ".xz",
        V::UNCOMPRESSED => "",
    }
}

/// The names of the files under `dir` (sorted, at most 10,000 looked at) whose name holds
/// `ext` followed by nothing but a compression suffix: how a folder of `.csv.gz` files, or
/// of `.log` and rotated `.log.gz` files, is told from one of `.csv` files.
fn files_with(dir: &Path, ext: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            seen += 1;
            if seen > 10_000 {
                return out;
            }
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_ascii_lowercase();
            if let Some(i) = n.rfind(ext) {
                if ["", ".gz", ".zst", ".bz2", ".xz"].contains(&&n[i + ext.len()..]) {
                    out.push(n);
                }
            }
        }
    }
    out
}
