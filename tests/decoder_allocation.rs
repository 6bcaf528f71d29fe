//! Regression: kafka-protocol 0.18 sizes decoded arrays from the wire
//! (`Vec::with_capacity(n)`, upstream kafka-protocol-rs#152/#161/#200), so a
//! ten-byte request declaring 2^31 - 1 topics asks for ~120 GB. With the
//! broker's allocator (`ringstream_core::alloc::LazyHugeAlloc`) that reservation
//! is lazy and the decode fails cleanly instead of aborting the process.

#[global_allocator]
static GLOBAL: ringstream_core::alloc::LazyHugeAlloc = ringstream_core::alloc::LazyHugeAlloc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::MetadataRequest;
use ringstream_protocol::{decode_body, decode_request};

#[test]
fn a_huge_declared_array_is_a_decode_error_not_an_abort() {
    for version in [0i16, 4, 9] {
        let mut frame = BytesMut::new();
        frame.put_i16(3); // Metadata
        frame.put_i16(version);
        frame.put_i32(7); // correlation id
        frame.put_i16(-1); // null client id
        if version >= 9 {
            // Flexible: header tagged fields, then a compact array length.
            frame.put_u8(0);
            let mut length = i32::MAX as u32; // n + 1 on the wire
            while length >= 0x80 {
                frame.put_u8((length as u8) | 0x80);
                length >>= 7;
            }
            frame.put_u8(length as u8);
        } else {
            frame.put_i32(i32::MAX); // topics array length, nothing after it
        }
        let request = decode_request(frame.freeze(), ringstream_broker::handlers::max_version).unwrap();
        let mut body: Bytes = request.body;
        let result = decode_body::<MetadataRequest>(&mut body, version, "Metadata request");
        assert!(result.is_err(), "v{version} decoded a request with 2^31 - 1 missing topics");
    }
}
