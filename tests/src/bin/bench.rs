//! `make bench`: throughput and Envoy CPU per request of filter variants in a
//! real Envoy, driven by wrk. See `bench/README.md` for the method.
//!
//! Suites are data: `bench/suites/<suite>.json` lists the variants (an Envoy
//! config each, in `bench/configs/`), the request wrk sends and what each
//! variant must do to it (checked before anything is measured). Results are
//! printed as a markdown table and written to that suite's section of
//! `docs/benchmarks.md`.
//!
//! ```text
//! bench [--suite NAME|FILE.json ...] [--runs N] [--duration SECS]
//!       [--warmup SECS] [--connections N] [--no-docs]
//! ```

#[path = "../bench/fixtures.rs"]
mod fixtures;
#[path = "../bench/measure.rs"]
mod measure;
#[path = "../bench/report.rs"]
mod report;
#[path = "../bench/suite.rs"]
mod suite;
#[path = "../bench/tokens.rs"]
mod tokens;

use pwf_tests::Envoy;

use measure::{
    cpu_ns, histogram, pin, status_kib, steal_ticks, wasm_bytes, which, wrk, Environment, Sample,
    ENVOY_CPU, LOAD_CPU,
};
use report::{section, update_docs, Measured, Memory, DOCS};
use suite::{all_suites, request_of, verify, Request, Services};
use tokens::Pools;

const USAGE: &str = "usage: bench [--suite NAME|FILE.json ...] [--runs N] [--duration SECS] \
[--warmup SECS] [--connections N] [--no-docs]
  --suite        a suite in bench/suites/ (repeatable; default: all of them)
  --runs         measured runs per variant, interleaved round-robin (default 5)
  --duration     seconds per measured run (default 3)
  --warmup       seconds of unmeasured load before each run (default 1)
  --connections  wrk connections (default: the suite's `connections`, else 64; wrk uses 1 thread)
  --no-docs      print the table only, leave docs/benchmarks.md alone";

#[derive(Debug)]
struct Args {
    suites: Vec<String>,
    runs: usize,
    duration: u64,
    warmup: u64,
    /// None: the suite's `connections`, else DEFAULT_CONNECTIONS.
    connections: Option<u32>,
    docs: bool,
}

const DEFAULT_CONNECTIONS: u32 = 64;

impl Args {
    /// wrk connections for `suite`: the flag, else the suite's, else 64.
    fn connections_for(&self, suite: &suite::Suite) -> u32 {
        self.connections
            .or(suite.connections)
            .unwrap_or(DEFAULT_CONNECTIONS)
    }
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            suites: Vec::new(),
            runs: 5,
            duration: 3,
            warmup: 1,
            connections: None,
            docs: true,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
            };
            let number = |v: String| -> u64 {
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| fail(&format!("{flag}: not a positive integer: {v}")))
            };
            match flag.as_str() {
                "--suite" => args.suites.push(value()),
                "--runs" => args.runs = number(value()) as usize,
                "--duration" => args.duration = number(value()),
                "--warmup" => args.warmup = value().parse().unwrap_or_else(|_| fail("--warmup")),
                "--connections" => args.connections = Some(number(value()) as u32),
                "--no-docs" => args.docs = false,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => fail(&format!("unknown argument {other}")),
            }
        }
        if args.suites.is_empty() {
            args.suites = all_suites();
        }
        args
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("bench: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn main() {
    let args = Args::parse();
    assert!(
        which("wrk"),
        "wrk not found on PATH: `apt-get install -y wrk` (make bench does this)"
    );
    assert!(which("taskset"), "taskset not found on PATH (util-linux)");
    let env = Environment::probe();
    // Keep this process (and the echo upstream) off Envoy's CPU.
    pin(std::process::id(), LOAD_CPU);
    // Response bodies some configs serve (generated, not committed).
    fixtures::write_dlp_fixtures(&pwf_tests::repo_root());
    for name in &args.suites {
        run_suite(name, &args, &env);
    }
}

fn run_suite(name: &str, args: &Args, env: &Environment) {
    let (key, suite) = suite::load(name);
    eprintln!("== suite {key}: {}", suite.title);

    // Tokens are minted (and wrk scripts written) before any Envoy runs.
    let mut pools = Pools::new();
    let requests: Vec<Request> = suite
        .variants
        .iter()
        .map(|v| request_of(&suite, v, &mut pools))
        .collect();

    // Services (the test IdP) start first and stop after the Envoys.
    let services = Services::start(&suite);
    // All Envoys run for the whole suite; one at a time is under load.
    let envoys: Vec<Envoy> = suite
        .variants
        .iter()
        .map(|v| {
            let envoy = services.envoy(&v.config).start();
            pin(envoy.pid(), ENVOY_CPU);
            envoy
        })
        .collect();
    for ((v, request), envoy) in suite.variants.iter().zip(&requests).zip(&envoys) {
        verify(&suite, v, request, envoy, &services);
        eprintln!("verified {}", v.name);
    }

    let mut measured: Vec<Measured> = suite
        .variants
        .iter()
        .zip(&envoys)
        .map(|(v, e)| Measured {
            variant: v,
            wasm_bytes: wasm_bytes(e),
            samples: Vec::new(),
            memory: Memory {
                hwm_before_kib: status_kib(e.pid(), "VmHWM"),
                ..Memory::default()
            },
        })
        .collect();
    let n = measured.len();
    let connections = args.connections_for(&suite);
    // A run during which the hypervisor ran something else on Envoy's CPU
    // for more than this share of the time is measured again (at most
    // MAX_ATTEMPTS times in all): stolen time shows as Envoy's CPU time.
    const MAX_STEAL_PERCENT: f64 = 2.0;
    const MAX_ATTEMPTS: u32 = 3;
    for round in 0..args.runs {
        for k in 0..n {
            // rotate the order so no variant always follows the same one
            let i = (k + round) % n;
            let v = measured[i].variant;
            let request = &requests[i];
            let envoy = &envoys[i];
            if args.warmup > 0 {
                wrk(envoy.port(), request, args.warmup, connections);
            }
            let mut attempt = 1;
            let s = loop {
                let before = cpu_ns(envoy.pid());
                let steal_before = steal_ticks(ENVOY_CPU);
                let run = wrk(envoy.port(), request, args.duration, connections);
                let cpu = cpu_ns(envoy.pid()) - before;
                // Ticks are 1/100 s: ticks per second are a percentage.
                let steal =
                    steal_ticks(ENVOY_CPU).saturating_sub(steal_before) as f64 / run.seconds;
                let s = Sample {
                    rps: run.requests as f64 / run.seconds,
                    cpu_us_per_req: cpu as f64 / 1000.0 / run.requests as f64,
                };
                let again = steal > MAX_STEAL_PERCENT && attempt < MAX_ATTEMPTS;
                eprintln!(
                    "run {}/{} {:<24} {:>9.0} req/s {:>7.2} CPU-us/req  steal {steal:>4.1}% of CPU {ENVOY_CPU}{}",
                    round + 1,
                    args.runs,
                    v.name,
                    s.rps,
                    s.cpu_us_per_req,
                    if again { ": measured again" } else { "" }
                );
                if !again {
                    break s;
                }
                attempt += 1;
            };
            measured[i].samples.push(s);
        }
    }
    for (m, envoy) in measured.iter_mut().zip(&envoys) {
        m.memory.hwm_after_kib = status_kib(envoy.pid(), "VmHWM");
        m.memory.histograms = suite
            .histograms
            .iter()
            .map(|name| (name.clone(), histogram(envoy, name)))
            .collect();
    }
    drop(envoys);
    drop(services);

    let section = section(&key, &suite, &measured, args, env);
    println!("{section}");
    if args.docs {
        update_docs(&key, &section);
        eprintln!("updated {DOCS} (section {key})");
    }
}
