//! What the `wharf` commands and its shell do, as a library: the decisions of `get`, `put`,
//! `ls`, `rm`/`mkdir`/`rmdir`, `mv` and `mirror` (what a URL names, which way to copy, where a
//! file goes, when to resume, when to retry), over the sessions, trees and pool below. The
//! binary keeps only its arguments and its output: it hears progress and messages through
//! [`Events`], and prints what each operation returns.

use std::path::Path;
use std::sync::Arc;

use crate::client::Progress;

pub mod get;
pub mod listing;
pub mod paths;
pub mod pattern;
pub mod put;

pub use get::{GetDone, GetRequest, get};
pub use listing::{Listed, list};
pub use paths::{PathOp, apply, rename_target};
pub use pattern::{expand, local_name, names_no_directory, split_pattern};
pub use put::{PutDone, PutRequest, put};

/// What an operation tells its user while it runs, besides the connection log.
pub trait Events: Progress + Send + Sync {
    /// A line for the user: another try, a fallback, a file that failed while others go on.
    /// It may carry text from the server: the receiver makes it safe for its terminal.
    fn message(&self, text: &str);

    /// If the operation stops from here on, partial downloads may be left at `path` (one
    /// `NAME.wharf-part` file, or a directory with them inside), to be continued.
    fn partial(&self, _path: &Path) {}
}

/// Events that go nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn advance(&self, _bytes: u64) {}
}

impl Events for Quiet {
    fn message(&self, _text: &str) {}
}

/// The progress half of shared [`Events`], for the trees and the pool, which take only that.
pub(crate) struct ProgressOf(pub(crate) Arc<dyn Events>);

impl Progress for ProgressOf {
    fn set_total(&self, total: u64) {
        self.0.set_total(total);
    }

    fn advance(&self, bytes: u64) {
        self.0.advance(bytes);
    }

    fn resumed(&self, bytes: u64) {
        self.0.resumed(bytes);
    }
}

impl ProgressOf {
    pub(crate) fn shared(events: &Arc<dyn Events>) -> Arc<dyn Progress> {
        Arc::new(ProgressOf(events.clone()))
    }
}
