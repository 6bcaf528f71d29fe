//! The per-shard batch cache: the hot tail of every partition the shard owns.
//!
//! Entries are refcounted slices of the very `DmaBuffer`s that group commit
//! wrote to the segment files, so serving the tail copies nothing. The cache
//! is bounded in bytes (`batch.cache.bytes`) and evicts least recently used
//! batches across all partitions of the shard. A buffer's memory is freed when
//! its last slice is evicted and no reader still holds one.
//!
//! Shard-local: `Rc`, no `Send`. Slices leave the shard only as copies made by
//! the router (see `shard::router`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::rc::Rc;

use glommio::io::DmaBuffer;

use ringstream_core::types::Offset;

/// A shard-local id for a partition, so cache bookkeeping does not clone
/// topic names on the data path.
pub type PartitionKey = u32;

/// One whole record batch inside a written buffer.
#[derive(Clone)]
pub struct CacheSlice {
    buffer: Rc<DmaBuffer>,
    start: u32,
    len: u32,
    /// Bytes of memory this slice answers for in the cache's budget: its
    /// own length plus its share of the buffer's padding and carried bytes.
    /// A light-load round writes one 1 KiB batch in a 4 KiB buffer, and the
    /// cache pins the whole buffer, so charging `len` alone would let the
    /// cache hold 4x its budget.
    charge: u32,
    pub base_offset: Offset,
    pub last_offset: Offset,
}

impl CacheSlice {
    pub fn new(
        buffer: Rc<DmaBuffer>,
        start: usize,
        len: usize,
        base_offset: Offset,
        last_offset: Offset,
    ) -> CacheSlice {
        assert!(start.checked_add(len).is_some_and(|end| end <= buffer.len()));
        assert!(len > 0);
        assert!(base_offset <= last_offset);
        CacheSlice { buffer, start: start as u32, len: len as u32, charge: len as u32, base_offset, last_offset }
    }

    /// Charges this slice `charge` bytes (at least its length, at most its
    /// buffer's length) instead of its length.
    pub fn charged(mut self, charge: usize) -> CacheSlice {
        let charge = charge.clamp(self.len as usize, self.buffer.len());
        self.charge = charge as u32;
        self
    }

    pub fn next_offset(&self) -> Offset {
        Offset(self.last_offset.0 + 1)
    }
}

impl Deref for CacheSlice {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let start = self.start as usize;
        &self.buffer.as_bytes()[start..start + self.len as usize]
    }
}

impl std::fmt::Debug for CacheSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheSlice[{}..={}, {} bytes]", self.base_offset, self.last_offset, self.len)
    }
}

struct Entry {
    slice: CacheSlice,
    tick: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub bytes_used: usize,
    pub bytes_max: usize,
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

pub struct BatchCache {
    bytes_max: usize,
    bytes_used: usize,
    tick: u64,
    partitions: HashMap<PartitionKey, BTreeMap<Offset, Entry>>,
    /// tick → (partition, base offset): the LRU order.
    lru: BTreeMap<u64, (PartitionKey, Offset)>,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl BatchCache {
    pub fn new(bytes_max: usize) -> BatchCache {
        assert!(bytes_max <= ringstream_core::limits::batch_cache_bytes_max);
        BatchCache {
            bytes_max,
            bytes_used: 0,
            tick: 0,
            partitions: HashMap::new(),
            lru: BTreeMap::new(),
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    /// Adds a batch just written to `partition`. Batches larger than the whole
    /// cache are not cached.
    pub fn insert(&mut self, partition: PartitionKey, slice: CacheSlice) {
        let len = slice.charge as usize;
        if len > self.bytes_max {
            return;
        }
        while self.bytes_used + len > self.bytes_max {
            if !self.evict_one() {
                break;
            }
        }
        self.tick += 1;
        let tick = self.tick;
        let base = slice.base_offset;
        let batches = self.partitions.entry(partition).or_default();
        if let Some(old) = batches.insert(base, Entry { slice, tick }) {
            // Re-inserting an offset only happens after a rollback rewrote it.
            self.bytes_used -= old.slice.charge as usize;
            self.lru.remove(&old.tick);
        }
        self.lru.insert(tick, (partition, base));
        self.bytes_used += len;
        debug_assert!(self.bytes_used <= self.bytes_max);
    }

    /// The cached batch containing `offset`, if any; marks it recently used.
    pub fn lookup(&mut self, partition: PartitionKey, offset: Offset) -> Option<CacheSlice> {
        let found = self
            .partitions
            .get_mut(&partition)
            .and_then(|batches| batches.range_mut(..=offset).next_back())
            .filter(|(_, entry)| entry.slice.last_offset >= offset);
        let Some((_, entry)) = found else {
            self.misses += 1;
            return None;
        };
        self.hits += 1;
        self.tick += 1;
        self.lru.remove(&entry.tick);
        entry.tick = self.tick;
        self.lru.insert(self.tick, (partition, entry.slice.base_offset));
        Some(entry.slice.clone())
    }

    /// Drops a partition's batches that end before `offset` (retention moved
    /// the log start past them).
    pub fn evict_below(&mut self, partition: PartitionKey, offset: Offset) {
        let Some(batches) = self.partitions.get_mut(&partition) else { return };
        let doomed: Vec<Offset> =
            batches.iter().take_while(|(_, e)| e.slice.last_offset < offset).map(|(base, _)| *base).collect();
        for base in doomed {
            if let Some(entry) = batches.remove(&base) {
                self.bytes_used -= entry.slice.charge as usize;
                self.lru.remove(&entry.tick);
            }
        }
    }

    /// Drops every batch of a partition at or above `offset` (a rollback).
    pub fn evict_from(&mut self, partition: PartitionKey, offset: Offset) {
        let Some(batches) = self.partitions.get_mut(&partition) else { return };
        let doomed: Vec<Offset> = batches.range(offset..).map(|(base, _)| *base).collect();
        for base in doomed {
            if let Some(entry) = batches.remove(&base) {
                self.bytes_used -= entry.slice.charge as usize;
                self.lru.remove(&entry.tick);
            }
        }
    }

    pub fn remove_partition(&mut self, partition: PartitionKey) {
        if let Some(batches) = self.partitions.remove(&partition) {
            for entry in batches.into_values() {
                self.bytes_used -= entry.slice.charge as usize;
                self.lru.remove(&entry.tick);
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            bytes_used: self.bytes_used,
            bytes_max: self.bytes_max,
            entries: self.lru.len(),
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
        }
    }

    fn evict_one(&mut self) -> bool {
        let Some((_, (partition, base))) = self.lru.pop_first() else { return false };
        let batches = self.partitions.get_mut(&partition).expect("LRU entry without partition");
        let entry = batches.remove(&base).expect("LRU entry without batch");
        self.bytes_used -= entry.slice.charge as usize;
        self.evictions += 1;
        if batches.is_empty() {
            self.partitions.remove(&partition);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: F) {
        glommio::LocalExecutorBuilder::default().make().unwrap().run(f);
    }

    fn buffer(len: usize) -> Rc<DmaBuffer> {
        let mut buffer = glommio::allocate_dma_buffer(len);
        buffer.as_bytes_mut().fill(7);
        Rc::new(buffer)
    }

    #[test]
    fn lookup_finds_containing_batch_and_lru_evicts_oldest() {
        run(async {
            let mut cache = BatchCache::new(300);
            let buf = buffer(4096);
            cache.insert(1, CacheSlice::new(buf.clone(), 0, 100, Offset(0), Offset(9)));
            cache.insert(1, CacheSlice::new(buf.clone(), 100, 100, Offset(10), Offset(19)));
            cache.insert(2, CacheSlice::new(buf.clone(), 200, 100, Offset(0), Offset(4)));
            assert_eq!(cache.lookup(1, Offset(15)).unwrap().base_offset, Offset(10));
            assert!(cache.lookup(1, Offset(20)).is_none());
            // Touch partition 1 offset 0 so that offset 10 is now the oldest.
            assert!(cache.lookup(1, Offset(0)).is_some());
            assert!(cache.lookup(2, Offset(0)).is_some());
            cache.insert(3, CacheSlice::new(buf.clone(), 300, 100, Offset(0), Offset(0)));
            assert!(cache.lookup(1, Offset(10)).is_none(), "least recently used entry evicted");
            assert_eq!(cache.stats().bytes_used, 300);
            assert_eq!(cache.stats().evictions, 1);
            cache.evict_below(1, Offset(10));
            assert!(cache.lookup(1, Offset(0)).is_none());
            cache.remove_partition(2);
            assert_eq!(cache.stats().bytes_used, 100);
            assert_eq!(cache.stats().entries, 1);
        });
    }

    #[test]
    fn slices_answer_for_their_share_of_the_buffer() {
        run(async {
            // Light load: one 1 KiB batch per 4 KiB buffer. A 16 KiB cache
            // holds 4 such buffers, not 16 batches.
            let mut cache = BatchCache::new(16 * 1024);
            for i in 0..16 {
                cache.insert(1, CacheSlice::new(buffer(4096), 0, 1024, Offset(i), Offset(i)).charged(4096));
            }
            assert_eq!(cache.stats().entries, 4);
            assert_eq!(cache.stats().bytes_used, 16 * 1024);
            // A charge never goes below the length nor above the buffer.
            let slice = CacheSlice::new(buffer(4096), 0, 1024, Offset(0), Offset(0));
            assert_eq!(slice.clone().charged(10).charge, 1024);
            assert_eq!(slice.charged(1 << 20).charge, 4096);
        });
    }

    #[test]
    fn oversized_batches_are_not_cached() {
        run(async {
            let mut cache = BatchCache::new(10);
            cache.insert(1, CacheSlice::new(buffer(4096), 0, 11, Offset(0), Offset(0)));
            assert_eq!(cache.stats().entries, 0);
        });
    }
}
