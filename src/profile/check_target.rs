//! The `[target]` table checked into the plan: an external server on any host (a `ws://` or
//! `wss://` URL, its credentials and TLS keys) or the options of the embedded server. Reads the
//! token and CA files it names; never resolves a name or connects.

use std::collections::HashMap;
use std::path::PathBuf;

use super::check::{Checker, server_bounds};
use super::plan::*;
use super::raw::*;
use crate::server::ratelimit::RateLimit;
use crate::server::store::StoreLimits;
use crate::transport::connect::TargetUrl;

/// The target: an external server when `target.url` is given, else the embedded one.
pub(super) fn target(t: &RawTarget, c: &mut Checker) -> Target {
    let server_raw = t.server.clone().unwrap_or_default();
    let xmpp = t.protocol.as_deref() == Some("xmpp");
    match t.protocol.as_deref() {
        None | Some("native" | "xmpp") => {}
        Some(other) => c.fail(
            "target.protocol",
            format!("{other:?} is not one of \"native\", \"xmpp\""),
        ),
    }
    if t.xmpp.is_some() && !xmpp {
        c.fail("target.xmpp", "applies to target.protocol = \"xmpp\" only");
    }
    match &t.url {
        Some(url) => {
            let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            let protocol = if xmpp {
                Protocol::Xmpp(xmpp_options(t, url, c))
            } else {
                if scheme.as_deref() == Some("xmpp") {
                    c.fail("target.url", "an xmpp:// URL needs target.protocol = \"xmpp\"");
                }
                Protocol::Native
            };
            let parsed = if xmpp {
                TargetUrl::parse_xmpp(url)
            } else {
                TargetUrl::parse(url)
            };
            let tls = match parsed {
                Ok(parsed) => parsed.tls,
                Err(reason) => {
                    c.fail("target.url", format!("{url:?}: {reason}"));
                    true
                }
            };
            // TLS keys apply to wss://, and to xmpp:// unless STARTTLS is off.
            let tls = tls
                || matches!(&protocol, Protocol::Xmpp(x) if scheme.as_deref() == Some("xmpp") && x.starttls != StartTls::Never);
            let (ca_file, insecure) = check_tls(c, t, tls);
            if t.server.is_some() || t.embedded.is_some() || t.server_threads.is_some() {
                c.note("target.server and target.embedded are ignored: they configure the embedded server, and target.url names an external one");
            }
            let password = t.xmpp.as_ref().and_then(|x| x.password.clone());
            let auth = match (&t.secret, &t.token_file) {
                _ if xmpp => xmpp_auth(t, password, c),
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
                protocol,
            }
        }
        None => {
            if xmpp {
                c.fail(
                    "target.url",
                    "target.protocol = \"xmpp\" drives an external XMPP server: give its target.url (xmpp://HOST[:PORT] or ws://.../xmpp-websocket)",
                );
            }
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
            let store = StoreLimits::default();
            let server = ServerOptions {
                rate_limit: rate.map(|per_second| RateLimit {
                    per_second,
                    burst: burst.max(1),
                }),
                offline_single: c.server_count(
                    "target.server.offline_single",
                    server_raw.offline_single,
                    store.offline_single,
                    offline.clone(),
                ),
                offline_group: c.server_count(
                    "target.server.offline_group",
                    server_raw.offline_group,
                    store.offline_group,
                    offline,
                ),
                group_max_members: c.server_count(
                    "target.server.group_max_members",
                    server_raw.group_max_members,
                    3000,
                    members,
                ),
                messages: c.server_count(
                    "target.server.messages",
                    server_raw.messages,
                    store.messages,
                    server_bounds::COUNT,
                ),
                message_bytes: c.server_count(
                    "target.server.message_bytes",
                    server_raw.message_bytes,
                    store.message_bytes,
                    server_bounds::STORE_BYTES,
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

/// What the rest of the profile asks of the protocol: XMPP has no reader lists to query, and
/// syncs no conversation ack to a reader's other devices.
pub(super) fn protocol_fit(plan: &Plan, c: &mut Checker) {
    let Target::External {
        protocol: Protocol::Xmpp(_),
        ..
    } = &plan.target
    else {
        return;
    };
    if plan.groups.count > 0 && plan.groups.read_users_share > 0.0 {
        c.fail(
            "groups.read_users_share",
            "XMPP has no list of a group message's readers to query: set it to 0",
        );
    }
    let prefix = &plan.population.user_prefix;
    if prefix.chars().any(|ch| ch.is_ascii_uppercase()) {
        c.fail(
            "population.user_prefix",
            format!("{prefix:?}: XMPP servers lowercase user names, so the prefix must be lowercase"),
        );
    }
    if plan.population.devices_per_user > 1 {
        c.note("XMPP: a conversation ack is not synced to the reader's other devices (channel_sync is not available)");
    }
}

/// The `[target.xmpp]` table: the domain (default: the URL's host), the MUC service
/// (default: `conference.<domain>`) and the STARTTLS policy (default: when offered).
fn xmpp_options(t: &RawTarget, url: &str, c: &mut Checker) -> XmppOptions {
    let raw = t.xmpp.clone().unwrap_or_default();
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', ':', '?', '#']).next().unwrap_or_default())
        .unwrap_or_default();
    let domain = raw.domain.unwrap_or_else(|| host.to_string());
    if domain.is_empty() || domain.contains(['@', '/', ' ']) {
        c.fail("target.xmpp.domain", format!("{domain:?} is not an XMPP domain"));
    }
    let muc_domain = raw.muc_domain.unwrap_or_else(|| format!("conference.{domain}"));
    if muc_domain.is_empty() || muc_domain.contains(['@', '/', ' ']) {
        c.fail(
            "target.xmpp.muc_domain",
            format!("{muc_domain:?} is not an XMPP domain"),
        );
    }
    let starttls = match raw.starttls.as_deref().unwrap_or("if_offered") {
        "never" => StartTls::Never,
        "if_offered" => StartTls::IfOffered,
        "required" => StartTls::Required,
        other => {
            c.fail(
                "target.xmpp.starttls",
                format!("{other:?} is not one of \"never\", \"if_offered\", \"required\""),
            );
            StartTls::IfOffered
        }
    };
    let sasl_plain = match raw.sasl.as_deref() {
        None => None,
        Some("plain") => Some(true),
        Some("scram-sha-1") => Some(false),
        Some(other) => {
            c.fail(
                "target.xmpp.sasl",
                format!("{other:?} is not one of \"scram-sha-1\", \"plain\""),
            );
            None
        }
    };
    XmppOptions {
        domain,
        muc_domain,
        starttls,
        sasl_plain,
        stream_management: raw.stream_management.unwrap_or(true),
    }
}

/// XMPP log-in: one password for all users (`target.xmpp.password`) or one per user
/// (`target.token_file` of `user password` lines).
fn xmpp_auth(t: &RawTarget, password: Option<String>, c: &mut Checker) -> Auth {
    if t.secret.is_some() {
        c.fail(
            "target.secret",
            "XMPP users log in with target.xmpp.password or a target.token_file of `user password` lines",
        );
    }
    match (password, &t.token_file) {
        (Some(p), None) => Auth::Password(p),
        (None, Some(f)) => match read_token_file(f) {
            Ok(passwords) => Auth::Tokens(passwords),
            Err(e) => {
                c.fail("target.token_file", e);
                Auth::Tokens(HashMap::new())
            }
        },
        (Some(_), Some(_)) => {
            c.fail(
                "target.xmpp.password",
                "give either target.xmpp.password or target.token_file, not both",
            );
            Auth::Password(String::new())
        }
        (None, None) => {
            c.fail(
                "target.xmpp.password",
                "an XMPP target needs target.xmpp.password or target.token_file",
            );
            Auth::Password(String::new())
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
