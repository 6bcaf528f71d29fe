//! The disk seam: every segment data write, sync and truncation goes
//! through `Disk`, so a simulation can put a faulty disk under a shard's
//! storage and keep everything above it unchanged.
//!
//! - `Disk::Direct` is production: the call goes straight to glommio's
//!   `DmaFile` (io_uring, O_DIRECT). One `match` per call, nothing else.
//! - `Disk::Simulated` drives the same real files, but a seeded
//!   `SimDisk` decides, per call, whether the write fails with EIO (nothing
//!   written), fails with ENOSPC after a torn, block-aligned prefix, or
//!   completes late (after other ready tasks ran, so concurrent writes
//!   complete out of order). It remembers each write that is not yet durable
//!   with the bytes it replaced, and `SimDisk::crash` then decides, per such
//!   write, that the page cache lost it, kept it, or kept a torn prefix.
//!
//! The simulator itself lives in `tests/storage_sim.rs`; it checks every
//! step against a model of the log.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use glommio::io::{DmaBuffer, DmaFile};

use ringstream_core::limits;
use ringstream_core::rng::SplitMix64;

/// Where segment I/O goes. Cloned into every shard's configuration.
#[derive(Clone, Debug, Default)]
pub enum Disk {
    #[default]
    Direct,
    Simulated(Arc<SimDisk>),
}

impl Disk {
    /// Writes `buffer` at `position`. `durable` says the file is O_DSYNC
    /// (flush=always): the write is durable once it completes.
    pub async fn write(
        &self,
        file: &DmaFile,
        path: &Path,
        buffer: &Rc<DmaBuffer>,
        position: u64,
        durable: bool,
    ) -> io::Result<usize> {
        match self {
            Disk::Direct => file.write_rc_at(buffer.clone(), position).await.map_err(crate::error::glommio_io),
            Disk::Simulated(sim) => sim.write(file, path, buffer, position, durable).await,
        }
    }

    /// fdatasync: every write to `path` before it becomes durable.
    pub async fn sync(&self, file: &DmaFile, path: &Path) -> io::Result<()> {
        match self {
            Disk::Direct => file.fdatasync().await.map_err(crate::error::glommio_io),
            Disk::Simulated(sim) => {
                sim.decide_sync(path)?;
                // SAFETY: the descriptor belongs to `file`, alive here.
                if unsafe { libc::fdatasync(file.as_raw_fd()) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                sim.synced(path);
                Ok(())
            }
        }
    }

    /// Sets the file's size (not durable until the next `sync`).
    pub async fn truncate(&self, file: &DmaFile, path: &Path, size: u64) -> io::Result<()> {
        match self {
            Disk::Direct => file.truncate(size).await.map_err(crate::error::glommio_io),
            Disk::Simulated(sim) => {
                sim.truncated(path, size);
                // SAFETY: the descriptor belongs to `file`, alive here.
                if unsafe { libc::ftruncate(file.as_raw_fd(), size as libc::off_t) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
        }
    }
}

/// How often the simulated disk fails, per million calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultRates {
    pub write_eio_ppm: u32,
    pub write_enospc_ppm: u32,
    pub sync_eio_ppm: u32,
    /// Writes that complete only after other ready tasks ran.
    pub late_completion_ppm: u32,
}

/// What a crash did to the writes that were not yet durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    pub kept: u32,
    pub lost: u32,
    pub torn: u32,
}

/// A seeded, faulty disk over real files. Single-threaded in use; the mutex
/// only makes it `Sync` so a configuration can carry it to a shard.
#[derive(Debug)]
pub struct SimDisk {
    state: Mutex<SimState>,
}

#[derive(Debug)]
struct SimState {
    seed: u64,
    /// Operations so far per file, so a decision depends on which file and
    /// which of its operations, never on how tasks interleaved.
    ops: HashMap<PathBuf, u64>,
    crashes: u64,
    rates: FaultRates,
    /// Faults are off while false (recovery and clean shutdown paths the
    /// simulator wants to see succeed).
    armed: bool,
    /// Writes not yet durable, oldest first.
    unsynced: Vec<UnsyncedWrite>,
    /// File lengths before the first unsynced change, per path.
    lengths: HashMap<PathBuf, u64>,
    faults_injected: u64,
}

#[derive(Debug)]
struct UnsyncedWrite {
    path: PathBuf,
    position: u64,
    before: Vec<u8>,
    /// A truncation's cut bytes (metadata), not a data write.
    truncation: bool,
}

impl SimDisk {
    pub fn new(seed: u64, rates: FaultRates) -> Arc<SimDisk> {
        Arc::new(SimDisk {
            state: Mutex::new(SimState {
                seed,
                ops: HashMap::new(),
                crashes: 0,
                rates,
                armed: true,
                unsynced: Vec::new(),
                lengths: HashMap::new(),
                faults_injected: 0,
            }),
        })
    }

    /// Turns fault injection on or off (durability tracking stays on).
    pub fn set_armed(&self, armed: bool) {
        self.lock().armed = armed;
    }

    /// Faults injected so far.
    pub fn faults_injected(&self) -> u64 {
        self.lock().faults_injected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn write(
        &self,
        file: &DmaFile,
        path: &Path,
        buffer: &Rc<DmaBuffer>,
        position: u64,
        durable: bool,
    ) -> io::Result<usize> {
        enum Verdict {
            Eio,
            Enospc(usize),
            Complete { yields: u64 },
        }
        let verdict = {
            let mut state = self.lock();
            let rates = state.rates;
            let armed = state.armed;
            let mut rng = state.keyed(path, position);
            if armed && rng.chance(rates.write_eio_ppm) {
                state.faults_injected += 1;
                Verdict::Eio
            } else if armed && rng.chance(rates.write_enospc_ppm) {
                state.faults_injected += 1;
                let blocks = buffer.len() / limits::io_alignment;
                Verdict::Enospc(rng.below(blocks as u64) as usize * limits::io_alignment)
            } else if armed && rng.chance(rates.late_completion_ppm) {
                Verdict::Complete { yields: rng.below(4) + 1 }
            } else {
                Verdict::Complete { yields: 0 }
            }
        };
        let len = match verdict {
            Verdict::Eio => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Verdict::Enospc(torn) => torn,
            Verdict::Complete { .. } => buffer.len(),
        };
        if len > 0 {
            if durable {
                // What reaches an O_DSYNC file is durable: no earlier change
                // to these bytes can come back at a crash.
                self.supersede(path, position, len);
            } else {
                self.remember(path, position, len)?;
            }
            // A synchronous pwrite on the same O_DIRECT (and, under
            // flush=always, O_DSYNC) descriptor: it completes now, so when a
            // write completes is the simulation's choice, not the device's.
            let bytes = &buffer.as_bytes()[..len];
            // SAFETY: `bytes` is a live, aligned slice of the DMA buffer and
            // the descriptor belongs to `file`, which outlives the call.
            let written =
                unsafe { libc::pwrite(file.as_raw_fd(), bytes.as_ptr().cast(), len, position as libc::off_t) };
            if written < 0 {
                return Err(io::Error::last_os_error());
            }
            assert_eq!(written as usize, len, "a simulated write reaches a real file whole");
        }
        match verdict {
            Verdict::Enospc(_) => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            Verdict::Complete { yields } => {
                for _ in 0..yields {
                    futures_lite::future::yield_now().await;
                }
                Ok(buffer.len())
            }
            Verdict::Eio => unreachable!("returned above"),
        }
    }

    /// Keeps the bytes a write is about to replace, for `crash`.
    fn remember(&self, path: &Path, position: u64, len: usize) -> io::Result<()> {
        let file = OpenOptions::new().read(true).open(path)?;
        let length = file.metadata()?.len();
        let mut before = vec![0u8; len];
        let readable = length.saturating_sub(position).min(len as u64) as usize;
        file.read_exact_at(&mut before[..readable], position)?;
        let mut state = self.lock();
        state.lengths.entry(path.to_path_buf()).or_insert(length);
        state.unsynced.push(UnsyncedWrite { path: path.to_path_buf(), position, before, truncation: false });
        Ok(())
    }

    /// A durable (O_DSYNC) write: its bytes are on disk, and so is the
    /// metadata needed to read them, the file's size among it (what
    /// fdatasync gives). Forgets the old bytes of `[position, position +
    /// len)` in every change not yet durable, and every pending size change
    /// of the file: a crash can undo neither.
    fn supersede(&self, path: &Path, position: u64, len: usize) {
        let end = position + len as u64;
        let mut state = self.lock();
        state.lengths.remove(path);
        let mut kept = Vec::with_capacity(state.unsynced.len());
        for write in std::mem::take(&mut state.unsynced) {
            if write.path == path && write.truncation {
                continue;
            }
            let (start, stop) = (write.position, write.position + write.before.len() as u64);
            if write.path != path || stop <= position || start >= end {
                kept.push(write);
                continue;
            }
            if start < position {
                let head = write.before[..(position - start) as usize].to_vec();
                kept.push(UnsyncedWrite {
                    path: write.path.clone(),
                    position: start,
                    before: head,
                    truncation: write.truncation,
                });
            }
            if stop > end {
                let tail = write.before[(end - start) as usize..].to_vec();
                kept.push(UnsyncedWrite {
                    path: write.path.clone(),
                    position: end,
                    before: tail,
                    truncation: write.truncation,
                });
            }
        }
        state.unsynced = kept;
    }

    fn decide_sync(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let rate = state.rates.sync_eio_ppm;
        let mut rng = state.keyed(path, u64::MAX);
        if state.armed && rng.chance(rate) {
            state.faults_injected += 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn synced(&self, path: &Path) {
        let mut state = self.lock();
        state.unsynced.retain(|w| w.path != path);
        state.lengths.remove(path);
    }

    /// A truncation is a change like a write until synced: a crash may
    /// bring back the cut bytes, so they are kept (up to `sim_cut_kept_bytes_max`).
    fn truncated(&self, path: &Path, size: u64) {
        let Ok(file) = OpenOptions::new().read(true).open(path) else { return };
        let Ok(length) = file.metadata().map(|m| m.len()) else { return };
        let cut = length.saturating_sub(size).min(limits::sim_cut_kept_bytes_max) as usize;
        let mut before = vec![0u8; cut];
        if file.read_exact_at(&mut before, size).is_err() {
            return;
        }
        let mut state = self.lock();
        state.lengths.entry(path.to_path_buf()).or_insert(length);
        if cut > 0 {
            state.unsynced.push(UnsyncedWrite { path: path.to_path_buf(), position: size, before, truncation: true });
        }
    }

    /// The machine lost power: every write that was not yet durable is,
    /// by a seeded choice, lost (its old bytes come back), kept, or torn (a
    /// block-aligned prefix kept). Sizes not yet synced come back as they
    /// were. Call it after the storage above was dropped, before reopening.
    pub fn crash(&self) -> io::Result<CrashReport> {
        let mut state = self.lock();
        state.crashes += 1;
        let crash = state.crashes;
        let mut report = CrashReport::default();
        let unsynced = std::mem::take(&mut state.unsynced);
        let mut lengths: Vec<(PathBuf, u64)> = std::mem::take(&mut state.lengths).into_iter().collect();
        lengths.sort();
        // Newest first, file by file in name order: the outcome depends only
        // on what was written, never on the order files were touched in.
        let mut writes: Vec<(usize, UnsyncedWrite)> = unsynced.into_iter().enumerate().collect();
        writes.sort_by(|(i, a), (j, b)| a.path.cmp(&b.path).then(j.cmp(i)));
        for (_, write) in writes {
            let Ok(file) = OpenOptions::new().write(true).open(&write.path) else { continue };
            let mut rng = state.keyed(&write.path, write.position ^ crash.rotate_left(48));
            match rng.below(3) {
                0 => report.kept += 1,
                1 => {
                    file.write_all_at(&write.before, write.position)?;
                    report.lost += 1;
                }
                _ => {
                    let blocks = (write.before.len() / limits::io_alignment) as u64;
                    let keep = rng.below(blocks.max(1)) as usize * limits::io_alignment;
                    file.write_all_at(&write.before[keep..], write.position + keep as u64)?;
                    report.torn += 1;
                }
            }
            file.sync_all()?;
        }
        for (path, length) in lengths {
            let mut rng = state.keyed(&path, crash.rotate_left(32));
            if let Ok(file) = OpenOptions::new().write(true).open(&path) {
                if file.metadata()?.len() != length && rng.below(2) == 0 {
                    file.set_len(length)?;
                    file.sync_all()?;
                }
            }
        }
        Ok(report)
    }
}

impl SimState {
    /// A generator for one decision about `path`: seeded by the run's seed,
    /// the file's name within the data dir, `salt` and how many decisions
    /// this file has had.
    fn keyed(&mut self, path: &Path, salt: u64) -> SplitMix64 {
        let count = self.ops.entry(path.to_path_buf()).or_insert(0);
        *count += 1;
        let mut key = self.seed ^ count.wrapping_mul(0xA24B_AED4_963E_E407) ^ salt.wrapping_mul(0x9FB2_1C65_1E98_DF25);
        // The last two components (partition dir, file): the data dir itself
        // is a temporary name that differs between runs.
        let tail: Vec<_> = path.components().rev().take(2).collect();
        for component in tail {
            for byte in component.as_os_str().as_encoded_bytes() {
                key = (key ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01B3);
            }
        }
        let mut rng = SplitMix64(key);
        rng.next_u64();
        rng
    }
}
