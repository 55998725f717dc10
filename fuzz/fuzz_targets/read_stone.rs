//! Fuzz target: arbitrary bytes as a whole `.stone` file.
//!
//! Invariant: a malformed stone may fail, but never panic, hang or allocate without bound.
//! `read::verify` decodes every payload, streams the content and checks every checksum and
//! digest, so every path of the reader is reachable from here. A stone it accepts must
//! also give a typed meta or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mossfs_format::read;

fuzz_target!(|data: &[u8]| {
    if let Ok(stone) = read::verify(data) {
        let _ = stone.typed_meta();
        let _ = stone.check_structure();
    }
});
