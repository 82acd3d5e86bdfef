//! TLS for every HTTP client the daemon builds (deliveries, the channels' APIs, the OpenID
//! Connect provider, the trace exporter, the command line's calls to the daemon): reqwest is
//! built without a crypto provider of its own, and ring is the one chatbundle uses.

/// Makes ring the process's TLS crypto provider. A client built before it would panic;
/// installing twice is a no-op.
pub fn use_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
