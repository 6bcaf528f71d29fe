//! Listening and per-connection serving.
//!
//! Each shard binds the broker port (glommio sets SO_REUSEPORT, so the
//! kernel spreads connections over the shards) and serves the connections it
//! accepts. Per connection, a reader reads size-capped frames, decodes the
//! header and starts each request's handler; a writer writes the responses
//! in request order. At most `connection_requests_in_flight_max` requests
//! are started ahead of their responses: the reader waits when the queue is
//! full. A malformed request closes the connection with one log line naming
//! the client; other connections are unaffected.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use futures_channel::oneshot;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::handlers::{self, Response};
use ringstream_core::limits::iov_max;
use ringstream_core::limits::send_stall_ms_max;
use ringstream_protocol::{self as protocol, fetch_response::Piece};

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor this connection owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `pieces` to the socket with vectored sends, straight from the
/// buffers they live in (no user-space copy). On EAGAIN, waits for the
/// socket to drain on glommio's blocking pool, not on the shard.
async fn send_pieces<B: AsRef<[u8]>>(fd: RawFd, pieces: &[Piece<B>]) -> std::io::Result<()> {
    let mut index = 0usize;
    let mut offset = 0usize;
    let mut stalled_since = Instant::now();
    while index < pieces.len() {
        let iov: Vec<libc::iovec> = pieces[index..]
            .iter()
            .take(iov_max)
            .enumerate()
            .map(|(i, piece)| {
                let bytes = if i == 0 { &piece.as_slice()[offset..] } else { piece.as_slice() };
                libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() }
            })
            .collect();
        // SAFETY: every iovec points into a piece borrowed for this call.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = iov.as_ptr() as *mut libc::iovec;
        message.msg_iovlen = iov.len();
        let sent = unsafe { libc::sendmsg(fd, &message, libc::MSG_NOSIGNAL) };
        if sent < 0 {
            let error = std::io::Error::last_os_error();
            match error.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => {
                    if stalled_since.elapsed() > Duration::from_millis(send_stall_ms_max) {
                        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client stopped reading"));
                    }
                    let _ = glommio::executor()
                        .spawn_blocking(move || {
                            let mut poll = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                            // SAFETY: one pollfd, bounded wait.
                            unsafe { libc::poll(&mut poll, 1, 100) }
                        })
                        .await;
                    continue;
                }
                _ => return Err(error),
            }
        }
        stalled_since = Instant::now();
        let mut sent = sent as usize;
        while sent > 0 {
            let remaining = pieces[index].len() - offset;
            if sent >= remaining {
                sent -= remaining;
                index += 1;
                offset = 0;
            } else {
                offset += sent;
                sent = 0;
            }
        }
    }
    Ok(())
}

thread_local! {
    /// The listener bound on this shard, until `start` begins accepting.
    static BOUND: std::cell::RefCell<Option<TcpListener>> = const { std::cell::RefCell::new(None) };
}

/// Binds the broker port on this shard (SO_REUSEPORT: every shard binds
/// the same one) without accepting yet. Returns the bound address, which
/// resolves port 0.
pub fn bind(address: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).map_err(std::io::Error::from)?;
    let local = listener.local_addr().map_err(std::io::Error::from)?;
    BOUND.with(|bound| *bound.borrow_mut() = Some(listener));
    Ok(local)
}

/// Starts accepting on the listener `bind` left on this shard.
pub fn start(broker: Rc<Broker>) {
    let listener = BOUND.with(|bound| bound.borrow_mut().take()).expect("bind ran on this shard");
    glommio::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let broker = broker.clone();
                    glommio::spawn_local(async move { serve(broker, stream).await }).detach();
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
    .detach();
}

/// Reads a `size`-byte frame body into a fresh buffer without zeroing it
/// first (zeroing took 11% of a shard's CPU under S1): recv(2) with
/// MSG_DONTWAIT straight into the buffer's spare capacity, and when the
/// socket has nothing yet, one byte through glommio, which waits for
/// readability. Mixing the two is safe because glommio's default
/// (`NonBuffered`) TcpStream keeps no read buffer of its own: every byte not
/// yet read is still in the kernel.
async fn read_frame(fd: i32, reader: &mut (impl AsyncReadExt + Unpin), size: usize) -> std::io::Result<BytesMut> {
    let mut frame = BytesMut::with_capacity(size);
    while frame.len() < size {
        let want = size - frame.len();
        let spare = frame.spare_capacity_mut();
        assert!(spare.len() >= want);
        // SAFETY: recv writes at most `want` bytes into the spare capacity,
        // which has room for them; only the bytes it reports become part of
        // the buffer.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast::<libc::c_void>(), want, libc::MSG_DONTWAIT) };
        if n > 0 {
            let n = n as usize;
            assert!(n <= want);
            // SAFETY: recv initialised those `n` bytes.
            unsafe { frame.set_len(frame.len() + n) };
            continue;
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let error = std::io::Error::last_os_error();
        match error.kind() {
            std::io::ErrorKind::WouldBlock => {
                let mut one = [0u8; 1];
                reader.read_exact(&mut one).await?;
                frame.extend_from_slice(&one);
            }
            std::io::ErrorKind::Interrupted => {}
            _ => return Err(error),
        }
    }
    Ok(frame)
}

/// Counts a connection in this shard's `connections` gauge while it lives.
struct Counted(ringstream_core::metrics::Local);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.sub(1);
    }
}

async fn serve(broker: Rc<Broker>, stream: TcpStream) {
    broker.metrics.connections.add(1);
    let _counted = Counted(broker.metrics.clone());
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    // NOTES-glommio #6: glommio leaves sockets blocking, and a raw vectored
    // send on a blocking socket could stall the whole shard. glommio's own
    // reads and writes keep working on a non-blocking socket.
    let nonblocking = set_nonblocking(fd);
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let depth = broker.config.connection_requests_in_flight_max;
    let (queue, responses) = local_channel::new_bounded::<oneshot::Receiver<Option<Response>>>(depth);
    let writer_task = glommio::spawn_local(async move {
        while let Some(started) = responses.recv().await {
            let Ok(Some(response)) = started.await else { continue }; // None: no response (acks=0)
            let written = match response {
                Response::Frame(frame) => writer.write_all(&frame).await,
                Response::Pieces(pieces) if nonblocking.is_ok() => match writer.flush().await {
                    Ok(()) => send_pieces(fd, &pieces).await,
                    Err(e) => Err(e),
                },
                Response::Pieces(pieces) => {
                    // Without O_NONBLOCK: copy the pieces, never block the shard.
                    let mut frame = Vec::with_capacity(pieces.iter().map(Piece::len).sum());
                    for piece in &pieces {
                        frame.extend_from_slice(piece.as_slice());
                    }
                    writer.write_all(&frame).await
                }
            };
            if written.is_err() {
                break;
            }
        }
        let _ = writer.close().await;
    })
    .detach();

    let frame_bytes_max = broker.config.socket_request_max_bytes;
    let mut prefix = [0u8; 4];
    loop {
        if reader.read_exact(&mut prefix).await.is_err() {
            break; // closed by the client
        }
        let size = match protocol::frame_size(&prefix, frame_bytes_max) {
            Ok(Some(size)) => size,
            Ok(None) => unreachable!("4 bytes read"),
            Err(e) => {
                warn!(client = ?peer, "closing connection: {e}");
                break;
            }
        };
        let Ok(frame) = read_frame(fd, &mut reader, size).await else { break }; // size checked above
        let request = match protocol::decode_request(frame.freeze(), handlers::max_version) {
            Ok(request) => request,
            Err(e) => {
                warn!(client = ?peer, "closing connection: {e}");
                break;
            }
        };
        let api = request.api_key;
        let decoded_at = Instant::now();
        let response = match handlers::start(&broker, request, peer).await {
            Ok(response) => response,
            Err(e) => {
                warn!(client = ?peer, api = ?api, "closing connection: {e}");
                break;
            }
        };
        // The response task's result comes back over a oneshot and its
        // JoinHandle is dropped at once, never kept: in glommio 0.9 a kept
        // JoinHandle whose task is woken from another shard (remote appends
        // and reads, data waiters) can free the task twice: the waker's
        // drop on that shard (task/raw.rs `drop_waker`: count to 0, then a
        // re-clone to send it home) races `JoinHandle::drop` here, which
        // frees a completed task whose count it reads as 0. A handle
        // dropped before the task first runs never takes that path. This
        // race is the suspected cause of one rare "double free" abort under
        // heavy load (not reproduced; see BENCHMARKS.md).
        let (done, started) = oneshot::channel();
        let metrics = broker.metrics.clone();
        drop(
            glommio::spawn_local(async move {
                let response = response.await;
                // Decode to response ready (queued for the writer).
                if let Some(latency) = metrics.request_latency(api as i16) {
                    latency.observe_duration(decoded_at.elapsed());
                }
                let _ = done.send(response);
            })
            .detach(),
        );
        if queue.send(started).await.is_err() {
            break;
        }
    }
    drop(queue); // the writer drains what was started, then closes
    if let Some(()) = writer_task.await {
        debug!(client = ?peer, "connection closed");
    }
}
