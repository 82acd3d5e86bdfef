//! Standard Webhooks signatures (v1): `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the base64 part of a `whsec_` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A signing secret, decoded and checked.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

impl SigningSecret {
    /// Parses `whsec_<base64>`; the key must be 24 to 64 bytes, as the specification asks.
    pub fn parse(secret: &str) -> Result<Self, String> {
        let encoded = secret.strip_prefix(PREFIX).ok_or_else(|| "must start with \"whsec_\"".to_string())?;
        let key =
            STANDARD.decode(encoded).map_err(|_| "the part after \"whsec_\" must be base64".to_string())?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!("the key must be 24 to 64 bytes (got {})", key.len()));
        }
        Ok(SigningSecret(key))
    }

    /// A fresh random secret in its `whsec_` form.
    pub fn generate() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        format!("{PREFIX}{}", STANDARD.encode(key))
    }

    /// The `webhook-signature` header value for one request.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(msg_id, timestamp, body)))
    }

    /// Checks a `webhook-signature` header (which may list several space-separated signatures).
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|candidate| {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                return false;
            };
            let Ok(signature) = STANDARD.decode(encoded) else {
                return false;
            };
            let mut mac = self.hmac();
            feed(&mut mac, msg_id, timestamp, body);
            mac.verify_slice(&signature).is_ok()
        })
    }

    fn hmac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac = self.hmac();
        feed(&mut mac, msg_id, timestamp, body);
        mac.finalize().into_bytes().to_vec()
    }
}

fn feed(mac: &mut Hmac<Sha256>, msg_id: &str, timestamp: i64, body: &[u8]) {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published vector of the Standard Webhooks specification (test_sign_function).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_published_vector() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(MSG_ID, TIMESTAMP, BODY), SIGNATURE);
        assert!(secret.verify(MSG_ID, TIMESTAMP, BODY, SIGNATURE));
    }

    #[test]
    fn rejects_the_published_bad_signature_and_any_tampering() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let bad = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert!(!secret.verify(MSG_ID, TIMESTAMP, BODY, bad));
        assert!(!secret.verify(MSG_ID, TIMESTAMP + 1, BODY, SIGNATURE));
        assert!(!secret.verify("msg_other", TIMESTAMP, BODY, SIGNATURE));
        assert!(!secret.verify(MSG_ID, TIMESTAMP, br#"{"test": 2432232315}"#, SIGNATURE));
        let other = SigningSecret::parse(&SigningSecret::generate()).unwrap();
        assert!(!other.verify(MSG_ID, TIMESTAMP, BODY, SIGNATURE));
    }

    #[test]
    fn verifies_one_of_several_listed_signatures() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let header = format!("v1,bm9wZQ== {SIGNATURE}");
        assert!(secret.verify(MSG_ID, TIMESTAMP, BODY, &header));
    }

    #[test]
    fn generated_secrets_round_trip() {
        let text = SigningSecret::generate();
        let secret = SigningSecret::parse(&text).unwrap();
        let sig = secret.sign("msg_1", 1, b"{}");
        assert!(secret.verify("msg_1", 1, b"{}", &sig));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert!(SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningSecret::parse("whsec_not base64!").is_err());
        assert!(SigningSecret::parse("whsec_c2hvcnQ=").is_err());
    }
}
