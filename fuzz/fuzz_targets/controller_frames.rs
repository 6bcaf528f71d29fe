//! Fuzzes everything a peer can send the controller listener, and what the
//! metadata log holds: frame headers (bounded before any allocation), the
//! JSON hello, requests and responses, Raft messages (raft-rs's protobuf),
//! and metadata entries. None may panic; an accepted entry must apply to an
//! image or be refused, never half-applied, and must re-encode to records
//! that decode equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_cluster::quorum::QuorumNode;
use ringstream_cluster::records::{decode_entry, encode_entry, MetadataImage};
use ringstream_cluster::wire::{self, Hello, Request, Response};
use ringstream_core::limits::controller_frame_bytes_max;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    if body.len() >= wire::header_bytes {
        let header: [u8; wire::header_bytes] = body[..wire::header_bytes].try_into().unwrap();
        if let Ok((kind, len)) = wire::decode_header(header) {
            assert!(len < controller_frame_bytes_max);
            assert!((wire::KIND_HELLO..=wire::KIND_REFUSED).contains(&kind));
        }
    }
    match selector % 5 {
        0 => {
            let _ = wire::decode_json::<Hello>("hello", body);
        }
        1 => {
            let _ = wire::decode_json::<Request>("request", body);
        }
        2 => {
            let _ = wire::decode_json::<Response>("response", body);
        }
        3 => {
            let _ = QuorumNode::decode_message(body);
        }
        _ => {
            if let Ok(records) = decode_entry(body) {
                let again = decode_entry(&encode_entry(&records)).expect("re-decode");
                assert_eq!(again, records);
                let mut image = MetadataImage::default();
                let before = image.clone();
                if image.apply_entry(1, &records).is_err() {
                    assert_eq!(image, before, "a refused entry changed the image");
                }
            }
        }
    }
});
