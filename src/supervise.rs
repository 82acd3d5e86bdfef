//! Supervision: no part of the daemon may fail silently. Background parts raise a flag while
//! they run ([`Liveness`]), which `/readyz` and the systemd watchdog read; a part that fails for
//! good reports it ([`Fatal`]), and the daemon then stops and exits non-zero so that systemd
//! (`Restart=on-failure`) starts it afresh.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

/// Where a part reports a failure it cannot recover from; the first report wins.
#[derive(Clone, Default)]
pub struct Fatal {
    inner: Arc<(OnceLock<String>, Notify)>,
}

impl Fatal {
    /// Reports a failure; the daemon stops and exits non-zero with this cause.
    pub fn report(&self, cause: String) {
        tracing::error!(%cause, "a part of the daemon failed; stopping so that it is restarted");
        if self.inner.0.set(cause).is_ok() {
            self.inner.1.notify_waiters();
        }
    }

    /// Resolves with the first reported cause.
    pub async fn wait(&self) -> String {
        loop {
            let notified = self.inner.1.notified();
            if let Some(cause) = self.inner.0.get() {
                return cause.clone();
            }
            notified.await;
        }
    }
}

/// A background part's flag: up while its loop runs, down when it returns or panics.
#[derive(Debug, Default)]
pub struct Liveness(AtomicBool);

impl Liveness {
    pub fn alive(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Runs `task` with the flag up; it comes down however the task ends, panics included.
    pub async fn run<F: std::future::Future<Output = ()>>(&self, task: F) {
        struct Down<'a>(&'a AtomicBool);
        impl Drop for Down<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        self.0.store(true, Ordering::SeqCst);
        let _down = Down(&self.0);
        task.await;
    }
}

/// The background parts `/readyz` reports on.
#[derive(Debug, Default)]
pub struct Workers {
    pub delivery: Liveness,
    pub closer: Liveness,
    pub mailer: Liveness,
}

impl Workers {
    /// The parts that are not running, by name.
    pub fn down(&self) -> Vec<&'static str> {
        [("delivery", &self.delivery), ("closer", &self.closer), ("mailer", &self.mailer)]
            .into_iter()
            .filter(|(_, flag)| !flag.alive())
            .map(|(name, _)| name)
            .collect()
    }
}

/// The text of a panic's payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flag_comes_down_when_its_task_panics() {
        let flag = Arc::new(Liveness::default());
        let running = flag.clone();
        let task = tokio::spawn(async move {
            running
                .run(async {
                    panic!("boom");
                })
                .await
        });
        assert!(task.await.is_err());
        assert!(!flag.alive());
    }

    #[tokio::test]
    async fn the_first_fatal_report_wins() {
        let fatal = Fatal::default();
        let waiting = tokio::spawn({
            let fatal = fatal.clone();
            async move { fatal.wait().await }
        });
        fatal.report("first".into());
        fatal.report("second".into());
        assert_eq!(waiting.await.unwrap(), "first");
    }
}
