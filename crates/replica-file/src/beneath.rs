//! Paths beneath the root, resolved one component at a time from a
//! directory descriptor with `O_NOFOLLOW`, so that no symbolic link is
//! followed at any level: a link where a directory or an object belongs is
//! simply not part of the replica (reads: not found; listings: not listed;
//! writes: refused; deletes: the link itself is removed, never its target).
//! Only the root path given by the user is opened as a path.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Flags of every directory opened below the root.
const DIR: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

/// Whether an error of opening means "not there as a real directory or file":
/// missing, a file where a directory belongs, or a symbolic link.
pub(crate) fn is_absent(e: Errno) -> bool {
    matches!(e, Errno::NOENT | Errno::NOTDIR | Errno::LOOP)
}

/// The child directory `name` of `parent`, never through a link.
pub(crate) fn child_dir(parent: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, Errno> {
    rfs::openat(parent, name, DIR, Mode::empty())
}

/// The directory reached from `root` by the `/`-separated components of
/// `rel`; `None` when any component is missing, a file or a link.
pub(crate) fn dir_at(root: OwnedFd, rel: &str) -> io::Result<Option<OwnedFd>> {
    let mut cur = root;
    for name in components(rel) {
        match child_dir(cur.as_fd(), name) {
            Ok(fd) => cur = fd,
            Err(e) if is_absent(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(cur))
}

/// The non-empty components of a key or directory.
pub(crate) fn components(rel: &str) -> impl Iterator<Item = &str> {
    rel.split('/').filter(|c| !c.is_empty())
}

/// Opens the regular file `name` in `dir` for reading; `None` when it is
/// missing, a link, or not a regular file.
pub(crate) fn open_file(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<std::fs::File>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) if is_absent(e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let stat = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    // Back to blocking reads (NONBLOCK only kept a FIFO from hanging the open).
    rfs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok(Some(std::fs::File::from(fd)))
}

/// One entry of a directory: its name and whether it is a directory (the
/// rest are regular files; links and other kinds are left out).
pub(crate) struct Child {
    pub(crate) name: String,
    pub(crate) is_dir: bool,
}

/// The directories and regular files in `dir` with UTF-8 names.
pub(crate) fn children(dir: BorrowedFd<'_>) -> io::Result<Vec<Child>> {
    let mut out = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            },
            kind => kind,
        };
        match kind {
            FileType::Directory => out.push(Child {
                name: name.to_owned(),
                is_dir: true,
            }),
            FileType::RegularFile => out.push(Child {
                name: name.to_owned(),
                is_dir: false,
            }),
            _ => {}
        }
    }
    Ok(out)
}

/// Removes `name` from `parent`: a directory with everything in it (links
/// inside are removed, never followed), or a file or link in its place.
pub(crate) fn remove_tree(parent: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    match child_dir(parent, name) {
        Ok(dir) => {
            for child in children(dir.as_fd())? {
                if child.is_dir {
                    remove_tree(dir.as_fd(), &child.name)?;
                } else {
                    unlink(dir.as_fd(), &child.name)?;
                }
            }
            // Links and other kinds were not listed as children: remove them too.
            for entry in rfs::Dir::read_from(dir.as_fd())? {
                let entry = entry?;
                let Ok(n) = entry.file_name().to_str() else {
                    continue;
                };
                if n != "." && n != ".." {
                    unlink(dir.as_fd(), n)?;
                }
            }
            match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(Errno::NOENT) => Ok(()),
        Err(e) if is_absent(e) => unlink(parent, name),
        Err(e) => Err(e.into()),
    }
}

/// Unlinks a file or link; a missing one is fine.
pub(crate) fn unlink(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Size and modification time of the regular file `name` in `dir`, never
/// through a link; `None` when it vanished.
pub(crate) fn file_stat(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<rfs::Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
