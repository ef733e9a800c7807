//! Ctrl-C and SIGTERM: the first asks the run to stop sending, drain briefly and write a
//! complete results folder marked interrupted; the second exits at once (stopping a child
//! server first), leaving what was already written (the interval log is on disk second by
//! second).
//!
//! One watcher thread per process turns signals into a flag the runner polls.

use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The first signal received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Signals received so far.
static COUNT: AtomicU32 = AtomicU32::new(0);
/// A child server to stop before exiting at once (0: none).
static CHILD: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();

/// Starts watching SIGINT and SIGTERM (once per process; later calls do nothing).
pub fn install() {
    INSTALL.call_once(|| {
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
            tracing::warn!("cannot watch SIGINT/SIGTERM: Ctrl-C will end runs without results");
            return;
        };
        let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
            for sig in signals.forever() {
                let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                if COUNT.fetch_add(1, Ordering::SeqCst) == 0 {
                    eprintln!(
                        "\ninterrupted: stopping traffic, draining briefly and writing results (again to quit at once)"
                    );
                } else {
                    stop_child();
                    eprintln!("\ninterrupted twice: exiting now; results written so far are kept");
                    std::process::exit(exit_code(sig).into());
                }
            }
        });
        if spawned.is_err() {
            tracing::warn!("cannot start the signal watcher: Ctrl-C will end runs without results");
        }
    });
}

/// The signal that interrupted the run, if one did.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The conventional exit code of a process ended by `sig` (130 for SIGINT, 143 for SIGTERM).
pub fn exit_code(sig: i32) -> u8 {
    (128 + sig).clamp(0, 255) as u8
}

/// Resolves once a signal has come.
pub async fn wait() {
    while requested().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Remembers the child server to kill on a second signal (`None` forgets it).
pub fn set_child(pid: Option<u32>) {
    CHILD.store(pid.map_or(0, |p| p as i32), Ordering::SeqCst);
}

fn stop_child() {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) with a pid we started; at worst the process is already gone.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(SIGINT), 130);
        assert_eq!(exit_code(SIGTERM), 143);
    }
}
