//! The disk probe: O_DIRECT write and read bandwidth of the data directory's
//! device at several block sizes and queue depths, and the latency of a
//! 4 KiB append followed by fdatasync (what an acknowledged append costs).
//!
//! It runs on one glommio `LocalExecutor`, as a shard does: queue depth N is
//! N futures each issuing one DMA operation at a time on the same io_uring.
//! Every cell of the matrix is bounded twice, by bytes and by time, so a slow
//! disk makes the probe less precise, never longer. The probe files live in
//! the data directory (same device and filesystem as the segments) and are
//! deleted afterwards, also when the probe fails.

use std::cell::Cell as StdCell;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};

/// O_DIRECT positions and lengths are multiples of this (the physical block).
pub const alignment_bytes: usize = 4096;

/// Which operation a cell measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Write,
    Read,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Read => "read",
        }
    }
}

/// How much the probe may do.
#[derive(Clone, Debug)]
pub struct DiskProbeConfig {
    pub block_sizes: Vec<usize>,
    pub queue_depths: Vec<usize>,
    /// The probe file's size; operations wrap around inside it.
    pub region_bytes: u64,
    /// Per cell: stop issuing after this many bytes ...
    pub cell_bytes_max: u64,
    /// ... or after this long, whichever comes first.
    pub cell_time_max: Duration,
    /// fdatasync latency: at most this many samples ...
    pub sync_samples_max: usize,
    /// ... within this time (at least one sample is always taken).
    pub sync_time_max: Duration,
}

impl DiskProbeConfig {
    /// For tests and a first look: well under 5 s on any disk that works.
    pub fn quick() -> DiskProbeConfig {
        DiskProbeConfig {
            block_sizes: vec![4 * 1024, 64 * 1024, 1024 * 1024],
            queue_depths: vec![1, 4, 16, 32],
            region_bytes: 8 * 1024 * 1024,
            cell_bytes_max: 4 * 1024 * 1024,
            cell_time_max: Duration::from_millis(40),
            sync_samples_max: 32,
            sync_time_max: Duration::from_millis(300),
        }
    }

    /// The default: about 20-30 s (24 cells of at most 1 s, 3 s of fdatasyncs).
    pub fn full() -> DiskProbeConfig {
        DiskProbeConfig {
            block_sizes: vec![4 * 1024, 64 * 1024, 1024 * 1024],
            queue_depths: vec![1, 4, 16, 32],
            region_bytes: 256 * 1024 * 1024,
            cell_bytes_max: 1024 * 1024 * 1024,
            cell_time_max: Duration::from_millis(1000),
            sync_samples_max: 1000,
            sync_time_max: Duration::from_secs(3),
        }
    }

    fn check(&self) {
        assert!(!self.block_sizes.is_empty() && !self.queue_depths.is_empty());
        for &block in &self.block_sizes {
            assert!(block >= alignment_bytes && block % alignment_bytes == 0, "block {block} not aligned");
            assert!(self.region_bytes % block as u64 == 0, "region not a multiple of block {block}");
        }
        assert!(self.queue_depths.iter().all(|&qd| (1..=1024).contains(&qd)));
        assert!(self.sync_samples_max >= 1);
        assert!(self.region_bytes >= alignment_bytes as u64);
    }
}

/// One measured cell: `bytes` moved in `elapsed` by `queue_depth` futures.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub op: Op,
    pub block_bytes: usize,
    pub queue_depth: usize,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Cell {
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What the disk probe measured.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskProbe {
    pub path: PathBuf,
    pub cells: Vec<Cell>,
    /// Latencies of a 4 KiB append + fdatasync, in microseconds, ascending.
    pub sync_latencies_us: Vec<u64>,
}

impl DiskProbe {
    pub fn cell(&self, op: Op, block_bytes: usize, queue_depth: usize) -> Option<&Cell> {
        self.cells.iter().find(|c| c.op == op && c.block_bytes == block_bytes && c.queue_depth == queue_depth)
    }

    pub fn block_sizes(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self.cells.iter().map(|c| c.block_bytes).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    pub fn queue_depths(&self) -> Vec<usize> {
        let mut depths: Vec<usize> = self.cells.iter().map(|c| c.queue_depth).collect();
        depths.sort_unstable();
        depths.dedup();
        depths
    }

    /// The `q` quantile (0..=1) of the fdatasync latencies, nearest rank.
    pub fn sync_latency_us(&self, q: f64) -> u64 {
        quantile(&self.sync_latencies_us, q)
    }

    /// A readable table: MB/s per block size (rows) and queue depth (columns).
    pub fn render(&self) -> String {
        let depths = self.queue_depths();
        let mut out = String::new();
        let _ = writeln!(out, "disk: {} (O_DIRECT, MB/s = 10^6 bytes/s)", self.path.display());
        let _ = write!(out, "{:<6} {:>8}", "op", "block");
        for qd in &depths {
            let _ = write!(out, " {:>9}", format!("QD{qd}"));
        }
        out.push('\n');
        for op in [Op::Write, Op::Read] {
            for block in self.block_sizes() {
                let _ = write!(out, "{:<6} {:>8}", op.name(), format_bytes(block as u64));
                for &qd in &depths {
                    let text = self
                        .cell(op, block, qd)
                        .map_or("-".to_owned(), |c| format!("{:.1}", c.bytes_per_second() / 1e6));
                    let _ = write!(out, " {text:>9}");
                }
                out.push('\n');
            }
        }
        let _ = writeln!(
            out,
            "fdatasync after a 4 KiB append: p50 {} us, p99 {} us ({} samples)",
            self.sync_latency_us(0.50),
            self.sync_latency_us(0.99),
            self.sync_latencies_us.len()
        );
        out
    }
}

/// Nearest-rank quantile of ascending `sorted`; 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    assert!((0.0..=1.0).contains(&q));
    assert!(sorted.windows(2).all(|pair| pair[0] <= pair[1]), "not sorted");
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// "4 KiB", "1 MiB": binary units for sizes.
pub fn format_bytes(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// Deletes the probe file however the probe ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the disk probe in `data_dir` (created if missing) on a throwaway
/// executor, blocking the calling thread until it finishes.
pub fn probe_disk(data_dir: &Path, config: &DiskProbeConfig) -> io::Result<DiskProbe> {
    config.check();
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(format!(".ringstream-tune.{}.probe", std::process::id()));
    let sync_path = data_dir.join(format!(".ringstream-tune.{}.sync", std::process::id()));
    let _remove = (RemoveOnDrop(path.clone()), RemoveOnDrop(sync_path.clone()));
    // Fill the region with buffered I/O first. Besides allocating the
    // blocks (so writes measure the device, not the allocator), it makes the
    // first DMA open see a non-empty file: glommio #605 marks a device as
    // iopoll-capable, wrongly, when that first file is empty, and every DMA
    // read on it fails with EOPNOTSUPP afterwards.
    fill_region(&path, config.region_bytes)?;
    let config = config.clone();
    let (task_path, task_sync_path) = (path.clone(), sync_path.clone());
    let (cells, mut sync_latencies_us) = LocalExecutorBuilder::new(Placement::Unbound)
        .name("tune-disk")
        .io_memory(2 * 1024 * 1024)
        .spawn(move || async move { run_matrix(&task_path, &task_sync_path, &config).await })
        .map_err(|e| io::Error::other(format!("starting the probe executor: {e}")))?
        .join()
        .map_err(|e| io::Error::other(format!("probe executor: {e}")))??;
    sync_latencies_us.sort_unstable();
    Ok(DiskProbe { path, cells, sync_latencies_us })
}

fn fill_region(path: &Path, region_bytes: u64) -> io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let chunk = pattern(1024 * 1024, 0x5eed);
    let mut written = 0u64;
    while written < region_bytes {
        let len = chunk.len().min((region_bytes - written) as usize);
        file.write_all(&chunk[..len])?;
        written += len as u64;
    }
    file.sync_all()?;
    assert_eq!(file.metadata()?.len(), region_bytes);
    Ok(())
}

/// Incompressible bytes (xorshift), so a compressing or deduplicating
/// device cannot flatter the figures.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn glommio_io<T>(error: glommio::GlommioError<T>) -> io::Error {
    io::Error::from(error)
}

async fn run_matrix(path: &Path, sync_path: &Path, config: &DiskProbeConfig) -> io::Result<(Vec<Cell>, Vec<u64>)> {
    let file = OpenOptions::new().read(true).write(true).dma_open(path).await.map_err(|e| {
        let e = glommio_io(e);
        io::Error::new(
            e.kind(),
            format!("opening {} with O_DIRECT (does the filesystem support it?): {e}", path.display()),
        )
    })?;
    let file = Rc::new(file);
    let mut cells = Vec::new();
    for op in [Op::Write, Op::Read] {
        for &block in &config.block_sizes {
            for &queue_depth in &config.queue_depths {
                cells.push(run_cell(&file, op, block, queue_depth, config).await?);
            }
        }
    }
    if let Ok(file) = Rc::try_unwrap(file) {
        let _ = file.close().await;
    }
    let latencies = sync_latencies(sync_path, config).await?;
    Ok((cells, latencies))
}

/// One cell: `queue_depth` futures, each with its own buffer, take the next
/// operation number from a shared counter until the bytes or time run out.
async fn run_cell(
    file: &Rc<DmaFile>,
    op: Op,
    block: usize,
    queue_depth: usize,
    config: &DiskProbeConfig,
) -> io::Result<Cell> {
    let blocks_in_region = config.region_bytes / block as u64;
    // At least one operation per future, so every cell measures something.
    let ops_max = (config.cell_bytes_max / block as u64).max(queue_depth as u64);
    let next_op = Rc::new(StdCell::new(0u64));
    let done_bytes = Rc::new(StdCell::new(0u64));
    let start = Instant::now();
    let workers = (0..queue_depth).map(|worker| {
        let (file, next_op, done_bytes) = (file.clone(), next_op.clone(), done_bytes.clone());
        async move {
            let mut buffer = file.alloc_dma_buffer(block);
            buffer.as_bytes_mut().copy_from_slice(&pattern(block, worker as u64 + 7));
            let buffer = Rc::new(buffer);
            loop {
                let n = next_op.get();
                if n >= ops_max || (n >= queue_depth as u64 && start.elapsed() >= config.cell_time_max) {
                    return Ok::<(), io::Error>(());
                }
                next_op.set(n + 1);
                let position = (n % blocks_in_region) * block as u64;
                let moved = match op {
                    Op::Write => file.write_rc_at(buffer.clone(), position).await.map_err(glommio_io)?,
                    Op::Read => file.read_at_aligned(position, block).await.map_err(glommio_io)?.len(),
                };
                if moved != block {
                    return Err(io::Error::other(format!(
                        "{} of {block} bytes at {position} moved {moved}",
                        op.name()
                    )));
                }
                done_bytes.set(done_bytes.get() + block as u64);
            }
        }
    });
    for result in futures_util::future::join_all(workers).await {
        result?;
    }
    let elapsed = start.elapsed();
    let bytes = done_bytes.get();
    assert!(bytes >= (queue_depth * block) as u64);
    Ok(Cell { op, block_bytes: block, queue_depth, bytes, elapsed })
}

/// Append 4 KiB then fdatasync, one at a time, to a second file
/// preallocated with KEEP_SIZE: exactly what a segment append costs under
/// `log.flush.policy=always` (the file size grows with each append, so each
/// fdatasync also commits that metadata, which an overwrite would not).
async fn sync_latencies(path: &Path, config: &DiskProbeConfig) -> io::Result<Vec<u64>> {
    // The region file was opened first, so this empty file cannot mislead
    // glommio's device probe (#605).
    let file = DmaFile::create(path).await.map_err(glommio_io)?;
    let appends_max = config.sync_samples_max as u64;
    file.pre_allocate(appends_max * alignment_bytes as u64, true).await.map_err(glommio_io)?;
    let mut buffer = file.alloc_dma_buffer(alignment_bytes);
    buffer.as_bytes_mut().copy_from_slice(&pattern(alignment_bytes, 99));
    let buffer = Rc::new(buffer);
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(config.sync_samples_max.min(100_000));
    while latencies.len() < config.sync_samples_max && (latencies.is_empty() || start.elapsed() < config.sync_time_max)
    {
        let position = latencies.len() as u64 * alignment_bytes as u64;
        let began = Instant::now();
        let written = file.write_rc_at(buffer.clone(), position).await.map_err(glommio_io)?;
        if written != alignment_bytes {
            return Err(io::Error::other(format!("4 KiB append at {position} wrote {written}")));
        }
        file.fdatasync().await.map_err(glommio_io)?;
        latencies.push(began.elapsed().as_micros() as u64);
    }
    assert!(!latencies.is_empty() && latencies.len() as u64 <= appends_max);
    let _ = file.close().await;
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&values, 0.5), 50);
        assert_eq!(quantile(&values, 0.99), 99);
        assert_eq!(quantile(&values, 1.0), 100);
        assert_eq!(quantile(&values, 0.0), 1);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(format_bytes(4096), "4 KiB");
        assert_eq!(format_bytes(1 << 20), "1 MiB");
        assert_eq!(format_bytes(16 << 20), "16 MiB");
        assert_eq!(format_bytes(100), "100 B");
    }

    /// A tiny probe on a temp dir: every cell measured, the file removed.
    #[test]
    fn tiny_probe_measures_every_cell_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let config = DiskProbeConfig {
            block_sizes: vec![4096, 65536],
            queue_depths: vec![1, 4],
            region_bytes: 1024 * 1024,
            cell_bytes_max: 256 * 1024,
            cell_time_max: Duration::from_millis(20),
            sync_samples_max: 4,
            sync_time_max: Duration::from_millis(100),
        };
        let probe = probe_disk(dir.path(), &config).unwrap();
        assert_eq!(probe.cells.len(), 2 * 2 * 2);
        for cell in &probe.cells {
            assert!(cell.bytes >= (cell.block_bytes * cell.queue_depth) as u64, "{cell:?}");
            assert!(cell.bytes_per_second() > 0.0);
        }
        assert!(!probe.sync_latencies_us.is_empty() && probe.sync_latencies_us.len() <= 4);
        assert!(probe.render().contains("QD4"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "probe file left behind");
    }
}
