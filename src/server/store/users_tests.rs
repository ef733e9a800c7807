//! Tests of the user records and the caps that span users.

use super::*;
use crate::server::store::OfflineMessage;

fn limits(total: usize, user: usize) -> StoreLimits {
    StoreLimits {
        offline_total_bytes: total,
        offline_user_bytes: user,
        conversations: 8,
        ..StoreLimits::default()
    }
}

fn push(users: &mut Users, user: &str, mid: u64, holds: &mut MessageTable) {
    holds.hold(mid);
    users.with_inbox(user, Inbox::User, mid, holds, |p, l| {
        p.push_message(
            l,
            OfflineMessage {
                mid,
                chat_type: ChatType::Single,
                frame: "x".repeat(36).into(), // 100 bytes charged
            },
        )
    });
}

#[test]
fn the_per_user_cap_drops_that_users_oldest() {
    let mut holds = MessageTable::new(usize::MAX, usize::MAX);
    let mut users = Users::new(limits(usize::MAX, 250));
    users.login("u", 0, &mut holds);
    for mid in 1..=3 {
        push(&mut users, "u", mid, &mut holds);
    }
    let batch = users.take("u", Inbox::User, &mut holds);
    assert_eq!(batch.messages.iter().map(|m| m.mid).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(users.drops.cause[DropCause::UserBytes as usize], 1);
    assert_eq!(users.total, 0);
}

#[test]
fn the_total_cap_evicts_never_seen_users_whole_and_oldest_first() {
    let mut holds = MessageTable::new(usize::MAX, usize::MAX);
    let total = 3 * (UNSEEN_USER_BYTES + 100);
    let mut users = Users::new(limits(total, usize::MAX));
    users.login("real", 0, &mut holds);
    push(&mut users, "real", 1, &mut holds);
    for (i, ghost) in ["g1", "g2", "g3", "g4"].into_iter().enumerate() {
        push(&mut users, ghost, 2 + i as u64, &mut holds);
    }
    // real's message (the oldest thing) went first, then g1 whole.
    assert!(users.get("g1").is_none());
    assert!(users.get("g2").is_some() && users.get("g4").is_some());
    assert_eq!(users.take("real", Inbox::User, &mut holds).messages.len(), 0);
    let (records, unseen, bytes, drops) = users.stats();
    assert_eq!((records, unseen, bytes), (4, 3, total));
    assert_eq!(
        (drops.users_evicted, drops.cause[DropCause::TotalBytes as usize]),
        (1, 2)
    );
    // A ghost who logs in is kept from then on, and is no longer charged for its record.
    users.login("g2", 9, &mut holds);
    assert_eq!(users.stats().2, total - UNSEEN_USER_BYTES);
    assert!(users.index.iter().all(|(_, u)| users.map.contains_key(u)));
    assert_eq!(users.index.len(), 3, "g2 (its message), g3, g4");
}

#[test]
fn ids_beyond_each_senders_floor_go_oldest_first_across_senders() {
    let mut holds = MessageTable::new(usize::MAX, usize::MAX);
    let mut users = Users::new(StoreLimits {
        sent_ids_total: 5,
        ..StoreLimits::default()
    });
    let retention = Retention {
        keep: 2,
        max: 100,
        cutoff: 0,
    };
    let record = |time| SentRecord {
        mid: time,
        to: Arc::from("x"),
        time,
        group_ack: None,
    };
    let mut early = 0;
    for (user, id, time) in [
        ("a", "a1", 1),
        ("a", "a2", 2),
        ("a", "a3", 3),
        ("b", "b1", 4),
        ("b", "b2", 5),
    ] {
        users.login(user, 0, &mut holds);
        early += users.remember_sent(user, id, record(time), retention, 0, &mut holds);
    }
    assert_eq!((users.sent_ids(), early), (5, 0));
    // One more: a's oldest (beyond its floor of 2) goes, though b's are not older.
    early += users.remember_sent("b", "b3", record(6), retention, 0, &mut holds);
    assert_eq!((users.sent_ids(), early), (5, 1));
    let sent = |users: &Users, u: &str, id: &str| users.get(u).unwrap().sent.get(id).is_some();
    assert!(!sent(&users, "a", "a1") && sent(&users, "a", "a2") && sent(&users, "b", "b1"));
    // Everyone at the floor: the floor wins over the total.
    early += users.remember_sent("b", "b4", record(7), retention, 0, &mut holds);
    assert_eq!((users.sent_ids(), early), (5, 2));
    users.remember_sent("a", "a4", record(8), retention, 0, &mut holds);
    assert_eq!(users.sent_ids(), 5);
    assert!(
        !sent(&users, "a", "a2"),
        "a's oldest beyond the floor went: older than b's"
    );
    users.login("c", 0, &mut holds);
    users.remember_sent("c", "c1", record(9), retention, 0, &mut holds);
    users.remember_sent("c", "c2", record(10), retention, 0, &mut holds);
    assert_eq!(users.sent_ids(), 6, "a, b and c at their floors of 2");
}

#[test]
fn conversations_are_trimmed_to_the_most_recent() {
    let mut holds = MessageTable::new(usize::MAX, usize::MAX);
    let mut users = Users::new(limits(usize::MAX, usize::MAX));
    users.login("u", 0, &mut holds);
    for mid in 1..=9 {
        let peer: UserId = Arc::from(format!("p{mid}"));
        users.note_message("u", &peer, mid, true, mid, &mut holds);
    }
    assert_eq!(users.get("u").unwrap().single.len(), 9, "within the slack");
    let peer: UserId = Arc::from("p10");
    users.note_message("u", &peer, 10, true, 10, &mut holds);
    let convs = users.conversations("u", &FxHashMap::default());
    let ids: Vec<&str> = convs.iter().map(|c| &*c.id).collect();
    assert_eq!(ids, ["p10", "p9", "p8", "p7", "p6", "p5", "p4", "p3"]);
    assert_eq!(users.drops.conversations, 2);
}
