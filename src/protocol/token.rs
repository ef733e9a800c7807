//! Login tokens: lowercase hex of HMAC-SHA256(key = server secret, message = user id).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], user: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(user.as_bytes());
    mac
}

/// The token for `user` under `secret`.
pub fn token(secret: &[u8], user: &str) -> String {
    hex::encode(mac(secret, user).finalize().into_bytes())
}

/// True when `token` is exactly the lowercase hex token for `user` (compared in constant time).
pub fn verify(secret: &[u8], user: &str, token: &str) -> bool {
    if token.len() != 64 || token.bytes().any(|b| b.is_ascii_uppercase()) {
        return false;
    }
    match hex::decode(token) {
        Ok(bytes) => mac(secret, user).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            token(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_only_the_exact_lowercase_token() {
        let t = token(b"s3cret", "alice");
        assert!(verify(b"s3cret", "alice", &t));
        assert!(!verify(b"s3cret", "bob", &t));
        assert!(!verify(b"other", "alice", &t));
        assert!(!verify(b"s3cret", "alice", &t.to_uppercase()));
        assert!(!verify(b"s3cret", "alice", &t[..63]));
        assert!(!verify(b"s3cret", "alice", ""));
        assert!(!verify(b"s3cret", "alice", &"zz".repeat(32)));
    }
}
