//! The I/O seam: everything the crate does to the disk goes through [`Vfs`].
//!
//! Two implementations are public: [`crate::StdVfs`] (real files and
//! memmap2) and [`crate::FaultVfs`] (an in-memory disk that loses unsynced
//! writes on a simulated crash, tears writes, flips bits and fails syncs).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// A file system as the write-ahead log sees it.
///
/// Paths are plain file paths; a directory entry (a created, renamed or
/// removed file) is durable only after [`Vfs::sync_dir`] on its directory.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Creates a directory and its parents if they do not exist.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Names (not paths) of the files in `dir`, in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Creates a new file of exactly `len_bytes` zero bytes, with its space
    /// allocated and its length durable, and maps it. Fails if it exists.
    fn create_region(&self, path: &Path, len_bytes: usize) -> io::Result<Arc<dyn Region>>;

    /// Maps an existing file at its current length.
    fn open_region(&self, path: &Path) -> io::Result<Arc<dyn Region>>;

    /// Creates (or truncates) a file for sequential writing.
    fn create_file(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;

    /// Reads a whole file.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file. An existing mapping of it stays valid.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes a file's name like [`Vfs::remove_file`], but keeps its space
    /// allocated for [`RemovedFile::give_back`] to free a piece at a time.
    ///
    /// A file system that discards freed blocks online (ext4 mounted with
    /// `-o discard`) makes every other write and sync on the device wait
    /// while it discards: freeing a 64 MiB segment at once stalls the log's
    /// syncs for tens of milliseconds. Freed in pieces with pauses between
    /// them, the same work leaves room for the syncs. The default removes
    /// the file at once and has nothing left to free.
    fn remove_file_gradually(&self, path: &Path) -> io::Result<Option<Box<dyn RemovedFile>>> {
        self.remove_file(path).map(|()| None)
    }

    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// A file whose name is gone but whose space is still allocated (see
/// [`Vfs::remove_file_gradually`]). Dropping it frees the space at once.
pub trait RemovedFile: Send + fmt::Debug {
    /// Frees the space a piece at a time, pausing between pieces, and
    /// blocks until done. Call it with no lock held, once nothing maps the
    /// file any more: a mapping of the freed part would fault if touched.
    fn give_back(self: Box<Self>);
}

/// A file mapped as a fixed-length byte region.
///
/// Writes are visible to [`Region::inspect`] at once and become durable only
/// through [`Region::sync_range`]. The length never changes while mapped.
pub trait Region: Send + Sync + fmt::Debug {
    /// The length of the region.
    fn len_bytes(&self) -> usize;

    /// Copies `bytes` into the region at `offset`. Panics when the range
    /// falls outside the region: that is a programming error.
    fn write(&self, offset: usize, bytes: &[u8]);

    /// Sets `len` bytes at `offset` to zero.
    fn zero(&self, offset: usize, len: usize);

    /// Calls `visit` with the bytes `offset..offset + len`, borrowed without
    /// a copy where the implementation allows it.
    fn inspect(&self, offset: usize, len: usize, visit: &mut dyn FnMut(&[u8]));

    /// Hints that the whole region will be read soon (recovery reads the
    /// next segment ahead this way). The default does nothing.
    fn will_need(&self) {}

    /// Makes the bytes `offset..offset + len` durable (rounded out to whole
    /// pages). Returns only once they are.
    fn sync_range(&self, offset: usize, len: usize) -> io::Result<()>;
}

/// A file written front to back (snapshots and the intent file).
pub trait WritableFile: Send + fmt::Debug {
    /// Writes `bytes` at `offset`, growing the file as needed.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;

    /// Sends the bytes `offset..offset + len` to the device and waits until
    /// it has them, without flushing its cache: not durable yet, but the
    /// final [`WritableFile::sync`] then has little left to write. A large
    /// file written this way in pieces never puts one long burst of writes
    /// in front of the log's small syncs on the same disk. The default does
    /// nothing.
    fn write_back(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// Makes the file's contents and length durable.
    fn sync(&mut self) -> io::Result<()>;
}
