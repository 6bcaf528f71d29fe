//! One segment file of a partition log, written with O_DIRECT.
//!
//! A segment holds whole record batches, back to back, starting at the offset
//! in its name. Its logical size is the end of the last whole batch; the file
//! is longer while the segment is active: O_DIRECT writes whole 4 KiB blocks
//! (the last one zero-padded), and preallocation sets the file size ahead of
//! the data (its blocks read as zeros). A clean close or a seal truncates to
//! the logical size; after a crash, recovery finds the first zero batch
//! length (invalid) and truncates there.
//!
//! Only the shard's commit path writes a segment. Readers hold an
//! `Rc<DmaFile>` and only read below the acknowledged size.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use crate::disk::Disk;

use crate::dir;
use crate::error::{glommio_io, StorageError, StorageResult};
use crate::index::{OffsetIndex, TimeIndex};
use ringstream_core::batch::BatchInfo;
use ringstream_core::limits;
use ringstream_core::types::Offset;

/// Extra open(2) flags for a segment file (glommio adds O_DIRECT).
///
/// `sync_writes` (flush=always) adds O_DSYNC. A DMA write then completes
/// only when its data, and the metadata needed to read it back (the file
/// size, the extents it converted from unwritten), are on stable storage:
/// POSIX's synchronized I/O data integrity, the same guarantee as a write
/// followed by fdatasync. The kernel does the write and the flush in one
/// operation, so the shard submits one io_uring request per partition and
/// round instead of two, and wakes once instead of twice.
pub fn open_flags(sync_writes: bool) -> i32 {
    if sync_writes {
        libc::O_DSYNC
    } else {
        0
    }
}

pub struct Segment {
    pub base_offset: Offset,
    pub file: Rc<DmaFile>,
    pub log_path: PathBuf,
    /// End of the last whole batch written (completed writes only).
    pub size_bytes: u64,
    /// End of the last batch that was acknowledged; readers stop here.
    pub acked_bytes: u64,
    /// Offset after the last batch in the segment.
    pub next_offset: Offset,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Wall-clock time the segment became active, for `segment.ms`.
    pub created_ms: i64,
    /// Bytes reserved with fallocate, which also set the file's size to
    /// them (see `preallocate`).
    pub preallocated_bytes: u64,
}

impl Segment {
    /// Creates a new, empty, active segment. With `sync_writes` (flush=always)
    /// the file is opened O_DSYNC: each write completes only once it is
    /// durable, as if followed by fdatasync, in one io_uring operation
    /// instead of two (see `open_flags`).
    pub async fn create(
        dir: &Path,
        base_offset: Offset,
        segment_bytes: u64,
        now_ms: i64,
        sync_writes: bool,
    ) -> StorageResult<Segment> {
        assert!(base_offset.0 >= 0);
        let log_path = dir::segment_log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(open_flags(sync_writes))
            .dma_open(&log_path)
            .await
            .map_err(|e| StorageError::io("create segment", &log_path, glommio_io(e)))?;
        let mut segment = Segment::empty(base_offset, file, log_path, now_ms);
        segment.preallocate_for(0, segment_bytes).await?;
        Ok(segment)
    }

    /// Opens an existing segment file for reading and writing. The caller
    /// fills in sizes and indexes from recovery or from the clean marker.
    pub async fn open(
        dir: &Path,
        base_offset: Offset,
        now_ms: i64,
        sync_writes: bool,
    ) -> StorageResult<(Segment, u64)> {
        let log_path = dir::segment_log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(open_flags(sync_writes))
            .dma_open(&log_path)
            .await
            .map_err(|e| StorageError::io("open segment", &log_path, glommio_io(e)))?;
        let file_bytes =
            file.file_size().await.map_err(|e| StorageError::io("stat segment", &log_path, glommio_io(e)))?;
        Ok((Segment::empty(base_offset, file, log_path, now_ms), file_bytes))
    }

    fn empty(base_offset: Offset, file: DmaFile, log_path: PathBuf, now_ms: i64) -> Segment {
        Segment {
            base_offset,
            file: Rc::new(file),
            log_path,
            size_bytes: 0,
            acked_bytes: 0,
            next_offset: base_offset,
            offset_index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            created_ms: now_ms,
            preallocated_bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// Records a batch that a completed write placed at `position`.
    pub fn on_batch_written(&mut self, info: &BatchInfo, position: u64, index_interval_bytes: u32) {
        assert_eq!(position, self.size_bytes, "batches are contiguous");
        assert_eq!(info.base_offset, self.next_offset, "offsets are contiguous");
        let end = position + u64::from(info.total_bytes);
        assert!(end <= limits::segment_bytes_max);
        self.offset_index.on_append(info.base_offset, position as u32, info.total_bytes, index_interval_bytes);
        self.time_index.on_append(info.max_timestamp, info.last_offset(), info.total_bytes, index_interval_bytes);
        self.size_bytes = end;
        self.next_offset = info.next_offset();
    }

    /// Makes sure `[0, end)` is preallocated, in growing steps (`preallocation_target`).
    pub async fn preallocate_for(&mut self, end: u64, segment_bytes: u64) -> StorageResult<()> {
        if let Some(target) = preallocation_target(self.preallocated_bytes, end, segment_bytes) {
            preallocate(&self.file, &self.log_path, target).await?;
            self.preallocated_bytes = target;
        }
        Ok(())
    }

    /// Writes the index files (small, buffered, atomic).
    pub async fn write_indexes(&self, dir: &Path) -> StorageResult<()> {
        write_index_files(dir, self.base_offset, self.offset_index.encode(), self.time_index.encode()).await
    }

    /// What sealing needs, owned, so no borrow of the log is held while the
    /// seal's I/O runs.
    pub fn seal_job(&self) -> SealJob {
        assert_eq!(self.acked_bytes, self.size_bytes, "sealing with unacknowledged bytes");
        SealJob {
            file: self.file.clone(),
            log_path: self.log_path.clone(),
            base_offset: self.base_offset,
            size_bytes: self.size_bytes,
            index_bytes: self.offset_index.encode(),
            time_index_bytes: self.time_index.encode(),
        }
    }

    /// Deletes the segment's files (retention).
    pub async fn remove_files(&self, dir: &Path) -> StorageResult<()> {
        for path in dir::segment_file_paths(dir, self.base_offset) {
            dir::remove_if_exists(&path).await.map_err(|e| StorageError::io("remove segment file", &path, e))?;
        }
        Ok(())
    }
}

/// Seals a segment when it stops being the active one: trims the block
/// padding, makes data and size durable, and writes its indexes. The next
/// segment is created only after this completes, so a later segment's
/// existence implies every earlier one is sealed (recovery relies on it).
pub struct SealJob {
    file: Rc<DmaFile>,
    log_path: PathBuf,
    base_offset: Offset,
    size_bytes: u64,
    index_bytes: Vec<u8>,
    time_index_bytes: Vec<u8>,
}

impl SealJob {
    pub async fn run(self, dir: &Path, disk: &Disk) -> StorageResult<()> {
        disk.truncate(&self.file, &self.log_path, self.size_bytes)
            .await
            .map_err(|e| StorageError::io("truncate segment", &self.log_path, e))?;
        disk.sync(&self.file, &self.log_path)
            .await
            .map_err(|e| StorageError::io("fdatasync segment", &self.log_path, e))?;
        write_index_files(dir, self.base_offset, self.index_bytes, self.time_index_bytes).await
    }
}

pub async fn write_index_files(
    dir: &Path,
    base_offset: Offset,
    index_bytes: Vec<u8>,
    time_index_bytes: Vec<u8>,
) -> StorageResult<()> {
    let index_path = dir::segment_index_path(dir, base_offset);
    let time_path = dir::segment_time_index_path(dir, base_offset);
    for (path, bytes) in [(index_path, index_bytes), (time_path, time_index_bytes)] {
        let name = path.file_name().and_then(|n| n.to_str()).expect("index names are ASCII").to_owned();
        dir::write_file_atomic(dir, &name, bytes).await.map_err(|e| StorageError::io("write index", &path, e))?;
    }
    Ok(())
}

/// The new preallocation size if `[0, end)` is not covered yet. The step is
/// the size already written, between the min and max step: a busy segment
/// gets few large extents, while an idle partition (of many thousands)
/// reserves only the min step.
pub fn preallocation_target(preallocated_bytes: u64, end: u64, segment_bytes: u64) -> Option<u64> {
    if end <= preallocated_bytes && preallocated_bytes > 0 {
        return None;
    }
    let step = end.clamp(limits::segment_prealloc_step_min_bytes, limits::segment_prealloc_step_bytes);
    let target = (end + step).min(segment_bytes.max(end));
    Some(dir::align_up(target.max(end)))
}

/// Reserves `[0, target)` and sets the file's size to `target`.
///
/// Not FALLOC_FL_KEEP_SIZE: an append inside the file's size is not an
/// extending write, so ext4 issues the O_DIRECT write from the shard's
/// io_uring without handing it to an io-wq thread, and its O_DSYNC sync has
/// no new file size to write (the extent conversion it still persists runs
/// at completion). Measured at 200,000 records/s: the broker process's CPU
/// fell 35% and the host's (broker plus the kernel's workqueues) 12%
/// (BENCHMARKS.md, issue 16). The zero-filled tail is what recovery already
/// handles for block padding.
pub async fn preallocate(file: &DmaFile, log_path: &Path, target: u64) -> StorageResult<()> {
    file.pre_allocate(target, false).await.map_err(|e| StorageError::io("preallocate segment", log_path, glommio_io(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn preallocation_starts_small_and_grows_to_the_max_step() {
        // A new segment reserves only the min step.
        assert_eq!(preallocation_target(0, 0, GIB), Some(limits::segment_prealloc_step_min_bytes));
        // Covered: nothing to do.
        assert_eq!(preallocation_target(64 * 1024, 4096, GIB), None);
        // The step doubles the covered size while it is under the max step.
        assert_eq!(preallocation_target(64 * 1024, 100 * 1024, GIB), Some(200 * 1024));
        assert_eq!(preallocation_target(MIB, 3 * MIB, GIB), Some(6 * MIB));
        // Then it is the max step.
        assert_eq!(
            preallocation_target(100 * MIB, 101 * MIB, GIB),
            Some(101 * MIB + limits::segment_prealloc_step_bytes)
        );
        // Never past the segment size, unless one write is larger.
        assert_eq!(preallocation_target(MIB, 3 * MIB, 4 * MIB), Some(4 * MIB));
        assert_eq!(preallocation_target(MIB, 5 * MIB, 4 * MIB), Some(5 * MIB));
        // Always aligned for O_DIRECT.
        let target = preallocation_target(0, 5000, GIB).unwrap();
        assert_eq!(target % limits::io_alignment as u64, 0);
        assert!(target >= 5000);
    }

    #[test]
    fn ten_thousand_idle_partitions_reserve_little() {
        let per_partition = preallocation_target(0, 0, GIB).unwrap();
        assert!(10_000 * per_partition <= GIB);
    }
}
