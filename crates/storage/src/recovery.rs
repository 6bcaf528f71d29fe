//! Recovery: find the longest valid prefix of a segment.
//!
//! A segment is read front to back in large aligned windows. Each batch must
//! have a plausible length, magic 2, a matching CRC32C, a consistent record
//! count and the next offset in sequence. The first batch that fails, or the
//! zero padding a partial O_DIRECT block leaves behind, ends the valid
//! prefix. The caller truncates the file there and logs what it cut.

use std::path::Path;

use glommio::io::DmaFile;

use crate::dir::{align_down, align_up};
use crate::error::{glommio_io, StorageError, StorageResult};
use ringstream_core::batch::{self, BatchError, BatchInfo};
use ringstream_core::limits;
use ringstream_core::types::Offset;

/// Why a scan stopped before the end of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// The file ends inside a batch header or body (a torn write).
    Torn { need_bytes: u64, have_bytes: u64 },
    /// The bytes at the stop position are not a valid batch.
    Invalid(BatchError),
    /// A valid batch whose base offset breaks the sequence.
    Discontinuity { expected: Offset, found: Offset },
}

impl ScanStop {
    /// The scan met a zero batch length: the zeros that follow the data
    /// (a block's padding, or preallocated space), not a damaged batch.
    pub fn is_zero_fill(&self) -> bool {
        matches!(self, ScanStop::Invalid(BatchError::Length { length, .. }) if *length == batch::LOG_OVERHEAD_BYTES as i64)
    }
}

impl std::fmt::Display for ScanStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanStop::Torn { need_bytes, have_bytes } => {
                write!(f, "torn batch: needs {need_bytes} bytes, file has {have_bytes}")
            }
            ScanStop::Invalid(e) => write!(f, "invalid batch: {e}"),
            ScanStop::Discontinuity { expected, found } => {
                write!(f, "offset discontinuity: expected base offset {expected}, found {found}")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Bytes of whole valid batches from the start of the segment.
    pub valid_bytes: u64,
    /// The offset after the last valid batch.
    pub next_offset: Offset,
    pub batches: u64,
    /// None when the scan reached the end of the file exactly.
    pub stop: Option<ScanStop>,
}

/// Scans `file` (of `file_bytes` bytes) whose first batch must start at
/// `base_offset`. `on_batch` sees every valid batch with its position.
pub async fn scan_segment(
    file: &DmaFile,
    path: &Path,
    base_offset: Offset,
    file_bytes: u64,
    mut on_batch: impl FnMut(&BatchInfo, u64, &[u8]),
) -> StorageResult<ScanOutcome> {
    let mut position: u64 = 0;
    let mut expected = base_offset;
    let mut batches: u64 = 0;
    let stop = 'scan: loop {
        if position == file_bytes {
            break 'scan None;
        }
        assert!(position < file_bytes);
        // One window: from the block holding `position`, big enough for the
        // next batch once its length is known.
        let mut want = limits::recovery_read_bytes as u64;
        let window = loop {
            let start = align_down(position);
            let len = align_up(want.min(file_bytes - start));
            let window = file
                .read_at_aligned(start, len as usize)
                .await
                .map_err(|e| StorageError::io("read segment", path, glommio_io(e)))?;
            let have = (window.len() as u64).min(file_bytes - start);
            let local = position - start;
            let available = have - local;
            let slice = &window[local as usize..have as usize];
            match batch::peek_total_bytes(slice, limits::batch_bytes_max) {
                Ok(total) if total as u64 > available => {
                    if position + total as u64 > file_bytes {
                        break 'scan Some(ScanStop::Torn {
                            need_bytes: total as u64,
                            have_bytes: file_bytes - position,
                        });
                    }
                    // The batch continues past this window: widen it.
                    assert!((total as u64) + local > want);
                    want = align_up(total as u64 + local);
                    continue;
                }
                Ok(_) => break window,
                Err(BatchError::Truncated { need, have, .. }) if position + need as u64 > file_bytes => {
                    let _ = have;
                    break 'scan Some(ScanStop::Torn { need_bytes: need as u64, have_bytes: file_bytes - position });
                }
                Err(e) => break 'scan Some(ScanStop::Invalid(e)),
            }
        };
        let start = align_down(position);
        let have = (window.len() as u64).min(file_bytes - start);
        // Walk every whole batch in this window.
        loop {
            let local = (position - start) as usize;
            if position == file_bytes {
                break;
            }
            let slice = &window[local..have as usize];
            let total = match batch::peek_total_bytes(slice, limits::batch_bytes_max) {
                Ok(total) if total <= slice.len() => total,
                Ok(_) | Err(BatchError::Truncated { .. }) => break, // next window
                Err(e) => break 'scan Some(ScanStop::Invalid(e)),
            };
            let bytes = &slice[..total];
            let info = match batch::validate(bytes, limits::batch_bytes_max) {
                Ok(info) => info,
                Err(e) => break 'scan Some(ScanStop::Invalid(e)),
            };
            if info.base_offset != expected {
                break 'scan Some(ScanStop::Discontinuity { expected, found: info.base_offset });
            }
            on_batch(&info, position, bytes);
            batches += 1;
            expected = info.next_offset();
            position += total as u64;
        }
    };
    assert!(position <= file_bytes);
    Ok(ScanOutcome { valid_bytes: position, next_offset: expected, batches, stop })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeros after the data (padding, preallocated space) are the end of
    /// the log; a header with a bad length is damage.
    #[test]
    fn only_a_zero_header_is_zero_fill() {
        let stop =
            |bytes: &[u8]| ScanStop::Invalid(batch::peek_total_bytes(bytes, limits::batch_bytes_max).unwrap_err());
        assert!(stop(&[0u8; 64]).is_zero_fill());
        let mut damaged = [0u8; 64];
        damaged[8..12].copy_from_slice(&5i32.to_be_bytes()); // batchLength 5: total 17
        assert!(!stop(&damaged).is_zero_fill());
        assert!(!ScanStop::Torn { need_bytes: 61, have_bytes: 12 }.is_zero_fill());
        assert!(!ScanStop::Discontinuity { expected: Offset(3), found: Offset(9) }.is_zero_fill());
    }
}
