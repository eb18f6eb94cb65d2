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

/// LTX files encoded at once, process-wide. An encoder holds a blocking
/// thread while its upload reads what it wrote; thousands of databases
/// shipping their first file together would otherwise hold a blocking
/// thread each. The turn is taken when the stream is first read, so a
/// stream made and never read holds none.
pub const MAX_ENCODERS: usize = 16;

static ENCODING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_ENCODERS);

/// The LTX file of `header` holding the pages `pages` yields, encoded on a
/// blocking thread (one of [`MAX_ENCODERS`]) while the stream is read. An
/// error of the source or the encoder ends the stream with that error.
pub fn encode_stream(header: format::Header, pages: PageSource) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let start = Some((header, pages, tx));
    futures::stream::unfold((start, rx), |(mut start, mut rx)| async move {
        if let Some((header, pages, tx)) = start.take() {
            let turn = ENCODING
                .acquire()
                .await
                .expect("the encoder semaphore is never closed");
            encode(header, pages, tx, turn);
        }
        rx.recv().await.map(|item| (item, (None, rx)))
    })
    .boxed()
}

/// Runs the encoder of `header` on a blocking thread that holds `turn`.
fn encode(
    header: format::Header,
    pages: PageSource,
    tx: tokio::sync::mpsc::Sender<crate::Result<Bytes>>,
    turn: tokio::sync::SemaphorePermit<'static>,
) {
    let errors = tx.clone();
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
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
        let failed = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            // Never a short file that reads as complete.
            Err(_) => Error::io(
                format!("encoding LTX TXIDs {}-{}", header.min_txid, header.max_txid),
                std::io::Error::other("the encoder stopped abnormally"),
            ),
        };
        let _ = errors.blocking_send(Err(failed));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn one_page(then: impl FnOnce() + Send + 'static) -> PageSource {
        Box::new(move |encode| {
            then();
            encode(1, &[7u8; 4096])
        })
    }

    fn header() -> format::Header {
        format::Header::new(4096, 1, 1, 1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_page_source_ends_the_stream_with_an_error() {
        let stream = encode_stream(header(), one_page(|| panic!("a page source fails")));
        let read: crate::Result<Vec<Bytes>> = stream.try_collect().await;
        let err = read.expect_err("a panic reads as a complete file");
        assert!(err.to_string().contains("stopped abnormally"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_max_encoders_run_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let streams = (0..MAX_ENCODERS * 3).map(|_| {
            let (running, most) = (running.clone(), most.clone());
            let pages: PageSource = Box::new(move |encode| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                let done = encode(1, &[7u8; 4096]);
                running.fetch_sub(1, Ordering::SeqCst);
                done
            });
            encode_stream(header(), pages).try_collect::<Vec<Bytes>>()
        });
        for file in futures::future::join_all(streams).await {
            let bytes: usize = file.expect("encoded").iter().map(Bytes::len).sum();
            // A 100-byte header, the compressed page, a 16-byte trailer.
            assert!(bytes > 116, "a whole file: {bytes} bytes");
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= MAX_ENCODERS, "{most} encoders ran at once");
        assert!(most > 1, "encoders never overlapped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_never_read_hold_no_turn() {
        let unread: Vec<ByteStream> = (0..MAX_ENCODERS * 2)
            .map(|_| encode_stream(header(), one_page(|| ())))
            .collect();
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            encode_stream(header(), one_page(|| ())).try_collect::<Vec<Bytes>>(),
        )
        .await
        .expect("an unread stream held a turn");
        assert!(read.is_ok());
        drop(unread);
    }
}
