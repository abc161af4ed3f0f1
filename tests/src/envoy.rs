//! Starting, querying and validating a real Envoy.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::client::{HttpClient, RawResponse, RequestBuilder, Response};
use crate::render::{render, RenderOptions, Rendered};
use crate::stats::parse_stats_json;
use crate::{envoy_bin, repo_root, tail, wait_until, EchoUpstream};

/// How many times [`EnvoyBuilder::start`] tries when a chosen port was taken
/// by someone else in the meantime.
const START_ATTEMPTS: usize = 3;
/// How long the `wait_for_*` helpers wait.
const WAIT: Duration = Duration::from_secs(10);

/// Where the config comes from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Inline(String),
}

/// Configures an Envoy run. Create with [`Envoy::builder`] or
/// [`Envoy::builder_inline`]; finish with [`EnvoyBuilder::start`],
/// [`EnvoyBuilder::validate`] or [`EnvoyBuilder::render`].
#[derive(Debug)]
pub struct EnvoyBuilder {
    source: Source,
    opts: RenderOptions,
    concurrency: u32,
    log_level: String,
    component_log_level: Option<String>,
    extra_args: Vec<String>,
    startup_timeout: Duration,
}

impl EnvoyBuilder {
    fn new(source: Source) -> Self {
        EnvoyBuilder {
            source,
            opts: RenderOptions::default(),
            concurrency: 2,
            log_level: "info".into(),
            component_log_level: Some("wasm:debug".into()),
            extra_args: Vec::new(),
            startup_timeout: Duration::from_secs(20),
        }
    }

    /// Points every socket address with port `original` (e.g. 18000) at
    /// `upstream`.
    pub fn upstream(self, original: u16, upstream: &EchoUpstream) -> Self {
        self.port(original, upstream.port())
    }

    /// Replaces port `original` by `actual` wherever it appears in a socket
    /// address. (Unmapped ports on local addresses get free ports anyway.)
    pub fn port(mut self, original: u16, actual: u16) -> Self {
        self.opts.ports.insert(original, actual);
        self
    }

    /// Sets the plugin configuration (`configuration.value`, any text; it is
    /// not checked to be JSON) of the only wasm filter in the config (or of
    /// all of them if they share one root_id). Panics at render time if the
    /// config has wasm filters with different root_ids.
    pub fn plugin_config(mut self, json: &str) -> Self {
        self.opts.plugin_configs.push((None, json.to_owned()));
        self
    }

    /// Sets the plugin configuration of the wasm filter(s) with `root_id`.
    pub fn plugin_config_for(mut self, root_id: &str, json: &str) -> Self {
        self.opts
            .plugin_configs
            .push((Some(root_id.to_owned()), json.to_owned()));
        self
    }

    /// Edits the parsed config (after plugin configs are set, before ports
    /// and file names are rewritten).
    pub fn edit(mut self, f: impl Fn(&mut Value) + Send + Sync + 'static) -> Self {
        self.opts.edit(f);
        self
    }

    /// `--concurrency` (worker threads), default 2.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// `-l`, default `info`.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// `--component-log-level`, default `wasm:debug` (so plugin debug logs
    /// show up); `None` leaves it out.
    pub fn component_log_level(mut self, spec: Option<&str>) -> Self {
        self.component_log_level = spec.map(str::to_owned);
        self
    }

    /// An extra command-line argument for Envoy.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_owned());
        self
    }

    /// How long to wait for `/ready` (default 20 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    fn yaml(&self) -> String {
        match &self.source {
            Source::Inline(yaml) => yaml.clone(),
            Source::File(path) => std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("read Envoy config {}: {e}", path.display())),
        }
    }

    /// Renders the config (see [`crate::render()`]) without writing it.
    pub fn render(&self) -> Rendered {
        render(&self.yaml(), &self.opts)
    }

    /// Renders the config and runs `envoy --mode validate` on it.
    ///
    /// Panics if a referenced `.wasm` file is missing (so a test expecting
    /// an invalid config cannot pass because the module was never built).
    pub fn validate(&self) -> ValidateResult {
        let rendered = self.render();
        rendered.assert_wasm_built();
        let dir = TestDir::new();
        let config = dir.path().join("config.json");
        rendered.write(&config);
        let result = validate(&config);
        dir.finish(false);
        result
    }

    /// Renders the config, starts Envoy and waits until admin `/ready`
    /// answers 200 and the workers (and so the listeners) are started.
    ///
    /// Panics (with the tail of Envoy's log) if Envoy exits or is not ready
    /// within the startup timeout. If Envoy could not bind a port chosen for
    /// it, it is retried with new ports.
    pub fn start(self) -> Envoy {
        let yaml = self.yaml();
        for attempt in 1..=START_ATTEMPTS {
            let rendered = render(&yaml, &self.opts);
            rendered.assert_wasm_built();
            match self.try_start(rendered) {
                Ok(envoy) => return envoy,
                Err(StartFailure::PortInUse(log)) if attempt < START_ATTEMPTS => {
                    eprintln!("Envoy could not bind a port, retrying:\n{}", tail(&log, 5));
                }
                Err(StartFailure::PortInUse(log)) => {
                    panic!(
                        "Envoy could not bind its ports {START_ATTEMPTS} times; log tail:\n{}",
                        tail(&log, 40)
                    )
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn try_start(&self, rendered: Rendered) -> Result<Envoy, StartFailure> {
        let admin_port = rendered
            .admin_port
            .expect("the Envoy config needs an `admin.address.socket_address`");
        let dir = TestDir::new();
        let config_path = dir.path().join("config.json");
        rendered.write(&config_path);
        let log_path = dir.path().join("envoy.log");
        let log = File::create(&log_path).expect("create envoy.log");

        let mut cmd = Command::new(envoy_bin());
        cmd.current_dir(repo_root())
            .arg("-c")
            .arg(&config_path)
            .arg("--disable-hot-restart")
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["-l", &self.log_level])
            // access logs written to files show up quickly
            .args(["--file-flush-interval-msec", "100"]);
        if let Some(spec) = &self.component_log_level {
            cmd.args(["--component-log-level", spec]);
        }
        cmd.args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", envoy_bin().display()));

        let main_port = rendered
            .ports
            .get(&10000)
            .copied()
            .or_else(|| rendered.listener_ports.first().copied());
        let mut envoy = Envoy {
            child,
            dir: Some(dir),
            config_path,
            log_path,
            client: main_port.map(HttpClient::new),
            admin: HttpClient::new(admin_port),
            rendered,
        };
        envoy.wait_ready(self.startup_timeout)?;
        Ok(envoy)
    }
}

enum StartFailure {
    /// Envoy exited because a port was taken; holds the log.
    PortInUse(String),
}

/// A running Envoy, killed (SIGKILL, by PID) when dropped.
///
/// Each Envoy has its own temp dir under `<repo>/.tmp/tests/` with the
/// rendered `config.json` and `envoy.log` (stdout and stderr). The dir is
/// removed on drop unless the test is panicking or `PWF_KEEP_TMP=1`; when
/// panicking, the log tail and the dir path are printed to stderr.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: Option<TestDir>,
    config_path: PathBuf,
    log_path: PathBuf,
    client: Option<HttpClient>,
    admin: HttpClient,
    rendered: Rendered,
}

impl Envoy {
    /// A builder for the config file `path` (relative to the repo root, e.g.
    /// `envoy-configs/header-transform.yaml`, or absolute).
    pub fn builder(path: impl AsRef<Path>) -> EnvoyBuilder {
        EnvoyBuilder::new(Source::File(repo_root().join(path)))
    }

    /// A builder for an inline YAML config (same rendering rules as files).
    pub fn builder_inline(yaml: &str) -> EnvoyBuilder {
        EnvoyBuilder::new(Source::Inline(yaml.to_owned()))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), StartFailure> {
        let deadline = Instant::now() + timeout;
        let probe = self.admin.clone();
        let mut ready = false;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on Envoy") {
                let log = self.log();
                if log.contains("Address already in use") {
                    return Err(StartFailure::PortInUse(log));
                }
                panic!(
                    "Envoy exited during startup ({status}); config {}; log tail:\n{}",
                    self.config_path.display(),
                    tail(&log, 40)
                );
            }
            // `/ready` turns LIVE when initialization is done, slightly
            // before the listeners listen and the workers start. The
            // `listener_manager.workers_started` gauge becomes 1 once every
            // listener socket listens and has been added to every worker.
            if !ready {
                ready = probe
                    .req("GET", "/ready")
                    .try_send()
                    .is_ok_and(|r| r.status == 200);
            }
            if ready && self.workers_started() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "Envoy not ready after {timeout:?} (admin /ready ok: {ready}); config {}; log tail:\n{}",
                    self.config_path.display(),
                    tail(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn workers_started(&self) -> bool {
        self.admin
            .req(
                "GET",
                "/stats?format=json&filter=listener_manager.workers_started",
            )
            .try_send()
            .is_ok_and(|r| {
                r.status == 200
                    && parse_stats_json(&r.text()).get("listener_manager.workers_started")
                        == Some(&1)
            })
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port of the main listener (the one configured as 10000, else the
    /// first listener).
    pub fn port(&self) -> u16 {
        self.client().port()
    }

    /// The actual port that replaced `original` in the config (e.g. 10001
    /// for a second listener).
    pub fn port_of(&self, original: u16) -> u16 {
        self.rendered.port(original)
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin.port()
    }

    /// The rendered config and its port map.
    pub fn rendered(&self) -> &Rendered {
        &self.rendered
    }

    /// Path of the rendered `config.json`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Path of the captured Envoy log (stdout + stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The client for the main listener.
    pub fn client(&self) -> &HttpClient {
        self.client
            .as_ref()
            .expect("the Envoy config has no listener")
    }

    /// A client for the listener configured with port `original`.
    pub fn client_for(&self, original: u16) -> HttpClient {
        HttpClient::new(self.port_of(original))
    }

    /// `GET path` on the main listener.
    pub fn get(&self, path: &str) -> Response {
        self.client().get(path)
    }

    /// `method path` with `headers` and `body` on the main listener.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Response {
        self.client().request(method, path, headers, body)
    }

    /// A request to build up on the main listener.
    pub fn req(&self, method: &str, path: &str) -> RequestBuilder<'_> {
        self.client().req(method, path)
    }

    /// Sends raw bytes to the main listener; see [`HttpClient::raw_request`].
    pub fn raw_request(&self, bytes: &[u8]) -> RawResponse {
        self.client().raw_request(bytes)
    }

    /// The admin client.
    pub fn admin(&self) -> &HttpClient {
        &self.admin
    }

    /// `GET path` on the admin port.
    pub fn admin_get(&self, path: &str) -> Response {
        self.admin.get(path)
    }

    /// All counters and gauges (admin `/stats?format=json`; histograms are
    /// left out).
    pub fn stats(&self) -> HashMap<String, u64> {
        let resp = self.admin_get("/stats?format=json");
        assert_eq!(resp.status, 200, "admin /stats failed: {}", resp.text());
        parse_stats_json(&resp.text())
    }

    /// One counter or gauge, e.g.
    /// `counter("wasmcustom.header_transform.rules_applied")`; `None` if it
    /// does not exist (yet).
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.stats().get(name).copied()
    }

    /// Waits (up to 10 s) until counter/gauge `name` is at least `min`, and
    /// returns its value. Envoy updates some stats only after the response
    /// has been sent, so prefer this over [`Envoy::counter`] right after a
    /// request. Panics on timeout.
    pub fn wait_for_counter(&self, name: &str, min: u64) -> u64 {
        let mut last = None;
        let ok = wait_until(WAIT, || {
            last = self.counter(name);
            last.is_some_and(|v| v >= min)
        });
        assert!(ok, "stat {name} did not reach {min} (last value {last:?})");
        last.unwrap_or_default()
    }

    /// The whole captured log so far.
    pub fn log(&self) -> String {
        let bytes = std::fs::read(&self.log_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.log_path.display()));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits (up to 10 s) until the log contains `needle`; panics with the
    /// log tail otherwise.
    pub fn wait_for_log(&self, needle: &str) {
        let ok = wait_until(WAIT, || self.log().contains(needle));
        assert!(
            ok,
            "Envoy log never contained {needle:?}; tail:\n{}",
            tail(&self.log(), 40)
        );
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!(
                "---- Envoy log tail ({}):\n{}\n----",
                self.log_path.display(),
                tail(&self.log(), 30)
            );
        }
        if let Some(dir) = self.dir.take() {
            dir.finish(panicking);
        }
    }
}

/// A per-run temp dir under `<repo>/.tmp/tests/`, named after the test.
#[derive(Debug)]
struct TestDir(TempDir);

impl TestDir {
    fn new() -> Self {
        let base = repo_root().join(".tmp/tests");
        std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
        // cargo test names each test's thread after the test
        let name: String = std::thread::current()
            .name()
            .unwrap_or("envoy")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("create temp dir in {}: {e}", base.display()));
        TestDir(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Removes the dir, unless `keep` or `PWF_KEEP_TMP=1`.
    fn finish(self, keep: bool) {
        let keep = keep || std::env::var_os("PWF_KEEP_TMP").is_some_and(|v| v == "1");
        if keep {
            let path = self.0.keep();
            eprintln!("kept test dir {}", path.display());
        }
    }
}

/// Result of `envoy --mode validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateResult {
    /// Exit status 0.
    pub ok: bool,
    /// Exit code, if Envoy exited normally.
    pub exit_code: Option<i32>,
    /// stdout followed by stderr.
    pub output: String,
}

/// Runs `envoy --mode validate -c <config> --disable-hot-restart` (from the
/// repo root). The config is used as is, not rendered. In validate mode
/// Envoy also loads `.wasm` modules and runs the plugins' `on_configure`.
pub fn validate(config: &Path) -> ValidateResult {
    let out = Command::new(envoy_bin())
        .current_dir(repo_root())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .args(["-l", "info", "--component-log-level", "wasm:debug"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} --mode validate: {e}", envoy_bin().display()));
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    ValidateResult {
        ok: out.status.success(),
        exit_code: out.status.code(),
        output,
    }
}
