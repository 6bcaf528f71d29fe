//! `--baseline raw-tcp`: the machine's loopback ceiling for the same traffic
//! shape. An in-process TCP sink on 127.0.0.1 (an ephemeral port) reads each
//! frame by its 4-byte size prefix and answers it with a fixed 8-byte reply
//! (size 4, then the request's correlation id, copied from bytes 4..8 of the
//! header): no parsing beyond that, no storage. Producers send it exactly
//! the Produce requests they would send a broker and wait for replies the
//! same way, so pipelining and batching are the same.
//!
//! One plain OS thread per connection, blocking reads and writes: the
//! cheapest server there is, which is what a ceiling should be.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::limits::sink_frame_bytes_max;

pub struct Sink {
    pub address: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Sink {
    pub fn start() -> std::io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let acceptor = std::thread::Builder::new().name("raw-tcp-sink".into()).spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = std::thread::Builder::new().name("raw-tcp-conn".into()).spawn(move || serve(stream));
            }
        })?;
        Ok(Sink { address, stopping, acceptor: Some(acceptor) })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        // Wake the acceptor with one last connection so it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves one connection until the peer closes it or sends a bad size.
fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut prefix = [0u8; 4];
    loop {
        if stream.read_exact(&mut prefix).is_err() {
            return;
        }
        let size = i32::from_be_bytes(prefix);
        if size < 8 || size as usize > sink_frame_bytes_max {
            return;
        }
        let size = size as usize;
        if buffer.len() < size {
            buffer.resize(size, 0);
        }
        if stream.read_exact(&mut buffer[..size]).is_err() {
            return;
        }
        let mut reply = [0u8; 8];
        reply[..4].copy_from_slice(&4i32.to_be_bytes());
        reply[4..].copy_from_slice(&buffer[4..8]);
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_correlation_ids_in_order() {
        let sink = Sink::start().unwrap();
        let mut client = TcpStream::connect(sink.address).unwrap();
        for correlation in [7i32, 8, 9] {
            let mut frame = Vec::new();
            frame.extend_from_slice(&12i32.to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 9]); // api key, version
            frame.extend_from_slice(&correlation.to_be_bytes());
            frame.extend_from_slice(&[1, 2, 3, 4]);
            client.write_all(&frame).unwrap();
        }
        for correlation in [7i32, 8, 9] {
            let mut reply = [0u8; 8];
            client.read_exact(&mut reply).unwrap();
            assert_eq!(&reply[..4], &4i32.to_be_bytes());
            assert_eq!(&reply[4..], &correlation.to_be_bytes());
        }
        drop(client);
        drop(sink);
    }
}
