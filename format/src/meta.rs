//! Meta records (DESIGN.md §3): tagged, typed values describing a package.
//!
//! A record is `u32 length, u16 tag, u8 primitive kind, u8 zero`, then `length` value bytes.
//! [`MetaRecord`] is the faithful form, unknown tags and kinds included, so that a stone can
//! be inspected and rewritten without loss. [`Meta`] is the typed view the rest of mossfs
//! uses.

use std::fmt;

use crate::error::RecordError;
use crate::record::{Cursor, strip_nuls};

/// A meta tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaTag {
    /// Package name.
    Name,
    /// Architecture, e.g. `x86_64`.
    Architecture,
    /// Upstream version.
    Version,
    /// One-line summary.
    Summary,
    /// Longer description.
    Description,
    /// Project home page.
    Homepage,
    /// The source package's id.
    SourceId,
    /// A runtime dependency.
    Depends,
    /// Something this package provides.
    Provides,
    /// A package this one conflicts with (encoded as a provider).
    Conflicts,
    /// Source release number.
    Release,
    /// SPDX license; may repeat.
    License,
    /// Build release number.
    BuildRelease,
    /// Package URI, in repository indexes.
    PackageUri,
    /// Package sha256, in repository indexes.
    PackageHash,
    /// Package size, in repository indexes.
    PackageSize,
    /// A build dependency.
    BuildDepends,
    /// Source URI.
    SourceUri,
    /// Source path.
    SourcePath,
    /// Source ref.
    SourceRef,
    /// A tag this reader does not know; kept as is.
    Unknown(u16),
}

impl MetaTag {
    /// The tag number.
    pub fn to_u16(self) -> u16 {
        use MetaTag::*;
        match self {
            Name => 1,
            Architecture => 2,
            Version => 3,
            Summary => 4,
            Description => 5,
            Homepage => 6,
            SourceId => 7,
            Depends => 8,
            Provides => 9,
            Conflicts => 10,
            Release => 11,
            License => 12,
            BuildRelease => 13,
            PackageUri => 14,
            PackageHash => 15,
            PackageSize => 16,
            BuildDepends => 17,
            SourceUri => 18,
            SourcePath => 19,
            SourceRef => 20,
            Unknown(n) => n,
        }
    }

    /// The inverse of [`MetaTag::to_u16`].
    pub fn from_u16(n: u16) -> Self {
        use MetaTag::*;
        match n {
            1 => Name,
            2 => Architecture,
            3 => Version,
            4 => Summary,
            5 => Description,
            6 => Homepage,
            7 => SourceId,
            8 => Depends,
            9 => Provides,
            10 => Conflicts,
            11 => Release,
            12 => License,
            13 => BuildRelease,
            14 => PackageUri,
            15 => PackageHash,
            16 => PackageSize,
            17 => BuildDepends,
            18 => SourceUri,
            19 => SourcePath,
            20 => SourceRef,
            other => Unknown(other),
        }
    }

    /// A name for people and JSON.
    pub fn name(self) -> String {
        use MetaTag::*;
        match self {
            Name => "name",
            Architecture => "architecture",
            Version => "version",
            Summary => "summary",
            Description => "description",
            Homepage => "homepage",
            SourceId => "source-id",
            Depends => "depends",
            Provides => "provides",
            Conflicts => "conflicts",
            Release => "release",
            License => "license",
            BuildRelease => "build-release",
            PackageUri => "package-uri",
            PackageHash => "package-hash",
            PackageSize => "package-size",
            BuildDepends => "build-depends",
            SourceUri => "source-uri",
            SourcePath => "source-path",
            SourceRef => "source-ref",
            Unknown(n) => return format!("tag-{n}"),
        }
        .to_owned()
    }
}

/// The kind of a dependency or provider: what namespace its target lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelationKind {
    /// A package name.
    Name,
    /// A shared library soname.
    Soname,
    /// A pkg-config module.
    PkgConfig,
    /// An ELF interpreter.
    Interpreter,
    /// A CMake module.
    CMake,
    /// A Python module.
    Python,
    /// A binary in `/usr/bin`.
    Binary,
    /// A binary in `/usr/sbin`.
    SystemBinary,
    /// A 32-bit pkg-config module.
    PkgConfig32,
    /// A kind this reader does not know.
    Unknown(u8),
}

impl RelationKind {
    /// The stored byte.
    pub fn to_byte(self) -> u8 {
        use RelationKind::*;
        match self {
            Name => 0,
            Soname => 1,
            PkgConfig => 2,
            Interpreter => 3,
            CMake => 4,
            Python => 5,
            Binary => 6,
            SystemBinary => 7,
            PkgConfig32 => 8,
            Unknown(b) => b,
        }
    }

    /// The inverse of [`RelationKind::to_byte`].
    pub fn from_byte(b: u8) -> Self {
        use RelationKind::*;
        match b {
            0 => Name,
            1 => Soname,
            2 => PkgConfig,
            3 => Interpreter,
            4 => CMake,
            5 => Python,
            6 => Binary,
            7 => SystemBinary,
            8 => PkgConfig32,
            other => Unknown(other),
        }
    }

    const NAMED: [(RelationKind, &'static str); 9] = [
        (RelationKind::Name, "name"),
        (RelationKind::Soname, "soname"),
        (RelationKind::PkgConfig, "pkgconfig"),
        (RelationKind::Interpreter, "interpreter"),
        (RelationKind::CMake, "cmake"),
        (RelationKind::Python, "python"),
        (RelationKind::Binary, "binary"),
        (RelationKind::SystemBinary, "sysbinary"),
        (RelationKind::PkgConfig32, "pkgconfig32"),
    ];
}

/// A dependency or a provider, written `kind(target)`, e.g. `soname(libz.so.1(x86_64))`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Relation {
    /// The namespace.
    pub kind: RelationKind,
    /// What is needed or provided.
    pub target: String,
}

impl Relation {
    /// `name(target)`, the relation every package implicitly provides for itself.
    pub fn name(target: impl Into<String>) -> Self {
        Relation {
            kind: RelationKind::Name,
            target: target.into(),
        }
    }

    /// Parses the text form. A bare word means `name(word)`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text.contains('\0') {
            return Err(format!("`{text}` is not a dependency or provider"));
        }
        let Some(open) = text.find('(') else {
            return Ok(Relation::name(text));
        };
        let (kind, rest) = text.split_at(open);
        let target = rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("`{text}` must look like kind(target)"))?;
        let kind = RelationKind::NAMED
            .iter()
            .find(|(_, name)| *name == kind)
            .map(|(k, _)| *k)
            .ok_or_else(|| {
                let known: Vec<_> = RelationKind::NAMED.iter().map(|(_, n)| *n).collect();
                format!("`{kind}` is not a known kind (one of {})", known.join(", "))
            })?;
        Ok(Relation {
            kind,
            target: target.to_owned(),
        })
    }

    fn decode(value: &[u8]) -> Result<Self, RecordError> {
        let (&kind, text) = value.split_first().ok_or(RecordError::BadRelation)?;
        let text = std::str::from_utf8(strip_nuls(text))
            .map_err(|_| RecordError::BadUtf8 { what: "a relation" })?;
        if text.is_empty() {
            return Err(RecordError::BadRelation);
        }
        Ok(Relation {
            kind: RelationKind::from_byte(kind),
            target: text.to_owned(),
        })
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match RelationKind::NAMED.iter().find(|(k, _)| *k == self.kind) {
            Some((_, name)) => write!(f, "{name}({})", self.target),
            None => write!(f, "kind{}({})", self.kind.to_byte(), self.target),
        }
    }
}

/// A meta value, keeping the primitive kind it was stored with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaValue {
    /// Kind 1.
    I8(i8),
    /// Kind 2.
    U8(u8),
    /// Kind 3.
    I16(i16),
    /// Kind 4.
    U16(u16),
    /// Kind 5.
    I32(i32),
    /// Kind 6.
    U32(u32),
    /// Kind 7.
    I64(i64),
    /// Kind 8.
    U64(u64),
    /// Kind 9: UTF-8 text (stored with a trailing NUL).
    String(String),
    /// Kind 10.
    Dependency(Relation),
    /// Kind 11.
    Provider(Relation),
    /// A primitive kind this reader does not know; the raw value bytes.
    Unknown {
        /// The primitive kind byte.
        kind: u8,
        /// The value bytes.
        bytes: Vec<u8>,
    },
}

impl MetaValue {
    /// Any integer kind as a u64, when it fits. Readers accept any integer kind for
    /// integer tags.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            MetaValue::U64(v) => Some(v),
            _ => None,
        }
    }

    fn kind_byte(&self) -> u8 {
        match self {
            MetaValue::I8(_) => 1,
            MetaValue::U8(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U16(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::U32(_) => 6,
            MetaValue::I64(_) => 7,
            MetaValue::U64(_) => 8,
            MetaValue::String(_) => 9,
            MetaValue::Dependency(_) => 10,
            MetaValue::Provider(_) => 11,
            MetaValue::Unknown { kind, .. } => *kind,
        }
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::String(s) => f.write_str(s),
            MetaValue::Dependency(r) | MetaValue::Provider(r) => write!(f, "{r}"),
            MetaValue::Unknown { kind, bytes } => write!(f, "<kind {kind}, {} bytes>", bytes.len()),
        }
    }
}

/// One meta record, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRecord {
    /// The tag.
    pub tag: MetaTag,
    /// The value.
    pub value: MetaValue,
}

impl MetaRecord {
    /// A string record.
    pub fn string(tag: MetaTag, value: impl Into<String>) -> Self {
        MetaRecord {
            tag,
            value: MetaValue::String(value.into()),
        }
    }

    /// A u64 record.
    pub fn u64(tag: MetaTag, value: u64) -> Self {
        MetaRecord {
            tag,
            value: MetaValue::U64(value),
        }
    }

    pub(crate) fn decode(cursor: &mut Cursor<'_>) -> Result<Self, RecordError> {
        let length = cursor.u32()?;
        let tag = MetaTag::from_u16(cursor.u16()?);
        let kind = cursor.u8()?;
        let _padding = cursor.u8()?;
        let value = cursor.take(length as usize)?;
        let int = |n: usize| -> Result<&[u8], RecordError> {
            value.get(..n).ok_or(RecordError::Short {
                needed: n as u64,
                left: value.len() as u64,
            })
        };
        let value = match kind {
            1 => MetaValue::I8(i8::from_be_bytes(fixed(int(1)?))),
            2 => MetaValue::U8(u8::from_be_bytes(fixed(int(1)?))),
            3 => MetaValue::I16(i16::from_be_bytes(fixed(int(2)?))),
            4 => MetaValue::U16(u16::from_be_bytes(fixed(int(2)?))),
            5 => MetaValue::I32(i32::from_be_bytes(fixed(int(4)?))),
            6 => MetaValue::U32(u32::from_be_bytes(fixed(int(4)?))),
            7 => MetaValue::I64(i64::from_be_bytes(fixed(int(8)?))),
            8 => MetaValue::U64(u64::from_be_bytes(fixed(int(8)?))),
            9 => MetaValue::String(
                std::str::from_utf8(strip_nuls(value))
                    .map_err(|_| RecordError::BadUtf8 {
                        what: "a meta string",
                    })?
                    .to_owned(),
            ),
            10 => MetaValue::Dependency(Relation::decode(value)?),
            11 => MetaValue::Provider(Relation::decode(value)?),
            other => MetaValue::Unknown {
                kind: other,
                bytes: value.to_vec(),
            },
        };
        Ok(MetaRecord { tag, value })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut value = Vec::new();
        match &self.value {
            MetaValue::I8(v) => value.extend_from_slice(&v.to_be_bytes()),
            MetaValue::U8(v) => value.extend_from_slice(&v.to_be_bytes()),
            MetaValue::I16(v) => value.extend_from_slice(&v.to_be_bytes()),
            MetaValue::U16(v) => value.extend_from_slice(&v.to_be_bytes()),
            MetaValue::I32(v) => value.extend_from_slice(&v.to_be_bytes()),
            MetaValue::U32(v) => value.extend_from_slice(&v.to_be_bytes()),
            MetaValue::I64(v) => value.extend_from_slice(&v.to_be_bytes()),
            MetaValue::U64(v) => value.extend_from_slice(&v.to_be_bytes()),
            MetaValue::String(s) => {
                value.extend_from_slice(s.as_bytes());
                value.push(0);
            }
            MetaValue::Dependency(r) | MetaValue::Provider(r) => {
                value.push(r.kind.to_byte());
                value.extend_from_slice(r.target.as_bytes());
                value.push(0);
            }
            MetaValue::Unknown { bytes, .. } => value.extend_from_slice(bytes),
        }
        let length = u32::try_from(value.len()).expect("meta values are far below 4 GiB");
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&self.tag.to_u16().to_be_bytes());
        out.push(self.value.kind_byte());
        out.push(0);
        out.extend_from_slice(&value);
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// The typed view of a package's meta payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Package name; required.
    pub name: String,
    /// Upstream version.
    pub version: String,
    /// Source release.
    pub release: u64,
    /// Build release.
    pub build_release: u64,
    /// Architecture.
    pub architecture: String,
    /// One-line summary.
    pub summary: String,
    /// Longer description.
    pub description: String,
    /// Home page.
    pub homepage: String,
    /// Source package id.
    pub source_id: String,
    /// SPDX licenses.
    pub licenses: Vec<String>,
    /// Runtime dependencies.
    pub depends: Vec<Relation>,
    /// What the package provides, besides its own name.
    pub provides: Vec<Relation>,
    /// What the package refuses to share a state with.
    pub conflicts: Vec<Relation>,
    /// Build dependencies.
    pub build_depends: Vec<Relation>,
    /// Package URI (repository indexes).
    pub uri: Option<String>,
    /// Package sha256 (repository indexes).
    pub hash: Option<String>,
    /// Package size (repository indexes).
    pub size: Option<u64>,
    /// Records with tags this reader does not type, kept for rewriting.
    pub extra: Vec<MetaRecord>,
}

/// The longest package name: one file name, since names become file names (the
/// `--debug-view` folders of a mount, cached stones people look at).
pub const MAX_NAME_LEN: usize = 255;

/// The rule [`check_name`] enforces, in words, for error messages.
pub const NAME_RULE: &str = "a package name is 1 to 255 bytes, not `.` or `..`, \
     with no `/`, whitespace or control characters";

/// Why a package name is refused ([`check_name`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("package name is empty ({NAME_RULE})")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("package name {name:?} is {len} bytes long ({NAME_RULE})")]
    TooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// `.`, `..`, or a name holding a `/`, a space, or a control character: none of them
    /// can be one file name shown on one line.
    #[error("package name {name:?} is refused ({NAME_RULE})")]
    Forbidden {
        /// The name.
        name: String,
    },
}

/// `text` cut to its first `chars` characters, with `…` where it was cut: how a message
/// shows a value that may be as long as a whole file.
pub fn shortened(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Checks a package name wherever one comes in (pack, install, the reader's typed meta).
///
/// Names end up as file names and on lines of output: `..` or `a/b` would walk out of a
/// `--debug-view` folder, and a newline or an escape sequence could forge lines or recolour
/// a terminal. Upstream's names are letters, digits and `+ - . _`, far inside this rule.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            name: shortened(name, 40),
            len: name.len(),
        });
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(NameError::Forbidden {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Why records do not make a [`Meta`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// No name record.
    #[error("the meta payload has no package name")]
    NoName,
    /// The name breaks [`check_name`]'s rule.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// A tag with a value of the wrong type.
    #[error("meta tag {tag} has a value of the wrong type ({value})")]
    WrongType {
        /// The tag's name.
        tag: String,
        /// The value found.
        value: String,
    },
    /// A dependency, provider or conflict longer than a package name may be.
    #[error(
        "meta tag {tag} names a target of {len} bytes ({shown}); at most {MAX_NAME_LEN} are accepted"
    )]
    LongRelation {
        /// The tag's name.
        tag: String,
        /// The start of the target.
        shown: String,
        /// Its length in bytes.
        len: usize,
    },
}

impl Meta {
    /// Types the records. Unknown tags go to [`Meta::extra`]; integer tags accept any
    /// integer kind; a value of the wrong type is an error.
    pub fn from_records(records: &[MetaRecord]) -> Result<Self, MetaError> {
        let mut meta = Meta::default();
        let mut has_name = false;
        for record in records {
            let wrong = || MetaError::WrongType {
                tag: record.tag.name(),
                value: record.value.to_string(),
            };
            let text = || match &record.value {
                MetaValue::String(s) => Ok(s.clone()),
                _ => Err(wrong()),
            };
            let number = || record.value.as_u64().ok_or_else(wrong);
            // A provider is a database key, which LMDB caps at 511 bytes; the rule for a
            // name (a file name's 255 bytes) keeps every relation far inside that, and
            // real ones (`soname(libc.so.6(x86_64))`) far inside the rule.
            let relation = || match &record.value {
                MetaValue::Dependency(r) | MetaValue::Provider(r)
                    if r.target.len() > MAX_NAME_LEN =>
                {
                    Err(MetaError::LongRelation {
                        tag: record.tag.name(),
                        shown: shortened(&r.target, 40),
                        len: r.target.len(),
                    })
                }
                MetaValue::Dependency(r) | MetaValue::Provider(r) => Ok(r.clone()),
                _ => Err(wrong()),
            };
            match record.tag {
                MetaTag::Name => {
                    meta.name = text()?;
                    has_name = !meta.name.is_empty();
                }
                MetaTag::Architecture => meta.architecture = text()?,
                MetaTag::Version => meta.version = text()?,
                MetaTag::Summary => meta.summary = text()?,
                MetaTag::Description => meta.description = text()?,
                MetaTag::Homepage => meta.homepage = text()?,
                MetaTag::SourceId => meta.source_id = text()?,
                MetaTag::Depends => meta.depends.push(relation()?),
                MetaTag::Provides => meta.provides.push(relation()?),
                MetaTag::Conflicts => meta.conflicts.push(relation()?),
                MetaTag::Release => meta.release = number()?,
                MetaTag::License => meta.licenses.push(text()?),
                MetaTag::BuildRelease => meta.build_release = number()?,
                MetaTag::PackageUri => meta.uri = Some(text()?),
                MetaTag::PackageHash => meta.hash = Some(text()?),
                MetaTag::PackageSize => meta.size = Some(number()?),
                MetaTag::BuildDepends => meta.build_depends.push(relation()?),
                MetaTag::SourceUri
                | MetaTag::SourcePath
                | MetaTag::SourceRef
                | MetaTag::Unknown(_) => meta.extra.push(record.clone()),
            }
        }
        if !has_name {
            return Err(MetaError::NoName);
        }
        check_name(&meta.name)?;
        Ok(meta)
    }

    /// The records to write, in the order upstream's writer uses. Every field in
    /// [`UPSTREAM_REQUIRED`] is written, even when empty.
    pub fn to_records(&self) -> Vec<MetaRecord> {
        // Upstream's reader refuses a package without any of these, even an empty one, so
        // they are always written.
        let mut out = vec![
            MetaRecord::string(MetaTag::Name, self.name.as_str()),
            MetaRecord::string(MetaTag::Version, self.version.as_str()),
            MetaRecord::u64(MetaTag::Release, self.release),
            MetaRecord::u64(MetaTag::BuildRelease, self.build_release),
        ];
        for (tag, value) in [
            (MetaTag::Architecture, &self.architecture),
            (MetaTag::Summary, &self.summary),
            (MetaTag::Description, &self.description),
            (MetaTag::SourceId, &self.source_id),
            (MetaTag::Homepage, &self.homepage),
        ] {
            out.push(MetaRecord::string(tag, value.as_str()));
        }
        if let Some(uri) = &self.uri {
            out.push(MetaRecord::string(MetaTag::PackageUri, uri.as_str()));
        }
        if let Some(hash) = &self.hash {
            out.push(MetaRecord::string(MetaTag::PackageHash, hash.as_str()));
        }
        if let Some(size) = self.size {
            out.push(MetaRecord::u64(MetaTag::PackageSize, size));
        }
        for license in &self.licenses {
            out.push(MetaRecord::string(MetaTag::License, license.as_str()));
        }
        let relations = |tag, list: &[Relation], provider: bool| -> Vec<MetaRecord> {
            list.iter()
                .map(|r| MetaRecord {
                    tag,
                    value: if provider {
                        MetaValue::Provider(r.clone())
                    } else {
                        MetaValue::Dependency(r.clone())
                    },
                })
                .collect()
        };
        out.extend(relations(MetaTag::Depends, &self.depends, false));
        out.extend(relations(MetaTag::Provides, &self.provides, true));
        out.extend(relations(MetaTag::Conflicts, &self.conflicts, true));
        out.extend(relations(MetaTag::BuildDepends, &self.build_depends, false));
        out.extend(self.extra.iter().cloned());
        out
    }

    /// Everything this package provides, its implicit `name(<name>)` first.
    pub fn all_provides(&self) -> impl Iterator<Item = Relation> + '_ {
        std::iter::once(Relation::name(self.name.clone())).chain(self.provides.iter().cloned())
    }

    /// `name-version-release`, as people refer to a package build.
    pub fn full_name(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.release)
    }
}

/// The fields upstream's reader requires in every package's meta, in the order it checks
/// them: a stone without one cannot be indexed or installed by upstream moss.
pub const UPSTREAM_REQUIRED: [MetaTag; 9] = [
    MetaTag::Name,
    MetaTag::Version,
    MetaTag::Release,
    MetaTag::BuildRelease,
    MetaTag::Architecture,
    MetaTag::Summary,
    MetaTag::Description,
    MetaTag::SourceId,
    MetaTag::Homepage,
];

/// The first field of [`UPSTREAM_REQUIRED`] that `records` lack, with the type upstream
/// reads it as (a string, or any integer for the two releases).
pub fn missing_required(records: &[MetaRecord]) -> Option<MetaTag> {
    UPSTREAM_REQUIRED.into_iter().find(|&tag| {
        !records.iter().any(|record| {
            record.tag == tag
                && match tag {
                    MetaTag::Release | MetaTag::BuildRelease => record.value.as_u64().is_some(),
                    _ => matches!(record.value, MetaValue::String(_)),
                }
        })
    })
}

/// Decodes a whole meta payload body.
pub fn decode_all(body: &[u8]) -> Result<Vec<MetaRecord>, (u64, RecordError)> {
    let mut cursor = Cursor::new(body);
    let mut out = Vec::new();
    while !cursor.is_empty() {
        let index = out.len() as u64;
        out.push(MetaRecord::decode(&mut cursor).map_err(|e| (index, e))?);
    }
    Ok(out)
}

/// Encodes records into a payload body.
pub fn encode_all(records: &[MetaRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        record.encode(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_string_record_with_nul() {
        let bytes = [
            0, 0, 0, 5, // length 5, counting the NUL
            0, 1, // tag: name
            9, // kind: string
            0, // padding
            b'n', b'a', b'n', b'o', 0, // "nano\0"
        ];
        let records = decode_all(&bytes).unwrap();
        assert_eq!(records, vec![MetaRecord::string(MetaTag::Name, "nano")]);
        assert_eq!(encode_all(&records), bytes);
    }

    #[test]
    fn integer_tags_accept_any_integer_kind() {
        let records = vec![
            MetaRecord::string(MetaTag::Name, "x"),
            MetaRecord {
                tag: MetaTag::Release,
                value: MetaValue::I32(7),
            },
            MetaRecord {
                tag: MetaTag::BuildRelease,
                value: MetaValue::U8(2),
            },
        ];
        let meta = Meta::from_records(&records).unwrap();
        assert_eq!((meta.release, meta.build_release), (7, 2));
    }

    #[test]
    fn relation_text_round_trips() {
        for text in [
            "soname(libz.so.1(x86_64))",
            "binary(nano)",
            "name(pineapple)",
        ] {
            assert_eq!(Relation::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Relation::parse("pineapple").unwrap(),
            Relation::name("pineapple")
        );
        assert!(Relation::parse("bogus(x)").is_err());
        assert!(Relation::parse("soname()").is_err());
        assert!(Relation::parse("soname(x").is_err());
    }

    #[test]
    fn bad_utf8_and_short_values_are_errors() {
        let bad = [0, 0, 0, 2, 0, 1, 9, 0, 0xff, 0xfe];
        assert!(matches!(
            decode_all(&bad),
            Err((0, RecordError::BadUtf8 { .. }))
        ));
        let short = [0, 0, 0, 1, 0, 11, 8, 0, 7];
        assert!(matches!(
            decode_all(&short),
            Err((0, RecordError::Short { .. }))
        ));
        let long = [0, 0, 0xff, 0xff, 0, 1, 9, 0, b'a'];
        assert!(matches!(
            decode_all(&long),
            Err((0, RecordError::Short { .. }))
        ));
    }

    #[test]
    fn meta_round_trips_through_records() {
        let meta = Meta {
            name: "nano".into(),
            version: "8.0".into(),
            release: 3,
            build_release: 1,
            architecture: "x86_64".into(),
            summary: "editor".into(),
            licenses: vec!["GPL-3.0".into(), "MIT".into()],
            depends: vec![Relation::parse("soname(libc.so.6(x86_64))").unwrap()],
            provides: vec![Relation::parse("binary(nano)").unwrap()],
            conflicts: vec![Relation::name("pico")],
            ..Meta::default()
        };
        let body = encode_all(&meta.to_records());
        let back = Meta::from_records(&decode_all(&body).unwrap()).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn a_relation_longer_than_a_name_is_refused() {
        // A provider becomes a database key, which LMDB refuses past 511 bytes: one such
        // entry in a repository index failed the whole update with MDB_BAD_VALSIZE.
        let records = |target: String| {
            vec![
                MetaRecord::string(MetaTag::Name, "x"),
                MetaRecord {
                    tag: MetaTag::Provides,
                    value: MetaValue::Provider(Relation {
                        kind: RelationKind::Soname,
                        target,
                    }),
                },
            ]
        };
        assert!(Meta::from_records(&records("s".repeat(255))).is_ok());
        let err = Meta::from_records(&records("s".repeat(600))).unwrap_err();
        assert!(
            matches!(err, MetaError::LongRelation { len: 600, .. }),
            "{err:?}"
        );
        assert!(err.to_string().len() < 200, "{err}");
    }

    /// Issue 7, defect 13: `..`, `.`, `a/b`, a newline and 300 bytes were all accepted.
    #[test]
    fn defect_13_package_names_are_checked() {
        for good in [
            "nano",
            "bash-completion",
            "libstdc++",
            "python3.12",
            "a",
            "x_y",
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        assert_eq!(check_name(&"n".repeat(255)), Ok(()));
        assert_eq!(check_name(""), Err(NameError::Empty));
        for bad in [
            ".",
            "..",
            "a/b",
            "a\nb",
            "a b",
            "tab\t",
            "esc\u{1b}[31m",
            "nbsp\u{a0}x",
        ] {
            assert_eq!(
                check_name(bad),
                Err(NameError::Forbidden {
                    name: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
        let long = "n".repeat(300);
        assert!(matches!(
            check_name(&long),
            Err(NameError::TooLong { len: 300, .. })
        ));
        // The rule is in the message, and the name is quoted so it cannot forge a line.
        let text = check_name("a\nb").unwrap_err().to_string();
        assert_eq!(
            text,
            "package name \"a\\nb\" is refused (a package name is 1 to 255 bytes, not `.` \
             or `..`, with no `/`, whitespace or control characters)"
        );
        // The reader's typed meta refuses it as well.
        let mut meta = Meta {
            name: "..".into(),
            version: "1".into(),
            ..Meta::default()
        };
        assert!(matches!(
            Meta::from_records(&meta.to_records()),
            Err(MetaError::BadName(NameError::Forbidden { .. }))
        ));
        meta.name = "ok".into();
        assert!(Meta::from_records(&meta.to_records()).is_ok());
    }
}
