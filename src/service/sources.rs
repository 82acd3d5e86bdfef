//! Sources as both front ends show them.

use crate::store::Source;

/// Where a channel sends what it brings for a source: `{public_url}/hooks/{kind}/{inbound_key}`.
pub fn inbound_url(public_url: &str, source: &Source) -> String {
    format!("{public_url}/hooks/{}/{}", source.kind.path(), source.inbound_key.as_str())
}
