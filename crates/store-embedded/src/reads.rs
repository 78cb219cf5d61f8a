//! Reads of the log: a command's record, a resource's head, its snapshot and events; and the
//! [`EventStore`] implementation that puts reads and the writer's appends together.

use super::*;

/// The commit a command id produced, as stored.
pub(crate) fn stored_command(
    ks: &Keyspaces,
    command_id: CommandId,
) -> Result<Option<CommitRecord>, StoreError> {
    match ks.commands.get(command_id.0.as_bytes()).map_err(engine)? {
        Some(bytes) => Ok(Some(decode_command(command_id, &bytes)?)),
        None => Ok(None),
    }
}

/// A resource's head as stored: its last event's version (0 if it has none).
pub(crate) fn stored_head(ks: &Keyspaces, id: ResourceId) -> Result<u64, StoreError> {
    match ks.events.prefix(resource_key(id)).next_back() {
        Some(row) => {
            let key = row.key().map_err(engine)?;
            Ok(split_event_key(&key)?.1)
        }
        None => Ok(0),
    }
}

/// A resource's latest snapshot (server schema), if it has one, and the events after it.
pub(crate) fn stored_load(ks: &Keyspaces, id: ResourceId) -> Result<Loaded, StoreError> {
    let snapshot = match ks.snapshots.get(resource_key(id)).map_err(engine)? {
        Some(bytes) => Some(decode_snapshot(&bytes)?.1),
        None => None,
    };
    let after = snapshot.as_ref().map_or(0, |s| s.version);
    let events = stored_events(ks, id, after, usize::MAX)?;
    Ok(Loaded { snapshot, events })
}

/// Up to `limit` events of `id` after `after_version`, in version order.
pub(crate) fn stored_events(
    ks: &Keyspaces,
    id: ResourceId,
    after_version: u64,
    limit: usize,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let Some(start) = after_version.checked_add(1) else {
        return Ok(Vec::new());
    };
    ks.events
        .range(event_key(id, start)..=event_key(id, u64::MAX))
        .take(limit)
        .map(|row| {
            let (k, v) = row.into_inner().map_err(engine)?;
            decode_event(&k, &v)
        })
        .collect()
}

/// Why an append handed to the writer has no outcome.
const WRITER_GONE: &str = "the group-commit writer stopped before answering";

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, req: AppendRequest) -> Result<CommitRecord, AppendError> {
        job::submit_one(&self.writer, req, WRITER_GONE).await
    }

    async fn append_many(
        &self,
        appends: Vec<AppendRequest>,
    ) -> Vec<Result<CommitRecord, AppendError>> {
        job::submit(&self.writer, appends, WRITER_GONE).await
    }

    async fn load(&self, id: ResourceId) -> Result<Loaded, StoreError> {
        stored_load(&self.ks, id)
    }

    async fn events(
        &self,
        id: ResourceId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        stored_events(&self.ks, id, after_version, limit)
    }

    async fn find_command(
        &self,
        command_id: CommandId,
    ) -> Result<Option<CommitRecord>, StoreError> {
        stored_command(&self.ks, command_id)
    }

    async fn head(&self, id: ResourceId) -> Result<u64, StoreError> {
        stored_head(&self.ks, id)
    }

    /// From the log itself (not the read model, which a rebuild clears): one seek per resource,
    /// skipping each one's events.
    async fn resource_ids(&self) -> Result<Vec<ResourceId>, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut ids = Vec::new();
        let mut after: Option<[u8; 24]> = None;
        loop {
            let next = match after {
                None => self.ks.events.iter().next(),
                Some(key) => self
                    .ks
                    .events
                    .range::<&[u8], _>((Excluded(&key[..]), Unbounded))
                    .next(),
            };
            let Some(row) = next else { break };
            let (id, _) = split_event_key(&row.key().map_err(engine)?)?;
            ids.push(id);
            after = Some(event_key(id, u64::MAX));
        }
        Ok(ids)
    }
}
