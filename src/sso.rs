//! Single sign-on with an OpenID Connect provider (`[oidc]`): Google, Microsoft Entra ID, Okta,
//! Keycloak… The sign-in page sends the browser to the provider with the authorization code flow,
//! PKCE (S256), a `state` and a `nonce`; on its way back the code is exchanged at the provider's
//! token endpoint and the ID token's signature (the provider's published keys), issuer, audience,
//! expiry and nonce are checked. What comes out is the e-mail address the provider vouches for
//! (`email_verified`); who that address may be is the web page's business.

use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::OidcConfig;

/// How long the provider's metadata and keys are used before they are fetched again (a provider
/// rotates its signing keys; a key it has just started to use is found at the next fetch).
const METADATA_TTL: Duration = Duration::from_secs(300);

/// How long one request to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest answer read from the provider.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The configured provider.
pub struct Sso {
    /// Its name on the button: "Sign in with {name}".
    pub name: String,
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    http: Http,
    /// The provider's discovered metadata (with its keys), and when it was fetched.
    metadata: Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

/// What the browser keeps between leaving for the provider and coming back (a short-lived
/// cookie): the `state` to compare, the nonce the ID token must carry, the PKCE verifier, and
/// where to land.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    nonce: String,
    verifier: String,
    pub next: String,
}

/// Why a sign-in with the provider did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The provider could not be reached, or answered what is not OpenID Connect.
    #[error("the sign-in provider could not be reached, or answered wrongly: {0}")]
    Provider(String),
    /// What came back does not check out (state, code, signature, nonce, audience, expiry).
    #[error("the sign-in could not be verified: {0}")]
    Unverified(String),
    /// The provider did not vouch for an e-mail address.
    #[error("the provider did not vouch for an e-mail address (none was given, or it is not verified)")]
    NoVerifiedEmail,
}

/// The person the provider vouches for.
#[derive(Debug)]
pub struct Vouched {
    /// Lower-case.
    pub email: String,
}

impl Sso {
    /// The provider of `config`; its callback is `{public_url}/login/sso/callback`.
    pub fn new(config: &OidcConfig, public_url: &str) -> Result<Sso, String> {
        let issuer = IssuerUrl::new(config.issuer.trim_end_matches('/').to_string())
            .map_err(|e| format!("oidc.issuer: {e}"))?;
        let redirect = RedirectUrl::new(format!("{public_url}/login/sso/callback"))
            .map_err(|e| format!("public_url: {e}"))?;
        let http = reqwest::Client::builder()
            .user_agent(crate::deliver::user_agent())
            .no_proxy()
            .timeout(PROVIDER_TIMEOUT)
            // The OpenID Connect client must not follow redirects (a server-side request forgery
            // through the provider's answers).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("oidc: {e}"))?;
        let http = Http(http);
        Ok(Sso {
            name: config.name.clone(),
            issuer,
            client_id: ClientId::new(config.client_id.clone()),
            client_secret: config.client_secret.clone().map(ClientSecret::new),
            redirect,
            http,
            metadata: Mutex::new(None),
        })
    }

    /// The provider's metadata and keys, fetched at most every [`METADATA_TTL`] (or again when
    /// `fresh`).
    async fn metadata(&self, fresh: bool) -> Result<CoreProviderMetadata, SsoError> {
        let mut kept = self.metadata.lock().await;
        if let Some((metadata, at)) = kept.as_ref()
            && !fresh
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| SsoError::Provider(chain(&e)))?;
        *kept = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// Where to send the browser, and what it must keep until it comes back.
    pub async fn start(&self, next: &str) -> Result<(String, Pending), SsoError> {
        let metadata = self.metadata(false).await?;
        let client =
            CoreClient::from_provider_metadata(metadata, self.client_id.clone(), self.client_secret.clone())
                .set_redirect_uri(self.redirect.clone());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        let pending = Pending {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next: next.to_string(),
        };
        Ok((url.to_string(), pending))
    }

    /// Finishes a sign-in whose `state` the caller has matched with `pending`'s: the code is
    /// exchanged (with the PKCE verifier) and the ID token verified. The address it vouches for.
    pub async fn finish(&self, pending: Pending, code: &str) -> Result<Vouched, SsoError> {
        let metadata = self.metadata(false).await?;
        let client =
            CoreClient::from_provider_metadata(metadata, self.client_id.clone(), self.client_secret.clone())
                .set_redirect_uri(self.redirect.clone());
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| SsoError::Provider(chain(&e)))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| SsoError::Unverified(chain(&e)))?;
        let token = answer.id_token().ok_or_else(|| SsoError::Unverified("no ID token came back".into()))?;
        let claims = token
            .claims(&client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|e| SsoError::Unverified(chain(&e)))?;
        let email = claims.email().ok_or(SsoError::NoVerifiedEmail)?;
        // Read only once the token's signature has been checked: the same text, trusted now.
        let domain_verified = claim_of(&token.to_string(), "xms_edov").and_then(|v| v.as_bool());
        if !vouches(claims.email_verified(), domain_verified) {
            return Err(SsoError::NoVerifiedEmail);
        }
        Ok(Vouched { email: email.as_str().trim().to_lowercase() })
    }
}

/// Whether the provider vouches for the address it gave: `email_verified: true`, the standard
/// claim; or, from a provider that sends no `email_verified` (Microsoft Entra ID for work
/// accounts), its `xms_edov: true` (the address's domain is verified as the tenant's own).
fn vouches(email_verified: Option<bool>, domain_verified: Option<bool>) -> bool {
    match email_verified {
        Some(verified) => verified,
        None => domain_verified == Some(true),
    }
}

/// A claim of a JWT's payload (the token's signature checked beforehand).
fn claim_of(jwt: &str, name: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_vouched_for_by_email_verified_or_else_by_a_verified_domain() {
        assert!(vouches(Some(true), None));
        assert!(!vouches(Some(false), Some(true)), "a provider's own no stands");
        assert!(vouches(None, Some(true)), "Entra ID's work accounts: the tenant's verified domain");
        assert!(!vouches(None, Some(false)) && !vouches(None, None));
    }

    #[test]
    fn a_claim_is_read_from_a_tokens_payload() {
        use base64::Engine;
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"xms_edov":true,"sub":"a"}"#);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2lnbmF0dXJl");
        assert_eq!(claim_of(&jwt, "xms_edov"), Some(serde_json::json!(true)));
        assert_eq!(claim_of(&jwt, "email_verified"), None);
        assert_eq!(claim_of("not a token", "sub"), None);
    }
}

/// Our HTTP client, as the OpenID Connect client calls it.
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = ProviderError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, ProviderError>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// One request to the provider, through our HTTP client.
async fn send(
    http: &reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, ProviderError> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| ProviderError(chain(&e)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| ProviderError(chain(&e)))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ProviderError("the provider's answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    let mut answer = openidconnect::HttpResponse::new(body);
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

/// A request to the provider that failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(String);

/// An error with its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
