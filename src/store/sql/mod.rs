//! The store's SQL, written once for both engines. Each file here is a macro that an engine
//! instantiates with its own types (`crate::store::sqlite` and `crate::store::postgres` each say
//! `sql::sources!(TheirStore, TheirConnection)`): the statements are the same text for both (`$n`
//! placeholders, `TRUE`/`FALSE`, `IS NOT DISTINCT FROM`, which SQLite 3.39 and PostgreSQL both
//! read), and the Rust around them is the same code, compiled once per engine.
//!
//! What an engine provides the shared code, under the same names in both:
//!
//! - `transact(f)`: runs `f` in a write transaction with the transaction's time (ms). On SQLite,
//!   a savepoint inside the writer's group commit and the writer's strictly increasing clock; on
//!   PostgreSQL, a transaction of its own and the database's clock.
//! - `reads()`: the pool read-only statements run on (SQLite's readers, PostgreSQL's pool).
//!
//! What really differs between the engines stays in their folders, named after what it is:
//! SQLite's group-commit writer and its merged ingest and results, PostgreSQL's advisory locks,
//! `SKIP LOCKED` claims and combined transactions.

mod access;
mod chats;
mod conversations;
mod health;
mod ingest;
mod log;
mod people;
mod queue;
mod replays;
mod replies;
mod rows;
mod sessions;
mod settings;
mod sources;
mod windows;

pub(super) use access::access;
pub(super) use chats::chats;
pub(super) use conversations::conversations;
pub(super) use health::health;
pub(super) use ingest::ingest;
pub(super) use log::log;
pub(super) use people::people;
pub(super) use queue::queue;
pub(super) use replays::replays;
pub(super) use replies::replies;
pub(super) use rows::rows;
pub(super) use sessions::sessions;
pub(super) use settings::settings;
pub(super) use sources::sources;
pub(super) use windows::windows;

/// Rows per multi-row statement, on both engines. Each row count is a statement of its own
/// shape, and a connection keeps the shapes it ran prepared (the SQLite writer up to 512 of them),
/// at about 1.6 KiB of SQLite's memory per row of 19 values: a 500-row upsert of chats holds
/// 0.8 MiB prepared, and the shapes of up to 500 rows of each multi-row statement could hold
/// hundreds of MiB. At 64 every shape of every one fits in about 15 MiB. A larger group takes
/// several statements, which bulk ingest did not measurably feel. Far below SQLite's 32,766
/// bound values and PostgreSQL's 65,535.
pub(in crate::store) const ROWS_PER_STATEMENT: usize = 64;

/// `'pending'` as SQL text, for `status = ` it: the queue's partial indexes are declared with
/// this literal, and SQLite uses a partial index only when a query says the same literal (a bound
/// parameter would not do). Tied to [`crate::domain::DeliveryStatus::Pending`] by a test.
macro_rules! pending {
    () => {
        "'pending'"
    };
}
pub(super) use pending;

/// `$start, $start + 1, …`: the placeholders of `count` values, for an `IN (…)` list, numbered
/// (both engines), so it may stand anywhere in the text. For long lists, see [`Placeholders`].
pub(super) fn params(start: usize, count: usize) -> String {
    (start..start + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// How an engine writes the placeholders of a list whose length varies (hundreds or thousands
/// of values: the rows of a multi-row `VALUES`, the chats of a close step).
///
/// PostgreSQL numbers them. SQLite takes numbered ones too, but to SQLite a numbered placeholder
/// is a named one, and binding looks each name up in a list kept in text order: binding the
/// 9,000 values of 500 chats' rows went through that list 9,000 times, and took most of the
/// writer's time. SQLite's anonymous `?` is bound by position instead. sqlx counts a statement's
/// `?` from 1 whatever numbered ones stand beside them, so a statement that uses these uses no
/// other kind: its single values are written with [`Placeholders::one`], and its values are
/// bound in the order they stand in the text.
#[derive(Clone, Copy)]
pub(super) enum Placeholders {
    Numbered,
    Anonymous,
}

impl Placeholders {
    /// The placeholder of value number `n`.
    pub(super) fn one(self, n: usize) -> String {
        self.list(n, 1)
    }

    /// The placeholders of `count` values, the first of them number `start`.
    pub(super) fn list(self, start: usize, count: usize) -> String {
        match self {
            Placeholders::Numbered => params(start, count),
            Placeholders::Anonymous => vec!["?"; count].join(", "),
        }
    }

    /// `(…), (…), …`: the placeholders of `rows` rows of `cols` values, from number 1, for a
    /// multi-row `VALUES`.
    pub(super) fn rows(self, rows: usize, cols: usize) -> String {
        self.rows_from(1, rows, cols)
    }

    /// [`Placeholders::rows`], the first of them number `start`.
    pub(super) fn rows_from(self, start: usize, rows: usize, cols: usize) -> String {
        (0..rows).map(|r| format!("({})", self.list(start + r * cols, cols))).collect::<Vec<_>>().join(", ")
    }
}

/// How an upsert of a chat merges the details a message or a channel's report names into the
/// stored ones: what it names replaces, what it leaves out stays. (Every upsert of chats says
/// `ON CONFLICT … DO UPDATE SET` this, then what is its own.)
pub(super) const CHAT_DETAILS: &str = "full_name = COALESCE(excluded.full_name, chats.full_name),
    phone = COALESCE(excluded.phone, chats.phone),
    responsible_name = COALESCE(excluded.responsible_name, chats.responsible_name),
    responsible_email = COALESCE(excluded.responsible_email, chats.responsible_email),
    responsible_id = COALESCE(excluded.responsible_id, chats.responsible_id),
    channel_can_reply = COALESCE(excluded.channel_can_reply, chats.channel_can_reply)";

/// How a patch sets a business account (`account_full_name`, `account_email`, `account_phone`):
/// all three when `$n` is true (from `$n + 1` to `$n + 3`), none otherwise.
pub(super) fn account_set(n: usize) -> String {
    format!(
        "account_full_name = CASE WHEN ${n} THEN ${} ELSE account_full_name END,
         account_email = CASE WHEN ${n} THEN ${} ELSE account_email END,
         account_phone = CASE WHEN ${n} THEN ${} ELSE account_phone END",
        n + 1,
        n + 2,
        n + 3
    )
}

/// Binds what [`account_set`] reads: whether the patch has an account, and its three fields.
macro_rules! bind_account {
    ($query:expr, $account:expr) => {{
        let account: &Option<crate::domain::Account> = $account;
        $query
            .bind(account.is_some())
            .bind(account.as_ref().and_then(|a| a.full_name.clone()))
            .bind(account.as_ref().and_then(|a| a.email.clone()))
            .bind(account.as_ref().and_then(|a| a.phone.clone()))
    }};
}
pub(super) use bind_account;

/// Which workspace a windowing transaction (`transact_windowing`) is for: one named, or the one
/// a webhook belongs to (found inside the transaction; `None` comes back when there is no such
/// webhook).
#[derive(Debug, Clone)]
pub(super) enum Windowing {
    Workspace(crate::domain::WorkspaceId),
    OfWebhook(crate::domain::WebhookId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(params(3, 2), "$3, $4");
        assert_eq!(Placeholders::Numbered.rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(Placeholders::Anonymous.rows(2, 2), "(?, ?), (?, ?)");
        assert_eq!(Placeholders::Anonymous.list(4, 3), "?, ?, ?");
        assert_eq!(
            (Placeholders::Numbered.one(2), Placeholders::Anonymous.one(2)),
            ("$2".to_string(), "?".to_string())
        );
        assert_eq!(params(1, 0), "");
    }

    #[test]
    fn the_pending_literal_is_the_pending_status() {
        assert_eq!(pending!(), format!("'{}'", crate::domain::DeliveryStatus::Pending.as_str()));
    }
}
