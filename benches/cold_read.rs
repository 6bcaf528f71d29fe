//! Cold sequential reads: the storage's DMA read path against sendfile(2).
//!
//! Setup: write `MIB` MiB (default 512) of 16 KiB batches to one partition
//! (flush=interval, 64 in flight), the same amount of 1 MiB batches to a
//! second one and of 1048588-byte batches (Kafka's default
//! `max.message.bytes`, just over 1 MiB) to a third; close cleanly. Each phase below reads one of those
//! segment files from start to end, after `sync` and
//! `echo 3 > /proc/sys/vm/drop_caches` (root) so that it starts cold:
//! - `storage.read`: reopen the storage (empty batch cache) and call
//!   `read(tp, cursor, 1 MiB)` until the high watermark; bytes are not
//!   touched. Also for the 1 MiB and the 1048588-byte batch partitions.
//! - `dma/read_at_aligned qd1` and `qd4`: raw glommio DmaFile reads of 1 MiB
//!   windows of the same file, one (four) in flight.
//! - `sendfile->tcp`: `sendfile(2)` from a buffered (non-O_DIRECT) fd into a
//!   loopback TCP socket whose peer, a std thread on the other CPU, reads
//!   and discards. Then once more without dropping the cache (`warm`).
//! - `dma+write->tcp`: raw DMA read of 1 MiB windows, then `write(2)` of the
//!   window into the same kind of sink (blocking socket, one executor).
//! - `storage.read+writev->tcp`: `storage.read(1 MiB)` then `writev(2)` of
//!   the returned batches into the sink: what a fetch of cold data costs.
//! - `memory->tcp`: `write(2)` of a 1 MiB in-memory buffer into the sink, the
//!   loopback ceiling (no disk).
//!
//! Usage: `cargo bench --bench cold_read [-- FILTER]`. Environment:
//! RINGSTREAM_BENCH_DIR (parent of the temp dir, default /var/tmp),
//! RINGSTREAM_BENCH_MIB (data per partition, default 512).

mod common;
use common::batch_of;

use std::collections::VecDeque;
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use glommio::io::DmaFile;
use glommio::{LocalExecutorBuilder, Placement};
use ringstream_core::batch::BatchHeader;
use ringstream_core::types::{Offset, ShardId, TopicPartition};
use ringstream_storage::dir::segment_log_path;
use ringstream_storage::log::{FlushPolicy, LogConfig};
use ringstream_storage::shard_storage::{ShardStorage, StorageConfig};

const MIB: u64 = 1024 * 1024;
const WINDOW: usize = 1024 * 1024;
const DEPTH: usize = 64;
/// Kafka's default `max.message.bytes` (and our LogConfig default).
const KAFKA_MAX_MESSAGE_BYTES: usize = 1_048_588;

struct Phase {
    name: String,
    bytes: u64,
    secs: f64,
    cold: bool,
    /// DMA reads issued and bytes they read (glommio's counters), if known.
    dma: Option<(u64, u64)>,
}

impl Phase {
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / MIB as f64 / self.secs
    }
}

#[derive(Clone)]
struct Context {
    data_dir: PathBuf,
    cpu_a: Option<usize>,
    cpu_b: Option<usize>,
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected = |name: &str| filter.as_ref().map_or(true, |f| name.contains(f.as_str()));
    let mib: u64 = std::env::var("RINGSTREAM_BENCH_MIB").ok().and_then(|s| s.parse().ok()).unwrap_or(512);
    let parent = std::env::var_os("RINGSTREAM_BENCH_DIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    std::fs::create_dir_all(&parent).expect("bench parent dir");
    let dir = tempfile::Builder::new().prefix("ringstream-bench-cold-").tempdir_in(&parent).expect("temp dir");
    let cpus = ringstream_tuning::allowed_cpus().expect("read CPU set");
    let context =
        Context { data_dir: dir.path().to_path_buf(), cpu_a: cpus.first().copied(), cpu_b: cpus.get(1).copied() };
    println!("# cold read benchmark");
    println!(
        "dir: {} | {} MiB per partition | reads of 1 MiB | reader CPU {:?}, TCP sink CPU {:?} | 1 MiB = 2^20 bytes",
        context.data_dir.display(),
        mib,
        context.cpu_a,
        context.cpu_b
    );

    let small = TopicPartition::new("cold", 0);
    let large = TopicPartition::new("cold-1m", 0);
    let largest = TopicPartition::new("cold-maxmsg", 0);
    let mut to_write = vec![(small.clone(), 16 * 1024)];
    if selected("storage.read/1m") {
        to_write.push((large.clone(), MIB as usize));
    }
    if selected("storage.read/maxmsg") {
        to_write.push((largest.clone(), KAFKA_MAX_MESSAGE_BYTES));
    }
    let setup = write_partitions(&context, &to_write, mib * MIB);
    for ((tp, mib_s, bytes), (_, size)) in setup.iter().zip(&to_write) {
        println!(
            "setup: wrote {:.0} MiB of {size}-byte batches to {tp} at {mib_s:.1} MiB/s (flush=interval, acknowledged writes)",
            *bytes as f64 / MIB as f64
        );
    }
    let segment = |tp: &TopicPartition| segment_log_path(&context.data_dir.join(tp.dir_name()), Offset(0));
    let small_segment = segment(&small);
    let small_bytes = std::fs::metadata(&small_segment).expect("segment").len();

    let mut phases: Vec<Phase> = Vec::new();
    let mut cache_notes: Vec<String> = Vec::new();
    let mut cold = |name: &str| -> bool {
        match drop_caches() {
            Ok(()) => true,
            Err(e) => {
                cache_notes.push(format!("{name}: page cache NOT dropped ({e}); this phase may read warm data"));
                false
            }
        }
    };

    if selected("storage.read/16k") {
        let was_cold = cold("storage.read/16k");
        phases.push(storage_read(&context, "storage.read/16k-batches", small.clone(), None, was_cold));
    }
    if selected("storage.read/1m") {
        let was_cold = cold("storage.read/1m");
        phases.push(storage_read(&context, "storage.read/1m-batches", large.clone(), None, was_cold));
    }
    if selected("storage.read/maxmsg") {
        let was_cold = cold("storage.read/maxmsg");
        phases.push(storage_read(&context, "storage.read/maxmsg-batches", largest.clone(), None, was_cold));
    }
    for depth in [1usize, 4] {
        let name = format!("dma/read_at_aligned/qd{depth}");
        if selected(&name) {
            let was_cold = cold(&name);
            phases.push(dma_read(&context, &name, &small_segment, small_bytes, depth, None, was_cold));
        }
    }
    if selected("sendfile->tcp") {
        let was_cold = cold("sendfile->tcp");
        phases.push(sendfile_to_tcp(&context, "sendfile->tcp", &small_segment, small_bytes, was_cold));
        phases.push(sendfile_to_tcp(&context, "sendfile->tcp (warm)", &small_segment, small_bytes, false));
    }
    if selected("dma+write->tcp") {
        let was_cold = cold("dma+write->tcp");
        let sink = Sink::start(context.cpu_b);
        phases.push(dma_read(&context, "dma+write->tcp", &small_segment, small_bytes, 1, Some(sink), was_cold));
    }
    if selected("storage.read+writev->tcp") {
        let was_cold = cold("storage.read+writev->tcp");
        let sink = Sink::start(context.cpu_b);
        phases.push(storage_read(&context, "storage.read+writev->tcp", small.clone(), Some(sink), was_cold));
    }
    if selected("memory->tcp") {
        phases.push(memory_to_tcp(&context, small_bytes));
    }

    println!();
    println!(
        "{:<30} {:>9} {:>8} {:>7} {:>6} {:>10} {:>12}",
        "phase", "MiB/s", "MiB", "secs", "cold", "DMA reads", "DMA MiB read"
    );
    for phase in &phases {
        let (reads, read_mib) = phase.dma.map_or(("-".to_string(), "-".to_string()), |(n, b)| {
            (n.to_string(), format!("{:.0}", b as f64 / MIB as f64))
        });
        println!(
            "{:<30} {:>9.1} {:>8.0} {:>7.3} {:>6} {:>10} {:>12}",
            phase.name,
            phase.mib_s(),
            phase.bytes as f64 / MIB as f64,
            phase.secs,
            if phase.cold { "yes" } else { "no" },
            reads,
            read_mib
        );
    }
    for note in &cache_notes {
        println!("NOTE: {note}");
    }
    let find = |name: &str| phases.iter().find(|p| p.name == name);
    println!();
    for (a, b) in [
        ("storage.read/16k-batches", "dma/read_at_aligned/qd1"),
        ("sendfile->tcp", "dma+write->tcp"),
        ("sendfile->tcp", "storage.read+writev->tcp"),
    ] {
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            println!("{} / {}: {:.2}", a.name, b.name, a.mib_s() / b.mib_s());
        }
    }
    println!();
    for phase in &phases {
        println!("RESULT cold_read {} mib_s={:.1} cold={}", phase.name.replace(' ', "_"), phase.mib_s(), phase.cold);
    }
    drop(dir);
}

/// `sync`, then drop the page cache, dentries and inodes (needs root).
fn drop_caches() -> std::io::Result<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", b"3\n")
}

fn executor(cpu: Option<usize>) -> LocalExecutorBuilder {
    let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
    LocalExecutorBuilder::new(placement).io_memory(2 << 20).spin_before_park(Duration::from_micros(50))
}

fn storage_config(data_dir: &Path) -> (StorageConfig, LogConfig) {
    let log = LogConfig { max_message_bytes: 2 * MIB as usize, ..LogConfig::default() };
    let mut config = StorageConfig::new(data_dir);
    config.flush = FlushPolicy::Interval { interval_ms: 50 };
    config.retention_check_interval_ms = 3_600_000;
    config.default_log = log.clone();
    (config, log)
}

/// Fills each partition with batches of its size; returns MiB/s per partition.
fn write_partitions(
    context: &Context,
    partitions: &[(TopicPartition, usize)],
    target: u64,
) -> Vec<(TopicPartition, f64, u64)> {
    let data_dir = context.data_dir.clone();
    let partitions = partitions.to_vec();
    executor(context.cpu_a)
        .spawn(move || async move {
            let (config, log) = storage_config(&data_dir);
            let storage = ShardStorage::open(ShardId(0), config).await.expect("storage opens");
            let mut out = Vec::new();
            for (tp, size) in partitions {
                storage.open_partition(tp.clone(), log.clone()).await.expect("partition opens");
                let batch = batch_of(size, 3);
                let mut in_flight = VecDeque::with_capacity(DEPTH);
                let mut bytes = 0u64;
                let start = Instant::now();
                while bytes + batch.len() as u64 <= target {
                    in_flight.push_back(storage.submit(&tp, batch.clone()).await.expect("submit"));
                    bytes += batch.len() as u64;
                    if in_flight.len() >= DEPTH {
                        in_flight.pop_front().unwrap().wait().await.expect("append");
                    }
                }
                while let Some(ticket) = in_flight.pop_front() {
                    ticket.wait().await.expect("append");
                }
                out.push((tp, bytes as f64 / MIB as f64 / start.elapsed().as_secs_f64(), bytes));
            }
            storage.close().await.expect("clean close");
            out
        })
        .expect("executor")
        .join()
        .expect("writer finishes")
}

fn dma_reads_so_far() -> (u64, u64) {
    let stats = glommio::executor().io_stats();
    let mut total = (0, 0);
    for ring in [&stats.main_ring, &stats.latency_ring, &stats.poll_ring] {
        let (n, b) = ring.file_reads();
        total.0 += n;
        total.1 += b;
    }
    total
}

/// Reopens the storage and reads `tp` from its start with 1 MiB reads;
/// with a sink, writes the batches of every read there with writev.
fn storage_read(context: &Context, name: &str, tp: TopicPartition, sink: Option<Sink>, cold: bool) -> Phase {
    let data_dir = context.data_dir.clone();
    let address = sink.as_ref().map(|s| s.address);
    let (bytes, secs, dma) = executor(context.cpu_a)
        .spawn(move || async move {
            let (config, log) = storage_config(&data_dir);
            let storage = ShardStorage::open(ShardId(0), config).await.expect("storage reopens");
            storage.open_partition(tp.clone(), log).await.expect("partition reopens");
            let mut stream = address.map(|a| TcpStream::connect(a).expect("connect sink"));
            let hw = storage.offsets(&tp).expect("offsets").high_watermark;
            let _ = dma_reads_so_far(); // resets glommio's counters
            let start = Instant::now();
            let (mut cursor, mut bytes) = (Offset(0), 0u64);
            while cursor < hw {
                let read = storage.read(&tp, cursor, WINDOW).await.expect("read");
                assert!(!read.batches.is_empty(), "read at {cursor} below {hw} returned nothing");
                for batch in &read.batches {
                    let header = BatchHeader::ref_from_prefix(batch).expect("header");
                    assert_eq!(header.base_offset(), cursor, "contiguous batches");
                    cursor = Offset(cursor.0 + i64::from(header.last_offset_delta()) + 1);
                }
                if let Some(stream) = stream.as_mut() {
                    let slices: Vec<&[u8]> = read.batches.iter().map(|b| &b[..]).collect();
                    write_all_vectored(stream, &slices);
                }
                bytes += read.bytes as u64;
            }
            drop(stream);
            let secs = start.elapsed().as_secs_f64();
            let dma = dma_reads_so_far();
            storage.close().await.expect("clean close");
            (bytes, secs, dma)
        })
        .expect("executor")
        .join()
        .expect("reader finishes");
    let secs = match sink {
        // The sink has everything once it sees EOF; count until then.
        Some(sink) => {
            let (received, sink_secs) = sink.finish();
            assert_eq!(received, bytes, "sink received every byte");
            secs.max(sink_secs)
        }
        None => secs,
    };
    Phase { name: name.to_string(), bytes, secs, cold, dma: Some(dma) }
}

/// Raw DMA reads of 1 MiB windows, `depth` in flight; with a sink, each
/// window is then written to it with write(2).
fn dma_read(
    context: &Context,
    name: &str,
    path: &Path,
    len: u64,
    depth: usize,
    sink: Option<Sink>,
    cold: bool,
) -> Phase {
    let path = path.to_path_buf();
    let address = sink.as_ref().map(|s| s.address);
    let (secs, dma) = executor(context.cpu_a)
        .spawn(move || async move {
            // glommio #605: the first DMA file opened must be non-empty; this one is.
            let file = Rc::new(DmaFile::open(&path).await.expect("open segment"));
            let mut stream = address.map(|a| TcpStream::connect(a).expect("connect sink"));
            let _ = dma_reads_so_far();
            let start = Instant::now();
            let mut in_flight = VecDeque::with_capacity(depth);
            let mut position = 0u64;
            let mut done = 0u64;
            while done < len {
                while position < len && in_flight.len() < depth {
                    let file = file.clone();
                    let at = position;
                    in_flight.push_back(glommio::spawn_local(async move {
                        file.read_at_aligned(at, WINDOW).await.expect("dma read")
                    }));
                    position += WINDOW as u64;
                }
                let window = in_flight.pop_front().expect("a read in flight").await;
                let useful = (len - done).min(WINDOW as u64) as usize;
                assert!(window.len() >= useful, "short read");
                if let Some(stream) = stream.as_mut() {
                    stream.write_all(&window[..useful]).expect("write to sink");
                }
                done += useful as u64;
            }
            drop(stream);
            let secs = start.elapsed().as_secs_f64();
            let dma = dma_reads_so_far();
            file.close_rc().await.expect("close");
            (secs, dma)
        })
        .expect("executor")
        .join()
        .expect("reader finishes");
    let secs = match sink {
        Some(sink) => {
            let (received, sink_secs) = sink.finish();
            assert_eq!(received, len, "sink received every byte");
            secs.max(sink_secs)
        }
        None => secs,
    };
    Phase { name: name.to_string(), bytes: len, secs, cold, dma: Some(dma) }
}

fn sendfile_to_tcp(context: &Context, name: &str, path: &Path, len: u64, cold: bool) -> Phase {
    let sink = Sink::start(context.cpu_b);
    let path = path.to_path_buf();
    let address = sink.address;
    let cpu = context.cpu_a;
    let sender = std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            pin_current_thread(cpu);
        }
        let file = std::fs::File::open(&path).expect("open segment (buffered)");
        let stream = TcpStream::connect(address).expect("connect sink");
        let start = Instant::now();
        let mut offset: libc::off_t = 0;
        while (offset as u64) < len {
            let chunk = (len - offset as u64).min(1 << 30) as usize;
            // SAFETY: both fds are open for the duration of the call and
            // `offset` is a valid off_t that sendfile advances.
            let sent = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, chunk) };
            if sent < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                panic!("sendfile: {error}");
            }
            assert!(sent > 0, "sendfile made no progress at {offset}");
        }
        drop(stream);
        start.elapsed().as_secs_f64()
    });
    let secs = sender.join().expect("sender finishes");
    let (received, sink_secs) = sink.finish();
    assert_eq!(received, len, "sink received every byte");
    Phase { name: name.to_string(), bytes: len, secs: secs.max(sink_secs), cold, dma: None }
}

fn memory_to_tcp(context: &Context, len: u64) -> Phase {
    let sink = Sink::start(context.cpu_b);
    let address = sink.address;
    let cpu = context.cpu_a;
    let secs = std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            pin_current_thread(cpu);
        }
        let buffer = vec![0x5au8; WINDOW];
        let mut stream = TcpStream::connect(address).expect("connect sink");
        let start = Instant::now();
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(WINDOW as u64) as usize;
            stream.write_all(&buffer[..n]).expect("write to sink");
            done += n as u64;
        }
        drop(stream);
        start.elapsed().as_secs_f64()
    })
    .join()
    .expect("writer finishes");
    let (received, sink_secs) = sink.finish();
    assert_eq!(received, len);
    Phase { name: "memory->tcp".to_string(), bytes: len, secs: secs.max(sink_secs), cold: false, dma: None }
}

fn write_all_vectored(stream: &mut TcpStream, slices: &[&[u8]]) {
    let (mut index, mut skip) = (0usize, 0usize);
    while index < slices.len() {
        let mut io: Vec<IoSlice<'_>> = Vec::with_capacity((slices.len() - index).min(1024));
        io.push(IoSlice::new(&slices[index][skip..]));
        io.extend(slices[index + 1..].iter().take(1023).map(|s| IoSlice::new(s)));
        let mut written = match stream.write_vectored(&io) {
            Ok(0) => panic!("sink closed"),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("writev to sink: {e}"),
        };
        while index < slices.len() && written > 0 {
            let left = slices[index].len() - skip;
            if written >= left {
                written -= left;
                index += 1;
                skip = 0;
            } else {
                skip += written;
                written = 0;
            }
        }
    }
}

fn pin_current_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "pin to CPU {cpu}");
    }
}

/// A loopback TCP peer that reads and discards until EOF.
struct Sink {
    address: std::net::SocketAddr,
    thread: JoinHandle<(u64, f64)>,
}

impl Sink {
    fn start(cpu: Option<usize>) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let address = listener.local_addr().expect("sink address");
        let thread = std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                pin_current_thread(cpu);
            }
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buffer = vec![0u8; WINDOW];
            let mut received = 0u64;
            let mut first: Option<Instant> = None;
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        first.get_or_insert_with(Instant::now);
                        received += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => panic!("sink read: {e}"),
                }
            }
            (received, first.map_or(0.0, |f| f.elapsed().as_secs_f64()))
        });
        Sink { address, thread }
    }

    /// Bytes received and seconds from the first byte to EOF.
    fn finish(self) -> (u64, f64) {
        self.thread.join().expect("sink finishes")
    }
}
