//! The bytes of the synthetic corpus: a fixed random generator and file contents that
//! compress roughly like real text and machine code.
//!
//! Everything here is a pure function of the generator's state, so the corpus depends on
//! nothing but its spec (no crate's choice of generator, no platform).

/// SplitMix64: tiny, fast and fully specified, so the corpus never depends on a crate's
/// choice of generator.
pub(super) struct Rng(u64);

impl Rng {
    /// The stream for one `(seed, purpose, index)`: independent of every other stream, so
    /// packages can be generated in any order.
    pub(super) fn new(seed: u64, stream: u64, index: u64) -> Self {
        let mut rng = Rng(seed);
        let a = rng.next();
        rng.0 = a ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let b = rng.next();
        Rng(b ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; the modulo bias is irrelevant here.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A size averaging `average`: mostly small, one file in fifty large.
pub(super) fn file_size(rng: &mut Rng, average: u64) -> usize {
    let average = average.max(1);
    let size = if rng.below(50) == 0 {
        8 * average + rng.below(34 * average + 1)
    } else {
        1 + rng.below(average)
    };
    usize::try_from(size).unwrap_or(usize::MAX)
}

/// Words for text files: enough variety to look like prose, few enough that zstd
/// compresses it about as well as real documentation.
const WORDS: [&str; 64] = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "with",
    "on",
    "as",
    "by",
    "this",
    "be",
    "are",
    "from",
    "or",
    "file",
    "package",
    "system",
    "data",
    "user",
    "path",
    "value",
    "error",
    "return",
    "config",
    "option",
    "default",
    "version",
    "library",
    "function",
    "string",
    "buffer",
    "memory",
    "thread",
    "socket",
    "server",
    "client",
    "request",
    "license",
    "copyright",
    "software",
    "without",
    "warranty",
    "permission",
    "granted",
    "distribute",
    "modify",
    "source",
    "binary",
    "directory",
    "install",
    "update",
    "remove",
    "state",
    "mount",
    "store",
    "asset",
    "layout",
    "index",
    "content",
    "header",
    "payload",
];

/// Prose-like text of exactly `len` bytes: words, spaces, numbers and line breaks.
pub(super) fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut column = 0;
    while out.len() < len {
        let r = rng.next();
        let word = WORDS[(r & 63) as usize];
        out.extend_from_slice(word.as_bytes());
        column += word.len() + 1;
        if (r >> 58) == 0 {
            out.extend_from_slice(format!(" {}", (r >> 8) % 100_000).as_bytes());
        }
        if column > 72 {
            out.push(b'\n');
            column = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

/// Machine-code-like bytes of exactly `len` bytes: random words, zero runs, small
/// integers and a repeated instruction pattern, which compresses about twofold.
pub(super) fn binary(rng: &mut Rng, len: usize) -> Vec<u8> {
    const PATTERN: [u8; 8] = [0x48, 0x89, 0xe5, 0x41, 0x57, 0x41, 0x56, 0xc3];
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        let r = rng.next();
        match r & 3 {
            0 => out.extend_from_slice(&[0; 8]),
            1 => out.extend_from_slice(&r.to_le_bytes()),
            2 => out.extend_from_slice(&((r >> 8) & 0xff).to_le_bytes()),
            _ => out.extend_from_slice(&PATTERN),
        }
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_have_the_exact_length_and_repeat_per_stream() {
        for len in [0, 1, 7, 8, 9, 100, 4097] {
            assert_eq!(text(&mut Rng::new(5, 1, 2), len).len(), len);
            assert_eq!(binary(&mut Rng::new(5, 1, 2), len).len(), len);
        }
        let a = text(&mut Rng::new(5, 1, 2), 300);
        assert_eq!(a, text(&mut Rng::new(5, 1, 2), 300));
        assert_ne!(a, text(&mut Rng::new(5, 1, 3), 300));
        assert_ne!(a, text(&mut Rng::new(6, 1, 2), 300));
    }

    #[test]
    fn sizes_average_what_was_asked() {
        let mut rng = Rng::new(0, 0, 0);
        let total: usize = (0..20_000).map(|_| file_size(&mut rng, 512)).sum();
        let average = total / 20_000;
        assert!((450..=580).contains(&average), "{average}");
    }
}
