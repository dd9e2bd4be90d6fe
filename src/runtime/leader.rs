//! Leader election. Every replica keeps warm caches; only the holder of the Lease writes. A leader
//! that cannot renew stops writing before its lease can pass to another replica (fencing), so two
//! writers never overlap.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this replica may write now. Without leader election it always may.
#[derive(Debug)]
pub struct Leadership {
    leading: AtomicBool,
}

impl Leadership {
    /// No election: this process is the only writer.
    pub fn sole() -> Self {
        Self {
            leading: AtomicBool::new(true),
        }
    }

    /// Whether a write sent now is covered by the lease.
    pub fn may_write(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }
}
