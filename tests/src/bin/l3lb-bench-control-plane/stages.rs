//! Where each change's time went: the daemon logs one `pass stages` line per pass (target
//! `l3lb::timing`, monotonic timestamps), and each change is lined up with the pass that applied
//! it: the first pass that started after the change was written and before its address event.
use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One pass as the daemon logged it: every numeric field of its line.
#[derive(Debug, Clone, Default)]
pub struct Pass(BTreeMap<String, u64>);

impl Pass {
    pub fn get(&self, field: &str) -> u64 {
        self.0.get(field).copied().unwrap_or(0)
    }

    fn ms(&self, field: &str) -> f64 {
        self.get(field) as f64 / 1e3
    }
}

/// Drops ANSI colour sequences (ESC [ ... letter).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every `pass stages` line of the daemon's log, in order.
pub fn parse(log: &str) -> Vec<Pass> {
    log.lines()
        .map(plain)
        .filter(|l| l.contains("pass stages"))
        .map(|l| {
            let fields = l
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_owned(), v.parse::<u64>().ok()?)))
                .collect();
            Pass(fields)
        })
        .collect()
}

/// One change: when the benchmark wrote it and when the kernel announced its address (monotonic
/// ns).
#[derive(Debug, Clone, Copy)]
pub struct Change {
    pub written_ns: u64,
    pub seen_ns: u64,
}

/// The stages of each change, in milliseconds, by stage name; changes no pass lines up with
/// are left out (counted in the return's second value).
pub fn breakdown(changes: &[Change], passes: &[Pass]) -> (BTreeMap<&'static str, Vec<f64>>, usize) {
    let mut out: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut unmatched = 0;
    for c in changes {
        let Some(p) = passes.iter().find(|p| {
            let (first, started) = (p.get("first_change_ns"), p.get("started_ns"));
            first >= c.written_ns && started <= c.seen_ns && p.get("steps") > 0
        }) else {
            unmatched += 1;
            continue;
        };
        let first = p.get("first_change_ns");
        let ms = |ns: u64| ns as f64 / 1e6;
        // The pass's own work up to its address requests; what follows until the kernel's event
        // reached the benchmark is the address step.
        let before_addresses = ["desired_us", "observe_us", "plan_us", "maps_us"]
            .iter()
            .map(|f| p.get(f) * 1_000)
            .sum::<u64>();
        let address_started = p.get("started_ns") + before_addresses;
        let rows: [(&'static str, f64); 10] = [
            ("total", ms(c.seen_ns.saturating_sub(c.written_ns))),
            ("watch", ms(first.saturating_sub(c.written_ns))),
            ("wait", p.ms("wait_us")),
            ("desired", p.ms("desired_us")),
            ("observe", p.ms("observe_us")),
            ("plan", p.ms("plan_us")),
            ("maps", p.ms("maps_us")),
            ("address", ms(c.seen_ns.saturating_sub(address_started))),
            ("netlink_all", p.ms("netlink_us")),
            ("after", p.ms("record_us") + p.ms("events_us")),
        ];
        for (stage, v) in rows {
            out.entry(stage).or_default().push(v);
        }
    }
    for v in out.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    (out, unmatched)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or(f64::NAN)
}

/// The order stages are printed in, with what each one is.
pub const LEGEND: [(&str, &str); 10] = [
    ("total", "change written -> address event seen"),
    ("watch", "change written -> the daemon's watch has it"),
    ("wait", "watch has it -> pass starts"),
    ("desired", "pools, node facts, desired state"),
    ("observe", "reading the node (passes without a record)"),
    ("plan", "plan (and renewals)"),
    ("maps", "eBPF map writes"),
    ("address", "address requests sent -> event seen"),
    (
        "netlink_all",
        "every address request of the pass, to its ack",
    ),
    ("after", "record, metrics, Events (delays the next change)"),
];

/// p50/p99/max per stage, as JSON and as printed rows.
pub fn summary(stages: &BTreeMap<&'static str, Vec<f64>>) -> (Value, Vec<String>) {
    let mut json = serde_json::Map::new();
    let mut rows = Vec::new();
    for (stage, what) in LEGEND {
        let Some(v) = stages.get(stage) else { continue };
        let (p50, p99, max) = (
            percentile(v, 0.5),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(f64::NAN),
        );
        json.insert(
            stage.to_owned(),
            json!({"p50_ms": p50, "p99_ms": p99, "max_ms": max}),
        );
        rows.push(format!(
            "  {stage:<12} {p50:>8.3} {p99:>8.3} {max:>8.3}  {what}"
        ));
    }
    (Value::Object(json), rows)
}

/// The first pass's stages (the first sync), in seconds, as JSON.
pub fn first_pass(passes: &[Pass], daemon_started_ns: u64) -> Value {
    let Some(p) = passes.iter().find(|p| p.get("steps") > 0) else {
        return Value::Null;
    };
    let s = |f: &str| p.get(f) as f64 / 1e6;
    json!({
        "lists_s": p.get("started_ns").saturating_sub(daemon_started_ns) as f64 / 1e9,
        "desired_s": s("desired_us"),
        "observe_s": s("observe_us"),
        "plan_s": s("plan_us"),
        "maps_s": s("maps_us"),
        "netlink_s": s("netlink_us"),
        "record_s": s("record_us"),
        "events_s": s("events_us"),
        "steps": p.get("steps"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_up_changes_with_the_pass_that_applied_them() {
        let log = "\u{1b}[2m2025\u{1b}[0m DEBUG reconcile{pass=1 full=false}: l3lb::timing: pass stages \
            first_change_ns=0 started_ns=100 steps=5 desired_us=1\n\
            x DEBUG l3lb::timing: pass stages first_change_ns=2000000 started_ns=2500000 \
            wait_us=500 desired_us=100 observe_us=0 plan_us=200 maps_us=300 netlink_us=900 \
            record_us=10 events_us=20 steps=2 full=false\n";
        let passes = parse(log);
        assert_eq!(passes.len(), 2);
        let change = Change {
            written_ns: 1_000_000,
            seen_ns: 4_000_000,
        };
        let (stages, unmatched) = breakdown(&[change], &passes);
        assert_eq!(unmatched, 0);
        assert_eq!(stages["total"], [3.0]);
        assert_eq!(stages["watch"], [1.0]);
        assert_eq!(stages["wait"], [0.5]);
        // Address requests started at 2.5 + 0.6 ms; the event came at 4 ms.
        assert!((stages["address"][0] - 0.9).abs() < 1e-9);
        assert_eq!(first_pass(&passes, 0)["steps"], 5);
    }
}
