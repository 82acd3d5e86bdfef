//! The store on its own: promises a caller relies on that no HTTP route shows directly.

use std::sync::Arc;
use std::time::Duration;

use chatbundle::clock::{Clock, ManualClock};
use chatbundle::domain::{Account, DeliveryStatus, Direction, Event, Granularity, Party, WebhookId};
use chatbundle::store::sqlite::SqliteStore;
use chatbundle::store::{
    AttemptOutcome, AttemptRecord, ChatInfo, ClaimedDelivery, Email, FailurePolicy, IngestBatch, NewMessage,
    NewWebhook, NewWorkspace, SharedStore,
};
use chrono::{DateTime, Utc};

use crate::helpers::start_time;

struct Fixture {
    store: SharedStore,
    clock: ManualClock,
    webhook: WebhookId,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store: SharedStore = Arc::new(SqliteStore::open(&url, Arc::new(clock.clone())).await.unwrap());
    let ws = store
        .create_workspace(NewWorkspace {
            name: "Acme".into(),
            owner_email: "owner@acme.example".into(),
            timezone: "UTC".into(),
            granularity: Granularity::None,
            account: Account::default(),
        })
        .await
        .unwrap();
    let webhook = store
        .create_webhook(NewWebhook {
            workspace_id: ws.id.clone(),
            url: "https://hooks.example.com/x".into(),
            granularity: None,
            enabled: true,
            secret: None,
            events: vec![Event::Messages],
            timeout: None,
        })
        .await
        .unwrap();
    let message = NewMessage {
        message_id: "m-1".into(),
        direction: Direction::Received,
        timestamp: start_time(),
        chat: ChatInfo { external_id: "c-1".into(), ..ChatInfo::default() },
        sender: Party::default(),
        recipient: Party::default(),
        text: "hello".into(),
        account: None,
        channel: "api".into(),
    };
    let batch = IngestBatch {
        workspace_id: ws.id.clone(),
        source_key: "api".into(),
        messages: vec![message],
        sessions: Vec::new(),
        skipped: Vec::new(),
        render_immediate: Arc::new(|_, _, _, _| b"{}".to_vec()),
        render_session: Arc::new(|_| b"[]".to_vec()),
    };
    assert_eq!(store.ingest(batch).await.unwrap().accepted, 1);
    Fixture { store, clock, webhook: webhook.id, _dir: dir }
}

fn policy() -> FailurePolicy {
    let email = || Email { recipient: "owner@acme.example".into(), subject: "s".into(), body: "b".into() };
    FailurePolicy {
        disable_after: 10,
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

async fn claim(f: &Fixture, lease: Duration) -> Vec<ClaimedDelivery> {
    let now = f.clock.now();
    let until = now + chrono::Duration::from_std(lease).unwrap();
    f.store.claim_deliveries(now, until, 10, None).await.unwrap()
}

async fn status(f: &Fixture) -> DeliveryStatus {
    f.store.list_deliveries(&f.webhook, None, 10, 0).await.unwrap()[0].status
}

#[tokio::test]
async fn only_the_holder_of_the_current_lease_records_a_result() {
    let f = fixture().await;
    let first = claim(&f, Duration::from_secs(60)).await.remove(0);
    assert!(claim(&f, Duration::from_secs(60)).await.is_empty(), "leased: nobody else gets it");

    // The first claim outlives its lease; a second claim takes the delivery over.
    f.clock.advance(Duration::from_secs(61));
    let second = claim(&f, Duration::from_secs(60)).await.remove(0);
    assert_eq!(second.id, first.id, "the same delivery, the same webhook-id");
    assert_ne!(second.lease_token, first.lease_token);

    // The late result of the first claim changes nothing.
    let late = attempt(&first, f.clock.now(), 200);
    let recorded = f.store.record_attempt(late, AttemptOutcome::Delivered, &policy()).await.unwrap();
    assert!(recorded.stale);
    assert_eq!(status(&f).await, DeliveryStatus::Pending);
    assert_eq!(f.store.list_attempts(&f.webhook, 10).await.unwrap().len(), 1, "but the send is logged");

    // The current holder's result counts; a stale one cannot turn it back into pending.
    let current = attempt(&second, f.clock.now(), 200);
    let recorded = f.store.record_attempt(current, AttemptOutcome::Delivered, &policy()).await.unwrap();
    assert!(!recorded.stale);
    assert_eq!(status(&f).await, DeliveryStatus::Delivered);
    let retry = AttemptOutcome::RetryAt(f.clock.now() + chrono::Duration::seconds(5));
    let recorded =
        f.store.record_attempt(attempt(&first, f.clock.now(), 500), retry, &policy()).await.unwrap();
    assert!(recorded.stale);
    assert_eq!(status(&f).await, DeliveryStatus::Delivered);
    let recorded =
        f.store.record_attempt(attempt(&second, f.clock.now(), 500), retry, &policy()).await.unwrap();
    assert!(recorded.stale, "a result is recorded once per claim");
    assert_eq!(status(&f).await, DeliveryStatus::Delivered);
}

#[tokio::test]
async fn the_rate_is_taken_at_claim_time_from_each_webhooks_bucket() {
    let f = fixture().await;
    let rate = std::num::NonZeroU32::new(1);
    let now = f.clock.now();
    let until = now + chrono::Duration::seconds(60);
    let first = f.store.claim_deliveries(now, until, 10, rate).await.unwrap();
    assert_eq!(first.len(), 1);
    let result = attempt(&first[0], now, 500);
    let retry = AttemptOutcome::RetryAt(now);
    f.store.record_attempt(result, retry, &policy()).await.unwrap();
    // Due again at once, but the bucket is empty until a second has passed.
    assert!(f.store.claim_deliveries(now, until, 10, rate).await.unwrap().is_empty());
    f.clock.advance(Duration::from_millis(999));
    let now = f.clock.now();
    assert!(f.store.claim_deliveries(now, until, 10, rate).await.unwrap().is_empty());
    f.clock.advance(Duration::from_millis(1));
    let now = f.clock.now();
    assert_eq!(f.store.claim_deliveries(now, until, 10, rate).await.unwrap().len(), 1);
}
