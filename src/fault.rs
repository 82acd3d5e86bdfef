//! Test-only fault switches. `CHATBUNDLE_FAULTS=writer,delivery` makes those parts of a debug
//! build fail on purpose, so tests of the real binary can show that the daemon notices and exits
//! for its supervisor to restart it. Release builds ignore the variable.

/// A part that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The store's writer thread panics when it is handed an ingest.
    Writer,
    /// The delivery worker panics when it has claimed a delivery.
    Delivery,
    /// The window closer panics when asked to flush.
    Closer,
    /// The HTTP server stops on its own after answering its first request.
    Http,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Writer => "writer",
            Fault::Delivery => "delivery",
            Fault::Closer => "closer",
            Fault::Http => "http",
        }
    }

    /// Whether this fault was switched on for the process.
    pub fn armed(self) -> bool {
        #[cfg(debug_assertions)]
        {
            static ARMED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
            ARMED
                .get_or_init(|| {
                    std::env::var("CHATBUNDLE_FAULTS")
                        .unwrap_or_default()
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .iter()
                .any(|f| f == self.name())
        }
        #[cfg(not(debug_assertions))]
        {
            false
        }
    }

    /// Panics when armed: the failure a test asked for.
    pub fn trip(self) {
        if self.armed() {
            panic!("injected fault: {}", self.name());
        }
    }
}
