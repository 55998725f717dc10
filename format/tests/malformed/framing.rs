//! The archive header, and files cut short at every point between and inside payloads.

use mossfs_format::{DecodeError, PayloadKind, header};

use super::forge::*;

// ---------------------------------------------------------------------------------------
// The archive header.
// ---------------------------------------------------------------------------------------

#[test]
fn bad_magic() {
    let mut bytes = nano().bytes;
    bytes[1] = b'M';
    let err = reject(&bytes);
    let DecodeError::BadMagic { found } = err else {
        panic!("{err:?}")
    };
    assert_eq!(found, *b"\0Mos");
}

#[test]
fn empty_file_is_not_a_stone() {
    // Named as empty, not as the magic `[0, 0, 0, 0]` it never had.
    let err = reject(b"");
    assert!(matches!(err, DecodeError::Empty), "{err:?}");
    let err = reject(b"\0");
    assert!(
        matches!(
            err,
            DecodeError::BadMagic {
                found: [0, 0, 0, 0]
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bad_version() {
    let mut bytes = nano().bytes;
    bytes[31] = 2;
    let err = reject(&bytes);
    assert!(matches!(err, DecodeError::UnsupportedVersion(2)), "{err:?}");
}

#[test]
fn bad_integrity_pattern() {
    let mut bytes = nano().bytes;
    bytes[14] ^= 0x40;
    let err = reject(&bytes);
    assert!(matches!(err, DecodeError::BadIntegrity), "{err:?}");
}

#[test]
fn truncated_inside_the_archive_header() {
    let bytes = nano().bytes;
    let err = reject(&bytes[..20]);
    let DecodeError::Truncated {
        what,
        offset,
        expected,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (what, offset, expected, found),
        ("archive header", 0, 32, 20)
    );
}

// ---------------------------------------------------------------------------------------
// Truncation.
// ---------------------------------------------------------------------------------------

#[test]
fn truncated_right_after_the_archive_header() {
    let bytes = nano().bytes;
    let err = reject(&bytes[..header::LEN]);
    assert!(
        matches!(
            err,
            DecodeError::MissingPayloads {
                declared: 4,
                found: 0
            }
        ),
        "{err:?}"
    );
}

#[test]
fn truncated_between_payloads() {
    let stone = raw();
    let bytes = stone.bytes();
    for (cut_before, found) in [(1, 1), (2, 2), (3, 3)] {
        let cut = stone.offset(cut_before) as usize;
        let err = reject(&bytes[..cut]);
        let DecodeError::MissingPayloads {
            declared,
            found: got,
        } = err
        else {
            panic!("cut at {cut}: {err:?}")
        };
        assert_eq!((declared, got), (4, found), "cut at {cut}");
    }
}

#[test]
fn truncated_inside_a_payload_header() {
    let stone = raw();
    let layout_at = stone.offset(1);
    let err = reject(&stone.bytes()[..layout_at as usize + 10]);
    let DecodeError::Truncated {
        what,
        offset,
        expected,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (what, offset, expected, found),
        ("payload header", layout_at, 32, 10)
    );
}

#[test]
fn truncated_inside_a_metadata_body() {
    let stone = raw();
    let body_at = stone.body_offset(PayloadKind::Layout);
    let stored = stone.payloads[1].header.stored_size;
    let err = reject(&stone.bytes()[..body_at as usize + 5]);
    let DecodeError::Truncated {
        what,
        offset,
        expected,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (what, offset, expected, found),
        ("payload body", body_at, stored, 5)
    );
}

#[test]
fn truncated_inside_the_content() {
    let stone = raw();
    let body_at = stone.body_offset(PayloadKind::Content);
    let stored = stone.payloads[3].header.stored_size;
    assert!(stored > 1000, "the content must be worth cutting");
    for keep in [0, 1, 100, stored / 2, stored - 1] {
        let err = reject(&stone.bytes()[..(body_at + keep) as usize]);
        let DecodeError::Truncated {
            what,
            offset,
            expected,
            found,
        } = err
        else {
            panic!("keeping {keep} content bytes: {err:?}")
        };
        assert_eq!(
            (what, offset, expected, found),
            ("content payload", body_at, stored, keep),
            "keeping {keep} content bytes"
        );
    }
}
