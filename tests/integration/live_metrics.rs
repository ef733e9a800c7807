//! `--metrics-listen`: a tiny run through the real binary, scraped while it runs, and a bind
//! failure that ends the run before any user starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{ackstorm, ackstorm_within, output_text};

/// Long enough for a few scrapes while traffic flows (and a latency window to fill).
const PROFILE: &str = r#"
[run]
name = "live"
duration = "8s"
drain = "2s"
seed = 3
ramp = { users_per_sec = 200 }

[population]
users = 30
contacts = 4

[groups]
count = 3
size_min = 4
size_max = 8

[traffic]
one_to_one_per_min = 60
group_per_min = 30
message_bytes = 32

[reading]
open = "1s"
away = "500ms"
read_probability = 1.0
read_delay = { dist = "exp", mean = "100ms" }
"#;

/// A port free a moment ago on loopback.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A plain HTTP/1.1 GET; `None` when nothing listens (yet).
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("a reply in time")
        .ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// Samples by `name{labels}` (labels sorted), counters and gauges alike.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let v = match s.value {
                Value::Counter(v) | Value::Gauge(v) => v,
                other => panic!("{} is no counter or gauge: {other:?}", s.metric),
            };
            (format!("{}{{{}}}", s.metric, s.labels), v)
        })
        .collect()
}

fn sum_of(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_is_scraped_while_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("live.toml");
    std::fs::write(&path, PROFILE).unwrap();
    let addr = free_addr();
    let args: Vec<String> = [
        "run",
        path.to_str().unwrap(),
        "--no-progress",
        "--results",
        tmp.path().join("results").to_str().unwrap(),
        "--metrics-listen",
        &addr.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let run = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ackstorm_within(&args, Duration::from_secs(90)).await
    });

    // Users connected and messages flowing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        assert!(tokio::time::Instant::now() < deadline, "no traffic seen on /metrics");
        if let Some((200, body)) = get(addr, "/metrics").await {
            let s = samples(&body);
            if s["ackstorm_tester_users_connected{}"] > 0.0 && sum_of(&s, "ackstorm_tester_messages_sent_total") > 0.0 {
                assert!(body.contains("# HELP ackstorm_tester_lost_total "), "{body}");
                assert!(
                    body.contains("# TYPE ackstorm_tester_messages_sent_total counter"),
                    "{body}"
                );
                let info = s
                    .iter()
                    .find(|(k, _)| k.starts_with("ackstorm_tester_info{name=\"live\",run=\""));
                let (key, one) = info.unwrap_or_else(|| panic!("no info sample in {body}"));
                assert!(!key.ends_with("run=\"\"}") && *one == 1.0, "{key}");
                break s;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(get(addr, "/healthz").await, Some((200, "ok\n".to_string())));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = get(addr, "/metrics").await.expect("still served");
    assert_eq!(status, 200);
    let second = samples(&body);
    let messages = |s: &BTreeMap<String, f64>| sum_of(s, "ackstorm_tester_messages_sent_total");
    assert!(
        messages(&second) > messages(&first),
        "messages did not grow: {} then {}",
        messages(&first),
        messages(&second)
    );
    assert!(second["ackstorm_tester_users_connected{}"] > 0.0, "{body}");

    // A few seconds in, closed seconds give the latency window its quantiles.
    let p99 = "ackstorm_tester_latency_seconds{metric=\"server_ack\",quantile=\"0.99\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let window = loop {
        let (_, body) = get(addr, "/metrics").await.expect("still served");
        if let Some(v) = samples(&body).get(p99) {
            break *v;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {p99} in\n{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(window > 0.0 && window < 5.0, "{p99} = {window}");

    let (code, out) = run.await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    // The run is over: nothing listens any more.
    assert!(get(addr, "/healthz").await.is_none());
}

#[test]
fn an_address_in_use_ends_the_run_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("live.toml");
    std::fs::write(&path, PROFILE).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let results = tmp.path().join("results");
    let out = ackstorm(&[
        "run",
        path.to_str().unwrap(),
        "--no-progress",
        "--results",
        results.to_str().unwrap(),
        "--metrics-listen",
        &addr,
    ]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("tester.metrics_listen") && text.contains(&addr), "{text}");
    // A malformed address is a profile error naming the key and the value.
    let out = ackstorm(&["run", path.to_str().unwrap(), "--metrics-listen", "localhost"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("tester.metrics_listen") && text.contains("\"localhost\""),
        "{text}"
    );
}
