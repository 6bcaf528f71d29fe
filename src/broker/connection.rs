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

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::broker::Broker;
use crate::handlers;
use crate::protocol;

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

async fn serve(broker: Rc<Broker>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let depth = broker.config.connection_requests_in_flight_max;
    let (queue, responses) = local_channel::new_bounded::<glommio::task::JoinHandle<Option<Bytes>>>(depth);
    let writer_task = glommio::spawn_local(async move {
        while let Some(handle) = responses.recv().await {
            let Some(Some(frame)) = handle.await else { continue }; // None: no response (acks=0)
            if writer.write_all(&frame).await.is_err() {
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
        let mut frame = BytesMut::zeroed(size); // size checked above
        if reader.read_exact(&mut frame).await.is_err() {
            break;
        }
        let request = match protocol::decode_request(frame.freeze(), handlers::max_version) {
            Ok(request) => request,
            Err(e) => {
                warn!(client = ?peer, "closing connection: {e}");
                break;
            }
        };
        let api = request.api_key;
        let response = match handlers::start(&broker, request).await {
            Ok(response) => response,
            Err(e) => {
                warn!(client = ?peer, api = ?api, "closing connection: {e}");
                break;
            }
        };
        let handle = glommio::spawn_local(response).detach();
        if queue.send(handle).await.is_err() {
            break;
        }
    }
    drop(queue); // the writer drains what was started, then closes
    if let Some(()) = writer_task.await {
        debug!(client = ?peer, "connection closed");
    }
}
