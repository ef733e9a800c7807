//! The tester's own resources, sampled once a second for the timeline, so that a reader sees
//! a generator in trouble (memory growing, a core saturated) beside the server's numbers; the
//! server's `/metrics` reports its process's CPU time from here too.
//! Linux `/proc/self`; elsewhere every sample is `None`.

use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` times: the kernel's USER_HZ, which the Linux
/// ABI fixes at 100 whatever the kernel's internal tick.
const USER_HZ: f64 = 100.0;

/// Resident memory of this process, bytes (`VmRSS` of `/proc/self/status`).
pub fn rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time this process has used (user + system), seconds.
pub fn cpu_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Successive samples: CPU use between two calls as a share of one core.
#[derive(Debug)]
pub(super) struct Sampler {
    last: Option<(Instant, f64)>,
    /// The last share measured, repeated for a sample that comes too soon after it.
    cpu: f64,
}

/// CPU time is counted in ticks of 10 ms: over less than this a share means nothing (a
/// sample right after the first read 28,000%).
const MIN_SPAN: f64 = 0.5;

impl Sampler {
    pub(super) fn new() -> Sampler {
        Sampler {
            last: cpu_secs().map(|c| (Instant::now(), c)),
            cpu: 0.0,
        }
    }

    /// (RSS in MiB, CPU % of one core since the previous sample).
    pub(super) fn sample(&mut self) -> (f64, f64) {
        let rss = rss_bytes().map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
        let now = Instant::now();
        let cpu = match (cpu_secs(), self.last) {
            (Some(c), Some((t, c0))) => {
                let wall = now.duration_since(t).as_secs_f64();
                if wall >= MIN_SPAN {
                    self.last = Some((now, c));
                    self.cpu = 100.0 * (c - c0) / wall;
                }
                self.cpu
            }
            (Some(c), None) => {
                self.last = Some((now, c));
                0.0
            }
            _ => 0.0,
        };
        (rss, cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_uses_cpu() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        assert!(rss_bytes().unwrap() > 1024 * 1024);
        let before = cpu_secs().unwrap();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_secs().unwrap() >= before);
    }

    #[test]
    fn a_sample_too_soon_repeats_the_last_share_instead_of_dividing_by_nothing() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let mut s = Sampler::new();
        // Busy for 20 ms, then sampled at once: far too short a span to mean anything.
        let t = Instant::now();
        while t.elapsed().as_millis() < 20 {
            std::hint::black_box(0u64);
        }
        let (_, cpu) = s.sample();
        assert_eq!(cpu, 0.0);
        assert!(s.cpu <= 100.0 * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64);
    }
}
