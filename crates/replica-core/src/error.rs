//! The one error type of replica.

use std::sync::Arc;

use crate::Pos;

/// Result alias used throughout replica.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a replica client or helper can report.
///
/// Callers match on variants; the messages are for humans. The type is `Clone`
/// so that a cursor can report its first (sticky) error more than once.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The requested snapshot or WAL segment does not exist.
    #[error("not found: {path}")]
    NotFound {
        /// The layout path (relative to the replica root) that was looked up.
        path: String,
    },

    /// An argument was rejected before any I/O took place.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong, e.g. "generation required".
        message: String,
    },

    /// A WAL segment appended to a cursor broke the append-validation rules.
    #[error("append rejected: {0}")]
    Append(#[from] AppendError),

    /// Two positions of different generations were compared.
    #[error("cannot compare positions of generations {left} and {right}")]
    GenerationMismatch {
        /// Generation of the left-hand position.
        left: String,
        /// Generation of the right-hand position.
        right: String,
    },

    /// A restore found a hole in the WAL: the named position is missing.
    #[error("WAL gap: expected {expected}, {found}")]
    Gap {
        /// The position that should exist next.
        expected: Pos,
        /// What was found instead.
        found: String,
    },

    /// An LTX replica lacks the files for TXIDs `first..=last`: no chain of
    /// files reaches the target.
    #[error("TXIDs {first:016x} to {last:016x} are missing: {detail}")]
    TxidHole {
        /// First missing TXID.
        first: u64,
        /// Last missing TXID.
        last: u64,
        /// What was found around the hole.
        detail: String,
    },
    /// Stored bytes could not be decoded (e.g. a corrupt or truncated LZ4 frame).
    #[error("corrupt data in {path}: {message}")]
    Corrupt {
        /// What was being decoded.
        path: String,
        /// What the decoder reported.
        message: String,
    },

    /// A local I/O operation failed.
    #[error("I/O error {context}: {source}")]
    Io {
        /// What was being done, including the path.
        context: String,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The backend refused the request: the credentials lack permission.
    #[error("{backend} backend: permission denied: {message}")]
    PermissionDenied {
        /// [`ReplicaClient::kind`](crate::ReplicaClient::kind) of the backend.
        backend: &'static str,
        /// Human-readable description.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },

    /// The backend could not authenticate the request (missing or wrong credentials).
    #[error("{backend} backend: not authenticated: {message}")]
    Unauthenticated {
        /// [`ReplicaClient::kind`](crate::ReplicaClient::kind) of the backend.
        backend: &'static str,
        /// Human-readable description.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },

    /// A precondition of the request failed (the object changed meanwhile).
    #[error("{backend} backend: precondition failed: {message}")]
    Precondition {
        /// [`ReplicaClient::kind`](crate::ReplicaClient::kind) of the backend.
        backend: &'static str,
        /// Human-readable description.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },

    /// A backend-specific failure (network, service, ...).
    #[error("{backend} backend: {message}")]
    Backend {
        /// [`ReplicaClient::kind`](crate::ReplicaClient::kind) of the failing backend.
        backend: &'static str,
        /// Human-readable description.
        message: String,
        /// The backend's own error, when there is one.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// A [`Error::InvalidArgument`] with the given message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            message: message.into(),
        }
    }

    /// A [`Error::NotFound`] for the given layout path.
    pub fn not_found(path: impl Into<String>) -> Self {
        Error::NotFound { path: path.into() }
    }

    /// An [`Error::Io`] with context (usually "doing X on PATH").
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The error with `object` named as what was being decoded, if it is an
    /// [`Error::Corrupt`] from a decoder that did not know the object's name.
    pub fn naming(self, object: &str) -> Self {
        match self {
            Error::Corrupt { path, message } if path == crate::lz4::UNNAMED_FRAME => {
                Error::Corrupt {
                    path: object.to_owned(),
                    message,
                }
            }
            other => other,
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// True for [`Error::InvalidArgument`].
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Error::InvalidArgument { .. })
    }

    /// Whether trying again may succeed: backend failures (network,
    /// service) and local I/O errors that come and go (timeouts, resets,
    /// interruptions, a stream cut short, errors of unknown kind). A full
    /// disk, a missing permission, a read-only file system, a file-size
    /// limit, a missing or wrong path, and every decoding, layout or
    /// argument error are permanent: retrying them only repeats the work.
    /// The one classification every retry loop of replica uses.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend { .. } => true,
            Error::Io { source, .. } => io_is_transient(source),
            _ => false,
        }
    }
}

/// [`Error::is_transient`] for an I/O error.
pub fn io_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    !matches!(
        e.kind(),
        PermissionDenied
            | NotFound
            | AlreadyExists
            | InvalidInput
            | InvalidData
            | InvalidFilename
            | Unsupported
            | StorageFull
            | QuotaExceeded
            | FileTooLarge
            | ReadOnlyFilesystem
            | NotADirectory
            | IsADirectory
            | DirectoryNotEmpty
            | CrossesDevices
            | TooManyLinks
            | ExecutableFileBusy
            | OutOfMemory
    )
}

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Error::io("in stream", source)
    }
}

/// Why an appended WAL segment was rejected by a cursor.
///
/// Each message names both positions involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The segment belongs to another generation than the cursor.
    #[error("generation mismatch: cursor is on {cursor}, appended {appended}")]
    GenerationMismatch {
        /// The cursor's generation.
        cursor: String,
        /// The appended segment's position.
        appended: Pos,
    },
    /// The index is below the highest index the cursor knows.
    #[error("appended index {appended} below max index {max}")]
    BelowMaxIndex {
        /// The appended position.
        appended: Pos,
        /// The cursor's max index (16 hex digits).
        max: String,
    },
    /// The index leaves out the next index.
    #[error("appended index {appended} skips index {skipped}")]
    SkipsIndex {
        /// The appended position.
        appended: Pos,
        /// The index that would be skipped (16 hex digits).
        skipped: String,
    },
    /// The offset is below the last buffered offset of the same index.
    #[error("appended offset {appended} before last offset {last}")]
    BeforeLastOffset {
        /// The appended position.
        appended: Pos,
        /// The last buffered position.
        last: Pos,
    },
    /// The offset equals the last buffered offset.
    #[error("duplicate offset {appended} appended (last {last})")]
    DuplicateOffset {
        /// The appended position.
        appended: Pos,
        /// The last buffered position.
        last: Pos,
    },
    /// The cursor was closed.
    #[error("cursor closed, cannot append {appended}")]
    Closed {
        /// The appended position.
        appended: Pos,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error as IoError, ErrorKind};

    #[test]
    fn only_errors_that_come_and_go_are_transient() {
        let io = |kind: ErrorKind| Error::io("writing x", IoError::from(kind));
        for kind in [
            ErrorKind::TimedOut,
            ErrorKind::ConnectionReset,
            ErrorKind::Interrupted,
            ErrorKind::UnexpectedEof,
            ErrorKind::Other,
        ] {
            assert!(io(kind).is_transient(), "{kind:?}");
        }
        for kind in [
            ErrorKind::PermissionDenied,
            ErrorKind::StorageFull,
            ErrorKind::QuotaExceeded,
            ErrorKind::FileTooLarge,
            ErrorKind::ReadOnlyFilesystem,
            ErrorKind::NotFound,
        ] {
            assert!(!io(kind).is_transient(), "{kind:?}");
        }
        // The kinds the OS reports for a full disk and a missing permission.
        assert!(
            !Error::io("w", IoError::from_raw_os_error(28)).is_transient(),
            "ENOSPC"
        );
        assert!(
            !Error::io("w", IoError::from_raw_os_error(13)).is_transient(),
            "EACCES"
        );
        assert!(
            !Error::io("w", IoError::from_raw_os_error(27)).is_transient(),
            "EFBIG"
        );
        let backend = Error::Backend {
            backend: "s3",
            message: "connection refused".into(),
            source: None,
        };
        assert!(backend.is_transient());
        assert!(!Error::not_found("x").is_transient());
        assert!(!Error::Corrupt {
            path: "x".into(),
            message: "y".into()
        }
        .is_transient());
    }
}
