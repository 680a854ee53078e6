//! An in-memory [`Vfs`] that injects faults, for tests and simulation.
//!
//! Every file has two copies of its bytes: what the page cache shows
//! (`current`) and what survives a crash (`durable`). Writes change
//! `current` and are remembered, in order, as pending; a sync copies the
//! synced pages to `durable`. [`FaultVfs::crash_with`] throws `current` away
//! and can keep a chosen part of the pending writes, the way a real disk
//! may have written some of them before power was lost. Directory entries
//! work the same way: creations, renames and removals are durable only after
//! [`Vfs::sync_dir`].
//!
//! It is deterministic: no threads, no clock, ordered maps only, and one
//! seeded generator for every random choice.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::vfs::{Region, Vfs, WritableFile};

/// Page size the fake uses for syncs and for random page loss.
pub const FAULT_PAGE_BYTES: usize = 4096;

/// What survives a simulated crash besides the synced bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced byte is lost.
    LoseUnsynced,
    /// The first `bytes` unsynced bytes, in the order they were written,
    /// reached the disk; the write that crosses the limit is torn there.
    KeepUnsyncedPrefix {
        /// How many unsynced bytes survive.
        bytes: usize,
    },
    /// Each dirty page independently survives with its latest contents or
    /// is lost, chosen by the seeded generator (the kernel writes back pages
    /// of a mapping in any order).
    KeepRandomPages,
}

/// The fault-injecting in-memory file system. Clones share one disk.
#[derive(Clone, Debug)]
pub struct FaultVfs {
    disk: Arc<Mutex<Disk>>,
}

#[derive(Clone, Debug)]
struct Disk {
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    directories: BTreeSet<PathBuf>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    pending: Vec<PendingWrite>,
    /// Syncs to let through before one fails with EIO.
    syncs_before_failure: Option<u64>,
    capacity_bytes: Option<usize>,
    random: SplitMix64,
    sync_calls: u64,
}

#[derive(Clone, Debug)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Clone, Debug)]
struct PendingWrite {
    inode: u64,
    offset: usize,
    bytes: Vec<u8>,
}

/// SplitMix64: tiny, fast and good enough to pick pages.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut value = self.0;
        value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        value ^ (value >> 31)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

fn stale_handle() -> io::Error {
    io::Error::other("file handle from before a simulated crash")
}

impl Disk {
    fn used_bytes(&self) -> usize {
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        live.iter()
            .map(|inode| self.inodes[inode].current.len())
            .sum()
    }

    fn reserve(&self, additional_bytes: usize) -> io::Result<()> {
        if let Some(capacity) = self.capacity_bytes
            && self.used_bytes() + additional_bytes > capacity
        {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn take_sync_failure(&mut self) -> io::Result<()> {
        self.sync_calls += 1;
        match self.syncs_before_failure {
            Some(0) => {
                self.syncs_before_failure = None;
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
            Some(remaining) => {
                self.syncs_before_failure = Some(remaining - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn inode_at(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn create_inode(&mut self, path: &Path, current: Vec<u8>, durable: Vec<u8>) -> io::Result<u64> {
        let parent = path.parent().unwrap_or(Path::new(""));
        if !self.directories.contains(parent) {
            return Err(not_found(parent));
        }
        let inode = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(inode, Inode { current, durable });
        self.names.insert(path.to_path_buf(), inode);
        Ok(inode)
    }

    fn write(&mut self, inode: u64, offset: usize, bytes: &[u8]) {
        let file = self.inodes.get_mut(&inode).expect("live inode");
        let end = offset + bytes.len();
        if file.current.len() < end {
            file.current.resize(end, 0);
        }
        file.current[offset..end].copy_from_slice(bytes);
        self.pending.push(PendingWrite {
            inode,
            offset,
            bytes: bytes.to_vec(),
        });
    }

    /// Makes `start..end` of the inode durable and forgets the pending
    /// writes it covers.
    fn make_durable(&mut self, inode: u64, start: usize, end: usize) {
        let file = self.inodes.get_mut(&inode).expect("live inode");
        let end = end.min(file.current.len());
        if file.durable.len() < file.current.len() {
            file.durable.resize(file.current.len(), 0);
        }
        if start < end {
            file.durable[start..end].copy_from_slice(&file.current[start..end]);
        }
        let mut kept = Vec::with_capacity(self.pending.len());
        for write in self.pending.drain(..) {
            let write_end = write.offset + write.bytes.len();
            if write.inode != inode || write_end <= start || write.offset >= end {
                kept.push(write);
                continue;
            }
            if write.offset < start {
                kept.push(PendingWrite {
                    inode,
                    offset: write.offset,
                    bytes: write.bytes[..start - write.offset].to_vec(),
                });
            }
            if write_end > end {
                kept.push(PendingWrite {
                    inode,
                    offset: end,
                    bytes: write.bytes[end - write.offset..].to_vec(),
                });
            }
        }
        self.pending = kept;
    }

    fn crash(&mut self, mode: CrashMode) {
        self.generation += 1;
        let pending = std::mem::take(&mut self.pending);
        let mut surviving: Vec<PendingWrite> = Vec::new();
        match mode {
            CrashMode::LoseUnsynced => {}
            CrashMode::KeepUnsyncedPrefix { bytes } => {
                let mut budget = bytes;
                for mut write in pending {
                    if budget == 0 {
                        break;
                    }
                    write.bytes.truncate(budget);
                    budget -= write.bytes.len();
                    surviving.push(write);
                }
            }
            CrashMode::KeepRandomPages => {
                let mut dirty_pages: BTreeSet<(u64, usize)> = BTreeSet::new();
                for write in &pending {
                    let first_page = write.offset / FAULT_PAGE_BYTES;
                    let last_page = (write.offset + write.bytes.len()).div_ceil(FAULT_PAGE_BYTES);
                    for page in first_page..last_page {
                        dirty_pages.insert((write.inode, page));
                    }
                }
                for (inode, page) in dirty_pages {
                    if self.random.next().is_multiple_of(2) {
                        continue;
                    }
                    let file = &self.inodes[&inode];
                    let start = page * FAULT_PAGE_BYTES;
                    let end = (start + FAULT_PAGE_BYTES).min(file.current.len());
                    surviving.push(PendingWrite {
                        inode,
                        offset: start,
                        bytes: file.current[start..end].to_vec(),
                    });
                }
            }
        }
        self.names = self.durable_names.clone();
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|inode, _| live.contains(inode));
        for write in surviving {
            if let Some(file) = self.inodes.get_mut(&write.inode) {
                let end = write.offset + write.bytes.len();
                if file.durable.len() < end {
                    file.durable.resize(end, 0);
                }
                file.durable[write.offset..end].copy_from_slice(&write.bytes);
            }
        }
        for file in self.inodes.values_mut() {
            file.current = file.durable.clone();
        }
    }
}

impl FaultVfs {
    /// An empty disk whose random choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        let mut directories = BTreeSet::new();
        directories.insert(PathBuf::new());
        directories.insert(PathBuf::from("/"));
        FaultVfs {
            disk: Arc::new(Mutex::new(Disk {
                generation: 0,
                directories,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                inodes: BTreeMap::new(),
                next_inode: 1,
                pending: Vec::new(),
                syncs_before_failure: None,
                capacity_bytes: None,
                random: SplitMix64(seed),
                sync_calls: 0,
            })),
        }
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// An independent copy of the whole disk, pending writes included, so a
    /// test can crash the same state many ways.
    pub fn fork(&self) -> FaultVfs {
        let copy = self.disk().clone();
        FaultVfs {
            disk: Arc::new(Mutex::new(copy)),
        }
    }

    /// Simulates power loss: every unsynced byte and directory change is lost.
    pub fn crash(&self) {
        self.crash_with(CrashMode::LoseUnsynced);
    }

    /// Simulates power loss, keeping the unsynced writes `mode` chooses.
    /// Handles opened before the crash fail from now on.
    pub fn crash_with(&self, mode: CrashMode) {
        self.disk().crash(mode);
    }

    /// Total bytes written but not yet synced.
    pub fn unsynced_bytes(&self) -> usize {
        self.disk()
            .pending
            .iter()
            .map(|write| write.bytes.len())
            .sum()
    }

    /// Flips one bit of a file, in both the cached and the durable copy, as
    /// media corruption would.
    pub fn flip_bit(&self, path: &Path, offset: usize, bit: u8) -> io::Result<()> {
        let mut disk = self.disk();
        let inode = disk.inode_at(path)?;
        let file = disk.inodes.get_mut(&inode).expect("live inode");
        if offset >= file.current.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset past the end of the file",
            ));
        }
        file.current[offset] ^= 1 << (bit % 8);
        if offset < file.durable.len() {
            file.durable[offset] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    /// Overwrites bytes of a file in both copies, as a stray writer would.
    pub fn overwrite(&self, path: &Path, offset: usize, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk();
        let inode = disk.inode_at(path)?;
        let file = disk.inodes.get_mut(&inode).expect("live inode");
        let end = offset + bytes.len();
        for copy in [&mut file.current, &mut file.durable] {
            if copy.len() < end {
                copy.resize(end, 0);
            }
            copy[offset..end].copy_from_slice(bytes);
        }
        Ok(())
    }

    /// The bytes of a file as a reader sees them now.
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.disk();
        let inode = disk.inode_at(path)?;
        Ok(disk.inodes[&inode].current.clone())
    }

    /// Whether a file exists now.
    pub fn exists(&self, path: &Path) -> bool {
        self.disk().names.contains_key(path)
    }

    /// Makes the next sync of any kind (region, file or directory) fail
    /// with EIO. The data it would have synced stays unsynced.
    pub fn fail_next_sync(&self) {
        self.fail_sync_after(0);
    }

    /// Lets `successful_syncs` more syncs succeed, then fails the next one
    /// with EIO (to stop a multi-step operation at every step in turn).
    pub fn fail_sync_after(&self, successful_syncs: u64) {
        self.disk().syncs_before_failure = Some(successful_syncs);
    }

    /// Cancels a sync failure scheduled by [`FaultVfs::fail_sync_after`]
    /// that has not fired yet.
    pub fn cancel_sync_failure(&self) {
        self.disk().syncs_before_failure = None;
    }

    /// Limits the total size of all files; growing past it fails with
    /// ENOSPC. `None` removes the limit.
    pub fn set_capacity_bytes(&self, capacity_bytes: Option<usize>) {
        self.disk().capacity_bytes = capacity_bytes;
    }

    /// Total size of all files now.
    pub fn used_bytes(&self) -> usize {
        self.disk().used_bytes()
    }

    /// How many syncs (region, file and directory) were requested so far.
    pub fn sync_calls(&self) -> u64 {
        self.disk().sync_calls
    }
}

impl Vfs for FaultVfs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        for ancestor in dir.ancestors() {
            disk.directories.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let disk = self.disk();
        if !disk.directories.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(disk
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    fn create_region(&self, path: &Path, len_bytes: usize) -> io::Result<Arc<dyn Region>> {
        let mut disk = self.disk();
        if disk.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        disk.reserve(len_bytes)?;
        let inode = disk.create_inode(path, vec![0; len_bytes], vec![0; len_bytes])?;
        Ok(Arc::new(FaultRegion {
            disk: self.disk.clone(),
            inode,
            generation: disk.generation,
            len_bytes,
        }))
    }

    fn open_region(&self, path: &Path) -> io::Result<Arc<dyn Region>> {
        let disk = self.disk();
        let inode = disk.inode_at(path)?;
        let len_bytes = disk.inodes[&inode].current.len();
        if len_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "cannot map an empty file",
            ));
        }
        Ok(Arc::new(FaultRegion {
            disk: self.disk.clone(),
            inode,
            generation: disk.generation,
            len_bytes,
        }))
    }

    fn create_file(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut disk = self.disk();
        let inode = match disk.names.get(path) {
            Some(&inode) => {
                let file = disk.inodes.get_mut(&inode).expect("live inode");
                file.current.clear();
                inode
            }
            None => disk.create_inode(path, Vec::new(), Vec::new())?,
        };
        Ok(Box::new(FaultFile {
            disk: self.disk.clone(),
            inode,
            generation: disk.generation,
        }))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.contents(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        let inode = disk.names.remove(from).ok_or_else(|| not_found(from))?;
        disk.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        disk.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        disk.take_sync_failure()?;
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        let current: Vec<(PathBuf, u64)> = disk
            .names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, &inode)| (path.clone(), inode))
            .collect();
        disk.durable_names.retain(|path, _| !in_dir(path));
        disk.durable_names.extend(current);
        Ok(())
    }
}

/// A mapped file on the fake disk.
#[derive(Debug)]
struct FaultRegion {
    disk: Arc<Mutex<Disk>>,
    inode: u64,
    generation: u64,
    len_bytes: usize,
}

impl FaultRegion {
    /// The disk, if this handle survived every crash so far.
    fn live_disk(&self) -> Option<MutexGuard<'_, Disk>> {
        let disk = self
            .disk
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        (disk.generation == self.generation).then_some(disk)
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

impl Region for FaultRegion {
    fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    fn write(&self, offset: usize, bytes: &[u8]) {
        self.check_range(offset, bytes.len());
        // A process that outlived its simulated crash writes into memory
        // that no longer reaches any disk.
        if let Some(mut disk) = self.live_disk() {
            disk.write(self.inode, offset, bytes);
        }
    }

    fn zero(&self, offset: usize, len: usize) {
        self.write(offset, &vec![0; len]);
    }

    fn inspect(&self, offset: usize, len: usize, visit: &mut dyn FnMut(&[u8])) {
        self.check_range(offset, len);
        match self.live_disk() {
            Some(disk) => visit(&disk.inodes[&self.inode].current[offset..offset + len]),
            None => visit(&vec![0; len]),
        }
    }

    fn sync_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.check_range(offset, len);
        let Some(mut disk) = self.live_disk() else {
            return Err(stale_handle());
        };
        disk.take_sync_failure()?;
        let start = offset / FAULT_PAGE_BYTES * FAULT_PAGE_BYTES;
        let end = (offset + len)
            .next_multiple_of(FAULT_PAGE_BYTES)
            .min(self.len_bytes);
        disk.make_durable(self.inode, start, end);
        Ok(())
    }
}

/// A sequentially written file on the fake disk.
#[derive(Debug)]
struct FaultFile {
    disk: Arc<Mutex<Disk>>,
    inode: u64,
    generation: u64,
}

impl FaultFile {
    fn live_disk(&self) -> io::Result<MutexGuard<'_, Disk>> {
        let disk = self
            .disk
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if disk.generation != self.generation {
            return Err(stale_handle());
        }
        Ok(disk)
    }
}

impl WritableFile for FaultFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.live_disk()?;
        let offset = offset as usize;
        let growth = (offset + bytes.len()).saturating_sub(disk.inodes[&self.inode].current.len());
        disk.reserve(growth)?;
        disk.write(self.inode, offset, bytes);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut disk = self.live_disk()?;
        disk.take_sync_failure()?;
        let file = disk.inodes.get_mut(&self.inode).expect("live inode");
        let len = file.current.len();
        file.durable.truncate(len);
        disk.make_durable(self.inode, 0, len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (FaultVfs, PathBuf) {
        let vfs = FaultVfs::new(1);
        let dir = PathBuf::from("/data");
        vfs.create_dir_all(&dir).unwrap();
        (vfs, dir)
    }

    #[test]
    fn a_crash_loses_unsynced_region_writes_and_keeps_synced_ones() {
        let (vfs, dir) = setup();
        let path = dir.join("a");
        let region = vfs.create_region(&path, 3 * FAULT_PAGE_BYTES).unwrap();
        vfs.sync_dir(&dir).unwrap();
        region.write(0, b"synced");
        region.sync_range(0, 6).unwrap();
        region.write(FAULT_PAGE_BYTES * 2, b"lost");
        vfs.crash();
        let bytes = vfs.contents(&path).unwrap();
        assert_eq!(&bytes[0..6], b"synced");
        assert_eq!(
            &bytes[FAULT_PAGE_BYTES * 2..FAULT_PAGE_BYTES * 2 + 4],
            &[0; 4]
        );
    }

    #[test]
    fn a_file_whose_directory_was_never_synced_vanishes_in_a_crash() {
        let (vfs, dir) = setup();
        let region = vfs.create_region(&dir.join("a"), FAULT_PAGE_BYTES).unwrap();
        region.sync_range(0, FAULT_PAGE_BYTES).unwrap();
        vfs.crash();
        assert!(!vfs.exists(&dir.join("a")));
    }

    #[test]
    fn keep_unsynced_prefix_tears_the_crossing_write() {
        let (vfs, dir) = setup();
        let path = dir.join("a");
        let region = vfs.create_region(&path, FAULT_PAGE_BYTES).unwrap();
        vfs.sync_dir(&dir).unwrap();
        region.write(0, b"abcd");
        region.write(10, b"efgh");
        vfs.crash_with(CrashMode::KeepUnsyncedPrefix { bytes: 6 });
        let bytes = vfs.contents(&path).unwrap();
        assert_eq!(&bytes[0..4], b"abcd");
        assert_eq!(&bytes[10..14], b"ef\0\0");
    }

    #[test]
    fn random_page_loss_is_the_same_for_the_same_seed() {
        let outcome = |seed| {
            let vfs = FaultVfs::new(seed);
            let dir = PathBuf::from("/d");
            vfs.create_dir_all(&dir).unwrap();
            let region = vfs
                .create_region(&dir.join("a"), 16 * FAULT_PAGE_BYTES)
                .unwrap();
            vfs.sync_dir(&dir).unwrap();
            region.write(0, &vec![7; 16 * FAULT_PAGE_BYTES]);
            vfs.crash_with(CrashMode::KeepRandomPages);
            vfs.contents(&dir.join("a")).unwrap()
        };
        assert_eq!(outcome(5), outcome(5));
        let kept_pages = outcome(5)
            .chunks(FAULT_PAGE_BYTES)
            .filter(|page| page[0] == 7)
            .count();
        assert!(
            kept_pages > 0 && kept_pages < 16,
            "kept {kept_pages} of 16 pages"
        );
    }

    #[test]
    fn a_failed_sync_reports_eio_and_leaves_the_data_unsynced() {
        let (vfs, dir) = setup();
        let path = dir.join("a");
        let region = vfs.create_region(&path, FAULT_PAGE_BYTES).unwrap();
        vfs.sync_dir(&dir).unwrap();
        region.write(0, b"data");
        vfs.fail_next_sync();
        let error = region.sync_range(0, 4).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EIO));
        vfs.crash();
        assert_eq!(&vfs.contents(&path).unwrap()[0..4], &[0; 4]);
    }

    #[test]
    fn growing_past_the_capacity_fails_with_enospc() {
        let (vfs, dir) = setup();
        vfs.set_capacity_bytes(Some(2 * FAULT_PAGE_BYTES));
        vfs.create_region(&dir.join("a"), FAULT_PAGE_BYTES).unwrap();
        let error = vfs
            .create_region(&dir.join("b"), 2 * FAULT_PAGE_BYTES)
            .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
        vfs.remove_file(&dir.join("a")).unwrap();
        vfs.create_region(&dir.join("b"), 2 * FAULT_PAGE_BYTES)
            .unwrap();
    }
}
