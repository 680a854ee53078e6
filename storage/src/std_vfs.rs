//! The production [`Vfs`]: `std::fs` files, mapped with memmap2.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use memmap2::{Advice, MmapRaw};

use crate::vfs::{Region, Vfs, WritableFile};

/// Size of the zero buffer used to preallocate by writing.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// How a new segment file gets its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preallocation {
    /// Write zeros over the whole file, then fsync. The blocks are allocated
    /// and written, so a later fdatasync of appended data never has to
    /// commit extent metadata. Costs one full write of the segment.
    WriteZeros,
    /// `fallocate(2)`: allocates without writing (unwritten extents). Cheap
    /// to create, but the first sync of each region converts extents, which
    /// is a journal commit. Falls back to [`Preallocation::WriteZeros`]
    /// where fallocate is unsupported.
    Fallocate,
}

/// How bytes get into a mapped segment. Reads always go through the
/// mapping; Linux keeps the mapping and the file's page cache coherent, so
/// either way a write is visible to readers at once, and `sync_range`
/// makes it durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMethod {
    /// `memcpy` into the mapping: no system call per append, but every
    /// first write to a page takes a page fault.
    Mapped,
    /// `pwrite(2)` into the file: one system call per write, no faults.
    Pwrite,
}

/// Real files and memory maps.
#[derive(Clone, Debug)]
pub struct StdVfs {
    preallocation: Preallocation,
    write_method: WriteMethod,
}

impl Default for StdVfs {
    fn default() -> Self {
        StdVfs::new()
    }
}

impl StdVfs {
    /// The production setup: [`Preallocation::Fallocate`] and
    /// [`WriteMethod::Mapped`] (see the `wal` benchmark for the figures
    /// behind both choices).
    pub fn new() -> Self {
        StdVfs {
            preallocation: Preallocation::Fallocate,
            write_method: WriteMethod::Mapped,
        }
    }

    /// The production setup with another preallocation.
    pub fn with_preallocation(preallocation: Preallocation) -> Self {
        StdVfs::new().preallocation(preallocation)
    }

    /// Chooses how segment files are preallocated.
    pub fn preallocation(mut self, preallocation: Preallocation) -> Self {
        self.preallocation = preallocation;
        self
    }

    /// Chooses how bytes are written into segments.
    pub fn write_method(mut self, write_method: WriteMethod) -> Self {
        self.write_method = write_method;
        self
    }
}

fn preallocate_by_writing(file: &mut File, len_bytes: usize) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(len_bytes.max(1))];
    let mut remaining = len_bytes;
    while remaining > 0 {
        let chunk = remaining.min(zeros.len());
        file.write_all(&zeros[..chunk])?;
        remaining -= chunk;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn preallocate_by_fallocate(file: &mut File, len_bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is
    // owned by `file` and open for writing.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_bytes as libc::off_t) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return preallocate_by_writing(file, len_bytes);
    }
    Err(error)
}

#[cfg(not(target_os = "linux"))]
fn preallocate_by_fallocate(file: &mut File, len_bytes: usize) -> io::Result<()> {
    preallocate_by_writing(file, len_bytes)
}

impl Vfs for StdVfs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    fn create_region(&self, path: &Path, len_bytes: usize) -> io::Result<Arc<dyn Region>> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let prepared = match self.preallocation {
            Preallocation::WriteZeros => preallocate_by_writing(&mut file, len_bytes),
            Preallocation::Fallocate => preallocate_by_fallocate(&mut file, len_bytes),
        }
        .and_then(|()| file.sync_all());
        if let Err(error) = prepared {
            // A half-allocated file must not be mistaken for a segment later.
            let _ = std::fs::remove_file(path);
            return Err(error);
        }
        map_file(file, self.write_method)
    }

    fn open_region(&self, path: &Path) -> io::Result<Arc<dyn Region>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        map_file(file, self.write_method)
    }

    fn create_file(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

fn map_file(file: File, write_method: WriteMethod) -> io::Result<Arc<dyn Region>> {
    let len_bytes = usize::try_from(file.metadata()?.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to map"))?;
    if len_bytes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "cannot map an empty file",
        ));
    }
    let map = MmapRaw::map_raw(&file)?;
    Ok(Arc::new(MappedRegion {
        map,
        len_bytes,
        access: RwLock::new(()),
        write_method,
        write_error: Mutex::new(None),
        file,
    }))
}

/// A read-write shared mapping of a whole file.
///
/// The crate never truncates a mapped file, so the mapping stays valid for
/// the life of this value.
struct MappedRegion {
    map: MmapRaw,
    len_bytes: usize,
    /// Writers take it exclusively and readers shared, so a borrowed slice
    /// handed to `inspect` is never written while it is alive. `sync_range`
    /// takes no lock: writeback only reads the pages, inside the kernel.
    access: RwLock<()>,
    write_method: WriteMethod,
    /// A failed `pwrite`, reported by the next `sync_range`, the way a
    /// failed writeback of a mapping is.
    write_error: Mutex<Option<io::Error>>,
    file: File,
}

impl std::fmt::Debug for MappedRegion {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MappedRegion")
            .field("len_bytes", &self.len_bytes)
            .finish()
    }
}

impl MappedRegion {
    fn pwrite(&self, offset: usize, bytes: &[u8]) {
        if let Err(error) = self.file.write_all_at(bytes, offset as u64) {
            let mut slot = self
                .write_error
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            slot.get_or_insert(error);
        }
    }

    fn check_range(&self, offset: usize, len: usize) {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.len_bytes),
            "range {offset}+{len} outside a region of {} bytes",
            self.len_bytes
        );
    }
}

impl Region for MappedRegion {
    fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    fn write(&self, offset: usize, bytes: &[u8]) {
        self.check_range(offset, bytes.len());
        let _exclusive = self
            .access
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        match self.write_method {
            // SAFETY: the range is inside the mapping (checked above), the
            // mapping lives as long as `self`, and the exclusive lock keeps
            // every borrowed slice from `inspect` away while bytes change.
            WriteMethod::Mapped => unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    self.map.as_mut_ptr().add(offset),
                    bytes.len(),
                );
            },
            WriteMethod::Pwrite => self.pwrite(offset, bytes),
        }
    }

    fn zero(&self, offset: usize, len: usize) {
        self.check_range(offset, len);
        let _exclusive = self
            .access
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        match self.write_method {
            // SAFETY: as in `write`.
            WriteMethod::Mapped => unsafe {
                std::ptr::write_bytes(self.map.as_mut_ptr().add(offset), 0, len);
            },
            WriteMethod::Pwrite => {
                let zeros = vec![0u8; len.min(ZERO_CHUNK_BYTES)];
                let mut done = 0;
                while done < len {
                    let chunk = (len - done).min(zeros.len());
                    self.pwrite(offset + done, &zeros[..chunk]);
                    done += chunk;
                }
            }
        }
    }

    fn inspect(&self, offset: usize, len: usize, visit: &mut dyn FnMut(&[u8])) {
        self.check_range(offset, len);
        let _shared = self
            .access
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        // SAFETY: the range is inside the live mapping, and no write happens
        // while the shared lock is held.
        let bytes = unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) };
        visit(bytes);
    }

    fn will_need(&self) {
        // Only a hint: a failure changes nothing but speed.
        let _ = self.map.advise(Advice::WillNeed);
    }

    fn sync_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.check_range(offset, len);
        let failed_write = self
            .write_error
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        if let Some(error) = failed_write {
            return Err(error);
        }
        if len == 0 {
            return Ok(());
        }
        // fdatasync of the whole file rather than msync(MS_SYNC) of the
        // range: on Linux both write back pages dirtied through a shared
        // mapping (the mapping is the file's page cache) and both flush the
        // device cache, and fdatasync measured faster here (the `wal`
        // benchmark and the notes in the crate docs). Syncing a little more
        // than the range is harmless.
        self.file.sync_data()
    }
}

#[derive(Debug)]
struct StdFile {
    file: File,
}

impl WritableFile for StdFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    #[cfg(target_os = "linux")]
    fn write_back(&mut self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: sync_file_range only reads its integer arguments; the
        // descriptor is owned by `self.file`.
        let result = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                flags,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}
