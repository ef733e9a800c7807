//! Receipt-chain throughput of the reference server over real sockets on loopback.
//!
//! N sender/receiver pairs. Each sender keeps `--window` messages in flight; each receiver
//! answers every message with a delivery receipt and a read receipt at once; a chain completes
//! when the sender gets the read push. Reports completed chains per second and the
//! send -> read-push latency. The server runs in-process on its own runtime and threads.
//!
//! `cargo bench --bench socket_chains -- --pairs 100 --window 16 --secs 10 [--data DIR]
//! [--compact-log-ops N]` (`--data`: the durable store in DIR, as `serve --data`; default: the
//! in-memory store; `--compact-log-ops`: compact its log that often, as `serve`'s option)
//! (a measurement driver, not a criterion bench; the load tester proper is `ackstorm run`).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ackstorm::protocol::client::MsgType;
use ackstorm::protocol::{ChatType, ClientFrame, Outgoing, Request, ServerFrame, token};
use ackstorm::server::store::Compaction;
use ackstorm::server::{ServerConfig, ServerHandle};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SECRET: &[u8] = b"bench";

struct Opts {
    pairs: usize,
    window: usize,
    secs: u64,
    server_threads: usize,
    client_threads: usize,
    /// The durable store's directory (`serve --data`); `None`: in memory.
    data: Option<std::path::PathBuf>,
    /// The durable store's compaction threshold in logged ops (`None`: the default).
    compact_log_ops: Option<u64>,
}

fn opts() -> Opts {
    let mut o = Opts {
        pairs: 100,
        window: 16,
        secs: 5,
        server_threads: 1,
        client_threads: 1,
        data: None,
        compact_log_ops: None,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{} needs a number", args[i]))
        };
        match args[i].as_str() {
            "--pairs" => o.pairs = value() as usize,
            "--window" => o.window = value() as usize,
            "--secs" => o.secs = value(),
            "--server-threads" => o.server_threads = value() as usize,
            "--client-threads" => o.client_threads = value() as usize,
            "--data" => o.data = Some(args.get(i + 1).expect("--data needs a directory").into()),
            "--compact-log-ops" => o.compact_log_ops = Some(value()),
            _ => {
                i += 1; // cargo passes --bench; ignore what is not ours
                continue;
            }
        }
        i += 2;
    }
    o
}

async fn connect(url: &str, user: &str, delivery: bool) -> Ws {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .expect("connect");
    let login = Request {
        req: Cow::Borrowed("0"),
        frame: ClientFrame::Login {
            user: user.into(),
            token: token::token(SECRET, user).into(),
            device: None,
            delivery,
        },
    };
    ws.send(Message::Text(login.encode().into())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("loginOk"), "{reply:?}");
    ws
}

/// Sends with `window` in flight; records send -> read latency; counts chains.
async fn sender(mut ws: Ws, to: String, window: usize, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut sent_at = std::collections::HashMap::<u64, Instant>::new();
    let mut pending = std::collections::VecDeque::<Instant>::new();
    let mut req = 0u64;
    let mut send = |ws_buf: &mut Vec<Message>, pending: &mut std::collections::VecDeque<Instant>| {
        req += 1;
        let r = Request {
            req: Cow::Owned(req.to_string()),
            frame: ClientFrame::Send {
                id: Cow::Owned(req.to_string()),
                chat_type: ChatType::Single,
                kind: MsgType::Txt,
                to: Cow::Borrowed(&to),
                msg: Cow::Borrowed("a 64-byte message body used to measure the receipt chain rate!!"),
                msg_config: None,
            },
        };
        pending.push_back(Instant::now());
        ws_buf.push(Message::Text(r.encode().into()));
    };
    let mut out = Vec::new();
    for _ in 0..window {
        send(&mut out, &mut pending);
    }
    for m in out.drain(..) {
        ws.feed(m).await.unwrap();
    }
    ws.flush().await.unwrap();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let frame = Outgoing::parse(text.as_str()).expect("server frame");
        match frame.frame {
            ServerFrame::Received { mid, id: Some(_), .. } => {
                let t = pending.pop_front().expect("received for a pending send");
                sent_at.insert(mid, t);
            }
            ServerFrame::Read { mid, .. } => {
                if let Some(t) = sent_at.remove(&mid) {
                    hist.saturating_record(t.elapsed().as_micros() as u64);
                }
                done.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    if sent_at.is_empty() && pending.is_empty() {
                        break;
                    }
                } else {
                    send(&mut out, &mut pending);
                    for m in out.drain(..) {
                        ws.send(m).await.unwrap();
                    }
                }
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    hist
}

/// Answers every message with a delivery and a read receipt, pipelined.
async fn receiver(mut ws: Ws, stop: Arc<AtomicBool>) {
    let mut req = 0u64;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
        let msg = match next {
            Ok(Some(Ok(m))) => m,
            Ok(_) => break,
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(_) => continue,
        };
        let Message::Text(text) = msg else { continue };
        let frame = Outgoing::parse(text.as_str()).expect("server frame");
        if let ServerFrame::Message { mid, from, .. } = frame.frame {
            for f in [
                ClientFrame::Delivery {
                    ack_id: mid,
                    to: from.clone(),
                },
                ClientFrame::Read {
                    chat_type: ChatType::Single,
                    id: mid,
                    to: from.clone(),
                    ack_content: None,
                },
            ] {
                req += 1;
                let r = Request {
                    req: Cow::Owned(req.to_string()),
                    frame: f,
                };
                ws.feed(Message::Text(r.encode().into())).await.unwrap();
            }
            ws.flush().await.unwrap();
        }
    }
    let _ = ws.close(None).await;
}

fn main() {
    let o = opts();
    // The server on its own runtime and threads, as a separate process would be.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let server_threads = o.server_threads;
    let data = o.data.clone();
    let mut compaction = Compaction::default();
    if let Some(n) = o.compact_log_ops {
        compaction.log_ops = n;
    }
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(server_threads)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let config = ServerConfig {
                secret: SECRET.to_vec(),
                rate_limit: None,
                data,
                compaction,
                ..ServerConfig::default()
            };
            let server = ServerHandle::start("127.0.0.1:0", config).await.unwrap();
            addr_tx.send(server.ws_url()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let url = addr_rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.client_threads)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for i in 0..o.pairs {
            let r = connect(&url, &format!("r{i}"), true).await;
            receivers.push(tokio::spawn(receiver(r, stop.clone())));
            let s = connect(&url, &format!("s{i}"), false).await;
            senders.push((s, format!("r{i}")));
        }
        let start = Instant::now();
        let tasks: Vec<_> = senders
            .into_iter()
            .map(|(s, to)| tokio::spawn(sender(s, to, o.window, stop.clone(), done.clone())))
            .collect();
        // Warm up for a second, then measure.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (d0, t0) = (done.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(Duration::from_secs(o.secs)).await;
        let (d1, t1) = (done.load(Ordering::Relaxed), Instant::now());
        stop.store(true, Ordering::Relaxed);
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for t in tasks {
            hist.add(t.await.unwrap()).unwrap();
        }
        for r in receivers {
            let _ = r.await;
        }
        let rate = (d1 - d0) as f64 / (t1 - t0).as_secs_f64();
        println!(
            "pairs={} window={} server_threads={} client_threads={} secs={} store={}",
            o.pairs,
            o.window,
            o.server_threads,
            o.client_threads,
            o.secs,
            o.data.as_ref().map_or("memory".to_string(), |d| format!("durable ({})", d.display()))
        );
        if let Some(dir) = &o.data {
            let bytes = std::fs::metadata(dir.join("ackstorm.redb")).map_or(0, |m| m.len());
            println!("database: {:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
        }
        println!("chains/s = {rate:.0}  (each: send+received, message push, delivery+received+push, read+received+push = 9 frames)");
        println!(
            "send->read latency (whole run, {} chains, {:.1}s): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            hist.len(),
            start.elapsed().as_secs_f64(),
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            hist.max() as f64 / 1000.0
        );
    });
}
