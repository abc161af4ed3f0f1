//! Load and measurement: wrk, Envoy's CPU time, CPU pinning, and what the
//! numbers were measured on.

use std::process::Command;

use pwf_tests::{Envoy, EnvoyBuilder};

use crate::suite::Request;

/// Envoy (all threads) runs on this CPU; wrk and the bench process on the other.
pub const ENVOY_CPU: u32 = 0;
pub const LOAD_CPU: u32 = 1;

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rps: f64,
    pub cpu_us_per_req: f64,
}

pub fn rps(s: &Sample) -> f64 {
    s.rps
}

pub fn cpu(s: &Sample) -> f64 {
    s.cpu_us_per_req
}

pub fn wasm_bytes(envoy: &Envoy) -> Option<u64> {
    let files = &envoy.rendered().wasm_files;
    (!files.is_empty()).then(|| {
        files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum()
    })
}

/// Sum of the on-CPU time (ns) of all threads of `pid`.
pub fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("Envoy (pid {pid}) is gone: {e}"))
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("schedstat")).ok())
        .map(|s| s.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Ticks (1/100 s) that the hypervisor took from `cpu` since boot (the
/// `steal` column of `/proc/stat`); 0 where the kernel does not report it.
pub fn steal_ticks(cpu: u32) -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let prefix = format!("cpu{cpu} ");
    stat.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Pins every thread of `pid` to `cpu`.
pub fn pin(pid: u32, cpu: u32) {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .output()
        .expect("run taskset");
    assert!(
        out.status.success(),
        "taskset -a -p -c {cpu} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn which(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub struct WrkRun {
    pub requests: u64,
    pub seconds: f64,
}

/// One wrk run (1 thread, pinned to LOAD_CPU); panics on any error response
/// or socket error. A single token is one more `-H` header; a pool of them
/// is rotated by its generated Lua script.
pub fn wrk(port: u16, request: &Request, secs: u64, connections: u32) -> WrkRun {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &LOAD_CPU.to_string(), "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"));
    match request.tokens.as_ref().and_then(|p| p.script.as_ref()) {
        Some(script) => {
            cmd.arg("-s").arg(script);
            for h in &request.headers {
                cmd.args(["-H", h]);
            }
        }
        None => {
            for h in request.first_headers() {
                cmd.args(["-H", &h]);
            }
        }
    }
    cmd.arg(format!("http://127.0.0.1:{port}{}", request.path));
    let out = cmd.output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors:\n{text}"
    );
    // "  123456 requests in 3.00s, 12.34MB read"
    let line = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"));
    let mut words = line.split_whitespace();
    let requests: u64 = words.next().unwrap().parse().unwrap();
    let time = words.nth(2).unwrap().trim_end_matches(',');
    let seconds = if let Some(ms) = time.strip_suffix("ms") {
        ms.parse::<f64>().unwrap() / 1000.0
    } else if let Some(m) = time.strip_suffix('m') {
        m.parse::<f64>().unwrap() * 60.0
    } else {
        time.trim_end_matches('s').parse().unwrap()
    };
    assert!(requests > 0, "wrk completed no requests:\n{text}");
    WrkRun { requests, seconds }
}

/// Where and with what the numbers were measured.
pub struct Environment {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub envoy: String,
    pub wrk: String,
    pub date: String,
}

impl Environment {
    pub fn probe() -> Environment {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown CPU".into());
        let envoy = output(Command::new(pwf_tests::envoy_bin()).arg("--version"));
        let envoy = envoy
            .split_once("version: ")
            .map_or(envoy.trim(), |(_, v)| v.trim())
            .to_owned();
        let wrk = output(Command::new("wrk").arg("-v"));
        let wrk = wrk.split(" [").next().unwrap_or("wrk").trim().to_owned();
        Environment {
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            cpu_model,
            kernel: output(Command::new("uname").arg("-r")).trim().to_owned(),
            envoy,
            wrk,
            date: output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
                .trim()
                .to_owned(),
        }
    }
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An Envoy as the bench runs it: one worker, quiet logs.
pub fn bench_envoy(config: &str) -> EnvoyBuilder {
    Envoy::builder(config)
        .concurrency(1)
        .log_level("warning")
        .component_log_level(None)
}

/// A field of `/proc/<pid>/status` in KiB, e.g. `VmHWM` (peak RSS) or `VmRSS`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// P99 and P100 (max) of a histogram over everything recorded so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    pub p99: f64,
    pub max: f64,
}

/// The cumulative P99 and max of histogram `name` from Envoy's admin
/// `/stats?format=json`; None if Envoy has no such histogram or it
/// recorded nothing. The configs set `stats_flush_on_admin`: an admin
/// request starts merging what the worker recorded, and the merge completes
/// after that request was answered, so the stats are read until the
/// histogram has values (up to 2 s).
pub fn histogram(envoy: &Envoy, name: &str) -> Option<Quantiles> {
    // `filter` is a regex; the exact name is picked from the answer.
    let path = format!("/stats?format=json&filter={name}");
    let mut found = None;
    pwf_tests::wait_until(std::time::Duration::from_secs(2), || {
        let stats = envoy.admin_get(&path).json();
        found = quantiles(&stats, name);
        // A variant without the histogram (no such filter) is done at once.
        found.is_some() || !stats.to_string().contains(&format!("\"{name}\""))
    });
    found
}

pub fn quantiles(stats: &serde_json::Value, name: &str) -> Option<Quantiles> {
    let histograms = stats["stats"]
        .as_array()?
        .iter()
        .find_map(|s| s.get("histograms"))?;
    let supported = histograms["supported_quantiles"].as_array()?;
    let at = |q: f64| supported.iter().position(|v| v.as_f64() == Some(q));
    let values = histograms["computed_quantiles"]
        .as_array()?
        .iter()
        .find(|h| h["name"] == name)?["values"]
        .as_array()?;
    let cumulative = |i: usize| values.get(i)?["cumulative"].as_f64();
    Some(Quantiles {
        p99: cumulative(at(99.0)?)?,
        max: cumulative(at(100.0)?)?,
    })
}
