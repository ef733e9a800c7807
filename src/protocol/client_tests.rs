//! Frame-level tests of client frames: every op round-trips; every malformed case maps to
//! `bad_request` with the right `req` and a message naming what was wrong.

use std::borrow::Cow;

use super::*;
use crate::protocol::ErrorCode;

fn parse(text: &str) -> Result<Request<'_>, ProtocolError> {
    Request::parse(text)
}

fn round_trip(frame: ClientFrame<'static>) {
    let req = Request {
        frame,
        req: Cow::Borrowed("r1"),
    };
    let text = req.encode();
    let written: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        written,
        serde_json::to_value(&req).unwrap(),
        "direct writer and derived Serialize agree"
    );
    let back = Request::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(back, req, "{text}");
    assert!(text.contains(&format!("\"op\":\"{}\"", req.frame.op())), "{text}");
}

#[test]
fn every_op_round_trips() {
    let b = Cow::Borrowed;
    let frames = vec![
        ClientFrame::Login {
            user: b("alice"),
            token: b("ab12"),
            device: Some(b("phone")),
            delivery: true,
        },
        ClientFrame::Login {
            user: b("alice"),
            token: b("ab12"),
            device: None,
            delivery: false,
        },
        ClientFrame::Send {
            id: b("c-1"),
            chat_type: ChatType::Single,
            kind: MsgType::Txt,
            to: b("bob"),
            msg: b("hi \"there\"\n☃"),
            msg_config: None,
        },
        ClientFrame::Send {
            id: b("c-2"),
            chat_type: ChatType::Group,
            kind: MsgType::Txt,
            to: b("g1"),
            msg: b(""),
            msg_config: Some(MsgConfig { allow_group_ack: true }),
        },
        ClientFrame::Delivery {
            ack_id: 42,
            to: b("bob"),
        },
        ClientFrame::Read {
            chat_type: ChatType::Single,
            id: 7,
            to: b("bob"),
            ack_content: None,
        },
        ClientFrame::Read {
            chat_type: ChatType::Group,
            id: 7,
            to: b("g1"),
            ack_content: Some(b("seen")),
        },
        ClientFrame::Channel {
            chat_type: ChatType::Single,
            to: b("bob"),
        },
        ClientFrame::Channel {
            chat_type: ChatType::Group,
            to: b("g1"),
        },
        ClientFrame::CreateGroup {
            group_id: b("g1"),
            members: vec![b("a"), b("b")],
            admins: vec![b("a")],
        },
        ClientFrame::CreateGroup {
            group_id: b("g2"),
            members: vec![],
            admins: vec![],
        },
        ClientFrame::JoinGroup { group_id: b("g1") },
        ClientFrame::LeaveGroup { group_id: b("g1") },
        ClientFrame::GetGroupMsgReadUser {
            group_id: b("g1"),
            msg_id: 9,
            limit: Some(20),
            key: Some(b("3")),
        },
        ClientFrame::GetGroupMsgReadUser {
            group_id: b("g1"),
            msg_id: 9,
            limit: None,
            key: None,
        },
        ClientFrame::GetConversations {},
        ClientFrame::Ping {},
    ];
    for f in frames {
        round_trip(f);
    }
}

#[test]
fn parses_the_documented_wire_form() {
    let r = parse(r#"{"op":"send","req":"9","id":"m1","chatType":"groupChat","type":"txt","to":"g1","msg":"x","msgConfig":{"allowGroupAck":true}}"#)
        .unwrap();
    assert_eq!(r.req, "9");
    match r.frame {
        ClientFrame::Send {
            chat_type,
            to,
            msg_config,
            ..
        } => {
            assert_eq!(chat_type, ChatType::Group);
            assert_eq!(to, "g1");
            assert_eq!(msg_config, Some(MsgConfig { allow_group_ack: true }));
        }
        other => panic!("{other:?}"),
    }
    let r = parse(r#"{"op":"delivery","req":"1","ackId":"18446744073709551615","to":"bob"}"#).unwrap();
    assert_eq!(
        r.frame,
        ClientFrame::Delivery {
            ack_id: u64::MAX,
            to: "bob".into()
        }
    );
}

#[test]
fn borrows_plain_strings_and_decodes_escapes() {
    let text = r#"{"op":"send","req":"1","id":"m","chatType":"singleChat","type":"txt","to":"bob","msg":"plain"}"#;
    let r = parse(text).unwrap();
    let ClientFrame::Send { msg, to, .. } = r.frame else {
        panic!()
    };
    assert!(matches!(msg, Cow::Borrowed("plain")));
    assert!(matches!(to, Cow::Borrowed("bob")));
    let text = r#"{"op":"send","req":"1","id":"m","chatType":"singleChat","type":"txt","to":"bob","msg":"a\"b\u00e9"}"#;
    let ClientFrame::Send { msg, .. } = parse(text).unwrap().frame else {
        panic!()
    };
    assert_eq!(msg, "a\"bé");
}

#[test]
fn unknown_fields_are_ignored() {
    let r = parse(r#"{"op":"ping","req":"1","extra":{"deep":[1,2]},"n":5}"#).unwrap();
    assert_eq!(r.frame, ClientFrame::Ping {});
}

#[test]
fn login_defaults() {
    let r = parse(r#"{"op":"login","req":"1","user":"u1","token":"t"}"#).unwrap();
    assert_eq!(
        r.frame,
        ClientFrame::Login {
            user: "u1".into(),
            token: "t".into(),
            device: None,
            delivery: false
        }
    );
}

/// (frame text, expected req, a fragment the error message must contain)
fn malformed_cases() -> Vec<(&'static str, Option<&'static str>, &'static str)> {
    vec![
        // Not JSON at all, truncated JSON, JSON that is not an object.
        ("hello", None, "not a JSON object"),
        (r#"{"op":"ping","req":"1""#, None, "not a JSON object"),
        ("[1,2]", None, "not a JSON object"),
        ("\"ping\"", None, "not a JSON object"),
        ("", None, "not a JSON object"),
        // Missing or unreadable req / op.
        (r#"{"op":"ping"}"#, None, "req"),
        (r#"{"op":"ping","req":7}"#, None, "req"),
        (r#"{"req":"5"}"#, Some("5"), "op"),
        (r#"{"req":"5","op":3}"#, Some("5"), "op"),
        // Unknown op.
        (r#"{"op":"fly","req":"6"}"#, Some("6"), "unknown op \"fly\""),
        (r#"{"op":"Login","req":"6"}"#, Some("6"), "unknown op"),
        // Missing fields.
        (r#"{"op":"login","req":"a","token":"t"}"#, Some("a"), "\"user\""),
        (r#"{"op":"login","req":"a","user":"u"}"#, Some("a"), "\"token\""),
        (
            r#"{"op":"send","req":"a","chatType":"singleChat","type":"txt","to":"b","msg":"m"}"#,
            Some("a"),
            "\"id\"",
        ),
        (
            r#"{"op":"send","req":"a","id":"1","type":"txt","to":"b","msg":"m"}"#,
            Some("a"),
            "\"chatType\"",
        ),
        (
            r#"{"op":"send","req":"a","id":"1","chatType":"singleChat","to":"b","msg":"m"}"#,
            Some("a"),
            "\"type\"",
        ),
        (
            r#"{"op":"send","req":"a","id":"1","chatType":"singleChat","type":"txt","msg":"m"}"#,
            Some("a"),
            "\"to\"",
        ),
        (
            r#"{"op":"send","req":"a","id":"1","chatType":"singleChat","type":"txt","to":"b"}"#,
            Some("a"),
            "\"msg\"",
        ),
        (
            r#"{"op":"send","req":"a","id":"1","chatType":"singleChat","type":"txt","to":"b","msg":null}"#,
            Some("a"),
            "\"msg\"",
        ),
        (r#"{"op":"delivery","req":"a","to":"b"}"#, Some("a"), "\"ackId\""),
        (
            r#"{"op":"read","req":"a","chatType":"singleChat","to":"b"}"#,
            Some("a"),
            "\"id\"",
        ),
        (
            r#"{"op":"channel","req":"a","chatType":"singleChat"}"#,
            Some("a"),
            "\"to\"",
        ),
        (
            r#"{"op":"createGroup","req":"a","groupId":"g"}"#,
            Some("a"),
            "\"members\"",
        ),
        (r#"{"op":"joinGroup","req":"a"}"#, Some("a"), "\"groupId\""),
        (r#"{"op":"leaveGroup","req":"a"}"#, Some("a"), "\"groupId\""),
        (
            r#"{"op":"getGroupMsgReadUser","req":"a","groupId":"g"}"#,
            Some("a"),
            "\"msgId\"",
        ),
        // Wrong types.
        (r#"{"op":"login","req":"b","user":5,"token":"t"}"#, Some("b"), "user"),
        (
            r#"{"op":"login","req":"b","user":"u","token":"t","delivery":"yes"}"#,
            Some("b"),
            "delivery",
        ),
        (
            r#"{"op":"send","req":"b","id":"1","chatType":"singleChat","type":"txt","to":"x","msg":["m"]}"#,
            Some("b"),
            "msg",
        ),
        (
            r#"{"op":"send","req":"b","id":"1","chatType":"groupChat","type":"txt","to":"g","msg":"m","msgConfig":{"allowGroupAck":"y"}}"#,
            Some("b"),
            "allowGroupAck",
        ),
        (
            r#"{"op":"send","req":"b","id":"1","chatType":"groupChat","type":"txt","to":"g","msg":"m","msgConfig":true}"#,
            Some("b"),
            "msgConfig",
        ),
        (r#"{"op":"delivery","req":"b","ackId":12,"to":"x"}"#, Some("b"), "ackId"),
        (
            r#"{"op":"createGroup","req":"b","groupId":"g","members":"a,b"}"#,
            Some("b"),
            "members",
        ),
        (
            r#"{"op":"createGroup","req":"b","groupId":"g","members":["a",2]}"#,
            Some("b"),
            "members",
        ),
        (
            r#"{"op":"getGroupMsgReadUser","req":"b","groupId":"g","msgId":"1","limit":-1}"#,
            Some("b"),
            "limit",
        ),
        (
            r#"{"op":"getGroupMsgReadUser","req":"b","groupId":"g","msgId":"1","limit":"5"}"#,
            Some("b"),
            "limit",
        ),
        // Wrong values.
        (
            r#"{"op":"send","req":"c","id":"1","chatType":"roomChat","type":"txt","to":"x","msg":"m"}"#,
            Some("c"),
            "chatType",
        ),
        (
            r#"{"op":"send","req":"c","id":"1","chatType":"singleChat","type":"img","to":"x","msg":"m"}"#,
            Some("c"),
            "\"type\"",
        ),
        (
            r#"{"op":"delivery","req":"c","ackId":"12a","to":"x"}"#,
            Some("c"),
            "ackId",
        ),
        (
            r#"{"op":"delivery","req":"c","ackId":"-3","to":"x"}"#,
            Some("c"),
            "ackId",
        ),
        (
            r#"{"op":"read","req":"c","chatType":"singleChat","id":"99999999999999999999","to":"x"}"#,
            Some("c"),
            "\"id\"",
        ),
        (
            r#"{"op":"getGroupMsgReadUser","req":"c","groupId":"g","msgId":"1","limit":0}"#,
            Some("c"),
            "limit",
        ),
        // Bad id characters.
        (
            r#"{"op":"login","req":"d","user":"a b","token":"t"}"#,
            Some("d"),
            "user",
        ),
        (r#"{"op":"login","req":"d","user":"","token":"t"}"#, Some("d"), "user"),
        (
            r#"{"op":"login","req":"d","user":"u","token":"t","device":"ph/1"}"#,
            Some("d"),
            "device",
        ),
        (
            r#"{"op":"send","req":"d","id":"1","chatType":"singleChat","type":"txt","to":"bob!","msg":"m"}"#,
            Some("d"),
            "to",
        ),
        (
            r#"{"op":"createGroup","req":"d","groupId":"g#1","members":[]}"#,
            Some("d"),
            "groupId",
        ),
        (
            r#"{"op":"createGroup","req":"d","groupId":"g","members":["ok","bad id"]}"#,
            Some("d"),
            "members[1]",
        ),
        (
            r#"{"op":"createGroup","req":"d","groupId":"g","members":[],"admins":["é"]}"#,
            Some("d"),
            "admins[0]",
        ),
        (
            r#"{"op":"joinGroup","req":"d","groupId":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
            Some("d"),
            "groupId",
        ),
    ]
}

#[test]
fn every_malformed_case_is_a_bad_request_with_its_req() {
    for (text, req, fragment) in malformed_cases() {
        let err = match parse(text) {
            Ok(r) => panic!("{text} parsed as {r:?}"),
            Err(e) => e,
        };
        assert_eq!(err.code(), ErrorCode::BadRequest, "{text}");
        assert_eq!(err.req(), req, "{text}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(fragment),
            "{text}: message {message:?} lacks {fragment:?}"
        );
    }
}
