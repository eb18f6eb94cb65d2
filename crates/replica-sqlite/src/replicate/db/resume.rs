//! Continuing after a stop: the shadow WAL a previous run left is picked
//! up only if the live WAL still holds what it copied, checked against the
//! boot mark (a reboot may have lost what the page cache held) and the end
//! mark a clean stop writes (the last frame replicated).

use super::*;

impl Db {
    /// Picks up the shadow WAL a previous run left, if the live WAL still
    /// continues it: same header, and the last copied frame still there.
    pub(super) fn resume(&mut self) -> Result<(), Discontinuity> {
        let lost = |why: &str| Discontinuity(why.to_owned());
        let name = fs::read_to_string(self.root.join("generation"))
            .map_err(|_| lost("no replication state"))?;
        let generation = Generation::new(name.trim()).map_err(|_| lost("unreadable state"))?;
        // Frames copied since the last sync live in the page cache, which a
        // killed process keeps and a reboot does not (and after a power loss
        // the WAL may have lost its own unsynced tail, to be written anew at
        // the same offsets): after a reboot, only a shadow synced at a clean
        // stop (no boot file) continues.
        if let Ok(then) = fs::read_to_string(self.root.join(BOOT)) {
            if self.boot.as_deref() != Some(then.trim()) {
                return Err(lost(
                    "the machine restarted since the shadow was last written, and what it had \
                     not synced may be lost",
                ));
            }
        }
        let dir = wal_dir(&self.root, &generation);
        let mut indexes: Vec<u64> = fs::read_dir(&dir)
            .map_err(|_| lost("no shadow WAL"))?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                u64::from_str_radix(name.strip_suffix(".wal")?, 16).ok()
            })
            .collect();
        indexes.sort_unstable();
        let (&first, &index) = indexes
            .first()
            .zip(indexes.last())
            .ok_or_else(|| lost("no shadow WAL"))?;
        let path = index_file(&self.root, &generation, index);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|_| lost("shadow WAL unreadable"))?;
        let mut header = [0u8; WAL_HEADER_LEN];
        file.read_exact(&mut header)
            .map_err(|_| lost("shadow WAL header unreadable"))?;
        let parsed = WalHeader::parse(&header).map_err(|_| lost("shadow WAL header invalid"))?;
        if self.read_wal_header() != Some(header) {
            // Frames written meanwhile may be gone with the old WAL.
            return Err(lost(
                "the WAL was restarted or replaced while not replicating",
            ));
        }
        // The shadow is checked frame by frame (salts, running checksum) and
        // cut back to its last commit: a kill inside an append leaves a
        // torn or uncommitted tail, which is copied again from the WAL.
        let (len, chain) = committed_end(&file, &parsed).map_err(|_| lost("shadow unreadable"))?;
        if len > WAL_HEADER_LEN as u64 {
            // The last frame kept must still be in the WAL, unchanged.
            let frame_len = FRAME_HEADER_LEN as u64 + u64::from(parsed.page_size);
            let mut ours = [0u8; FRAME_HEADER_LEN];
            file.read_exact_at(&mut ours, len - frame_len)
                .map_err(|_| lost("shadow unreadable"))?;
            let wal = File::open(&self.wal_path).map_err(|_| lost("WAL unreadable"))?;
            let mut theirs = [0u8; FRAME_HEADER_LEN];
            wal.read_exact_at(&mut theirs, len - frame_len)
                .map_err(|_| lost("the WAL is shorter than what was copied"))?;
            if ours != theirs {
                return Err(lost("the WAL no longer holds the frames copied"));
            }
        }
        // The shadow file may end before what was shipped (the rest was
        // read from the WAL): a clean stop recorded the last committed
        // frame, which the WAL must still hold (after a power loss, the
        // WAL may have lost its unsynced tail and have other frames there).
        let end = EndMark::read(&self.root).map_err(|()| lost("the stop mark is unreadable"))?;
        if let Some(end) = end {
            let frame_len = FRAME_HEADER_LEN as u64 + u64::from(parsed.page_size);
            if end.generation == generation && end.len > len {
                let wal = File::open(&self.wal_path).map_err(|_| lost("WAL unreadable"))?;
                let mut theirs = [0u8; FRAME_HEADER_LEN];
                let held = end.index == index
                    && end.len >= WAL_HEADER_LEN as u64 + frame_len
                    && wal.read_exact_at(&mut theirs, end.len - frame_len).is_ok()
                    && theirs == end.frame;
                if !held {
                    return Err(lost(
                        "the WAL no longer holds the frames replicated before the last stop",
                    ));
                }
                // And every frame before it: see `reached`.
                self.must_reach = end.len;
            }
        }
        file.set_len(len).map_err(|_| lost("shadow unwritable"))?;
        file.seek(SeekFrom::End(0))
            .map_err(|_| lost("shadow unwritable"))?;
        info!(
            generation = %generation,
            index = %format_index(index),
            offset = %format_index(len),
            "resumed the generation"
        );
        self.first_index = first;
        self.closed = None;
        self.shadow = Some(Shadow {
            generation,
            index,
            header,
            parsed,
            len,
            written: len,
            chain,
            // Read back after a kill, it may be in the page cache only.
            synced: WAL_HEADER_LEN as u64,
            spilled: None,
            file: Some(file),
        });
        Ok(())
    }

    /// Whether the frames taken in on resuming reach the end the last stop
    /// recorded: their running checksum then ends in the frame it recorded,
    /// so they are the frames replicated (a power loss may have cost the
    /// WAL a page in the middle and kept the last).
    pub(super) fn reached(&mut self) -> Result<(), Discontinuity> {
        let len = self.shadow.as_ref().map_or(0, |s| s.len);
        let must = std::mem::take(&mut self.must_reach);
        if len < must {
            return Err(Discontinuity(
                "the WAL no longer holds every frame replicated before the last stop".into(),
            ));
        }
        Ok(())
    }

    /// Records the boot the shadow's unsynced frames belong to (once per
    /// process: a clean stop syncs the shadow and removes it).
    pub(super) fn mark_boot(&self) -> Result<(), ReplicateError> {
        self.write_boot()?;
        // The last stop's mark was for `resume` (removed only now: a power
        // loss in between leaves one of the two); from now on the WAL moves.
        match fs::remove_file(self.root.join(END)) {
            Ok(()) => sync_dir(&self.root),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}", self.root.join(END).display()))(e)),
        }
    }

    pub(super) fn write_boot(&self) -> Result<(), ReplicateError> {
        let Some(boot) = &self.boot else {
            return Ok(());
        };
        let path = self.root.join(BOOT);
        let temp = self.root.join(format!("{BOOT}.tmp"));
        fs::write(&temp, boot)
            .and_then(|()| File::open(&temp)?.sync_all())
            .and_then(|()| fs::rename(&temp, &path))
            .map_err(io(format!("writing {}", path.display())))?;
        sync_dir(&self.root)
    }

    /// Records the current index's last committed frame header, synced.
    pub(super) fn mark_end(&self) -> Result<(), ReplicateError> {
        let shadow = self.shadow.as_ref().expect("a shadow is open");
        if shadow.written >= shadow.len {
            // The shadow file holds it all.
            return Ok(());
        }
        let mut frame = [0u8; FRAME_HEADER_LEN];
        File::open(&self.wal_path)
            .and_then(|wal| wal.read_exact_at(&mut frame, shadow.len - shadow.frame_len()))
            .map_err(io(format!("reading {}", self.wal_path.display())))?;
        let mark = EndMark {
            generation: shadow.generation.clone(),
            index: shadow.index,
            len: shadow.len,
            frame,
        };
        let (path, temp) = (self.root.join(END), self.root.join(format!("{END}.tmp")));
        fs::write(&temp, mark.to_string())
            .and_then(|()| File::open(&temp)?.sync_all())
            .and_then(|()| fs::rename(&temp, &path))
            .map_err(io(format!("writing {}", path.display())))?;
        sync_dir(&self.root)
    }
}

/// Where the last committed frame of a shadow WAL ends, and the running
/// checksum there; frames are checked by salts and checksum on the way.
pub(super) fn committed_end(file: &File, header: &WalHeader) -> std::io::Result<(u64, (u32, u32))> {
    let frame_len = FRAME_HEADER_LEN + header.page_size as usize;
    let size = file.metadata()?.len();
    let mut frame = vec![0u8; frame_len];
    let mut chain = header.checksum;
    let mut at = WAL_HEADER_LEN as u64;
    let mut committed = (at, chain);
    while at + frame_len as u64 <= size {
        file.read_exact_at(&mut frame, at)?;
        let head = &frame[..FRAME_HEADER_LEN];
        let Ok(next) = header.continued_by(chain, &frame) else {
            break;
        };
        chain = next;
        at += frame_len as u64;
        if be32(head, 4) != 0 {
            committed = (at, chain);
        }
    }
    Ok(committed)
}

/// The file in the shadow directory a clean stop leaves: the current index
/// and the header of its last committed frame (the shadow file itself holds
/// only what a restart made it hold; the WAL holds the rest).
pub(super) const END: &str = "end";

/// What [`END`] holds: `<generation> <index> <len> <frame header, hex>`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EndMark {
    generation: Generation,
    index: u64,
    len: u64,
    frame: [u8; FRAME_HEADER_LEN],
}

impl std::fmt::Display for EndMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} ", self.generation, self.index, self.len)?;
        self.frame.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl EndMark {
    /// The mark in `root`, if any; an error if it cannot be read.
    pub(super) fn read(root: &Path) -> Result<Option<EndMark>, ()> {
        match fs::read_to_string(root.join(END)) {
            Ok(text) => Self::parse(&text).map(Some).ok_or(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(_) => Err(()),
        }
    }

    pub(super) fn parse(text: &str) -> Option<EndMark> {
        let mut parts = text.split_whitespace();
        let generation = Generation::new(parts.next()?).ok()?;
        let index = parts.next()?.parse().ok()?;
        let len = parts.next()?.parse().ok()?;
        let hex = parts.next()?;
        let mut frame = [0u8; FRAME_HEADER_LEN];
        if hex.len() != 2 * FRAME_HEADER_LEN || parts.next().is_some() {
            return None;
        }
        for (i, b) in frame.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(EndMark {
            generation,
            index,
            len,
            frame,
        })
    }
}

/// The file in the shadow directory naming the boot whose page cache holds
/// its unsynced frames.
pub(super) const BOOT: &str = "boot";

/// The running kernel's boot id (Linux), if it can be read.
pub(super) fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}
