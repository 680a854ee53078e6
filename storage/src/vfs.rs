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

    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
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
