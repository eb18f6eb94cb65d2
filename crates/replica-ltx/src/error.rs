//! The error of reading or writing an LTX file.

use std::io;

/// Result alias of this crate.
pub type Result<T, E = LtxError> = std::result::Result<T, E>;

/// What went wrong, and at which byte of the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LtxError {
    /// The bytes are not a valid LTX file (bad field, checksum mismatch,
    /// pages out of order, ...).
    #[error("invalid LTX file at byte {offset}: {message}")]
    Invalid {
        /// Byte offset in the file where the defect was found.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The file ended before its trailer.
    #[error("LTX file truncated at byte {offset}: {what}")]
    Truncated {
        /// Bytes read before the end.
        offset: u64,
        /// What was being read.
        what: &'static str,
    },
    /// The reader or writer underneath failed.
    #[error("I/O error at byte {offset} of an LTX file: {source}")]
    Io {
        /// Bytes read or written before the failure.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The caller asked for something the format cannot hold (encoder only).
    #[error("cannot encode LTX: {0}")]
    Usage(String),
}

impl LtxError {
    pub(crate) fn invalid(offset: u64, message: impl Into<String>) -> Self {
        LtxError::Invalid {
            offset,
            message: message.into(),
        }
    }

    /// The byte offset the error refers to (0 for usage errors).
    pub fn offset(&self) -> u64 {
        match self {
            LtxError::Invalid { offset, .. }
            | LtxError::Truncated { offset, .. }
            | LtxError::Io { offset, .. } => *offset,
            LtxError::Usage(_) => 0,
        }
    }

    /// True when the bytes themselves are bad (not an I/O failure or misuse).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, LtxError::Invalid { .. } | LtxError::Truncated { .. })
    }
}
