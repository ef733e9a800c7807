//! The live progress line: elapsed, users connected, messages per second and p99s, refreshed
//! every second (a plain line every five seconds when stderr is not a terminal).

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::collector::{Event, Sink, Snapshot};
use crate::profile::Plan;

/// Stops the progress task when told (or dropped).
pub struct Progress {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Progress {
    /// Clears the line and stops refreshing.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn line(s: &Snapshot, users: u64) -> String {
    format!(
        "users {}/{users} | msgs {} ({}/s) | server_ack p99 {:.1}ms | read_receipt p99 {:.1}ms | lag p99 {:.1}ms | errors {}",
        s.connected,
        s.messages,
        s.messages_last_sec,
        s.server_ack_p99,
        s.read_receipt_p99,
        s.schedule_lag_p99,
        s.errors
    )
}

fn snapshot(sink: &Sink) -> Snapshot {
    let (tx, rx) = mpsc::channel();
    if sink.send(Event::Snapshot(tx)).is_err() {
        return Snapshot::default();
    }
    rx.recv_timeout(Duration::from_millis(200)).unwrap_or_default()
}

/// Starts refreshing the line on the current (System) arbiter; `show` false keeps quiet.
pub fn spawn(sink: Sink, start: Instant, plan: &Plan, run_end: Duration) -> Progress {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let users = plan.local_peak_users() * plan.population.devices_per_user;
    let tty = std::io::stderr().is_terminal();
    let show = plan.tester.progress;
    let total = run_end.as_secs().max(1);
    actix_rt::spawn(async move {
        let bar = if show && tty {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:20}] {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            Some(bar)
        } else {
            None
        };
        let mut tick = actix_rt::time::interval(Duration::from_secs(1));
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            n += 1;
            if !show {
                continue;
            }
            let s = snapshot(&sink);
            match &bar {
                Some(bar) => {
                    bar.set_position(start.elapsed().as_secs().min(total));
                    bar.set_message(line(&s, users));
                }
                None if n.is_multiple_of(5) => {
                    eprintln!("[{:>5.1}s] {}", start.elapsed().as_secs_f64(), line(&s, users))
                }
                None => {}
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    });
    Progress { stop: Some(stop) }
}
