//! A short-lived cache of workspaces for authenticating ingest. Every ingest request needs its
//! workspace's ingest key; reading it from the database each time costs a round trip per request.
//! Entries live two seconds, and a change through this process's admin API drops its entry at
//! once; another instance sharing the database sees a change within those two seconds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::domain::WorkspaceId;
use crate::store::{SharedStore, StoreResult, Workspace};

const TTL: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct WorkspaceCache {
    entries: RwLock<HashMap<String, (Arc<Workspace>, Instant)>>,
}

impl WorkspaceCache {
    /// The workspace, from the cache when fresh, else from the store. Unknown ids are not
    /// cached, so a workspace created a moment ago is found at once.
    pub async fn get(&self, store: &SharedStore, id: &WorkspaceId) -> StoreResult<Option<Arc<Workspace>>> {
        if let Some((workspace, fetched)) = self.entries.read().expect("cache lock").get(id.as_str())
            && fetched.elapsed() < TTL
        {
            return Ok(Some(workspace.clone()));
        }
        let Some(workspace) = store.get_workspace(id).await? else {
            self.forget(id);
            return Ok(None);
        };
        let workspace = Arc::new(workspace);
        let mut entries = self.entries.write().expect("cache lock");
        // Drop stale entries now and then so deleted workspaces do not linger.
        if entries.len() > 1024 {
            entries.retain(|_, (_, fetched)| fetched.elapsed() < TTL);
        }
        entries.insert(id.to_string(), (workspace.clone(), Instant::now()));
        Ok(Some(workspace))
    }

    /// Drops a workspace's entry after it changed.
    pub fn forget(&self, id: &WorkspaceId) {
        self.entries.write().expect("cache lock").remove(id.as_str());
    }
}
