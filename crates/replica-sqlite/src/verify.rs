//! The WAL of a generation checked as restore checks it, without building a
//! database: what `replica verify` runs so that it reports every defect a
//! restore would refuse (one rule, in [`WalApplier`], for both).
//!
//! Each WAL index is fed through a [`WalApplier`] whose pages go nowhere
//! but page 1 and the database's size, which are tracked: frames, salts and
//! checksums, commits within SQLite's growth rule, the snapshot's own index
//! present, and at the end the database header's page count against the
//! size the WAL gives.

use bytes::Bytes;
use replica_core::{Error, Generation, WalSegmentInfo};

use crate::restore::{apply_error, apply_stored, page_count_defect, RestoreError};
use crate::wal::{database_page_size, PageSink, WalApplier};

/// Page 1 and the size of the database the WAL describes.
#[derive(Debug, Default)]
struct Shape {
    page1: Option<Bytes>,
    pages: u64,
}

impl PageSink for Shape {
    fn write_page(&mut self, pgno: u32, page: &[u8]) -> std::io::Result<()> {
        if pgno == 1 {
            self.page1 = Some(Bytes::copy_from_slice(page));
        }
        Ok(())
    }

    fn write_pages(&mut self, pages: &[(u32, Bytes)]) -> std::io::Result<()> {
        if let Some((_, page)) = pages.first().filter(|(pgno, _)| *pgno == 1) {
            self.page1 = Some(page.clone());
        }
        Ok(())
    }

    fn set_pages(&mut self, pages: u32) -> std::io::Result<()> {
        self.pages = u64::from(pages);
        Ok(())
    }
}

/// Checks one generation's snapshots and WAL segments, fed in order.
#[derive(Debug)]
pub struct WalVerifier {
    generation: Generation,
    page_size: Option<u32>,
    /// The database's shape once known (from a snapshot, then the WAL).
    shape: Option<Shape>,
    current: Option<(u64, WalApplier)>,
    /// An index whose WAL broke: its later segments are not checked.
    broken: Option<u64>,
    /// The key of the last segment checked.
    last_key: String,
}

impl WalVerifier {
    /// A verifier for `generation`.
    pub fn new(generation: Generation) -> Self {
        WalVerifier {
            generation,
            page_size: None,
            shape: None,
            current: None,
            broken: None,
            last_key: String::new(),
        }
    }

    /// A snapshot at `index` whose plain bytes begin with `head` and are
    /// `len` long. Before any WAL it sets the database's shape; an error if
    /// it is not a SQLite database.
    pub fn snapshot(&mut self, key: &str, head: &[u8], len: u64) -> Result<(), RestoreError> {
        let page_size = database_page_size(head).ok_or_else(|| {
            RestoreError::Replica(Error::Corrupt {
                path: key.to_owned(),
                message: "not a SQLite database (no valid header)".into(),
            })
        })?;
        self.page_size.get_or_insert(page_size);
        if self.shape.is_none() && self.current.is_none() {
            self.shape = Some(Shape {
                page1: Some(Bytes::copy_from_slice(head)),
                pages: len / u64::from(page_size),
            });
        }
        Ok(())
    }

    /// Checks the stored (LZ4) segment `info`, named `key`; returns its
    /// decompressed length, or the defect a restore would refuse.
    pub fn segment(
        &mut self,
        info: &WalSegmentInfo,
        key: &str,
        stored: &[u8],
    ) -> Result<u64, RestoreError> {
        self.last_key = key.to_owned();
        if self.current.as_ref().is_none_or(|(i, _)| *i != info.index) {
            self.end_index(false)?;
        }
        let Some(page_size) = self.page_size else {
            // No snapshot to read the page size from (reported apart): the
            // LZ4 frames are still checked.
            return replica_core::lz4::decompress(stored)
                .map(|d| d.len() as u64)
                .map_err(|e| RestoreError::Replica(e.naming(key)));
        };
        if self.broken == Some(info.index) {
            return replica_core::lz4::decompress(stored)
                .map(|d| d.len() as u64)
                .map_err(|e| RestoreError::Replica(e.naming(key)));
        }
        let (_, applier) = self.current.get_or_insert_with(|| {
            // Without a known size (no snapshot before the WAL), growth is
            // not bounded here.
            let before = self.shape.as_ref().map_or(u64::from(u32::MAX), |s| s.pages);
            (info.index, WalApplier::new(page_size, before))
        });
        let shape = self.shape.get_or_insert_with(Shape::default);
        let result = apply_stored(applier, stored, key, &mut |applier, piece| {
            applier
                .apply_segment(&piece, shape)
                .map_err(|e| apply_error(&info.generation, info.index, e))
        });
        if result.is_err() {
            self.broken = Some(info.index);
            self.current = None;
        }
        result
    }

    /// Ends the index being checked (`last`: no later index follows).
    fn end_index(&mut self, last: bool) -> Result<(), RestoreError> {
        let Some((index, applier)) = self.current.take() else {
            return Ok(());
        };
        let shape = self.shape.get_or_insert_with(Shape::default);
        applier
            .finish(shape, last)
            .map_err(|e| apply_error(&self.generation, index, e))
    }

    /// Ends the check: the last index, and the header of the database the
    /// replica gives against its size.
    pub fn finish(mut self) -> Vec<RestoreError> {
        let mut defects = Vec::new();
        if let Err(e) = self.end_index(true) {
            defects.push(e);
        }
        if let Some(Shape {
            page1: Some(page1),
            pages,
        }) = &self.shape
        {
            if let Some(message) = page_count_defect(page1, *pages) {
                if self.broken.is_none() {
                    defects.push(RestoreError::Replica(Error::Corrupt {
                        path: self.last_key.clone(),
                        message,
                    }));
                }
            }
        }
        defects
    }
}
