//! A first end-to-end chain: message, delivery receipt, read receipt, ping.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn one_to_one_chain() {
    let server = start(config()).await;
    let mut a = Client::login(&server, "alice").await;
    let mut b = Client::login_as(&server, "bob", None, true).await;
    let r = a.send_single("bob", "hello").await;
    let mid = r["mid"].clone();
    let m = b.push_op("message").await;
    assert_eq!(m["mid"], mid);
    assert_eq!(m["from"], "alice");
    let d = b.delivery(&mid, "alice").await;
    assert_eq!(d["op"], "received", "{d}");
    let p = a.push_op("delivery").await;
    assert_eq!(p["mid"], mid);
    let rd = b.read_single(&mid, "alice").await;
    assert_eq!(rd["op"], "received");
    let p = a.push_op("read").await;
    assert_eq!(p["onlineState"], 1);
    let pong = a.request(json!({"op":"ping"})).await;
    assert_eq!(pong["op"], "pong");
    server.stop().await.unwrap();
}
