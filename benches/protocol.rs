//! Frame parse and encode costs: the floor under every receipt the server routes.
//!
//! `cargo bench --bench protocol`

use std::borrow::Cow;
use std::hint::black_box;

use ackstorm::protocol::client::{MsgConfig, MsgType};
use ackstorm::protocol::server::GroupReadCount;
use ackstorm::protocol::{ChatType, Outgoing, Request, ServerFrame};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SEND: &str = r#"{"op":"send","req":"1042","id":"c-1042","chatType":"singleChat","type":"txt","to":"user-00042","msg":"hello, this is a sixty-four byte message body for benchmarking!"}"#;
const READ: &str = r#"{"op":"read","req":"1043","chatType":"singleChat","id":"1234567","to":"user-00017"}"#;
const GROUP_PUSH: &str = r#"{"op":"read","id":"1234569","mid":"1234567","chatType":"groupChat","from":"user-00042","to":"group-0007","groupReadCount":{"1234567":12},"ackContent":"","onlineState":1}"#;

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_send", |b| b.iter(|| Request::parse(black_box(SEND)).unwrap()));
    g.bench_function("parse_read", |b| b.iter(|| Request::parse(black_box(READ)).unwrap()));
    g.bench_function("parse_push_group_read", |b| {
        b.iter(|| Outgoing::parse(black_box(GROUP_PUSH)).unwrap())
    });
    g.bench_function("encode_message_push", |b| {
        b.iter(|| {
            Outgoing::push(ServerFrame::Message {
                mid: black_box(1_234_567),
                from: Cow::Borrowed("user-00017"),
                to: Cow::Borrowed("user-00042"),
                chat_type: ChatType::Single,
                kind: MsgType::Txt,
                msg: Cow::Borrowed("hello, this is a sixty-four byte message body for benchmarking!"),
                time: 1_764_000_000_000,
                msg_config: Some(MsgConfig { allow_group_ack: false }),
            })
            .encode()
        })
    });
    g.bench_function("encode_received", |b| {
        b.iter(|| {
            Outgoing::reply(
                "1043",
                ServerFrame::Received {
                    id: None,
                    mid: black_box(1_234_568),
                    to: None,
                    time: None,
                    group_ack: None,
                    duplicate: None,
                },
            )
            .encode()
        })
    });
    g.bench_function("encode_group_read_push", |b| {
        b.iter(|| {
            Outgoing::push(ServerFrame::Read {
                id: 1_234_569,
                mid: black_box(1_234_567),
                chat_type: ChatType::Group,
                from: Cow::Borrowed("user-00042"),
                to: Cow::Borrowed("group-0007"),
                group_read_count: Some(GroupReadCount {
                    mid: 1_234_567,
                    count: 12,
                }),
                ack_content: Some(Cow::Borrowed("")),
                online_state: 1,
            })
            .encode()
        })
    });
    g.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
