//! The replica layouts: canonical names and keys, their strict parsing, and
//! the limits each layout puts on positions.
//!
//! Two layouts exist (see `SPEC.md`, "Layouts"):
//!
//! ```text
//! Litestream 0.4 (default; the 0.4 betas):
//!   generations/<generation>/snapshots/<index:16>.snapshot.lz4
//!   generations/<generation>/wal/<index:16>/<offset:16>.wal.lz4
//! Litestream 0.3 (released 0.3.x; what 0.3 and 0.5 restore):
//!   generations/<generation>/snapshots/<index:8>.snapshot.lz4
//!   generations/<generation>/wal/<index:8>_<offset:8>.wal.lz4
//! ```
//!
//! `<n:k>` is exactly `k` lowercase hex digits. Keys are relative,
//! `/`-separated, and built only from validated parts, so they never escape
//! the root. Parsing accepts one layout's canonical names only: anything else
//! found in a store is junk that listings skip.
//!
//! [`Layout`] is the one place that knows names; a new layout is a new
//! variant here (and nothing outside this crate changes).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::types::{is_lower_hex, Generation, Pos};

/// The largest index or offset of any layout, and of [`Pos`]: 2^63-1.
pub const MAX_INDEX: u64 = i64::MAX as u64;
/// Top-level directory holding all generations.
pub const GENERATIONS_DIR: &str = "generations";
/// Directory (within a generation) holding snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Directory (within a generation) holding WAL segments.
pub const WAL_DIR: &str = "wal";
/// File-name suffix of a snapshot.
pub const SNAPSHOT_EXT: &str = ".snapshot.lz4";
/// File-name suffix of a WAL segment.
pub const WAL_SEGMENT_EXT: &str = ".wal.lz4";

/// A way of naming snapshots and WAL segments in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum Layout {
    /// Litestream 0.3.x: `wal/<index:8>_<offset:8>.wal.lz4`, flat, 8 hex digits.
    Litestream03,
    /// Litestream 0.4 betas (SPEC's default): `wal/<index:16>/<offset:16>.wal.lz4`.
    #[default]
    Litestream04,
}

/// How a layout stores the WAL segments of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalShape {
    /// One directory per index under `wal/`, one file per offset inside it.
    Nested,
    /// Every segment directly under `wal/`, named `<index>_<offset>`.
    Flat,
}

impl Layout {
    /// Every layout, the default first.
    pub const ALL: [Layout; 2] = [Layout::Litestream04, Layout::Litestream03];

    /// The name used in URLs (`?layout=`), flags and listings.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Litestream03 => "litestream-0.3",
            Layout::Litestream04 => "litestream-0.4",
        }
    }

    /// Hex digits of an index or offset in names.
    pub fn digits(self) -> usize {
        match self {
            Layout::Litestream03 => 8,
            Layout::Litestream04 => 16,
        }
    }

    /// The largest index this layout can name.
    pub fn max_index(self) -> u64 {
        match self {
            Layout::Litestream03 => 0x7fff_ffff,
            Layout::Litestream04 => MAX_INDEX,
        }
    }

    /// The largest offset this layout can name.
    pub fn max_offset(self) -> u64 {
        match self {
            Layout::Litestream03 => 0xffff_ffff,
            Layout::Litestream04 => MAX_INDEX,
        }
    }

    /// How WAL segments are arranged under `wal/`.
    pub fn wal_shape(self) -> WalShape {
        match self {
            Layout::Litestream03 => WalShape::Flat,
            Layout::Litestream04 => WalShape::Nested,
        }
    }

    /// Rejects an index this layout cannot name.
    pub fn check_index(self, index: u64) -> Result<u64> {
        self.check("index", index, self.max_index())
    }

    /// Rejects a position this layout cannot name.
    pub fn check_pos(self, pos: &Pos) -> Result<()> {
        self.check("index", pos.index, self.max_index())?;
        self.check("offset", pos.offset, self.max_offset())?;
        Ok(())
    }

    fn check(self, what: &str, value: u64, max: u64) -> Result<u64> {
        if value > max {
            return Err(Error::invalid(format!(
                "{what} {value:#x} above the maximum {max:#x} of the {} layout",
                self.name()
            )));
        }
        Ok(value)
    }

    /// `<index>` in this layout's width (unchecked).
    pub fn format_number(self, value: u64) -> String {
        let mut out = String::with_capacity(16);
        push_hex(&mut out, value, self.digits());
        out
    }

    /// Parses one index or offset name of this layout's width.
    fn parse_number(self, s: &str, max: u64) -> Option<u64> {
        parse_hex(s, self.digits()).filter(|v| *v <= max)
    }

    /// Key of a snapshot; checks the index.
    pub fn snapshot_key(self, generation: &Generation, index: u64) -> Result<String> {
        self.check_index(index)?;
        let mut out = generation_prefix(generation, SNAPSHOTS_DIR, 64);
        push_hex(&mut out, index, self.digits());
        out.push_str(SNAPSHOT_EXT);
        Ok(out)
    }

    /// Key of a WAL segment; checks index and offset.
    pub fn wal_segment_key(self, pos: &Pos) -> Result<String> {
        self.check_pos(pos)?;
        let mut out = generation_prefix(&pos.generation, WAL_DIR, 80);
        push_hex(&mut out, pos.index, self.digits());
        out.push(match self.wal_shape() {
            WalShape::Nested => '/',
            WalShape::Flat => '_',
        });
        push_hex(&mut out, pos.offset, self.digits());
        out.push_str(WAL_SEGMENT_EXT);
        Ok(out)
    }

    /// Keys of several WAL segments; checks all before returning any, so a
    /// bad position in a batch rejects the whole batch before any I/O.
    pub fn wal_segment_keys(self, positions: &[Pos]) -> Result<Vec<String>> {
        positions.iter().map(|p| self.wal_segment_key(p)).collect()
    }

    /// `generations/<g>/wal/<index>` of a nested layout; `None` for a flat one.
    pub fn wal_index_dir(self, generation: &Generation, index: u64) -> Result<Option<String>> {
        self.check_index(index)?;
        Ok(match self.wal_shape() {
            WalShape::Nested => Some(format!(
                "{}/{}",
                wal_dir(generation),
                self.format_number(index)
            )),
            WalShape::Flat => None,
        })
    }

    /// Parses a snapshot file name into its index.
    pub fn parse_snapshot_name(self, name: &str) -> Option<u64> {
        self.parse_number(name.strip_suffix(SNAPSHOT_EXT)?, self.max_index())
    }

    /// Parses a WAL index directory name (nested layouts only).
    pub fn parse_index_dir_name(self, name: &str) -> Option<u64> {
        match self.wal_shape() {
            WalShape::Nested => self.parse_number(name, self.max_index()),
            WalShape::Flat => None,
        }
    }

    /// Parses a WAL segment file name: the offset in a nested layout (the
    /// index comes from the directory), `(index, offset)` in a flat one.
    pub fn parse_segment_name(self, name: &str) -> Option<(Option<u64>, u64)> {
        let stem = name.strip_suffix(WAL_SEGMENT_EXT)?;
        match self.wal_shape() {
            WalShape::Nested => Some((None, self.parse_number(stem, self.max_offset())?)),
            WalShape::Flat => {
                let (index, offset) = stem.split_once('_')?;
                Some((
                    Some(self.parse_number(index, self.max_index())?),
                    self.parse_number(offset, self.max_offset())?,
                ))
            }
        }
    }

    /// Whether `name` is a snapshot or segment file name of this layout.
    pub fn is_object_name(self, name: &str) -> bool {
        self.parse_snapshot_name(name).is_some() || self.parse_segment_name(name).is_some()
    }

    /// Classifies a full key; `None` for anything non-canonical in this layout.
    ///
    /// ```
    /// use replica_core::layout::{Entry, Layout};
    /// let g = "0123456789abcdef";
    /// let e = Layout::Litestream03.parse_key(&format!("generations/{g}/wal/00000002_00001000.wal.lz4"));
    /// assert!(matches!(e, Some(Entry::WalSegment(p)) if p.index == 2 && p.offset == 0x1000));
    /// assert_eq!(Layout::Litestream04.parse_key(&format!("generations/{g}/snapshots/README")), None);
    /// ```
    pub fn parse_key(self, key: &str) -> Option<Entry> {
        let parts: Vec<&str> = key.split('/').collect();
        match (self.wal_shape(), parts.as_slice()) {
            (_, [GENERATIONS_DIR, g, SNAPSHOTS_DIR, file]) => Some(Entry::Snapshot {
                generation: Generation::new(g).ok()?,
                index: self.parse_snapshot_name(file)?,
            }),
            (WalShape::Nested, [GENERATIONS_DIR, g, WAL_DIR, index, file]) => {
                Some(Entry::WalSegment(Pos {
                    generation: Generation::new(g).ok()?,
                    index: self.parse_index_dir_name(index)?,
                    offset: self.parse_segment_name(file)?.1,
                }))
            }
            (WalShape::Flat, [GENERATIONS_DIR, g, WAL_DIR, file]) => {
                let (index, offset) = self.parse_segment_name(file)?;
                Some(Entry::WalSegment(Pos {
                    generation: Generation::new(g).ok()?,
                    index: index?,
                    offset,
                }))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = Error;

    /// Accepts `litestream-0.3` / `litestream-0.4` (also `0.3`, `0.4`).
    fn from_str(s: &str) -> Result<Self> {
        Layout::ALL
            .into_iter()
            .find(|l| s == l.name() || Some(s) == l.name().strip_prefix("litestream-"))
            .ok_or_else(|| {
                let known: Vec<&str> = Layout::ALL.iter().map(|l| l.name()).collect();
                Error::invalid(format!(
                    "unknown layout {s:?}; known layouts: {}",
                    known.join(", ")
                ))
            })
    }
}

/// Any layout a replica can be in: one of the generation [`Layout`]s, or
/// Litestream 0.5's LTX files in levels (see [`crate::ltx`]). What `?layout=`
/// and `--layout` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnyLayout {
    /// Generations of snapshots and WAL segments (Litestream 0.3, 0.4).
    Generations(Layout),
    /// LTX files in levels (Litestream 0.5): `litestream-0.5`.
    Ltx,
}

impl AnyLayout {
    /// Every layout, generation layouts first.
    pub const ALL: [AnyLayout; 3] = [
        AnyLayout::Generations(Layout::Litestream04),
        AnyLayout::Generations(Layout::Litestream03),
        AnyLayout::Ltx,
    ];

    /// The name used in URLs, flags and listings.
    pub fn name(self) -> &'static str {
        match self {
            AnyLayout::Generations(l) => l.name(),
            AnyLayout::Ltx => crate::ltx::LAYOUT_NAME,
        }
    }

    /// The generation layout, if this is one.
    pub fn generations(self) -> Option<Layout> {
        match self {
            AnyLayout::Generations(l) => Some(l),
            AnyLayout::Ltx => None,
        }
    }
}

impl From<Layout> for AnyLayout {
    fn from(layout: Layout) -> Self {
        AnyLayout::Generations(layout)
    }
}

impl fmt::Display for AnyLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AnyLayout {
    type Err = Error;

    /// Accepts `litestream-0.3`, `litestream-0.4`, `litestream-0.5` (also
    /// `0.3`, `0.4`, `0.5`).
    fn from_str(s: &str) -> Result<Self> {
        AnyLayout::ALL
            .into_iter()
            .find(|l| s == l.name() || Some(s) == l.name().strip_prefix("litestream-"))
            .ok_or_else(|| {
                let known: Vec<&str> = AnyLayout::ALL.iter().map(|l| l.name()).collect();
                Error::invalid(format!(
                    "unknown layout {s:?}; known layouts: {}",
                    known.join(", ")
                ))
            })
    }
}

/// What a full key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A snapshot.
    Snapshot {
        /// Its generation.
        generation: Generation,
        /// Its index.
        index: u64,
    },
    /// A WAL segment.
    WalSegment(Pos),
}

/// `generations/<g>/<dir>/` with room for a name.
fn generation_prefix(generation: &Generation, dir: &str, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    for part in [GENERATIONS_DIR, "/", generation.as_str(), "/", dir, "/"] {
        out.push_str(part);
    }
    out
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

/// Formats an index or offset as 16 lowercase hex digits (the text form of [`Pos`]).
pub fn format_index(value: u64) -> String {
    let mut out = String::with_capacity(16);
    push_hex(&mut out, value, 16);
    out
}

/// Appends the low `digits` hex digits of `value` (keys are built on hot paths: no `fmt`).
fn push_hex(out: &mut String, value: u64, digits: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..digits).rev() {
        out.push(DIGITS[((value >> (shift * 4)) & 0xf) as usize] as char);
    }
}

fn parse_hex(s: &str, digits: usize) -> Option<u64> {
    if s.len() != digits || !is_lower_hex(s) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Parses an index or offset as a person types it: 1 to 16 hex digits of
/// either case, with or without `0x` (what any listing prints, Litestream
/// 0.3's 8-digit names and our 16-digit ones alike), at most [`MAX_INDEX`].
pub fn parse_hex_arg(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16)
        .ok()
        .filter(|v| *v <= MAX_INDEX)
}

/// Parses exactly 16 lowercase hex digits with a value of at most [`MAX_INDEX`].
pub fn parse_hex16(s: &str) -> Option<u64> {
    parse_hex(s, 16).filter(|v| *v <= MAX_INDEX)
}

/// Rejects an index above 2^63-1 (every layout's outer limit).
pub fn check_index(index: u64) -> Result<u64> {
    Layout::Litestream04.check_index(index)
}

/// Rejects an offset above 2^63-1.
pub fn check_offset(offset: u64) -> Result<u64> {
    Layout::Litestream04.check("offset", offset, MAX_INDEX)
}

/// Checks every field of a position against the outer limit (2^63-1).
pub fn check_pos(pos: &Pos) -> Result<()> {
    Layout::Litestream04.check_pos(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Layout::{Litestream03 as L03, Litestream04 as L04};

    fn gen() -> Generation {
        Generation::new("0123456789abcdef").unwrap()
    }

    #[test]
    fn keys_follow_each_layout() {
        assert_eq!(
            L04.snapshot_key(&gen(), 1000).unwrap(),
            "generations/0123456789abcdef/snapshots/00000000000003e8.snapshot.lz4"
        );
        assert_eq!(
            L03.snapshot_key(&gen(), 1000).unwrap(),
            "generations/0123456789abcdef/snapshots/000003e8.snapshot.lz4"
        );
        let pos = Pos::new(gen(), 1, 0x1038).unwrap();
        assert_eq!(
            L04.wal_segment_key(&pos).unwrap(),
            "generations/0123456789abcdef/wal/0000000000000001/0000000000001038.wal.lz4"
        );
        assert_eq!(
            L03.wal_segment_key(&pos).unwrap(),
            "generations/0123456789abcdef/wal/00000001_00001038.wal.lz4"
        );
    }

    #[test]
    fn hex_formatting_matches_fmt() {
        for v in [0, 1, 0xa, 0x3e8, 0xdead_beef, MAX_INDEX, u64::MAX] {
            assert_eq!(format_index(v), format!("{v:016x}"));
        }
        for v in [0, 1, 0x3e8, 0x7fff_ffff, 0xffff_ffff] {
            assert_eq!(L03.format_number(v), format!("{v:08x}"));
        }
    }

    #[test]
    fn each_layout_rejects_what_it_cannot_name() {
        let g = gen();
        assert!(L04
            .snapshot_key(&g, 1 << 63)
            .unwrap_err()
            .is_invalid_argument());
        assert!(L03
            .snapshot_key(&g, 0x8000_0000)
            .unwrap_err()
            .is_invalid_argument());
        assert!(L03.snapshot_key(&g, 0x7fff_ffff).is_ok());
        let pos = |index, offset| Pos {
            generation: g.clone(),
            index,
            offset,
        };
        assert!(L03.wal_segment_key(&pos(0, 0xffff_ffff)).is_ok());
        let err = L03.wal_segment_key(&pos(0, 0x1_0000_0000)).unwrap_err();
        assert!(
            err.is_invalid_argument() && err.to_string().contains("litestream-0.3"),
            "{err}"
        );
        assert!(L04
            .wal_segment_key(&pos(0, u64::MAX))
            .unwrap_err()
            .is_invalid_argument());
        assert!(L03
            .wal_segment_keys(&[pos(0, 0), pos(1 << 40, 0)])
            .unwrap_err()
            .is_invalid_argument());
    }

    #[test]
    fn keys_parse_back_in_their_own_layout_only() {
        for layout in Layout::ALL {
            let other = Layout::ALL.into_iter().find(|l| *l != layout).unwrap();
            let pos = Pos::new(gen(), 3, 0x20).unwrap();
            let key = layout.wal_segment_key(&pos).unwrap();
            assert_eq!(layout.parse_key(&key), Some(Entry::WalSegment(pos)));
            assert_eq!(other.parse_key(&key), None, "{key}");
            let key = layout.snapshot_key(&gen(), 7).unwrap();
            assert_eq!(
                layout.parse_key(&key),
                Some(Entry::Snapshot {
                    generation: gen(),
                    index: 7
                })
            );
            assert_eq!(other.parse_key(&key), None, "{key}");
        }
    }

    #[test]
    fn junk_keys_do_not_parse() {
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
            assert_eq!(L04.parse_key(junk), None, "{junk:?}");
        }
        for junk in [
            "generations/0123456789abcdef/wal/00000003.wal.lz4",
            "generations/0123456789abcdef/wal/00000003_0000001.wal.lz4",
            "generations/0123456789abcdef/wal/00000003-00000010.wal.lz4",
            "generations/0123456789abcdef/wal/0000000A_00000010.wal.lz4",
            "generations/0123456789abcdef/wal/80000000_00000010.wal.lz4",
            "generations/0123456789abcdef/wal/00000003_00000010.wal.lz4.tmp",
            "generations/0123456789abcdef/wal/00000003/00000010.wal.lz4",
            "generations/0123456789abcdef/snapshots/80000000.snapshot.lz4",
            "generations/0123456789abcdef/snapshots/0000007.snapshot.lz4",
        ] {
            assert_eq!(L03.parse_key(junk), None, "{junk:?}");
        }
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
            assert_eq!(L04.parse_index_dir_name(junk), None, "{junk:?}");
            assert_eq!(
                L04.parse_snapshot_name(&format!("{junk}.snapshot.lz4")),
                None
            );
            assert_eq!(L04.parse_segment_name(&format!("{junk}.wal.lz4")), None);
        }
        assert_eq!(L04.parse_index_dir_name("00000000000003e8"), Some(1000));
        assert_eq!(L03.parse_index_dir_name("000003e8"), None);
        assert_eq!(
            L03.parse_segment_name("000003e8_ffffffff.wal.lz4"),
            Some((Some(1000), 0xffff_ffff))
        );
        assert!(L03.is_object_name("000003e8.snapshot.lz4"));
        assert!(!L03.is_object_name("00000000000003e8.snapshot.lz4"));
    }

    #[test]
    fn layout_names_round_trip_and_unknown_names_are_clear_errors() {
        for layout in Layout::ALL {
            assert_eq!(layout.name().parse::<Layout>().unwrap(), layout);
        }
        assert_eq!("0.3".parse::<Layout>().unwrap(), L03);
        let err = "litestream-0.5".parse::<Layout>().unwrap_err();
        assert!(
            err.is_invalid_argument() && err.to_string().contains("litestream-0.3"),
            "{err}"
        );
    }
}
