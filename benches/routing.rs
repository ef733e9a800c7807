//! The server's routing of a full receipt chain in-process, no sockets: text frames in,
//! encoded replies and pushes out, exactly the work a connection task hands the hub.
//!
//! One chain = alice `send` -> reply `received` + `message` push to bob; bob `delivery` ->
//! `received` + push to alice; bob `read` -> `received` + push to alice. Three client frames
//! parsed, six frames encoded, three receipts recorded.
//!
//! `cargo bench --bench routing`

use std::fmt::Write;
use std::hint::black_box;
use std::sync::Arc;

use ackstorm::protocol::{Request, token};
use ackstorm::server::ServerConfig;
use ackstorm::server::hub::{Hub, Login, Session};
use ackstorm::server::metrics::Metrics;
use ackstorm::server::outbox::{Outbox, QueueBound};
use ackstorm::server::store::{MemoryStore, StoreLimits};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SECRET: &[u8] = b"bench";

struct Peer {
    session: Session,
    outbox: Outbox,
}

fn login(hub: &Hub<MemoryStore>, user: &str) -> Peer {
    let outbox = Outbox::new(QueueBound::NONE);
    let text = format!(
        r#"{{"op":"login","req":"0","user":"{user}","token":"{}"}}"#,
        token::token(SECRET, user)
    );
    let request = Request::parse(&text).unwrap();
    let Login::Accepted(session, _) = hub.login(hub.next_conn(), &outbox, &request) else {
        panic!("login refused")
    };
    Peer { session, outbox }
}

/// Parses `text`, lets the hub handle it, encodes the reply: what a connection does per frame.
fn handle(hub: &Hub<MemoryStore>, peer: &Peer, text: &str) -> usize {
    let request = Request::parse(text).unwrap();
    hub.handle(&peer.session, &request).encode().len()
}

fn drain(peer: &mut Peer) -> usize {
    let mut n = 0;
    while let Some(push) = peer.outbox.try_pop() {
        n += push.text().len();
    }
    n
}

fn hub(group_read_ack: bool) -> Hub<MemoryStore> {
    let config = ServerConfig {
        secret: SECRET.to_vec(),
        group_read_ack,
        rate_limit: None,
        ..ServerConfig::default()
    };
    let limits = StoreLimits {
        messages: 100_000,
        ..StoreLimits::default()
    };
    Hub::new(
        Arc::new(config),
        Arc::new(Metrics::new(String::new())),
        MemoryStore::new(limits),
    )
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(1));

    let h = hub(false);
    let mut alice = login(&h, "alice");
    let mut bob = login(&h, "bob");
    let mut buf = String::with_capacity(256);
    let mut mid = 0u64;
    g.bench_function("one_to_one_chain", |b| {
        b.iter(|| {
            // Server ids are sequential: the message gets mid, its receipts mid+1 and mid+2.
            mid += 1;
            // A fresh client id per send: sends are idempotent per (sender, id).
            buf.clear();
            let _ = write!(buf, r#"{{"op":"send","req":"1","id":"c{mid}","chatType":"singleChat","type":"txt","to":"bob","msg":"hello, this is a sixty-four byte message body for benchmarking!"}}"#);
            let mut out = handle(&h, &alice, &buf);
            out += drain(&mut bob);
            buf.clear();
            let _ = write!(buf, r#"{{"op":"delivery","req":"2","ackId":"{mid}","to":"alice"}}"#);
            out += handle(&h, &bob, &buf);
            out += drain(&mut alice);
            buf.clear();
            let _ = write!(buf, r#"{{"op":"read","req":"3","chatType":"singleChat","id":"{mid}","to":"alice"}}"#);
            out += handle(&h, &bob, &buf);
            out += drain(&mut alice);
            mid += 2;
            black_box(out)
        })
    });

    // Group of 20 with read receipts: one send fans out to 19; one member reads it.
    let h = hub(true);
    let mut owner = login(&h, "owner");
    let mut members: Vec<Peer> = (0..19).map(|i| login(&h, &format!("m{i}"))).collect();
    let names: Vec<String> = (0..19).map(|i| format!("\"m{i}\"")).collect();
    handle(
        &h,
        &owner,
        &format!(
            r#"{{"op":"createGroup","req":"0","groupId":"g","members":[{}]}}"#,
            names.join(",")
        ),
    );
    let mut mid = 0u64;
    g.bench_function("group20_send_and_one_read", |b| {
        b.iter(|| {
            mid += 1;
            buf.clear();
            let _ = write!(buf, r#"{{"op":"send","req":"1","id":"c{mid}","chatType":"groupChat","type":"txt","to":"g","msg":"hello group","msgConfig":{{"allowGroupAck":true}}}}"#);
            let mut out = handle(&h, &owner, &buf);
            for m in members.iter_mut() {
                out += drain(m);
            }
            buf.clear();
            let _ = write!(buf, r#"{{"op":"read","req":"2","chatType":"groupChat","id":"{mid}","to":"g"}}"#);
            out += handle(&h, &members[(mid % 19) as usize], &buf);
            out += drain(&mut owner);
            mid += 1;
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
