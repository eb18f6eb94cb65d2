//! Decoding a stored LTX file from a [`ByteStream`], on a blocking thread.

use futures::TryStreamExt;
use replica_ltx::{Decoder, Header, LtxError, Trailer, HEADER_SIZE};

use crate::client::ByteStream;
use crate::error::{Error, Result};

/// What decoding a whole file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Its header.
    pub header: Header,
    /// Its trailer (the file checksum verified).
    pub trailer: Trailer,
    /// Pages it holds.
    pub pages: u64,
}

pub(crate) fn ltx_error(e: LtxError, key: &str) -> Error {
    match e {
        LtxError::Io { source, .. } => {
            match source.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
                Some(inner) => inner.clone(),
                None => Error::io(format!("reading {key}"), source),
            }
        }
        other => Error::Corrupt {
            path: key.to_owned(),
            message: other.to_string(),
        },
    }
}

/// Parses the first bytes of a file as an LTX header; `key` names it in errors.
pub fn read_header(bytes: &[u8], key: &str) -> Result<Header> {
    let Some(head) = bytes.get(..HEADER_SIZE) else {
        return Err(Error::Corrupt {
            path: key.to_owned(),
            message: format!(
                "LTX file truncated at byte {}: header (100 bytes)",
                bytes.len()
            ),
        });
    };
    Header::from_bytes(head.try_into().expect("100 bytes")).map_err(|e| ltx_error(e, key))
}

/// Decodes a whole stored file — every check of [`Decoder`], the file
/// checksum included — handing each page to `on_page` as it is read, and
/// `check_header` the header first (to refuse a file before its pages).
/// Runs on a blocking thread fed from `stream`; memory is one page plus read
/// buffers. An error of the stream itself is returned unchanged (so
/// transient backend errors stay transient); bad bytes are
/// [`Error::Corrupt`] naming `key` and the byte offset. Pages handed over are
/// only proven good once this returns `Ok`.
pub async fn decode_file<H, F>(
    stream: ByteStream,
    key: &str,
    check_header: H,
    mut on_page: F,
) -> Result<Decoded>
where
    H: FnOnce(&Header) -> Result<()> + Send + 'static,
    F: FnMut(&Header, u32, &[u8]) -> Result<()> + Send + 'static,
{
    let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
    let reader = tokio_util::io::SyncIoBridge::new(reader);
    let owned_key = key.to_owned();
    tokio::task::spawn_blocking(move || {
        let key = owned_key.as_str();
        let mut decoder = Decoder::new(reader).map_err(|e| ltx_error(e, key))?;
        let header = *decoder.header();
        check_header(&header)?;
        while let Some((pgno, page)) = decoder.next_page().map_err(|e| ltx_error(e, key))? {
            on_page(&header, pgno, page)?;
        }
        let pages = decoder.pages_read();
        let trailer = decoder.finish().map_err(|e| ltx_error(e, key))?;
        Ok(Decoded {
            header,
            trailer,
            pages,
        })
    })
    .await
    .map_err(|e| {
        Error::io(
            format!("decoding {key}"),
            std::io::Error::other(format!("the decoder stopped abnormally: {e}")),
        )
    })?
}
