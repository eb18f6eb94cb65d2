//! Compaction: the files of one level merged into one file of the next, as
//! Litestream 0.5 compacts (superfly/ltx's `Compactor`): the files of the
//! source level after the destination's newest TXID, contiguous, merged page
//! by page with the newest version of each page winning, pages past the last
//! file's commit dropped; the header takes the first file's min TXID and
//! pre-apply checksum and the last file's max TXID, commit and timestamp,
//! NoChecksum set and the WAL fields zero. Every input is decoded and
//! checked whole (page index, file checksum) while the output is encoded
//! and uploaded, one page per input in memory; a defect in any input fails
//! the compaction and stores nothing.

use futures::TryStreamExt;
use replica_ltx::{Decoder, Header};

use super::encode::encode_stream;
use super::{LtxClient, LtxFileInfo, TxId};
use crate::error::{Error, Result};

/// Merges the files of `src` newer than the newest file of `dst` into one
/// file at `dst`; `None` when there is nothing to compact.
pub async fn compact(client: &LtxClient, src: u8, dst: u8) -> Result<Option<LtxFileInfo>> {
    let seek = client
        .files(dst)
        .await?
        .last()
        .map_or(TxId(1), |f| TxId(f.max_txid.0 + 1));
    let inputs = client.files_from(src, seek).await?;
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
        return Ok(None);
    };
    for pair in inputs.windows(2) {
        if pair[1].min_txid.0 != pair[0].max_txid.0 + 1 {
            return Err(Error::TxidHole {
                first: pair[0].max_txid.0 + 1,
                last: pair[1].min_txid.0.saturating_sub(1),
                detail: format!(
                    "level {src} holds {} then {}: nothing to compact across the hole",
                    pair[0].name(),
                    pair[1].name()
                ),
            });
        }
    }
    let first_header = client.header(first).await?;
    let last_header = client.header(last).await?;
    let mut header = Header::new(
        last_header.page_size,
        last_header.commit,
        first.min_txid.0,
        last.max_txid.0,
    );
    header.timestamp = last_header.timestamp;
    header.pre_apply_checksum = first_header.pre_apply_checksum;
    let time =
        chrono::DateTime::from_timestamp_millis(header.timestamp).unwrap_or_else(chrono::Utc::now);
    let mut readers = Vec::with_capacity(inputs.len());
    for info in &inputs {
        let stream = client.read(info).await?;
        let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
        readers.push((info.name(), tokio_util::io::SyncIoBridge::new(reader)));
    }
    let expect = (first_header, last_header);
    let pages = Box::new(move |encode: &mut dyn FnMut(u32, &[u8]) -> Result<()>| {
        merge(readers, expect, header, encode)
    });
    let info = client
        .write(
            dst,
            header.min_txid,
            header.max_txid,
            encode_stream(header, pages),
            time,
        )
        .await?;
    Ok(Some(info))
}

fn corrupt(name: &str, e: replica_ltx::LtxError) -> Error {
    super::decode::ltx_error(e, name)
}

/// The k-way merge of the inputs' page streams (each ascending), on a
/// blocking thread.
fn merge<R: std::io::Read>(
    readers: Vec<(String, R)>,
    (first, last): (Header, Header),
    out: Header,
    encode: &mut dyn FnMut(u32, &[u8]) -> Result<()>,
) -> Result<()> {
    struct Input<R> {
        name: String,
        decoder: Decoder<R>,
        /// The page read ahead: (pgno, bytes), or `None` at its end.
        next: Option<(u32, Vec<u8>)>,
    }
    let advance = |input: &mut Input<R>| -> Result<()> {
        input.next = input
            .decoder
            .next_page()
            .map_err(|e| corrupt(&input.name, e))?
            .map(|(pgno, page)| (pgno, page.to_vec()));
        Ok(())
    };
    let mut inputs = Vec::with_capacity(readers.len());
    for (name, reader) in readers {
        let decoder = Decoder::new(reader).map_err(|e| corrupt(&name, e))?;
        let mut input = Input {
            name,
            decoder,
            next: None,
        };
        advance(&mut input)?;
        inputs.push(input);
    }
    let n = inputs.len();
    for (i, input) in inputs.iter().enumerate() {
        let h = input.decoder.header();
        if h.page_size != out.page_size {
            return Err(Error::Corrupt {
                path: input.name.clone(),
                message: format!(
                    "page size {} differs from the last file's {} (nothing to compact across a \
                     page-size change)",
                    h.page_size, out.page_size
                ),
            });
        }
        let expected = if i == 0 {
            Some(&first)
        } else if i == n - 1 {
            Some(&last)
        } else {
            None
        };
        if expected.is_some_and(|e| e != h) {
            return Err(Error::Corrupt {
                path: input.name.clone(),
                message: "its header changed while it was being compacted".into(),
            });
        }
    }
    let lock = replica_ltx::lock_pgno(out.page_size);
    while let Some(pgno) = inputs
        .iter()
        .filter_map(|i| i.next.as_ref().map(|n| n.0))
        .min()
    {
        // The newest input holding the page wins; every holder moves on.
        let mut written = false;
        for input in inputs.iter_mut().rev() {
            if input.next.as_ref().map(|n| n.0) != Some(pgno) {
                continue;
            }
            if !written && pgno <= out.commit && pgno != lock {
                let (_, page) = input.next.as_ref().expect("checked above");
                encode(pgno, page)?;
            }
            written = true;
            advance(input)?;
        }
    }
    for input in inputs {
        let name = input.name;
        input.decoder.finish().map_err(|e| corrupt(&name, e))?;
    }
    Ok(())
}
