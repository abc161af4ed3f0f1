//! `make demo`: the filter chain in a real Envoy on localhost, with built-in
//! upstreams, showing each filter at work with the equivalent curl commands.
//!
//! ```text
//! demo [--once] [--free-ports]
//! ```
//!
//! - default: Envoy with an ingress listener on 127.0.0.1:10000 and an egress
//!   listener on 10001 (admin 9901), echo upstreams on 18000 and 18001, and
//!   the test OpenID provider (`tests/idp/server.mjs`) on 18100; runs the
//!   walkthrough, then keeps serving until Ctrl-C.
//! - `--once`: exit after the walkthrough (used by the demo's own test).
//! - `--free-ports`: use free ports instead of the fixed ones.

use pwf_tests::{EchoUpstream, Envoy, Idp, Response};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CONFIG: &str = "envoy-configs/chain.yaml";
const INGRESS: u16 = 10000;
const EGRESS: u16 = 10001;
/// Longer header values (tokens) are shown cut, with their length.
const SHOW_MAX: usize = 72;

/// One request of the walkthrough and what to show of it.
struct Step {
    title: String,
    /// The listener (its port in the config file).
    listener: u16,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    /// Request headers to show as the upstream received them.
    upstream_headers: &'static [&'static str],
    /// Response headers to show as the client received them.
    response_headers: &'static [&'static str],
    /// Send the request this many times in a row; show every status and the
    /// last response.
    repeat: usize,
    /// A text body to send; the echo upstream returns it in its JSON reply,
    /// which the walkthrough then shows as the client received it.
    body: Option<&'static str>,
}

fn steps() -> Vec<Step> {
    let token = pwf_tests::jwt::demo_token("alice", serde_json::json!({"plan": "pro"}));
    let free = pwf_tests::jwt::demo_token("carol", serde_json::json!({"plan": "free"}));
    // cos-router's own free user: carol's rate limit budget is for the plan-ratelimit step.
    let dave = pwf_tests::jwt::demo_token("dave", serde_json::json!({"plan": "free"}));
    let mut tampered = token.clone();
    tampered.truncate(token.len() - 4);
    tampered.push_str("AAAA");
    vec![
        Step {
            title: "jwt-auth: /api/ needs a token; without one the client gets 401 and an RFC 6750 challenge".into(),
            listener: INGRESS,
            method: "GET",
            path: "/api/orders",
            headers: vec![],
            upstream_headers: &[],
            response_headers: &["www-authenticate"],
            repeat: 1,
            body: None,
        },
        Step {
            title: "jwt-auth: a valid RS256 token (minted by `cargo run -q -p pwf-tests --bin mint-token -- alice plan=pro`) \
                    passes; its claims reach the upstream and the token is stripped"
                .into(),
            listener: INGRESS,
            method: "GET",
            path: "/api/orders",
            headers: vec![("authorization", format!("Bearer {token}"))],
            upstream_headers: &["x-jwt-sub", "x-jwt-plan", "authorization"],
            response_headers: &[],
            repeat: 1,
            body: None,
        },
        Step {
            title: "jwt-auth: a tampered signature is rejected".into(),
            listener: INGRESS,
            method: "GET",
            path: "/api/orders",
            headers: vec![("authorization", format!("Bearer {tampered}"))],
            upstream_headers: &[],
            response_headers: &["www-authenticate"],
            repeat: 1,
            body: None,
        },
        Step {
            title: "header-transform: legacy path rewritten to /v2/ and re-routed to the v2 upstream; \
                    query parameter renamed; internal headers stripped; annotations added"
                .into(),
            listener: INGRESS,
            method: "GET",
            path: "/legacy/users?uid=7&tenant=acme",
            headers: vec![("x-internal-debug", "1".into()), ("authorization", "Basic ZGVtbzpkZW1v".into())],
            upstream_headers: &[
                "x-tenant",
                "x-region",
                "x-client-address",
                "x-request-start",
                "x-legacy-authorization",
                "x-internal-debug",
            ],
            response_headers: &["strict-transport-security", "x-content-type-options", "x-served-path"],
            repeat: 1,
            body: None,
        },
        Step {
            title: "header-transform: other paths keep their route; x-tenant defaults to 'public'".into(),
            listener: INGRESS,
            method: "GET",
            path: "/catalog/items",
            headers: vec![],
            upstream_headers: &["x-tenant", "x-region"],
            response_headers: &["x-served-path", "x-powered-by"],
            repeat: 1,
            body: None,
        },
        Step {
            title: "jwt-acquire: a call leaving through the egress listener gets an access token for client svc-a \
                    from the OpenID provider (client credentials), fetched once and shared by all workers"
                .into(),
            listener: EGRESS,
            method: "GET",
            path: "/raw/partner-api",
            headers: vec![],
            upstream_headers: &["authorization"],
            response_headers: &[],
            repeat: 1,
            body: None,
        },
        Step {
            title: "jwt-acquire -> jwt-auth: the same call to /api/ on the ingress listener; jwt-auth verifies \
                    the injected token against the provider's JWKS and passes its claims on"
                .into(),
            listener: EGRESS,
            method: "GET",
            path: "/api/orders",
            headers: vec![],
            upstream_headers: &["x-jwt-client", "x-jwt-plan", "authorization"],
            response_headers: &[],
            repeat: 1,
            body: None,
        },
        Step {
            title: "cos-router: a pro user (alice, plan=pro) is class pro, routed to the premium backend `echo_v2`; \
                    experiment layout assigns her a sticky variant from her `sub`"
                .into(),
            listener: INGRESS,
            method: "GET",
            path: "/api/catalog",
            headers: vec![("authorization", format!("Bearer {token}"))],
            upstream_headers: &["x-cos-class", "x-cos-cluster", "x-cos-experiments"],
            response_headers: &["x-cos-experiments"],
            repeat: 1,
            body: None,
        },
        Step {
            title: "cos-router: a free user (dave, plan=free) on the same path is class free, routed to `echo`, \
                    in the other layout variant"
                .into(),
            listener: INGRESS,
            method: "GET",
            path: "/api/catalog",
            headers: vec![
                ("authorization", format!("Bearer {dave}")),
                ("x-cos-cluster", "echo_v2".into()),
            ],
            upstream_headers: &["x-cos-class", "x-cos-cluster", "x-cos-experiments"],
            response_headers: &["x-cos-experiments"],
            repeat: 1,
            body: None,
        },
        Step {
            title: "plan-ratelimit: a free client (token with plan=free) sends 6 requests at once: \
                    5 pass, the 6th gets 429 with Retry-After"
                .into(),
            listener: INGRESS,
            method: "GET",
            path: "/api/orders",
            headers: vec![("authorization", format!("Bearer {free}"))],
            upstream_headers: &[],
            response_headers: &["retry-after", "ratelimit-policy", "ratelimit"],
            repeat: 6,
            body: None,
        },
        Step {
            title: "plan-ratelimit: meanwhile a pro client (plan=pro, 50/s) passes".into(),
            listener: INGRESS,
            method: "GET",
            path: "/api/orders",
            headers: vec![("authorization", format!("Bearer {token}"))],
            upstream_headers: &["x-jwt-sub", "x-jwt-plan"],
            response_headers: &["ratelimit"],
            repeat: 6,
            body: None,
        },
        Step {
            title: "dlp-redact: the upstream echoes a support ticket holding a (test) card number, an e-mail \
                    address, a phone number and an AWS key id; as the response streams back the client sees \
                    the card masked to its last 4 digits, the address as a keyed hash and the rest tagged"
                .into(),
            listener: INGRESS,
            method: "POST",
            path: "/support/tickets",
            headers: vec![("content-type", "text/plain".into())],
            upstream_headers: &[],
            response_headers: &[],
            repeat: 1,
            body: Some(DLP_TICKET),
        },
    ]
}

/// The support ticket of the dlp-redact step: test data only.
const DLP_TICKET: &str = "Card 4111 1111 1111 1111 was declined; reach me at alice@example.com \
                          or +1 415 555 2671. Deploy key AKIAIOSFODNN7EXAMPLE.";

/// The IdP's issuer as written in the config (its default port).
const CONFIG_ISSUER: &str = "http://127.0.0.1:18100";

fn replace_in_strings(value: &mut serde_json::Value, from: &str, to: &str) {
    match value {
        serde_json::Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        serde_json::Value::Array(items) => items
            .iter_mut()
            .for_each(|v| replace_in_strings(v, from, to)),
        serde_json::Value::Object(map) => map
            .values_mut()
            .for_each(|v| replace_in_strings(v, from, to)),
        _ => {}
    }
}

struct Options {
    once: bool,
    free_ports: bool,
}

fn parse_args() -> Options {
    let mut opts = Options {
        once: false,
        free_ports: false,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--once" => opts.once = true,
            "--free-ports" => opts.free_ports = true,
            other => {
                eprintln!("unknown argument {other:?}\nusage: demo [--once] [--free-ports]");
                std::process::exit(2);
            }
        }
    }
    opts
}

fn upstream(name: &str, port: u16, free_ports: bool) -> EchoUpstream {
    let builder = EchoUpstream::builder(name).response_header("x-powered-by", "echo-upstream");
    if free_ports {
        builder.start()
    } else {
        builder.port(port).start()
    }
}

fn curl_line(port: u16, step: &Step) -> String {
    let mut line = format!(
        "curl -si -X {} 'http://127.0.0.1:{port}{}'",
        step.method, step.path
    );
    for (name, value) in &step.headers {
        line.push_str(&format!(" -H '{name}: {value}'"));
    }
    if let Some(body) = step.body {
        line.push_str(&format!(" --data '{body}'"));
    }
    line
}

fn show(port: u16, step: &Step, resp: &Response) {
    if step.repeat <= 1 {
        println!("\n== {}", step.title);
    }
    println!("$ {}", curl_line(port, step));
    let body = resp.json();
    if body["upstream"].is_null() {
        println!("  -> {} from Envoy: {}", resp.status, resp.text());
    } else {
        println!(
            "  -> {} from upstream {:?}; upstream saw {} {}",
            resp.status,
            body["upstream"].as_str().unwrap_or("?"),
            body["method"].as_str().unwrap_or("?"),
            body["path"].as_str().unwrap_or("?"),
        );
    }
    for name in step.upstream_headers {
        let value = &body["headers"][*name];
        let shown = match value.as_str() {
            None if value.is_null() => "(absent)".to_string(),
            Some(v) if v.len() > SHOW_MAX => {
                let cut: String = v.chars().take(SHOW_MAX).collect();
                format!("\"{cut}…\" ({} bytes)", v.len())
            }
            _ => value.to_string(),
        };
        println!("     upstream header {name}: {shown}");
    }
    for name in step.response_headers {
        println!(
            "     response header {name}: {}",
            resp.header(name).unwrap_or("(absent)")
        );
    }
    if step.body.is_some() {
        println!(
            "     body as the client got it: {}",
            body["body"].as_str().unwrap_or("?")
        );
    }
}

fn main() {
    let opts = parse_args();
    let idp = if opts.free_ports {
        Idp::start()
    } else {
        Idp::builder().port(18100).start()
    };
    // The config names the IdP's issuer with its default port.
    let issuer = idp.issuer().to_owned();
    let echo = upstream("echo", 18000, opts.free_ports);
    let v2 = upstream("v2", 18001, opts.free_ports);
    let mut builder = Envoy::builder(CONFIG)
        .upstream(18000, &echo)
        .upstream(18001, &v2)
        .port(18100, idp.port())
        .edit(move |config| replace_in_strings(config, CONFIG_ISSUER, &issuer))
        .concurrency(2);
    if !opts.free_ports {
        builder = builder
            .port(INGRESS, INGRESS)
            .port(EGRESS, EGRESS)
            .port(9901, 9901);
    }
    let envoy = builder.start();
    let ingress = envoy.rendered().port(INGRESS);
    let egress = envoy.rendered().port(EGRESS);
    println!(
        "Envoy is running: ingress chain (dlp-redact, jwt-auth, plan-ratelimit, cos-router, header-transform) on http://127.0.0.1:{ingress}, \
         egress chain (jwt-acquire) on http://127.0.0.1:{egress}, admin http://127.0.0.1:{}",
        envoy.admin_port()
    );
    println!(
        "Config: {CONFIG}; upstreams 'echo' (127.0.0.1:{}) and 'v2' (127.0.0.1:{}); \
         OpenID provider {} (clients svc-a, svc-b)",
        echo.port(),
        v2.port(),
        idp.issuer()
    );

    for step in steps() {
        let client = envoy.client_for(step.listener);
        let mut statuses = Vec::with_capacity(step.repeat);
        let mut last = None;
        for _ in 0..step.repeat.max(1) {
            let mut req = client.req(step.method, step.path);
            for (name, value) in &step.headers {
                req = req.header(name, value);
            }
            if let Some(body) = step.body {
                req = req.body(body);
            }
            let resp = req.send();
            statuses.push(resp.status.to_string());
            last = Some(resp);
        }
        if step.repeat > 1 {
            println!("\n== {}", step.title);
            println!("   statuses: {}", statuses.join(" "));
        }
        if let Some(resp) = last {
            show(client.port(), &step, &resp);
        }
    }

    println!(
        "\nMetrics (non-zero): curl -s http://127.0.0.1:{}/stats | grep wasmcustom",
        envoy.admin_port()
    );
    for (name, value) in envoy
        .stats()
        .iter()
        .filter(|(n, v)| n.starts_with("wasmcustom.") && **v > 0)
        .collect::<std::collections::BTreeMap<_, _>>()
    {
        println!("  {name}: {value}");
    }
    if opts.once {
        return;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .expect("install the Ctrl-C handler");
    println!("\nTry the curl commands above. Press Ctrl-C to stop.");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "\nStopping Envoy (pid {}), the upstreams and the OpenID provider.",
        envoy.pid()
    );
    drop(envoy);
    drop(idp);
}
