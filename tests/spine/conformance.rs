//! The store conformance suite: every guarantee written on the store's traits, checked through
//! the traits alone, against every implementation. A store is reached through a [`Factory`], which
//! opens it and opens the same data again after a "crash"; [`conformance!`] generates the cases
//! for one factory. Nothing here knows which database is behind the traits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chatbundle::clock::{Clock, ManualClock};
use chatbundle::domain::{
    Account, Attachment, AttachmentKind, ChatId, DeliveryId, DeliveryStatus, Direction, Event, Granularity,
    Media, Party, SessionStatus, WebhookId, WorkspaceId,
};
use chatbundle::store::{
    AttemptOutcome, AttemptRecord, ChatInfo, ChatOwner, ClaimedDelivery, CloseProgress, CloseStep,
    ConversationClose, ConversationsClosed, Email, FailurePolicy, IngestBatch, IngestOutcome, Lease,
    NewMessage, NewWebhook, NewWorkspace, PlanConversation, PlanDeliveries, PlannedDelivery, ReplyStatus,
    ReportedSession, SessionChange, SharedStore, WebhookPatch, WorkspacePatch,
};
use chatbundle::store::{ClaimedReply, NewReply, OutgoingStatus, ReplyBody, ReplyOutcome, VendorError};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::helpers::start_time;

/// Opens a store for a case, and the same data again.
pub trait Factory: Send + Sync + 'static {
    /// Opens the store (the first time, empty) on `clock`.
    fn open(&self, clock: ManualClock) -> BoxFuture<'_, SharedStore>;

    /// Whether a second daemon may open the same data while the first has it open (SQLite's
    /// file is one daemon's; PostgreSQL is shared).
    fn shared(&self) -> bool {
        false
    }
}

/// SQLite: a file in a directory of the case's own.
pub struct Sqlite(tempfile::TempDir);

impl Sqlite {
    pub fn new() -> Sqlite {
        Sqlite(tempfile::tempdir().unwrap())
    }
}

impl Factory for Sqlite {
    fn open(&self, clock: ManualClock) -> BoxFuture<'_, SharedStore> {
        let url = format!("sqlite://{}", self.0.path().join("conformance.db").display());
        Box::pin(async move { chatbundle::store::connect(&url, Arc::new(clock)).await.unwrap() })
    }
}

/// PostgreSQL: a database of the case's own, dropped after it.
pub struct Postgres(crate::helpers::TestDatabase);

impl Postgres {
    pub fn new() -> Postgres {
        Postgres(crate::helpers::TestDatabase::create())
    }
}

impl Factory for Postgres {
    fn open(&self, clock: ManualClock) -> BoxFuture<'_, SharedStore> {
        let url = self.0.url.clone();
        Box::pin(async move { chatbundle::store::connect(&url, Arc::new(clock)).await.unwrap() })
    }

    fn shared(&self) -> bool {
        true
    }
}

/// One case's world: a store, its clock, a workspace with webhooks.
struct World {
    store: SharedStore,
    clock: ManualClock,
    workspace: WorkspaceId,
}

impl World {
    async fn new(factory: &dyn Factory) -> World {
        let clock = ManualClock::new(start_time());
        let store = factory.open(clock.clone()).await;
        let workspace = create_workspace(&store, "acme").await;
        World { store, clock, workspace }
    }

    /// Another workspace in the same store.
    async fn other_workspace(&self, name: &str) -> WorkspaceId {
        create_workspace(&self.store, name).await
    }

    async fn webhook(&self, granularity: Granularity, events: &[Event]) -> WebhookId {
        self.webhook_in(&self.workspace, granularity, events).await
    }

    async fn webhook_in(
        &self,
        workspace: &WorkspaceId,
        granularity: Granularity,
        events: &[Event],
    ) -> WebhookId {
        let new = NewWebhook {
            workspace_id: workspace.clone(),
            url: "https://hooks.example.com/x".parse().unwrap(),
            granularity: Some(granularity),
            enabled: true,
            secret: None,
            events: events.to_vec(),
            timeout: None,
            note_max_chars: None,
            media: Media::Skip,
            conversation_silence: None,
            conversation_max: None,
        };
        self.store.create_webhook(new).await.unwrap().id
    }

    /// Ingests one request; immediate payloads name the message, its chat and `is_new_chat`.
    async fn ingest(&self, messages: &[(&str, &str)]) -> (u32, u32) {
        ingest(&self.store, &self.workspace, messages, "api").await
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Claims until nothing is due, marking each delivered; the payloads as text, in claim
    /// order, each checked to be `webhook`'s.
    async fn drain_text(&self, webhook: &WebhookId) -> Vec<String> {
        let mut by_webhook = self.drain_by_webhook().await;
        let seen = by_webhook.remove(webhook).unwrap_or_default();
        assert!(by_webhook.is_empty(), "deliveries of other webhooks: {by_webhook:?}");
        seen
    }

    /// Claims until nothing is due, marking each delivered; the payloads as text, by webhook,
    /// each webhook's in claim order.
    async fn drain_by_webhook(&self) -> BTreeMap<WebhookId, Vec<String>> {
        let mut seen: BTreeMap<WebhookId, Vec<String>> = BTreeMap::new();
        loop {
            let claimed = claim(&self.store, 10).await;
            if claimed.is_empty() {
                return seen;
            }
            for delivery in claimed {
                let text = String::from_utf8(delivery.payload.clone()).unwrap();
                seen.entry(delivery.webhook_id.clone()).or_default().push(text);
                record(&self.store, &delivery, self.now(), AttemptOutcome::Delivered).await;
            }
        }
    }

    /// Claims until nothing is due, marking each delivered; the payloads, in claim order.
    async fn drain(&self) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let claimed = claim(&self.store, 1000).await;
            if claimed.is_empty() {
                return seen;
            }
            for delivery in claimed {
                seen.push(serde_json::from_slice(&delivery.payload).unwrap());
                record(&self.store, &delivery, self.now(), AttemptOutcome::Delivered).await;
            }
        }
    }
}

async fn create_workspace(store: &SharedStore, name: &str) -> WorkspaceId {
    let new = NewWorkspace {
        name: chatbundle::domain::Name::parse(name).unwrap(),
        owner_email: format!("owner@{name}.example").parse().unwrap(),
        timezone: chatbundle::domain::Timezone::default(),
        granularity: Granularity::None,
        account: Account::default(),
        locale: Default::default(),
        media_link_ttl: chatbundle::domain::MediaLinkTtl::DEFAULT,
        message_retention: Default::default(),
        transcript_link_ttl: Default::default(),
        conversation_silence: chatbundle::domain::ConversationSilence::DEFAULT,
        conversation_max: chatbundle::domain::ConversationMax::DEFAULT,
    };
    store.create_workspace(new).await.unwrap().id
}

async fn ingest(
    store: &SharedStore,
    workspace: &WorkspaceId,
    messages: &[(&str, &str)],
    channel: &str,
) -> (u32, u32) {
    let outcome = ingest_outcome(store, workspace, messages, channel).await;
    (outcome.accepted, outcome.duplicates)
}

async fn ingest_outcome(
    store: &SharedStore,
    workspace: &WorkspaceId,
    messages: &[(&str, &str)],
    channel: &str,
) -> IngestOutcome {
    let messages = messages
        .iter()
        .map(|(id, chat)| NewMessage {
            message_id: id.to_string(),
            direction: Direction::Received,
            timestamp: start_time(),
            chat: ChatInfo { external_id: chat.to_string(), ..ChatInfo::default() },
            sender: Party::default(),
            recipient: Party::default(),
            text: format!("text of {id}"),
            account: None,
            channel: channel.to_string(),
            attachments: Vec::new(),
            reply_to_button: None,
        })
        .collect();
    let batch = IngestBatch {
        workspace_id: workspace.clone(),
        source_key: "api".into(),
        source_name: "api".into(),
        messages,
        sessions: Vec::new(),
        skipped: Vec::new(),
        render_immediate: Arc::new(|_, _, chat, (message, _), _, is_new| {
            serde_json::to_vec(&json!({"m": message.message_id, "chat": chat.external_id, "new": is_new}))
                .unwrap()
        }),
        render_session: Arc::new(|event| {
            serde_json::to_vec(&json!({"session": event.chat.external_id, "reply": event.reply_status}))
                .unwrap()
        }),
        reply: None,
        trace_parent: None,
    };
    store.ingest(batch).await.unwrap()
}

/// Leases of a minute.
const LEASE: Lease = Lease { default_timeout: Duration::from_secs(30), margin: Duration::from_secs(30) };

/// Claims what is due by the store's clock (which the case's clock drives).
async fn claim(store: &SharedStore, limit: usize) -> Vec<ClaimedDelivery> {
    store.claim_deliveries(LEASE, limit, None).await.unwrap()
}

fn policy() -> FailurePolicy {
    let email = || Email { recipient: "owner@acme.example".into(), subject: "s".into(), body: "b".into() };
    FailurePolicy {
        disable_after: 1000,
        disabled: Arc::new(move |_| email()),
        gave_up: Arc::new(move |_| email()),
    }
}

fn attempt(claimed: &ClaimedDelivery, at: DateTime<Utc>, status: u16) -> AttemptRecord {
    AttemptRecord {
        delivery_seq: claimed.seq,
        lease_token: claimed.lease_token,
        delivery_id: claimed.id.clone(),
        webhook_id: claimed.webhook_id.clone(),
        attempted_at: at,
        duration: Duration::from_millis(5),
        status: Some(status),
        response_excerpt: None,
        error: None,
        request_headers: "{}".into(),
        request_body: claimed.payload.clone(),
    }
}

async fn record(
    store: &SharedStore,
    claimed: &ClaimedDelivery,
    at: DateTime<Utc>,
    outcome: AttemptOutcome,
) -> bool {
    let status = if outcome == AttemptOutcome::Delivered { 200 } else { 500 };
    !store.record_attempt(attempt(claimed, at, status), outcome, &policy()).await.unwrap().stale
}

/// A plan whose bundle for each chat names its messages, whether it holds the chat's first,
/// and the boundary it was closed at (one part per chat and boundary).
fn plan(boundary: DateTime<Utc>) -> PlanDeliveries {
    Arc::new(move |chat, first, messages| {
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        let new = messages.iter().any(|m| Some(m.seq) == first.any);
        let payload =
            json!({"chat": chat.external_id, "messages": ids, "new": new, "until": boundary.to_rfc3339()});
        vec![PlannedDelivery {
            id: DeliveryId::stored(format!("b-{}-{}", chat.external_id, boundary.timestamp_millis())),
            payload: serde_json::to_vec(&payload).unwrap(),
            bundle: Some((boundary, 1)),
        }]
    })
}

/// A webhook's closing state, as the closer reads it.
async fn closing_state(store: &SharedStore, webhook: &WebhookId) -> chatbundle::store::BundlingWebhook {
    store.bundling_webhooks(None).await.unwrap().into_iter().find(|w| w.id == *webhook).unwrap()
}

/// Closes `[bundled_before, boundary)` of `webhook` step by step, as the closer does; returns
/// the last progress (Done, Superseded or NotYet).
async fn close(
    store: &SharedStore,
    webhook: &WebhookId,
    boundary: DateTime<Utc>,
    chats: usize,
    flush: bool,
) -> CloseProgress {
    loop {
        let state = closing_state(store, webhook).await;
        let step = CloseStep {
            webhook_id: webhook.clone(),
            bundled_before: state.bundled_before,
            boundary,
            chats,
            plan: plan(boundary),
            flush,
        };
        match store.close_step(step).await.unwrap() {
            CloseProgress::More { .. } => continue,
            other => return other,
        }
    }
}

/// Message ids in the bundle payloads, with how often each appears.
fn bundled(payloads: &[Value]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for p in payloads {
        for id in p["messages"].as_array().unwrap() {
            *count.entry(id.as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    count
}

/// [`chatbundle::store::WindowStore::close_step`]: every acknowledged message ends up in exactly
/// one bundle, also when it is committed while another task keeps closing its window.
pub async fn messages_committed_while_closing_are_bundled_exactly_once(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    let webhook = world.webhook(Granularity::Hours1, &[Event::Messages]).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for task in 0..4 {
        let world = world.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..40 {
                let id = format!("t{task}-m{i}");
                let chat = if i % 3 == 0 { format!("c-{task}") } else { "c-shared".to_string() };
                if world.ingest(&[(&id, &chat)]).await.0 == 1 {
                    acknowledged.push(id);
                }
            }
            acknowledged
        }));
    }
    let closer = {
        let (world, webhook, stop) = (world.clone(), webhook.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                world.clock.advance(Duration::from_millis(3));
                close(&world.store, &webhook, world.now(), 7, false).await;
                rounds += 1;
                tokio::task::yield_now().await;
            }
            rounds
        })
    };
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(closer.await.unwrap() > 1, "closes ran while messages were committed");
    world.clock.advance(Duration::from_secs(3600));
    assert!(matches!(close(&world.store, &webhook, world.now(), 7, false).await, CloseProgress::Done { .. }));

    let payloads = world.drain().await;
    let count = bundled(&payloads);
    assert_eq!(count.len(), acknowledged.len(), "every acknowledged message is in a bundle");
    for id in &acknowledged {
        assert_eq!(count.get(id), Some(&1), "{id} is in exactly one bundle");
    }
    assert_eq!(acknowledged.len(), 160);
    let news = payloads.iter().filter(|p| p["new"] == true).count();
    let chats: HashSet<&str> = payloads.iter().map(|p| p["chat"].as_str().unwrap()).collect();
    assert_eq!(news, chats.len(), "is_new_chat in exactly one bundle per chat");
}

/// [`chatbundle::store::WindowStore::close_step`]: one bundle per (webhook, chat, window),
/// whoever closes it and however often.
pub async fn a_window_closed_twice_at_once_makes_one_bundle_per_chat(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    let webhook = world.webhook(Granularity::Hours1, &[Event::Messages]).await;
    for chunk in (0..30).collect::<Vec<_>>().chunks(10) {
        let ids: Vec<(String, String)> = chunk.iter().map(|i| (format!("m-{i}"), format!("c-{i}"))).collect();
        let refs: Vec<(&str, &str)> = ids.iter().map(|(m, c)| (m.as_str(), c.as_str())).collect();
        world.ingest(&refs).await;
    }
    world.clock.advance(Duration::from_secs(60));
    let boundary = world.now();
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let (world, webhook) = (world.clone(), webhook.clone());
            tokio::spawn(async move { close(&world.store, &webhook, boundary, 4, false).await })
        })
        .collect();
    for racer in racers {
        let progress = racer.await.unwrap();
        assert!(matches!(progress, CloseProgress::Done { .. } | CloseProgress::Superseded), "{progress:?}");
    }
    // Repeating a finished close does nothing.
    let again = CloseStep {
        webhook_id: webhook.clone(),
        bundled_before: start_time(),
        boundary,
        chats: 100,
        plan: plan(boundary),
        flush: false,
    };
    assert_eq!(world.store.close_step(again).await.unwrap(), CloseProgress::Superseded);
    let payloads = world.drain().await;
    assert_eq!(payloads.len(), 30, "one bundle per chat");
    assert!(bundled(&payloads).values().all(|n| *n == 1));
}

/// [`chatbundle::store::WindowStore::close_step`]: a close can only take what can no longer grow.
pub async fn a_close_ahead_of_the_stores_clock_waits(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::Hours1, &[Event::Messages]).await;
    world.ingest(&[("m-1", "c-1")]).await;
    let ahead = world.now() + chrono::Duration::hours(1);
    assert_eq!(close(&world.store, &webhook, ahead, 10, false).await, CloseProgress::NotYet);
    assert!(world.drain().await.is_empty());
}

/// [`chatbundle::store::WindowStore::close_step`]: a close (here a flush) cut off survives a
/// crash, is reported, and resumes once, as what it was.
pub async fn a_close_cut_off_resumes_once_after_a_crash(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::Hours1, &[Event::Messages]).await;
    let ids: Vec<(String, String)> = (0..25).map(|i| (format!("m-{i}"), format!("c-{i}"))).collect();
    let refs: Vec<(&str, &str)> = ids.iter().map(|(m, c)| (m.as_str(), c.as_str())).collect();
    world.ingest(&refs).await;
    world.clock.advance(Duration::from_secs(60));
    let boundary = world.now();
    let state = world.store.bundling_webhooks(None).await.unwrap().remove(0);
    let step = |bundled_before| CloseStep {
        webhook_id: webhook.clone(),
        bundled_before,
        boundary,
        chats: 10,
        plan: plan(boundary),
        flush: true,
    };
    assert!(matches!(
        world.store.close_step(step(state.bundled_before)).await.unwrap(),
        CloseProgress::More { .. }
    ));
    // The process dies here.
    world.store.close().await;
    let store = factory.open(world.clock.clone()).await;
    let state = store.bundling_webhooks(None).await.unwrap().remove(0);
    assert_eq!(state.closing_boundary, Some(boundary), "the close in progress is reported");
    assert!(state.closing_flush, "as a flush");
    let resumed = World { store, clock: world.clock.clone(), workspace: world.workspace.clone() };
    assert!(matches!(close(&resumed.store, &webhook, boundary, 10, true).await, CloseProgress::Done { .. }));
    let state = resumed.store.bundling_webhooks(None).await.unwrap().remove(0);
    assert_eq!((state.closing_boundary, state.bundled_before, state.flushed_at), (None, boundary, boundary));
    let payloads = resumed.drain().await;
    assert_eq!(payloads.len(), 25, "each chat once");
    assert_eq!(bundled(&payloads).len(), 25);
}

/// [`chatbundle::store::DeliveryQueue::claim_deliveries`]: within one (webhook, chat) deliveries
/// go out in acknowledgement order, a later one never while an earlier one is pending.
pub async fn a_chats_deliveries_go_out_in_order_one_at_a_time(factory: &dyn Factory) {
    let world = World::new(factory).await;
    world.webhook(Granularity::None, &[Event::Messages]).await;
    for (m, c) in [("a-1", "A"), ("a-2", "A"), ("b-1", "B"), ("a-3", "A")] {
        world.ingest(&[(m, c)]).await;
    }
    let first = claim(&world.store, 10).await;
    let heads: HashSet<String> = first.iter().map(payload_id).collect();
    assert_eq!(heads, HashSet::from(["a-1".to_string(), "b-1".to_string()]), "one per chat, the oldest");
    assert!(claim(&world.store, 10).await.is_empty(), "leased heads block their lanes");
    let a1 = first.iter().find(|d| payload_id(d) == "a-1").unwrap();
    let retry = world.now() + chrono::Duration::seconds(5);
    assert!(record(&world.store, a1, world.now(), AttemptOutcome::RetryAt(retry)).await);
    assert!(claim(&world.store, 10).await.is_empty(), "a-2 waits while a-1 is pending");
    world.clock.advance(Duration::from_secs(5));
    let mut order = Vec::new();
    loop {
        let claimed = claim(&world.store, 10).await;
        let Some(d) = claimed.into_iter().find(|d| payload_id(d).starts_with("a-")) else { break };
        order.push(payload_id(&d));
        assert!(record(&world.store, &d, world.now(), AttemptOutcome::Delivered).await);
    }
    assert_eq!(order, ["a-1", "a-2", "a-3"]);
}

fn payload_id(delivery: &ClaimedDelivery) -> String {
    serde_json::from_slice::<Value>(&delivery.payload).unwrap()["m"].as_str().unwrap().to_string()
}

/// [`chatbundle::store::DeliveryQueue::hand_off_to`]: ingest leases the deliveries that arrive at
/// an empty lane of an enabled webhook (the first of a lane only) and hands them over after its
/// commit, each with a slot of the worker's; claims pass them by; what waits behind them is not
/// `queued`: the lane's send in flight claims when it finishes, the record of its lane's head says
/// [`chatbundle::store::Recorded::next_waiting`], and behind a lane no send of the daemon holds,
/// the worker is woken at once; without room for all of a commit's deliveries none is handed
/// over, and the outcome says `queued`.
pub async fn a_delivery_arriving_at_an_empty_lane_is_handed_over_without_a_claim(factory: &dyn Factory) {
    use chatbundle::store::{Handed, Handoff, WebhookPatch};
    use futures::FutureExt;
    use tokio::sync::{Notify, Semaphore};
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::Messages]).await;
    let (slots, wake) = (Arc::new(Semaphore::new(8)), Arc::new(Notify::new()));
    let (handoff, mut inbox) = Handoff::new(slots.clone(), LEASE, wake.clone());
    world.store.hand_off_to(handoff.clone());
    let woken = || wake.notified().now_or_never().is_some();
    let mut handed = || -> Vec<Handed> { std::iter::from_fn(|| inbox.try_recv().ok()).collect() };
    let ids = |handed: &[Handed]| -> Vec<String> { handed.iter().map(|h| payload_id(&h.delivery)).collect() };
    let recorded = |delivery: &ClaimedDelivery| {
        let (store, attempt) = (world.store.clone(), attempt(delivery, world.now(), 200));
        async move { store.record_attempt(attempt, AttemptOutcome::Delivered, &policy()).await.unwrap() }
    };

    let first =
        ingest_outcome(&world.store, &world.workspace, &[("a-1", "A"), ("a-2", "A"), ("b-1", "B")], "api")
            .await;
    assert!(!first.queued, "nothing left for a claim to find at once");
    let a1_b1 = handed();
    assert_eq!(ids(&a1_b1), ["a-1", "b-1"], "the first of each lane, in queue order");
    assert_eq!(slots.available_permits(), 6, "a slot each, the others given back");
    assert!(a1_b1.iter().all(|h| h.delivery.lease_token != 0 && h.delivery.webhook_id == webhook));
    assert!(
        claim(&world.store, 10).await.is_empty(),
        "leased: claims pass them by, and a-2 waits behind a-1"
    );

    let later = ingest_outcome(&world.store, &world.workspace, &[("a-3", "A")], "api").await;
    assert!(!later.queued && handed().is_empty(), "a-3 waits behind a-1 and a-2, for no claim yet");
    assert!(!woken(), "a-1 is in flight here: its end will tell");
    let a1 = recorded(&a1_b1[0].delivery).await;
    assert!(!a1.stale && a1.next_waiting, "a-2 waits in a-1's lane");
    assert!(handoff.finished(&a1_b1[0].delivery), "something was left behind a-1");
    let b1 = recorded(&a1_b1[1].delivery).await;
    assert!(!b1.stale && !b1.next_waiting, "nothing more in b-1's lane");
    assert!(!handoff.finished(&a1_b1[1].delivery), "nothing was left behind b-1");
    drop(a1_b1);
    assert_eq!(slots.available_permits(), 8);
    let a2 = claim(&world.store, 10).await;
    assert_eq!(a2.iter().map(payload_id).collect::<Vec<_>>(), ["a-2"]);
    // a-2 was claimed, not sent by this worker's lanes: what comes behind it wakes the worker.
    let behind = ingest_outcome(&world.store, &world.workspace, &[("a-4", "A")], "api").await;
    assert!(!behind.queued && handed().is_empty());
    assert!(woken(), "no send of this daemon holds lane A: claim now");
    assert!(recorded(&a2[0]).await.next_waiting, "a-3 behind it");

    // No room for all of a commit's deliveries: none is handed over, and a claim finds them.
    let busy = slots.clone().try_acquire_many_owned(7).unwrap();
    let crowded = ingest_outcome(&world.store, &world.workspace, &[("c-1", "C"), ("d-1", "D")], "api").await;
    assert!(crowded.queued, "left for a claim");
    assert!(handed().is_empty());
    assert_eq!(slots.available_permits(), 1, "the slot tried for is given back");
    drop(busy);
    let claimed: HashSet<String> = claim(&world.store, 10).await.iter().map(payload_id).collect();
    assert_eq!(claimed, HashSet::from(["a-3".into(), "c-1".into(), "d-1".into()]), "a-4 behind a-3");

    // A switched-off webhook's delivery is not handed over (a claim would not hand it out either).
    let patch = WebhookPatch { enabled: Some(false), ..Default::default() };
    world.store.update_webhook(&webhook, patch).await.unwrap().unwrap();
    let off = ingest_outcome(&world.store, &world.workspace, &[("e-1", "E")], "api").await;
    assert!(!off.queued && handed().is_empty(), "it waits for the webhook to be switched on");
    let patch = WebhookPatch { enabled: Some(true), ..Default::default() };
    world.store.update_webhook(&webhook, patch).await.unwrap().unwrap();
    assert_eq!(claim(&world.store, 10).await.iter().map(payload_id).collect::<Vec<_>>(), ["e-1"]);
}

/// [`chatbundle::store::DeliveryQueue::claim_deliveries`]: claims racing for the same deliveries
/// get each one once.
pub async fn racing_claims_get_each_delivery_once(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    world.webhook(Granularity::None, &[Event::Messages]).await;
    let ids: Vec<(String, String)> = (0..40).map(|i| (format!("m-{i}"), format!("c-{}", i % 20))).collect();
    let refs: Vec<(&str, &str)> = ids.iter().map(|(m, c)| (m.as_str(), c.as_str())).collect();
    world.ingest(&refs).await;
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let world = world.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..20 {
                    for d in claim(&world.store, 3).await {
                        mine.push(payload_id(&d));
                        assert!(record(&world.store, &d, world.now(), AttemptOutcome::Delivered).await);
                    }
                    tokio::task::yield_now().await;
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    all.extend(world.drain().await.iter().map(|p| p["m"].as_str().unwrap().to_string()));
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 40, "no delivery handed out twice: {all:?}");
    assert_eq!(unique.len(), 40);
}

/// [`chatbundle::store::DeliveryQueue::claim_deliveries`] (one holder): a delivery in flight is
/// not handed out again by later claims while its lease runs (a second before it ends), and is
/// due again once it has ended (a second after).
pub async fn a_delivery_in_flight_is_not_handed_out_again_before_its_lease_ends(factory: &dyn Factory) {
    let world = World::new(factory).await;
    world.webhook(Granularity::None, &[Event::Messages]).await;
    world.ingest(&[("m-1", "c-1"), ("m-2", "c-2"), ("m-3", "c-3")]).await;
    let first = claim(&world.store, 1).await;
    assert_eq!(first.len(), 1);
    let rest = claim(&world.store, 10).await;
    assert_eq!(rest.len(), 2, "the others, not the one in flight");
    assert!(rest.iter().all(|d| d.id != first[0].id));
    world.clock.advance(LEASE.default_timeout + LEASE.margin - Duration::from_secs(1));
    assert!(claim(&world.store, 10).await.is_empty(), "all three still in flight");
    world.clock.advance(Duration::from_secs(2));
    let again: HashSet<String> = claim(&world.store, 10).await.iter().map(|d| d.id.to_string()).collect();
    let all: HashSet<String> = first.iter().chain(&rest).map(|d| d.id.to_string()).collect();
    assert_eq!(again, all, "each lease ran out: each is due again");
}

/// [`chatbundle::store::DeliveryQueue::record_attempt`]: only the holder of the current lease
/// records a result; leases run out by the store's clock; nothing is delivered twice over.
pub async fn only_the_current_lease_holder_records_a_result(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::Messages]).await;
    world.ingest(&[("m-1", "c-1")]).await;
    let first = claim(&world.store, 10).await.remove(0);
    world.clock.advance(Duration::from_secs(61));
    let second = claim(&world.store, 10).await.remove(0);
    assert_eq!(second.id, first.id, "the same delivery, the same webhook-id");
    assert_ne!(second.lease_token, first.lease_token);
    let status = || async { world.store.list_deliveries(&webhook, None, 10, 0).await.unwrap()[0].status };
    assert!(!record(&world.store, &first, world.now(), AttemptOutcome::Delivered).await, "stale");
    assert_eq!(status().await, DeliveryStatus::Pending);
    assert_eq!(world.store.list_attempts(&webhook, 10).await.unwrap().len(), 1, "the send is logged");
    assert!(record(&world.store, &second, world.now(), AttemptOutcome::Delivered).await);
    assert_eq!(status().await, DeliveryStatus::Delivered);
    let retry = AttemptOutcome::RetryAt(world.now());
    assert!(!record(&world.store, &first, world.now(), retry).await);
    assert!(!record(&world.store, &second, world.now(), retry).await, "once per claim");
    assert_eq!(status().await, DeliveryStatus::Delivered, "never back to pending");
}

/// [`chatbundle::store::DeliveryQueue::record_attempt`]: results recorded at the same moment (a
/// stale claim's, and the current claim's many times, some sharing a transaction) move the
/// delivery once, under the current lease, and every request sent is logged.
pub async fn results_recorded_at_once_move_a_delivery_once(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::Messages]).await;
    world.ingest(&[("m-1", "c-1")]).await;
    let stale = claim(&world.store, 10).await.remove(0);
    world.clock.advance(Duration::from_secs(61));
    let current = claim(&world.store, 10).await.remove(0);
    let now = world.now();
    // More results at once than a store runs transactions at once: the stale claim's come first
    // and keep the transactions busy, so results of the current one share a transaction.
    let recording = |claimed: &ClaimedDelivery, n: usize| {
        let (store, claimed) = (world.store.clone(), claimed.clone());
        futures::future::join_all((0..n).map(move |_| {
            let (store, claimed) = (store.clone(), claimed.clone());
            async move { record(&store, &claimed, now, AttemptOutcome::Delivered).await }
        }))
    };
    let (stale_moved, current_moved) = tokio::join!(recording(&stale, 4), recording(&current, 8));
    assert!(!stale_moved.contains(&true), "the stale claim moves nothing");
    assert_eq!(
        current_moved.iter().filter(|moved| **moved).count(),
        1,
        "the current claim moves it once: {current_moved:?}"
    );
    let listed = world.store.list_deliveries(&webhook, None, 10, 0).await.unwrap();
    assert_eq!((listed[0].status, listed[0].attempts), (DeliveryStatus::Delivered, 1));
    assert_eq!(
        world.store.list_attempts(&webhook, 20).await.unwrap().len(),
        12,
        "every request sent is logged"
    );
}

/// [`chatbundle::store::ActivityLog`]: an attempt reads back with the body and headers it was sent
/// with, whether recorded alone, with others at once, or as a test send, in the latest attempts
/// and in the activity log alike: headers its own columns repeat, headers that differ from them,
/// no headers at all.
pub async fn the_log_gives_back_each_request_as_it_was_sent(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::Messages]).await;
    world.ingest(&[("m-1", "c-1"), ("m-2", "c-2"), ("m-3", "c-3")]).await;
    let claimed = claim(&world.store, 10).await;
    assert_eq!(claimed.len(), 3);
    let at = world.now();
    let headers = |id: &str, timestamp: i64| {
        json!({
            "content-type": "application/json; charset=utf-8",
            "user-agent": "chatbundle/test",
            "webhook-id": id,
            "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
            "webhook-timestamp": timestamp.to_string(),
        })
        .to_string()
    };
    let sent = [
        headers(claimed[0].id.as_str(), at.timestamp()),
        headers(claimed[1].id.as_str(), at.timestamp() - 7),
        "{}".to_string(),
    ];
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .zip(&sent)
        .map(|(delivery, headers)| AttemptRecord {
            request_headers: headers.clone(),
            ..attempt(delivery, at, 200)
        })
        .collect();
    // At once, so that a store grouping results groups these.
    let policy = policy();
    let recorded = futures::future::join_all(
        records.iter().map(|r| world.store.record_attempt(r.clone(), AttemptOutcome::Delivered, &policy)),
    )
    .await;
    assert!(recorded.into_iter().all(|r| !r.unwrap().stale));
    let test_id = DeliveryId::stored("test-send-1".to_string());
    let test = AttemptRecord {
        delivery_seq: 0,
        lease_token: 0,
        delivery_id: test_id.clone(),
        request_headers: headers(test_id.as_str(), at.timestamp()),
        request_body: br#"{"test":true}"#.to_vec(),
        ..records[0].clone()
    };
    world.store.record_test(test.clone()).await.unwrap();

    let expected: BTreeMap<String, (Value, String)> = records
        .iter()
        .chain([&test])
        .map(|r| {
            let headers: Value = serde_json::from_str(&r.request_headers).unwrap();
            (r.delivery_id.to_string(), (headers, String::from_utf8(r.request_body.clone()).unwrap()))
        })
        .collect();
    let listed: BTreeMap<String, (Value, String)> = world
        .store
        .list_attempts(&webhook, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.delivery_id.to_string(), (a.request_headers, a.request_body)))
        .collect();
    assert_eq!(listed, expected, "the latest attempts");
    let logged: BTreeMap<String, (Value, String)> = world
        .store
        .activity(&webhook, None, 50)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|row| {
            let id = row.delivery_id?.to_string();
            Some((id, (row.request_headers.unwrap(), row.request_body.unwrap())))
        })
        .collect();
    assert_eq!(logged, expected, "the activity log");
}

/// [`chatbundle::store::DeliveryQueue::claim_deliveries`]: the rate is taken from each webhook's
/// bucket when a delivery is claimed.
pub async fn the_rate_is_taken_from_the_webhooks_bucket_at_claim_time(factory: &dyn Factory) {
    let world = World::new(factory).await;
    world.webhook(Granularity::None, &[Event::Messages]).await;
    world.ingest(&[("m-1", "c-1"), ("m-2", "c-2"), ("m-3", "c-3")]).await;
    let rate = NonZeroU32::new(2);
    let store = world.store.clone();
    let take = || {
        let store = store.clone();
        async move { store.claim_deliveries(LEASE, 10, rate).await.unwrap().len() }
    };
    // (A store on a database clock sees the case's clock give or take a millisecond.)
    assert_eq!(take().await, 2, "a burst of the rate");
    assert_eq!(take().await, 0);
    world.clock.advance(Duration::from_millis(400));
    assert_eq!(take().await, 0, "not a whole token yet");
    world.clock.advance(Duration::from_millis(200));
    assert_eq!(take().await, 1, "one more every 1/rate seconds");
}

/// [`chatbundle::store::IngestStore::ingest`]: a message id is stored once, also when many
/// requests carry it at the same moment.
pub async fn a_message_sent_many_times_at_once_is_stored_once(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    world.webhook(Granularity::None, &[Event::Messages]).await;
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let world = world.clone();
            tokio::spawn(async move { world.ingest(&[("dup-1", "c-1")]).await })
        })
        .collect();
    let (mut accepted, mut duplicates) = (0, 0);
    for sender in senders {
        let (a, d) = sender.await.unwrap();
        accepted += a;
        duplicates += d;
    }
    assert_eq!((accepted, duplicates), (1, 7));
    assert_eq!(world.drain().await.len(), 1, "delivered once");
}

/// [`chatbundle::store::IngestStore::ingest`]: a request with more chats and messages than one
/// multi-row statement takes (64 rows) is stored whole: every message once, one delivery each,
/// each chat's in the order sent, the first of each chat marked new; sent again, all of it is a
/// duplicate.
pub async fn a_request_larger_than_one_statement_is_stored_whole(factory: &dyn Factory) {
    let world = World::new(factory).await;
    world.webhook(Granularity::None, &[Event::Messages]).await;
    let sent: Vec<(String, String)> =
        (0..300).map(|i| (format!("big-{i}"), format!("c-{}", i % 150))).collect();
    let messages: Vec<(&str, &str)> = sent.iter().map(|(m, c)| (m.as_str(), c.as_str())).collect();
    assert_eq!(world.ingest(&messages).await, (300, 0));
    assert_eq!(world.ingest(&messages).await, (0, 300), "the same request again");
    let payloads = world.drain().await;
    assert_eq!(payloads.len(), 300, "one delivery per message");
    let mut by_chat: HashMap<&str, Vec<(&str, bool)>> = HashMap::new();
    for p in &payloads {
        by_chat
            .entry(p["chat"].as_str().unwrap())
            .or_default()
            .push((p["m"].as_str().unwrap(), p["new"] == true));
    }
    assert_eq!(by_chat.len(), 150);
    for i in 0..150 {
        let (first, second) = (format!("big-{i}"), format!("big-{}", i + 150));
        let expected = vec![(first.as_str(), true), (second.as_str(), false)];
        assert_eq!(by_chat[format!("c-{i}").as_str()], expected, "chat c-{i}");
    }
}

/// [`chatbundle::store::IngestStore::ingest`]: requests stored at the same moment, for two
/// workspaces and sharing message ids, each get their own outcome, and every message is stored
/// once in its own workspace (a store may merge such requests into one transaction).
pub async fn requests_stored_at_once_each_get_their_own_outcome(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    world.webhook(Granularity::None, &[Event::Messages]).await;
    let other = world.other_workspace("other").await;
    world.webhook_in(&other, Granularity::None, &[Event::Messages]).await;
    // Request i: a message of its own, and one it shares with the request two after or before
    // it in the same workspace.
    let senders: Vec<_> = (0..24)
        .map(|i| {
            let (store, workspace) =
                (world.store.clone(), if i % 2 == 0 { world.workspace.clone() } else { other.clone() });
            tokio::spawn(async move {
                let (own, shared, chat) = (format!("u-{i}"), format!("s-{}", i / 4), format!("c-{}", i % 3));
                ingest(&store, &workspace, &[(&own, &chat), (&shared, "c-shared")], "api").await
            })
        })
        .collect();
    let (mut accepted, mut duplicates) = (0, 0);
    for sender in senders {
        let (a, d) = sender.await.unwrap();
        assert_eq!(a + d, 2, "each request is answered for its own two messages");
        assert!(a >= 1, "a request's own message is never a duplicate");
        accepted += a;
        duplicates += d;
    }
    // 24 own messages; 6 shared ids in each of the two workspaces, each sent twice.
    assert_eq!((accepted, duplicates), (36, 12));
    let payloads = world.drain().await;
    let ids: BTreeMap<String, usize> = payloads.iter().fold(BTreeMap::new(), |mut ids, p| {
        *ids.entry(p["m"].as_str().unwrap().to_string()).or_default() += 1;
        ids
    });
    assert_eq!(payloads.len(), 36, "one delivery per stored message");
    assert_eq!(ids.len(), 24 + 6, "shared ids are stored once per workspace");
    assert!(ids.iter().all(|(id, n)| *n == if id.starts_with("s-") { 2 } else { 1 }), "{ids:?}");
}

/// [`chatbundle::store::IngestStore::ingest`]: an outcome says it queued deliveries when its
/// messages did (a webhook that gets each message at once, a session event of a new chat), and
/// not when they queued none, so the delivery worker is woken for work and not for nothing.
pub async fn an_outcome_says_whether_it_queued_deliveries(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let queued = |messages: &'static [(&'static str, &'static str)]| {
        let (store, workspace) = (world.store.clone(), world.workspace.clone());
        async move { ingest_outcome(&store, &workspace, messages, "api").await.queued }
    };
    assert!(!queued(&[("m-1", "c-1")]).await, "no webhook: nothing queued");
    world.webhook(Granularity::Hours24, &[Event::Messages]).await;
    assert!(!queued(&[("m-2", "c-1")]).await, "a bundling webhook queues at the window's end, not now");
    world.webhook(Granularity::None, &[Event::Messages]).await;
    assert!(queued(&[("m-3", "c-1")]).await, "a webhook that gets each message at once");
    assert!(!queued(&[("m-3", "c-1")]).await, "a duplicate queues nothing");
    assert_eq!(world.drain().await.len(), 1, "the one message queued is the one said");

    let other = world.other_workspace("sessions").await;
    world.webhook_in(&other, Granularity::Hours24, &[Event::SessionStatus]).await;
    let started = ingest_outcome(&world.store, &other, &[("s-1", "new-chat")], "api").await;
    assert!(started.queued, "a new chat's session event for a session_status webhook");
    let later = ingest_outcome(&world.store, &other, &[("s-2", "new-chat")], "api").await;
    assert!(!later.queued, "a known chat's message starts no session");
    assert_eq!(world.drain().await.len(), 1, "one session event queued");
}

/// [`chatbundle::store::IngestStore::ingest`]: an immediate delivery keeps the `trace_parent` of
/// the request that queued it and its claim hands it back, each request's its own when requests
/// arriving at once share a commit; a request without one queues deliveries without.
pub async fn a_delivery_is_claimed_with_the_trace_of_the_request_that_queued_it(factory: &dyn Factory) {
    let world = World::new(factory).await;
    world.webhook(Granularity::None, &[Event::Messages]).await;
    let traced = |id: &str, chat: &str, trace: Option<&str>| {
        let mut batch = request(&world, vec![said(id, chat, Direction::Received)], Vec::new());
        batch.trace_parent = trace.map(String::from);
        world.store.ingest(batch)
    };
    let a = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let b = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (x, y, z) = tokio::join!(
        traced("m-1", "c-1", Some(a)),
        traced("m-2", "c-2", Some(b)),
        traced("m-3", "c-3", None)
    );
    for outcome in [x, y, z] {
        assert!(outcome.unwrap().queued);
    }
    let chats = world.store.list_chats(&world.workspace, 10, 0).await.unwrap();
    let chat = |external: &str| chats.iter().find(|c| c.external_id == external).map(|c| c.id);
    let claimed = claim(&world.store, 10).await;
    assert_eq!(claimed.len(), 3);
    let trace_of = |external: &str| {
        let delivery = claimed.iter().find(|d| d.chat_id == chat(external)).expect("a delivery of the chat");
        assert_eq!(delivery.workspace_id, world.workspace);
        delivery.trace_parent.as_deref()
    };
    assert_eq!((trace_of("c-1"), trace_of("c-2"), trace_of("c-3")), (Some(a), Some(b), None));
}

/// [`chatbundle::store::WindowStore::close_step`]: a bundle's delivery links to the traces its
/// messages came in, each once, in their order; messages that came in untraced add none.
pub async fn a_bundle_links_to_the_traces_its_messages_came_in(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::Hours1, &[Event::Messages]).await;
    let (a, b) = (
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    for (id, trace) in [("m-1", Some(a)), ("m-2", None), ("m-3", Some(b)), ("m-4", Some(a))] {
        let mut batch = request(&world, vec![said(id, "c-1", Direction::Received)], Vec::new());
        batch.trace_parent = trace.map(String::from);
        world.store.ingest(batch).await.unwrap();
    }
    world.clock.advance(Duration::from_secs(3600));
    assert!(matches!(
        close(&world.store, &webhook, world.now(), 10, false).await,
        CloseProgress::Done { .. }
    ));
    let claimed = claim(&world.store, 10).await;
    assert_eq!(claimed.len(), 1, "one bundle");
    assert_eq!(claimed[0].trace_parent, None, "a trace of its own");
    assert_eq!(claimed[0].trace_links, vec![a.to_string(), b.to_string()]);
}

/// [`chatbundle::store::IngestStore::ingest`]: `is_new_chat` is true in exactly one payload per
/// chat, however its first messages arrive.
pub async fn is_new_chat_is_true_once_per_chat(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    world.webhook(Granularity::None, &[Event::Messages]).await;
    let senders: Vec<_> = (0..6)
        .map(|i| {
            let world = world.clone();
            tokio::spawn(async move {
                let (a, b) = (format!("m-{i}-a"), format!("m-{i}-b"));
                world.ingest(&[(&a, "c-new"), (&b, "c-new")]).await
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let payloads = world.drain().await;
    assert_eq!(payloads.len(), 12);
    assert_eq!(payloads.iter().filter(|p| p["new"] == true).count(), 1);
}

/// [`chatbundle::store::SessionStore::announce_expiries`]: a lapsed reply window is announced
/// once, across restarts; a new customer message opens a new one.
pub async fn a_lapsed_reply_window_is_announced_once_across_restarts(factory: &dyn Factory) {
    let world = World::new(factory).await;
    world.webhook(Granularity::None, &[Event::SessionStatus]).await;
    let render: chatbundle::store::RenderSession = Arc::new(|_| b"[]".to_vec());
    // WhatsApp allows replies for 24 hours after the customer's last message.
    ingest(&world.store, &world.workspace, &[("w-1", "wa-1")], "whatsapp").await;
    world.clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(world.store.announce_expiries(world.now(), 10, render.clone()).await.unwrap(), 1);
    assert_eq!(world.store.announce_expiries(world.now(), 10, render.clone()).await.unwrap(), 0);
    world.store.close().await;
    let store = factory.open(world.clock.clone()).await;
    assert_eq!(
        store.announce_expiries(world.now(), 10, render.clone()).await.unwrap(),
        0,
        "not again after a restart"
    );
    // A customer message written now (its timestamp is the customer's own) opens a new window.
    let late = NewMessage {
        message_id: "w-2".into(),
        direction: Direction::Received,
        timestamp: world.now(),
        chat: ChatInfo { external_id: "wa-1".into(), ..ChatInfo::default() },
        sender: Party::default(),
        recipient: Party::default(),
        text: "again".into(),
        account: None,
        channel: "whatsapp".into(),
        attachments: Vec::new(),
        reply_to_button: None,
    };
    let batch = IngestBatch {
        workspace_id: world.workspace.clone(),
        source_key: "api".into(),
        source_name: "api".into(),
        messages: vec![late],
        sessions: Vec::new(),
        skipped: Vec::new(),
        render_immediate: Arc::new(|_, _, _, _, _, _| b"{}".to_vec()),
        render_session: render.clone(),
        reply: None,
        trace_parent: None,
    };
    store.ingest(batch).await.unwrap();
    assert_eq!(store.next_expiry().await.unwrap(), Some(world.now() + chrono::Duration::hours(24)));
    world.clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(store.announce_expiries(world.now(), 10, render).await.unwrap(), 1);
}

/// [`chatbundle::store::SessionStore::announce_expiries`]: announcers racing (several daemons'
/// closers) announce each lapse once between them.
pub async fn racing_announcers_announce_each_lapse_once(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    world.webhook(Granularity::None, &[Event::SessionStatus]).await;
    for i in 0..20 {
        let (id, chat) = (format!("w-{i}"), format!("wa-{i}"));
        ingest(&world.store, &world.workspace, &[(&id, &chat)], "whatsapp").await;
    }
    let before = world.drain().await.len();
    world.clock.advance(Duration::from_secs(25 * 3600));
    let announcers: Vec<_> = (0..4)
        .map(|_| {
            let world = world.clone();
            tokio::spawn(async move {
                let render: chatbundle::store::RenderSession = Arc::new(|_| b"{}".to_vec());
                let mut announced = 0;
                loop {
                    let n = world.store.announce_expiries(world.now(), 3, render.clone()).await.unwrap();
                    if n == 0 {
                        return announced;
                    }
                    announced += n;
                }
            })
        })
        .collect();
    let mut announced = 0;
    for announcer in announcers {
        announced += announcer.await.unwrap();
    }
    assert_eq!(announced, 20, "each lapse once");
    assert_eq!(world.drain().await.len(), 20, "one event each");
    assert!(before >= 20, "each new chat was announced as created");
}

/// [`chatbundle::store::Outbox::claim_email`]: mailers racing (one per daemon) get each e-mail
/// once.
pub async fn racing_mailers_claim_each_email_once(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    let webhook = world.webhook(Granularity::None, &[Event::Messages]).await;
    world.ingest(&[("m-1", "c-1")]).await;
    let claimed = claim(&world.store, 10).await.remove(0);
    // A 410 switches the webhook off and writes to its owner.
    let gone = attempt(&claimed, world.now(), 410);
    let recorded = world.store.record_attempt(gone, AttemptOutcome::RetryAt(world.now()), &policy()).await;
    assert!(recorded.unwrap().emailed);
    let mailers: Vec<_> = (0..4)
        .map(|_| {
            let world = world.clone();
            tokio::spawn(
                async move { world.store.claim_email(Duration::from_secs(300)).await.unwrap().is_some() },
            )
        })
        .collect();
    let mut got = 0;
    for mailer in mailers {
        got += usize::from(mailer.await.unwrap());
    }
    assert_eq!(got, 1, "one mailer sends it");
    assert!(world.store.get_webhook(&webhook).await.unwrap().is_some_and(|w| !w.enabled));
}

/// [`chatbundle::store::ActivityLog::prune`]: retention jobs racing (one per daemon) delete each
/// old row once between them, and never a pending delivery.
pub async fn racing_prunes_delete_each_old_row_once(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    let webhook = world.webhook(Granularity::None, &[Event::Messages]).await;
    let ids: Vec<(String, String)> = (0..30).map(|i| (format!("m-{i}"), format!("c-{i}"))).collect();
    let refs: Vec<(&str, &str)> = ids.iter().map(|(m, c)| (m.as_str(), c.as_str())).collect();
    world.ingest(&refs).await;
    assert_eq!(world.drain().await.len(), 30);
    world.ingest(&[("waiting", "c-w")]).await;
    world.clock.advance(Duration::from_secs(3600));
    let before = world.now();
    let prunes: Vec<_> = (0..4)
        .map(|_| {
            let world = world.clone();
            tokio::spawn(async move {
                let mut rows = 0;
                loop {
                    let pruned = world.store.prune(before, 7).await.unwrap().rows;
                    if pruned == 0 {
                        return rows;
                    }
                    rows += pruned;
                }
            })
        })
        .collect();
    let mut rows = 0;
    for prune in prunes {
        rows += prune.await.unwrap();
    }
    // A prune that found another one at work did nothing; what it left goes now.
    loop {
        let pruned = world.store.prune(before, 7).await.unwrap().rows;
        if pruned == 0 {
            break;
        }
        rows += pruned;
    }
    assert_eq!(rows, 60, "30 attempts and 30 delivered deliveries, each deleted once");
    assert!(world.store.list_attempts(&webhook, 100).await.unwrap().is_empty());
    let left = world.store.list_deliveries(&webhook, None, 100, 0).await.unwrap();
    assert_eq!(left.len(), 1, "the pending delivery stays");
    assert_eq!(left[0].status, DeliveryStatus::Pending);
}

/// An owner set by an admin stays through messages that name none, is replaced by one that
/// names one, and the channel's assignee id is kept apart from the name.
pub async fn a_chat_owner_set_by_hand_stays_until_a_message_names_another(factory: &dyn Factory) {
    let world = World::new(factory).await;
    world.ingest(&[("m1", "c1")]).await;
    let chats = world.store.list_chats(&world.workspace, 10, 0).await.unwrap();
    let id = chats[0].id;
    let set = ChatOwner { name: Some(Some("Dana".into())), email: Some(Some("dana@acme.example".into())) };
    let chat = world.store.set_chat_owner(id, set).await.unwrap().unwrap();
    assert_eq!(
        (chat.responsible_name.as_deref(), chat.responsible_email.as_deref()),
        (Some("Dana"), Some("dana@acme.example"))
    );
    // Only the e-mail cleared; the name stays.
    let chat = world
        .store
        .set_chat_owner(id, ChatOwner { email: Some(None), ..ChatOwner::default() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((chat.responsible_name.as_deref(), chat.responsible_email), (Some("Dana"), None));
    // A message that names no owner keeps the admin's.
    world.ingest(&[("m2", "c1")]).await;
    assert_eq!(world.store.get_chat(id).await.unwrap().unwrap().1.responsible_name.as_deref(), Some("Dana"));
    // A message naming an owner (and the channel's id of them) replaces it.
    let named = NewMessage {
        message_id: "m3".into(),
        direction: Direction::Received,
        timestamp: start_time(),
        chat: ChatInfo {
            external_id: "c1".into(),
            responsible_name: Some("Eli".into()),
            responsible_id: Some("4000000012345".into()),
            ..ChatInfo::default()
        },
        sender: Party::default(),
        recipient: Party::default(),
        text: "t".into(),
        account: None,
        channel: "api".into(),
        attachments: Vec::new(),
        reply_to_button: None,
    };
    let batch = IngestBatch {
        workspace_id: world.workspace.clone(),
        source_key: "api".into(),
        source_name: "api".into(),
        messages: vec![named],
        sessions: Vec::new(),
        skipped: Vec::new(),
        render_immediate: Arc::new(|_, _, _, _, _, _| Vec::new()),
        render_session: Arc::new(|_| Vec::new()),
        reply: None,
        trace_parent: None,
    };
    world.store.ingest(batch).await.unwrap();
    let (_, chat) = world.store.get_chat(id).await.unwrap().unwrap();
    assert_eq!(
        (chat.responsible_name.as_deref(), chat.responsible_id.as_deref()),
        (Some("Eli"), Some("4000000012345"))
    );
    assert_eq!(
        world.store.set_chat_owner(ChatId(id.0 + 1000), ChatOwner::default()).await.unwrap(),
        None,
        "no such chat"
    );
}

/// A session report is news once: the status moving, the owner changing or a reply status other
/// than ACCEPTED each queue an event; the same report again queues none.
pub async fn a_session_report_is_announced_once_and_an_assignment_alone_is_news(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::SessionStatus]).await;
    let report = |status: SessionStatus, assignee: &str, reply: &str| SessionChange {
        workspace_id: world.workspace.clone(),
        source_key: "src_zoho".into(),
        chat: ChatInfo {
            external_id: "s-1".into(),
            responsible_id: Some(assignee.into()),
            ..ChatInfo::default()
        },
        session_id: Some("s-1".into()),
        status: Some(status),
        assignee_type: Some("AGENT".into()),
        channel: None,
        reported: ReportedSession {
            reply_status: Some(ReplyStatus::parse(reply)),
            ..ReportedSession::default()
        },
    };
    let events = || async { world.store.list_deliveries(&webhook, None, 100, 0).await.unwrap().len() };
    let mut expected = 0;
    for (change, news) in [
        (report(SessionStatus::Open, "a-1", "ACCEPTED"), true),
        (report(SessionStatus::Open, "a-1", "ACCEPTED"), false),
        (report(SessionStatus::OnProgress, "a-1", "ACCEPTED"), true),
        (report(SessionStatus::OnProgress, "a-2", "ACCEPTED"), true),
        (report(SessionStatus::OnProgress, "a-2", "ACCEPTED"), false),
        (report(SessionStatus::OnProgress, "a-2", "CREDIT_EXHAUSTED"), true),
    ] {
        let batch = IngestBatch {
            workspace_id: world.workspace.clone(),
            source_key: "src_zoho".into(),
            source_name: "Zoho".into(),
            messages: Vec::new(),
            sessions: vec![change],
            skipped: Vec::new(),
            render_immediate: Arc::new(|_, _, _, _, _, _| Vec::new()),
            render_session: Arc::new(|event| event.reply_status.as_str().as_bytes().to_vec()),
            reply: None,
            trace_parent: None,
        };
        world.store.ingest(batch).await.unwrap();
        expected += usize::from(news);
        assert_eq!(events().await, expected, "after {expected} pieces of news");
    }
}

/// [`chatbundle::store::IngestStore::ingest`]: a message's media are stored whole and read back
/// as given (for transcripts and bundles); a webhook that gets each message at once and skips
/// media gets a media message's words alone, and nothing of one without words; the request says
/// it queued only what it queued.
pub async fn media_are_kept_whole_and_go_only_to_webhooks_that_take_them(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let skips = world.webhook(Granularity::None, &[Event::Messages]).await;
    let takes = world.webhook(Granularity::None, &[Event::Messages]).await;
    let patch = WebhookPatch { media: Some(Media::Placeholder), ..WebhookPatch::default() };
    world.store.update_webhook(&takes, patch).await.unwrap().unwrap();
    let mut photo = Attachment::new(AttachmentKind::Image);
    photo.mime_type = Some("image/jpeg".into());
    photo.url = Some("https://media.example/p/1.jpg".into());
    photo.caption = Some("our shop".into());
    let mut place = Attachment::new(AttachmentKind::Location);
    place.latitude = Some(35.681236);
    place.longitude = Some(139.767125);
    place.name = Some("東京駅".into());
    let mut media = said("m-media", "c1", Direction::Received);
    media.text = "our shop".into();
    media.attachments = vec![photo, place];
    let mut batch =
        request(&world, vec![said("m-text", "c1", Direction::Received), media.clone()], Vec::new());
    batch.render_immediate = Arc::new(|_, _, _, (message, _), _, _| {
        format!("{}:{}", message.message_id, message.attachments.len()).into_bytes()
    });
    let outcome = world.store.ingest(batch).await.unwrap();
    assert_eq!((outcome.accepted, outcome.queued), (2, true));

    let got = world.drain_by_webhook().await;
    assert_eq!(got[&skips], ["m-text:0", "m-media:0"], "a webhook that skips media gets the caption alone");
    assert_eq!(got[&takes], ["m-text:0", "m-media:2"]);

    let chat = world.store.list_chats(&world.workspace, 10, 0).await.unwrap()[0].id;
    let stored = world.store.chat_messages(chat, 10, 0).await.unwrap();
    let back = stored.iter().find(|m| m.message_id == "m-media").unwrap();
    assert_eq!((back.text.as_str(), &back.attachments), ("our shop", &media.attachments));
    let text = stored.iter().find(|m| m.message_id == "m-text").unwrap();
    assert!(text.attachments.is_empty());

    // A request of media alone, for the webhook that skips them only: nothing is queued.
    world.store.delete_webhook(&takes).await.unwrap();
    let mut voice = said("m-voice", "c1", Direction::Received);
    voice.text = String::new();
    voice.attachments = vec![Attachment::new(AttachmentKind::Voice)];
    let outcome = world.store.ingest(request(&world, vec![voice], Vec::new())).await.unwrap();
    assert_eq!((outcome.accepted, outcome.queued), (1, false));
    assert!(claim(&world.store, 10).await.is_empty());
}

/// [`chatbundle::store::ChatStore::first_messages`]: a chat that opens with a photo has its
/// first message ever and its first with words apart; a webhook that skips media sees the chat
/// as new with the words (at once, and in a close), one that takes media with the photo.
pub async fn a_chat_opened_with_media_is_new_with_the_first_message_each_webhook_sees(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let skips = world.webhook(Granularity::None, &[Event::Messages]).await;
    let takes = world.webhook(Granularity::None, &[Event::Messages]).await;
    let patch = WebhookPatch { media: Some(Media::Placeholder), ..WebhookPatch::default() };
    world.store.update_webhook(&takes, patch).await.unwrap().unwrap();
    let mut photo = said("m-1", "c1", Direction::Received);
    photo.text = String::new();
    photo.attachments = vec![Attachment::new(AttachmentKind::Image)];
    let render: chatbundle::store::RenderImmediate = Arc::new(|_, _, _, (message, _), _, is_new| {
        format!("{}:{is_new}:{}", message.message_id, message.attachments.len()).into_bytes()
    });
    let mut first = request(&world, vec![photo, said("m-2", "c1", Direction::Received)], Vec::new());
    first.render_immediate = render.clone();
    world.store.ingest(first).await.unwrap();
    let mut second = request(&world, vec![said("m-3", "c1", Direction::Received)], Vec::new());
    second.render_immediate = render;
    world.store.ingest(second).await.unwrap();

    let got = world.drain_by_webhook().await;
    assert_eq!(got[&skips], ["m-2:true:0", "m-3:false:0"]);
    assert_eq!(got[&takes], ["m-1:true:1", "m-2:false:0", "m-3:false:0"]);

    let chat = world.store.list_chats(&world.workspace, 10, 0).await.unwrap()[0].id;
    let seq = |id: &str, messages: &[chatbundle::store::StoredMessage]| {
        messages.iter().find(|m| m.message_id == id).map(|m| m.seq)
    };
    let messages = world.store.chat_messages(chat, 10, 0).await.unwrap();
    let firsts = world.store.first_messages(chat).await.unwrap();
    assert_eq!((firsts.any, firsts.text), (seq("m-1", &messages), seq("m-2", &messages)));
    assert_eq!(firsts.seen_with(Media::Skip), firsts.text);

    // A close hands the plan the same.
    world.store.delete_webhook(&skips).await.unwrap();
    world.store.delete_webhook(&takes).await.unwrap();
    let hourly = world.webhook(Granularity::Hours1, &[Event::Messages]).await;
    let mut late = said("m-4", "c2", Direction::Received);
    late.text = "caption".into();
    late.attachments = vec![Attachment::new(AttachmentKind::Video)];
    world.store.ingest(request(&world, vec![late], Vec::new())).await.unwrap();
    world.clock.advance(Duration::from_secs(3600));
    let boundary = world.now();
    assert_eq!(closing_state(&world.store, &hourly).await.media, Media::Skip);
    // A change of what it takes holds for what is buffered: the next close reads it.
    let patch = WebhookPatch { media: Some(Media::Placeholder), ..WebhookPatch::default() };
    world.store.update_webhook(&hourly, patch).await.unwrap().unwrap();
    let state = closing_state(&world.store, &hourly).await;
    assert_eq!(state.media, Media::Placeholder);
    let plan: PlanDeliveries = Arc::new(move |chat, firsts, messages| {
        let seq = messages[0].seq;
        let payload = json!({"chat": chat.external_id, "any": firsts.any == Some(seq), "text": firsts.text == Some(seq)});
        vec![PlannedDelivery {
            id: DeliveryId::stored(format!("f-{}", chat.external_id)),
            payload: serde_json::to_vec(&payload).unwrap(),
            bundle: Some((boundary, 1)),
        }]
    });
    let step = CloseStep {
        webhook_id: hourly.clone(),
        bundled_before: state.bundled_before,
        boundary,
        chats: 10,
        plan,
        flush: false,
    };
    world.store.close_step(step).await.unwrap();
    let planned = world.drain().await;
    assert_eq!(planned, [json!({"chat": "c2", "any": true, "text": true})], "a caption is words");
}

/// A text message of the JSON API, received from the customer or sent by the business.
fn said(id: &str, chat: &str, direction: Direction) -> NewMessage {
    NewMessage {
        message_id: id.into(),
        direction,
        timestamp: start_time(),
        chat: ChatInfo { external_id: chat.into(), ..ChatInfo::default() },
        sender: Party::default(),
        recipient: Party::default(),
        text: format!("text of {id}"),
        account: None,
        channel: "api".into(),
        attachments: Vec::new(),
        reply_to_button: None,
    }
}

/// A source's report that a chat's session ended.
fn ended(world: &World, chat: &str) -> SessionChange {
    SessionChange {
        workspace_id: world.workspace.clone(),
        source_key: "api".into(),
        chat: ChatInfo { external_id: chat.into(), ..ChatInfo::default() },
        session_id: None,
        status: Some(SessionStatus::Ended),
        assignee_type: None,
        channel: None,
        reported: ReportedSession::default(),
    }
}

/// One request of the JSON API; session events render as "OLD>NEW".
fn request(world: &World, messages: Vec<NewMessage>, sessions: Vec<SessionChange>) -> IngestBatch {
    IngestBatch {
        workspace_id: world.workspace.clone(),
        source_key: "api".into(),
        source_name: "api".into(),
        messages,
        sessions,
        skipped: Vec::new(),
        render_immediate: Arc::new(|_, _, _, _, _, _| Vec::new()),
        render_session: Arc::new(|event| {
            let name = |s: Option<SessionStatus>| s.map_or("-", SessionStatus::as_str);
            format!("{}>{}", name(event.old_status), name(event.status)).into_bytes()
        }),
        reply: None,
        trace_parent: None,
    }
}

/// The chat's history as "FROM>TO cause" steps, checking that each step starts where the one
/// before it ended.
async fn history(world: &World, chat: ChatId) -> Vec<String> {
    let transitions = world.store.session_history(chat).await.unwrap().expect("the chat exists");
    let mut last: Option<String> = None;
    let mut steps = Vec::new();
    for t in transitions {
        assert_eq!(t.from, last, "each transition starts where the one before ended");
        steps.push(format!("{}>{} {}", t.from.as_deref().unwrap_or("-"), t.to, t.cause.as_str()));
        last = Some(t.to);
    }
    steps
}

/// [`chatbundle::store::SessionStore::session_history`]: a first message starts a session, the
/// business's reply puts it in progress, a customer's message after ENDED starts a new one
/// (and a reply in the same request moves that on); duplicates and repeats move nothing; each
/// move is recorded once, chained, and announced to session_status webhooks in order.
pub async fn messages_move_sessions_and_each_move_is_recorded_once(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::SessionStatus]).await;
    let ingest = |messages: Vec<NewMessage>, sessions: Vec<SessionChange>| {
        let batch = request(&world, messages, sessions);
        async { world.store.ingest(batch).await.unwrap() }
    };
    ingest(vec![said("m1", "c1", Direction::Received)], vec![]).await;
    let id = world.store.list_chats(&world.workspace, 10, 0).await.unwrap()[0].id;
    ingest(vec![said("m2", "c1", Direction::Sent), said("m3", "c1", Direction::Sent)], vec![]).await;
    ingest(vec![said("m1", "c1", Direction::Received)], vec![]).await;
    let ended = ended(&world, "c1");
    ingest(vec![], vec![ended.clone()]).await;
    ingest(vec![], vec![ended]).await;
    // A sent message does not reopen an ended session; the customer's next message does.
    ingest(vec![said("m4", "c1", Direction::Sent)], vec![]).await;
    ingest(vec![said("m5", "c1", Direction::Received), said("m6", "c1", Direction::Sent)], vec![]).await;
    ingest(vec![said("m7", "c1", Direction::Received)], vec![]).await;

    assert_eq!(
        history(&world, id).await,
        [
            "->CREATED message",
            "CREATED>ON_PROGRESS reply",
            "ON_PROGRESS>ENDED reported",
            "ENDED>CREATED message",
            "CREATED>ON_PROGRESS reply",
        ]
    );
    let (_, chat) = world.store.get_chat(id).await.unwrap().unwrap();
    assert_eq!(chat.session_status, Some(SessionStatus::OnProgress));
    // The chat's lane hands its events out one at a time, in order.
    let events = world.drain_text(&webhook).await;
    assert_eq!(
        events,
        ["->CREATED", "CREATED>ON_PROGRESS", "ON_PROGRESS>ENDED", "ENDED>CREATED", "CREATED>ON_PROGRESS"]
    );
    assert_eq!(world.store.session_history(ChatId(id.0 + 1000)).await.unwrap(), None, "no such chat");
}

/// Customers writing to an ended chat at once (one request each, as from several daemons)
/// start one new session; the business answering at once moves it on once; the history stays
/// one chain.
pub async fn racing_messages_move_a_session_once(factory: &dyn Factory) {
    let world = Arc::new(World::new(factory).await);
    world
        .store
        .ingest(request(&world, vec![said("first", "c1", Direction::Received)], vec![]))
        .await
        .unwrap();
    let id = world.store.list_chats(&world.workspace, 10, 0).await.unwrap()[0].id;
    let ended = ended(&world, "c1");
    world.store.ingest(request(&world, vec![], vec![ended])).await.unwrap();
    for direction in [Direction::Received, Direction::Sent] {
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let world = world.clone();
                tokio::spawn(async move {
                    let message = said(&format!("{}-{i}", direction.as_str()), "c1", direction);
                    world.store.ingest(request(&world, vec![message], vec![])).await.unwrap();
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
    }
    assert_eq!(
        history(&world, id).await,
        ["->CREATED message", "CREATED>ENDED reported", "ENDED>CREATED message", "CREATED>ON_PROGRESS reply"]
    );
}

/// [`chatbundle::store::ChatStore::message_rank`]: each message's rank is its place in
/// `chat_messages`' order; a position the chat does not hold has none.
pub async fn a_messages_rank_is_its_place_in_the_transcript(factory: &dyn Factory) {
    let world = World::new(factory).await;
    world.ingest(&[("m1", "c1"), ("m2", "c1"), ("x1", "c2")]).await;
    world.clock.advance(Duration::from_secs(1));
    world.ingest(&[("m3", "c1")]).await;
    let chats = world.store.list_chats(&world.workspace, 10, 0).await.unwrap();
    let chat = chats.iter().find(|c| c.external_id == "c1").unwrap().id;
    let other = chats.iter().find(|c| c.external_id == "c2").unwrap().id;
    let listed = world.store.chat_messages(chat, 10, 0).await.unwrap();
    assert_eq!(listed.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), ["m3", "m2", "m1"]);
    for (place, message) in listed.iter().enumerate() {
        assert_eq!(world.store.message_rank(chat, message.seq).await.unwrap(), Some(place as u32));
    }
    let foreign = world.store.chat_messages(other, 1, 0).await.unwrap()[0].seq;
    assert_eq!(world.store.message_rank(chat, foreign).await.unwrap(), None, "another chat's message");
}

/// A customer's answer by button keeps the button's payload id; a channel's edit of a stored
/// message changes its text in place and marks it edited (an older edit arriving late changes
/// nothing), only for that workspace's and source's message; a message is found by its position
/// (media links); an e-mail queued for a workspace is claimed once.
pub async fn an_edit_changes_a_stored_message_in_place_and_a_button_answer_keeps_its_choice(
    factory: &dyn Factory,
) {
    use chatbundle::domain::MessageEdit;
    let world = World::new(factory).await;
    let mut answer = said("b1", "c1", Direction::Received);
    answer.text = "Book a table".into();
    answer.reply_to_button = Some("BOOK_TABLE".into());
    world
        .store
        .ingest(request(&world, vec![answer, said("m1", "c1", Direction::Sent)], vec![]))
        .await
        .unwrap();
    let chat = world.store.list_chats(&world.workspace, 10, 0).await.unwrap()[0].id;
    let stored = |messages: Vec<chatbundle::store::StoredMessage>, id: &str| {
        messages.into_iter().find(|m| m.message_id == id).expect("the message")
    };
    let messages = world.store.chat_messages(chat, 10, 0).await.unwrap();
    assert_eq!(stored(messages.clone(), "b1").reply_to_button.as_deref(), Some("BOOK_TABLE"));
    assert_eq!(stored(messages, "m1").reply_to_button, None);

    let at = start_time() + chrono::Duration::minutes(5);
    let edit = |text: &str, at| MessageEdit { message_id: "m1".into(), text: text.into(), at };
    assert!(world.store.edit_message(&world.workspace, "api", &edit("second words", at)).await.unwrap());
    let since =
        world.store.messages_since(chat, start_time() - chrono::Duration::hours(1), 10).await.unwrap();
    let edited = stored(since, "m1");
    assert_eq!((edited.text.as_str(), edited.edited_at), ("second words", Some(at)));
    // An edit made before the one in place, arriving after it, changes nothing.
    let older = at - chrono::Duration::minutes(1);
    assert!(!world.store.edit_message(&world.workspace, "api", &edit("first words", older)).await.unwrap());
    // Another source's or workspace's message of that id, or none, is not this one.
    assert!(!world.store.edit_message(&world.workspace, "src_other", &edit("x", at)).await.unwrap());
    let other = world.other_workspace("other").await;
    assert!(!world.store.edit_message(&other, "api", &edit("x", at)).await.unwrap());
    let none = MessageEdit { message_id: "nope".into(), text: "x".into(), at };
    assert!(!world.store.edit_message(&world.workspace, "api", &none).await.unwrap());
    let messages = world.store.chat_messages(chat, 10, 0).await.unwrap();
    assert_eq!(stored(messages, "m1").text, "second words");

    // A media link names a message by its position: found with its chat and workspace; a
    // position that holds nothing finds nothing.
    let seq = stored(world.store.chat_messages(chat, 10, 0).await.unwrap(), "b1").seq;
    let (workspace, found_chat, message) = world.store.message_at(seq).await.unwrap().expect("found by seq");
    assert_eq!(
        (workspace, found_chat.id, message.message_id.as_str()),
        (world.workspace.clone(), chat, "b1")
    );
    assert_eq!(found_chat.source_key, "api");
    assert!(world.store.message_at(seq + 1_000_000).await.unwrap().is_none());

    // An e-mail queued for a workspace is claimed once, as it was written.
    let email = chatbundle::store::Email {
        recipient: "mia@acme.example".into(),
        subject: "invited".into(),
        body: "the link".into(),
    };
    world.store.queue_email(&email, &world.workspace).await.unwrap();
    let claimed = world.store.claim_email(Duration::from_secs(60)).await.unwrap().expect("due at once");
    assert_eq!(claimed.email, email);
    assert!(world.store.claim_email(Duration::from_secs(60)).await.unwrap().is_none(), "one claimer");
}

/// A channel that says itself whether a chat can be answered (Chatwoot's `can_reply`) is kept
/// until it says otherwise; a message that says nothing leaves it; the chat's reply follows it.
pub async fn what_a_channel_says_of_replying_is_kept_until_it_says_otherwise(factory: &dyn Factory) {
    use chatbundle::domain::session::ReplyState;
    let world = World::new(factory).await;
    let with = |id: &str, can_reply: Option<bool>| {
        let mut m = said(id, "c1", Direction::Received);
        m.chat.can_reply = can_reply;
        m
    };
    world.store.ingest(request(&world, vec![with("m1", Some(false))], vec![])).await.unwrap();
    let id = world.store.list_chats(&world.workspace, 10, 0).await.unwrap()[0].id;
    let chat = || async { world.store.get_chat(id).await.unwrap().unwrap().1 };
    assert_eq!(chat().await.channel_can_reply, Some(false));
    let reply = ReplyState::of(&chat().await, world.now());
    assert_eq!((reply.can_reply, reply.status), (false, ReplyStatus::SessionExpired));
    world.store.ingest(request(&world, vec![with("m2", None)], vec![])).await.unwrap();
    assert_eq!(chat().await.channel_can_reply, Some(false), "a message that says nothing leaves it");
    world.store.ingest(request(&world, vec![with("m3", Some(true))], vec![])).await.unwrap();
    assert_eq!(chat().await.channel_can_reply, Some(true));
    assert!(ReplyState::of(&chat().await, world.now()).can_reply);
}

/// A workspace's API tokens: found by their hash until revoked (at once, for every reader),
/// listed per workspace, revoked only through their own workspace, their use noted at most once
/// a minute.
pub async fn an_api_token_is_found_by_its_hash_until_it_is_revoked(factory: &dyn Factory) {
    use chatbundle::domain::{Name, Role};
    use chatbundle::store::NewApiToken;
    let world = World::new(factory).await;
    let other = world.other_workspace("other").await;
    let new = |workspace: &WorkspaceId, name: &str, hash: &str| NewApiToken {
        workspace_id: workspace.clone(),
        name: Name::parse(name).unwrap(),
        role: Role::Viewer,
        token_hash: hash.into(),
        created_by: "operator".into(),
    };
    let zap = world.store.create_api_token(new(&world.workspace, "Zapier", "hash-1")).await.unwrap();
    world.store.create_api_token(new(&other, "CRM", "hash-2")).await.unwrap();
    assert!(
        world.store.create_api_token(new(&world.workspace, "Again", "hash-1")).await.is_err(),
        "hashes are unique"
    );
    let found = world.store.api_token_by_hash("hash-1").await.unwrap().expect("found by its hash");
    assert_eq!((found.id.clone(), found.role, found.last_used_at), (zap.id.clone(), Role::Viewer, None));
    let listed = world.store.list_api_tokens(&world.workspace).await.unwrap();
    assert_eq!(listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Zapier"]);

    let used = world.now();
    world.store.note_api_token_use(&zap.id, used).await.unwrap();
    world.store.note_api_token_use(&zap.id, used + chrono::Duration::seconds(30)).await.unwrap();
    let seen = world.store.api_token_by_hash("hash-1").await.unwrap().unwrap().last_used_at;
    assert_eq!(seen, Some(used), "within the minute, the first use stands");
    world.store.note_api_token_use(&zap.id, used + chrono::Duration::seconds(61)).await.unwrap();
    let seen = world.store.api_token_by_hash("hash-1").await.unwrap().unwrap().last_used_at;
    assert_eq!(seen, Some(used + chrono::Duration::seconds(61)));

    assert!(!world.store.revoke_api_token(&other, &zap.id).await.unwrap(), "not through another workspace");
    assert!(world.store.revoke_api_token(&world.workspace, &zap.id).await.unwrap());
    assert_eq!(world.store.api_token_by_hash("hash-1").await.unwrap(), None, "refused from the commit on");
    assert!(world.store.api_token_by_hash("hash-2").await.unwrap().is_some(), "the other stays");
}

/// People: an invitation makes the address a member (once per address; inviting again changes
/// the role), is spent once and never after it expires; a removed member's memberships lose the
/// workspace at once; addresses are found in any case.
pub async fn an_invitation_is_spent_once_and_a_removed_member_is_out_at_once(factory: &dyn Factory) {
    use chatbundle::domain::Role;
    use chatbundle::store::NewInvitation;
    let world = World::new(factory).await;
    let other = world.other_workspace("other").await;
    let invite = |workspace: &WorkspaceId, role, hash: &str, days: i64| NewInvitation {
        workspace_id: workspace.clone(),
        email: "Mia@Acme.example".parse().unwrap(),
        role,
        token_hash: hash.into(),
        expires_at: world.now() + chrono::Duration::days(days),
    };
    let mia = world.store.invite_member(invite(&world.workspace, Role::Viewer, "h1", 7)).await.unwrap();
    assert_eq!(
        (mia.user.email.as_str(), mia.role, mia.user.password_hash.clone()),
        ("mia@acme.example", Role::Viewer, None)
    );
    let again = world.store.invite_member(invite(&world.workspace, Role::Admin, "h2", 7)).await.unwrap();
    assert_eq!(
        (again.user.id.clone(), again.role),
        (mia.user.id.clone(), Role::Admin),
        "the same person, a new role"
    );
    world.store.invite_member(invite(&other, Role::Viewer, "h3", -1)).await.unwrap();
    assert_eq!(world.store.list_members(&world.workspace).await.unwrap().len(), 1);

    let now = world.now();
    assert_eq!(
        world.store.open_invitation("h1", now).await.unwrap(),
        Some(("mia@acme.example".to_string(), world.workspace.clone()))
    );
    let (user, workspace) =
        world.store.accept_invitation("h1", "$argon2id$x", now).await.unwrap().expect("spent");
    assert_eq!((user.password_hash.as_deref(), workspace), (Some("$argon2id$x"), world.workspace.clone()));
    assert_eq!(world.store.accept_invitation("h1", "$argon2id$y", now).await.unwrap(), None, "once");
    assert_eq!(world.store.open_invitation("h1", now).await.unwrap(), None);
    assert_eq!(world.store.accept_invitation("h3", "$argon2id$z", now).await.unwrap(), None, "expired");
    let found = world.store.user_by_email("MIA@acme.EXAMPLE").await.unwrap().expect("any case");
    assert_eq!(found.password_hash.as_deref(), Some("$argon2id$x"));

    let mut memberships = world.store.memberships(&user.id).await.unwrap();
    memberships.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(memberships.len(), 2);
    let changed = world.store.set_member_role(&world.workspace, &user.id, Role::Viewer).await.unwrap();
    assert_eq!(changed.map(|m| m.role), Some(Role::Viewer));
    assert!(world.store.remove_member(&world.workspace, &user.id).await.unwrap());
    assert!(!world.store.remove_member(&world.workspace, &user.id).await.unwrap());
    assert_eq!(
        world.store.memberships(&user.id).await.unwrap(),
        vec![(other.clone(), Role::Viewer)],
        "out at once"
    );
    assert_eq!(
        world.store.accept_invitation("h2", "$argon2id$w", now).await.unwrap(),
        None,
        "its invitation went with it"
    );

    // A password reset: one good link at a time, spent once, ending the user's sessions.
    let later = now + chrono::Duration::minutes(15);
    assert!(world.store.start_password_reset(&user.id, "r1", now, later).await.unwrap());
    assert!(!world.store.start_password_reset(&user.id, "r2", now, later).await.unwrap(), "one at a time");
    world.store.start_web_session("s1", later, Some(&user.id)).await.unwrap();
    world.store.start_web_session("s0", later, None).await.unwrap();
    assert_eq!(world.store.web_session_alive("s1", now).await.unwrap(), Some(Some(user.id.clone())));
    assert_eq!(
        world.store.open_password_reset("r1", now).await.unwrap().as_deref(),
        Some("mia@acme.example")
    );
    let reset = world.store.reset_password("r1", "$argon2id$new", now).await.unwrap().expect("spent");
    assert_eq!(reset.password_hash.as_deref(), Some("$argon2id$new"));
    assert_eq!(world.store.web_session_alive("s1", now).await.unwrap(), None, "their sessions end");
    assert_eq!(world.store.web_session_alive("s0", now).await.unwrap(), Some(None), "no one else's");
    assert_eq!(world.store.reset_password("r1", "$argon2id$again", now).await.unwrap(), None, "once");
    assert!(world.store.start_password_reset(&user.id, "r3", now, later).await.unwrap());
    assert_eq!(world.store.reset_password("r3", "$argon2id$late", later).await.unwrap(), None, "expired");
}

/// Operators and the ends of a person: a user made an operator (made if new, found in any case),
/// and no longer one; a password link replaced by a newer one; a password changed ends every
/// other session of theirs but the one that asked; invitations spent by another way in; a user
/// deleted is signed out at once, with their memberships.
pub async fn an_operator_is_made_and_unmade_and_a_deleted_user_is_out_at_once(factory: &dyn Factory) {
    use chatbundle::domain::Role;
    use chatbundle::store::NewInvitation;
    let world = World::new(factory).await;
    let now = world.now();
    let ops = world.store.add_operator(&"Ops@Acme.example".parse().unwrap()).await.unwrap();
    assert_eq!(
        (ops.email.as_str(), ops.operator, ops.password_hash.clone()),
        ("ops@acme.example", true, None)
    );
    let invited = world
        .store
        .invite_member(NewInvitation {
            workspace_id: world.workspace.clone(),
            email: "ops@acme.example".parse().unwrap(),
            role: Role::Viewer,
            token_hash: "inv-1".into(),
            expires_at: now + chrono::Duration::days(7),
        })
        .await
        .unwrap();
    assert_eq!(invited.user.id, ops.id, "one person, an operator and a member");
    assert!(invited.user.operator);
    let unmade = world.store.set_operator(&ops.id, false).await.unwrap().expect("found");
    assert!(!unmade.operator);
    let again = world.store.add_operator(&"OPS@acme.example".parse().unwrap()).await.unwrap();
    assert_eq!((again.id.clone(), again.operator), (ops.id.clone(), true));
    assert_eq!(
        world.store.set_operator(&chatbundle::domain::UserId::stored("usr_none"), true).await.unwrap(),
        None
    );
    assert_eq!(world.store.list_users().await.unwrap().len(), 1);

    // The newest password link is the one that works.
    let week = now + chrono::Duration::days(7);
    world.store.replace_password_link(&ops.id, "p1", now, week).await.unwrap();
    world.store.replace_password_link(&ops.id, "p2", now, week).await.unwrap();
    assert_eq!(world.store.open_password_reset("p1", now).await.unwrap(), None, "replaced");
    assert!(world.store.reset_password("p2", "$argon2id$one", now).await.unwrap().is_some());

    // Signing in another way spends what invitations are still open.
    world.store.spend_invitations(&ops.id, now).await.unwrap();
    assert_eq!(world.store.open_invitation("inv-1", now).await.unwrap(), None);

    // A password change keeps the session that asked and ends the others.
    let later = now + chrono::Duration::hours(12);
    for id in ["here", "there"] {
        world.store.start_web_session(id, later, Some(&ops.id)).await.unwrap();
    }
    world.store.start_web_session("token", later, None).await.unwrap();
    world.store.change_password(&ops.id, "$argon2id$two", "here").await.unwrap();
    assert_eq!(
        world.store.user(&ops.id).await.unwrap().unwrap().password_hash.as_deref(),
        Some("$argon2id$two")
    );
    assert_eq!(world.store.web_session_alive("here", now).await.unwrap(), Some(Some(ops.id.clone())));
    assert_eq!(world.store.web_session_alive("there", now).await.unwrap(), None);

    // Deleted: their sessions and memberships go with them; no one else's.
    assert!(world.store.delete_user(&ops.id).await.unwrap());
    assert_eq!(world.store.web_session_alive("here", now).await.unwrap(), None, "signed out at once");
    assert_eq!(world.store.web_session_alive("token", now).await.unwrap(), Some(None));
    assert!(world.store.list_members(&world.workspace).await.unwrap().is_empty());
    assert_eq!(world.store.user_by_email("ops@acme.example").await.unwrap(), None);
    assert!(!world.store.delete_user(&ops.id).await.unwrap());
}

/// Erasing a chat: its messages, its history and every delivery made for it go, pending or being
/// sent (a send already under way records nothing, as a lost lease); other chats are untouched;
/// an activity row names who erased it and how much, with no content; a later message with the
/// same channel id starts a new chat.
pub async fn an_erased_chat_leaves_nothing_to_send_and_a_later_message_starts_anew(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::Messages]).await;
    let ingest = |messages: Vec<NewMessage>| {
        let mut batch = request(&world, messages, vec![]);
        batch.render_immediate = Arc::new(|_, _, _, (message, _), _, _| message.text.clone().into_bytes());
        async { world.store.ingest(batch).await.unwrap() }
    };
    ingest(vec![said("a1", "c1", Direction::Received)]).await;
    let in_flight = claim(&world.store, 1).await;
    assert_eq!(in_flight.len(), 1, "c1's first is being sent");
    ingest(vec![said("b1", "c2", Direction::Received), said("a2", "c1", Direction::Sent)]).await;
    let chats = world.store.list_chats(&world.workspace, 10, 0).await.unwrap();
    let c1 = chats.iter().find(|c| c.external_id == "c1").unwrap().id;
    let c2 = chats.iter().find(|c| c.external_id == "c2").unwrap().id;

    let erased = world.store.erase_chat(c1, "ana@acme.example").await.unwrap().expect("erased");
    assert_eq!(erased.messages, 2);
    assert!(erased.pending_dropped >= 1, "{erased:?}");
    assert!(world.store.get_chat(c1).await.unwrap().is_none());
    assert!(world.store.chat_messages(c1, 10, 0).await.unwrap().is_empty());
    assert_eq!(world.store.erase_chat(c1, "ana@acme.example").await.unwrap(), None, "once");
    // The send under way finds its delivery gone and records nothing; c2's survive.
    assert_eq!(String::from_utf8_lossy(&in_flight[0].payload), "text of a1");
    let recorded = record(&world.store, &in_flight[0], world.now(), AttemptOutcome::Delivered).await;
    assert!(!recorded, "a send of an erased chat records nothing");
    let left = world.drain_text(&webhook).await;
    assert!(left.iter().all(|p| !p.contains("text of a")), "nothing of c1 goes out: {left:?}");
    assert_eq!(world.store.chat_messages(c2, 10, 0).await.unwrap().len(), 1, "c2 untouched");

    let log = world.store.activity(&webhook, None, 50).await.unwrap();
    let row = log.iter().find(|r| r.kind == "chat_erased").expect("the erasure is in the log");
    let text = format!("{row:?}");
    assert!(
        text.contains("ana@acme.example") && !text.contains("text of a") && !text.contains("c1\""),
        "{text}"
    );

    ingest(vec![said("a3", "c1", Direction::Received)]).await;
    let again = world.store.list_chats(&world.workspace, 10, 0).await.unwrap();
    let new_c1 = again.iter().find(|c| c.external_id == "c1").expect("a new chat");
    assert_ne!(new_c1.id, c1);
    assert_eq!(world.store.chat_messages(new_c1.id, 10, 0).await.unwrap().len(), 1);
}

/// A webhook switched off to stop takes nothing meanwhile, and takes again what comes after it is
/// on; paused, what comes waits, and discarding it marks each waiting delivery `discarded` (listed,
/// never claimed) with an activity row naming who.
pub async fn a_stopped_webhook_keeps_nothing_and_a_discarded_backlog_is_never_sent(factory: &dyn Factory) {
    use chatbundle::domain::DeliveryStatus;
    use chatbundle::store::WebhookPatch;
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::Messages, Event::SessionStatus]).await;
    let ingest = |messages: Vec<NewMessage>| {
        let batch = request(&world, messages, vec![]);
        async { world.store.ingest(batch).await.unwrap() }
    };
    let switch =
        |enabled: bool, stop: bool| WebhookPatch { enabled: Some(enabled), stop, ..Default::default() };

    let off = world.store.update_webhook(&webhook, switch(false, true)).await.unwrap().unwrap();
    assert!(off.stopped && !off.enabled);
    ingest(vec![said("s1", "c1", Direction::Received)]).await;
    assert_eq!(world.store.pending_count(&webhook).await.unwrap(), 0, "no message, no session event");
    let on = world.store.update_webhook(&webhook, switch(true, false)).await.unwrap().unwrap();
    assert!(!on.stopped && on.enabled);
    assert!(claim(&world.store, 10).await.is_empty());
    ingest(vec![said("s2", "c1", Direction::Received)]).await;
    assert!(!world.drain_text(&webhook).await.is_empty(), "what comes after it is on");

    let paused = world.store.update_webhook(&webhook, switch(false, false)).await.unwrap().unwrap();
    assert!(!paused.stopped && !paused.enabled);
    ingest(vec![said("p1", "c1", Direction::Received), said("p2", "c2", Direction::Received)]).await;
    let waiting = world.store.pending_count(&webhook).await.unwrap();
    assert!(waiting >= 2, "messages (and c2's session) wait: {waiting}");
    assert_eq!(world.store.discard_pending(&webhook, "token:zap").await.unwrap(), waiting);
    assert_eq!(world.store.pending_count(&webhook).await.unwrap(), 0);
    let listed = world.store.list_deliveries(&webhook, Some(DeliveryStatus::Discarded), 50, 0).await.unwrap();
    assert_eq!(listed.len() as u64, waiting);
    world.store.update_webhook(&webhook, switch(true, false)).await.unwrap();
    assert!(claim(&world.store, 10).await.is_empty(), "a discarded delivery is never sent");
    let log = world.store.activity(&webhook, None, 50).await.unwrap();
    let row = log.iter().find(|r| r.kind == "backlog_discarded").expect("logged");
    assert_eq!(row.actor.as_deref(), Some("token:zap"));
}

/// A workspace's old messages go only when no open window needs them: a webhook that bundles
/// keeps every message it has not bundled yet, one that sends each message at once keeps none;
/// batches are bounded, oldest first, and other workspaces are untouched.
pub async fn old_messages_go_only_when_no_open_window_needs_them(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let immediate = world.webhook(Granularity::None, &[Event::Messages]).await;
    let ingest = |ids: &[&str]| {
        let messages = ids.iter().map(|id| said(id, "c1", Direction::Received)).collect();
        let batch = request(&world, messages, vec![]);
        async { world.store.ingest(batch).await.unwrap() }
    };
    ingest(&["m1", "m2", "m3"]).await;
    world.drain_text(&immediate).await;
    let later = world.now() + chrono::Duration::days(400);
    let chat = world.store.list_chats(&world.workspace, 10, 0).await.unwrap()[0].id;
    assert_eq!(world.store.forget_messages(&world.workspace, later, 2).await.unwrap(), 2, "a batch at most");
    assert_eq!(world.store.forget_messages(&world.workspace, later, 2).await.unwrap(), 1);
    assert!(world.store.chat_messages(chat, 10, 0).await.unwrap().is_empty());

    // A webhook that bundles: what it has not bundled stays, whatever its age.
    world.webhook(Granularity::Hours1, &[Event::Messages]).await;
    ingest(&["m4"]).await;
    assert_eq!(
        world.store.forget_messages(&world.workspace, later, 100).await.unwrap(),
        0,
        "its window is open"
    );
    assert_eq!(world.store.chat_messages(chat, 10, 0).await.unwrap().len(), 1);
    let other = world.other_workspace("other").await;
    assert_eq!(world.store.forget_messages(&other, later, 100).await.unwrap(), 0);
}

/// The operator's glance: per workspace, its webhooks switched off, deliveries waiting and since
/// when, and its sources switched on that nothing reached in a day.
pub async fn the_operators_glance_counts_what_needs_looking_at(factory: &dyn Factory) {
    use chatbundle::domain::SourceKind;
    use chatbundle::store::{NewSource, SourceTraffic, WebhookPatch};
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::Messages]).await;
    world
        .store
        .update_webhook(&webhook, WebhookPatch { enabled: Some(false), ..Default::default() })
        .await
        .unwrap();
    let batch = request(&world, vec![said("m1", "c1", Direction::Received)], vec![]);
    world.store.ingest(batch).await.unwrap();
    let source = |name: &str| NewSource {
        workspace_id: world.workspace.clone(),
        kind: SourceKind::ZohoDesk,
        name: chatbundle::domain::Name::parse(name).unwrap(),
        account: Account::default(),
        credentials: json!({}),
        enabled: true,
    };
    let heard = world.store.create_source(source("Heard")).await.unwrap();
    world.store.create_source(source("Silent")).await.unwrap();
    let now = world.now();
    let seen = SourceTraffic {
        source: heard.id.clone(),
        buckets: vec![(SourceTraffic::bucket_of(now), 1)],
        last_request_at: now,
        last_refusal: None,
    };
    world.store.note_traffic(vec![seen]).await.unwrap();
    let other = world.other_workspace("quiet").await;

    let glance = world.store.workspaces_health(now).await.unwrap();
    let mine = glance.iter().find(|h| h.id == world.workspace).expect("listed");
    assert_eq!((mine.webhooks_off, mine.waiting, mine.silent_sources), (1, 1, 1));
    assert!(mine.oldest_waiting_since.is_some());
    let quiet = glance.iter().find(|h| h.id == other).expect("listed");
    assert_eq!(
        (quiet.webhooks_off, quiet.waiting, quiet.oldest_waiting_since, quiet.silent_sources),
        (0, 0, None, 0)
    );
}

/// A chat's transcript token is issued when the chat is first seen; a rotation makes a new one,
/// the old one finds nothing, and the new one's lifetime starts then.
pub async fn a_rotated_transcript_token_starts_its_lifetime_afresh(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let batch = request(&world, vec![said("m1", "c1", Direction::Received)], vec![]);
    world.store.ingest(batch).await.unwrap();
    let id = world.store.list_chats(&world.workspace, 10, 0).await.unwrap()[0].id;
    let (_, first) = world.store.get_chat(id).await.unwrap().unwrap();
    assert_eq!(first.token_issued_at, first.first_seen_at);
    world.clock.advance(std::time::Duration::from_secs(3600));
    let token = world.store.rotate_chat_token(id).await.unwrap().expect("rotated");
    assert!(world.store.chat_by_token(&first.token).await.unwrap().is_none(), "the old one finds nothing");
    let (_, now) = world.store.chat_by_token(&token).await.unwrap().expect("the new one finds it");
    assert!(now.token_issued_at > first.token_issued_at, "an hour later: {now:?}");
    assert_ne!(now.token, first.token);
}

/// After a WeChat chat's reply window the business's messages count against the account's
/// allowance; the message that uses it up queues one OUTGOING_LIMIT_REACHED event (later ones
/// none), and the chat keeps the count.
pub async fn the_message_that_uses_up_an_allowance_is_announced_once(factory: &dyn Factory) {
    use chatbundle::domain::AccountType;
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::SessionStatus]).await;
    let wechat = |id: &str, direction: Direction, hours_later: i64| {
        let mut m = said(id, "c1", direction);
        m.channel = "wechat".into();
        m.timestamp =
            start_time() + chrono::Duration::hours(hours_later) + chrono::Duration::seconds(id.len() as i64);
        m.chat.account_type = Some(AccountType::Service);
        m
    };
    let ingest = |messages: Vec<NewMessage>| {
        let mut batch = request(&world, messages, vec![]);
        batch.render_session = Arc::new(|event| event.reply_status.as_str().as_bytes().to_vec());
        async { world.store.ingest(batch).await.unwrap() }
    };
    ingest(vec![wechat("in", Direction::Received, 0)]).await;
    // 49 hours on: three, then two more; the fourth uses the allowance up.
    ingest(vec![
        wechat("s1", Direction::Sent, 49),
        wechat("s22", Direction::Sent, 49),
        wechat("s333", Direction::Sent, 49),
    ])
    .await;
    ingest(vec![wechat("s4444", Direction::Sent, 49), wechat("s55555", Direction::Sent, 49)]).await;
    let replies = world.drain_text(&webhook).await;
    // CREATED, ON_PROGRESS (the first answer), the limit.
    assert_eq!(replies, ["ACCEPTED", "ACCEPTED", "OUTGOING_LIMIT_REACHED"]);
    let id = world.store.list_chats(&world.workspace, 10, 0).await.unwrap()[0].id;
    let (_, chat) = world.store.get_chat(id).await.unwrap().unwrap();
    let later = start_time() + chrono::Duration::hours(49);
    assert_eq!(chat.replies_used, Some((AccountType::Service.period_of(later), 5)));
    assert_eq!(chat.account_type, Some(AccountType::Service));
}

/// What daemons saw at a source's inbound URL adds up: each ten minutes' requests are summed
/// across daemons, the last request and the last refusal only move forward whatever order the
/// daemons tell in, the count of a day leaves out older spans, and a deleted source is skipped.
pub async fn traffic_seen_by_several_daemons_adds_up_and_only_moves_forward(factory: &dyn Factory) {
    use chatbundle::domain::SourceKind;
    use chatbundle::store::{NewSource, SourceRefusal, SourceTraffic};
    let world = World::new(factory).await;
    let source = world
        .store
        .create_source(NewSource {
            workspace_id: world.workspace.clone(),
            kind: SourceKind::ZohoDesk,
            name: chatbundle::domain::Name::parse("Desk").unwrap(),
            account: Account::default(),
            credentials: json!({}),
            enabled: true,
        })
        .await
        .unwrap();
    let now = world.now();
    let at = |minutes: i64| now - chrono::Duration::minutes(minutes);
    let seen = |minutes_ago: &[i64], refusal: Option<(i64, u16)>| SourceTraffic {
        source: source.id.clone(),
        buckets: minutes_ago.iter().map(|m| (SourceTraffic::bucket_of(at(*m)), 1)).collect(),
        last_request_at: at(*minutes_ago.iter().min().unwrap()),
        last_refusal: refusal.map(|(m, status)| SourceRefusal {
            at: at(m),
            status,
            reason: format!("r{status}"),
        }),
    };
    assert_eq!(world.store.source_health(&source.id, now).await.unwrap().requests_24h, 0);
    // One daemon tells late what it saw earlier; another tells what it saw lately.
    world.store.note_traffic(vec![seen(&[1], Some((1, 401)))]).await.unwrap();
    world.store.note_traffic(vec![seen(&[30, 25 * 60], Some((30, 413)))]).await.unwrap();
    world.store.note_traffic(vec![seen(&[1], None)]).await.unwrap();
    let health = world.store.source_health(&source.id, now).await.unwrap();
    assert_eq!(health.requests_24h, 3, "both of the last minute and the half hour's; not 25 hours ago");
    assert_eq!(health.last_request_at, Some(at(1)));
    assert_eq!(
        health.last_refusal.map(|r| (r.status, r.reason)),
        Some((401, "r401".to_string())),
        "the later stays"
    );

    let mut gone = seen(&[1], None);
    gone.source = chatbundle::domain::SourceId::stored("src_gone");
    world.store.note_traffic(vec![gone]).await.unwrap();
    assert!(world.store.delete_source(&source.id).await.unwrap());
    world.store.note_traffic(vec![seen(&[0], None)]).await.unwrap();
    assert_eq!(world.store.source_health(&source.id, now).await.unwrap(), Default::default());
}

/// A source's inbound key finds it until it is rotated; then only the new key does, and the
/// source keeps its id (its chats and messages stay filed under it).
pub async fn a_rotated_inbound_key_finds_nothing_and_the_source_keeps_its_id(factory: &dyn Factory) {
    use chatbundle::domain::{InboundKey, SourceKind};
    use chatbundle::store::NewSource;
    let world = World::new(factory).await;
    let new = |name: &str| NewSource {
        workspace_id: world.workspace.clone(),
        kind: SourceKind::ZohoDesk,
        name: chatbundle::domain::Name::parse(name).unwrap(),
        account: Account::default(),
        credentials: json!({}),
        enabled: true,
    };
    let source = world.store.create_source(new("Desk")).await.unwrap();
    let other = world.store.create_source(new("Other")).await.unwrap();
    assert_ne!(source.inbound_key, other.inbound_key);
    assert_ne!(source.inbound_key.as_str(), source.id.as_str(), "the key is not the id");
    let found = world.store.source_by_inbound_key(&source.inbound_key).await.unwrap().unwrap();
    assert_eq!(found.id, source.id);
    let rotated = world.store.rotate_inbound_key(&source.id).await.unwrap().unwrap();
    assert_eq!(rotated.id, source.id);
    assert_ne!(rotated.inbound_key, source.inbound_key);
    assert_eq!(world.store.source_by_inbound_key(&source.inbound_key).await.unwrap(), None);
    assert_eq!(world.store.source_by_inbound_key(&rotated.inbound_key).await.unwrap().unwrap().id, source.id);
    assert_eq!(world.store.get_source(&source.id).await.unwrap().unwrap().inbound_key, rotated.inbound_key);
    let other_found = world.store.source_by_inbound_key(&other.inbound_key).await.unwrap().unwrap();
    assert_eq!(other_found.id, other.id, "another source's key is untouched");
    assert_eq!(world.store.rotate_inbound_key(&"src_none".parse().unwrap()).await.unwrap(), None);
    let unknown = InboundKey::parse("in_unknown").unwrap();
    assert_eq!(world.store.source_by_inbound_key(&unknown).await.unwrap(), None);
}

/// A signed request's timestamp and nonce may come back with the body they first came with, and
/// with no other, however many arrive at once; another source's are its own; after
/// `REPLAY_MEMORY` they are forgotten.
pub async fn a_signed_request_comes_back_only_with_its_first_body(factory: &dyn Factory) {
    use chatbundle::store::REPLAY_MEMORY;
    let world = World::new(factory).await;
    let (a, b) =
        (chatbundle::domain::SourceId::stored("src_a"), chatbundle::domain::SourceId::stored("src_b"));
    let now = world.now();
    assert!(world.store.admit_signed(&a, "1709294400.n1", [1; 32], now).await.unwrap());
    assert!(world.store.admit_signed(&a, "1709294400.n1", [1; 32], now).await.unwrap(), "a redelivery");
    assert!(!world.store.admit_signed(&a, "1709294400.n1", [2; 32], now).await.unwrap(), "another body");
    assert!(world.store.admit_signed(&b, "1709294400.n1", [2; 32], now).await.unwrap(), "another source");
    // Racing requests with the same signature and different bodies: one body wins.
    let racing = (0..8u8).map(|i| {
        let store = world.store.clone();
        let a = a.clone();
        tokio::spawn(async move { store.admit_signed(&a, "1709294401.n2", [i; 32], now).await.unwrap() })
    });
    let admitted =
        futures::future::join_all(racing).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(admitted, 1, "exactly one body is admitted");
    let later = now + chrono::Duration::from_std(REPLAY_MEMORY).unwrap() + chrono::Duration::seconds(1);
    assert!(world.store.admit_signed(&a, "1709294400.n1", [3; 32], later).await.unwrap(), "forgotten");
}

/// A reply to `chat` (its message `id`, sent), in one request of the JSON API.
fn replying(world: &World, chat: (ChatId, &str), id: &str) -> IngestBatch {
    let mut batch = request(world, vec![said(id, chat.1, Direction::Sent)], Vec::new());
    batch.reply = Some(NewReply {
        chat: chat.0,
        message_id: id.into(),
        body: ReplyBody::Text(format!("text of {id}")),
        idempotency_key: Some(format!("key-{id}")),
        actor: "mia@acme.example".into(),
    });
    batch
}

async fn claim_replies(store: &SharedStore) -> Vec<ClaimedReply> {
    store.claim_replies(Duration::from_secs(90), 10).await.unwrap()
}

/// [`chatbundle::store::ReplyStore`]: a reply is queued with its message and only then (a
/// repeated request queues nothing more); it is claimed by one of several racing daemons, a
/// chat's replies in order; only the current lease holder records; a recorded reply is never
/// claimed again, also after a restart; a lease that ran out (its daemon died) is claimed anew;
/// a retry is due at its time; and the channel's echo of a sent reply is not stored again.
pub async fn a_queued_reply_is_sent_once_across_daemons_and_restarts(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let chats = [("c-1", "hello"), ("c-2", "hi")];
    for (chat, id) in chats {
        world
            .store
            .ingest(request(&world, vec![said(id, chat, Direction::Received)], Vec::new()))
            .await
            .unwrap();
    }
    let listed = world.store.list_chats(&world.workspace, 10, 0).await.unwrap();
    let id_of = |external: &str| listed.iter().find(|c| c.external_id == external).unwrap().id;
    let (c1, c2) = ((id_of("c-1"), "c-1"), (id_of("c-2"), "c-2"));
    for (chat, id) in [(c1, "r-1"), (c1, "r-2"), (c2, "r-3")] {
        let outcome = world.store.ingest(replying(&world, chat, id)).await.unwrap();
        assert_eq!((outcome.accepted, outcome.duplicates), (1, 0));
    }
    // The same request again (an idempotency key's second try): its message is a duplicate, and
    // no second reply is queued.
    let again = world.store.ingest(replying(&world, c1, "r-1")).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1));
    let first = world.store.reply(c1.0, "r-1").await.unwrap().expect("queued with its message");
    assert_eq!((first.status, first.attempts), (OutgoingStatus::Queued, 0));
    assert_eq!(world.store.reply_by_key(c1.0, "key-r-1").await.unwrap().unwrap().message_id, "r-1");

    // Four daemons claim at once: r-1 and r-3 go out, once each; r-2 waits behind r-1.
    let store = world.store.clone();
    let racers: Vec<_> = (0..4).map(|_| tokio::spawn(claim_replies_owned(store.clone()))).collect();
    let mut claimed = Vec::new();
    for racer in racers {
        claimed.extend(racer.await.unwrap());
    }
    let mut ids: Vec<&str> = claimed.iter().map(|c| c.reply.message_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["r-1", "r-3"], "each once, and a chat's replies in order");
    let r1 = claimed.iter().find(|c| c.reply.message_id == "r-1").unwrap().clone();
    let r3 = claimed.iter().find(|c| c.reply.message_id == "r-3").unwrap().clone();
    assert_eq!((r1.reply.attempts, r1.body.clone()), (1, ReplyBody::Text("text of r-1".into())));
    assert!(claim_replies(&world.store).await.is_empty(), "leased, and r-2 behind r-1");

    // r-1 is sent: recorded once, by its lease holder only.
    let sent = ReplyOutcome::Sent { vendor_id: Some("wamid.r1".into()) };
    assert!(!world.store.record_reply("r-1", c1.0, r1.lease_token ^ 1, sent.clone()).await.unwrap());
    assert!(world.store.record_reply("r-1", c1.0, r1.lease_token, sent.clone()).await.unwrap());
    assert!(!world.store.record_reply("r-1", c1.0, r1.lease_token, sent).await.unwrap(), "once");
    let r1_now = world.store.reply(c1.0, "r-1").await.unwrap().unwrap();
    assert_eq!((r1_now.status, r1_now.vendor_id.as_deref()), (OutgoingStatus::Sent, Some("wamid.r1")));

    // The daemon restarts: r-2 is next; r-3's lease still runs, so nobody sends it meanwhile.
    world.store.close().await;
    let store = factory.open(world.clock.clone()).await;
    let world = World { store, clock: world.clock.clone(), workspace: world.workspace.clone() };
    // (A second on: the stores' clocks run a few milliseconds ahead of the case's after many commits.)
    world.clock.advance(Duration::from_secs(1));
    let next = claim_replies(&world.store).await;
    assert_eq!(next.iter().map(|c| c.reply.message_id.as_str()).collect::<Vec<_>>(), ["r-2"]);
    // r-2 fails for now: due again at its retry time, not before.
    let error = VendorError { code: "500".into(), message: "Internal Server Error".into() };
    let retry = ReplyOutcome::RetryAt { at: world.now() + chrono::Duration::seconds(10), error };
    assert!(world.store.record_reply("r-2", c1.0, next[0].lease_token, retry).await.unwrap());
    assert!(claim_replies(&world.store).await.is_empty());
    // r-3's daemon died: once its lease has run out, it is claimed again, under a new token.
    world.clock.advance(Duration::from_secs(90));
    let mut again = claim_replies(&world.store).await;
    again.sort_by(|a, b| a.reply.message_id.cmp(&b.reply.message_id));
    assert_eq!(again.iter().map(|c| c.reply.message_id.as_str()).collect::<Vec<_>>(), ["r-2", "r-3"]);
    assert_eq!(
        (again[0].reply.attempts, again[0].reply.error.as_ref().map(|e| e.code.as_str())),
        (2, Some("500"))
    );
    assert_ne!(again[1].lease_token, r3.lease_token);
    let failed = ReplyOutcome::Failed {
        error: VendorError { code: "131047".into(), message: "Re-engagement message".into() },
    };
    assert!(
        !world.store.record_reply("r-3", c2.0, r3.lease_token, failed.clone()).await.unwrap(),
        "the dead daemon's token"
    );
    assert!(world.store.record_reply("r-3", c2.0, again[1].lease_token, failed).await.unwrap());
    let r3_now = world.store.reply(c2.0, "r-3").await.unwrap().unwrap();
    assert_eq!((r3_now.status, r3_now.error.unwrap().code.as_str()), (OutgoingStatus::Failed, "131047"));

    // The channel's echo of r-1 (its own id, `sent`) is the reply's message again: not stored.
    let echo = world
        .store
        .ingest(request(&world, vec![said("wamid.r1", "c-1", Direction::Sent)], Vec::new()))
        .await
        .unwrap();
    assert_eq!((echo.accepted, echo.duplicates), (0, 1));
    let messages = world.store.chat_messages(c1.0, 10, 0).await.unwrap();
    assert_eq!(messages.len(), 3, "hello, r-1, r-2");
}

async fn claim_replies_owned(store: SharedStore) -> Vec<ClaimedReply> {
    claim_replies(&store).await
}

/// A conversation plan whose bundle names the chat, its messages and why it closed.
fn conversation_plan() -> PlanConversation {
    Arc::new(|_, closed_by, chat, _, messages| {
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        let payload = json!({"chat": chat.external_id, "messages": ids, "closed_by": closed_by.as_str()});
        vec![PlannedDelivery {
            id: DeliveryId::generate(),
            payload: serde_json::to_vec(&payload).unwrap(),
            bundle: Some((start_time(), 1)),
        }]
    })
}

/// Whether `at` is `expected`, give or take the store's clock moving on by a few milliseconds
/// per commit.
fn about(at: Option<DateTime<Utc>>, expected: DateTime<Utc>) -> bool {
    at.is_some_and(|at| at >= expected && at < expected + chrono::Duration::seconds(1))
}

/// Closes what is due in the world's workspace (everything open, with `flush`), as the closer
/// does, a few at a time.
async fn close_conversations(store: &SharedStore, world: &World, webhook: &WebhookId, flush: bool) -> u64 {
    let mut total = 0;
    loop {
        let close = ConversationClose {
            workspace_id: world.workspace.clone(),
            webhooks: vec![webhook.clone()],
            flush,
            limit: 2,
            plan: conversation_plan(),
        };
        let ConversationsClosed { conversations, more, .. } = store.close_conversations(close).await.unwrap();
        total += conversations;
        if !more {
            return total;
        }
    }
}

/// `(chat, messages, closed_by)` of each bundle drained, in order.
async fn conversations_drained(world: &World) -> Vec<(String, Vec<String>, String)> {
    let mut seen: Vec<(String, Vec<String>, String)> = world
        .drain()
        .await
        .into_iter()
        .map(|p| {
            let ids =
                p["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
            (p["chat"].as_str().unwrap().to_string(), ids, p["closed_by"].as_str().unwrap().to_string())
        })
        .collect();
    seen.sort();
    seen
}

/// [`chatbundle::store::ConversationStore`]: a conversation closes at its stored deadline
/// (silence, or its maximum), at once when the channel ends the session, once whoever closes it
/// (racing daemons, a restart), and every message lands in exactly one bundle.
pub async fn conversations_close_once_by_their_stored_deadlines_across_daemons_and_restarts(
    factory: &dyn Factory,
) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::Conversation, &[Event::Messages]).await;
    let minutes = |n: i64| start_time() + chrono::Duration::minutes(n);
    let outcome =
        ingest_outcome(&world.store, &world.workspace, &[("m-1", "c-1"), ("m-2", "c-2")], "api").await;
    assert!(outcome.conversations, "opening a conversation says so");
    assert!(about(world.store.next_conversation_due().await.unwrap(), minutes(30)), "30m of silence");
    world.clock.set(minutes(10));
    let outcome = ingest_outcome(&world.store, &world.workspace, &[("m-3", "c-1")], "api").await;
    assert!(!outcome.conversations, "a message in an open conversation only moves its deadline");
    assert_eq!(world.store.due_conversations(world.now()).await.unwrap(), None);

    // Just after 30m c-2 is due: three closers (two of this daemon, one of another) race, while
    // another chat opens a conversation.
    world.clock.set(minutes(31));
    assert_eq!(world.store.due_conversations(world.now()).await.unwrap(), Some(world.workspace.clone()));
    // Another daemon, where the store is shared.
    let other = if factory.shared() { factory.open(world.clock.clone()).await } else { world.store.clone() };
    let world = Arc::new(world);
    let mut racers = Vec::new();
    for store in [world.store.clone(), world.store.clone(), other.clone()] {
        let (world, webhook) = (world.clone(), webhook.clone());
        racers.push(tokio::spawn(async move { close_conversations(&store, &world, &webhook, false).await }));
    }
    ingest(&world.store, &world.workspace, &[("m-5", "c-5")], "api").await;
    let mut closed = 0;
    for racer in racers {
        closed += racer.await.unwrap();
    }
    assert_eq!(closed, 1, "one close of the one due conversation");
    let first = conversations_drained(&world).await;
    assert_eq!(first, [("c-2".to_string(), vec!["m-2".to_string()], "silence".to_string())]);

    // c-1 falls due at 40m while no daemon runs; the next one closes it, once.
    world.clock.set(minutes(45));
    world.store.close().await;
    other.close().await;
    let restarted = factory.open(world.clock.clone()).await;
    let world = World { store: restarted, clock: world.clock.clone(), workspace: world.workspace.clone() };
    assert_eq!(world.store.due_conversations(world.now()).await.unwrap(), Some(world.workspace.clone()));
    let store = world.store.clone();
    assert_eq!(close_conversations(&store, &world, &webhook, false).await, 1);
    assert_eq!(close_conversations(&store, &world, &webhook, false).await, 0, "nothing twice");
    let second = conversations_drained(&world).await;
    assert_eq!(
        second,
        [("c-1".to_string(), vec!["m-1".to_string(), "m-3".to_string()], "silence".to_string())]
    );

    // The channel ends a session: due at once, closed by it. Messages the chat gets while it
    // closes land in it or in the next conversation, never both.
    ingest(&world.store, &world.workspace, &[("m-4", "c-3")], "api").await;
    let outcome = world.store.ingest(request(&world, Vec::new(), vec![ended(&world, "c-3")])).await.unwrap();
    assert!(outcome.conversations, "ending a session with a conversation open says so");
    assert_eq!(
        world.store.due_conversations(world.now()).await.unwrap(),
        Some(world.workspace.clone()),
        "at once"
    );
    let world = Arc::new(world);
    let closer = {
        let (world, webhook, store) = (world.clone(), webhook.clone(), store.clone());
        tokio::spawn(async move { close_conversations(&store, &world, &webhook, false).await })
    };
    for i in 0..5 {
        ingest(&world.store, &world.workspace, &[(&format!("late-{i}"), "c-3")], "api").await;
    }
    assert_eq!(closer.await.unwrap(), 1);
    let ended_by_session = conversations_drained(&world).await;
    assert_eq!(ended_by_session.len(), 1, "{ended_by_session:?}");
    assert_eq!((ended_by_session[0].0.as_str(), ended_by_session[0].2.as_str()), ("c-3", "session_end"));
    assert!(ended_by_session[0].1.contains(&"m-4".to_string()));
    let late_in_first = ended_by_session[0].1.len() - 1;

    // A chat that never falls quiet closes at its maximum (an hour here), with what it said.
    let patch = WorkspacePatch { conversation_max: Some("1h".parse().unwrap()), ..WorkspacePatch::default() };
    world.store.update_workspace(&world.workspace, patch).await.unwrap();
    for n in 0..4 {
        // 13:00, 13:20, 13:40 and 13:59: the last just inside the hour
        world.clock.set(minutes(60 + 20 * n - n / 3));
        ingest(&world.store, &world.workspace, &[(&format!("talk-{n}"), "c-4")], "api").await;
    }
    world.clock.set(minutes(121));
    close_conversations(&store, &world, &webhook, false).await;
    let mut rest = conversations_drained(&world).await;
    let at_max: Vec<_> = rest.iter().filter(|(chat, _, _)| chat == "c-4").collect();
    assert_eq!(at_max.len(), 1, "{rest:?}");
    assert_eq!((at_max[0].1.len(), at_max[0].2.as_str()), (4, "max"), "an hour after its first");
    assert!(
        rest.iter().any(|(chat, ids, by)| chat == "c-5" && ids == &["m-5".to_string()] && by == "silence")
    );

    // Everything left goes out with a flush; every message was in exactly one bundle.
    ingest(&world.store, &world.workspace, &[("m-6", "c-6")], "api").await;
    assert_eq!(close_conversations(&store, &world, &webhook, true).await, 1);
    let flushed = conversations_drained(&world).await;
    assert_eq!(flushed, [("c-6".to_string(), vec!["m-6".to_string()], "flush".to_string())]);
    rest.extend(flushed);
    let late_in_rest: usize =
        rest.iter().filter(|(chat, _, _)| chat == "c-3").map(|(_, ids, _)| ids.len()).sum();
    assert_eq!(late_in_first + late_in_rest, 5, "each late message once: {ended_by_session:?} {rest:?}");
    assert_eq!(world.store.next_conversation_due().await.unwrap(), None);
}

/// [`chatbundle::store::WebhookStore::update_webhook`]: a webhook that stops bundling by
/// conversation ends its open ones at the change (nothing after it is theirs, nothing before
/// it is its windows'), and a new silence moves open deadlines at once.
pub async fn a_settings_change_ends_open_conversations_at_one_instant(factory: &dyn Factory) {
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::Conversation, &[Event::Messages]).await;
    world.ingest(&[("m-1", "c-1")]).await;
    let silence =
        WebhookPatch { conversation_silence: Some(Some("5m".parse().unwrap())), ..Default::default() };
    world.store.update_webhook(&webhook, silence).await.unwrap();
    let due = world.store.next_conversation_due().await.unwrap();
    assert!(
        about(due, start_time() + chrono::Duration::minutes(5)),
        "the new silence applies to what is open"
    );

    world.clock.advance(Duration::from_secs(60));
    let hourly = WebhookPatch { granularity: Some(Some(Granularity::Hours1)), ..Default::default() };
    world.store.update_webhook(&webhook, hourly).await.unwrap();
    world.ingest(&[("m-2", "c-1")]).await;
    // The ended conversation is due at once; it holds what came before the change alone.
    let store = world.store.clone();
    assert_eq!(close_conversations(&store, &world, &webhook, false).await, 1);
    let ended = conversations_drained(&world).await;
    assert_eq!(ended, [("c-1".to_string(), vec!["m-1".to_string()], "flush".to_string())]);
    // The hour's window holds what came after it alone.
    world.clock.set(start_time() + chrono::Duration::hours(1));
    let boundary = world.now();
    assert!(matches!(close(&world.store, &webhook, boundary, 10, false).await, CloseProgress::Done { .. }));
    let windows = world.drain().await;
    assert_eq!(bundled(&windows), BTreeMap::from([("m-2".to_string(), 1)]));
    assert_eq!(world.store.next_conversation_due().await.unwrap(), None);

    // Into conversations and straight out again, with no closer in between: what the window held
    // goes out once, as the conversation it became; nothing is left behind or sent twice.
    world.ingest(&[("m-3", "c-1")]).await;
    world.clock.advance(Duration::from_secs(60));
    let into = WebhookPatch { granularity: Some(Some(Granularity::Conversation)), ..Default::default() };
    world.store.update_webhook(&webhook, into).await.unwrap();
    world.ingest(&[("m-4", "c-1")]).await;
    let out = WebhookPatch { granularity: Some(Some(Granularity::Hours1)), ..Default::default() };
    world.store.update_webhook(&webhook, out).await.unwrap();
    world.ingest(&[("m-5", "c-1")]).await;
    assert_eq!(close_conversations(&store, &world, &webhook, false).await, 2);
    let became = conversations_drained(&world).await;
    assert_eq!(
        became,
        [
            ("c-1".to_string(), vec!["m-3".to_string()], "flush".to_string()),
            ("c-1".to_string(), vec!["m-4".to_string()], "flush".to_string())
        ]
    );
    world.clock.set(start_time() + chrono::Duration::hours(2));
    let boundary = world.now();
    assert!(matches!(close(&world.store, &webhook, boundary, 10, false).await, CloseProgress::Done { .. }));
    assert_eq!(bundled(&world.drain().await), BTreeMap::from([("m-5".to_string(), 1)]), "only what followed");
}

/// A replay plan whose one delivery per chat names the chat and its messages.
fn replay_plan() -> chatbundle::store::PlanReplay {
    Arc::new(|chat, _, messages| {
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        let payload = json!({"replay": chat.external_id, "messages": ids});
        let counts = chatbundle::store::ReplayCounts {
            chats: 1,
            bundles: 1,
            messages: messages.len() as u64,
            calls: 1,
        };
        (
            vec![PlannedDelivery {
                id: DeliveryId::generate(),
                payload: serde_json::to_vec(&payload).unwrap(),
                bundle: Some((start_time(), 1)),
            }],
            counts,
        )
    })
}

/// [`chatbundle::store::ReplayStore`]: racing steps plan each chat of the range once; a replay's
/// deliveries wait in lanes of their own, claimed only when no live delivery waits, and never
/// ahead of a live one of the same chat; a cancel discards what has not gone out.
pub async fn a_replay_plans_each_chat_once_and_waits_behind_live_lanes(factory: &dyn Factory) {
    use chatbundle::store::{NewReplay, ReplayProgress, ReplayStatus};
    let world = World::new(factory).await;
    let webhook = world.webhook(Granularity::None, &[Event::Messages]).await;
    let history: Vec<(String, String)> = (0..7).map(|i| (format!("h-{i}"), format!("c-{i}"))).collect();
    let refs: Vec<(&str, &str)> = history.iter().map(|(m, c)| (m.as_str(), c.as_str())).collect();
    world.ingest(&refs).await;
    assert_eq!(world.drain_text(&webhook).await.len(), 7, "the live deliveries");
    world.clock.advance(Duration::from_secs(60));
    let asked = NewReplay {
        webhook_id: webhook.clone(),
        chat: None,
        from: start_time() - chrono::Duration::hours(1),
        to: start_time() + chrono::Duration::hours(1),
        actor: "test".into(),
    };
    let replay = world.store.create_replay(asked).await.unwrap().unwrap();
    assert_eq!(replay.status, ReplayStatus::Planning);
    assert!(replay.to <= world.now() + chrono::Duration::milliseconds(10), "the range ends at its making");

    // Three steps race, two chats each: every chat planned once.
    let world = Arc::new(world);
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let (store, id) = (world.store.clone(), replay.id.clone());
            tokio::spawn(async move {
                let mut steps = 0;
                while store.replay_step(&id, 2, replay_plan()).await.unwrap() == ReplayProgress::More {
                    steps += 1;
                }
                steps
            })
        })
        .collect();
    for racer in racers {
        racer.await.unwrap();
    }
    let planned = world.store.get_replay(&replay.id).await.unwrap().unwrap();
    assert_eq!(planned.status, ReplayStatus::Sending);
    assert_eq!((planned.planned.chats, planned.planned.calls, planned.waiting), (7, 7, 7));
    assert_eq!(world.store.replay_step(&replay.id, 2, replay_plan()).await.unwrap(), ReplayProgress::Stopped);

    // A live message arrives: it is claimed first, though the replay's were queued before it.
    world.ingest(&[("live-1", "c-0")]).await;
    let first = claim(&world.store, 1).await;
    assert_eq!(payload_id(&first[0]), "live-1", "live lanes come first");
    record(&world.store, &first[0], world.now(), AttemptOutcome::Delivered).await;
    // Replay calls take at most a quarter of a claim's room (two of eight here), so a live delivery
    // due a moment later finds a slot; the cancel discards the other five, never claimed after.
    let two = claim(&world.store, 8).await;
    assert_eq!(two.len(), 2, "a quarter of the room");
    assert!(two.iter().all(|d| String::from_utf8_lossy(&d.payload).contains("\"replay\"")));
    for d in &two {
        record(&world.store, d, world.now(), AttemptOutcome::Delivered).await;
    }
    let cancelled = world.store.cancel_replay(&replay.id).await.unwrap().unwrap();
    assert_eq!(
        (cancelled.status, cancelled.delivered, cancelled.cancelled, cancelled.waiting),
        (ReplayStatus::Cancelled, 2, 5, 0)
    );
    assert!(claim(&world.store, 10).await.is_empty(), "nothing of it goes out after the cancel");
}

/// The cases above, as tests for one store.
#[macro_export]
macro_rules! conformance {
    ($name:ident, $factory:expr $(, #[$attr:meta])*) => {
        mod $name {
            use super::*;

            macro_rules! case {
                ($case:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    $(#[$attr])*
                    async fn $case() {
                        let factory = $factory;
                        super::$case(&factory).await;
                    }
                };
            }

            case!(messages_committed_while_closing_are_bundled_exactly_once);
            case!(a_window_closed_twice_at_once_makes_one_bundle_per_chat);
            case!(a_close_ahead_of_the_stores_clock_waits);
            case!(a_close_cut_off_resumes_once_after_a_crash);
            case!(a_chats_deliveries_go_out_in_order_one_at_a_time);
            case!(racing_claims_get_each_delivery_once);
            case!(a_delivery_arriving_at_an_empty_lane_is_handed_over_without_a_claim);
            case!(only_the_current_lease_holder_records_a_result);
            case!(the_rate_is_taken_from_the_webhooks_bucket_at_claim_time);
            case!(a_message_sent_many_times_at_once_is_stored_once);
            case!(a_request_larger_than_one_statement_is_stored_whole);
            case!(requests_stored_at_once_each_get_their_own_outcome);
            case!(is_new_chat_is_true_once_per_chat);
            case!(a_delivery_in_flight_is_not_handed_out_again_before_its_lease_ends);
            case!(an_outcome_says_whether_it_queued_deliveries);
            case!(a_delivery_is_claimed_with_the_trace_of_the_request_that_queued_it);
            case!(a_bundle_links_to_the_traces_its_messages_came_in);
            case!(a_lapsed_reply_window_is_announced_once_across_restarts);
            case!(racing_announcers_announce_each_lapse_once);
            case!(racing_mailers_claim_each_email_once);
            case!(results_recorded_at_once_move_a_delivery_once);
            case!(the_log_gives_back_each_request_as_it_was_sent);
            case!(racing_prunes_delete_each_old_row_once);
            case!(a_chat_owner_set_by_hand_stays_until_a_message_names_another);
            case!(an_edit_changes_a_stored_message_in_place_and_a_button_answer_keeps_its_choice);
            case!(what_a_channel_says_of_replying_is_kept_until_it_says_otherwise);
            case!(an_api_token_is_found_by_its_hash_until_it_is_revoked);
            case!(an_invitation_is_spent_once_and_a_removed_member_is_out_at_once);
            case!(an_operator_is_made_and_unmade_and_a_deleted_user_is_out_at_once);
            case!(an_erased_chat_leaves_nothing_to_send_and_a_later_message_starts_anew);
            case!(a_stopped_webhook_keeps_nothing_and_a_discarded_backlog_is_never_sent);
            case!(traffic_seen_by_several_daemons_adds_up_and_only_moves_forward);
            case!(old_messages_go_only_when_no_open_window_needs_them);
            case!(the_operators_glance_counts_what_needs_looking_at);
            case!(a_rotated_transcript_token_starts_its_lifetime_afresh);
            case!(a_session_report_is_announced_once_and_an_assignment_alone_is_news);
            case!(messages_move_sessions_and_each_move_is_recorded_once);
            case!(racing_messages_move_a_session_once);
            case!(a_messages_rank_is_its_place_in_the_transcript);
            case!(the_message_that_uses_up_an_allowance_is_announced_once);
            case!(media_are_kept_whole_and_go_only_to_webhooks_that_take_them);
            case!(a_chat_opened_with_media_is_new_with_the_first_message_each_webhook_sees);
            case!(a_rotated_inbound_key_finds_nothing_and_the_source_keeps_its_id);
            case!(a_signed_request_comes_back_only_with_its_first_body);
            case!(a_queued_reply_is_sent_once_across_daemons_and_restarts);
            case!(conversations_close_once_by_their_stored_deadlines_across_daemons_and_restarts);
            case!(a_settings_change_ends_open_conversations_at_one_instant);
            case!(a_replay_plans_each_chat_once_and_waits_behind_live_lanes);
        }
    };
}

conformance!(sqlite, Sqlite::new());
conformance!(postgres, Postgres::new(), #[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]);
