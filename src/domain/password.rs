//! Members' passwords: what a new one must be, and argon2id to keep and check it.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;

use super::Invalid;

/// The shortest password taken.
pub const MIN_CHARS: usize = 12;

/// Passwords that lists of leaked ones put at the top (those of twelve characters or more, and
/// the common ones with a digit or a year added): refused however long.
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678910",
    "qwertyuiopas",
    "qwerty123456",
    "password1234",
    "password12345",
    "passwordpassword",
    "111111111111",
    "000000000000",
    "123123123123",
    "abc123abc123",
    "iloveyou1234",
    "qwertyqwerty",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "asdfghjkl123",
    "administrator",
    "welcome12345",
    "letmein12345",
    "changeme1234",
    "sunshine1234",
    "football1234",
    "baseball1234",
    "princess1234",
    "starwars1234",
    "trustno11234",
    "monkey123456",
    "dragon123456",
    "superman1234",
    "chatbundle12",
    "chatbundle123",
    "p@ssw0rd1234",
    "passw0rd1234",
    "qwertyuiop12",
];

/// Whether `password` may be `email`'s: at least [`MIN_CHARS`] characters, not the address (nor
/// its name before the `@`), not a very common password.
pub fn check(password: &str, email: &str) -> Result<(), Invalid> {
    if password.chars().count() < MIN_CHARS {
        return Err(Invalid(format!("must be at least {MIN_CHARS} characters")));
    }
    let lower = password.to_lowercase();
    let email = email.trim().to_lowercase();
    let name = email.split('@').next().unwrap_or_default();
    if lower == email || (!name.is_empty() && lower == name) {
        return Err(Invalid("must not be your e-mail address".into()));
    }
    if COMMON.contains(&lower.as_str()) || lower.chars().all(|c| c == lower.chars().next().unwrap_or(' ')) {
        return Err(Invalid("is one of the most common passwords: choose another".into()));
    }
    Ok(())
}

/// The argon2id hash of `password` (a PHC string with its own random salt), to keep.
pub fn hash(password: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).expect("16 bytes make a salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password")
        .to_string()
}

/// Whether `password` is the one `hash` was made of.
pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_long_not_the_address_and_not_common() {
        assert!(check("correct horse battery", "mia@acme.example").is_ok());
        assert!(check("short pass", "mia@acme.example").unwrap_err().0.contains("12"));
        assert!(check("Mia@Acme.example", "mia@acme.example").is_err());
        assert!(check("password1234", "mia@acme.example").is_err());
        assert!(check("aaaaaaaaaaaaaaaa", "mia@acme.example").is_err());
    }

    #[test]
    fn a_kept_password_checks_only_itself() {
        let kept = hash("correct horse battery");
        assert!(kept.starts_with("$argon2id$"), "{kept}");
        assert!(verify("correct horse battery", &kept));
        assert!(!verify("correct horse batterY", &kept));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(kept, hash("correct horse battery"), "each with its own salt");
    }
}
