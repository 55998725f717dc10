//! The JSON form of `mossfs inspect`: the same facts as the text form, typed.
//!
//! One object per stone:
//!
//! ```text
//! { "file", "checked",
//!   "header":   { "version", "file_type", "payloads" },
//!   "payloads": [ { "kind", "compression", "offset", "stored_size", "plain_size",
//!                   "records", "version", "checksum" (16 hex digits) } ],
//!   "meta":     [ { "tag", "value" } ],   integers as numbers, relations as "kind(target)"
//!   "layout":   [ { "type", "mode" (the full st_mode, a number), "uid", "gid", "path",
//!                   and "hash" (regular files) or "target" (symlinks) } ],
//!   "index":    [ { "start", "end", "digest" } ],
//!   "delta":    null, or for a delta stone { "from", "to", "records": [ { "method",
//!               "targets": [ { "hash", "size" } ], "bases": [ { "position" } ] (in the
//!               old package's index), "target_size", "frame_size", "window_log" } ] } }
//! ```
//!
//! A path, link text or file name that is not UTF-8 is `{"bytes": "<hex>"}` instead of a
//! string, so that every byte survives (see [`crate::quote::json`]).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use mossfs_format::{EntryKind, MetaValue, Stone};
use serde_json::{Map, Value, json};

use crate::quote;

/// One stone as a JSON object.
pub fn stone(path: &Path, stone: &Stone, checked: bool) -> Value {
    let header = stone.header.map_or(Value::Null, |h| {
        json!({
            "version": 1,
            "file_type": h.file_type.name(),
            "payloads": h.payload_count,
        })
    });
    let payloads: Vec<Value> = stone
        .payloads
        .iter()
        .map(|p| {
            let h = p.header;
            json!({
                "kind": h.kind.to_string(),
                "compression": h.compression.to_string(),
                "offset": p.offset,
                "stored_size": h.stored_size,
                "plain_size": h.plain_size,
                "records": h.records,
                "version": h.version,
                "checksum": format!("{:016x}", h.checksum),
            })
        })
        .collect();
    let meta: Vec<Value> = stone
        .meta
        .iter()
        .map(|r| json!({ "tag": r.tag.name(), "value": meta_value(&r.value) }))
        .collect();
    let layout: Vec<Value> = stone
        .layout
        .iter()
        .map(|e| {
            let mut object = Map::new();
            object.insert("type".into(), e.kind.name().into());
            object.insert("mode".into(), e.mode.into());
            object.insert("uid".into(), e.uid.into());
            object.insert("gid".into(), e.gid.into());
            object.insert("path".into(), quote::json(e.path.as_bytes()));
            match &e.kind {
                EntryKind::Regular(hash) => {
                    object.insert("hash".into(), hash.to_string().into());
                }
                EntryKind::Symlink(target) => {
                    object.insert("target".into(), quote::json(target));
                }
                _ => {}
            }
            Value::Object(object)
        })
        .collect();
    let index: Vec<Value> = stone
        .index
        .iter()
        .map(|e| json!({ "start": e.start, "end": e.end, "digest": e.digest.to_string() }))
        .collect();
    json!({
        "file": quote::json(path.as_os_str().as_bytes()),
        "checked": checked,
        "header": header,
        "payloads": payloads,
        "meta": meta,
        "layout": layout,
        "index": index,
    })
}

fn meta_value(value: &MetaValue) -> Value {
    match value {
        MetaValue::String(s) => s.as_str().into(),
        MetaValue::Dependency(r) | MetaValue::Provider(r) => r.to_string().into(),
        MetaValue::Unknown { kind, bytes } => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            json!({ "kind": kind, "bytes": hex })
        }
        MetaValue::I8(v) => (*v).into(),
        MetaValue::I16(v) => (*v).into(),
        MetaValue::I32(v) => (*v).into(),
        MetaValue::I64(v) => (*v).into(),
        other => other.as_u64().map_or(Value::Null, Value::from),
    }
}
