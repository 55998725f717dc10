//! Layout records (DESIGN.md §3): one per file system entry a package ships.
//!
//! A record is 32 fixed bytes (`uid, gid, mode, tag: u32; source length, target length:
//! u16; file type: u8; 11 zero bytes`), then the source and the target. The target is the
//! entry's path below `/usr`; it becomes a [`RelPath`] here or the record is refused.

use crate::error::RecordError;
use crate::hash::AssetHash;
use crate::path::RelPath;
use crate::record::{Cursor, strip_nuls};

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;

/// What an entry is, with what it needs to be created.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file whose bytes are the named asset.
    Regular(AssetHash),
    /// A symlink and its link text, which is never followed by mossfs.
    Symlink(Vec<u8>),
    /// A directory.
    Directory,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

impl EntryKind {
    /// The file type byte of a layout record.
    pub fn type_byte(&self) -> u8 {
        match self {
            EntryKind::Regular(_) => 1,
            EntryKind::Symlink(_) => 2,
            EntryKind::Directory => 3,
            EntryKind::CharDevice => 4,
            EntryKind::BlockDevice => 5,
            EntryKind::Fifo => 6,
            EntryKind::Socket => 7,
        }
    }

    /// The `st_mode` type bits that go with this kind.
    pub fn mode_bits(&self) -> u32 {
        match self {
            EntryKind::Regular(_) => 0o100000,
            EntryKind::Symlink(_) => 0o120000,
            EntryKind::Directory => 0o040000,
            EntryKind::CharDevice => 0o020000,
            EntryKind::BlockDevice => 0o060000,
            EntryKind::Fifo => 0o010000,
            EntryKind::Socket => 0o140000,
        }
    }

    /// A short name for people and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::Regular(_) => "regular",
            EntryKind::Symlink(_) => "symlink",
            EntryKind::Directory => "directory",
            EntryKind::CharDevice => "char-device",
            EntryKind::BlockDevice => "block-device",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
        }
    }
}

/// One layout record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayoutEntry {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    /// Reserved; upstream writes 0.
    pub tag: u32,
    /// What the entry is.
    pub kind: EntryKind,
    /// Where it goes, relative to `/usr`.
    pub path: RelPath,
}

impl LayoutEntry {
    pub(crate) fn decode(cursor: &mut Cursor<'_>) -> Result<Self, RecordError> {
        let uid = cursor.u32()?;
        let gid = cursor.u32()?;
        let mode = cursor.u32()?;
        let tag = cursor.u32()?;
        let source_len = cursor.u16()?;
        let target_len = cursor.u16()?;
        let file_type = cursor.u8()?;
        let _padding = cursor.take(11)?;
        let source = cursor.take(source_len.into())?;
        let target = strip_nuls(cursor.take(target_len.into())?);
        let path = RelPath::new(target).map_err(|reason| RecordError::BadPath {
            path: String::from_utf8_lossy(target).into_owned(),
            reason,
        })?;
        let kind = match file_type {
            1 => {
                // Older writers NUL-terminate even the hash: 17 bytes, the last one zero.
                let hash = match source {
                    [hash @ .., 0] if hash.len() == 16 => hash,
                    other => other,
                };
                let hash = <[u8; 16]>::try_from(hash).map_err(|_| RecordError::BadHashLength {
                    path: path.to_string(),
                    len: source.len(),
                })?;
                EntryKind::Regular(AssetHash::from_be_bytes(hash))
            }
            2 => {
                let text = strip_nuls(source);
                if text.is_empty() || text.contains(&0) {
                    return Err(RecordError::BadLinkTarget {
                        path: path.to_string(),
                    });
                }
                EntryKind::Symlink(text.to_vec())
            }
            3 => EntryKind::Directory,
            4 => EntryKind::CharDevice,
            5 => EntryKind::BlockDevice,
            6 => EntryKind::Fifo,
            7 => EntryKind::Socket,
            other => return Err(RecordError::UnknownFileType(other)),
        };
        // A mode whose type bits contradict the record would make the blit and the mount
        // disagree about what the entry is; zero type bits are tolerated and filled in.
        let type_bits = mode & S_IFMT;
        if type_bits != 0 && type_bits != kind.mode_bits() {
            return Err(RecordError::ModeMismatch {
                path: path.to_string(),
                mode,
                file_type,
            });
        }
        Ok(LayoutEntry {
            uid,
            gid,
            mode: kind.mode_bits() | (mode & !S_IFMT),
            tag,
            kind,
            path,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let hash;
        let source: &[u8] = match &self.kind {
            EntryKind::Regular(h) => {
                hash = h.to_be_bytes();
                &hash
            }
            EntryKind::Symlink(text) => text,
            _ => &[],
        };
        let target = self.path.as_bytes();
        let source_len = u16::try_from(source.len()).expect("link text is capped below 64 KiB");
        let target_len = u16::try_from(target.len()).expect("RelPath is capped at 4095 bytes");
        out.extend_from_slice(&self.uid.to_be_bytes());
        out.extend_from_slice(&self.gid.to_be_bytes());
        out.extend_from_slice(&self.mode.to_be_bytes());
        out.extend_from_slice(&self.tag.to_be_bytes());
        out.extend_from_slice(&source_len.to_be_bytes());
        out.extend_from_slice(&target_len.to_be_bytes());
        out.push(self.kind.type_byte());
        out.extend_from_slice(&[0u8; 11]);
        out.extend_from_slice(source);
        out.extend_from_slice(target);
    }

    /// Permission bits only (including setuid, setgid and sticky).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// Decodes a whole layout payload body.
pub fn decode_all(body: &[u8]) -> Result<Vec<LayoutEntry>, (u64, RecordError)> {
    let mut cursor = Cursor::new(body);
    let mut out = Vec::new();
    while !cursor.is_empty() {
        let index = out.len() as u64;
        out.push(LayoutEntry::decode(&mut cursor).map_err(|e| (index, e))?);
    }
    Ok(out)
}

/// Encodes entries into a payload body.
pub fn encode_all(entries: &[LayoutEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        entry.encode(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathError;

    fn record(file_type: u8, mode: u32, source: &[u8], target: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_be_bytes()); // uid
        out.extend_from_slice(&0u32.to_be_bytes()); // gid
        out.extend_from_slice(&mode.to_be_bytes()); // mode
        out.extend_from_slice(&0u32.to_be_bytes()); // tag
        out.extend_from_slice(&(source.len() as u16).to_be_bytes()); // source length
        out.extend_from_slice(&(target.len() as u16).to_be_bytes()); // target length
        out.push(file_type); // file type
        out.extend_from_slice(&[0; 11]); // padding
        out.extend_from_slice(source);
        out.extend_from_slice(target);
        out
    }

    #[test]
    fn decodes_an_old_writer_symlink_with_nuls() {
        let bytes = record(
            2,
            0o120777,
            b"7z\0",
            b"share/bash-completion/completions/7za\0",
        );
        let entries = decode_all(&bytes).unwrap();
        assert_eq!(entries[0].kind, EntryKind::Symlink(b"7z".to_vec()));
        assert_eq!(
            entries[0].path.as_bytes(),
            b"share/bash-completion/completions/7za"
        );
        assert_eq!(entries[0].mode, 0o120777);
    }

    #[test]
    fn accepts_17_byte_nul_terminated_hashes() {
        let mut hash = AssetHash::EMPTY.to_be_bytes().to_vec();
        hash.push(0);
        let entries = decode_all(&record(1, 0o100644, &hash, b"a")).unwrap();
        assert_eq!(entries[0].kind, EntryKind::Regular(AssetHash::EMPTY));
    }

    #[test]
    fn rejects_short_hashes_and_hostile_paths() {
        let short = record(1, 0o100644, &[1, 2, 3], b"bin/x");
        assert_eq!(
            decode_all(&short),
            Err((
                0,
                RecordError::BadHashLength {
                    path: "bin/x".into(),
                    len: 3
                }
            ))
        );
        let hash = AssetHash::EMPTY.to_be_bytes();
        for (target, reason) in [
            (&b"../etc/passwd"[..], PathError::ParentDir),
            (b"/etc/passwd", PathError::Absolute),
            (b"bin//x", PathError::EmptyComponent),
            (b"bin/\0x", PathError::Nul),
        ] {
            let err = decode_all(&record(1, 0o100644, &hash, target)).unwrap_err();
            assert!(
                matches!(err, (0, RecordError::BadPath { reason: r, .. }) if r == reason),
                "{err:?}"
            );
        }
    }

    #[test]
    fn rejects_mode_that_contradicts_type_and_unknown_types() {
        let err = decode_all(&record(3, 0o100755, b"", b"dir")).unwrap_err();
        assert!(matches!(err, (0, RecordError::ModeMismatch { .. })));
        let err = decode_all(&record(9, 0o644, b"", b"x")).unwrap_err();
        assert_eq!(err, (0, RecordError::UnknownFileType(9)));
    }

    #[test]
    fn round_trips() {
        let entries = vec![
            LayoutEntry {
                uid: 0,
                gid: 0,
                mode: 0o100644,
                tag: 0,
                kind: EntryKind::Regular(AssetHash::of(b"x")),
                path: RelPath::new("share/x").unwrap(),
            },
            LayoutEntry {
                uid: 1,
                gid: 2,
                mode: 0o040700,
                tag: 0,
                kind: EntryKind::Directory,
                path: RelPath::new("share/empty").unwrap(),
            },
        ];
        assert_eq!(decode_all(&encode_all(&entries)).unwrap(), entries);
    }
}
