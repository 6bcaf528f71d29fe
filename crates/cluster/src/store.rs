//! The durable Raft log of the metadata quorum, in
//! `<data-dir>/__cluster_metadata-0/`:
//!
//! - `raft.log`: entries, each framed `[len u32 LE][crc32c u32 LE][Entry]`
//!   (protobuf, as raft-rs encodes it). Appends are fdatasync'd before
//!   raft-rs is told they are persisted, so an entry counts toward a commit
//!   only once it is on disk. A torn tail (short frame or bad CRC) is cut at
//!   open: it was never persisted, so never acknowledged.
//! - `hardstate`: term, vote and commit, replaced atomically (temp file,
//!   fsync, rename, fsync of the directory) whenever term or vote change.
//!   The commit index in it may lag; raft-rs re-learns it from the leader.
//! - `snapshot`: the metadata image at an applied index, with the Raft
//!   term and voters there, replaced atomically. Entries up to its index
//!   are dropped from `raft.log` (rewritten atomically), so the log stays
//!   bounded by `limits::metadata_log_entries_max`.
//!
//! These files are small and written rarely (admin requests, fencing), so
//! plain blocking I/O on shard 0 is used, not the data path's O_DIRECT.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

const LOG_FILE: &str = "raft.log";
const HARDSTATE_FILE: &str = "hardstate";
const SNAPSHOT_FILE: &str = "snapshot";
const frame_header_bytes: usize = 8;

/// Writes `name` in `dir` so that after a crash it holds either the old
/// contents or all of `bytes`: temp file, fsync, rename, fsync of `dir`.
pub fn write_file_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

fn with_crc(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + frame_header_bytes);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads one `[len][crc][payload]` frame at the start of `bytes`: the
/// payload and the frame's length, or None when short or corrupt.
fn read_frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let header = bytes.get(..frame_header_bytes)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > ringstream_core::limits::controller_frame_bytes_max {
        return None;
    }
    let payload = bytes.get(frame_header_bytes..frame_header_bytes + len)?;
    (crc32c::crc32c(payload) == crc).then_some((payload, frame_header_bytes + len))
}

fn read_whole(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn corrupt(path: &Path, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()))
}

/// The Raft log, hard state and latest snapshot of one node, on disk and
/// mirrored in memory (the log is bounded by compaction).
pub struct DurableStorage {
    dir: PathBuf,
    log: File,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Entries after the snapshot's index, in order with no gaps.
    entries: Vec<Entry>,
    /// Bytes of fsyncs done (for tests and metrics).
    pub syncs: u64,
}

impl DurableStorage {
    /// Opens (or creates) the store in `dir`. A new store starts with
    /// `voters` as its configuration (all nodes of a new cluster start the
    /// same way); an existing one keeps what it has.
    pub fn open(dir: &Path, voters: &[u64]) -> io::Result<DurableStorage> {
        std::fs::create_dir_all(dir)?;
        let snapshot = match read_whole(&dir.join(SNAPSHOT_FILE))? {
            Some(bytes) => {
                let (payload, _) = read_frame(&bytes).ok_or_else(|| corrupt(&dir.join(SNAPSHOT_FILE), "bad frame"))?;
                Snapshot::parse_from_bytes(payload).map_err(|e| corrupt(&dir.join(SNAPSHOT_FILE), &e.to_string()))?
            }
            None => {
                // A new store: its voters are recorded at index 0, so a
                // restart keeps them whatever the configuration says then.
                let mut snapshot = Snapshot::default();
                let mut meta = SnapshotMetadata::default();
                let mut cs = ConfState::default();
                cs.set_voters(voters.to_vec());
                meta.set_conf_state(cs);
                snapshot.set_metadata(meta);
                let bytes = with_crc(&snapshot.write_to_bytes().map_err(io::Error::other)?);
                write_file_durably(dir, SNAPSHOT_FILE, &bytes)?;
                snapshot
            }
        };
        let mut hard_state = match read_whole(&dir.join(HARDSTATE_FILE))? {
            Some(bytes) => {
                let (payload, _) = read_frame(&bytes).ok_or_else(|| corrupt(&dir.join(HARDSTATE_FILE), "bad frame"))?;
                HardState::parse_from_bytes(payload).map_err(|e| corrupt(&dir.join(HARDSTATE_FILE), &e.to_string()))?
            }
            None => HardState::default(),
        };
        let conf_state = snapshot.get_metadata().get_conf_state().clone();
        // The log: every whole frame, cut at the first torn or corrupt one.
        let log_path = dir.join(LOG_FILE);
        let bytes = read_whole(&log_path)?.unwrap_or_default();
        let mut entries: Vec<Entry> = Vec::new();
        let mut at = 0;
        while let Some((payload, len)) = read_frame(&bytes[at..]) {
            let Ok(entry) = Entry::parse_from_bytes(payload) else { break };
            // Rewrites replace the whole file, so indexes only grow by one.
            if let Some(last) = entries.last() {
                if entry.index != last.index + 1 {
                    return Err(corrupt(&log_path, "entries out of order"));
                }
            }
            entries.push(entry);
            at += len;
        }
        let snap_index = snapshot.get_metadata().index;
        entries.retain(|e| e.index > snap_index);
        if entries.first().is_some_and(|e| e.index != snap_index + 1) {
            return Err(corrupt(&log_path, "gap after the snapshot"));
        }
        let log = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(&log_path)?;
        if at < bytes.len() {
            tracing::warn!(path = %log_path.display(), kept = at, dropped = bytes.len() - at, "cutting a torn metadata log tail");
            log.set_len(at as u64)?;
            log.sync_all()?;
        }
        let last = entries.last().map_or(snap_index, |e| e.index);
        hard_state.commit = hard_state.commit.min(last).max(snap_index);
        let mut store =
            DurableStorage { dir: dir.to_owned(), log, hard_state, conf_state, snapshot, entries, syncs: 0 };
        store.seek_end()?;
        Ok(store)
    }

    fn seek_end(&mut self) -> io::Result<()> {
        use std::io::Seek;
        self.log.seek(io::SeekFrom::End(0)).map(|_| ())
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn first(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.get_metadata().index, |e| e.index)
    }

    /// Committed entries in [low, high) that are still in the log (for the
    /// metadata fetch of broker-only nodes and for replay at start).
    pub fn committed(&self, low: u64, high: u64, max: usize) -> Vec<Entry> {
        let high = high.min(self.hard_state.commit + 1).min(self.last() + 1);
        if low < self.first() || low >= high {
            return Vec::new();
        }
        let from = (low - self.first()) as usize;
        let to = (high - self.first()) as usize;
        self.entries[from..to].iter().take(max).cloned().collect()
    }

    /// Persists new entries (raft-rs's `Ready::entries`): a plain append,
    /// or, when they replace a suffix, a rewrite of the file. Returns once
    /// they are on disk.
    pub fn append(&mut self, new: &[Entry]) -> io::Result<()> {
        let Some(first) = new.first() else { return Ok(()) };
        assert!(first.index >= self.first(), "append below the snapshot");
        assert!(first.index <= self.last() + 1, "gap in appended entries");
        let replaces = first.index <= self.last();
        self.entries.truncate((first.index - self.first()) as usize);
        self.entries.extend_from_slice(new);
        if replaces {
            return self.rewrite_log();
        }
        let mut bytes = Vec::new();
        for entry in new {
            bytes.extend_from_slice(&with_crc(&entry.write_to_bytes().map_err(io::Error::other)?));
        }
        self.log.write_all(&bytes)?;
        self.log.sync_data()?;
        self.syncs += 1;
        Ok(())
    }

    fn rewrite_log(&mut self) -> io::Result<()> {
        let mut bytes = Vec::new();
        for entry in &self.entries {
            bytes.extend_from_slice(&with_crc(&entry.write_to_bytes().map_err(io::Error::other)?));
        }
        write_file_durably(&self.dir, LOG_FILE, &bytes)?;
        self.log = OpenOptions::new().read(true).write(true).open(self.dir.join(LOG_FILE))?;
        self.seek_end()?;
        self.syncs += 1;
        Ok(())
    }

    /// Persists a new hard state when term or vote changed (a commit index
    /// alone is kept in memory: raft-rs relearns it).
    pub fn set_hard_state(&mut self, hs: &HardState) -> io::Result<()> {
        let must_write = hs.term != self.hard_state.term || hs.vote != self.hard_state.vote;
        self.hard_state = hs.clone();
        if must_write {
            self.write_hard_state()?;
        }
        Ok(())
    }

    fn write_hard_state(&mut self) -> io::Result<()> {
        let bytes = with_crc(&self.hard_state.write_to_bytes().map_err(io::Error::other)?);
        write_file_durably(&self.dir, HARDSTATE_FILE, &bytes)?;
        self.syncs += 1;
        Ok(())
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = self.hard_state.commit.max(commit);
    }

    /// Installs a snapshot received from the leader: it replaces the log.
    pub fn install_snapshot(&mut self, snapshot: &Snapshot) -> io::Result<()> {
        let meta = snapshot.get_metadata();
        if meta.index < self.snapshot.get_metadata().index {
            return Ok(()); // older than ours
        }
        write_file_durably(&self.dir, SNAPSHOT_FILE, &with_crc(&snapshot.write_to_bytes().map_err(io::Error::other)?))?;
        self.snapshot = snapshot.clone();
        self.conf_state = meta.get_conf_state().clone();
        self.entries.retain(|e| e.index > meta.index);
        if self.entries.first().is_some_and(|e| e.index != meta.index + 1) {
            self.entries.clear();
        }
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.write_hard_state()?;
        self.rewrite_log()
    }

    /// Takes a snapshot of the applied image at `index` and drops the log
    /// up to it.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> io::Result<()> {
        if index <= self.snapshot.get_metadata().index || index > self.last() {
            return Ok(());
        }
        let term = self.term_of(index).map_err(|e| io::Error::other(e.to_string()))?;
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let mut meta = SnapshotMetadata { index, term, ..Default::default() };
        meta.set_conf_state(self.conf_state.clone());
        snapshot.set_metadata(meta);
        write_file_durably(&self.dir, SNAPSHOT_FILE, &with_crc(&snapshot.write_to_bytes().map_err(io::Error::other)?))?;
        self.snapshot = snapshot;
        self.entries.retain(|e| e.index > index);
        self.rewrite_log()
    }

    /// Entries in the log after the latest snapshot.
    pub fn log_len(&self) -> u64 {
        self.entries.len() as u64
    }

    fn term_of(&self, idx: u64) -> raft::Result<u64> {
        let snap = self.snapshot.get_metadata();
        if idx == snap.index {
            return Ok(snap.term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }
}

impl raft::Storage for DurableStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut size = 0u64;
        for entry in &self.entries[(low - self.first()) as usize..(high - self.first()) as usize] {
            size += u64::from(entry.compute_size());
            if !out.is_empty() && size > max {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_of(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot.get_metadata().index < request_index {
            // The quorum compacts often enough that the next one will do.
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64, data: &str) -> Entry {
        let mut e = Entry { index, term, ..Default::default() };
        e.set_data(data.as_bytes().to_vec().into());
        e
    }

    #[test]
    fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DurableStorage::open(dir.path(), &[1, 2, 3]).unwrap();
        assert_eq!(store.initial_state().unwrap().conf_state.get_voters(), &[1, 2, 3]);
        store.append(&[entry(1, 1, "a"), entry(2, 1, "b")]).unwrap();
        store.append(&[entry(3, 1, "c")]).unwrap();
        let hs = HardState { term: 1, vote: 2, commit: 2, ..Default::default() };
        store.set_hard_state(&hs).unwrap();
        drop(store);
        // A torn frame at the end.
        let mut log = OpenOptions::new().append(true).open(dir.path().join(LOG_FILE)).unwrap();
        log.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(log);
        let store = DurableStorage::open(dir.path(), &[7]).unwrap();
        assert_eq!(store.last_index().unwrap(), 3);
        assert_eq!(store.hard_state().vote, 2);
        assert_eq!(store.initial_state().unwrap().conf_state.get_voters(), &[1, 2, 3]);
        assert_eq!(store.committed(1, 10, 10).len(), 2);
        // A suffix replaced by a new leader's entries.
        let mut store = store;
        store.append(&[entry(3, 2, "c2"), entry(4, 2, "d")]).unwrap();
        drop(store);
        let store = DurableStorage::open(dir.path(), &[1]).unwrap();
        assert_eq!(store.term(3).unwrap(), 2);
        assert_eq!(store.last_index().unwrap(), 4);
    }

    #[test]
    fn compaction_keeps_the_snapshot_and_the_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DurableStorage::open(dir.path(), &[1]).unwrap();
        store.append(&(1..=10).map(|i| entry(i, 1, "x")).collect::<Vec<_>>()).unwrap();
        store.set_commit(10);
        store.compact(6, b"image".to_vec()).unwrap();
        assert_eq!(store.first_index().unwrap(), 7);
        assert_eq!(store.term(6).unwrap(), 1);
        assert!(store.entries(5, 8, None, GetEntriesContext::empty(false)).is_err());
        drop(store);
        let store = DurableStorage::open(dir.path(), &[1]).unwrap();
        assert_eq!(store.first_index().unwrap(), 7);
        assert_eq!(store.last_index().unwrap(), 10);
        assert_eq!(store.snapshot(6, 2).unwrap().get_data(), b"image");
        assert!(store.snapshot(8, 2).is_err());
    }
}
