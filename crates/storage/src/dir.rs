//! On-disk layout of a data directory, and the file helpers storage shares.
//!
//! ```text
//! <data_dir>/
//!   .ringstream-dma-probe          4 KiB marker read at start (glommio #605)
//!   placement-table                partition → shard table (shard 0 writes it)
//!   <topic>-<partition>/
//!     00000000000000000000.log        segment, named by its base offset
//!     00000000000000000000.index      sparse offset index (Kafka format)
//!     00000000000000000000.timeindex  time index (Kafka format)
//!     00000000000000000000.txnindex   aborted transactions (Kafka format; only when any)
//!     leader-epoch-checkpoint         epoch → start offset (Kafka format)
//!     producer-snapshot               idempotent producers' last batches
//!     clean-shutdown                  present only after a clean close
//! ```
//!
//! The names follow Kafka's so that operators find what they expect.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::{BufferedFile, Directory, DmaFile};

use crate::error::glommio_io;
use ringstream_core::limits;
use ringstream_core::types::Offset;

pub const PROBE_FILE_NAME: &str = ".ringstream-dma-probe";
pub const PLACEMENT_FILE_NAME: &str = "placement-table";
pub const EPOCH_CHECKPOINT_FILE_NAME: &str = "leader-epoch-checkpoint";
pub const CLEAN_MARKER_FILE_NAME: &str = "clean-shutdown";
pub const PRODUCER_SNAPSHOT_FILE_NAME: &str = "producer-snapshot";
/// A partition's log start offset when DeleteRecords moved it above its
/// oldest segment's base (Kafka's log-start-offset-checkpoint, per partition).
pub const LOG_START_FILE_NAME: &str = "log-start-offset";
/// A replicated partition's high watermark, written about once a second.
pub const HIGH_WATERMARK_FILE_NAME: &str = "high-watermark";

pub fn segment_log_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{:020}.log", base_offset.0))
}

pub fn segment_index_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{:020}.index", base_offset.0))
}

pub fn segment_time_index_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{:020}.timeindex", base_offset.0))
}

/// The base offset encoded in a segment file name, or None for other files.
/// The segment's aborted-transaction index (Kafka's `.txnindex`).
pub fn segment_txn_index_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{:020}.txnindex", base_offset.0))
}

/// Every file of one segment: log, offset index, time index, transaction index.
pub fn segment_file_paths(dir: &Path, base_offset: Offset) -> [PathBuf; 4] {
    [
        segment_log_path(dir, base_offset),
        segment_index_path(dir, base_offset),
        segment_time_index_path(dir, base_offset),
        segment_txn_index_path(dir, base_offset),
    ]
}

pub fn parse_segment_log_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base: i64 = digits.parse().ok()?;
    Some(Offset(base))
}

/// Segment base offsets present in a partition directory, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<Offset>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_log_name) {
            bases.push(base);
        }
    }
    bases.sort();
    Ok(bases)
}

/// Workaround for glommio 0.9 issue #605 (DataDog/glommio#605).
///
/// The first `DmaFile` a process opens on a block device decides, for the
/// whole process, whether that device supports iopoll: glommio issues one
/// polled read and records the outcome. If that file is empty, the read
/// returns 0 bytes without error, the device is wrongly marked pollable, and
/// every later DMA read on it fails with EOPNOTSUPP. A fresh segment is
/// exactly such a file. So before any segment is opened, we open and read a
/// non-empty marker written with buffered I/O.
pub async fn probe_dma_device(data_dir: &Path) -> io::Result<()> {
    let path = data_dir.join(PROBE_FILE_NAME);
    let len_ok = std::fs::metadata(&path).map(|m| m.len() == limits::io_alignment as u64);
    if !matches!(len_ok, Ok(true)) {
        // Blocking std I/O, once, at start-up, before any shard serves.
        std::fs::write(&path, vec![b'R'; limits::io_alignment])?;
    }
    let file = DmaFile::open(&path).await.map_err(glommio_io)?;
    let read = file.read_at_aligned(0, limits::io_alignment).await.map_err(glommio_io);
    let _ = file.close().await;
    let read = read?;
    if read.len() != limits::io_alignment {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("DMA probe of {} read {} bytes", path.display(), read.len()),
        ));
    }
    Ok(())
}

/// Writes `bytes` to `dir/name` atomically: temp file, fdatasync, rename,
/// directory fsync. Used for indexes and checkpoints (small, infrequent).
pub async fn write_file_atomic(dir: &Path, name: &str, bytes: Vec<u8>) -> io::Result<()> {
    let target = dir.join(name);
    // A unique temp name: writers of the same file never share a temp file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = dir.join(format!("{name}.{}.{serial}.tmp", std::process::id()));
    let file = BufferedFile::create(&temp).await.map_err(glommio_io)?;
    let len = bytes.len();
    let written = file.write_at(bytes, 0).await.map_err(glommio_io)?;
    if written != len {
        let _ = file.close().await;
        return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write to {}", temp.display())));
    }
    file.fdatasync().await.map_err(glommio_io)?;
    file.close().await.map_err(glommio_io)?;
    glommio::io::rename(&temp, &target).await.map_err(glommio_io)?;
    sync_dir(dir).await
}

/// fsync a directory so that file creations, renames and removals in it are
/// durable.
pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    let handle = Directory::open(dir).await.map_err(glommio_io)?;
    handle.sync().await.map_err(glommio_io)?;
    handle.close().await.map_err(glommio_io)
}

/// Removes a file if it exists.
pub async fn remove_if_exists(path: &Path) -> io::Result<()> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = glommio_io(e);
            if e.kind() == io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

pub fn align_down(value: u64) -> u64 {
    value & !(limits::io_alignment as u64 - 1)
}

pub fn align_up(value: u64) -> u64 {
    align_down(value + limits::io_alignment as u64 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        for base in [0i64, 1, 42, i64::MAX] {
            let path = segment_log_path(Path::new("/d"), Offset(base));
            let name = path.file_name().unwrap().to_str().unwrap();
            assert_eq!(parse_segment_log_name(name), Some(Offset(base)));
        }
        assert_eq!(parse_segment_log_name("0.log"), None);
        assert_eq!(parse_segment_log_name("0000000000000000000a.log"), None);
        assert_eq!(parse_segment_log_name("00000000000000000000.index"), None);
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(0), 0);
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        assert_eq!(align_up(0), 0);
    }
}
