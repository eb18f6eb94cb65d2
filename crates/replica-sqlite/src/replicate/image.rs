//! A snapshot image: the database file with the committed pages of the
//! current shadow WAL index laid over it, streamed page by page.
//!
//! The database file alone holds only what was checkpointed; the frames of
//! the current index are in the WAL. Laying the newest copy of each page
//! from the index (up to its committed length, read where
//! [`IndexReader`] finds it) over the file gives the
//! database exactly as of that length, so a replica holding only the
//! snapshot of a new generation already has every transaction the shadow
//! held. Pages a concurrent checkpoint may be rewriting in the file are all
//! in the WAL, so they come from the shadow, never torn.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use replica_core::{ByteStream, Error};
use tokio::sync::mpsc;

use super::tail::IndexReader;
use crate::wal::{WalHeader, FRAME_HEADER_LEN, WAL_HEADER_LEN};

/// Pages sent per chunk.
const PAGES_PER_CHUNK: usize = 64;

/// How many bytes of frames [`overlay`] reads at a time (at least one frame).
const OVERLAY_CHUNK_BYTES: u64 = 256 << 10;

/// Where each page's newest copy is in a range of a shadow WAL, and the
/// database size the range's last commit names.
pub(crate) struct Overlay {
    pub(crate) header: WalHeader,
    pub(crate) page_size: u64,
    pub(crate) pages: HashMap<u32, u64>,
    pub(crate) db_pages: Option<u32>,
}

/// The overlay of the frames in `[from, to)` of `shadow` (`from` is 0 or a
/// frame boundary).
pub(crate) fn overlay(shadow: &IndexReader, from: u64, to: u64) -> std::io::Result<Overlay> {
    let mut head = [0u8; WAL_HEADER_LEN];
    shadow.read_exact_at(&mut head, 0)?;
    let header = WalHeader::parse(&head)
        .map_err(|e| std::io::Error::other(format!("shadow WAL header: {e}")))?;
    let page_size = u64::from(header.page_size);
    let frame = FRAME_HEADER_LEN as u64 + page_size;
    let mut pages = HashMap::new();
    let mut db_pages = None;
    let mut at = from.max(WAL_HEADER_LEN as u64);
    let salts = head_salts(&header);
    // Whole frames are read a chunk at a time: one read (and one check of
    // the WAL header) per chunk, not per frame.
    let per_chunk = (OVERLAY_CHUNK_BYTES / frame).max(1);
    let mut chunk = Vec::new();
    while at + frame <= to {
        let frames = ((to - at) / frame).min(per_chunk);
        chunk.resize((frames * frame) as usize, 0);
        shadow.read_exact_at(&mut chunk, at)?;
        for head in chunk.chunks_exact(frame as usize) {
            if head[8..16] != salts {
                return Err(std::io::Error::other(format!(
                    "{} holds no frame at offset {at} (a part every replica had shipped when \
                     the WAL restarted, never copied)",
                    shadow.name()
                )));
            }
            let pgno = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes"));
            let commit = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
            pages.insert(pgno, at + FRAME_HEADER_LEN as u64);
            if commit != 0 {
                db_pages = Some(commit);
            }
            at += frame;
        }
    }
    Ok(Overlay {
        header,
        page_size,
        pages,
        db_pages,
    })
}

/// The salts of `header` as a frame header holds them.
fn head_salts(header: &WalHeader) -> [u8; 8] {
    let mut salts = [0u8; 8];
    salts[..4].copy_from_slice(&header.salts.0.to_be_bytes());
    salts[4..].copy_from_slice(&header.salts.1.to_be_bytes());
    salts
}

/// The database as of a length of the current shadow WAL index, page by page.
pub(crate) struct Image {
    file: Arc<File>,
    file_len: u64,
    shadow: IndexReader,
    overlay: Overlay,
}

impl Image {
    /// The database open as `file` with `shadow[..len]` laid over it.
    pub(crate) fn open(file: Arc<File>, shadow: IndexReader, len: u64) -> std::io::Result<Image> {
        let overlay = overlay(&shadow, 0, len)?;
        let file_len = file.metadata()?.len();
        Ok(Image {
            file,
            file_len,
            shadow,
            overlay,
        })
    }

    /// Its page size.
    pub(crate) fn page_size(&self) -> u32 {
        self.overlay.page_size as u32
    }

    /// Its size in pages.
    pub(crate) fn pages(&self) -> u32 {
        self.overlay
            .db_pages
            .unwrap_or((self.file_len / self.overlay.page_size) as u32)
    }

    /// The WAL header of the shadow index it is taken in.
    pub(crate) fn wal_header(&self) -> WalHeader {
        self.overlay.header
    }

    /// Reads page `pgno` (1-based) into `page`.
    pub(crate) fn read_page(&self, pgno: u32, page: &mut [u8]) -> std::io::Result<()> {
        let page_size = self.overlay.page_size;
        match self.overlay.pages.get(&pgno) {
            Some(&at) => self.shadow.read_exact_at(page, at),
            None => {
                let at = u64::from(pgno - 1) * page_size;
                if at + page_size <= self.file_len {
                    self.file.read_exact_at(page, at)
                } else {
                    Err(std::io::Error::other(format!(
                        "page {pgno} is neither in the database file nor in the WAL"
                    )))
                }
            }
        }
    }
}

fn produce(
    file: Arc<File>,
    shadow: IndexReader,
    len: u64,
    tx: &mpsc::Sender<replica_core::Result<Bytes>>,
) -> std::io::Result<()> {
    let image = Image::open(file, shadow, len)?;
    let page_size = u64::from(image.page_size());
    let total = u64::from(image.pages());
    let mut pgno = 1u64;
    while pgno <= total {
        let count = (total - pgno + 1).min(PAGES_PER_CHUNK as u64);
        let mut chunk = vec![0u8; (count * page_size) as usize];
        for (i, page) in chunk.chunks_exact_mut(page_size as usize).enumerate() {
            image.read_page((pgno + i as u64) as u32, page)?;
        }
        if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
            return Ok(());
        }
        pgno += count;
    }
    Ok(())
}

/// Streams the image of the database open as `db` with `shadow[..len]`
/// laid over it. `db` is the replicator's own long-lived descriptor of the
/// database file: opening and closing another one would drop every POSIX
/// lock this process's SQLite connections hold on it (then another process
/// could take the database for its last connection and delete the WAL).
/// `turn` is held until the image is produced. A producer that fails or
/// stops abnormally ends the stream with an error, never early.
pub(crate) fn image(db: Arc<File>, shadow: IndexReader, len: u64, turn: Turn) -> ByteStream {
    let (tx, rx) = mpsc::channel(4);
    let context = "reading a snapshot of the database".to_owned();
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let produced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            produce(db, shadow, len, &tx)
        }));
        let failed = match produced {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => std::io::Error::other("the snapshot reader stopped abnormally"),
        };
        let _ = tx.blocking_send(Err(Error::io(context, failed)));
    });
    tokio_stream_from(rx)
}

/// Snapshot images produced at once, process-wide: 0.3 snapshots and LTX
/// whole-database and snapshot files. A producer holds a blocking thread
/// while it waits for its consumer, and a consumer may need blocking
/// threads itself (a file replica writes on them): bounding the producers
/// keeps start-up with thousands of databases from taking a blocking
/// thread per database for its first snapshot.
pub const MAX_IMAGES: usize = 8;

static PRODUCING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_IMAGES);

/// A turn to produce a snapshot image (one of [`MAX_IMAGES`]).
pub(crate) type Turn = tokio::sync::SemaphorePermit<'static>;

/// Waits for a turn to produce a snapshot image. Taken before the snapshot
/// gate, so a database waiting for its turn holds off no checkpoint.
pub(crate) async fn turn() -> Turn {
    PRODUCING
        .acquire()
        .await
        .expect("the image semaphore is never closed")
}

fn tokio_stream_from(mut rx: mpsc::Receiver<replica_core::Result<Bytes>>) -> ByteStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
