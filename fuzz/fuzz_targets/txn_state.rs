//! Fuzzes the transaction-state decoders: a segment's `.txnindex`
//! (`txn::decode_index`), the producer snapshot with its open transactions
//! (`ProducerState::decode`), and the transaction log's key
//! (`txn::state::decode_key`) and value (`TxnMeta` JSON). None may panic;
//! what they accept must encode back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_broker::txn::state::{decode_key, encode_key, TxnMeta};
use ringstream_storage::producer_state::ProducerState;
use ringstream_storage::txn::{decode_index, encode_index};

fuzz_target!(|data: &[u8]| {
    let entries = decode_index(data);
    assert_eq!(decode_index(&encode_index(&entries)), entries);

    if let Some(id) = decode_key(data) {
        assert_eq!(decode_key(&encode_key(&id)), Some(id));
    }

    if let Ok(meta) = serde_json::from_slice::<TxnMeta>(data) {
        let again: TxnMeta = serde_json::from_slice(&serde_json::to_vec(&meta).expect("encodes")).expect("re-decode");
        assert_eq!(again, meta);
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((state, end)) = ProducerState::decode(text) {
            let (again, again_end) = ProducerState::decode(&state.encode(end, &[])).expect("re-decode");
            assert_eq!((again.active(), again.open_txns().len(), again_end), (state.active(), state.open_txns().len(), end));
        }
    }
});
