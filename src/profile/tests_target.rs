//! `[target]` of an external server: URLs of any host, credentials, and the TLS keys. Nothing
//! here connects anywhere: profile checking reads files but never resolves or dials.

use super::tests::{MINIMAL, parse_text, problems};
use std::path::{Path, PathBuf};

use super::*;

fn target(keys: &str) -> String {
    format!("{MINIMAL}[target]\n{keys}\n")
}

/// A PEM file holding one (self-signed) certificate, in `dir`.
fn ca_pem(dir: &Path) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, cert.pem()).unwrap();
    path
}

#[test]
fn external_targets_need_credentials() {
    let e = parse_text(&target("url = \"ws://127.0.0.1:1/ws\""), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("target.secret"), "{e}");
    let p = parse_text(&target("url = \"ws://127.0.0.1:1/ws\"\nsecret = \"s\""), &[]).unwrap();
    assert_eq!(
        p.target,
        Target::External {
            url: "ws://127.0.0.1:1/ws".into(),
            auth: Auth::Secret("s".into()),
            ca_file: None,
            insecure: false,
            protocol: Protocol::Native,
        }
    );
}

#[test]
fn any_host_is_a_valid_target_not_only_loopback() {
    for url in [
        "wss://chat.example.com/ws",
        "wss://chat.example.com:8443/im/socket",
        "ws://192.0.2.10:9400/ws",
        "ws://[2001:db8::1]:9400/ws",
    ] {
        let p = parse_text(&target(&format!("url = \"{url}\"\nsecret = \"s\"")), &[])
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(
            matches!(&p.target, Target::External { url: u, .. } if u == url),
            "{url}"
        );
    }
}

#[test]
fn bad_urls_are_errors_naming_the_field_and_the_value() {
    for (url, says) in [
        ("http://127.0.0.1:9400/ws", "must be ws:// or wss://"),
        ("ws:///ws", "no host"),
        ("ws://127.0.0.1:99999/ws", "port \"99999\""),
        ("ws://127.0.0.1:x/ws", "port \"x\""),
    ] {
        let found = problems(&target(&format!("url = \"{url}\"\nsecret = \"s\"")), &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        let (key, message) = &found[0];
        assert_eq!(key, "target.url");
        assert!(
            message.contains(&format!("{url:?}")) && message.contains(says),
            "{message}"
        );
    }
}

#[test]
fn tls_keys_are_checked_against_the_url_and_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_pem(dir.path());
    let wss = "url = \"wss://localhost:8443/ws\"\nsecret = \"s\"";
    let set = format!("target.ca_file={}", ca.display());
    let p = parse_text(&target(wss), &[set.as_str()]).unwrap();
    assert!(matches!(&p.target, Target::External { ca_file: Some(f), insecure: false, .. } if *f == ca));
    let p = parse_text(&target(wss), &["target.insecure=true"]).unwrap();
    assert!(matches!(
        &p.target,
        Target::External {
            ca_file: None,
            insecure: true,
            ..
        }
    ));

    let keys = |found: Vec<(String, String)>| found.into_iter().map(|(k, m)| format!("{k}: {m}")).collect::<Vec<_>>();
    let missing = dir.path().join("missing.pem");
    let found = keys(problems(
        &target(&format!("{wss}\nca_file = \"{}\"", missing.display())),
        &[],
    ));
    assert!(
        found.len() == 1 && found[0].starts_with("target.ca_file: cannot read") && found[0].contains("missing.pem"),
        "{found:?}"
    );
    let found = keys(problems(
        &target(&format!("{wss}\nca_file = \"{}\"\ninsecure = true", ca.display())),
        &[],
    ));
    assert!(found.len() == 1 && found[0].contains("not both"), "{found:?}");
    let found = keys(problems(
        &target("url = \"ws://localhost:9400/ws\"\nsecret = \"s\"\ninsecure = true"),
        &[],
    ));
    assert_eq!(found, ["target.insecure: applies to a wss:// target.url only"]);
    let found = keys(problems(&format!("{MINIMAL}[target]\ninsecure = true\n"), &[]));
    assert_eq!(found, ["target.insecure: applies to a wss:// target.url only"]);
}

#[test]
fn the_effective_profile_keeps_the_tls_keys() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_pem(dir.path());
    let text = target(&format!(
        "url = \"wss://localhost:8443/ws\"\nsecret = \"s\"\nca_file = \"{}\"",
        ca.display()
    ));
    let p = parse_text(&text, &[]).unwrap();
    let effective = effective_toml(&p);
    assert!(
        effective.contains("ca.pem") && !effective.contains("insecure"),
        "{effective}"
    );
    // Written back without the secret (results folders get shared): give it again.
    let again = parse_text(&effective, &["target.secret=s"]).unwrap();
    assert_eq!(again.target, p.target);
    let insecure = parse_text(
        &target("url = \"wss://localhost/ws\"\nsecret = \"s\"\ninsecure = true"),
        &[],
    )
    .unwrap();
    assert!(effective_toml(&insecure).contains("insecure = true"));
}

#[test]
fn xmpp_targets_log_in_with_passwords_and_name_their_domains() {
    let p = parse_text(
        &target("protocol = \"xmpp\"\nurl = \"ws://chat.example.com:5280/xmpp-websocket\"\n[target.xmpp]\npassword = \"pw\""),
        &[],
    )
    .unwrap();
    let Target::External { auth, protocol, .. } = &p.target else {
        panic!("{:?}", p.target)
    };
    assert_eq!(*auth, Auth::Password("pw".into()));
    assert_eq!(
        *protocol,
        Protocol::Xmpp(XmppOptions {
            domain: "chat.example.com".into(),
            muc_domain: "conference.chat.example.com".into(),
            starttls: StartTls::IfOffered,
            sasl_plain: None,
            stream_management: true,
        })
    );
    // The effective profile keeps the protocol and domains, not the password.
    let eff = effective_toml(&p);
    assert!(
        eff.contains("protocol = \"xmpp\"") && eff.contains("muc_domain"),
        "{eff}"
    );
    assert!(!eff.contains("pw"), "{eff}");
}

#[test]
fn xmpp_keys_are_checked_with_the_protocol() {
    for (keys, field) in [
        ("protocol = \"xmpp\"\nurl = \"ws://h:1/x\"", "target.xmpp.password"),
        (
            "protocol = \"xmpp\"\nurl = \"ws://h:1/x\"\nsecret = \"s\"\n[target.xmpp]\npassword = \"p\"",
            "target.secret",
        ),
        ("protocol = \"xmpp\"", "target.url"),
        (
            "protocol = \"smtp\"\nurl = \"ws://h:1/x\"\nsecret = \"s\"",
            "target.protocol",
        ),
        (
            "url = \"ws://h:1/x\"\nsecret = \"s\"\n[target.xmpp]\ndomain = \"d\"",
            "target.xmpp",
        ),
        (
            "protocol = \"xmpp\"\nurl = \"ws://h:1/x\"\n[target.xmpp]\npassword = \"p\"\nstarttls = \"sometimes\"",
            "target.xmpp.starttls",
        ),
        (
            "protocol = \"xmpp\"\nurl = \"http://h:1/x\"\n[target.xmpp]\npassword = \"p\"",
            "target.url",
        ),
    ] {
        let e = parse_text(&target(keys), &[]).unwrap_err().to_string();
        assert!(e.contains(field), "{keys}: {e}");
    }
}
