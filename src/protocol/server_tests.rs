//! Frame-level tests of server frames: exact wire spelling of each op, and round trips through
//! the driver-side parser.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::*;

fn b(s: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(s)
}

fn wire(o: &Outgoing<'_>) -> Value {
    serde_json::from_str(&o.encode()).unwrap()
}

#[test]
fn frames_encode_exactly_as_documented() {
    let cases: Vec<(Outgoing<'static>, Value)> = vec![
        (
            Outgoing::reply(
                "1",
                ServerFrame::LoginOk {
                    user: b("al"),
                    device: b("web"),
                    time: 5,
                },
            ),
            json!({"op":"loginOk","req":"1","user":"al","device":"web","time":5}),
        ),
        (
            Outgoing::reply(
                "2",
                ServerFrame::Error {
                    code: ErrorCode::GroupAckNotOpen,
                    message: b("off"),
                },
            ),
            json!({"op":"error","req":"2","code":"group_ack_not_open","message":"off"}),
        ),
        (
            Outgoing::push(ServerFrame::Error {
                code: ErrorCode::TooLarge,
                message: b("big"),
            }),
            json!({"op":"error","code":"too_large","message":"big"}),
        ),
        (
            Outgoing::reply(
                "3",
                ServerFrame::Received {
                    id: Some(b("c1")),
                    mid: 10,
                    to: Some(b("g")),
                    time: Some(7),
                    group_ack: Some(false),
                    duplicate: None,
                },
            ),
            json!({"op":"received","req":"3","id":"c1","mid":"10","to":"g","time":7,"groupAck":false}),
        ),
        (
            Outgoing::reply(
                "3b",
                ServerFrame::Received {
                    id: Some(b("c1")),
                    mid: 10,
                    to: Some(b("g")),
                    time: Some(7),
                    group_ack: Some(true),
                    duplicate: Some(true),
                },
            ),
            json!({"op":"received","req":"3b","id":"c1","mid":"10","to":"g","time":7,"groupAck":true,"duplicate":true}),
        ),
        (
            Outgoing::reply(
                "4",
                ServerFrame::Received {
                    id: None,
                    mid: 11,
                    to: None,
                    time: None,
                    group_ack: None,
                    duplicate: None,
                },
            ),
            json!({"op":"received","req":"4","mid":"11"}),
        ),
        (
            Outgoing::push(ServerFrame::Message {
                mid: 10,
                from: b("al"),
                to: b("g"),
                chat_type: ChatType::Group,
                kind: MsgType::Txt,
                msg: b("hi"),
                time: 7,
                msg_config: Some(MsgConfig { allow_group_ack: true }),
            }),
            json!({"op":"message","mid":"10","from":"al","to":"g","chatType":"groupChat","type":"txt","msg":"hi","time":7,"msgConfig":{"allowGroupAck":true}}),
        ),
        (
            Outgoing::push(ServerFrame::Delivery {
                id: 12,
                mid: 10,
                from: b("bo"),
                to: b("al"),
                online_state: 1,
            }),
            json!({"op":"delivery","id":"12","mid":"10","from":"bo","to":"al","onlineState":1}),
        ),
        (
            Outgoing::push(ServerFrame::Read {
                id: 13,
                mid: 10,
                chat_type: ChatType::Single,
                from: b("bo"),
                to: b("al"),
                group_read_count: None,
                ack_content: None,
                online_state: 0,
            }),
            json!({"op":"read","id":"13","mid":"10","chatType":"singleChat","from":"bo","to":"al","onlineState":0}),
        ),
        (
            Outgoing::push(ServerFrame::Read {
                id: 14,
                mid: 10,
                chat_type: ChatType::Group,
                from: b("bo"),
                to: b("g"),
                group_read_count: Some(GroupReadCount { mid: 10, count: 3 }),
                ack_content: Some(b("")),
                online_state: 1,
            }),
            json!({"op":"read","id":"14","mid":"10","chatType":"groupChat","from":"bo","to":"g","groupReadCount":{"10":3},"ackContent":"","onlineState":1}),
        ),
        (
            Outgoing::push(ServerFrame::Channel {
                id: 15,
                chat_type: ChatType::Single,
                from: b("bo"),
                to: b("al"),
                time: 9,
                online_state: 1,
            }),
            json!({"op":"channel","id":"15","chatType":"singleChat","from":"bo","to":"al","time":9,"onlineState":1}),
        ),
        (
            Outgoing::push(ServerFrame::Statistic {
                operation: 0,
                location: b("{}"),
            }),
            json!({"op":"statistic","operation":0,"location":"{}"}),
        ),
        (
            Outgoing::push(ServerFrame::Kicked {
                reason: b("login_elsewhere"),
            }),
            json!({"op":"kicked","reason":"login_elsewhere"}),
        ),
        (
            Outgoing::reply(
                "5",
                ServerFrame::Result {
                    data: ResultData::Group { group_id: b("g") },
                },
            ),
            json!({"op":"result","req":"5","data":{"groupId":"g"}}),
        ),
        (
            Outgoing::reply(
                "6",
                ServerFrame::Result {
                    data: ResultData::ReadUsers(ReadUsers {
                        ackmid: 10,
                        total: 2,
                        userlist: vec![b("c"), b("b")],
                        next_key: None,
                        is_last: true,
                        timestamp: 8,
                    }),
                },
            ),
            json!({"op":"result","req":"6","data":{"ackmid":"10","total":2,"userlist":["c","b"],"next_key":null,"is_last":true,"timestamp":8}}),
        ),
        (
            Outgoing::reply(
                "7",
                ServerFrame::Result {
                    data: ResultData::Conversations(vec![Conversation {
                        conversation_id: b("bo"),
                        chat_type: ChatType::Single,
                        unread: 4,
                        last_mid: 10,
                    }]),
                },
            ),
            json!({"op":"result","req":"7","data":[{"conversationId":"bo","chatType":"singleChat","unread":4,"lastMid":"10"}]}),
        ),
        (
            Outgoing::reply("8", ServerFrame::Pong { time: 3 }),
            json!({"op":"pong","req":"8","time":3}),
        ),
    ];
    for (frame, expected) in cases {
        assert_eq!(wire(&frame), expected, "{:?}", frame.frame.op());
        // The direct writer and the derived Serialize (the reference) agree.
        assert_eq!(
            wire(&frame),
            serde_json::to_value(&frame).unwrap(),
            "{:?}",
            frame.frame.op()
        );
        let text = frame.encode();
        let back = Outgoing::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(back, frame, "{text}");
    }
}

#[test]
fn strings_that_need_escaping_survive_the_writer() {
    for msg in [
        "\"quoted\"",
        "back\\slash",
        "line\nbreak\ttab",
        "\u{0}\u{1f}",
        "é☃😀",
        "",
    ] {
        let frame = Outgoing::reply(
            "r\"1",
            ServerFrame::Message {
                mid: 1,
                from: b("a"),
                to: b("b"),
                chat_type: ChatType::Single,
                kind: MsgType::Txt,
                msg: Cow::Owned(msg.to_string()),
                time: 0,
                msg_config: None,
            },
        );
        assert_eq!(wire(&frame), serde_json::to_value(&frame).unwrap());
        let text = frame.encode();
        assert_eq!(Outgoing::parse(&text).unwrap(), frame);
    }
}

#[test]
fn op_table_matches_variants() {
    let f = ServerFrame::Pong { time: 0 };
    assert_eq!(f.op(), "pong");
    assert_eq!(SERVER_OPS.len(), 11);
}

#[test]
fn statistic_location_round_trips() {
    let loc = StatisticLocation {
        group_ack: vec![GroupAckCount {
            mid: 5,
            group_id: "g1".into(),
            count: 2,
        }],
    };
    let text = loc.to_json();
    assert_eq!(text, r#"{"group_ack":[{"mid":"5","groupId":"g1","count":2}]}"#);
    assert_eq!(StatisticLocation::from_json(&text).unwrap(), loc);
    assert!(StatisticLocation::from_json("{").is_err());
}

#[test]
fn driver_side_parse_rejects_broken_frames() {
    for bad in [
        "nope",
        r#"{"req":"1"}"#,
        r#"{"op":"teleport"}"#,
        r#"{"op":"delivery","id":"x","mid":"1","from":"a","to":"b","onlineState":1}"#,
        r#"{"op":"read","id":"1","mid":"1","from":"a","to":"b","onlineState":1}"#,
        r#"{"op":"read","id":"1","mid":"1","chatType":"groupChat","from":"a","to":"g","groupReadCount":{},"onlineState":1}"#,
        r#"{"op":"result","req":"1","data":5}"#,
        r#"{"op":"pong","req":"1"}"#,
    ] {
        assert!(Outgoing::parse(bad).is_err(), "{bad}");
    }
}
