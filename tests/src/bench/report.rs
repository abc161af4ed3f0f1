//! The markdown report and its section in docs/benchmarks.md.

use std::path::Path;

use pwf_tests::repo_root;

use crate::measure::{cpu, rps, Environment, Quantiles, Sample, ENVOY_CPU, LOAD_CPU};
use crate::suite::{Comparison, Suite, Variant};
use crate::Args;

pub const DOCS: &str = "docs/benchmarks.md";

pub struct Measured<'a> {
    pub variant: &'a Variant,
    pub wasm_bytes: Option<u64>,
    pub samples: Vec<Sample>,
    pub memory: Memory,
}

/// What one variant's Envoy held: peak RSS (`VmHWM`, KiB) after start-up
/// and verification and after the runs, and the suite's histograms read
/// after the runs.
#[derive(Debug, Default)]
pub struct Memory {
    pub hwm_before_kib: Option<u64>,
    pub hwm_after_kib: Option<u64>,
    pub histograms: Vec<(String, Option<Quantiles>)>,
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The docs section of one suite, between begin/end markers.
pub fn section<'a>(
    key: &str,
    suite: &Suite,
    measured: &'a [Measured<'a>],
    args: &Args,
    env: &Environment,
) -> String {
    let find = |name: &str| measured.iter().find(|m| m.variant.name == name);
    let (base, floor) = (find(&suite.baseline), find(&suite.floor));
    // Ratios are medians of per-round ratios: the variants of one round ran
    // seconds apart, so slow drifts of the machine's speed cancel out.
    let ratio = |m: &Measured, of: Option<&Measured>, f: fn(&Sample) -> f64| {
        of.map_or("–".into(), |of| {
            let rs = m.samples.iter().zip(&of.samples).map(|(a, b)| f(a) / f(b));
            format!("{:.2}×", median(rs.collect()))
        })
    };

    let mut s = format!(
        "{}\n## {}\n\n{}\n\n",
        begin_marker(key),
        suite.title,
        suite.description
    );
    // With body variants (`net_of`), each row compares with the no-filter
    // variant of its own body size (a no-filter variant with itself).
    let per_body = measured.iter().any(|m| m.variant.net_of.is_some());
    let base_of = |m: &'a Measured<'a>| -> Option<&'a Measured<'a>> {
        if !per_body {
            return base;
        }
        match &m.variant.net_of {
            Some(of) => find(of),
            None => Some(m),
        }
    };
    let b = if per_body {
        "no filter (same body)"
    } else {
        suite.baseline.as_str()
    };
    // The floor column only when it differs from the baseline.
    let with_floor = suite.floor != suite.baseline;
    s += &format!(
        "| variant | what | .wasm size | req/s | req/s vs {b} | CPU µs/req (min–max) | CPU vs {b} |{}\n\
         |---|---|--:|--:|--:|--:|--:|{}\n",
        if with_floor {
            format!(" CPU vs {} |", suite.floor)
        } else {
            String::new()
        },
        if with_floor { "--:|" } else { "" },
    );
    for m in measured {
        let cpus: Vec<f64> = m.samples.iter().map(cpu).collect();
        let lo = cpus.iter().copied().fold(f64::MAX, f64::min);
        let hi = cpus.iter().copied().fold(f64::MIN, f64::max);
        let size = m
            .wasm_bytes
            .map_or("–".into(), |b| format!("{:.1} KiB", b as f64 / 1024.0));
        s += &format!(
            "| {} | {} | {size} | {:.0} | {} | {:.2} ({lo:.2}–{hi:.2}) | {} |{}\n",
            m.variant.name,
            m.variant.description,
            median(m.samples.iter().map(rps).collect()),
            ratio(m, base_of(m), rps),
            median(cpus),
            ratio(m, base_of(m), cpu),
            if with_floor {
                format!(" {} |", ratio(m, floor, cpu))
            } else {
                String::new()
            },
        );
    }
    s += "\n";
    s += &throughput(suite, measured);
    s += &memory(suite, measured);
    s += &comparisons(suite, measured);
    for note in &suite.notes {
        s += &format!("- {note}\n");
    }
    if !suite.notes.is_empty() {
        s += "\n";
    }
    s += &format!(
        "Measured {date} on {cpus} × {model} (Linux {kernel}), Envoy {envoy}. \
         Envoy `--concurrency {c}` pinned to CPU {ec}, {wrk} (1 thread, {conns} connections) \
         pinned to CPU {lc}. {runs} runs per variant, interleaved round-robin, each {d} s \
         after {w} s of warm-up; medians, and ratios are medians of the per-round ratios. CPU is the Envoy process's on-CPU time (all threads, \
         `/proc/<pid>/task/*/schedstat`) divided by completed requests.\n\n\
         Reproduce: `make bench BENCH_ARGS=\"--suite {key}\"` \
         (builds the modules, then `cargo run -q -p pwf-tests --bin bench -- --suite {key}`)\n{end}\n",
        date = env.date,
        cpus = env.cpus,
        model = env.cpu_model,
        kernel = env.kernel,
        envoy = env.envoy,
        c = 1,
        ec = ENVOY_CPU,
        wrk = env.wrk,
        conns = args.connections_for(suite),
        lc = LOAD_CPU,
        runs = args.runs,
        d = args.duration,
        w = args.warmup,
        end = end_marker(key),
    );
    s
}

/// The table of the suite's `comparisons` (empty without any): per-round
/// ratios of one variant to another, their median and range, and the goal.
pub fn comparisons(suite: &Suite, measured: &[Measured]) -> String {
    if suite.comparisons.is_empty() {
        return String::new();
    }
    let find = |name: &str| {
        measured
            .iter()
            .find(|m| m.variant.name == name)
            .unwrap_or_else(|| panic!("comparison names no variant {name}"))
    };
    let general: Vec<&Comparison> = suite
        .comparisons
        .iter()
        .filter(|c| c.min_mb_per_s_ratio.is_none())
        .collect();
    if general.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "| comparison | what | req/s ratio (min–max) | CPU µs/req ratio (min–max) | goal | |\n\
         |---|---|--:|--:|--:|---|\n",
    );
    for c in general {
        let (a, b) = (find(&c.variant), find(&c.against));
        let ratios = |f: fn(&Sample) -> f64| -> Vec<f64> {
            a.samples
                .iter()
                .zip(&b.samples)
                .map(|(x, y)| f(x) / f(y))
                .collect()
        };
        let summary = |rs: &[f64]| {
            let lo = rs.iter().copied().fold(f64::MAX, f64::min);
            let hi = rs.iter().copied().fold(f64::MIN, f64::max);
            format!("{:.2}× ({lo:.2}–{hi:.2})", median(rs.to_vec()))
        };
        let (rps_ratios, cpu_ratios) = (ratios(rps), ratios(cpu));
        // Each goal is judged on the median of the per-round ratios.
        let mut goals = Vec::new();
        let mut met = true;
        if let Some(min) = c.min_rps_ratio {
            goals.push(format!("req/s ≥ {min:.2}×"));
            met &= median(rps_ratios.clone()) >= min;
        }
        if let Some(max) = c.max_cpu_ratio {
            goals.push(format!("CPU ≤ {max:.2}×"));
            met &= median(cpu_ratios.clone()) <= max;
        }
        let (goal, verdict) = match (goals.is_empty(), met) {
            (true, _) => ("–".to_owned(), "reported"),
            (false, true) => (goals.join(", "), "**met**"),
            (false, false) => (goals.join(", "), "**missed**"),
        };
        s += &format!(
            "| `{}` vs `{}` | {} | {} | {} | {goal} | {verdict} |\n",
            c.variant,
            c.against,
            c.what,
            summary(&rps_ratios),
            summary(&cpu_ratios),
        );
    }
    s + "\n"
}

/// `min (lo–hi)` of values, with the median first.
fn summary(xs: &[f64], digits: usize) -> String {
    let lo = xs.iter().copied().fold(f64::MAX, f64::min);
    let hi = xs.iter().copied().fold(f64::MIN, f64::max);
    format!(
        "{:.digits$} ({lo:.digits$}–{hi:.digits$})",
        median(xs.to_vec())
    )
}

/// Per round: the filter's own CPU per body (µs; the variant's CPU per
/// request minus its `net_of` variant's) and its MB/s (body bytes per µs
/// of that CPU = 10^6 bytes per second). A round whose difference is not
/// positive (noise) gives infinite MB/s.
pub fn net_rounds(m: &Measured, measured: &[Measured]) -> Option<(Vec<f64>, Vec<f64>)> {
    let (of, bytes) = (m.variant.net_of.as_ref()?, m.variant.body_bytes?);
    let base = measured.iter().find(|b| &b.variant.name == of)?;
    let net: Vec<f64> = m
        .samples
        .iter()
        .zip(&base.samples)
        .map(|(a, b)| cpu(a) - cpu(b))
        .collect();
    let mbps = net
        .iter()
        .map(|&us| {
            if us > 0.0 {
                bytes as f64 / us
            } else {
                f64::INFINITY
            }
        })
        .collect();
    Some((net, mbps))
}

/// The throughput table (variants with `net_of`) and the MB/s comparisons;
/// empty for suites without them.
pub fn throughput(suite: &Suite, measured: &[Measured]) -> String {
    let rows: Vec<(&Measured, Vec<f64>, Vec<f64>)> = measured
        .iter()
        .filter_map(|m| net_rounds(m, measured).map(|(net, mbps)| (m, net, mbps)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "| variant | body | filter CPU µs per body (min–max) | MB/s per core (min–max) | goal | |\n\
         |---|--:|--:|--:|--:|---|\n",
    );
    for (m, net, mbps) in &rows {
        let bytes = m.variant.body_bytes.unwrap_or_default();
        let (goal, verdict) = match m.variant.min_mb_per_s {
            Some(min) if median(mbps.clone()) >= min => (format!("≥ {min:.0} MB/s"), "**met**"),
            Some(min) => (format!("≥ {min:.0} MB/s"), "**missed**"),
            None => ("–".to_owned(), "reported"),
        };
        s += &format!(
            "| {} | {} | {} | {} | {goal} | {verdict} |\n",
            m.variant.name,
            human_bytes(bytes as f64),
            summary(net, 1),
            summary(mbps, 0),
        );
    }
    s += "\n";
    let pairs: Vec<&Comparison> = suite
        .comparisons
        .iter()
        .filter(|c| c.min_mb_per_s_ratio.is_some())
        .collect();
    if pairs.is_empty() {
        return s;
    }
    s += "| comparison | what | MB/s ratio (min–max) | goal | |\n|---|---|--:|--:|---|\n";
    let mbps_of = |name: &str| {
        rows.iter()
            .find(|(m, _, _)| m.variant.name == name)
            .map(|(_, _, mbps)| mbps)
            .unwrap_or_else(|| panic!("comparison names no variant with net_of: {name}"))
    };
    for c in pairs {
        let ratios: Vec<f64> = mbps_of(&c.variant)
            .iter()
            .zip(mbps_of(&c.against))
            .map(|(a, b)| a / b)
            .collect();
        let min = c.min_mb_per_s_ratio.unwrap_or_default();
        let verdict = if median(ratios.clone()) >= min {
            "**met**"
        } else {
            "**missed**"
        };
        s += &format!(
            "| `{}` vs `{}` | {} | {}× | ≥ {min:.2}× | {verdict} |\n",
            c.variant,
            c.against,
            c.what,
            summary(&ratios, 2),
        );
    }
    s + "\n"
}

/// The memory table: the suite's histograms (P99 / max) and Envoy's peak
/// RSS; empty for suites without `histograms`.
pub fn memory(suite: &Suite, measured: &[Measured]) -> String {
    if suite.histograms.is_empty() {
        return String::new();
    }
    let mut s = String::from("| variant |");
    for h in &suite.histograms {
        s += &format!(" `{h}` P99 / max |");
    }
    s += " Envoy peak RSS after the runs | growth over the runs |\n|---|";
    s += &"--:|".repeat(suite.histograms.len() + 2);
    s += "\n";
    let kib = |k: Option<u64>| k.map_or("–".into(), |k| human_bytes(k as f64 * 1024.0));
    for m in measured {
        s += &format!("| {} |", m.variant.name);
        for (_, q) in &m.memory.histograms {
            s += &match q {
                Some(q) => format!(" {} / {} |", human_bytes(q.p99), human_bytes(q.max)),
                None => " – |".to_owned(),
            };
        }
        let growth = match (m.memory.hwm_before_kib, m.memory.hwm_after_kib) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        s += &format!(" {} | {} |\n", kib(m.memory.hwm_after_kib), kib(growth));
    }
    s + "\n"
}

/// Bytes as B, KiB or MiB.
pub fn human_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

pub fn begin_marker(key: &str) -> String {
    format!("<!-- bench:{key}:begin (generated by `make bench`; edits inside are overwritten) -->")
}

pub fn end_marker(key: &str) -> String {
    format!("<!-- bench:{key}:end -->")
}

/// Replaces (or appends) the suite's section of docs/benchmarks.md, keeping
/// everything else.
pub fn update_docs(key: &str, section: &str) {
    let path = repo_root().join(DOCS);
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| DOCS_HEADER.to_owned());
    write(&path, &splice(&old, key, section));
}

pub fn splice(old: &str, key: &str, section: &str) -> String {
    let (begin, end) = (begin_marker(key), end_marker(key));
    match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!(
                "{}{}{}",
                &old[..b],
                section.trim_end(),
                &old[e + end.len()..]
            )
        }
        _ => format!("{}\n\n{}", old.trim_end(), section),
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

const DOCS_HEADER: &str = "# Benchmarks

Measured with `make bench` (`tests/src/bin/bench.rs`): every suite in
`bench/suites/` runs its variants (configs in `bench/configs/`) in a real
Envoy under wrk load. See [bench/README.md](../bench/README.md) for the
method. Each suite's section below is rewritten when that suite runs; the
rest of this file is kept as it is.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    fn variant(json: serde_json::Value) -> Variant {
        serde_json::from_value(json).unwrap()
    }

    fn samples(cpus: &[f64]) -> Vec<Sample> {
        cpus.iter()
            .map(|&c| Sample {
                rps: 1e6 / c,
                cpu_us_per_req: c,
            })
            .collect()
    }

    #[test]
    fn throughput_is_body_bytes_per_us_of_the_filters_own_cpu() {
        let base = variant(
            serde_json::json!({"name": "base", "description": "", "config": "x",
            "body_bytes": 1_000_000}),
        );
        let fast = variant(
            serde_json::json!({"name": "fast", "description": "", "config": "x",
            "body_bytes": 1_000_000, "net_of": "base", "min_mb_per_s": 150.0}),
        );
        let slow = variant(
            serde_json::json!({"name": "slow", "description": "", "config": "x",
            "body_bytes": 1_000_000, "net_of": "base"}),
        );
        let m = |v, cpus: &[f64]| Measured {
            variant: v,
            wasm_bytes: None,
            samples: samples(cpus),
            memory: Memory::default(),
        };
        // Rounds: base 1000/1100/900 µs; fast +5000/+4000/+6000; slow +20000 each.
        let measured = vec![
            m(&base, &[1000.0, 1100.0, 900.0]),
            m(&fast, &[6000.0, 5100.0, 6900.0]),
            m(&slow, &[21000.0, 21100.0, 20900.0]),
        ];
        let (net, mbps) = net_rounds(&measured[1], &measured).unwrap();
        assert_eq!(net, vec![5000.0, 4000.0, 6000.0]);
        assert_eq!(mbps, vec![200.0, 250.0, 1e6 / 6000.0]);
        assert!(net_rounds(&measured[0], &measured).is_none());

        let suite: Suite = serde_json::from_value(serde_json::json!({
            "title": "t", "description": "d", "variants": [],
            "comparisons": [{"variant": "fast", "against": "slow", "what": "w",
                "min_mb_per_s_ratio": 3.0}]
        }))
        .unwrap();
        let table = throughput(&suite, &measured);
        assert!(
            table.contains("| fast | 976.6 KiB | 5000.0 (4000.0–6000.0) | 200 (167–250) | ≥ 150 MB/s | **met** |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| slow | 976.6 KiB | 20000.0 (20000.0–20000.0) | 50 (50–50) | – | reported |"
            ),
            "{table}"
        );
        // Per-round ratios 4, 5, 3.33: median 4.
        assert!(
            table.contains("| `fast` vs `slow` | w | 4.00 (3.33–5.00)× | ≥ 3.00× | **met** |"),
            "{table}"
        );
        // The MB/s goal is not repeated in the req/s and CPU comparisons.
        assert_eq!(comparisons(&suite, &measured), "");
    }

    #[test]
    fn quantiles_come_from_the_cumulative_values() {
        let stats = serde_json::json!({"stats": [{"name": "x", "value": 1}, {"histograms": {
        "supported_quantiles": [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100],
        "computed_quantiles": [
            {"name": "other", "values": []},
            {"name": "h", "values": [
                {"interval": null, "cumulative": 1}, {"interval": null, "cumulative": 2},
                {"interval": null, "cumulative": 3}, {"interval": null, "cumulative": 4},
                {"interval": null, "cumulative": 5}, {"interval": null, "cumulative": 6},
                {"interval": null, "cumulative": 17000}, {"interval": null, "cumulative": 8},
                {"interval": null, "cumulative": 9}, {"interval": null, "cumulative": 33000}
            ]}
        ]}}]});
        assert_eq!(
            crate::measure::quantiles(&stats, "h"),
            Some(Quantiles {
                p99: 17000.0,
                max: 33000.0
            })
        );
        assert_eq!(crate::measure::quantiles(&stats, "missing"), None);
    }

    #[test]
    fn splice_replaces_only_its_own_section() {
        let a = format!("{}\nA1\n{}\n", begin_marker("a"), end_marker("a"));
        let b = format!("{}\nB\n{}\n", begin_marker("b"), end_marker("b"));
        let doc = splice(&splice("# T\n", "a", &a), "b", &b) + "hand-written\n";
        let a2 = a.replace("A1", "A2");
        let updated = splice(&doc, "a", &a2);
        assert_eq!(updated, doc.replace("A1", "A2"));
        assert!(updated.starts_with("# T\n\n<!-- bench:a:begin"));
        assert!(updated.ends_with(&format!("{}\nhand-written\n", end_marker("b"))));
    }
}
