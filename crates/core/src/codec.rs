//! Bounded decompression of a record batch's records, for the few places
//! that must look inside a compressed batch: key checks on compacted topics
//! (Produce) and record timestamps (ListOffsets by time).
//!
//! The broker stores and serves batches as producers sent them; it never
//! recompresses. A batch on the wire is small (at most `batch_bytes_max`), but
//! what it inflates to is the sender's choice, so every decoder here stops at
//! `decompressed_bytes_max` and fails rather than allocating past it (a
//! kilobyte of gzip can claim a gigabyte). kafka-protocol's decoders inflate
//! without a bound, which is why these are our own; the codecs themselves are
//! the crates kafka-protocol already builds (flate2, snap, lz4, zstd).
//!
//! Formats, as Kafka's clients write them: gzip streams (possibly several
//! members); snappy either raw or in the xerial framing that Java's
//! snappy-java writes (a 16-byte magic header, then blocks each prefixed by a
//! big-endian u32 length); LZ4 frames; zstd frames.
//!
//! Pure: no I/O.

use std::io::Read;

/// Why records could not be inflated.
/// The compression codec named by attribute bits 0-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{codec:?} records inflate past {max} bytes")]
    TooLarge { codec: Compression, max: usize },
    #[error("{codec:?} records do not decompress: {reason}")]
    Invalid { codec: Compression, reason: String },
}

/// snappy-java's stream header: magic, then format version and the oldest
/// compatible version (both 1).
const xerial_magic: &[u8] = b"\x82SNAPPY\x00";
const xerial_header_bytes: usize = 16;

/// The records section of a batch compressed with `codec`, inflated; fails
/// past `max` bytes without allocating more than `max` (plus one read
/// buffer).
pub fn decompress(codec: Compression, compressed: &[u8], max: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    decompress_into(codec, compressed, max, &mut out)?;
    Ok(out)
}

/// `decompress`, appending to `out`; `max` bounds what is appended.
pub fn decompress_into(codec: Compression, compressed: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let invalid = |reason: String| CodecError::Invalid { codec, reason };
    let start = out.len();
    match codec {
        Compression::None => {
            if compressed.len() > max {
                return Err(CodecError::TooLarge { codec, max });
            }
            out.extend_from_slice(compressed);
            Ok(())
        }
        Compression::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(compressed), max, out),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(compressed).map_err(|e| invalid(e.to_string()))?;
            read_bounded(codec, decoder, max, out)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(compressed).map_err(|e| invalid(e.to_string()))?;
            read_bounded(codec, decoder, max, out)
        }
        Compression::Snappy if compressed.starts_with(xerial_magic) => {
            let mut rest =
                compressed.get(xerial_header_bytes..).ok_or_else(|| invalid("short xerial header".into()))?;
            while !rest.is_empty() {
                let (length, after) =
                    rest.split_first_chunk::<4>().ok_or_else(|| invalid("short block length".into()))?;
                let length = u32::from_be_bytes(*length) as usize;
                let block = after.get(..length).ok_or_else(|| invalid("block runs past the end".into()))?;
                snappy_raw(codec, block, max, start, out)?;
                rest = &after[length..];
            }
            Ok(())
        }
        Compression::Snappy => snappy_raw(codec, compressed, max, start, out),
    }
}

/// Appends what `reader` yields to `out`, failing past `max` bytes.
fn read_bounded(codec: Compression, reader: impl Read, max: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(out).map_err(|e| CodecError::Invalid { codec, reason: e.to_string() })?;
    if out.len() - start > max {
        return Err(CodecError::TooLarge { codec, max });
    }
    Ok(())
}

/// Appends one raw snappy block to `out`; its declared length is checked
/// against what is left of `max` (counted from `start`) before anything is
/// allocated.
fn snappy_raw(codec: Compression, block: &[u8], max: usize, start: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let invalid = |e: snap::Error| CodecError::Invalid { codec, reason: e.to_string() };
    let length = snap::raw::decompress_len(block).map_err(invalid)?;
    if length > max - (out.len() - start) {
        return Err(CodecError::TooLarge { codec, max });
    }
    let at = out.len();
    out.resize(at + length, 0);
    let written = snap::raw::Decoder::new().decompress(block, &mut out[at..]).map_err(invalid)?;
    out.truncate(at + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn lz4_frame(data: &[u8]) -> Vec<u8> {
        let mut encoder = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        encoder.write_all(data).unwrap();
        let (out, result) = encoder.finish();
        result.unwrap();
        out
    }

    fn xerial(data: &[u8], block: usize) -> Vec<u8> {
        let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in data.chunks(block) {
            let compressed = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
            out.extend_from_slice(&compressed);
        }
        out
    }

    #[test]
    fn every_codec_round_trips_within_the_bound() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let cases = [
            (Compression::Gzip, gzip(&data)),
            (Compression::Lz4, lz4_frame(&data)),
            (Compression::Zstd, zstd::encode_all(&data[..], 3).unwrap()),
            (Compression::Snappy, snap::raw::Encoder::new().compress_vec(&data).unwrap()),
            (Compression::Snappy, xerial(&data, 32 * 1024)),
            (Compression::None, data.clone()),
        ];
        for (codec, compressed) in cases {
            assert_eq!(decompress(codec, &compressed, data.len()).unwrap(), data, "{codec:?}");
            assert_eq!(
                decompress(codec, &compressed, data.len() - 1).unwrap_err(),
                CodecError::TooLarge { codec, max: data.len() - 1 },
                "{codec:?}"
            );
        }
    }

    /// A bomb: 16 MiB of zeros compress to kilobytes; with a 256 KiB bound
    /// every codec stops at the bound.
    #[test]
    fn bombs_stop_at_the_bound() {
        let zeros = vec![0u8; 16 << 20];
        let bombs = [
            (Compression::Gzip, gzip(&zeros)),
            (Compression::Lz4, lz4_frame(&zeros)),
            (Compression::Zstd, zstd::encode_all(&zeros[..], 3).unwrap()),
            (Compression::Snappy, snap::raw::Encoder::new().compress_vec(&zeros).unwrap()),
            (Compression::Snappy, xerial(&zeros, 1 << 20)),
        ];
        for (codec, bomb) in bombs {
            assert!(bomb.len() < 1 << 20, "{codec:?}: {} bytes", bomb.len());
            assert_eq!(
                decompress(codec, &bomb, 256 << 10).unwrap_err(),
                CodecError::TooLarge { codec, max: 256 << 10 }
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage: [&[u8]; 4] =
            [b"", b"\x00", b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff", &[0xff; 64]];
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy] {
            for bytes in garbage {
                let _ = decompress(codec, bytes, 1 << 20); // never panics
            }
            assert!(decompress(codec, &[0xff; 64], 1 << 20).is_err(), "{codec:?}");
        }
        assert!(decompress(Compression::Snappy, garbage[2], 1 << 20).is_err(), "a block past the end");
    }
}
