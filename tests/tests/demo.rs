//! `make demo` runs the `demo` binary: check its walkthrough and its clean stop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn demo() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_demo"));
    cmd.current_dir(pwf_tests::repo_root()).arg("--free-ports");
    cmd
}

#[test]
fn walkthrough_shows_each_filter_at_work() {
    let out = demo().arg("--once").output().expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "-> 401 from Envoy: {\"error\":\"missing\"",
        "response header www-authenticate: Bearer realm=",
        "upstream header x-jwt-sub: \"alice\"",
        "upstream header x-jwt-plan: \"pro\"",
        "upstream header authorization: (absent)",
        "-> 401 from Envoy: {\"error\":\"invalid_signature\"",
        "wasmcustom.jwt_auth.denied.missing: 1",
        "-> 200 from upstream \"v2\"; upstream saw GET /v2/users?user_id=7&tenant=acme",
        "upstream header x-tenant: \"acme\"",
        "upstream header x-internal-debug: (absent)",
        "response header x-served-path: /v2/users",
        "-> 200 from upstream \"echo\"; upstream saw GET /catalog/items",
        "upstream header x-tenant: \"public\"",
        // The egress call to /api/, the rate-limit steps and the dlp-redact step pass the ingress chain too.
        "wasmcustom.header_transform.rules_applied: 37",
        "wasmcustom.jwt_auth.verify.native: ",
        "upstream header authorization: \"Bearer eyJ",
        "upstream header x-jwt-client: \"svc-a\"",
        "wasmcustom.jwt_auth.allowed: 16",
        "statuses: 200 200 200 200 200 429",
        "response header retry-after: 1",
        "response header ratelimit: \"free-second\";r=0;t=1",
        "statuses: 200 200 200 200 200 200",
        "wasmcustom.plan_ratelimit.limited.free: 1",
        "wasmcustom.jwt_acquire.source.svc-a.fetch_ok: 1",
        "wasmcustom.jwt_acquire.source.svc-a.injected: 2",
        // cos-router: a pro and a free user on the same path land on different
        // backends, each with its sticky layout variant (SHA-256 of salt and sub);
        // dave's own x-cos-cluster header is replaced.
        "  -> 200 from upstream \"v2\"; upstream saw GET /api/catalog\n\
         \x20    upstream header x-cos-class: \"pro\"\n\
         \x20    upstream header x-cos-cluster: \"echo_v2\"\n\
         \x20    upstream header x-cos-experiments: \"layout=classic\"\n\
         \x20    response header x-cos-experiments: layout=classic\n",
        "-H 'x-cos-cluster: echo_v2'\n\
         \x20 -> 200 from upstream \"echo\"; upstream saw GET /api/catalog\n\
         \x20    upstream header x-cos-class: \"free\"\n\
         \x20    upstream header x-cos-cluster: \"echo\"\n\
         \x20    upstream header x-cos-experiments: \"layout=compact\"\n\
         \x20    response header x-cos-experiments: layout=compact\n",
        "wasmcustom.cos_router.experiment.layout.variant.compact: ",
        // dlp-redact: the support ticket comes back masked, hashed and tagged.
        "body as the client got it: Card **** **** **** 1111 was declined; reach me at \
         [HASH:email:8e5ce354a1be2753] or [REDACTED:phone]. Deploy key [REDACTED:aws_access_key_id].",
        "wasmcustom.dlp_redact.detected.card: 1",
        "wasmcustom.dlp_redact.redacted: 4",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in demo output:\n{stdout}"
        );
    }
}

#[test]
fn ctrl_c_stops_envoy_and_exits_cleanly() {
    let mut child = demo()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.by_ref() {
        if line.expect("demo output").contains("Press Ctrl-C to stop") {
            break;
        }
        assert!(Instant::now() < deadline, "demo never became ready");
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success(), "demo exits 0 on Ctrl-C");
    let stopping = rest
        .iter()
        .find(|l| l.starts_with("Stopping Envoy (pid "))
        .expect("stop message");
    let pid: u32 = stopping["Stopping Envoy (pid ".len()..]
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "Envoy {pid} is gone"
    );
}
