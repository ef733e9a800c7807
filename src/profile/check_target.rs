//! The `[target]` table checked into the plan: an external server on any host (a `ws://` or
//! `wss://` URL, its credentials and TLS keys) or the options of the embedded server. Reads the
//! token and CA files it names; never resolves a name or connects.

use std::collections::HashMap;
use std::path::PathBuf;

use super::check::{Checker, server_bounds};
use super::plan::*;
use super::raw::*;
use crate::server::ratelimit::RateLimit;
use crate::transport::connect::TargetUrl;

/// The target: an external server when `target.url` is given, else the embedded one.
pub(super) fn target(t: &RawTarget, c: &mut Checker) -> Target {
    let server_raw = t.server.clone().unwrap_or_default();
    match &t.url {
        Some(url) => {
            let tls = match TargetUrl::parse(url) {
                Ok(parsed) => parsed.tls,
                Err(reason) => {
                    c.fail("target.url", format!("{url:?}: {reason}"));
                    true
                }
            };
            let (ca_file, insecure) = check_tls(c, t, tls);
            if t.server.is_some() || t.embedded.is_some() || t.server_threads.is_some() {
                c.note("target.server and target.embedded are ignored: they configure the embedded server, and target.url names an external one");
            }
            let auth = match (&t.secret, &t.token_file) {
                (Some(s), None) => Auth::Secret(s.clone()),
                (None, Some(f)) => match read_token_file(f) {
                    Ok(tokens) => Auth::Tokens(tokens),
                    Err(e) => {
                        c.fail("target.token_file", e);
                        Auth::Tokens(HashMap::new())
                    }
                },
                (Some(_), Some(_)) => {
                    c.fail(
                        "target.secret",
                        "give either target.secret or target.token_file, not both",
                    );
                    Auth::Secret(String::new())
                }
                (None, None) => {
                    c.fail(
                        "target.secret",
                        "an external target needs target.secret or target.token_file",
                    );
                    Auth::Secret(String::new())
                }
            };
            Target::External {
                url: url.clone(),
                auth,
                ca_file,
                insecure,
            }
        }
        None => {
            if t.secret.is_some() || t.token_file.is_some() {
                c.fail(
                    "target.secret",
                    "the embedded server makes its own secret; secret and token_file need target.url",
                );
            }
            check_tls(c, t, false);
            let mode = match t.embedded.as_deref().unwrap_or("auto") {
                "auto" => EmbeddedMode::Auto,
                "in-process" => EmbeddedMode::InProcess,
                "child-process" => EmbeddedMode::ChildProcess,
                other => {
                    c.fail(
                        "target.embedded",
                        format!("{other:?} is not one of \"auto\", \"in-process\", \"child-process\""),
                    );
                    EmbeddedMode::Auto
                }
            };
            let rate = c.server_rate("target.server.rate_limit", server_raw.rate_limit);
            let burst = server_raw.rate_burst.unwrap_or(200);
            if rate.is_some() && burst == 0 {
                c.fail(
                    "target.server.rate_burst",
                    "must be at least 1 when target.server.rate_limit is on",
                );
            }
            let (members, offline) = (server_bounds::GROUP_MEMBERS, server_bounds::OFFLINE);
            let server = ServerOptions {
                rate_limit: rate.map(|per_second| RateLimit {
                    per_second,
                    burst: burst.max(1),
                }),
                offline_single: c.server_count(
                    "target.server.offline_single",
                    server_raw.offline_single,
                    500,
                    offline.clone(),
                ),
                offline_group: c.server_count("target.server.offline_group", server_raw.offline_group, 200, offline),
                group_max_members: c.server_count(
                    "target.server.group_max_members",
                    server_raw.group_max_members,
                    3000,
                    members,
                ),
                delay_ms: c.server_count(
                    "target.server.delay_ms",
                    server_raw.delay_ms,
                    0,
                    server_bounds::DELAY_MS,
                ),
                throttle: c.server_rate("target.server.throttle", server_raw.throttle),
            };
            let threads = t
                .server_threads
                .map(|n| c.server_count("target.server_threads", Some(n), 1, server_bounds::THREADS));
            Target::Embedded { mode, threads, server }
        }
    }
}

/// `user token` lines (blank lines and `#` comments skipped).
fn read_token_file(path: &str) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let mut tokens = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(user), Some(token), None) => {
                tokens.insert(user.to_string(), token.to_string());
            }
            _ => return Err(format!("{path}:{}: expected `user token`", i + 1)),
        }
    }
    Ok(tokens)
}

/// The TLS keys of `[target]`: `ca_file` (a readable PEM file of certificates) and `insecure`,
/// which only a `wss://` URL uses (`tls`) and which contradict each other.
fn check_tls(c: &mut Checker, t: &RawTarget, tls: bool) -> (Option<PathBuf>, bool) {
    let insecure = t.insecure.unwrap_or(false);
    for (key, given) in [("target.ca_file", t.ca_file.is_some()), ("target.insecure", insecure)] {
        if given && !tls {
            c.fail(key, "applies to a wss:// target.url only");
        }
    }
    let ca_file = t.ca_file.as_ref().map(PathBuf::from);
    if let Some(path) = &ca_file {
        if insecure {
            c.fail(
                "target.insecure",
                "give either target.ca_file (verify with a private CA) or target.insecure (do not verify), not both",
            );
        } else if tls && let Err(e) = crate::transport::tls::read_certs(path) {
            c.fail("target.ca_file", e);
        }
    }
    (ca_file, insecure)
}
