//! Settling tests: records past the audit horizon judged and dropped, receipts after that
//! late (however late where they may come any time), and what the end cut short.

use super::tests::{ALICE, BOB, CAROL, accept, key, login, ms, push, receipt, send, state};
use super::*;
use crate::collector::{ReceiptKind, ReqKind};
use crate::transport::Chat;

#[test]
fn records_past_the_horizon_are_settled_and_dropped() {
    let mut s = state(1);
    s.horizon = ms(100);
    login(&mut s, ALICE, 0, 0);
    login(&mut s, BOB, 0, 0);
    let m1 = key(ALICE, 1);
    send(&mut s, m1, Chat::Single, BOB, 0);
    accept(&mut s, m1, BOB, 1, ms(1));
    push(&mut s, BOB, 0, m1, 1, ms(2));
    s.settle_before(ms(50));
    assert_eq!(s.msgs.len(), 0);
    assert!(
        s.by_mid.is_empty() && s.unlearned.is_empty(),
        "indexes are dropped with it"
    );
    // Its receipt, after it was settled: late, not unexpected.
    receipt(&mut s, ALICE, 0, ReceiptKind::Delivery, 1, BOB, None, ms(200));
    let f = s.finish();
    let d = &f.audit.by_kind["delivery"];
    assert_eq!((d.late, d.unexpected), (1, 0));
    assert_eq!(f.audit.by_kind["message"].arrived, 1);
}

/// Receipts that may come any time after their message settled are late, however late: a
/// member reading a group message after minutes, the delivery receipt of an offline replay.
/// An id the run never sent stays unexpected.
#[test]
fn receipts_long_after_the_horizon_are_late_not_unexpected() {
    let mut s = state(1);
    s.horizon = ms(100);
    for u in [ALICE, BOB, CAROL] {
        login(&mut s, u, 0, 0);
    }
    let (g1, m2) = (key(ALICE, 1), key(ALICE, 2));
    send(&mut s, g1, Chat::Group, 0, 0);
    accept(&mut s, g1, 0, 7, ms(1));
    send(&mut s, m2, Chat::Single, BOB, 0);
    accept(&mut s, m2, BOB, 9, ms(1));
    for t in 1..=10 {
        s.tick(ms(100 * t), None);
    }
    assert_eq!(s.msgs.len(), 0, "settled ten horizons ago");
    receipt(&mut s, ALICE, 0, ReceiptKind::GroupRead, 7, BOB, Some(1), ms(1000));
    receipt(&mut s, ALICE, 0, ReceiptKind::GroupRead, 8, BOB, Some(1), ms(1000));
    push(&mut s, BOB, 0, m2, 9, ms(1000));
    receipt(&mut s, ALICE, 0, ReceiptKind::Delivery, 9, BOB, None, ms(1001));
    let f = s.finish();
    let (g, d) = (&f.audit.by_kind["group_read"], &f.audit.by_kind["delivery"]);
    assert_eq!((g.late, g.unexpected), (1, 1));
    assert_eq!((d.late, d.unexpected), (1, 0));
    assert_eq!(f.audit.by_kind["message"].late, 1);
}

#[test]
fn what_is_missing_at_the_end_within_the_slowest_arrival_is_lost_at_end() {
    let mut s = state(1);
    login(&mut s, ALICE, 0, 0);
    login(&mut s, BOB, 0, 0);
    // The slowest arrival of the run: 3 s.
    let slow = key(ALICE, 1);
    send(&mut s, slow, Chat::Single, BOB, 0);
    accept(&mut s, slow, BOB, 1, ms(1));
    push(&mut s, BOB, 0, slow, 1, ms(3_000));
    // Never arrives, sent 9 s before the end: lost, and no slower than anything that came.
    let old = key(ALICE, 2);
    send(&mut s, old, Chat::Single, BOB, ms(1_000));
    accept(&mut s, old, BOB, 2, ms(1_001));
    // Never arrives, sent 2 s before the end: lost, though it may only be late.
    let recent = key(ALICE, 3);
    send(&mut s, recent, Chat::Single, BOB, ms(8_000));
    accept(&mut s, recent, BOB, 3, ms(8_001));
    // Two pings unanswered when bob stops: one written 9 s before the end, one 1 s before.
    for left in [ms(1_000), ms(9_000)] {
        s.fold(Event::Unanswered {
            user: BOB,
            kind: ReqKind::Ping,
            in_disconnect: false,
            left,
        });
    }
    s.tick(ms(10_000), None);
    let f = s.finish();
    let m = &f.audit.by_kind["message"];
    assert_eq!((m.expected, m.arrived, m.lost, m.lost_at_end), (3, 1, 2, 1));
    let r = &f.audit.by_kind["reply"];
    assert_eq!((r.lost, r.lost_at_end), (2, 1));
    assert_eq!((f.audit.total.lost, f.audit.total.lost_at_end), (4, 2));
}
