//! File names: `<min TXID>-<max TXID>.ltx`, each 16 lowercase hex digits.

use crate::header::TxId;

/// The name of the file holding `min..=max`.
pub fn file_name(min: TxId, max: TxId) -> String {
    format!("{min}-{max}.ltx")
}

/// The TXID range of a canonical name; anything else (upper case, other
/// lengths, min above max, zero, a temporary file's name) is `None`.
pub fn parse_file_name(name: &str) -> Option<(TxId, TxId)> {
    let stem = name.strip_suffix(".ltx")?;
    let (min, max) = stem.split_once('-')?;
    let hex = |s: &str| {
        (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    let (min, max) = (hex(min)?, hex(max)?);
    (min >= 1 && min <= max).then_some((TxId(min), TxId(max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_junk_is_refused() {
        let name = file_name(TxId(1), TxId(0x2a));
        assert_eq!(name, "0000000000000001-000000000000002a.ltx");
        assert_eq!(parse_file_name(&name), Some((TxId(1), TxId(0x2a))));
        for junk in [
            "0000000000000001-000000000000002A.ltx",
            "0000000000000001-00000000000002a.ltx",
            "0000000000000002-0000000000000001.ltx",
            "0000000000000000-0000000000000001.ltx",
            "0000000000000001-000000000000002a.ltx.tmp",
            ".0000000000000001-000000000000002a.ltx.123.tmp",
            "0000000000000001_000000000000002a.ltx",
            "+000000000000001-000000000000002a.ltx",
            "README",
        ] {
            assert_eq!(parse_file_name(junk), None, "{junk}");
        }
    }
}
