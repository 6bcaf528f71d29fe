//! Retention and record deletion: whole segments past `retention.ms` or
//! beyond `retention.bytes`, segments below an offset, and DeleteRecords'
//! log start moves.

use crate::dir;
use crate::error::{StorageError, StorageResult};
use crate::log::PartitionLog;
use crate::segment::Segment;
use ringstream_core::types::{Offset, TopicPartition};
use std::rc::Rc;
use tracing::info;

use super::*;

impl ShardStorage {
    /// Deletes whole segments past `retention.ms` or beyond
    /// `retention.bytes`, oldest first, never the active one, and moves the
    /// log start offset forward. Returns the number of segments deleted.
    pub async fn enforce_retention(&self, now: i64) -> StorageResult<usize> {
        let partitions: Vec<Rc<Partition>> = self.inner.partitions.borrow().values().cloned().collect();
        let mut deleted = 0;
        for partition in partitions {
            deleted += self.delete_segments(&partition, |log| log.retention_victims(now), "retention").await?;
        }
        Ok(deleted)
    }

    /// Deletes the sealed segments that lie wholly below `offset` (the
    /// offsets log's compaction: a snapshot of the live records was written
    /// from `offset` on). Returns the number of segments deleted.
    pub async fn delete_segments_before(&self, tp: &TopicPartition, offset: Offset) -> StorageResult<usize> {
        let partition = self.partition(tp)?;
        let victims = |log: &PartitionLog| -> Vec<Offset> {
            let bases: Vec<Offset> = log.segments.keys().copied().collect();
            bases.windows(2).take_while(|pair| pair[1] <= offset).map(|pair| pair[0]).collect()
        };
        self.delete_segments(&partition, victims, "compaction").await
    }

    /// DeleteRecords: moves the log start up to `offset` (-1: the high
    /// watermark), persists it before answering, then deletes the segments
    /// wholly below it. An offset below the current start changes nothing.
    /// Out of range (negative other than -1, or past the high watermark):
    /// OffsetOutOfRange. Returns the log start after the call (Kafka's low
    /// watermark on a single replica).
    pub async fn delete_records(&self, tp: &TopicPartition, offset: i64) -> StorageResult<Offset> {
        let partition = self.partition(tp)?;
        let lock = partition.write_lock.acquire_static_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
        let (start, dir, moved) = {
            let mut log = partition.log.borrow_mut();
            let (log_start, high_watermark) = (log.log_start_offset(), log.high_watermark);
            let target = if offset == DELETE_RECORDS_HIGH_WATERMARK { high_watermark } else { Offset(offset) };
            if target.0 < 0 || target > high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    tp: tp.clone(),
                    offset: target,
                    log_start,
                    high_watermark,
                });
            }
            let moved = target > log_start;
            if moved {
                log.log_start = target;
                let key = log.key;
                self.inner.cache.borrow_mut().evict_below(key, target);
                log.epochs.truncate_from_start(target);
            }
            (log.log_start_offset(), log.dir.clone(), moved)
        };
        if !moved {
            return Ok(start);
        }
        let text = crate::log::encode_log_start(start);
        dir::write_file_atomic(&dir, dir::LOG_START_FILE_NAME, text.into_bytes())
            .await
            .map_err(|e| StorageError::io("write log start checkpoint", &dir, e))?;
        drop(lock);
        info!(partition = %tp, log_start = %start, "log start moved by DeleteRecords");
        let victims = move |log: &PartitionLog| -> Vec<Offset> {
            let bases: Vec<Offset> = log.segments.keys().copied().collect();
            bases.windows(2).take_while(|pair| pair[1] <= start).map(|pair| pair[0]).collect()
        };
        self.delete_segments(&partition, victims, "DeleteRecords").await?;
        let start = partition.log.borrow().log_start_offset();
        Ok(start)
    }

    /// Deletes the segments `choose` picks (oldest first, never the active
    /// one) under the partition's write lock, and moves the log start.
    pub(super) async fn delete_segments(
        &self,
        partition: &Rc<Partition>,
        choose: impl FnOnce(&PartitionLog) -> Vec<Offset>,
        why: &'static str,
    ) -> StorageResult<usize> {
        let Ok(_lock) = partition.write_lock.acquire_static_permit(1).await else { return Ok(0) };
        let (victims, epochs_text, dir) = {
            let mut log = partition.log.borrow_mut();
            let bases = choose(&log);
            if bases.is_empty() {
                return Ok(0);
            }
            let victims: Vec<Segment> =
                bases.iter().map(|base| log.segments.remove(base).expect("victim exists")).collect();
            let start = log.log_start_offset();
            self.inner.cache.borrow_mut().evict_below(log.key, start);
            let changed = log.epochs.truncate_from_start(start);
            info!(partition = %log.tp, segments = victims.len(), log_start = %start, why, "deleted segments");
            log.check_invariants();
            (victims, changed.then(|| log.epochs.encode()), log.dir.clone())
        };
        for segment in &victims {
            segment.remove_files(&dir).await?;
        }
        if let Some(text) = epochs_text {
            dir::write_file_atomic(&dir, dir::EPOCH_CHECKPOINT_FILE_NAME, text.into_bytes())
                .await
                .map_err(|e| StorageError::io("write epoch checkpoint", &dir, e))?;
        }
        Ok(victims.len())
    }
}
