//! The markdown report and its section in docs/benchmarks.md.

use std::path::Path;

use pwf_tests::repo_root;

use crate::measure::{cpu, rps, Environment, Sample, ENVOY_CPU, LOAD_CPU};
use crate::suite::{Suite, Variant};
use crate::Args;

pub const DOCS: &str = "docs/benchmarks.md";

pub struct Measured<'a> {
    pub variant: &'a Variant,
    pub wasm_bytes: Option<u64>,
    pub samples: Vec<Sample>,
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
pub fn section(
    key: &str,
    suite: &Suite,
    measured: &[Measured],
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
    s += &format!(
        "| variant | what | .wasm size | req/s | req/s vs {b} | CPU µs/req (min–max) | CPU vs {b} | CPU vs {f} |\n\
         |---|---|--:|--:|--:|--:|--:|--:|\n",
        b = suite.baseline,
        f = suite.floor
    );
    for m in measured {
        let cpus: Vec<f64> = m.samples.iter().map(cpu).collect();
        let lo = cpus.iter().copied().fold(f64::MAX, f64::min);
        let hi = cpus.iter().copied().fold(f64::MIN, f64::max);
        let size = m
            .wasm_bytes
            .map_or("–".into(), |b| format!("{:.1} KiB", b as f64 / 1024.0));
        s += &format!(
            "| {} | {} | {size} | {:.0} | {} | {:.2} ({lo:.2}–{hi:.2}) | {} | {} |\n",
            m.variant.name,
            m.variant.description,
            median(m.samples.iter().map(rps).collect()),
            ratio(m, base, rps),
            median(cpus),
            ratio(m, base, cpu),
            ratio(m, floor, cpu),
        );
    }
    s += "\n";
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
        conns = args.connections,
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
    let mut s = String::from(
        "| comparison | what | req/s ratio (min–max) | CPU µs/req ratio (min–max) | goal | |\n\
         |---|---|--:|--:|--:|---|\n",
    );
    for c in &suite.comparisons {
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
