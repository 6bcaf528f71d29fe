//! The reader: batch-cache hits as slices of the written buffers, misses
//! through the offset index as DMA reads; long-poll waiters; timestamp lookups.

use crate::error::{glommio_io, StorageError, StorageResult};
use futures_channel::oneshot;
use glommio::io::ReadResult;
use ringstream_core::batch::{self, BatchHeader};
use ringstream_core::limits;
use ringstream_core::limits::timestamp_scan_records_max;
use ringstream_core::types::{Offset, TopicPartition};
use std::time::Duration;

use super::*;

impl ShardStorage {
    pub async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> StorageResult<ReadOutput> {
        self.read_counted(tp, offset, max_bytes, ReadBound::HighWatermark).await
    }

    /// A consumer's read, counted in the partition's traffic (the balancer's load).
    async fn read_counted(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
        bound: ReadBound,
    ) -> StorageResult<ReadOutput> {
        let partition = self.partition(tp)?;
        let read = self.read_from(&partition, tp, offset, max_bytes, bound).await;
        if let Ok(out) = &read {
            partition.traffic_bytes.set(partition.traffic_bytes.get() + out.bytes as u64);
        }
        read
    }

    /// Reads like `read`, but up to the log end rather than the high
    /// watermark: a new leader's group coordinator loads its whole log
    /// (everything in a leader's log is committed or about to be).
    pub async fn read_to_log_end(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> StorageResult<ReadOutput> {
        let partition = self.partition(tp)?;
        self.read_from(&partition, tp, offset, max_bytes, ReadBound::LogEnd).await
    }

    /// Calls `visit` with every batch of `tp` from its log start to its log
    /// end, in order (a coordinator loading its log: to the log end, not the
    /// high watermark, which can trail what the old leader acknowledged).
    /// Returns the bytes read.
    pub async fn replay_to_log_end(&self, tp: &TopicPartition, mut visit: impl FnMut(&[u8])) -> StorageResult<u64> {
        let offsets = self.offsets(tp)?;
        let mut cursor = offsets.log_start_offset;
        let mut bytes = 0u64;
        while cursor < offsets.log_end_offset {
            let read = self.read_to_log_end(tp, cursor, limits::recovery_read_bytes).await?;
            if read.batches.is_empty() {
                break;
            }
            for batch_bytes in &read.batches {
                let Some(header) = BatchHeader::ref_from_prefix(batch_bytes) else { return Ok(bytes) };
                bytes += batch_bytes.len() as u64;
                cursor = Offset(header.base_offset().0 + i64::from(header.last_offset_delta()) + 1);
                visit(batch_bytes);
            }
        }
        Ok(bytes)
    }

    /// A read_committed consumer's read: up to the last stable offset, with
    /// the aborted transactions of the range it may return.
    pub async fn read_committed(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> StorageResult<ReadOutput> {
        let mut out = self.read_counted(tp, offset, max_bytes, ReadBound::LastStable).await?;
        let end = out
            .batches
            .last()
            .and_then(|b| BatchHeader::ref_from_prefix(b))
            .map_or(offset, |h| Offset(h.base_offset().0 + i64::from(h.last_offset_delta()) + 1));
        if end > offset {
            let partition = self.partition(tp)?;
            let log = partition.log.borrow();
            out.aborted =
                log.txns.aborted_between(offset, end).into_iter().map(|a| (a.producer_id, a.first_offset)).collect();
        }
        Ok(out)
    }

    pub(super) async fn read_from(
        &self,
        partition: &Partition,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
        bound: ReadBound,
    ) -> StorageResult<ReadOutput> {
        let max_bytes = max_bytes.min(limits::read_bytes_max);
        let (key, high_watermark, log_end, log_start_offset, last_stable_offset) = {
            let log = partition.log.borrow();
            (log.key, log.high_watermark, log.log_end_offset, log.log_start_offset(), log.last_stable_offset())
        };
        // Consumers read below the high watermark (read_committed ones below
        // the last stable offset); followers up to the log end. An offset
        // between the two is in range, with nothing to read yet (Kafka's
        // answer too).
        let bound = match bound {
            ReadBound::LogEnd => log_end,
            ReadBound::HighWatermark => high_watermark,
            ReadBound::LastStable => last_stable_offset,
        };
        if offset < log_start_offset || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                tp: tp.clone(),
                offset,
                log_start: log_start_offset,
                high_watermark,
            });
        }
        let mut out = ReadOutput {
            batches: Vec::new(),
            bytes: 0,
            high_watermark,
            log_start_offset,
            from_cache: 0,
            diverging: None,
            last_stable_offset,
            aborted: Vec::new(),
        };
        let mut cursor = offset;
        // Each step adds a batch or a disk window; bounded by the byte limit.
        let steps_max = max_bytes / limits::batch_bytes_min + 2;
        for _ in 0..steps_max {
            if cursor >= bound || out.bytes >= max_bytes {
                break;
            }
            let cached = self.inner.cache.borrow_mut().lookup(key, cursor);
            if let Some(slice) = cached {
                if !out.batches.is_empty() && out.bytes + slice.len() > max_bytes {
                    break;
                }
                cursor = slice.next_offset();
                self.inner.metrics.cache_hits.add(1);
                out.bytes += slice.len();
                out.from_cache += 1;
                out.batches.push(BatchBytes::Cached(slice));
                continue;
            }
            let located = partition.log.borrow().locate(cursor);
            let Some((file, path, position, limit)) = located else {
                return Err(StorageError::OffsetOutOfRange {
                    tp: tp.clone(),
                    offset: cursor,
                    log_start: log_start_offset,
                    high_watermark,
                });
            };
            if position >= limit {
                break; // nothing acknowledged past here in this segment
            }
            // The window is the byte budget left. (Flooring the first window
            // at `max.message.bytes`, to spare batches larger than the budget
            // a second read, measured 2 DMA reads per call and 0.3-0.5x the
            // throughput for 16 KiB batches; BENCHMARKS.md.)
            let want = (max_bytes - out.bytes).clamp(limits::read_window_bytes_min, limits::read_window_bytes_max);
            let len = (want as u64).min(limit - position) as usize;
            let window = file
                .read_at(position, len)
                .await
                .map_err(|e| StorageError::io("read segment", &path, glommio_io(e)))?;
            let mut local = 0usize;
            let mut progressed = false;
            while local < window.len() && cursor < bound {
                let total = match batch::peek_total_bytes(&window[local..], limits::batch_bytes_max) {
                    Ok(total) => total,
                    Err(batch::BatchError::Truncated { .. }) => break,
                    Err(e) => {
                        return Err(StorageError::Corrupt {
                            what: "segment batch",
                            path,
                            reason: format!("at byte {}: {e}", position + local as u64),
                        })
                    }
                };
                let header = BatchHeader::ref_from_prefix(&window[local..]).expect("peeked a whole header");
                let last_offset = Offset(header.base_offset().0 + i64::from(header.last_offset_delta()));
                if last_offset < cursor {
                    local += total; // before the target: the index points at or before it
                    continue;
                }
                if !out.batches.is_empty() && out.bytes + total > max_bytes {
                    return Ok(out);
                }
                let bytes = if local + total <= window.len() {
                    ReadResult::slice(&window, local, total).expect("in bounds")
                } else if !progressed {
                    // One batch larger than the window: read exactly it.
                    let read = file
                        .read_at(position + local as u64, total)
                        .await
                        .map_err(|e| StorageError::io("read segment", &path, glommio_io(e)))?;
                    if read.len() != total {
                        return Err(StorageError::Corrupt { what: "segment batch", path, reason: "short read".into() });
                    }
                    read
                } else {
                    break;
                };
                out.bytes += total;
                // A batch from disk is a cache miss (counted per batch, as hits are).
                self.inner.metrics.cache_misses.add(1);
                self.inner.metrics.disk_read_bytes.add(total as u64);
                out.batches.push(BatchBytes::Disk(bytes));
                cursor = Offset(last_offset.0 + 1);
                local += total;
                progressed = true;
                if out.bytes >= max_bytes {
                    return Ok(out);
                }
            }
            if !progressed {
                // Nothing usable in this segment past `cursor`: move on to the next.
                let next = partition.log.borrow().next_segment_base(cursor);
                match next {
                    Some(base) if base > cursor => cursor = base,
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// Parks `waiter` on a partition until its high watermark passes
    /// `offset`; fires it at once if it already has. No task and no timer
    /// per waiter: the fetch that parked it keeps the one timer. Returns
    /// false (and drops the waiter) when the partition's waiters are full.
    pub fn park_data_waiter(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        waiter: oneshot::Sender<()>,
    ) -> StorageResult<bool> {
        let partition = self.partition(tp)?;
        if partition.log.borrow().high_watermark > offset {
            let _ = waiter.send(());
            return Ok(true);
        }
        let mut waiters = partition.data_waiters.borrow_mut();
        waiters.retain(|w| !w.is_canceled());
        if waiters.len() >= limits::partition_data_waiters_max {
            return Ok(false);
        }
        waiters.push(waiter);
        Ok(true)
    }

    /// Waits until the high watermark passes `offset` (data to read there)
    /// or `timeout` elapses; true when data is available. Woken by commits,
    /// not by polling.
    pub async fn wait_for_data(&self, tp: &TopicPartition, offset: Offset, timeout: Duration) -> StorageResult<bool> {
        let partition = self.partition(tp)?;
        if partition.log.borrow().high_watermark > offset {
            return Ok(true);
        }
        let (waiter, woken) = oneshot::channel();
        let parked = {
            let mut waiters = partition.data_waiters.borrow_mut();
            waiters.retain(|w| !w.is_canceled());
            let room = waiters.len() < limits::partition_data_waiters_max;
            if room {
                waiters.push(waiter);
            }
            room
        };
        if !parked {
            // Too many readers parked here: this one sleeps out its timeout
            // instead of being woken early.
            glommio::timer::sleep(timeout).await;
            let high_watermark = partition.log.borrow().high_watermark;
            return Ok(high_watermark > offset);
        }
        let _ = futures_lite::future::or(async { woken.await.is_ok() }, async {
            glommio::timer::sleep(timeout).await;
            false
        })
        .await;
        let high_watermark = partition.log.borrow().high_watermark;
        Ok(high_watermark > offset)
    }

    /// Waits until the high watermark passes `offset`, however many commits
    /// and high watermark moves that takes, or until `timeout`; true when it
    /// has (acks=all, a resent idempotent batch, a group write).
    pub async fn wait_for_high_watermark(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        timeout: Duration,
    ) -> StorageResult<bool> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.wait_for_data(tp, offset, left).await? {
                return Ok(true);
            }
            if left.is_zero() {
                return Ok(false);
            }
        }
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`
    /// (Kafka's ListOffsets by time), with that record's timestamp, found
    /// through the time indexes. None when every record is older.
    pub async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        timestamp_ms: i64,
    ) -> StorageResult<Option<(Offset, i64)>> {
        let partition = self.partition(tp)?;
        let (start, log_start) = {
            let log = partition.log.borrow();
            let log_start = log.log_start_offset();
            let segment = log.segments.values().find(|s| s.time_index.max_timestamp() >= timestamp_ms);
            match segment {
                None => return Ok(None),
                Some(segment) => (segment.time_index.lookup(timestamp_ms).max(log_start), log_start),
            }
        };
        let mut cursor = start;
        loop {
            let read = self.read(tp, cursor, limits::read_window_bytes_min).await?;
            if read.batches.is_empty() {
                return Ok(None);
            }
            for bytes in &read.batches {
                let header = BatchHeader::ref_from_prefix(bytes).expect("stored batches have headers");
                cursor = Offset(header.base_offset().0 + i64::from(header.last_offset_delta()) + 1);
                if header.max_timestamp() < timestamp_ms {
                    continue;
                }
                let timestamps = record_timestamps(bytes)?;
                if timestamps.is_empty() {
                    // Too large to unpack: answer at batch granularity.
                    return Ok(Some((header.base_offset().max(log_start), header.max_timestamp())));
                }
                // Records of the first batch may lie below a log start that
                // DeleteRecords moved into it: never answer those.
                if let Some(found) =
                    timestamps.into_iter().find(|(offset, ts)| *ts >= timestamp_ms && *offset >= log_start)
                {
                    return Ok(Some(found));
                }
            }
        }
    }

    /// The offset and value of the largest timestamp in the log, if any
    /// (ListOffsets MAX_TIMESTAMP, KIP-734): the time indexes name the batch,
    /// and within an uncompressed CreateTime batch the first record with
    /// that timestamp is found.
    pub async fn max_timestamp(&self, tp: &TopicPartition) -> StorageResult<Option<(Offset, i64)>> {
        let partition = self.partition(tp)?;
        let found = {
            let log = partition.log.borrow();
            let start = log.log_start_offset();
            log.segments
                .values()
                .filter(|s| s.time_index.max_timestamp() >= 0 && s.time_index.max_timestamp_offset() >= start)
                .max_by_key(|s| s.time_index.max_timestamp())
                .map(|s| (s.time_index.max_timestamp_offset(), s.time_index.max_timestamp()))
        };
        let Some((batch_offset, max)) = found else { return Ok(None) };
        let read = self.read(tp, batch_offset, 1).await?;
        let Some(bytes) = read.batches.first() else { return Ok(Some((batch_offset, max))) };
        let header = BatchHeader::ref_from_prefix(bytes).expect("stored batches have headers");
        if header.timestamp_type_log_append() {
            return Ok(Some((batch_offset, max)));
        }
        let found = record_timestamps(bytes)?.into_iter().find(|(_, ts)| *ts == max);
        Ok(Some(found.unwrap_or((batch_offset, max))))
    }
}

/// (offset, timestamp) of every record of a batch, in order: read in place
/// for an uncompressed batch, inflated (`batch::for_each_record`, bounded by
/// `limits::decompressed_batch_bytes_max`) for a compressed one, and the
/// batch's append time for every record of a LogAppendTime batch. Empty when
/// a compressed batch claims more than `timestamp_scan_records_max` records
/// or inflates past the bound: callers then answer at batch granularity.
pub fn record_timestamps(bytes: &[u8]) -> StorageResult<Vec<(Offset, i64)>> {
    let header = BatchHeader::ref_from_prefix(bytes).expect("stored batches have headers");
    let base = header.base_offset();
    if header.timestamp_type_log_append() {
        let count = i64::from(header.last_offset_delta()) + 1;
        return Ok((0..count).map(|i| (Offset(base.0 + i), header.max_timestamp())).collect());
    }
    let compressed = !matches!(header.compression(), Ok(batch::Compression::None));
    if compressed && header.records_count() > timestamp_scan_records_max {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let walked = batch::for_each_record(bytes, limits::decompressed_batch_bytes_max, |r| {
        out.push((Offset(base.0 + i64::from(r.offset_delta)), header.base_timestamp() + r.timestamp_delta));
    });
    match walked {
        Ok(()) => Ok(out),
        Err(batch::BatchError::Codec(ringstream_core::codec::CodecError::TooLarge { .. })) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}
