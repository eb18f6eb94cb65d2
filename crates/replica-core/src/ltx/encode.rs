//! LTX files encoded as they are uploaded: an encoder on a blocking thread
//! writes into a bounded channel that the upload reads as a [`ByteStream`],
//! so a file of any size costs one page and one chunk of memory. Used by
//! compaction, the conversion of 0.3 replicas and the live replicator.

use bytes::Bytes;
use futures::StreamExt;

use super::format;
use crate::client::ByteStream;
use crate::error::Error;

/// Bytes handed to the stream at once.
const CHUNK: usize = 1 << 20;

/// Where an encoder writes: chunks into the channel.
pub(crate) struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<crate::Result<Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the LTX file's reader went away"))
    }
}

/// Something that hands pages, in ascending page order, to an encoder (on
/// a blocking thread).
pub type PageSource =
    Box<dyn FnOnce(&mut dyn FnMut(u32, &[u8]) -> Result<(), Error>) -> Result<(), Error> + Send>;

/// The LTX file of `header` holding the pages `pages` yields, encoded on a
/// blocking thread while the stream is read. An error of the source or the
/// encoder ends the stream with that error.
pub fn encode_stream(header: format::Header, pages: PageSource) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let errors = tx.clone();
    tokio::task::spawn_blocking(move || {
        let fail = |e: format::LtxError| {
            Error::invalid(format!(
                "encoding LTX TXIDs {}-{}: {e}",
                header.min_txid, header.max_txid
            ))
        };
        let run = || -> Result<(), Error> {
            let writer = ChannelWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let mut enc = format::Encoder::new(writer, header).map_err(fail)?;
            pages(&mut |pgno, page| enc.encode_page(pgno, page).map_err(fail))?;
            enc.finish(0).map_err(fail)?;
            Ok(())
        };
        if let Err(e) = run() {
            let _ = errors.blocking_send(Err(e));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) }).boxed()
}
