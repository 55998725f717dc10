//! [`RelPath`]: a layout path that has been proven harmless.
//!
//! DESIGN.md §6.3: a hostile stone cannot write outside the tree. The first line of that
//! defence is here. A path from a layout becomes a `RelPath` only through
//! [`RelPath::new`], which rejects absolute paths, `..`, `.`, NUL and empty components, so
//! every later layer can join it below a directory fd without checking again.
//!
//! It also refuses the one path mossfs keeps for itself, [`RESERVED`]: `usr/.stateID`
//! names the state a tree belongs to, so a package that shipped it could make a tree lie
//! about its state, and would collide with the file every commit writes.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// The longest path we accept. Linux's `PATH_MAX` is 4096, including the NUL.
pub const MAX_PATH_LEN: usize = 4095;

/// The longest component we accept: `NAME_MAX`, what every Linux file system allows. A
/// longer one could be recorded in a state that no commit can then write.
pub const MAX_COMPONENT_LEN: usize = 255;

/// The path below `/usr` that names the state a tree belongs to (DESIGN.md §4). No
/// package may ship it.
pub const RESERVED: &[u8] = b".stateID";

/// A path relative to `/usr`, made of normal components only. Paths are bytes, not UTF-8.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(Vec<u8>);

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("the path is empty")]
    Empty,
    /// The path starts with `/`.
    #[error("the path is absolute")]
    Absolute,
    /// The path contains a NUL byte.
    #[error("the path contains a NUL byte")]
    Nul,
    /// Two slashes in a row, or a trailing slash.
    #[error("the path has an empty component")]
    EmptyComponent,
    /// A `.` component.
    #[error("the path has a `.` component")]
    CurrentDir,
    /// A `..` component, which could climb out of the tree.
    #[error("the path has a `..` component")]
    ParentDir,
    /// Longer than [`MAX_PATH_LEN`].
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// A component longer than [`MAX_COMPONENT_LEN`].
    #[error("a component of the path is longer than {MAX_COMPONENT_LEN} bytes")]
    LongComponent,
    /// [`RESERVED`]: the state marker that every commit writes itself.
    #[error(
        "usr/.stateID is reserved for the id of the state a tree belongs to; no package may ship it"
    )]
    Reserved,
}

impl RelPath {
    /// Checks `bytes` component by component and wraps them.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, PathError> {
        let bytes = bytes.into();
        Self::check(&bytes)?;
        Ok(RelPath(bytes))
    }

    fn check(bytes: &[u8]) -> Result<(), PathError> {
        if bytes.is_empty() {
            return Err(PathError::Empty);
        }
        if bytes.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        if bytes[0] == b'/' {
            return Err(PathError::Absolute);
        }
        if bytes.contains(&0) {
            return Err(PathError::Nul);
        }
        for component in bytes.split(|&b| b == b'/') {
            match component {
                b"" => return Err(PathError::EmptyComponent),
                b"." => return Err(PathError::CurrentDir),
                b".." => return Err(PathError::ParentDir),
                long if long.len() > MAX_COMPONENT_LEN => return Err(PathError::LongComponent),
                _ => {}
            }
        }
        if bytes == RESERVED {
            return Err(PathError::Reserved);
        }
        Ok(())
    }

    /// The raw bytes, without a leading or trailing slash.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as an `OsStr`, for APIs that want one.
    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    /// The components, each non-empty and neither `.` nor `..`.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &[u8]> + Clone {
        self.0.split(|&b| b == b'/')
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        self.components()
            .next_back()
            .expect("a checked path has at least one component")
    }

    /// Everything before the last component, or `None` at the top level.
    pub fn parent(&self) -> Option<RelPath> {
        let cut = self.0.iter().rposition(|&b| b == b'/')?;
        Some(RelPath(self.0[..cut].to_vec()))
    }

    /// Appends one more component, which must itself be a valid single component.
    pub fn join(&self, component: &[u8]) -> Result<RelPath, PathError> {
        if component.contains(&b'/') {
            return Err(PathError::EmptyComponent);
        }
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + component.len());
        bytes.extend_from_slice(&self.0);
        bytes.push(b'/');
        bytes.extend_from_slice(component);
        RelPath::new(bytes)
    }

    /// The path as text for people; invalid UTF-8 is shown with replacement characters.
    pub fn display(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelPath({:?})", self.display())
    }
}

impl TryFrom<&str> for RelPath {
    type Error = PathError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        RelPath::new(value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_paths() {
        let p = RelPath::new("share/bash-completion/completions/7za").unwrap();
        assert_eq!(p.file_name(), b"7za");
        assert_eq!(
            p.parent().unwrap().as_bytes(),
            b"share/bash-completion/completions"
        );
        assert_eq!(p.components().count(), 4);
        assert_eq!(RelPath::new("bin").unwrap().parent(), None);
        // Names that merely contain dots are fine.
        assert!(RelPath::new("lib/..so/.hidden/...").is_ok());
    }

    #[test]
    fn rejects_each_hostile_form() {
        assert_eq!(RelPath::new(""), Err(PathError::Empty));
        assert_eq!(RelPath::new("/etc/passwd"), Err(PathError::Absolute));
        assert_eq!(RelPath::new("a/../../etc"), Err(PathError::ParentDir));
        assert_eq!(RelPath::new(".."), Err(PathError::ParentDir));
        assert_eq!(RelPath::new("a/./b"), Err(PathError::CurrentDir));
        assert_eq!(RelPath::new("a//b"), Err(PathError::EmptyComponent));
        assert_eq!(RelPath::new("a/b/"), Err(PathError::EmptyComponent));
        assert_eq!(RelPath::new(b"a\0b".to_vec()), Err(PathError::Nul));
        assert_eq!(RelPath::new(vec![b'a'; 5000]), Err(PathError::TooLong));
        let long = format!("share/{}", "a".repeat(256));
        assert_eq!(RelPath::new(long), Err(PathError::LongComponent));
        assert!(RelPath::new(format!("share/{}", "a".repeat(255))).is_ok());
    }

    #[test]
    fn the_state_marker_is_reserved_only_at_the_top() {
        assert_eq!(RelPath::new(".stateID"), Err(PathError::Reserved));
        assert!(RelPath::new("share/.stateID").is_ok());
        assert!(RelPath::new(".stateIDs").is_ok());
        assert_eq!(
            RelPath::new("share")
                .unwrap()
                .join(b".stateID")
                .unwrap()
                .as_bytes(),
            b"share/.stateID"
        );
    }

    #[test]
    fn join_refuses_slashes_and_dots() {
        let p = RelPath::new("usr").unwrap();
        assert_eq!(p.join(b"bin").unwrap().as_bytes(), b"usr/bin");
        assert!(p.join(b"a/b").is_err());
        assert!(p.join(b"..").is_err());
    }
}
