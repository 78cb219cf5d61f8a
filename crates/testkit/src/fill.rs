//! Fills an embedded store fast, straight through its group commit (no actors), and measures its
//! size: used by the core benchmark's `--preload-events` and by the crash-recovery example.

use futures::StreamExt;
use std::sync::Arc;
use warden_core::domain::{
    AddResource, AllocateResource, Catalogue, Command, CommandId, CreateResource, PlayerId,
    Principal, ResourceId, ResourceParams, ServerResource, Timestamp, decide, decide_create,
    replay, stamp,
};
use warden_core::store::{AppendRequest, EventStore};
use warden_store_embedded::EmbeddedStore;

/// Plenty to never run dry or overflow: commands move amounts by one.
pub const PARAMS: ResourceParams = ResourceParams {
    initial_amount: 1 << 40,
    max_amount: 1 << 41,
    regen_milli: 0,
};
/// Appends of one resource sent as one chain (one writer job).
const CHAIN: u64 = 256;
/// Chains in flight at once.
const IN_FLIGHT: usize = 16;

const NOW: Timestamp = Timestamp(1_767_225_600_000);

/// Alternates add and allocate of one unit, so a resource never runs dry or fills up.
pub fn command_for(id: ResourceId, i: u64) -> Command {
    if i.is_multiple_of(2) {
        Command::Add(AddResource {
            resource_id: id,
            amount: 1,
            reason: String::new(),
        })
    } else {
        Command::Allocate(AllocateResource {
            resource_id: id,
            amount: 1,
            reason: String::new(),
        })
    }
}

/// Creates `n` resources owned by `bench-owner`, straight in the store.
pub async fn create(store: &Arc<EmbeddedStore>, n: usize) -> Vec<ServerResource> {
    let principal = Principal::service("bench");
    let owner = PlayerId::new("bench-owner");
    let mut states = Vec::with_capacity(n);
    let mut appends = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench:{i}");
        let id = ResourceId::of_wallet(&owner, &name);
        let create = CreateResource {
            name: Some(name),
            resource_type: "bench".into(),
            owner: Some(owner.clone()),
            params: Some(PARAMS),
        };
        let command_id = CommandId::new();
        let event = decide_create(&Catalogue::default(), &principal, &create, NOW).expect("create");
        let events = stamp(
            id,
            0,
            command_id,
            warden_core::domain::Role::Service,
            NOW,
            vec![event],
        );
        let state = replay(None, &events).expect("created");
        appends.push(AppendRequest {
            resource_id: id,
            expected_version: 0,
            command_id,
            events,
            state: state.clone(),
        });
        states.push(state);
    }
    let mut jobs = futures::stream::iter(appends.into_iter().map(|a| {
        let store = store.clone();
        async move { store.append(a).await }
    }))
    .buffer_unordered(IN_FLIGHT * 16);
    while let Some(outcome) = jobs.next().await {
        outcome.expect("a create commits");
    }
    states
}

/// Appends `per_resource` commands to each of `states` (kept up to date), in rounds of chains.
/// Returns the events appended.
pub async fn append_rounds(
    store: &Arc<EmbeddedStore>,
    states: &mut [ServerResource],
    per_resource: u64,
) -> u64 {
    let principal = Principal::service("bench");
    let mut appended = 0u64;
    let mut round = 0u64;
    while round < per_resource {
        let chain_len = CHAIN.min(per_resource - round);
        let mut jobs = Vec::with_capacity(states.len());
        for state in states.iter_mut() {
            let mut chain = Vec::with_capacity(chain_len as usize);
            for i in 0..chain_len {
                let command = command_for(state.id, state.version + i);
                let command_id = CommandId::new();
                let events = decide(state, &principal, &command, NOW).expect("never refused");
                let events = stamp(
                    state.id,
                    state.version,
                    command_id,
                    warden_core::domain::Role::Service,
                    NOW,
                    events,
                );
                let next = replay(Some(state.clone()), &events).expect("exists");
                chain.push(AppendRequest {
                    resource_id: state.id,
                    expected_version: state.version,
                    command_id,
                    events,
                    state: next.clone(),
                });
                *state = next;
            }
            jobs.push(chain);
        }
        let mut jobs = futures::stream::iter(jobs.into_iter().map(|chain| {
            let store = store.clone();
            async move { store.append_many(chain).await }
        }))
        .buffer_unordered(IN_FLIGHT);
        while let Some(outcomes) = jobs.next().await {
            for o in outcomes {
                o.expect("an append commits");
                appended += 1;
            }
        }
        round += chain_len;
    }
    appended
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
