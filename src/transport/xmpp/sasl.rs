//! SASL for XMPP logins: PLAIN (RFC 4616) and SCRAM-SHA-1 (RFC 5802), client side, no I/O.
//!
//! The session feeds the server's decoded challenges in and sends what comes out (it does the
//! base64 of the `<auth/>`/`<response/>` payloads). No channel binding (`n,,`): STARTTLS is
//! optional on the loopback test servers, and `-PLUS` variants would tie SCRAM to TLS.
//! Usernames are sent as given (ackstorm's accounts are ASCII `userN`); SASLprep is not applied.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::{Digest, Sha1};
use thiserror::Error;

type HmacSha1 = Hmac<Sha1>;

/// A SASL mechanism this client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SCRAM-SHA-1: the password never crosses the wire; preferred when offered.
    ScramSha1,
    /// PLAIN: the password in the clear (fine on loopback or under TLS).
    Plain,
}

impl Mechanism {
    /// The name in `<mechanism/>` and `<auth mechanism=.../>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Picks from the server's offer: `wanted` if given and offered, else SCRAM-SHA-1, else PLAIN.
    pub fn choose(offered: &[String], wanted: Option<Mechanism>) -> Option<Mechanism> {
        let has = |m: Mechanism| offered.iter().any(|o| o.eq_ignore_ascii_case(m.as_str()));
        match wanted {
            Some(m) => has(m).then_some(m),
            None => [Mechanism::ScramSha1, Mechanism::Plain].into_iter().find(|&m| has(m)),
        }
    }
}

/// Why a SASL exchange failed on the client side.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SaslError {
    /// A server message was not what the mechanism expects.
    #[error("malformed SCRAM server message {message:?}: {reason}")]
    Malformed {
        /// The server's message (decoded).
        message: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server's nonce does not extend ours (a replay or a broken server).
    #[error("SCRAM server nonce does not start with the client nonce")]
    NonceMismatch,
    /// The server could not prove it knows the password.
    #[error("SCRAM server signature does not verify")]
    BadServerSignature,
    /// The server reported an error in its final message (`e=...`).
    #[error("SCRAM server error: {0}")]
    Server(String),
}

/// The PLAIN initial response: `authzid NUL authcid NUL password` (authzid empty).
pub fn plain(user: &str, password: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(user.len() + password.len() + 2);
    out.push(0);
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

/// A fresh client nonce: 18 random bytes as base64 (24 printable characters, no commas).
pub fn random_nonce() -> String {
    use rand::RngExt;
    B64.encode(rand::rng().random::<[u8; 18]>())
}

/// The client side of one SCRAM-SHA-1 exchange.
#[derive(Debug, Clone)]
pub struct Scram {
    password: String,
    client_nonce: String,
    client_first_bare: String,
    /// Set once the client-final message is made; checked against the server-final one.
    server_signature: Option<[u8; 20]>,
}

impl Scram {
    /// An exchange for `user` with the given client nonce (use [`random_nonce`]).
    pub fn new(user: &str, password: &str, client_nonce: &str) -> Scram {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Scram {
            password: password.to_string(),
            client_nonce: client_nonce.to_string(),
            client_first_bare: format!("n={user},r={client_nonce}"),
            server_signature: None,
        }
    }

    /// The client-first message (the `<auth/>` payload).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Takes the server-first message (the first challenge) and returns the client-final one.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, SaslError> {
        let bad = |reason| SaslError::Malformed {
            message: server_first.to_string(),
            reason,
        };
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = Some(B64.decode(v).map_err(|_| bad("salt is not base64"))?),
                Some(("i=", v)) => iterations = Some(v.parse::<u32>().map_err(|_| bad("bad iteration count"))?),
                Some(("m=", _)) => return Err(bad("mandatory extension not supported")),
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| bad("no nonce"))?;
        let salt = salt.ok_or_else(|| bad("no salt"))?;
        let iterations = iterations.filter(|&i| i > 0).ok_or_else(|| bad("no iteration count"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(SaslError::NonceMismatch);
        }
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha1, 20>(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 20] = Sha1::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(client_signature).map(|(k, s)| k ^ s).collect();
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message (the `<success/>` payload, or a last challenge).
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), SaslError> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(SaslError::Server(e.to_string()));
        }
        let v = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or_else(|| SaslError::Malformed {
                message: server_final.to_string(),
                reason: "no verifier",
            })?;
        let v = B64.decode(v).map_err(|_| SaslError::Malformed {
            message: server_final.to_string(),
            reason: "verifier is not base64",
        })?;
        match self.server_signature {
            Some(expected) if v == expected => Ok(()),
            _ => Err(SaslError::BadServerSignature),
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 section 5: user "user", password "pencil".
    const CLIENT_NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
    const SERVER_FIRST: &str = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    const SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

    #[test]
    fn scram_sha1_matches_the_rfc_5802_example() {
        let mut scram = Scram::new("user", "pencil", CLIENT_NONCE);
        assert_eq!(scram.client_first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(scram.client_final(SERVER_FIRST).unwrap(), CLIENT_FINAL);
        scram.verify_server_final(SERVER_FINAL).unwrap();
    }

    #[test]
    fn scram_rejects_a_wrong_server_signature_and_a_foreign_nonce() {
        let mut scram = Scram::new("user", "pencil", CLIENT_NONCE);
        assert_eq!(
            scram.verify_server_final(SERVER_FINAL),
            Err(SaslError::BadServerSignature)
        );
        scram.client_final(SERVER_FIRST).unwrap();
        assert_eq!(
            scram.verify_server_final("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(SaslError::BadServerSignature)
        );
        assert_eq!(
            scram.verify_server_final("e=invalid-proof"),
            Err(SaslError::Server("invalid-proof".into()))
        );
        let mut other = Scram::new("user", "pencil", "abc");
        assert_eq!(other.client_final(SERVER_FIRST), Err(SaslError::NonceMismatch));
        let mut same = Scram::new("user", "pencil", CLIENT_NONCE);
        let echoed = format!("r={CLIENT_NONCE},s=QSXCR+Q6sek8bf92,i=4096");
        assert_eq!(same.client_final(&echoed), Err(SaslError::NonceMismatch));
    }

    #[test]
    fn scram_reports_what_is_missing() {
        let mut scram = Scram::new("user", "pencil", CLIENT_NONCE);
        let err = scram.client_final("r=fyko+d2lbbFgONRv9qkxdawLxyz,i=4096").unwrap_err();
        assert!(matches!(err, SaslError::Malformed { reason: "no salt", .. }), "{err:?}");
        let err = scram
            .client_final("r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXC,i=0")
            .unwrap_err();
        assert!(
            matches!(
                err,
                SaslError::Malformed {
                    reason: "no iteration count",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn scram_escapes_commas_and_equals_in_the_username() {
        let scram = Scram::new("a=b,c", "p", "n");
        assert_eq!(scram.client_first(), "n,,n=a=3Db=2Cc,r=n");
    }

    #[test]
    fn plain_is_nul_separated_and_nonces_differ() {
        assert_eq!(plain("user1", "pw"), b"\0user1\0pw");
        let (a, b) = (random_nonce(), random_nonce());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(!a.contains(','));
    }

    #[test]
    fn mechanism_choice_prefers_scram_and_honours_a_wish() {
        let offered = vec!["PLAIN".to_string(), "SCRAM-SHA-1".to_string()];
        assert_eq!(Mechanism::choose(&offered, None), Some(Mechanism::ScramSha1));
        assert_eq!(
            Mechanism::choose(&offered, Some(Mechanism::Plain)),
            Some(Mechanism::Plain)
        );
        let only_plain = vec!["PLAIN".to_string()];
        assert_eq!(Mechanism::choose(&only_plain, None), Some(Mechanism::Plain));
        assert_eq!(Mechanism::choose(&only_plain, Some(Mechanism::ScramSha1)), None);
        assert_eq!(Mechanism::choose(&[], None), None);
    }
}
