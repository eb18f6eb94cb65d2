//! Canonical names and paths of the replica layout.
//!
//! ```text
//! generations/<generation>/snapshots/<index>.snapshot.lz4
//! generations/<generation>/wal/<index>/<offset>.wal.lz4
//! ```
//!
//! `<index>` and `<offset>` are exactly 16 lowercase hex digits. Paths are
//! relative, `/`-separated, and built only from validated parts, so they never
//! escape the root. Parsing accepts canonical names only: anything else found
//! in a store is junk that listings skip.

use crate::error::{Error, Result};
use crate::types::{is_lower_hex, Generation, Pos};

/// The largest index or offset: 2^63-1.
pub const MAX_INDEX: u64 = i64::MAX as u64;
/// Top-level directory holding all generations.
pub const GENERATIONS_DIR: &str = "generations";
/// Directory (within a generation) holding snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Directory (within a generation) holding WAL index directories.
pub const WAL_DIR: &str = "wal";
/// File-name suffix of a snapshot.
pub const SNAPSHOT_EXT: &str = ".snapshot.lz4";
/// File-name suffix of a WAL segment.
pub const WAL_SEGMENT_EXT: &str = ".wal.lz4";

/// Formats an index or offset as 16 lowercase hex digits.
pub fn format_index(value: u64) -> String {
    let mut out = String::with_capacity(16);
    push_hex16(&mut out, value);
    out
}

/// Appends 16 lowercase hex digits (paths are built on hot paths: no `fmt`).
fn push_hex16(out: &mut String, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[((value >> (shift * 4)) & 0xf) as usize] as char);
    }
}

/// Parses exactly 16 lowercase hex digits with a value of at most [`MAX_INDEX`].
pub fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !is_lower_hex(s) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().filter(|v| *v <= MAX_INDEX)
}

/// Rejects an index above 2^63-1.
pub fn check_index(index: u64) -> Result<u64> {
    check_range("index", index)
}

/// Rejects an offset above 2^63-1.
pub fn check_offset(offset: u64) -> Result<u64> {
    check_range("offset", offset)
}

fn check_range(what: &str, value: u64) -> Result<u64> {
    if value > MAX_INDEX {
        return Err(Error::invalid(format!(
            "{what} {value:#x} above maximum {MAX_INDEX:#x}"
        )));
    }
    Ok(value)
}

/// Checks every field of a position (the generation is valid by type).
pub fn check_pos(pos: &Pos) -> Result<()> {
    check_index(pos.index)?;
    check_offset(pos.offset)?;
    Ok(())
}

/// `generations/<g>`
pub fn generation_dir(generation: &Generation) -> String {
    format!("{GENERATIONS_DIR}/{generation}")
}

/// `generations/<g>/snapshots`
pub fn snapshots_dir(generation: &Generation) -> String {
    format!("{GENERATIONS_DIR}/{generation}/{SNAPSHOTS_DIR}")
}

/// `generations/<g>/wal`
pub fn wal_dir(generation: &Generation) -> String {
    format!("{GENERATIONS_DIR}/{generation}/{WAL_DIR}")
}

/// `generations/<g>/wal/<index>`; checks the index.
pub fn wal_index_dir(generation: &Generation, index: u64) -> Result<String> {
    check_index(index)?;
    Ok(format!("{}/{}", wal_dir(generation), format_index(index)))
}

/// File name of a snapshot: `<index>.snapshot.lz4`; checks the index.
pub fn snapshot_file_name(index: u64) -> Result<String> {
    check_index(index)?;
    Ok(format!("{}{SNAPSHOT_EXT}", format_index(index)))
}

/// File name of a WAL segment: `<offset>.wal.lz4`; checks the offset.
pub fn wal_segment_file_name(offset: u64) -> Result<String> {
    check_offset(offset)?;
    Ok(format!("{}{WAL_SEGMENT_EXT}", format_index(offset)))
}

/// Full path of a snapshot; checks the index.
pub fn snapshot_path(generation: &Generation, index: u64) -> Result<String> {
    check_index(index)?;
    let mut out = String::with_capacity(64);
    for part in [
        GENERATIONS_DIR,
        "/",
        generation.as_str(),
        "/",
        SNAPSHOTS_DIR,
        "/",
    ] {
        out.push_str(part);
    }
    push_hex16(&mut out, index);
    out.push_str(SNAPSHOT_EXT);
    Ok(out)
}

/// Full path of a WAL segment; checks index and offset.
pub fn wal_segment_path(pos: &Pos) -> Result<String> {
    check_pos(pos)?;
    let mut out = String::with_capacity(80);
    for part in [
        GENERATIONS_DIR,
        "/",
        pos.generation.as_str(),
        "/",
        WAL_DIR,
        "/",
    ] {
        out.push_str(part);
    }
    push_hex16(&mut out, pos.index);
    out.push('/');
    push_hex16(&mut out, pos.offset);
    out.push_str(WAL_SEGMENT_EXT);
    Ok(out)
}

/// Full paths of several WAL segments; checks all before returning any, so a
/// bad position in a batch rejects the whole batch before any I/O.
pub fn wal_segment_paths(positions: &[Pos]) -> Result<Vec<String>> {
    positions.iter().map(wal_segment_path).collect()
}

/// Parses a generation directory name; `None` for anything non-canonical.
pub fn parse_generation_name(name: &str) -> Option<Generation> {
    Generation::new(name).ok()
}

/// Parses a WAL index directory name; `None` for anything non-canonical.
pub fn parse_index_name(name: &str) -> Option<u64> {
    parse_hex16(name)
}

/// Parses a snapshot file name into its index; `None` for anything non-canonical.
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    parse_hex16(name.strip_suffix(SNAPSHOT_EXT)?)
}

/// Parses a WAL segment file name into its offset; `None` for anything non-canonical.
pub fn parse_wal_segment_file_name(name: &str) -> Option<u64> {
    parse_hex16(name.strip_suffix(WAL_SEGMENT_EXT)?)
}

/// What a full layout path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `generations/<g>/snapshots/<index>.snapshot.lz4`
    Snapshot {
        /// Its generation.
        generation: Generation,
        /// Its index.
        index: u64,
    },
    /// `generations/<g>/wal/<index>/<offset>.wal.lz4`
    WalSegment(Pos),
}

/// Classifies a full `/`-separated layout path; `None` for anything non-canonical.
///
/// ```
/// use replica_core::layout::{parse_path, Entry};
/// let e = parse_path("generations/0123456789abcdef/snapshots/0000000000000001.snapshot.lz4");
/// assert!(matches!(e, Some(Entry::Snapshot { index: 1, .. })));
/// assert_eq!(parse_path("generations/0123456789abcdef/snapshots/README"), None);
/// ```
pub fn parse_path(path: &str) -> Option<Entry> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [GENERATIONS_DIR, g, SNAPSHOTS_DIR, file] => Some(Entry::Snapshot {
            generation: parse_generation_name(g)?,
            index: parse_snapshot_file_name(file)?,
        }),
        [GENERATIONS_DIR, g, WAL_DIR, index, file] => Some(Entry::WalSegment(Pos {
            generation: parse_generation_name(g)?,
            index: parse_index_name(index)?,
            offset: parse_wal_segment_file_name(file)?,
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen() -> Generation {
        Generation::new("0123456789abcdef").unwrap()
    }

    #[test]
    fn paths_follow_the_spec_layout() {
        assert_eq!(
            snapshot_path(&gen(), 1000).unwrap(),
            "generations/0123456789abcdef/snapshots/00000000000003e8.snapshot.lz4"
        );
        let pos = Pos::new(gen(), 1, 0x1038).unwrap();
        assert_eq!(
            wal_segment_path(&pos).unwrap(),
            "generations/0123456789abcdef/wal/0000000000000001/0000000000001038.wal.lz4"
        );
    }

    #[test]
    fn hex_formatting_matches_fmt() {
        for v in [0, 1, 0xa, 0x3e8, 0xdead_beef, MAX_INDEX, u64::MAX] {
            assert_eq!(format_index(v), format!("{v:016x}"));
        }
    }

    #[test]
    fn paths_reject_indexes_above_i64_max() {
        assert!(snapshot_path(&gen(), 1 << 63)
            .unwrap_err()
            .is_invalid_argument());
        let pos = Pos {
            generation: gen(),
            index: 0,
            offset: u64::MAX,
        };
        assert!(wal_segment_path(&pos).unwrap_err().is_invalid_argument());
    }

    #[test]
    fn full_paths_parse_back_and_junk_does_not() {
        let pos = Pos::new(gen(), 3, 0x20).unwrap();
        assert_eq!(
            parse_path(&wal_segment_path(&pos).unwrap()),
            Some(Entry::WalSegment(pos))
        );
        assert_eq!(
            parse_path(&snapshot_path(&gen(), 7).unwrap()),
            Some(Entry::Snapshot {
                generation: gen(),
                index: 7
            })
        );
        for junk in [
            "generations/0123456789abcdef/snapshots/0000000000000007.snapshot.lz4/x",
            "generations/0123456789abcdef/snapshots",
            "generations/0123456789ABCDEF/snapshots/0000000000000007.snapshot.lz4",
            "generations/0123456789abcdef/wal/0000000000000003.wal.lz4",
            "generations/0123456789abcdef/wal/3/0000000000000003.wal.lz4",
            "/generations/0123456789abcdef/snapshots/0000000000000007.snapshot.lz4",
            "generations//snapshots/0000000000000007.snapshot.lz4",
            "README",
            "",
        ] {
            assert_eq!(parse_path(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn canonical_names_parse_back() {
        assert_eq!(parse_index_name("00000000000003e8"), Some(1000));
        assert_eq!(parse_index_name("7fffffffffffffff"), Some(MAX_INDEX));
        assert_eq!(
            parse_snapshot_file_name("00000000000003e8.snapshot.lz4"),
            Some(1000)
        );
        assert_eq!(
            parse_wal_segment_file_name("0000000000000000.wal.lz4"),
            Some(0)
        );
    }

    #[test]
    fn non_canonical_names_are_not_parsed() {
        for junk in [
            "",
            "1",
            "README",
            "00000000000003E8",
            "00000000000003e",
            "000000000000003e80",
            "8000000000000000",
            "ffffffffffffffff",
            "../0000000000000",
            "+000000000000003",
            "-000000000000003",
            " 00000000000003e",
        ] {
            assert_eq!(parse_index_name(junk), None, "{junk:?}");
            assert_eq!(
                parse_snapshot_file_name(&format!("{junk}.snapshot.lz4")),
                None,
                "{junk:?}"
            );
            assert_eq!(
                parse_wal_segment_file_name(&format!("{junk}.wal.lz4")),
                None,
                "{junk:?}"
            );
        }
        for junk in [
            "00000000000003e8.snapshot.lz4.tmp",
            "00000000000003e8.snapshot",
            "00000000000003e8.wal.lz4",
            ".00000000000003e8.snapshot.lz4",
        ] {
            assert_eq!(parse_snapshot_file_name(junk), None, "{junk:?}");
        }
        assert_eq!(
            parse_wal_segment_file_name("00000000000003e8.snapshot.lz4"),
            None
        );
        assert_eq!(parse_generation_name("0123456789ABCDEF"), None);
        assert_eq!(parse_generation_name("0123456789abcdef"), Some(gen()));
    }
}
