//! The checked frames of a WAL transaction whose commit frame has not come
//! yet: held in memory up to [`MEMORY_LIMIT`] bytes of pages, then spilled to
//! an unlinked temporary file, so a transaction of any size (a bulk load, or
//! a hostile replica's endless one) costs bounded memory. The file has no
//! name from the start: nothing is left behind, even by a killed process.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;

/// Pages of an uncommitted transaction held in memory before spilling.
pub const MEMORY_LIMIT: usize = 32 << 20;

/// Frames of one uncommitted transaction, in WAL order.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The first frames: (WAL offset, page number, page).
    memory: Vec<(u64, u32, Bytes)>,
    memory_bytes: usize,
    /// Later frames, once the memory limit was reached.
    spill: Option<Spill>,
    /// Where a spill file is made (the system's temporary directory if unset).
    dir: Option<PathBuf>,
}

#[derive(Debug)]
struct Spill {
    file: File,
    /// (WAL offset, page number, page length) of each spilled frame; page
    /// `i` is at the sum of the lengths before it.
    frames: Vec<(u64, u32, u32)>,
    len: u64,
}

impl Pending {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        Pending {
            dir,
            ..Pending::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.memory.len() + self.spill.as_ref().map_or(0, |s| s.frames.len())
    }

    /// The WAL offset of the first frame.
    pub(crate) fn first_offset(&self) -> Option<u64> {
        self.memory
            .first()
            .map(|f| f.0)
            .or_else(|| self.spill.as_ref()?.frames.first().map(|f| f.0))
    }

    /// Whether frames have been spilled to disk.
    pub(crate) fn spilled(&self) -> bool {
        self.spill.is_some()
    }

    pub(crate) fn push(&mut self, offset: u64, pgno: u32, page: Bytes) -> io::Result<()> {
        if self.spill.is_none() && self.memory_bytes + page.len() <= MEMORY_LIMIT {
            self.memory_bytes += page.len();
            self.memory.push((offset, pgno, page));
            return Ok(());
        }
        let spill = match &mut self.spill {
            Some(s) => s,
            None => {
                let file = match &self.dir {
                    Some(dir) => tempfile::tempfile_in(dir)?,
                    None => tempfile::tempfile()?,
                };
                self.spill.insert(Spill {
                    file,
                    frames: Vec::new(),
                    len: 0,
                })
            }
        };
        spill.file.write_all_at(&page, spill.len)?;
        spill.len += page.len() as u64;
        let len = u32::try_from(page.len()).map_err(io::Error::other)?;
        spill.frames.push((offset, pgno, len));
        Ok(())
    }

    /// Each frame in WAL order, spilled ones read back one at a time.
    pub(crate) fn frames(&self) -> impl Iterator<Item = io::Result<(u64, u32, Bytes)>> + '_ {
        let memory = self.memory.iter().map(|f| Ok(f.clone()));
        let spilled = self.spill.iter().flat_map(|s| {
            let mut at = 0u64;
            s.frames.iter().map(move |&(offset, pgno, len)| {
                let mut page = vec![0u8; len as usize];
                s.file.read_exact_at(&mut page, at)?;
                at += u64::from(len);
                Ok((offset, pgno, Bytes::from(page)))
            })
        });
        memory.chain(spilled)
    }

    /// Forgets every frame (the spill file is closed, and so gone).
    pub(crate) fn clear(&mut self) {
        self.memory.clear();
        self.memory_bytes = 0;
        self.spill = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_past_the_memory_limit_spill_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Pending::new(Some(dir.path().to_owned()));
        let page = 64 << 10;
        let n = MEMORY_LIMIT / page + 40;
        for i in 0..n {
            p.push(
                i as u64 * 100,
                i as u32 + 1,
                Bytes::from(vec![i as u8; page]),
            )
            .unwrap();
        }
        assert!(p.spilled());
        assert_eq!(p.len(), n);
        assert!(p.memory_bytes <= MEMORY_LIMIT);
        for (i, f) in p.frames().enumerate() {
            let (offset, pgno, data) = f.unwrap();
            assert_eq!((offset, pgno), (i as u64 * 100, i as u32 + 1));
            assert!(data.len() == page && data.iter().all(|b| *b == i as u8));
        }
        // The spill file has no name: the directory stays empty.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        p.clear();
        assert!(!p.spilled() && p.len() == 0 && p.first_offset().is_none());
    }
}
