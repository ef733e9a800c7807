//! `ackstorm conformance`: the native driver against the reference server passes every step;
//! against a server written independently from the protocol text (the fake server) the steps
//! it does not implement, or breaks on purpose, fail and name why, with exit code 1.

use std::time::Duration;

use crate::common::*;
use crate::fake_server::{FakeServer, Misbehave};

/// Runs `ackstorm conformance` on `args`; (exit code, output).
async fn conformance(args: &[&str]) -> (Option<i32>, String) {
    let args = [&["conformance"], args, &["--wait", "2s"]].concat();
    ackstorm_within(&args, Duration::from_secs(60)).await
}

/// The outcome column of `step`'s row.
fn row<'a>(table: &'a str, step: &str) -> &'a str {
    table
        .lines()
        .find(|l| {
            l.split('┆')
                .next()
                .is_some_and(|c| c.trim_start_matches('│').trim() == step)
        })
        .unwrap_or_else(|| panic!("no row {step}: {table}"))
}

#[tokio::test]
async fn the_reference_server_passes_every_step() {
    let (code, out) = conformance(&["profiles/smoke.toml"]).await;
    assert_eq!(code, Some(0), "{out}");
    for step in [
        "login",
        "create_group",
        "send",
        "message",
        "delivery",
        "read",
        "channel",
        "group_message",
        "group_read",
        "close",
    ] {
        assert!(row(&out, step).contains("passed"), "{step}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_breaks_steps_fails_them_by_name() {
    // The fake server keeps no groups: the group steps fail, the one-to-one ones pass.
    let fake = FakeServer::start(Misbehave::default()).await;
    let url = fake.url();
    let args = ["profiles/smoke.toml", "--target", &url, "--secret", SECRET];
    let (code, out) = conformance(&args).await;
    assert_eq!(code, Some(1), "{out}");
    for step in ["login", "send", "message", "delivery", "read", "channel", "close"] {
        assert!(row(&out, step).contains("passed"), "{step}: {out}");
    }
    assert!(row(&out, "group_message").contains("FAILED"), "{out}");
    // A server that answers sends but never delivers: the message fails, what needs it is
    // skipped.
    let fake = FakeServer::start(Misbehave {
        never_deliver: true,
        ..Misbehave::default()
    })
    .await;
    let url = fake.url();
    let args = ["profiles/smoke.toml", "--target", &url, "--secret", SECRET];
    let (code, out) = conformance(&args).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(row(&out, "send").contains("passed"), "{out}");
    assert!(row(&out, "message").contains("FAILED: nothing within 2s"), "{out}");
    assert!(row(&out, "delivery").contains("skipped"), "{out}");
}
