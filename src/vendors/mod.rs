//! The channels' own APIs, reached with a source's credentials: fetching a message's media for a
//! `download_url` link ([`media`]), and sending a reply into a chat ([`reply`]). Their addresses are configuration (`[vendors]`), so an
//! installation can point them at a proxy and the tests at local servers that answer as the
//! vendors' documents say they answer.

pub mod media;
pub mod reply;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::Mutex;

use crate::config::VendorsConfig;
use crate::deliver::guard::{AddressPolicy, GuardedResolver};
use crate::deliver::user_agent;

/// The HTTP client and caches for the vendors' APIs.
pub struct Vendors {
    client: reqwest::Client,
    settings: VendorsConfig,
    /// WeChat access tokens by AppID, with when they stop being good.
    wechat_tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl Vendors {
    pub fn new(settings: VendorsConfig, policy: Arc<AddressPolicy>) -> Vendors {
        Vendors { client: client(policy), settings, wechat_tokens: Mutex::new(HashMap::new()) }
    }

    /// The largest file a media link streams through.
    pub fn max_media_bytes(&self) -> u64 {
        self.settings.media_max_mib.saturating_mul(1024 * 1024)
    }
}

/// How long one request to a vendor may take before its answer starts.
const VENDOR_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many redirects, each checked by the SSRF guard.
const MAX_REDIRECTS: usize = 5;

/// An HTTP client for the vendors' APIs: names resolved through the SSRF guard, redirects followed
/// (Twilio's media answer with one to their storage) only to addresses the guard permits, never a
/// proxy from the environment, our User-Agent. Credentials given for one host are not sent on to
/// another (reqwest drops `Authorization` when a redirect leaves the host).
fn client(policy: Arc<AddressPolicy>) -> reqwest::Client {
    let redirects = policy.clone();
    reqwest::Client::builder()
        .user_agent(user_agent())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            match literal_refusal(&redirects, attempt.url()) {
                Some(refusal) => attempt.error(refusal),
                None => attempt.follow(),
            }
        }))
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .build()
        .expect("the HTTP client builds with static settings")
}

/// Why the guard refuses a URL whose host is an address written out (names are checked by the
/// resolver), or `None`.
fn literal_refusal(policy: &AddressPolicy, url: &Url) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => std::net::IpAddr::V4(ip),
        url::Host::Ipv6(ip) => std::net::IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    policy.refusal(ip)
}
