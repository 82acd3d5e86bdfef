//! The closer: when a webhook's window ends, turns each chat's buffered messages into a bundle
//! (one delivery per part) in the durable queue.
//!
//! It wakes at the next window boundary by the injected clock, when told (a flush, a granularity
//! change), and every minute from a cron job as a safety net (a clock step, a missed wake-up).
//! One closer runs per process, so closes never race within it; the store refuses a close step
//! whose starting point another process already moved on.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, instrument, warn};

use super::bounds;
use super::bundling::{Shape, bundle_parts};
use crate::clock::SharedClock;
use crate::domain::{ClosedBy, DeliveryId, Granularity, LinkKey, Media, WebhookId, WorkspaceId};
use crate::render;
use crate::render::media::LinkPlan;
use crate::store::{
    BundlingWebhook, CloseProgress, CloseStep, ConversationClose, ConversationStore, PlanConversation,
    PlanDeliveries, PlannedDelivery, ReplayProgress, ReplayStore, SessionStore, SharedStore, SourceStore,
    StoreResult, WindowStore,
};

/// Chats per close transaction: enough to amortise a commit, few enough that memory stays small
/// and ingest is never held up for long.
pub const CHATS_PER_STEP: usize = 1000;

/// Chats a replay plans per transaction, and transactions per round of the closer's loop (a long
/// replay goes on in the next round, so windows and conversations close meanwhile).
const REPLAY_CHATS_PER_STEP: usize = 500;
const REPLAY_STEPS_PER_ROUND: usize = 8;

/// Conversations per close transaction.
pub const CONVERSATIONS_PER_STEP: usize = 1000;

/// How long the closer sleeps when no webhook aggregates.
const IDLE: Duration = Duration::from_secs(3600);

/// Asks the closer for something.
enum Request {
    Flush { workspace_id: WorkspaceId, reply: oneshot::Sender<StoreResult<u64>> },
}

/// The handle handlers hold.
#[derive(Clone)]
pub struct CloserHandle {
    requests: mpsc::Sender<Request>,
    kick: Arc<Notify>,
    conversations: Arc<Notify>,
}

impl CloserHandle {
    /// Releases every open window of a workspace now; returns the deliveries made.
    pub async fn flush(&self, workspace_id: &WorkspaceId) -> StoreResult<u64> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Flush { workspace_id: workspace_id.clone(), reply };
        self.requests.send(request).await.map_err(|_| crate::store::StoreError::Closed)?;
        answer.await.map_err(|_| crate::store::StoreError::Closed)?
    }

    /// Tells the closer that windows may have changed (granularity, time zone).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Tells the closer that a conversation opened or was ended (by ingest): it looks again at
    /// when the next one is due, nothing else.
    pub fn conversations_moved(&self) {
        self.conversations.notify_one();
    }
}

/// The closer task.
pub struct Closer {
    windows: Arc<dyn WindowStore>,
    conversations: Arc<dyn ConversationStore>,
    replays: Arc<dyn ReplayStore>,
    sessions: Arc<dyn SessionStore>,
    sources: Arc<dyn SourceStore>,
    /// How media links are signed.
    links: Option<LinkKey>,
    clock: SharedClock,
    public_url: Arc<str>,
    /// Wakes the delivery worker when new deliveries are queued.
    deliveries_waiting: Arc<Notify>,
    requests: mpsc::Receiver<Request>,
    kick: Arc<Notify>,
    /// Ingest opened or ended a conversation.
    conversations_moved: Arc<Notify>,
}

impl Closer {
    pub fn new(
        store: &SharedStore,
        clock: SharedClock,
        public_url: Arc<str>,
        deliveries_waiting: Arc<Notify>,
    ) -> (Closer, CloserHandle) {
        let (tx, rx) = mpsc::channel(64);
        let kick = Arc::new(Notify::new());
        let conversations_moved = Arc::new(Notify::new());
        let handle =
            CloserHandle { requests: tx, kick: kick.clone(), conversations: conversations_moved.clone() };
        let (windows, sessions) =
            (store.clone() as Arc<dyn WindowStore>, store.clone() as Arc<dyn SessionStore>);
        let sources = store.clone() as Arc<dyn SourceStore>;
        let closer = Closer {
            windows,
            conversations: store.clone() as Arc<dyn ConversationStore>,
            replays: store.clone() as Arc<dyn ReplayStore>,
            sessions,
            sources,
            links: None,
            clock,
            public_url,
            deliveries_waiting,
            requests: rx,
            kick,
            conversations_moved,
        };
        (closer, handle)
    }

    /// Media links for webhooks whose `media` is `link`, signed with `key` (each good for its
    /// workspace's `media_link_ttl`).
    pub fn with_media_links(mut self, key: LinkKey) -> Closer {
        self.links = Some(key);
        self
    }

    /// Closes due windows (first of all those that ended while the daemon was down) and keeps
    /// doing so until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let cron = start_cron(self.kick.clone()).await;
        let mut wake_at = self.clock.now();
        loop {
            let now = self.clock.now();
            if now >= wake_at {
                wake_at = match self.close_due(now).await {
                    Ok(next) => next.unwrap_or(now + IDLE),
                    Err(e) => {
                        error!(error = %e, "closing windows failed; will try again");
                        now + chrono::Duration::seconds(5)
                    }
                };
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                request = self.requests.recv() => match request {
                    Some(Request::Flush { workspace_id, reply }) => {
                        crate::fault::Fault::Closer.trip();
                        let _ = reply.send(self.flush(&workspace_id).await);
                    }
                    None => break,
                },
                _ = self.kick.notified() => {}
                _ = self.conversations_moved.notified() => {
                    // A new conversation's deadline may come before the wake-up planned.
                    match self.conversations.next_conversation_due().await {
                        Ok(Some(due)) => wake_at = wake_at.min(due),
                        Ok(None) => {}
                        Err(e) => warn!(error = %e, "could not read when the next conversation is due"),
                    }
                    continue;
                }
                _ = self.clock.sleep_until(wake_at) => {}
            }
            wake_at = self.clock.now();
        }
        if let Some(mut cron) = cron {
            let _ = cron.shutdown().await;
        }
    }

    /// Closes whatever is due at `now`, and announces lapsed reply windows; returns when to wake.
    async fn close_due(&self, now: DateTime<Utc>) -> StoreResult<Option<DateTime<Utc>>> {
        let mut next: Option<DateTime<Utc>> = self.announce_expiries(now).await?;
        for webhook in self.windows.bundling_webhooks(None).await? {
            let tz = webhook.timezone.tz();
            if let Some(boundary) = webhook.closing_boundary {
                // A close that a stop or crash interrupted: finish it first, as what it was.
                self.close(&webhook, boundary, webhook.closing_flush).await?;
                continue;
            }
            if matches!(webhook.granularity, Granularity::None | Granularity::Conversation) {
                // What was buffered when it stopped aggregating (or started bundling by
                // conversation) goes out now: message by message, or one bundle per chat.
                if webhook.bundled_before < webhook.granularity_changed_at {
                    self.close(&webhook, webhook.granularity_changed_at, false).await?;
                }
                continue;
            }
            let window = bounds::containing(now, webhook.granularity, tz);
            if webhook.granularity_changed_at < window.start && webhook.bundled_before < window.start {
                self.close(&webhook, window.start, false).await?;
            }
            next = Some(next.map_or(window.end, |n| n.min(window.end)));
        }
        // Conversations, by their stored deadlines: a workspace at a time, due first first.
        while let Some(workspace) = self.conversations.due_conversations(now).await? {
            let (closed, _) = self.close_conversations(&workspace, false).await?;
            if closed == 0 {
                // Due by this clock, not yet by the store's: look again shortly.
                warn!(workspace_id = %workspace, "due conversations could not be closed now");
                next = Some(now + chrono::Duration::seconds(1));
                break;
            }
        }
        if let Some(due) = self.conversations.next_conversation_due().await? {
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        if self.plan_replays().await? {
            // More to plan: the next round comes at once.
            next = Some(now);
        }
        Ok(next)
    }

    /// Plans the replays asked for, a few batches of chats each round (one a crash interrupted
    /// goes on here); returns whether some are still planning.
    async fn plan_replays(&self) -> StoreResult<bool> {
        let mut more = false;
        for replay in self.replays.planning_replays().await? {
            let webhooks = self.conversations.closing_webhooks(&replay.workspace_id).await?;
            let Some(webhook) = webhooks.iter().find(|w| w.id == replay.webhook_id) else { continue };
            let plan = super::replay::plan(webhook, self.public_url.clone());
            let mut progress = ReplayProgress::More;
            for _ in 0..REPLAY_STEPS_PER_ROUND {
                progress = self.replays.replay_step(&replay.id, REPLAY_CHATS_PER_STEP, plan.clone()).await?;
                self.deliveries_waiting.notify_one();
                if progress != ReplayProgress::More {
                    break;
                }
            }
            match progress {
                ReplayProgress::More => more = true,
                ReplayProgress::Done => info!(replay_id = %replay.id, "replay planned"),
                ReplayProgress::Stopped => {}
            }
        }
        Ok(more)
    }

    /// Closes a workspace's due conversations (with `flush`, every open one) until none is left;
    /// returns how many closed, and the deliveries they made.
    #[instrument(skip(self))]
    async fn close_conversations(&self, workspace: &WorkspaceId, flush: bool) -> StoreResult<(u64, u64)> {
        let webhooks = self.conversations.closing_webhooks(workspace).await?;
        let plan = self.conversation_plan(&webhooks).await?;
        let (mut conversations, mut deliveries) = (0, 0);
        loop {
            let close = ConversationClose {
                workspace_id: workspace.clone(),
                webhooks: webhooks.iter().map(|w| w.id.clone()).collect(),
                flush,
                limit: CONVERSATIONS_PER_STEP,
                plan: plan.clone(),
            };
            let closed = self.conversations.close_conversations(close).await?;
            conversations += closed.conversations;
            deliveries += closed.deliveries;
            if closed.deliveries > 0 {
                self.deliveries_waiting.notify_one();
            }
            if !closed.more {
                break;
            }
        }
        if conversations > 0 {
            metrics::counter!(crate::telemetry::metric::BUNDLES_CREATED).increment(deliveries);
            info!(workspace_id = %workspace, conversations, deliveries, "conversations closed");
        }
        Ok((conversations, deliveries))
    }

    /// How the conversations of a workspace's webhooks become deliveries.
    async fn conversation_plan(&self, webhooks: &[BundlingWebhook]) -> StoreResult<PlanConversation> {
        let mut plans = std::collections::HashMap::new();
        for webhook in webhooks {
            let links = self.link_plan(webhook).await?;
            plans.insert(webhook.id.clone(), (webhook.clone(), links));
        }
        let public_url = self.public_url.clone();
        Ok(Arc::new(move |webhook_id: &WebhookId, closed_by, chat, firsts, messages| {
            let Some((webhook, links)) = plans.get(webhook_id) else { return Vec::new() };
            let links = links.as_ref().and_then(|plan| plan.for_source(&public_url, &chat.source_key));
            let taken: Vec<_> =
                messages.iter().filter_map(|m| m.seen_with(webhook.media)).map(|m| m.into_owned()).collect();
            let (Some(first), Some(last)) = (taken.first(), taken.last()) else { return Vec::new() };
            let window = bounds::Window { start: first.timestamp, end: last.timestamp };
            let first_message_seq = firsts.seen_with(webhook.media);
            let shape = Shape { window, key_end: window.end, closed_by: Some(closed_by) };
            bundle_parts(webhook, &public_url, chat, first_message_seq, shape, &taken, links)
        }))
    }

    /// Queues SESSION_EXPIRED events for reply windows that lapsed by `now`; returns when the next
    /// one lapses. The schedule is in the database, so a restart announces what lapsed meanwhile.
    async fn announce_expiries(&self, now: DateTime<Utc>) -> StoreResult<Option<DateTime<Utc>>> {
        const BATCH: u32 = 500;
        let public_url = self.public_url.clone();
        let render: crate::store::RenderSession =
            Arc::new(move |event| render::session_event(&public_url, event));
        loop {
            let announced = self.sessions.announce_expiries(now, BATCH, render.clone()).await?;
            if announced > 0 {
                info!(chats = announced, "reply windows lapsed");
                self.deliveries_waiting.notify_one();
            }
            if announced < u64::from(BATCH) {
                break;
            }
        }
        self.sessions.next_expiry().await
    }

    /// Releases every open window of one workspace now.
    #[instrument(skip(self))]
    async fn flush(&self, workspace_id: &WorkspaceId) -> StoreResult<u64> {
        let mut total = 0;
        for webhook in self.windows.bundling_webhooks(Some(workspace_id)).await? {
            let webhook = match webhook.closing_boundary {
                Some(boundary) => {
                    total += self.close(&webhook, boundary, webhook.closing_flush).await?;
                    // Read again: the finished close moved `bundled_before` on.
                    let fresh = self.windows.bundling_webhooks(Some(workspace_id)).await?;
                    match fresh.into_iter().find(|w| w.id == webhook.id) {
                        Some(w) => w,
                        None => continue,
                    }
                }
                None => webhook,
            };
            let (boundary, cut) = match webhook.granularity {
                Granularity::None | Granularity::Conversation => (webhook.granularity_changed_at, false),
                _ => (self.clock.now(), true),
            };
            if webhook.bundled_before < boundary {
                total += self.close(&webhook, boundary, cut).await?;
            }
        }
        // Every open conversation goes out now, `closed_by: flush`.
        total += self.close_conversations(workspace_id, true).await?.1;
        info!(deliveries = total, "flushed");
        Ok(total)
    }

    /// How a webhook's media links are made, when its `media` is `link`.
    async fn link_plan(&self, webhook: &BundlingWebhook) -> StoreResult<Option<Arc<LinkPlan>>> {
        Ok(match (&self.links, webhook.media) {
            (Some(key), Media::Link) => {
                let sources = self.sources.list_sources(&webhook.workspace_id).await?;
                Some(Arc::new(LinkPlan {
                    key: key.clone(),
                    expires: self.clock.now() + webhook.media_link_ttl.duration(),
                    sources: sources
                        .into_iter()
                        .map(|s| (s.id.to_string(), (s.kind, s.credentials)))
                        .collect(),
                }))
            }
            _ => None,
        })
    }

    /// Runs close steps for `[bundled_before, boundary)` until the range is closed: a span of its
    /// own, the root of a trace when traces are exported.
    #[instrument(skip_all, fields(webhook_id = %webhook.id, boundary = %boundary))]
    async fn close(
        &self,
        webhook: &BundlingWebhook,
        boundary: DateTime<Utc>,
        flush: bool,
    ) -> StoreResult<u64> {
        let span = tracing::info_span!(
            target: crate::telemetry::TRACED,
            parent: None,
            "window close",
            workspace.id = %webhook.workspace_id,
            webhook.id = %webhook.id,
            granularity = %webhook.granularity,
            window.end = %boundary,
            flush,
            bundles = tracing::field::Empty,
        );
        let closed = self.close_steps(webhook, boundary, flush).instrument(span.clone()).await;
        if let Ok(bundles) = &closed {
            span.record("bundles", bundles);
        }
        closed
    }

    async fn close_steps(
        &self,
        webhook: &BundlingWebhook,
        boundary: DateTime<Utc>,
        flush: bool,
    ) -> StoreResult<u64> {
        let tz = webhook.timezone.tz();
        let links = self.link_plan(webhook).await?;
        let plan = plan(webhook, tz, boundary, self.public_url.clone(), links);
        let mut total = 0;
        loop {
            let step = CloseStep {
                webhook_id: webhook.id.clone(),
                bundled_before: webhook.bundled_before,
                boundary,
                chats: CHATS_PER_STEP,
                plan: plan.clone(),
                flush,
            };
            let progress = self.windows.close_step(step).await?;
            let made = match progress {
                CloseProgress::More { deliveries } | CloseProgress::Done { deliveries } => deliveries,
                CloseProgress::Superseded | CloseProgress::NotYet => 0,
            };
            total += made;
            if made > 0 {
                self.deliveries_waiting.notify_one();
            }
            match progress {
                CloseProgress::More { .. } => continue,
                CloseProgress::Done { .. } => break,
                CloseProgress::Superseded => {
                    warn!("another close moved this webhook on; skipping");
                    break;
                }
                CloseProgress::NotYet => break,
            }
        }
        if total > 0 {
            if webhook.granularity != Granularity::None {
                metrics::counter!(crate::telemetry::metric::BUNDLES_CREATED).increment(total);
            }
            info!(deliveries = total, "window closed");
        }
        Ok(total)
    }
}

/// How one chat's messages of `[bundled_before, boundary)` become deliveries for `webhook`; a
/// webhook that skips media sees a media message's words alone, and none without words
/// ([`crate::domain::Media::view`]), and its chat as new with the first message with words.
pub fn plan(
    webhook: &BundlingWebhook,
    tz: Tz,
    boundary: DateTime<Utc>,
    public_url: Arc<str>,
    links: Option<Arc<LinkPlan>>,
) -> PlanDeliveries {
    let webhook = webhook.clone();
    Arc::new(move |chat, firsts, messages| {
        let links = links.as_ref().and_then(|plan| plan.for_source(&public_url, &chat.source_key));
        let taken: Vec<_> = messages.iter().filter_map(|m| m.seen_with(webhook.media)).collect();
        let first_message_seq = firsts.seen_with(webhook.media);
        if webhook.granularity == Granularity::None {
            // The webhook stopped aggregating: what it had buffered goes out message by message.
            return taken
                .into_iter()
                .map(|m| PlannedDelivery {
                    id: DeliveryId::generate(),
                    bundle: None,
                    payload: render::single_stored_message(
                        &public_url,
                        &webhook.account,
                        webhook.locale,
                        chat,
                        &m,
                        first_message_seq == Some(m.seq),
                        links.as_ref(),
                    ),
                })
                .collect();
        }
        if webhook.granularity == Granularity::Conversation {
            // Buffered when the webhook started bundling by conversation: one bundle per chat,
            // as a flush would make.
            let (Some(first), Some(last)) = (taken.first(), taken.last()) else { return Vec::new() };
            let window = bounds::Window { start: first.timestamp, end: last.timestamp };
            let shape = Shape { window, key_end: boundary, closed_by: Some(ClosedBy::Flush) };
            let mut list: Vec<_> = taken.into_iter().map(|m| m.into_owned()).collect();
            list.sort_by(|a, b| (a.timestamp, &a.message_id).cmp(&(b.timestamp, &b.message_id)));
            return bundle_parts(&webhook, &public_url, chat, first_message_seq, shape, &list, links);
        }
        // A message belongs to the window open when it was received, or, if the granularity
        // changed while it waited, to the window open at the change.
        let mut groups: Vec<(bounds::Window, Vec<crate::store::StoredMessage>)> = Vec::new();
        for m in taken {
            let effective = m.received_at.max(webhook.granularity_changed_at);
            let natural = bounds::containing(effective, webhook.granularity, tz);
            // A flush cuts a window short, and what follows it in that window starts at the flush.
            let window = bounds::Window {
                start: natural.start.max(webhook.flushed_at),
                end: natural.end.min(boundary),
            };
            match groups.iter_mut().find(|(w, _)| *w == window) {
                Some((_, list)) => list.push(m.into_owned()),
                None => groups.push((window, vec![m.into_owned()])),
            }
        }
        groups.sort_by_key(|(w, _)| *w);
        let mut deliveries = Vec::new();
        for (window, mut list) in groups {
            list.sort_by(|a, b| (a.timestamp, &a.message_id).cmp(&(b.timestamp, &b.message_id)));
            let shape = Shape { window, key_end: window.end, closed_by: None };
            deliveries.extend(bundle_parts(
                &webhook,
                &public_url,
                chat,
                first_message_seq,
                shape,
                &list,
                links,
            ));
        }
        deliveries
    })
}

/// A cron job that pokes the closer every minute; `None` if the scheduler cannot start (the
/// closer then relies on its own wake-ups, which is logged).
async fn start_cron(kick: Arc<Notify>) -> Option<tokio_cron_scheduler::JobScheduler> {
    use tokio_cron_scheduler::{Job, JobScheduler};
    let result: Result<JobScheduler, tokio_cron_scheduler::JobSchedulerError> = async {
        let scheduler = JobScheduler::new().await?;
        let job = Job::new_async("0 * * * * *", move |_, _| {
            let kick = kick.clone();
            Box::pin(async move { kick.notify_one() })
        })?;
        scheduler.add(job).await?;
        scheduler.start().await?;
        Ok(scheduler)
    }
    .await;
    match result {
        Ok(scheduler) => Some(scheduler),
        Err(e) => {
            warn!(error = %e, "the minute sweep could not start; relying on boundary wake-ups alone");
            None
        }
    }
}
