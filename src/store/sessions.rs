//! Chat sessions: reply windows that lapse, and a chat's session as an event. The vocabulary and
//! the rules are the domain's ([`crate::domain::session`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{RenderSession, StoreResult};
use crate::domain::ChatId;
pub use crate::domain::session::{
    ReplyState, ReplyStatus, ReportedSession, SessionCause, SessionChange, SessionEvent, SessionTransition,
};

/// Sessions, for the closer and test sends.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Queues a `SESSION_EXPIRED` event, for every webhook subscribed to session events, for up
    /// to `limit` chats whose reply window lapsed by `now`; returns how many chats. Each lapse is
    /// announced exactly once, however often this is called and across restarts; a later
    /// customer message opens a new window, whose lapse is announced in its turn.
    async fn announce_expiries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        render: RenderSession,
    ) -> StoreResult<u64>;
    /// When the next reply window lapses, if one is waiting to be announced.
    async fn next_expiry(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// The session event a `session_status` webhook would get for a chat now, if it exists.
    async fn session_snapshot(&self, chat: ChatId, now: DateTime<Utc>) -> StoreResult<Option<SessionEvent>>;
    /// The chat's session history, oldest first; `None` when there is no such chat.
    ///
    /// - **Every move, once**: each status the chat's session took is one transition, recorded
    ///   in the commit that moved it (the first message, a customer's message after ENDED, the
    ///   business's reply to an open session, a source's report); a report that repeats the
    ///   status, an assignment alone and a lapsed reply window are events but no transition.
    /// - **Chained**: each transition's `from` is the `to` of the one before it (the first has
    ///   none), also when two daemons record moves of one chat at the same moment.
    async fn session_history(&self, chat: ChatId) -> StoreResult<Option<Vec<SessionTransition>>>;
}
