//! `histograms.hdr`: a run's whole-run histograms, one per metric and view, in the
//! HdrHistogram V2 compressed interval-log format (what `HistogramLogProcessor` and every
//! HdrHistogram port read). Unlike the per-second `latencies.hlog`, nothing is left out:
//! late samples, metrics known only when a record settles (`group_read_all`) and the
//! uncorrected views (tag `<metric>.uncorrected`) are all here, so two results folders can be
//! added exactly and any percentile recomputed.

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use super::metric::Metric;

/// One metric's whole-run histograms (µs): corrected, and uncorrected where it has that view.
pub type MetricHistograms = (Metric, Histogram<u64>, Option<Histogram<u64>>);

const UNCORRECTED: &str = ".uncorrected";

/// The file's text: one interval per histogram, from the run's start over `elapsed`.
pub fn write(histograms: &[MetricHistograms], start_time: SystemTime, elapsed: Duration) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment("ackstorm whole-run histograms: values in microseconds; tag <metric> is corrected (from the scheduled time), <metric>.uncorrected from the actual send")
            .with_start_time(start_time)
            .with_base_time(start_time)
            .with_max_value_divisor(1000.0);
        let mut w = builder
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| e.to_string())?;
        for (m, corrected, raw) in histograms {
            let views = std::iter::once((m.name().to_string(), Some(corrected)))
                .chain(std::iter::once((format!("{}{UNCORRECTED}", m.name()), raw.as_ref())));
            for (tag, h) in views {
                let Some(h) = h.filter(|h| !h.is_empty()) else { continue };
                w.write_histogram(h, Duration::ZERO, elapsed, Tag::new(&tag))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(out)
}

/// Reads a file written by [`write`]: the histograms by metric, in [`Metric::ALL`] order
/// (a metric with no samples is absent).
pub fn read(text: &[u8]) -> Result<Vec<MetricHistograms>, String> {
    type Views = (Metric, Option<Histogram<u64>>, Option<Histogram<u64>>);
    let mut found: Vec<Views> = Vec::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(text) {
        let LogEntry::Interval(ilh) = entry.map_err(|e| format!("{e:?}"))? else {
            continue;
        };
        let tag = ilh.tag().map(|t| t.as_str().to_string()).unwrap_or_default();
        let (name, raw) = match tag.strip_suffix(UNCORRECTED) {
            Some(n) => (n.to_string(), true),
            None => (tag.clone(), false),
        };
        let metric = Metric::parse(&name).ok_or_else(|| format!("unknown metric tag {tag:?}"))?;
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, ilh.encoded_histogram())
            .map_err(|e| format!("{tag}: {e}"))?;
        let h: Histogram<u64> = de
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| format!("{tag}: {e:?}"))?;
        let slot = match found.iter_mut().find(|(m, _, _)| *m == metric) {
            Some(s) => s,
            None => {
                found.push((metric, None, None));
                found.last_mut().expect("just pushed")
            }
        };
        if raw {
            slot.2 = Some(h);
        } else {
            slot.1 = Some(h);
        }
    }
    found.sort_by_key(|(m, _, _)| *m);
    found
        .into_iter()
        .map(|(m, c, r)| match c {
            Some(c) => Ok((m, c, r)),
            None => Err(format!("{}: an uncorrected view with no corrected one", m.name())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::new_histogram;

    #[test]
    fn histograms_read_back_exactly_and_add_exactly() {
        let mut a = new_histogram();
        let mut raw = new_histogram();
        for v in [120u64, 450, 9_000, 1_200_000] {
            a.record(v).unwrap();
            raw.record(v / 2).unwrap();
        }
        let mut b = new_histogram();
        b.record(77).unwrap();
        let hs = vec![
            (Metric::ServerAck, a.clone(), Some(raw.clone())),
            (Metric::GroupReadAll, b.clone(), None),
        ];
        let text = write(
            &hs,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            Duration::from_secs(40),
        )
        .unwrap();
        let back = read(&text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, Metric::ServerAck);
        assert_eq!(back[0].1, a);
        assert_eq!(back[0].2.as_ref(), Some(&raw));
        assert_eq!(back[1].1, b);
        assert_eq!(back[1].2, None);
        let mut sum = back[0].1.clone();
        sum.add(&back[1].1).unwrap();
        assert_eq!(sum.len(), 5);
        assert_eq!(sum.max(), a.max());
        assert!(read(b"Tag=nonsense,0.0,1.0,1.0,HISTFAAAAA\n").is_err());
    }
}
