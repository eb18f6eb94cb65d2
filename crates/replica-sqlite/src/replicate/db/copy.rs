//! Taking frames in: each round validates the frames appended to the WAL
//! (salts, running checksum) and routes the replicas' reads of the current
//! index to the WAL; before a restart the part no replica shipped yet is
//! spilled into the index's shadow file.

use super::*;

impl Db {
    /// Takes in the committed frames the WAL holds beyond the shadow's
    /// end, each checked by salt and running checksum, and routes reads of
    /// the index beyond the shadow file's valid prefix to the WAL.
    pub(super) fn copy_frames(&mut self) -> Result<u64, Discontinuity> {
        let header = self.read_wal_header();
        let shadow = self.shadow.as_ref().expect("a shadow is open");
        if header != Some(shadow.header) {
            return Err(Discontinuity(
                "the WAL was restarted or truncated by another connection".into(),
            ));
        }
        let copied = self.copy_tail()?;
        self.route()
            .map_err(|e| Discontinuity(format!("the WAL cannot be read: {e}")))?;
        Ok(copied)
    }

    /// Routes reads of the current index beyond the shadow file's valid
    /// prefix to the WAL, unless they are already (its frames stay there
    /// until our own restart, which closes the route first).
    pub(super) fn route(&self) -> std::io::Result<()> {
        let shadow = self.shadow.as_ref().expect("a shadow is open");
        if !self.tail.routes(&shadow.generation, shadow.index) {
            let wal = Arc::new(File::open(&self.wal_path)?);
            self.tail
                .set(&shadow.generation, shadow.index, shadow.written, wal);
        }
        Ok(())
    }

    /// Copies what the shadow file lacks of `[from, len)` of the current
    /// index from the WAL into it (at the same offsets), makes the file
    /// `len` long (with a hole below `from` when the bytes there were never
    /// written) and, when it copied anything, syncs it. Called under our
    /// write lock, just before a restart would overwrite the WAL.
    pub(super) fn spill(&mut self, from: u64) -> Result<(), ReplicateError> {
        let shadow = self.shadow.as_mut().expect("a shadow is open");
        let lowest = from.max(shadow.written).max(WAL_HEADER_LEN as u64);
        // What an earlier spill of this index left from below `lowest` on
        // is there already.
        let (kept, start) = match shadow.spilled {
            Some((f, e)) if f <= lowest && lowest <= e => (f, e.max(lowest)),
            _ => (lowest, lowest),
        };
        debug!(from, start, len = shadow.len, index = shadow.index, "spill");
        let context = || {
            format!(
                "copying the unshipped WAL of {} into its shadow",
                self.path.display()
            )
        };
        let file = shadow.file().map_err(io(context()))?;
        if start < shadow.len {
            let wal = File::open(&self.wal_path).map_err(io(context()))?;
            let mut buf = std::mem::take(&mut self.buf);
            let mut at = start;
            while at < shadow.len {
                let n = (shadow.len - at).min(4 << 20) as usize;
                if buf.len() < n {
                    buf.resize(n, 0);
                }
                wal.read_exact_at(&mut buf[..n], at)
                    .and_then(|()| file.write_all_at(&buf[..n], at))
                    .map_err(io(context()))?;
                at += n as u64;
            }
            self.buf = buf;
            self.counters
                .shadow_bytes
                .fetch_add(shadow.len - start, Ordering::Relaxed);
        }
        if file.metadata().map_err(io(context()))?.len() < shadow.len {
            file.set_len(shadow.len).map_err(io(context()))?;
        }
        if start < shadow.len {
            file.sync_data().map_err(io(context()))?;
            shadow.synced = shadow.written;
            self.counters.shadow_syncs.fetch_add(1, Ordering::Relaxed);
        }
        shadow.spilled = Some((kept, shadow.len.max(start)));
        Ok(())
    }

    /// The frames at the shadow's end that continue it (same salts, the
    /// running checksum unbroken), up to the last commit, whatever header
    /// the WAL file now has.
    pub(super) fn copy_tail(&mut self) -> Result<u64, Discontinuity> {
        // Taken before anything is read: every transaction committed before
        // this moment is in what is read below.
        let started = SystemTime::now();
        let shadow = self.shadow.as_mut().expect("a shadow is open");
        let wal = File::open(&self.wal_path)
            .map_err(|e| Discontinuity(format!("the WAL cannot be read: {e}")))?;
        let size = wal
            .metadata()
            .map_err(|e| Discontinuity(format!("the WAL cannot be read: {e}")))?
            .len();
        let frame_len = shadow.frame_len();
        let parsed = shadow.parsed;
        let mut offset = shadow.len;
        let mut chain = shadow.chain;
        let mut committed = (shadow.len, shadow.chain);
        // Batches start small and double while every frame is valid: past
        // the last valid frame the file may hold stale frames of an earlier
        // WAL (SQLite reuses the file after a restart), which a large first
        // read would pull in every round for nothing.
        let max_batch = (4 << 20) / frame_len.max(1) + 1;
        let mut batch_frames = 8u64.min(max_batch);
        // Without a boot id, every frame goes into the shadow file (see
        // `resume`); else the WAL keeps them.
        let write = self.boot.is_none();
        let mut buf = std::mem::take(&mut self.buf);
        'outer: while offset + frame_len <= size {
            let frames = ((size - offset) / frame_len).min(batch_frames);
            batch_frames = (batch_frames * 2).min(max_batch);
            let want = (frames * frame_len) as usize;
            if buf.len() < want {
                buf.resize(want, 0);
            }
            let batch = &mut buf[..want];
            if wal.read_exact_at(batch, offset).is_err() {
                break;
            }
            let mut valid = 0;
            for frame in batch.chunks_exact(frame_len as usize) {
                let head = &frame[..FRAME_HEADER_LEN];
                let Ok(next) = parsed.continued_by(chain, frame) else {
                    break;
                };
                chain = next;
                valid += 1;
                if be32(head, 4) != 0 {
                    committed = (offset + valid * frame_len, chain);
                }
            }
            if write && valid > 0 {
                let bytes = &batch[..(valid * frame_len) as usize];
                shadow
                    .file()
                    .and_then(|f| f.write_all_at(bytes, offset))
                    .map_err(|e| Discontinuity(format!("the shadow WAL cannot be written: {e}")))?;
            }
            offset += valid * frame_len;
            if valid < frames {
                break 'outer;
            }
        }
        self.buf = buf;
        let shadow = self.shadow.as_mut().expect("a shadow is open");
        let copied = committed.0 - shadow.len;
        self.counters.copied(copied, copied / frame_len);
        if write {
            self.counters
                .shadow_bytes
                .fetch_add(copied, Ordering::Relaxed);
        }
        if write && offset != committed.0 {
            // Drop frames of a transaction not committed yet; they are copied
            // again once it is.
            shadow
                .file()
                .and_then(|f| f.set_len(committed.0))
                .map_err(|e| Discontinuity(format!("the shadow WAL cannot be written: {e}")))?;
        }
        // Neither written nor synced here: until our checkpoint restarts
        // the WAL (which first copies and syncs what a replica has not
        // shipped), every frame is in the WAL, which no one else can
        // restart under our read transaction (a reboot ends the
        // generation: see `resume`). Without a boot id to tell a reboot
        // by, every round writes and syncs.
        shadow.len = committed.0;
        shadow.chain = committed.1;
        if write {
            shadow.written = committed.0;
        }
        self.copied_at = started;
        if write {
            self.make_durable()
                .map_err(|e| Discontinuity(format!("the shadow WAL cannot be synced: {e}")))?;
        }
        Ok(copied)
    }
}
