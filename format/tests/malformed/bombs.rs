//! zstd bombs: a few kilobytes that would decompress to a gibibyte.

use mossfs_format::{DecodeError, PayloadKind};

use super::forge::*;

// ---------------------------------------------------------------------------------------
// zstd bombs: a small body that would decompress to far more than declared.
// ---------------------------------------------------------------------------------------

/// One zstd frame of `blocks` RLE blocks of 128 KiB of zeros each, 4 bytes per block on
/// disk: 8192 blocks make 1 GiB out of 32 KiB.
fn zstd_bomb(blocks: u32) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd]; // zstd magic, little-endian
    frame.push(0x00); // frame header descriptor: no content size, no checksum, no dict
    frame.push(7 << 3); // window descriptor: exponent 7, mantissa 0 => 2^17 = 128 KiB
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks); // bit 0: last block
        let rle = 1 << 1; // bits 1-2: block type 1, RLE
        let size = (128 * 1024) << 3; // bits 3-23: regenerated size
        frame.extend_from_slice(&(last | rle | size).to_le_bytes()[..3]);
        frame.push(0); // the byte an RLE block repeats
    }
    frame
}

const GIB_BLOCKS: u32 = 8192;

#[test]
fn the_bomb_is_a_real_zstd_frame() {
    let small = zstd::stream::decode_all(zstd_bomb(3).as_slice()).expect("valid frame");
    assert_eq!(small.len(), 3 * 128 * 1024);
    assert!(small.iter().all(|&b| b == 0));
    let big = zstd_bomb(GIB_BLOCKS);
    assert_eq!(big.len(), 6 + 4 * GIB_BLOCKS as usize);
    assert_eq!(u64::from(GIB_BLOCKS) * 128 * 1024, 1 << 30);
}

#[test]
fn zstd_bomb_in_a_metadata_payload() {
    let mut stone = raw();
    let meta = stone.payload(PayloadKind::Meta);
    meta.body = zstd_bomb(GIB_BLOCKS);
    meta.header.stored_size = meta.body.len() as u64;
    meta.header.plain_size = 100;
    meta.reseal();
    let started = std::time::Instant::now();
    let err = reject(&stone.bytes());
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // `found` is one past the declared size: the reader stopped there.
    assert!(
        matches!(
            err,
            DecodeError::PlainSizeMismatch {
                kind: PayloadKind::Meta,
                offset: 32,
                declared: 100,
                found: 101
            }
        ),
        "{err:?}"
    );
}

#[test]
fn zstd_bomb_in_the_content() {
    // One asset of 100 zeros, which the bomb's first bytes really are.
    let zeros = [0u8; 100];
    let written = write_stone(&nano_meta(), &[("share/zeros", Some(&zeros))]);
    let mut stone = RawStone::parse(&written.bytes);
    let offset = stone.offset(3);
    let content = stone.payload(PayloadKind::Content);
    assert_eq!(content.header.plain_size, 100);
    content.body = zstd_bomb(GIB_BLOCKS);
    content.header.stored_size = content.body.len() as u64;
    content.reseal();
    let started = std::time::Instant::now();
    let err = reject(&stone.bytes());
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let DecodeError::PlainSizeMismatch {
        kind,
        offset: at,
        declared,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (kind, at, declared, found),
        (PayloadKind::Content, offset, 100, 101)
    );
}

#[test]
fn garbage_instead_of_a_zstd_frame() {
    let mut stone = raw();
    let index = stone.payload(PayloadKind::Index);
    index.body = b"this is not zstd at all".to_vec();
    index.header.stored_size = index.body.len() as u64;
    index.reseal();
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            err,
            DecodeError::Decompress {
                kind: PayloadKind::Index,
                ..
            }
        ),
        "{err:?}"
    );
}
