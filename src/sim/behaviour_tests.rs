//! Strategy and schedule tests of the behaviour state machine, driven by hand-fed time.

use super::*;
use crate::profile::{self, Delay};

const SEC: Micros = 1_000_000;

/// How user 0 reads unless a test says otherwise: everything, after a fixed 100 ms, opening
/// conversations almost at once and keeping them open for a long time.
const READS_ALL: &str = r#"open = "1000s"
away = "1us"
read_probability = 1.0
read_delay = { dist = "fixed", value = "100ms" }"#;

/// A plan whose user 0 reads as [`READS_ALL`] says, unless `extra` says otherwise.
fn setup(strategy: &str, extra: &str) -> (Arc<SimConfig>, Arc<World>) {
    setup_reading(strategy, READS_ALL, extra)
}

/// A plan whose user 0 reads as `reading` (the `[reading]` keys) says.
fn setup_reading(strategy: &str, reading: &str, extra: &str) -> (Arc<SimConfig>, Arc<World>) {
    let text = format!(
        r#"
[run]
duration = "100s"
seed = 3
[population]
users = 10
contacts = 3
[groups]
count = 1
size_min = 10
size_max = 10
[traffic]
one_to_one_per_min = 0
group_per_min = 0
[reading]
{reading}
{extra}
[acks]
strategy = "{strategy}"
debounce = "1s"
"#
    );
    let plan = profile::parse(std::path::Path::new("t.toml"), &text, &[]).unwrap();
    let world = Arc::new(World::build(&plan));
    (Arc::new(SimConfig::new(&plan, 100 * SEC, 110 * SEC)), world)
}

fn key(seq: u64) -> MsgKey {
    MsgKey {
        sender: 1,
        seq: u32::try_from(seq).unwrap(),
    }
}

fn count(actions: &[Action], f: impl Fn(&Action) -> bool) -> usize {
    actions.iter().filter(|a| f(a)).count()
}

fn read_acks(a: &[Action]) -> usize {
    count(a, |a| matches!(a, Action::ReadAck { .. }))
}

fn channel_acks(a: &[Action]) -> usize {
    count(a, |a| matches!(a, Action::ChannelAck { .. }))
}

fn reads(a: &[Action]) -> usize {
    count(a, |a| matches!(a, Action::Read { .. }))
}

/// Three messages arrive before the user opens the conversation, one more while it is open.
fn scenario(strategy: &str) -> (Vec<Action>, Vec<Action>) {
    let (cfg, world) = setup(strategy, "");
    let mut u = UserSim::new(0, cfg, world);
    let mut before = Vec::new();
    let peer = Conv::Peer(1);
    for seq in 1..=3 {
        u.on_message(0, MsgId::from(seq), key(seq), peer, false, &mut before);
    }
    u.advance(SEC, &mut before);
    let mut after = Vec::new();
    u.on_message(2 * SEC, MsgId::from(4), key(4), peer, false, &mut after);
    u.advance(5 * SEC, &mut after);
    (before, after)
}

#[test]
fn per_message_acks_every_read_and_never_the_channel() {
    let (before, after) = scenario("per_message");
    assert_eq!((reads(&before), read_acks(&before), channel_acks(&before)), (3, 3, 0));
    assert_eq!((reads(&after), read_acks(&after), channel_acks(&after)), (1, 1, 0));
}

#[test]
fn channel_acks_once_on_open_and_nothing_while_open() {
    let (before, after) = scenario("channel");
    assert_eq!((reads(&before), read_acks(&before), channel_acks(&before)), (3, 0, 1));
    assert_eq!((reads(&after), read_acks(&after), channel_acks(&after)), (1, 0, 0));
}

#[test]
fn a_channel_ack_names_the_newest_message_that_had_arrived() {
    let (before, _) = scenario("channel");
    let newest: Vec<_> = before
        .iter()
        .filter_map(|a| match a {
            Action::ChannelAck { newest, .. } => Some(newest.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(newest, [Some((MsgId::from(3), key(3)))]);
}

#[test]
fn hybrid_channel_acks_on_open_and_read_acks_while_open() {
    let (before, after) = scenario("hybrid");
    assert_eq!((reads(&before), read_acks(&before), channel_acks(&before)), (3, 0, 1));
    assert_eq!((reads(&after), read_acks(&after), channel_acks(&after)), (1, 1, 0));
}

#[test]
fn debounced_coalesces_reads_while_open_into_one_channel_ack() {
    let (cfg, world) = setup("debounced", "");
    let mut u = UserSim::new(0, cfg, world);
    let peer = Conv::Peer(1);
    let mut out = Vec::new();
    u.on_message(0, MsgId::from(1), key(1), peer, false, &mut out);
    u.advance(SEC, &mut out);
    assert_eq!(channel_acks(&out), 1, "channel ack on opening with an unread message");
    out.clear();
    for (i, t) in [2 * SEC, 2 * SEC + 300_000, 2 * SEC + 600_000].into_iter().enumerate() {
        u.on_message(t, MsgId::from(10 + i as u64), key(10 + i as u64), peer, false, &mut out);
    }
    u.advance(3 * SEC, &mut out);
    assert_eq!(
        (reads(&out), channel_acks(&out)),
        (3, 0),
        "still inside the quiet window"
    );
    u.advance(4 * SEC, &mut out);
    assert_eq!((read_acks(&out), channel_acks(&out)), (0, 1), "one ack for three reads");
}

#[test]
fn group_reads_ack_per_message_only_when_receipts_are_kept() {
    for strategy in ["per_message", "channel", "hybrid", "debounced"] {
        let (cfg, world) = setup(strategy, "always_open = true");
        let mut u = UserSim::new(0, cfg, world);
        let mut out = Vec::new();
        u.on_message(0, MsgId::from(1), key(1), Conv::Group(0), true, &mut out);
        u.on_message(0, MsgId::from(2), key(2), Conv::Group(0), false, &mut out);
        u.advance(SEC, &mut out);
        assert_eq!(reads(&out), 1, "{strategy}: only reads an ack can cover count");
        assert_eq!(read_acks(&out), 1, "{strategy}: only the message with receipts");
        assert_eq!(
            channel_acks(&out),
            0,
            "{strategy}: group chats have per-message acks only"
        );
        assert!(
            out.iter()
                .all(|a| !matches!(a, Action::ReadAck { mid, .. } if *mid == MsgId::from(2)))
        );
    }
}

#[test]
fn read_decisions_are_pure_and_follow_the_probability() {
    let (cfg, _) = setup("hybrid", "");
    let mut cfg = Arc::try_unwrap(cfg).unwrap();
    cfg.read_probability = 0.3;
    cfg.read_delay = Delay::Exp(std::time::Duration::from_secs(1));
    let decisions: Vec<Option<Micros>> = (0..4000).map(|s| cfg.read_decision(key(s), 7)).collect();
    let again: Vec<Option<Micros>> = (0..4000).map(|s| cfg.read_decision(key(s), 7)).collect();
    assert_eq!(decisions, again);
    let read = decisions.iter().flatten().count() as f64 / 4000.0;
    assert!((0.26..0.34).contains(&read), "read share {read}");
    let mean = decisions.iter().flatten().sum::<Micros>() as f64 / decisions.iter().flatten().count() as f64;
    assert!((0.85e6..1.15e6).contains(&mean), "mean delay {mean}");
}

#[test]
fn same_seed_same_sends() {
    let sends = || {
        let (cfg, world) = setup("hybrid", "");
        let mut plan_cfg = Arc::try_unwrap(cfg).unwrap();
        plan_cfg.single_per_us = 10.0 / 1e6;
        let mut u = UserSim::new(2, Arc::new(plan_cfg), world);
        let mut out = Vec::new();
        u.advance(3 * SEC, &mut out);
        out.into_iter()
            .filter(|a| matches!(a, Action::Send { .. }))
            .collect::<Vec<_>>()
    };
    let a = sends();
    assert!(
        (20..=40).contains(&a.len()),
        "~30 sends in 3 s at 10/s, got {}",
        a.len()
    );
    assert_eq!(a, sends());
}

#[test]
fn traffic_stops_at_the_end_and_offline_users_come_back_to_drain() {
    let (cfg, world) = setup("hybrid", "churn = { online = \"1s\", offline = \"1000s\" }");
    let mut c = Arc::try_unwrap(cfg).unwrap();
    c.single_per_us = 5.0 / 1e6;
    c.traffic_end = 20 * SEC;
    c.acks_end = 25 * SEC;
    let mut u = UserSim::new(0, Arc::new(c), world);
    let mut out = Vec::new();
    u.advance(19 * SEC, &mut out);
    assert!(out.contains(&Action::Offline));
    assert!(!u.online());
    assert!(out.iter().any(|a| matches!(a, Action::Skipped(_))));
    out.clear();
    u.advance(30 * SEC, &mut out);
    assert_eq!(out.last(), Some(&Action::Online), "back online for the drain");
    assert!(
        out.iter().all(|a| !matches!(a, Action::Send { .. })),
        "nothing sent while offline or after the end"
    );
    assert_eq!(u.next_due(), None);
}

#[test]
fn backoff_grows_to_its_cap_and_jitter_only_shortens_it() {
    let b = Backoff {
        initial: 100,
        max: 1_000,
        multiplier: 2.0,
        jitter: 0.5,
    };
    assert_eq!(b.delay(0, 0.0), 100);
    assert_eq!(b.delay(2, 0.0), 400);
    assert_eq!(b.delay(10, 0.0), 1_000, "capped");
    assert_eq!(b.delay(2, 0.999_999), 200, "half of it randomised");
    assert_eq!(b.delay(u32::MAX, 0.0), 1_000, "no overflow");
}

#[test]
fn a_share_of_senders_ask_who_read_after_the_first_receipt() {
    let (cfg, world) = setup("per_message", "");
    assert!(
        !(0..1000).any(|s| cfg.queries_readers(MsgKey { sender: 0, seq: s })),
        "share 0"
    );
    let text = r#"
[run]
duration = "100s"
[population]
users = 10
[groups]
count = 1
size_min = 10
size_max = 10
read_users_share = 0.25
read_users_delay = "2s"
read_users_page = 7
"#;
    let plan = profile::parse(std::path::Path::new("t.toml"), text, &[]).unwrap();
    let cfg = Arc::new(SimConfig::new(&plan, 100 * SEC, 110 * SEC));
    let asked = (0..4000)
        .filter(|s| cfg.queries_readers(MsgKey { sender: 0, seq: *s }))
        .count();
    assert!((800..1200).contains(&asked), "{asked} of 4000 at 25%");
    let key = (0..)
        .map(|s| MsgKey { sender: 0, seq: s })
        .find(|k| cfg.queries_readers(*k))
        .unwrap();
    let mut u = UserSim::new(0, cfg, world);
    let mut out = Vec::new();
    u.on_first_group_receipt(SEC, key, MsgId::from(77), 0);
    u.advance(3 * SEC - 1, &mut out);
    assert!(
        !out.iter().any(|a| matches!(a, Action::ReadUsers { .. })),
        "not before the delay"
    );
    u.advance(3 * SEC, &mut out);
    assert!(out.contains(&Action::ReadUsers {
        key,
        mid: MsgId::from(77),
        group: 0,
        page: 7
    }));
}

#[test]
fn with_a_warmup_nobody_sends_before_every_user_is_in_and_warmed_up() {
    let text = r#"
[run]
duration = "100s"
seed = 3
ramp = { users_per_sec = 10 }
[population]
users = 10
contacts = 3
[groups]
count = 0
[traffic]
one_to_one_per_min = 600
group_per_min = 0
warmup = "2s"
"#;
    let plan = profile::parse(std::path::Path::new("t.toml"), text, &[]).unwrap();
    // The ramp takes 1 s, the warm-up 2 s more: the steady phase starts at 3 s.
    assert_eq!(plan.ramp_end(), std::time::Duration::from_secs(3));
    assert_eq!(plan.traffic_end(), std::time::Duration::from_secs(103));
    let cfg = Arc::new(SimConfig::new(&plan, 103 * SEC, 110 * SEC));
    let world = Arc::new(World::build(&plan));
    let sends = |a: &[Action]| count(a, |a| matches!(a, Action::Send { .. }));
    for ix in 0..10 {
        let mut u = UserSim::new(ix, cfg.clone(), world.clone());
        let mut out = Vec::new();
        u.advance(3 * SEC - 1, &mut out);
        assert_eq!(sends(&out), 0, "user {ix} sent during the warm-up");
        u.advance(13 * SEC, &mut out);
        assert!(sends(&out) > 10, "user {ix} sends at 10/s after it");
    }
}

#[test]
fn a_push_is_seen_on_the_primary_device_and_owes_a_delivery_receipt_on_every_device() {
    let (cfg, world) = setup("per_message", "");
    // Delivery receipts are on for everyone by default (population.delivery_share = 1).
    assert!(world.delivery[0]);
    let mut u = UserSim::new(0, cfg, world);
    let peer = Conv::Peer(1);
    let mut out = Vec::new();
    let mut push = |u: &mut UserSim, dev: u8, at: Micros, chat: Chat, seq: u64, seen: Option<Conv>| {
        u.on_push(
            dev,
            at,
            chat,
            MsgId::from(seq),
            seen.map(|c| (c, key(seq))),
            false,
            &mut out,
        )
    };
    // The same message on a second device and on the primary: each owes a delivery receipt,
    // and the user sees it once (on the primary).
    assert!(push(&mut u, 1, 0, Chat::Single, 1, Some(peer)));
    assert!(push(&mut u, 0, 0, Chat::Single, 1, Some(peer)));
    // Group messages get no delivery receipt; a message not of this run is owed one but not seen.
    assert!(!push(&mut u, 0, 0, Chat::Group, 2, Some(Conv::Group(0))));
    assert!(push(&mut u, 0, 0, Chat::Single, 3, None));
    // After the acks end (110 s here), nothing more is owed.
    assert!(!push(&mut u, 0, 111 * SEC, Chat::Single, 4, None));
    let mut out = Vec::new();
    u.advance(SEC, &mut out);
    // Read after 100 ms: message 1, once (the group's conversation is not the open one).
    assert_eq!((reads(&out), read_acks(&out)), (1, 1), "{out:?}");
}

#[test]
fn with_a_curve_users_send_only_while_its_factor_is_above_zero() {
    let text = r#"
[run]
duration = "100s"
seed = 3
[population]
users = 10
contacts = 3
[traffic]
one_to_one_per_min = 600
group_per_min = 0
curve = [1, 0, 3]
curve_step = "2s"
"#;
    let plan = profile::parse(std::path::Path::new("t.toml"), text, &[]).unwrap();
    let cfg = Arc::new(SimConfig::new(&plan, 100 * SEC, 110 * SEC));
    let world = Arc::new(World::build(&plan));
    let mut per_step = [0usize; 3];
    for ix in 0..10 {
        let mut u = UserSim::new(ix, cfg.clone(), world.clone());
        let mut out = Vec::new();
        u.advance(60 * SEC, &mut out);
        for a in &out {
            if let Action::Send { scheduled, .. } = a {
                per_step[((scheduled / (2 * SEC)) % 3) as usize] += 1;
            }
        }
    }
    // 10 users at 10/s for 20 s of factor 1 and 20 s of factor 3 (60 s, 10 periods).
    assert_eq!(per_step[1], 0, "{per_step:?}");
    assert!((1700..2300).contains(&per_step[0]), "{per_step:?}");
    assert!((5300..6700).contains(&per_step[2]), "{per_step:?}");
}

#[test]
fn a_message_never_to_be_read_does_not_keep_the_user_in_its_conversation() {
    // The user looks at a conversation for about a second, then away for about a second, and
    // reads half of what it sees.
    let half = r#"open = "1s"
away = "1s"
read_probability = 0.5
read_delay = { dist = "fixed", value = "100ms" }"#;
    let (cfg, world) = setup_reading("per_message", half, "");
    let mut u = UserSim::new(0, cfg.clone(), world);
    let mut out = Vec::new();
    // First, a group message the user will never read; then messages it will, from a peer.
    let never = (1..).map(key).find(|k| cfg.read_decision(*k, 0).is_none()).unwrap();
    u.on_message(
        0,
        MsgId::from(u64::from(never.seq)),
        never,
        Conv::Group(0),
        true,
        &mut out,
    );
    let will: Vec<MsgKey> = (1..)
        .map(|s| MsgKey { sender: 2, seq: s })
        .filter(|k| cfg.read_decision(*k, 0).is_some())
        .take(5)
        .collect();
    for (i, k) in will.iter().enumerate() {
        u.on_message(
            SEC / 2 + i as u64,
            MsgId::from(100 + u64::from(k.seq)),
            *k,
            Conv::Peer(2),
            false,
            &mut out,
        );
    }
    u.advance(60 * SEC, &mut out);
    let read_from_peer = count(&out, |a| matches!(a, Action::Read { conv: Conv::Peer(2) }));
    assert_eq!(read_from_peer, will.len(), "{out:?}");
}
