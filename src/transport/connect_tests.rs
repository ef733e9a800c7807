//! Tests of target URLs, resolution and connecting (nothing here dials anything but loopback).

use super::*;

fn parsed(url: &str) -> (bool, String, u16) {
    let t = TargetUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    (t.tls, t.host, t.port)
}

#[test]
fn any_host_port_and_path_of_ws_and_wss_is_accepted() {
    assert_eq!(parsed("ws://127.0.0.1:9400/ws"), (false, "127.0.0.1".into(), 9400));
    assert_eq!(parsed("wss://localhost:8443/ws"), (true, "localhost".into(), 8443));
    assert_eq!(
        parsed("wss://chat.example.com/im/socket?v=2"),
        (true, "chat.example.com".into(), 443)
    );
    assert_eq!(parsed("ws://chat.example.com"), (false, "chat.example.com".into(), 80));
    assert_eq!(parsed("WSS://[::1]:9400/ws"), (true, "::1".into(), 9400));
    assert_eq!(
        TargetUrl::parse("wss://[::1]:9400/ws").unwrap().authority(),
        "[::1]:9400"
    );
}

#[test]
fn bad_urls_say_what_is_wrong() {
    for (url, says) in [
        ("http://127.0.0.1:9400/ws", "ws:// or wss://"),
        ("127.0.0.1:9400", "not a URL"),
        ("ws:///ws", "no host"),
        ("ws://:9400/ws", "no host"),
        ("ws://127.0.0.1:0/ws", "port \"0\""),
        ("ws://127.0.0.1:65536/ws", "port \"65536\""),
        ("wss://host:abc/ws", "port \"abc\""),
        ("ws://127.0.0.1:/ws", "port \"\""),
        ("ws://::1:9400/ws", "brackets"),
        ("ws://[::1/ws", "closing ]"),
        ("ws://u:p@host/ws", "target.secret"),
        ("ws://bad_host!/ws", "not a host name"),
    ] {
        let e = TargetUrl::parse(url).expect_err(url);
        assert!(e.contains(says), "{url}: {e}");
    }
}

#[test]
fn xmpp_targets_are_tcp_without_a_path_or_websocket() {
    let t = TargetUrl::parse_xmpp("xmpp://chat.example.com").unwrap();
    assert_eq!(
        (t.scheme, t.tls, t.host.as_str(), t.port),
        (Scheme::Xmpp, false, "chat.example.com", 5222)
    );
    let t = TargetUrl::parse_xmpp("XMPP://[::1]:15222/").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 15222));
    let t = TargetUrl::parse_xmpp("wss://xmpp.example.com/xmpp-websocket").unwrap();
    assert_eq!((t.scheme, t.tls, t.port), (Scheme::Wss, true, 443));
    assert_eq!(
        TargetUrl::parse_xmpp("ws://127.0.0.1:15280/ws").unwrap().scheme,
        Scheme::Ws
    );
    for (url, says) in [
        ("xmpp://host:5222/path", "no path"),
        ("http://host/ws", "xmpp://, ws:// or wss://"),
        ("xmpp://user@host", "JIDs are user@domain"),
        ("xmpp://host:0", "port \"0\""),
        ("xmpp://", "no host"),
    ] {
        let e = TargetUrl::parse_xmpp(url).expect_err(url);
        assert!(e.contains(says), "{url}: {e}");
    }
    let e = TargetUrl::parse("xmpp://host").unwrap_err();
    assert!(e.contains("ws:// or wss://"), "a native target is WebSocket only: {e}");
    let endpoint = Endpoint::resolve_target(
        TargetUrl::parse_xmpp("xmpp://127.0.0.1").unwrap(),
        &TlsOptions::default(),
    )
    .unwrap();
    assert!(!endpoint.is_tls() && endpoint.scheme() == Scheme::Xmpp);
    assert_eq!(endpoint.addrs(), ["127.0.0.1:5222".parse().unwrap()]);
}

#[test]
fn names_resolve_once_and_only_loopback_counts_as_loopback() {
    let local = Endpoint::resolve("ws://localhost:9/ws", &TlsOptions::default()).unwrap();
    assert!(local.is_loopback() && !local.is_tls());
    assert!(local.addrs().iter().all(|a| a.port() == 9));
    // An IP literal resolves without a lookup; nothing connects here.
    let remote = Endpoint::resolve(
        "wss://192.0.2.7/ws",
        &TlsOptions {
            ca_file: None,
            insecure: true,
        },
    )
    .unwrap();
    assert!(!remote.is_loopback() && remote.is_tls());
    assert_eq!(remote.addrs(), ["192.0.2.7:443".parse().unwrap()]);
    let e = Endpoint::resolve("http://localhost/ws", &TlsOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("bad target URL"), "{e}");
}

/// Upgrades against a server that answers the request with `answer(accept key)`.
async fn upgrade_against(answer: impl FnOnce(String) -> Vec<u8>) -> Result<WebSocketStream<Stream>, TransportError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let endpoint = Endpoint::resolve(&url, &TlsOptions::default()).unwrap();
    let server = async {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            assert!(socket.read_buf(&mut request).await.unwrap() > 0);
        }
        let request = String::from_utf8(request).unwrap();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("a key");
        socket
            .write_all(&answer(derive_accept_key(key.as_bytes())))
            .await
            .unwrap();
        socket
    };
    let (ws, _socket) = tokio::join!(endpoint.websocket(None, WebSocketConfig::default()), server);
    ws.map(|(ws, _)| ws)
}

fn switching(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

#[tokio::test]
async fn the_upgrade_keeps_frames_sent_right_behind_the_response() {
    use futures_util::StreamExt;
    let mut ws = upgrade_against(|accept| {
        let mut answer = switching(&accept).into_bytes();
        answer.extend_from_slice(&[0x81, 2, b'h', b'i']);
        answer
    })
    .await
    .unwrap();
    let msg = ws.next().await.unwrap().unwrap();
    assert_eq!(msg.into_text().unwrap().as_str(), "hi");
}

#[tokio::test]
async fn a_refused_upgrade_says_why() {
    for (answer, says) in [
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
            "404 Not Found",
        ),
        (switching("bm90IHRoZSBrZXk="), "Sec-WebSocket-Accept"),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n".to_string(),
            "Upgrade: websocket",
        ),
    ] {
        let e = upgrade_against(|_| answer.into_bytes())
            .await
            .expect_err(says)
            .to_string();
        assert!(e.starts_with("websocket handshake failed") && e.contains(says), "{e}");
    }
}

#[tokio::test]
async fn a_refused_address_falls_back_to_the_next_one() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    // A port just freed: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut endpoint = Endpoint::resolve(&format!("ws://{open}/ws"), &TlsOptions::default()).unwrap();
    endpoint.addrs = vec![closed, open];
    let (stream, _) = endpoint.stream(Some(Ipv4Addr::new(127, 0, 0, 1))).await.unwrap();
    assert!(matches!(stream, Either::Left(_)));
    assert_eq!(
        endpoint.preferred.load(Relaxed),
        1,
        "the address that answered goes first"
    );
}

#[tokio::test]
async fn connections_leave_from_the_source_address_they_are_given() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let source = Ipv4Addr::new(127, 0, 0, 2);
    let mut kept = Vec::new();
    for _ in 0..20 {
        let client = connect_tcp(addr, Some(source)).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), IpAddr::V4(source));
        assert_eq!(client.local_addr().unwrap(), peer);
        kept.push(client);
    }
    // Toward a destination that is not loopback the source is left to the system; here, with no
    // source, the system's choice for loopback.
    let client = connect_tcp(addr, None).await.unwrap();
    let (_, peer) = listener.accept().await.unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    drop(client);
}
