//! Conformance checks of a driver against a live server: two users and one group go through
//! every step of the receipt chains the tester measures (a message and its `received`, the
//! push, delivery and read receipts, a conversation ack, a group message and its read count,
//! a polite close), each checked for what the simulation relies on. A step the driver's
//! protocol cannot give ([`Capabilities`]) is reported as not available, not as passed.
//!
//! `ackstorm conformance PROFILE` runs these against the profile's target; a team writing a
//! driver for its own server runs them before trusting a load run (docs/drivers.md). Nothing
//! here measures performance, and nothing decides behaviour: the order of steps is fixed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{
    Capabilities, Capability, Chat, Command, Connection, Driver, Inbound, LoginSpec, MsgId, Op, Outbox, Reply, Timed,
};

/// How one step went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It did what the tester relies on, in this long.
    Passed(Duration),
    /// It did not: why.
    Failed(String),
    /// The protocol cannot give it (the capability it needs).
    NotAvailable(&'static str),
    /// Not tried: an earlier step it depends on failed.
    Skipped,
}

/// One step and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The step.
    pub name: &'static str,
    /// What the tester relies on it for.
    pub meaning: &'static str,
    /// How it went.
    pub outcome: Outcome,
}

/// Who takes part: two users of the server and a group for them (created by the first user
/// where the protocol creates groups, else joined by both at login).
#[derive(Debug, Clone)]
pub struct Cast {
    /// The sender.
    pub a: Arc<str>,
    /// The recipient and reader.
    pub b: Arc<str>,
    /// A group id no earlier run used.
    pub group: Arc<str>,
    /// Makes message ids unique across runs.
    pub tag: String,
}

/// One user's connection and the events read off it but not yet matched.
struct Peer {
    out: Outbox,
    /// The connection's events, read by a task of their own: a connection is polled for as
    /// long as it lives (its writes may depend on it), whichever peer a step waits on.
    events: mpsc::UnboundedReceiver<Timed>,
    pending: VecDeque<Inbound>,
    next_req: u64,
}

impl Peer {
    fn new(conn: Connection) -> Peer {
        let (tx, events) = mpsc::unbounded_channel();
        let mut stream = conn.events;
        actix_rt::spawn(async move {
            while let Some(t) = stream.next().await {
                if tx.send(t).is_err() {
                    break;
                }
            }
        });
        Peer {
            out: conn.out,
            events,
            pending: VecDeque::new(),
            next_req: 0,
        }
    }

    fn request(&mut self, op: Op) -> u64 {
        self.next_req += 1;
        let _ = self.out.send(Command::Request { req: self.next_req, op });
        self.next_req
    }

    /// The first event (pending or new) that `pick` takes, within `wait`.
    async fn expect<T>(&mut self, wait: Duration, mut pick: impl FnMut(&Inbound) -> Option<T>) -> Result<T, String> {
        if let Some(i) = self.pending.iter().position(|e| pick(e).is_some()) {
            let e = self.pending.remove(i).expect("found");
            return Ok(pick(&e).expect("matched"));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Err(format!("nothing within {wait:?}")),
                Ok(None) => return Err("the connection ended".into()),
                Ok(Some(t)) => {
                    if let Some(v) = pick(&t.event) {
                        return Ok(v);
                    }
                    if t.event == Inbound::Closed {
                        return Err("the connection closed".into());
                    }
                    self.pending.push_back(t.event);
                }
            }
        }
    }

    /// The reply to request `req`: its [`Reply`], an error reply as a failure.
    async fn reply(&mut self, req: u64, wait: Duration) -> Result<Reply, String> {
        let reply = self
            .expect(wait, |e| match e {
                Inbound::Reply { req: Some(r), reply } if *r == req => Some(reply.clone()),
                _ => None,
            })
            .await?;
        match reply {
            Reply::Error { refusal, message } => Err(format!("refused: {}: {message}", refusal.code)),
            r => Ok(r),
        }
    }
}

/// The steps, in order, with what the tester relies on each for.
const STEPS: [(&str, &str); 10] = [
    ("login", "both users connect and log in"),
    ("create_group", "a group of both users exists"),
    ("send", "a one-to-one send is answered with its message id (server_ack)"),
    ("message", "the recipient gets the message, under the same id"),
    ("delivery", "a delivery receipt reaches the sender (delivery)"),
    ("read", "a read receipt reaches the sender (read_receipt)"),
    ("channel", "a conversation ack reaches the sender (channel)"),
    ("group_message", "a group message reaches the other member"),
    (
        "group_read",
        "a group read reaches the sender with a count of 1 (group_read_first)",
    ),
    ("close", "a polite close ends the connection"),
];

/// Runs every step against `driver`, waiting at most `wait` for each answer.
pub async fn run(driver: &dyn Driver, cast: &Cast, wait: Duration) -> Vec<Check> {
    let caps = driver.capabilities();
    let mut out: Vec<Check> = Vec::new();
    let mut record = |name: &'static str, outcome: Outcome| {
        let meaning = STEPS.iter().find(|(n, _)| *n == name).map_or("", |(_, m)| *m);
        out.push(Check { name, meaning, outcome });
    };
    let creates = caps.has(Capability::CreateGroups);
    let spec = |user: &Arc<str>| LoginSpec {
        user: user.clone(),
        device: Arc::from("conformance"),
        delivery: true,
        groups: if creates {
            Arc::from([])
        } else {
            Arc::from([cast.group.clone()])
        },
    };
    let started = Instant::now();
    let (a, b) = match futures_util::join!(driver.connect(spec(&cast.a)), driver.connect(spec(&cast.b))) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let why = [a.err(), b.err()]
                .into_iter()
                .flatten()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            record("login", Outcome::Failed(why));
            for (name, _) in &STEPS[1..] {
                record(name, Outcome::Skipped);
            }
            return out;
        }
    };
    record("login", Outcome::Passed(started.elapsed()));
    let (mut a, mut b) = (Peer::new(a), Peer::new(b));
    let group_ok = if creates {
        let t = Instant::now();
        let req = a.request(Op::CreateGroup {
            group: cast.group.clone(),
            members: vec![cast.a.clone(), cast.b.clone()],
            admins: Vec::new(),
        });
        let r = a.reply(req, wait).await.map(|_| t.elapsed());
        let ok = r.is_ok();
        record("create_group", outcome(r));
        ok
    } else {
        record("create_group", Outcome::Passed(Duration::ZERO));
        true
    };
    let steps = Steps { caps, cast, wait };
    steps.one_to_one(&mut a, &mut b, &mut record).await;
    if group_ok {
        steps.group(&mut a, &mut b, &mut record).await;
    } else {
        record("group_message", Outcome::Skipped);
        record("group_read", Outcome::Skipped);
    }
    let t = Instant::now();
    let _ = b.out.send(Command::Close);
    let _ = a.out.send(Command::Close);
    let closed = a
        .expect(wait, |e| (*e == Inbound::Closed).then_some(()))
        .await
        .map(|_| t.elapsed());
    record("close", outcome(closed));
    out
}

fn outcome(r: Result<Duration, String>) -> Outcome {
    match r {
        Ok(d) => Outcome::Passed(d),
        Err(why) => Outcome::Failed(why),
    }
}

/// What every step needs to know.
struct Steps<'a> {
    caps: Capabilities,
    cast: &'a Cast,
    wait: Duration,
}

impl Steps<'_> {
    /// Sends a message from `a` and returns the id `b` got it under (checking the send's own
    /// answer where the protocol gives one).
    async fn message(
        &self,
        a: &mut Peer,
        b: &mut Peer,
        chat: Chat,
        n: u32,
    ) -> (Result<Duration, String>, Result<MsgId, String>) {
        let body = format!("conformance {} {n}", self.cast.tag);
        let to = match chat {
            Chat::Single => self.cast.b.clone(),
            Chat::Group => self.cast.group.clone(),
        };
        let t = Instant::now();
        let req = a.request(Op::Send {
            id: format!("{}.c{n}", self.cast.tag),
            chat,
            to,
            body: body.clone(),
            allow_group_ack: chat == Chat::Group,
        });
        let mut sent = None;
        let answered = if self.caps.has(Capability::ServerAcks) {
            match a.reply(req, self.wait).await {
                Ok(Reply::Accepted { mid, .. }) => {
                    sent = Some(mid);
                    Ok(t.elapsed())
                }
                Ok(other) => Err(format!("answered {other:?}, not a message id")),
                Err(e) => Err(e),
            }
        } else {
            Ok(Duration::ZERO)
        };
        let from = self.cast.a.to_string();
        let got = b
            .expect(self.wait, |e| match e {
                Inbound::Message {
                    mid,
                    from: f,
                    chat: c,
                    body: text,
                    ..
                } if *f == from && *c == chat && *text == body => Some(mid.clone()),
                _ => None,
            })
            .await
            .and_then(|mid| match &sent {
                Some(s) if *s != mid => Err(format!("pushed as {mid}, but the send was answered with {s}")),
                _ => Ok(mid),
            });
        (answered, got)
    }

    async fn one_to_one(&self, a: &mut Peer, b: &mut Peer, record: &mut impl FnMut(&'static str, Outcome)) {
        let t = Instant::now();
        let (answered, got) = self.message(a, b, Chat::Single, 1).await;
        record(
            "send",
            match (self.caps.has(Capability::ServerAcks), answered) {
                (false, _) => Outcome::NotAvailable(Capability::ServerAcks.as_str()),
                (true, r) => outcome(r),
            },
        );
        let mid = match got {
            Ok(mid) => {
                record("message", Outcome::Passed(t.elapsed()));
                mid
            }
            Err(e) => {
                record("message", Outcome::Failed(e));
                for name in ["delivery", "read", "channel"] {
                    record(name, Outcome::Skipped);
                }
                return;
            }
        };
        let from_b = self.cast.b.to_string();
        if self.caps.has(Capability::DeliveryReceipts) {
            let t = Instant::now();
            b.request(Op::Delivery {
                mid: mid.clone(),
                to: self.cast.a.clone(),
            });
            let r = a
                .expect(self.wait, |e| match e {
                    Inbound::Delivery { mid: m, from, .. } if *m == mid && *from == from_b => Some(()),
                    _ => None,
                })
                .await;
            record("delivery", outcome(r.map(|_| t.elapsed())));
        } else {
            record("delivery", Outcome::NotAvailable(Capability::DeliveryReceipts.as_str()));
        }
        let t = Instant::now();
        b.request(Op::Read {
            chat: Chat::Single,
            mid: mid.clone(),
            to: self.cast.a.clone(),
        });
        let r = a
            .expect(self.wait, |e| match e {
                Inbound::Read {
                    mid: m,
                    from,
                    count: None,
                    ..
                } if *m == mid && *from == from_b => Some(()),
                _ => None,
            })
            .await;
        record("read", outcome(r.map(|_| t.elapsed())));
        if !self.caps.has(Capability::ChannelAcks) {
            record("channel", Outcome::NotAvailable(Capability::ChannelAcks.as_str()));
            return;
        }
        let (_, got) = self.message(a, b, Chat::Single, 2).await;
        let Ok(newest) = got else {
            record("channel", Outcome::Failed("the second message did not arrive".into()));
            return;
        };
        let t = Instant::now();
        b.request(Op::Channel {
            chat: Chat::Single,
            to: self.cast.a.clone(),
            newest: Some(newest.clone()),
        });
        // As its own push, or as the read receipt of the newest message it covers.
        let r = a
            .expect(self.wait, |e| match e {
                Inbound::Channel { from, .. } if *from == from_b => Some(()),
                Inbound::Read { mid, from, .. } if *mid == newest && *from == from_b => Some(()),
                _ => None,
            })
            .await;
        record("channel", outcome(r.map(|_| t.elapsed())));
    }

    async fn group(&self, a: &mut Peer, b: &mut Peer, record: &mut impl FnMut(&'static str, Outcome)) {
        let t = Instant::now();
        let (_, got) = self.message(a, b, Chat::Group, 3).await;
        let mid = match got {
            Ok(mid) => {
                record("group_message", Outcome::Passed(t.elapsed()));
                mid
            }
            Err(e) => {
                record("group_message", Outcome::Failed(e));
                record("group_read", Outcome::Skipped);
                return;
            }
        };
        if !self.caps.has(Capability::GroupReadCounts) {
            record(
                "group_read",
                Outcome::NotAvailable(Capability::GroupReadCounts.as_str()),
            );
            return;
        }
        let t = Instant::now();
        b.request(Op::Read {
            chat: Chat::Group,
            mid: mid.clone(),
            to: self.cast.group.clone(),
        });
        let from_b = self.cast.b.to_string();
        let r = a
            .expect(self.wait, |e| match e {
                Inbound::Read {
                    mid: m,
                    from,
                    count: Some(n),
                    ..
                } if *m == mid && *from == from_b => Some(*n),
                _ => None,
            })
            .await
            .and_then(|n| match n {
                1 => Ok(t.elapsed()),
                n => Err(format!("count {n}, expected 1")),
            });
        record("group_read", outcome(r));
    }
}

/// True when no step failed (not available and skipped-after-nothing are not failures).
pub fn passed(checks: &[Check]) -> bool {
    checks
        .iter()
        .all(|c| !matches!(c.outcome, Outcome::Failed(_) | Outcome::Skipped))
}
