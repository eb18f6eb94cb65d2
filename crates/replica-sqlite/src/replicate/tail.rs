//! Reading a shadow index wherever its bytes are.
//!
//! The committed frames of the current WAL index are not copied into the
//! shadow file as they come: the live WAL holds them at the same offsets,
//! and nothing can overwrite them while the database task holds its read
//! transaction (a restart needs every reader slot free), until our own
//! checkpoint restarts the WAL. Just before that restart, the frames some
//! replica has not shipped yet are copied into the index's shadow file
//! ([`Db`](super::db::Db)'s spill); the frames below every replica's
//! position are never written, and a closed index's file has a hole there.
//!
//! A [`Tail`] routes reads: for the current index, the bytes from its file's
//! valid prefix on come from the WAL; once the index closes (or the
//! database is released, or the generation ends), every read comes from
//! the file. The database task changes the route under the write side of
//! its lock, so a read never sees the WAL after it changed. An
//! [`IndexReader`] opened at an offset checks that the frame there is real
//! (its salts are the index's), so a read that reaches into a hole is an
//! error, never zeros shipped as WAL; and every read from the WAL is
//! followed by a look at the WAL's header, which a restart rewrites before
//! any frame: a read that may have seen another WAL's bytes is an error too
//! (the route is the fast path; the check holds even where SQLite would
//! let another connection restart the WAL, such as under a read mark of a
//! completely checkpointed WAL).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use replica_core::Generation;

use super::ShadowView;
use crate::wal::{FRAME_HEADER_LEN, WAL_HEADER_LEN};

/// Where the bytes of the current index are read from (shared by the
/// database task and every reader).
#[derive(Debug, Default)]
pub(crate) struct Tail(RwLock<Route>);

#[derive(Debug, Default)]
struct Route {
    /// The index whose bytes from `written` on are in `wal`.
    current: Option<(Generation, u64)>,
    /// The end of the valid prefix of its shadow file.
    written: u64,
    /// The live WAL, open.
    wal: Option<Arc<File>>,
}

impl Tail {
    fn route(&self) -> RwLockReadGuard<'_, Route> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From now on, index `index` of `generation` is read from its shadow
    /// file below `written` and from `wal` beyond it.
    pub(crate) fn set(&self, generation: &Generation, index: u64, written: u64, wal: Arc<File>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Route {
            current: Some((generation.clone(), index)),
            written,
            wal: Some(wal),
        };
    }

    /// From now on, every read comes from the shadow files (called before
    /// anything may change the WAL: once it returns, no read is under way
    /// in it).
    pub(crate) fn close(&self) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Route::default();
    }

    /// Whether reads of index `index` of `generation` come from the WAL.
    pub(crate) fn routes(&self, generation: &Generation, index: u64) -> bool {
        let route = self.route();
        route.wal.is_some() && route.current.as_ref() == Some(&(generation.clone(), index))
    }
}

/// One shadow index open for reading (see the module docs).
pub(crate) struct IndexReader {
    file: File,
    /// The index's WAL header (its file's first bytes).
    header: [u8; WAL_HEADER_LEN],
    tail: Arc<Tail>,
    generation: Generation,
    index: u64,
    name: String,
}

impl IndexReader {
    /// Opens index `index` of the view's generation to read `[from, to)`
    /// (`from` is 0 or a frame boundary; `to` is at most the index's
    /// committed length), checking that the first frame read is there.
    pub(crate) fn open(
        view: &ShadowView,
        index: u64,
        from: u64,
        to: u64,
    ) -> std::io::Result<IndexReader> {
        let path = super::ship::index_path(view, index);
        let file = File::open(&path)?;
        let mut header = [0u8; WAL_HEADER_LEN];
        file.read_exact_at(&mut header, 0)?;
        let reader = IndexReader {
            file,
            header,
            tail: view.tail.clone(),
            generation: view.generation.clone(),
            index,
            name: path.display().to_string(),
        };
        let first = from.max(WAL_HEADER_LEN as u64);
        if first + FRAME_HEADER_LEN as u64 <= to {
            let mut frame = [0u8; FRAME_HEADER_LEN];
            reader.read_exact_at(&mut frame, first)?;
            if frame[8..16] != header[16..24] {
                return Err(std::io::Error::other(format!(
                    "{} no longer holds offset {first} (every replica had shipped it when the \
                     WAL restarted, so it was never copied)",
                    reader.name
                )));
            }
        }
        Ok(reader)
    }

    /// The path of its shadow file, for messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Reads `buf.len()` bytes at `at`: from the shadow file, or, for the
    /// current index beyond the file's valid prefix, from the WAL.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        let route = self.tail.route();
        let live = route
            .current
            .as_ref()
            .is_some_and(|(g, i)| *g == self.generation && *i == self.index);
        match &route.wal {
            Some(wal) if live => {
                let end = at + buf.len() as u64;
                let split = route.written.clamp(at, end);
                let (head, rest) = buf.split_at_mut((split - at) as usize);
                if !head.is_empty() {
                    self.file.read_exact_at(head, at)?;
                }
                if !rest.is_empty() {
                    wal.read_exact_at(rest, split)?;
                    let mut now = [0u8; WAL_HEADER_LEN];
                    wal.read_exact_at(&mut now, 0)?;
                    if now != self.header {
                        return Err(std::io::Error::other(format!(
                            "the WAL was restarted while index {} of {} was read from it",
                            self.index, self.generation
                        )));
                    }
                }
                Ok(())
            }
            _ => self.file.read_exact_at(buf, at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PAGE: usize = 512;
    const FRAME: usize = FRAME_HEADER_LEN + PAGE;

    fn header() -> [u8; WAL_HEADER_LEN] {
        let mut h = [0u8; WAL_HEADER_LEN];
        h[8..12].copy_from_slice(&(PAGE as u32).to_be_bytes());
        h[16..24].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        h
    }

    /// Frame `n` (0-based): the header's salts, its bytes all `n + 1`.
    fn frame(n: u8) -> Vec<u8> {
        let mut f = vec![n + 1; FRAME];
        f[8..16].copy_from_slice(&header()[16..24]);
        f
    }

    fn at(n: usize) -> u64 {
        (WAL_HEADER_LEN + n * FRAME) as u64
    }

    fn view(dir: &Path, tail: &Arc<Tail>, generation: &Generation) -> ShadowView {
        ShadowView {
            generation: generation.clone(),
            dir: dir.to_owned(),
            first_index: 0,
            index: 1,
            len: at(3),
            copied_at: std::time::SystemTime::UNIX_EPOCH,
            db_file: None,
            released: false,
            closed: Some((0, at(3))),
            tail: tail.clone(),
            announced: std::time::Instant::now(),
        }
    }

    #[test]
    fn reads_come_from_the_wal_beyond_the_prefix_and_a_hole_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generation::random();
        let frames: Vec<u8> = (0..3).flat_map(frame).collect();
        // The WAL: the current index (1), three frames.
        let wal = dir.path().join("wal");
        std::fs::write(&wal, [&header()[..], &frames].concat()).unwrap();
        // Its shadow file: the header and the first frame only.
        let current = dir.path().join(format!("{:016x}.wal", 1));
        std::fs::write(&current, [&header()[..], &frame(0)].concat()).unwrap();
        // Index 0, closed: a hole below its last frame, which was spilled.
        let closed = dir.path().join(format!("{:016x}.wal", 0));
        let file = File::create(&closed).unwrap();
        file.write_all_at(&header(), 0).unwrap();
        file.write_all_at(&frame(2), at(2)).unwrap();
        let tail = Arc::new(Tail::default());
        let view = view(dir.path(), &tail, &g);
        tail.set(&g, 1, at(1), Arc::new(File::open(&wal).unwrap()));
        assert!(tail.routes(&g, 1) && !tail.routes(&g, 0));

        // The current index: the prefix from its file, the rest from the WAL.
        let reader = IndexReader::open(&view, 1, 0, at(3)).unwrap();
        let mut all = vec![0u8; at(3) as usize];
        reader.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(all, [&header()[..], &frames].concat());
        let mut page = vec![0u8; PAGE];
        reader
            .read_exact_at(&mut page, at(2) + FRAME_HEADER_LEN as u64)
            .unwrap();
        assert_eq!(page, vec![3u8; PAGE], "a page from the WAL");

        // The closed index: from the spilled frame on, and never the hole.
        let reader = IndexReader::open(&view, 0, at(2), at(3)).unwrap();
        let mut last = vec![0u8; FRAME];
        reader.read_exact_at(&mut last, at(2)).unwrap();
        assert_eq!(last, frame(2));
        let err = IndexReader::open(&view, 0, at(1), at(3))
            .err()
            .expect("offset in the hole");
        assert!(err.to_string().contains("no longer holds offset"), "{err}");
        assert!(IndexReader::open(&view, 0, 0, at(3)).is_err());

        // A restart rewrites the WAL's header first: a read from the WAL
        // after it is an error.
        let reader = IndexReader::open(&view, 1, at(1), at(3)).unwrap();
        let mut restarted = header();
        restarted[16] ^= 1;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .unwrap()
            .write_all_at(&restarted, 0)
            .unwrap();
        let err = reader.read_exact_at(&mut page, at(2)).unwrap_err();
        assert!(err.to_string().contains("was restarted"), "{err}");
        std::fs::write(&wal, [&header()[..], &frames].concat()).unwrap();

        // Closed, the route sends every read to the files: the current
        // index's file ends at its prefix.
        let reader = IndexReader::open(&view, 1, at(1), at(3)).unwrap();
        tail.close();
        assert!(!tail.routes(&g, 1));
        let mut frame_buf = vec![0u8; FRAME];
        assert!(reader.read_exact_at(&mut frame_buf, at(1)).is_err());
        reader.read_exact_at(&mut frame_buf, at(0)).unwrap();
        assert_eq!(frame_buf, frame(0));
    }

    /// An overlay read in chunks: past a chunk boundary it still names each
    /// page's newest copy, and a hole in a closed index is an error naming
    /// the offset of the first frame missing.
    #[test]
    fn an_overlay_finds_the_newest_copies_across_chunks_and_stops_at_a_hole() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generation::random();
        // 1,200 frames (more than two chunks of 512-byte pages) of pages
        // 1..=7, the last a commit of 7 pages.
        let n = 1200;
        let mut built = crate::wal::WalBuilder::new(PAGE as u32, false);
        for i in 0..n {
            let commit = if i == n - 1 { 7 } else { 0 };
            built.frame((i % 7) as u32 + 1, commit, i as u8);
        }
        let header: [u8; WAL_HEADER_LEN] = built.bytes[..WAL_HEADER_LEN].try_into().unwrap();
        let frames = &built.bytes[WAL_HEADER_LEN..];
        let wal = dir.path().join("wal");
        std::fs::write(&wal, &built.bytes).unwrap();
        let current = dir.path().join(format!("{:016x}.wal", 1));
        std::fs::write(&current, header).unwrap();
        let tail = Arc::new(Tail::default());
        let mut view = view(dir.path(), &tail, &g);
        view.len = at(n);
        tail.set(&g, 1, at(0), Arc::new(File::open(&wal).unwrap()));
        let reader = IndexReader::open(&view, 1, 0, at(n)).unwrap();
        let o = crate::replicate::image::overlay(&reader, 0, at(n)).unwrap();
        assert_eq!(o.db_pages, Some(7));
        assert_eq!(o.pages.len(), 7);
        for pgno in 1..=7u32 {
            let last = (0..n).rev().find(|i| (i % 7) as u32 + 1 == pgno).unwrap();
            assert_eq!(
                o.pages[&pgno],
                at(last) + FRAME_HEADER_LEN as u64,
                "page {pgno}"
            );
        }
        // A range starting past the first chunk's end.
        let o = crate::replicate::image::overlay(&reader, at(700), at(703)).unwrap();
        assert_eq!(o.pages.len(), 3);
        assert_eq!(o.db_pages, None);

        // A closed index (0) whose frames 600.. were never written.
        let closed = dir.path().join(format!("{:016x}.wal", 0));
        let file = File::create(&closed).unwrap();
        file.write_all_at(&[&header[..], &frames[..600 * FRAME]].concat(), 0)
            .unwrap();
        file.set_len(at(n)).unwrap();
        let reader = IndexReader::open(&view, 0, at(10), at(n)).unwrap();
        let err = crate::replicate::image::overlay(&reader, at(10), at(n))
            .err()
            .expect("a hole");
        assert!(
            err.to_string()
                .contains(&format!("holds no frame at offset {}", at(600))),
            "{err}"
        );
    }
}
