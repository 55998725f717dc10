//! The transaction engine: plans a change, records it as a state, and commits states to
//! the live root in the order DESIGN.md §6.2 sets. Commands in `crate::commands` are thin
//! layers over this.

pub mod audit;
pub mod by_delta;
pub mod change;
pub mod commit;
pub mod error;
pub mod fetch;
pub mod garbage;
pub mod mounts;
pub mod plan;
pub mod preview;
pub mod root;
pub mod solve;
pub mod triggers;
pub mod unpack;

pub use commit::{CommitReport, Mode, check_commit, commit_state, forget_unreached, record_state};
pub use error::{EngineError, Result};
pub use plan::{LoadedStone, Plan};
pub use root::{LiveUsr, Root};
