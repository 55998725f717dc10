//! Repositories end to end (issue 8, DESIGN.md §8): `mossfs index` publishes, a real nginx
//! on a free loopback port serves, and `mossfs repo`, `list available`, `search`, `info`
//! and `fetch` consume, with the trust and fault cases refused clearly and nothing
//! unverified left behind.
//!
//! nginx (Debian's `nginx-light`) is required: under `CI=true` a test that cannot start it
//! fails; elsewhere it prints why and passes. Request counts come from nginx's access log.
//!
//! Map:
//! - [`fixture`]: a root, a served repository folder, stones, keys and publishing.
//! - [`e2e`]: publish, add, update, list, search, info, fetch, install; priorities; https;
//!   root indexes; file://.
//! - [`trust`]: one request when nothing changed; rollback, freeze, signatures, mismatch.
//! - [`faults`]: lying, dying and stalling servers, hostile indexes, kills and a full disk.
//! - [`preview`]: staging from stones' heads, the mount downloading on first read, the
//!   commit downloading the rest; lying repositories and servers that ignore Range.
//! - [`pipeline`]: install from a repository, unpacking while downloading; a server dying
//!   midway; the bytes every plan downloads.

mod common;

#[path = "repo/e2e.rs"]
mod e2e;
#[path = "repo/faults.rs"]
mod faults;
#[path = "repo/fixture.rs"]
mod fixture;
#[path = "repo/pipeline.rs"]
mod pipeline;
#[path = "repo/preview.rs"]
mod preview;
#[path = "repo/trust.rs"]
mod trust;
