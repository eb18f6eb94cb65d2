//! Value types: [`Generation`], [`Pos`], [`SnapshotInfo`], [`WalSegmentInfo`].

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::layout::{check_index, check_offset, format_index, parse_hex16};

/// Length of a generation name in hex digits.
pub const GENERATION_LEN: usize = 16;

/// The name of a generation: exactly 16 lowercase hex digits.
///
/// A `Generation` can only be built from a valid name, so a value of this type
/// can never make a path that escapes the replica root.
///
/// ```
/// use replica_core::Generation;
/// let g: Generation = "0123456789abcdef".parse().unwrap();
/// assert_eq!(g.as_str(), "0123456789abcdef");
/// assert!("../etc".parse::<Generation>().unwrap_err().is_invalid_argument());
/// ```
// Stored inline: cloning a generation (once per listed segment) never allocates.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation([u8; GENERATION_LEN]);

impl Generation {
    /// Validates `name` and wraps it.
    ///
    /// An empty name is "generation required"; anything but 16 lowercase hex
    /// digits is rejected with a message that quotes (a bounded prefix of) it.
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(Error::invalid("generation required"));
        }
        if name.len() != GENERATION_LEN || !is_lower_hex(name) {
            let shown: String = name.chars().take(40).collect();
            return Err(Error::invalid(format!(
                "invalid generation {shown:?}: must be exactly 16 lowercase hex digits"
            )));
        }
        let mut bytes = [0u8; GENERATION_LEN];
        bytes.copy_from_slice(name.as_bytes());
        Ok(Generation(bytes))
    }

    /// A fresh random generation name.
    pub fn random() -> Self {
        Generation::new(crate::layout::format_index(rand::random::<u64>())).expect("16 hex digits")
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ever built from 16 ASCII hex digits, so always valid UTF-8.
        std::str::from_utf8(&self.0).expect("generation names are ASCII")
    }
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Generation({})", self.as_str())
    }
}

impl FromStr for Generation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Generation::new(s)
    }
}

impl AsRef<str> for Generation {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A position in the WAL of a generation: (generation, index, offset).
///
/// Positions of one generation are ordered by index, then offset. Positions of
/// different generations have no order: [`PartialOrd`] gives `None` and
/// [`Pos::try_cmp`] an [`Error::GenerationMismatch`].
///
/// The text form is `<generation>/<index>:<offset>`, both numbers as 16 hex digits:
///
/// ```
/// use replica_core::{Generation, Pos};
/// let g: Generation = "0123456789abcdef".parse().unwrap();
/// let pos = Pos::new(g, 1000, 4152).unwrap();
/// assert_eq!(pos.to_string(), "0123456789abcdef/00000000000003e8:0000000000001038");
/// assert_eq!(pos.to_string().parse::<Pos>().unwrap(), pos);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pos {
    /// The generation.
    pub generation: Generation,
    /// WAL index (0 ..= 2^63-1).
    pub index: u64,
    /// Byte offset within the WAL file (0 ..= 2^63-1).
    pub offset: u64,
}

impl Pos {
    /// A position, with index and offset checked against 2^63-1.
    pub fn new(generation: Generation, index: u64, offset: u64) -> Result<Self> {
        check_index(index)?;
        check_offset(offset)?;
        Ok(Pos {
            generation,
            index,
            offset,
        })
    }

    /// Orders two positions of the same generation; errors across generations.
    pub fn try_cmp(&self, other: &Pos) -> Result<Ordering> {
        self.partial_cmp(other)
            .ok_or_else(|| Error::GenerationMismatch {
                left: self.generation.to_string(),
                right: other.generation.to_string(),
            })
    }
}

impl PartialOrd for Pos {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        if self.generation != other.generation {
            return None;
        }
        Some((self.index, self.offset).cmp(&(other.index, other.offset)))
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}:{}",
            self.generation,
            format_index(self.index),
            format_index(self.offset)
        )
    }
}

impl fmt::Debug for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pos({self})")
    }
}

impl FromStr for Pos {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            let shown: String = s.chars().take(80).collect();
            Error::invalid(format!(
                "invalid position {shown:?}: expected <generation>/<16 hex index>:<16 hex offset>"
            ))
        };
        let (generation, rest) = s.split_once('/').ok_or_else(bad)?;
        let (index, offset) = rest.split_once(':').ok_or_else(bad)?;
        let generation = Generation::new(generation)?;
        let index = parse_hex16(index).ok_or_else(bad)?;
        let offset = parse_hex16(offset).ok_or_else(bad)?;
        Pos::new(generation, index, offset)
    }
}

/// What the store holds about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The generation it belongs to.
    pub generation: Generation,
    /// The WAL index the snapshot was taken at.
    pub index: u64,
    /// Stored (compressed) size in bytes.
    pub size: u64,
    /// When the store last wrote it (UTC).
    pub created_at: DateTime<Utc>,
}

impl SnapshotInfo {
    /// The info of a snapshot stored at `index` of `generation`.
    pub fn new(generation: &Generation, index: u64, size: u64, created_at: DateTime<Utc>) -> Self {
        SnapshotInfo {
            generation: generation.clone(),
            index,
            size,
            created_at,
        }
    }
}

/// What the store holds about one WAL segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSegmentInfo {
    /// The generation it belongs to.
    pub generation: Generation,
    /// WAL index.
    pub index: u64,
    /// Offset within the WAL file.
    pub offset: u64,
    /// Stored (compressed) size in bytes.
    pub size: u64,
    /// When the store last wrote it (UTC).
    pub created_at: DateTime<Utc>,
}

impl WalSegmentInfo {
    /// The info of a segment stored at `pos`.
    pub fn new(pos: &Pos, size: u64, created_at: DateTime<Utc>) -> Self {
        WalSegmentInfo {
            generation: pos.generation.clone(),
            index: pos.index,
            offset: pos.offset,
            size,
            created_at,
        }
    }

    /// The segment's position.
    pub fn pos(&self) -> Pos {
        Pos {
            generation: self.generation.clone(),
            index: self.index,
            offset: self.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Generation {
        Generation::new(s).unwrap()
    }

    #[test]
    fn generation_accepts_exactly_sixteen_lowercase_hex_digits() {
        assert_eq!(g("0123456789abcdef").as_str(), "0123456789abcdef");
        assert_eq!(g("0000000000000000").as_str(), "0000000000000000");
    }

    #[test]
    fn empty_generation_is_generation_required() {
        let err = Generation::new("").unwrap_err();
        assert!(err.is_invalid_argument());
        assert_eq!(err.to_string(), "invalid argument: generation required");
    }

    #[test]
    fn generation_rejects_every_other_shape() {
        for bad in [
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "../x",
            "../../etc/passwd",
            "/etc/passwd_____",
            "0123456789abcde\0",
            "0123456789abcdeg",
            " 123456789abcdef",
            "0123456789abcdé",
            &"a".repeat(4096),
        ] {
            let err = Generation::new(bad).unwrap_err();
            assert!(err.is_invalid_argument(), "{bad:?} gave {err}");
            assert!(err.to_string().contains("16 lowercase hex"), "{err}");
        }
    }

    #[test]
    fn random_generations_are_valid_and_differ() {
        let a = Generation::random();
        let b = Generation::random();
        assert_eq!(Generation::new(a.as_str()).unwrap(), a);
        assert_ne!(a, b);
    }

    #[test]
    fn positions_order_by_index_then_offset() {
        let gen = g("0123456789abcdef");
        let p = |i, o| Pos::new(gen.clone(), i, o).unwrap();
        assert!(p(1, 100) < p(2, 0));
        assert!(p(2, 0) < p(2, 1));
        assert_eq!(p(3, 3).try_cmp(&p(3, 3)).unwrap(), Ordering::Equal);
    }

    #[test]
    fn positions_of_different_generations_do_not_compare() {
        let a = Pos::new(g("0000000000000001"), 1, 0).unwrap();
        let b = Pos::new(g("0000000000000002"), 0, 0).unwrap();
        assert_eq!(a.partial_cmp(&b), None);
        assert!(
            a.lt(&b) == b.gt(&a) && !a.lt(&b) && !a.gt(&b),
            "no order across generations"
        );
        assert!(matches!(
            a.try_cmp(&b),
            Err(Error::GenerationMismatch { .. })
        ));
    }

    #[test]
    fn pos_text_form_round_trips() {
        let pos = Pos::new(g("00000000000000ff"), 1000, 0).unwrap();
        let text = pos.to_string();
        assert_eq!(text, "00000000000000ff/00000000000003e8:0000000000000000");
        assert_eq!(text.parse::<Pos>().unwrap(), pos);
    }

    #[test]
    fn pos_parse_rejects_malformed_text() {
        for bad in [
            "",
            "00000000000000ff",
            "00000000000000ff/00000000000003e8",
            "00000000000000ff/3e8:0",
            "00000000000000ff/00000000000003E8:0000000000000000",
            "00000000000000ff/8000000000000000:0000000000000000",
            "00000000000000ff/0000000000000000:8000000000000000",
            "00000000000000FF/0000000000000000:0000000000000000",
            "00000000000000ff/0000000000000000:0000000000000000:",
            "../../../../etc/0000000000000000:0000000000000000",
        ] {
            let err = bad.parse::<Pos>().unwrap_err();
            assert!(err.is_invalid_argument(), "{bad:?} gave {err}");
        }
    }

    #[test]
    fn pos_new_rejects_values_above_i64_max() {
        let gen = g("0123456789abcdef");
        assert!(Pos::new(gen.clone(), i64::MAX as u64, i64::MAX as u64).is_ok());
        assert!(Pos::new(gen.clone(), 1 << 63, 0)
            .unwrap_err()
            .is_invalid_argument());
        assert!(Pos::new(gen, 0, u64::MAX)
            .unwrap_err()
            .is_invalid_argument());
    }
}
