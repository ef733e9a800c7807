//! The page of one run: an interrupted banner (when it was), header, verdict band, key numbers,
//! percentile curves, ack volume, the audit, injected faults, time lines (faults marked on
//! them), tables.

use minijinja::value::Serde;
use serde::Serialize;

use super::{Band, Card, Chip, Fact, Figure, HALF, SMALL, TableView, WIDE, render};
use crate::report::chart::{self, BASELINE, Bar, Marker, PALETTE, Series, YAxis, metric_color};
use crate::report::fmt;
use crate::report::model::{AckSplit, Audit, FaultReport, Report, ShardSet, TimelinePoint};
use crate::report::run_view::{self as view, ordered_latencies};
use crate::report::{ReportError, SCHEMA_VERSION};

/// The page of one run.
pub fn render_html(report: &Report) -> Result<String, ReportError> {
    let plan = &report.plan;
    let target = &report.target;
    let mut target_text = format!("{} · {} · {} protocol", target.kind, target.url, target.protocol);
    if let Some(label) = &target.label {
        target_text.push_str(&format!(" · {label}"));
    }
    let fact = |label, value| Fact { label, value };
    let users = format!(
        "{} × {} devices · {} groups",
        fmt::int(plan.users),
        plan.devices_per_user,
        fmt::int(plan.groups)
    );
    let duration = format!(
        "{} steady · {} wall",
        fmt::secs(plan.duration_secs),
        fmt::secs(report.elapsed_secs)
    );
    let offered = format!(
        "{}/s one-to-one · {}/s group",
        fmt::rate(plan.offered_one_to_one_per_sec),
        fmt::rate(plan.offered_group_per_sec)
    );
    let mut facts = vec![
        fact("target", target_text),
        fact(
            "workload",
            format!("seed {} · profile {}", plan.seed, fmt::short_hash(&plan.profile_hash)),
        ),
        fact("users", users),
        fact("started", fmt::when(&report.started_at)),
        fact("duration", duration),
        fact("offered", offered),
    ];
    if !target.not_available.is_empty() {
        facts.push(fact("not available", target.not_available.join(", ")));
    }
    let interrupted = report.interrupted.then(|| {
        format!(
            "It was stopped before its end (Ctrl-C or SIGTERM) after {} of wall time; the audit settled what \
             it could in a short drain.",
            fmt::secs(report.elapsed_secs)
        )
    });
    let page = minijinja::context! {
        report => Serde(report),
        interrupted => interrupted,
        facts => Serde(&facts),
        verdict => Serde(&verdict(report)),
        cards => Serde(&cards(report)),
        percentiles => Serde(&percentile_figures(report)?),
        acks => Serde(&ack_figure(report)?),
        timeline => Serde(&timeline_figures(report)?),
        tables => Serde(&tables(report)),
        schema_version => SCHEMA_VERSION,
    };
    render("report.html", page)
}

/// The SLO verdict: a chip per check, with what it measured.
fn verdict(report: &Report) -> Band {
    let failed = report.slo.iter().filter(|s| !s.passed).count();
    let n = report.slo.len();
    let (tone, stamp, headline) = match (n, failed) {
        (0, _) => ("none", "—", "No SLOs were checked".to_string()),
        (n, 0) => ("pass", "PASS", format!("All {n} SLOs held")),
        (n, f) => ("fail", "FAIL", format!("{f} of {n} SLOs failed")),
    };
    let unit = |check: &str| {
        if check.contains("ms") {
            " ms"
        } else if check.contains('%') {
            "%"
        } else {
            ""
        }
    };
    let chips = report
        .slo
        .iter()
        .map(|s| Chip {
            tone: if s.passed { "pass" } else { "fail" },
            mark: if s.passed { "✓" } else { "✗" },
            label: s.check.clone(),
            value: s.value.map_or("no value".to_string(), |v| {
                format!("{}{}", fmt::measured(v), unit(&s.check))
            }),
        })
        .collect();
    Band {
        tone,
        stamp: stamp.to_string(),
        headline,
        chips,
        notes: Vec::new(),
    }
}

fn cards(report: &Report) -> Vec<Card> {
    let plan = &report.plan;
    let tp = &report.throughput;
    let offered = plan.offered_one_to_one_per_sec + plan.offered_group_per_sec;
    let sent = format!("offered {}/s", fmt::rate(offered));
    let mut cards = vec![Card::new("messages / s", fmt::rate(tp.messages_per_sec), "", sent, "")];
    for metric in ["read_receipt", "read"] {
        let mut card = Card::new(metric, fmt::NONE.to_string(), "", "no samples".to_string(), "");
        if let Some(l) = report.latencies.get(metric).filter(|l| l.count > 0) {
            card.pairs = vec![("p50", fmt::ms(l.p50)), ("p99", fmt::ms(l.p99))];
            card.sub = format!("ms · {} samples", fmt::int(l.count));
        }
        cards.push(card);
    }
    let audit = &report.audit.total;
    let mut of = vec![format!("of {} owed", fmt::int(audit.expected))];
    for (n, what) in [
        (audit.lost_in_disconnect, "in disconnects"),
        (audit.duplicated, "dup"),
        (audit.unexpected, "unexp."),
    ] {
        if n > 0 {
            of.push(format!("{} {what}", fmt::int(n)));
        }
    }
    cards.push(Card::new(
        "lost",
        fmt::int(audit.lost),
        "",
        of.join(" · "),
        if audit.lost > 0 { "bad" } else { "good" },
    ));
    let total = &report.ack_economics.total;
    let (value, unit, tone) = match total.saving_pct {
        s if !s.is_finite() => (fmt::NONE.to_string(), "", ""),
        s if s >= 0.05 => (format!("{}%", fmt::num(s, 1)), "fewer", "good"),
        s if s <= -0.05 => (format!("{}%", fmt::num(-s, 1)), "more", "bad"),
        _ => ("same".to_string(), "", ""),
    };
    let per_read = format!("{} acks per message read", fmt::num(total.acks_per_read, 2));
    cards.push(Card::new("ack frames", value, unit, per_read, tone));
    let c = &report.connections;
    let mut sub = format!("{} failed · {} dropped", fmt::int(c.failed), fmt::int(c.dropped));
    if c.reconnects > 0 {
        sub.push_str(&format!(" · {} back", fmt::int(c.reconnects)));
    }
    cards.push(Card::new(
        "connections",
        fmt::int(c.achieved),
        &format!("/ {}", fmt::int(c.asked)),
        sub,
        if c.failed + c.dropped > 0 || c.achieved < c.asked {
            "bad"
        } else {
            ""
        },
    ));
    cards
}

fn percentile_figures(report: &Report) -> Result<Vec<Figure>, ReportError> {
    ordered_latencies(report)
        .into_iter()
        .map(|(name, l)| {
            let caption = format!(
                "p50 {} · p99 {} · max {} ms · {} samples",
                fmt::ms(l.p50),
                fmt::ms(l.p99),
                fmt::ms(l.max),
                fmt::int(l.count)
            );
            if l.curve.is_empty() {
                return Ok(Figure {
                    title: name.to_string(),
                    caption,
                    svg: None,
                });
            }
            let color = metric_color(name);
            let mut series = vec![Series::solid("corrected", color, &l.curve)];
            if let Some(u) = l.uncorrected.as_deref().filter(|u| !u.curve.is_empty()) {
                series.push(Series {
                    dashed: true,
                    ..Series::solid("uncorrected", color, &u.curve)
                });
            }
            let svg = chart::percentiles(&format!("percentiles of {name}"), &series, SMALL)?;
            Ok(Figure {
                title: name.to_string(),
                caption,
                svg: Some(svg),
            })
        })
        .collect()
}

fn ack_figure(report: &Report) -> Result<Figure, ReportError> {
    let econ = &report.ack_economics;
    let splits = [&econ.one_to_one, &econ.group];
    let values = |f: fn(&AckSplit) -> u64| splits.iter().map(|s| f(s) as f64).collect::<Vec<f64>>();
    let this = Bar {
        segments: vec![
            ("read acks".into(), PALETTE[0], values(|s| s.read_acks)),
            ("channel acks".into(), PALETTE[1], values(|s| s.channel_acks)),
        ],
        labels: splits.iter().map(|s| fmt::int(s.read_acks + s.channel_acks)).collect(),
    };
    let baseline = Bar {
        segments: vec![("per-message baseline".into(), BASELINE, values(|s| s.baseline_acks))],
        labels: splits.iter().map(|s| fmt::int(s.baseline_acks)).collect(),
    };
    let categories = vec!["one-to-one".to_string(), "group".to_string()];
    let notes: Vec<String> = splits
        .iter()
        .map(|s| format!("{} acks", fmt::saving(s.saving_pct)))
        .collect();
    let svg = chart::bars("ack volume", "ack frames", &categories, &[this, baseline], &notes, HALF)?;
    Ok(Figure {
        title: format!("Ack volume: {} vs one ack per message", econ.strategy),
        caption: "left bar: acks this strategy sent; right bar: one read ack per message read".into(),
        svg: Some(svg),
    })
}

/// The time lines: traffic, connections, per-second p99s and the tester's own resources, each
/// with a marker per injected fault.
fn timeline_figures(report: &Report) -> Result<Vec<Figure>, ReportError> {
    let tl = &report.timeline;
    if tl.is_empty() {
        return Ok(vec![Figure {
            title: "Over time".into(),
            caption: "no timeline recorded".into(),
            svg: None,
        }]);
    }
    let col = |f: fn(&TimelinePoint) -> f64| tl.iter().map(|p| (p.t, f(p))).collect::<Vec<_>>();
    let (msgs, acks, receipts, errors) = (
        col(|p| p.messages as f64),
        col(|p| p.acks as f64),
        col(|p| p.receipts as f64),
        col(|p| p.errors as f64),
    );
    let mut rates = vec![
        Series::solid("messages/s", PALETTE[0], &msgs),
        Series::solid("acks/s", PALETTE[1], &acks),
        Series::solid("receipts/s", PALETTE[2], &receipts),
    ];
    if tl.iter().any(|p| p.errors > 0) {
        rates.push(Series::solid("errors/s", PALETTE[5], &errors));
    }
    let connected = col(|p| p.connected as f64);
    let (lag, rr) = (col(|p| p.schedule_lag_p99), col(|p| p.read_receipt_p99));
    let p99s = [
        Series::solid("schedule_lag p99", metric_color("schedule_lag"), &lag),
        Series::solid("read_receipt p99", metric_color("read_receipt"), &rr),
    ];
    let conn = [Series::solid("connected", PALETTE[3], &connected)];
    let markers = fault_markers(report);
    Ok(vec![
        Figure {
            title: "Traffic".into(),
            caption: "per second: messages sent, read and channel acks sent, receipt pushes received".into(),
            svg: Some(chart::lines(
                "traffic over time",
                YAxis::counts("per second"),
                &rates,
                &markers,
                WIDE,
            )?),
        },
        Figure {
            title: "Connected users".into(),
            caption: "connections logged in".into(),
            svg: Some(chart::lines(
                "connections over time",
                YAxis::counts("connections"),
                &conn,
                &markers,
                WIDE,
            )?),
        },
        Figure {
            title: "p99 per second".into(),
            caption: "schedule lag is the tester's own delay; when it rises, the generator is the bottleneck".into(),
            svg: Some(chart::lines(
                "p99 per second",
                YAxis::measure("ms"),
                &p99s,
                &markers,
                WIDE,
            )?),
        },
        resources_figure(tl, &markers)?,
    ])
}

/// The tester's own memory (left axis) and CPU (right axis) per second: a generator short of
/// CPU or growing without bound shows here before its numbers go wrong. A side the platform did
/// not measure (all zero) is left out.
fn resources_figure(tl: &[TimelinePoint], markers: &[Marker]) -> Result<Figure, ReportError> {
    let rss: Vec<(f64, f64)> = tl.iter().map(|p| (p.t, p.rss_mb)).collect();
    let cpu: Vec<(f64, f64)> = tl.iter().map(|p| (p.t, p.cpu_pct)).collect();
    let peak = |s: &[(f64, f64)]| s.iter().map(|p| p.1).fold(0.0, f64::max);
    let (rss_peak, cpu_peak) = (peak(&rss), peak(&cpu));
    let title = "Tester resources".to_string();
    if rss_peak == 0.0 && cpu_peak == 0.0 {
        return Ok(Figure {
            title,
            caption: "the tester's memory and CPU were not measured on this platform".into(),
            svg: None,
        });
    }
    let mut caption = vec!["the load generator's own use, per second".to_string()];
    let mut left = Vec::new();
    let mut right = Vec::new();
    if rss_peak > 0.0 {
        left.push(Series::solid("memory (RSS, MiB, left)", PALETTE[0], &rss));
        caption.push(format!("memory peaked at {} MiB", fmt::num(rss_peak, 0)));
    }
    if cpu_peak > 0.0 {
        right.push(Series::solid("CPU (% of one core, right)", PALETTE[1], &cpu));
        caption.push(format!("CPU peaked at {}% of one core", fmt::num(cpu_peak, 0)));
    }
    caption.push("a tester near its cores' limit, or whose memory keeps growing, delays its own sends".into());
    let cpu_axis = YAxis {
        floor: 100.0,
        ..YAxis::measure("CPU, % of one core")
    };
    let svg = chart::lines_two_axes(
        "tester resources over time",
        (YAxis::measure("RSS, MiB"), &left),
        (cpu_axis, &right),
        markers,
        WIDE,
    )?;
    Ok(Figure {
        title,
        caption: caption.join(" · "),
        svg: Some(svg),
    })
}

/// A marker per injected fault, named by its kind.
fn fault_markers(report: &Report) -> Vec<Marker> {
    report
        .faults
        .iter()
        .map(|f| Marker {
            at: f.at_secs,
            over: f.over_secs,
            label: f.kind.clone(),
        })
        .collect()
}

/// The faults table, `None` without faults: a short `done` is amber, and so is `recovered` when
/// connections a `drop_connections` fault cut did not all come back.
fn faults_table(faults: &[FaultReport]) -> Option<TableView> {
    if faults.is_empty() {
        return None;
    }
    let mut t = TableView::new("Faults injected", &view::FAULT_HEAD);
    for f in faults {
        let short = f.done < f.planned;
        let unrecovered = f.kind == "drop_connections" && f.recovered < f.done;
        let marks = view::FAULT_HEAD
            .iter()
            .map(|h| match *h {
                "done" if short => "warn",
                "recovered" if unrecovered => "warn",
                _ => "",
            })
            .collect();
        t.marked(view::fault_cells(f), marks);
    }
    t.note = "at: seconds since the run started; over: the span the fault was spread across; recovered: \
              connections logged in again afterwards, with the time from the fault to that login"
        .into();
    Some(t)
}

/// A merged run's shards table, `None` for a run in one process; the clocks note below.
fn shards_table(shards: Option<&ShardSet>) -> Option<TableView> {
    let s = shards.filter(|s| !s.rows.is_empty())?;
    let mut t = TableView::new(&view::shards_line(s), &view::SHARD_HEAD);
    for r in &s.rows {
        t.row(view::shard_cells(r), false);
    }
    t.note = format!("Clocks: {}", s.clocks);
    Some(t)
}

/// The tables of a run page: the audit, then the rest by the width they are laid out at.
#[derive(Serialize)]
struct Tables {
    audit: TableView,
    /// Absent when no fault was injected.
    faults: Option<TableView>,
    /// Absent unless the run was merged from shards.
    shards: Option<TableView>,
    wide: Vec<TableView>,
    half: Vec<TableView>,
    small: Vec<TableView>,
}

/// The audit table: a row per kind with anything, lost cells marked `bad`, duplicates and
/// unexpected arrivals `warn`; columns zero in every row left out (and named in the note), a
/// legend of the columns shown, refused codes and protocol errors in the note.
fn audit_table(audit: &Audit) -> TableView {
    let t = view::audit_table(audit);
    let mut table = TableView::new("Owed against arrived", &t.heads());
    for (kind, a) in &t.rows {
        let marks = std::iter::once("")
            .chain(t.columns.iter().map(|c| match (c.head, (c.value)(a)) {
                (_, 0) => "",
                ("lost", _) => "bad",
                ("dup" | "unexpected", _) => "warn",
                _ => "",
            }))
            .collect();
        table.marked(t.cells(kind, a), marks);
    }
    let mut note = vec![format!("after a drain of {}", fmt::secs(audit.drain_secs))];
    if t.rows.is_empty() {
        note.push("nothing was owed or arrived".to_string());
    }
    if !t.omitted.is_empty() && !t.rows.is_empty() {
        note.push(format!("zero in every row, not shown: {}", t.omitted.join(", ")));
    }
    note.extend(view::audit_extras(audit));
    table.note = note.join(" · ");
    if !t.rows.is_empty() {
        table.legend = t
            .columns
            .iter()
            .map(|c| (c.head.to_string(), c.meaning.to_string()))
            .collect();
    }
    table
}

fn tables(report: &Report) -> Tables {
    let mut lat = TableView::new(
        "Latency (ms, from the scheduled send)",
        &[
            "metric",
            "count",
            "min",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "p99 uncorrected",
        ],
    );
    for (name, l) in ordered_latencies(report) {
        lat.row(view::latency_cells(name, l, true), false);
    }
    let econ = &report.ack_economics;
    let mut acks = TableView::new("Ack economics", &view::ack_head("vs baseline"));
    for cells in view::ack_rows(econ) {
        acks.row(cells, false);
    }
    acks.note = format!(
        "strategy {}; read = messages the users read; baseline = one read ack per message read",
        econ.strategy
    );

    let mut server = TableView::new("Server frames", &["op", "in", "out"]);
    match &econ.server_frames {
        Some(sf) => {
            let ops: std::collections::BTreeSet<&String> = sf.frames_in.keys().chain(sf.frames_out.keys()).collect();
            for op in ops {
                let get = |m: &std::collections::BTreeMap<String, u64>| {
                    m.get(op).map_or(fmt::NONE.to_string(), |v| fmt::int(*v))
                };
                server.row(vec![op.clone(), get(&sf.frames_in), get(&sf.frames_out)], false);
            }
            server.row(
                vec!["total".into(), fmt::int(sf.total_in), fmt::int(sf.total_out)],
                false,
            );
        }
        None => server.note = "the server exposed no ackstorm metrics".into(),
    }

    let c = &report.counters;
    let mut errors = TableView::counts("Errors", ["code", "replies"], &c.errors_by_code);
    errors.note = format!(
        "error rate {} · {} rate limited · {} unparseable",
        fmt::pct(100.0 * c.error_rate),
        fmt::int(c.rate_limited),
        fmt::int(c.unparseable)
    );
    let tp = &report.throughput;
    let conn = &report.connections;
    let mut volume = TableView::new("Volume", &["", "value"]);
    for (k, v) in [
        ("messages sent", fmt::int(tp.messages_sent)),
        ("one-to-one", fmt::int(tp.one_to_one_sent)),
        ("group", fmt::int(tp.group_sent)),
        ("skipped (offline)", fmt::int(tp.skipped_offline)),
        ("skipped (disconnected)", fmt::int(tp.skipped_disconnected)),
        ("frames sent", fmt::int(tp.frames_sent)),
        ("frames received", fmt::int(tp.frames_received)),
        ("bytes sent", fmt::bytes(tp.bytes_sent)),
        ("bytes received", fmt::bytes(tp.bytes_received)),
        ("peak connections", fmt::int(conn.peak)),
        ("reconnects", fmt::int(conn.reconnects)),
        ("requests resent", fmt::int(conn.resent)),
    ] {
        volume.row(vec![k.to_string(), v], false);
    }
    let mut small = vec![
        TableView::counts("Frames sent", ["op", "frames"], &c.frames_sent_by_op),
        TableView::counts("Frames received", ["op", "frames"], &c.frames_received_by_op),
        server,
        TableView::counts("Receipts received", ["kind", "pushes"], &c.receipts_received),
        errors,
        volume,
    ];
    if let Some(sim) = &report.simulation {
        let mut t = TableView::new("Simulated: the model and its predictions", &["", "value"]);
        for (k, v) in view::simulation_rows(sim) {
            t.row(vec![k.to_string(), v], false);
        }
        small.insert(0, t);
    }
    Tables {
        audit: audit_table(&report.audit),
        faults: faults_table(&report.faults),
        shards: shards_table(report.shards.as_ref()),
        wide: vec![lat],
        half: vec![acks],
        small,
    }
}
