//! dlp-redact in a real Envoy, against the design contract: values split
//! across body chunks at every position, every action, every scope, JSON
//! field mode, Content-Length handling, buffer limits, compressed bodies,
//! logs that never carry a value, and refused configurations.
//!
//! Bodies come from the body upstream (`x-split-at` makes it send a body in
//! pieces that Envoy delivers as separate body callbacks) and request bodies
//! are sent in pieces by `PieceRequest`; the upstream echoes request bodies
//! back when the path is not registered.

use hmac::{Hmac, Mac};
use pwf_tests::{
    get_streamed, gunzip, repo_root, BodyUpstream, Envoy, Framing, PieceRequest, PieceResponse,
    ResponseSpec,
};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CONFIG: &str = "envoy-configs/dlp-redact.yaml";
/// The hash key `envoy-configs/dlp-redact.yaml` gives the VM as `DLP_HASH_KEY`.
const YAML_HASH_KEY: &str = "demo-hash-key-change-me";
const CARD: &str = "4111 1111 1111 1111";

fn start(up: &BodyUpstream, plugin_config: &str) -> Envoy {
    Envoy::builder(CONFIG)
        .port(18000, up.port())
        .plugin_config(plugin_config)
        .start()
}

/// A `wasmcustom.dlp_redact.*` counter; 0 when not (yet) exported.
fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(&format!("wasmcustom.dlp_redact.{name}"))
        .unwrap_or(0)
}

/// GET `path`, the registered body split at `splits`.
fn get_split(envoy: &Envoy, path: &str, splits: &[usize]) -> PieceResponse {
    let header = splits
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    get_streamed(envoy.port(), path, &[("x-split-at", &header)])
}

/// Serves `body` at `/split` in pieces cut at `cuts`, 1 ms apart, and GETs
/// it through the filter with every detector tagging: the upstream (still
/// serving, e.g. for request bodies), Envoy, and the complete 200 response.
fn tag_split_body(body: &str, cuts: &[usize]) -> (BodyUpstream, Envoy, PieceResponse) {
    let up = BodyUpstream::start();
    up.serve(
        "/split",
        ResponseSpec::new(body).split_at(cuts).chunk_delay_ms(1),
    );
    let envoy = start(&up, ALL_TAG);
    let resp = get_streamed(envoy.port(), "/split", &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    (up, envoy, resp)
}

/// POSTs `body` as text in pieces cut at `cuts`, 1 ms apart, to a path the
/// upstream echoes; the echo arrives with status 200.
fn post_split(envoy: &Envoy, body: &str, cuts: &[usize]) -> PieceResponse {
    let resp = PieceRequest::new("POST", "/req/long")
        .header("content-type", "text/plain")
        .body_split(body.as_bytes(), cuts)
        .delay_ms(1)
        .send(envoy.port());
    assert_eq!(resp.status, 200);
    resp
}

fn hmac16(key: &str, value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(value.as_bytes());
    mac.finalize().into_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json_error(status: u16, code: &str, message: &str) -> Value {
    json!({"error": code, "message": message, "status": status})
}

/// Asserts a JSON local reply.
fn assert_refused(resp: &PieceResponse, status: u16, code: &str, message: &str) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json(), json_error(status, code, message));
}

// ---------------------------------------------------------------------------
// 1. Values split at every position never leak

#[derive(Deserialize)]
struct Corpus {
    positives: Vec<Positive>,
    negatives: Vec<Negative>,
}

#[derive(Deserialize)]
struct Positive {
    detector: String,
    value: String,
    note: String,
}

#[derive(Deserialize)]
struct Negative {
    text: String,
    note: String,
}

fn corpus() -> Corpus {
    let path = repo_root().join("filters/dlp-redact/corpus.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("corpus.json")
}

/// How much of a match stays visible: the key name before a keyword-introduced
/// secret (`Bearer `, `aws_secret_access_key = `; the secret is the last 40
/// characters), nothing for every other detector.
fn kept_prefix(detector: &str, value: &str) -> usize {
    match detector {
        "bearer_token" => {
            let space = value.find(' ').expect("a bearer value has a space");
            space + value[space..].bytes().take_while(|&b| b == b' ').count()
        }
        "aws_secret_access_key" => value.len() - 40,
        _ => 0,
    }
}

/// `value` with the tag action applied; and the secret part that must never show.
fn tagged(detector: &str, value: &str) -> (String, String) {
    let keep = kept_prefix(detector, value);
    (
        format!("{}[REDACTED:{detector}]", &value[..keep]),
        value[keep..].to_owned(),
    )
}

const PREFIX: &str = "prefix ";
const SUFFIX: &str = " suffix";
const ALL_TAG: &str = r#"{
    "detectors": { "ipv4": { "enabled": true }, "ipv6": { "enabled": true } },
    "default_action": { "action": "tag" },
    "rules": [
        { "name": "request-only", "match": { "path": { "prefix": "/req/" } },
          "request": { "body": true }, "response": { "body": false } }
    ]
}"#;

/// Runs `jobs` on `threads` threads; returns the failure messages.
fn run_parallel<J: Sync>(
    jobs: &[J],
    threads: usize,
    f: impl Fn(&J) -> Option<String> + Sync,
) -> Vec<String> {
    let per = jobs.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(per)
            .map(|slice| s.spawn(|| slice.iter().filter_map(&f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    })
}

fn check_failures(what: &str, total: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} of {total} failed; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn corpus_values_split_at_every_position_are_tagged_and_never_leak() {
    let corpus = corpus();
    let up = BodyUpstream::start();
    for (i, p) in corpus.positives.iter().enumerate() {
        up.serve(
            &format!("/c/{i}"),
            ResponseSpec::new(format!("{PREFIX}{}{SUFFIX}", p.value)).chunk_delay_ms(1),
        );
    }
    for (i, n) in corpus.negatives.iter().enumerate() {
        up.serve(
            &format!("/n/{i}"),
            ResponseSpec::new(n.text.clone()).chunk_delay_ms(1),
        );
    }
    // wasm at trace: every log line the filter can write is in the log
    let envoy = Envoy::builder(CONFIG)
        .port(18000, up.port())
        .plugin_config(ALL_TAG)
        .component_log_level(Some("wasm:trace"))
        .start();

    // Response direction: 2-piece splits at every position from just before
    // the value to just after it, plus 3-piece splits.
    let mut jobs: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, p) in corpus.positives.iter().enumerate() {
        let s = PREFIX.len();
        let e = s + p.value.len();
        for pos in s - 1..=e + 1 {
            jobs.push((i, vec![pos]));
        }
        let third = p.value.len() / 3;
        for pair in [
            [s + 1, e - 1],
            [s + third, s + 2 * third],
            [s, e],
            [s - 1, s + 1],
            [e - 1, e + 1],
            [s + third, e - 1],
        ] {
            jobs.push((i, pair.to_vec()));
        }
    }
    let started = std::time::Instant::now();
    let failures = run_parallel(&jobs, 4, |(i, splits)| {
        let p = &corpus.positives[*i];
        let (want, secret) = tagged(&p.detector, &p.value);
        let want = format!("{PREFIX}{want}{SUFFIX}");
        let resp = get_split(&envoy, &format!("/c/{i}"), splits);
        let got = resp.text();
        if resp.status != 200 || !resp.complete || got != want || got.contains(&secret) {
            Some(format!(
                "{} ({}) split {splits:?}: status {} complete {} body {got:?}",
                p.detector, p.note, resp.status, resp.complete
            ))
        } else {
            None
        }
    });
    eprintln!("{} response splits in {:?}", jobs.len(), started.elapsed());
    check_failures("response splits", jobs.len(), &failures);

    // Request direction: the first two positives of every detector, split
    // anywhere, sent in pieces; the upstream echoes what it got (the rule
    // for /req/ leaves the response alone).
    let mut seen = std::collections::HashMap::new();
    let mut req_jobs: Vec<(usize, usize)> = Vec::new();
    for (i, p) in corpus.positives.iter().enumerate() {
        let n = seen.entry(p.detector.clone()).or_insert(0);
        *n += 1;
        if *n > 2 {
            continue;
        }
        for pos in PREFIX.len() - 1..=PREFIX.len() + p.value.len() + 1 {
            req_jobs.push((i, pos));
        }
    }
    let failures = run_parallel(&req_jobs, 4, |(i, pos)| {
        let p = &corpus.positives[*i];
        let (want, secret) = tagged(&p.detector, &p.value);
        let want = format!("{PREFIX}{want}{SUFFIX}");
        let body = format!("{PREFIX}{}{SUFFIX}", p.value);
        let resp = PieceRequest::new("POST", &format!("/req/{i}"))
            .header("content-type", "text/plain")
            .body_split(body.as_bytes(), &[*pos])
            .delay_ms(1)
            .send(envoy.port());
        let got = resp.text();
        (resp.status != 200 || got != want || got.contains(&secret)).then(|| {
            format!(
                "request {} ({}) split {pos}: status {} body {got:?}",
                p.detector, p.note, resp.status
            )
        })
    });
    eprintln!(
        "{} request splits, {:?} since start",
        req_jobs.len(),
        started.elapsed()
    );
    check_failures("request splits", req_jobs.len(), &failures);

    // Every request found exactly one value of its detector.
    let mut expected: std::collections::BTreeMap<&str, u64> = Default::default();
    for (i, _) in &jobs {
        *expected
            .entry(corpus.positives[*i].detector.as_str())
            .or_default() += 1;
    }
    for (i, _) in &req_jobs {
        *expected
            .entry(corpus.positives[*i].detector.as_str())
            .or_default() += 1;
    }
    for (detector, n) in &expected {
        assert_eq!(
            counter(&envoy, &format!("detected.{detector}")),
            *n,
            "{detector}"
        );
    }
    let total = (jobs.len() + req_jobs.len()) as u64;
    assert_eq!(counter(&envoy, "redacted"), total);

    // Negatives pass byte-identical, whole and split in the middle.
    let mut neg_failures = Vec::new();
    for (i, n) in corpus.negatives.iter().enumerate() {
        for splits in [vec![], vec![n.text.len() / 2]] {
            let resp = get_split(&envoy, &format!("/n/{i}"), &splits);
            if resp.status != 200 || resp.text() != n.text {
                neg_failures.push(format!("{:?} ({}): got {:?}", n.text, n.note, resp.text()));
            }
        }
    }
    eprintln!("negatives done, {:?} since start", started.elapsed());
    check_failures("negatives", corpus.negatives.len() * 2, &neg_failures);
    assert_eq!(
        counter(&envoy, "redacted"),
        total,
        "a negative was redacted"
    );

    // No value ever reaches the log, even at trace level. (grep: the log is
    // megabytes and a debug-build `contains` per value takes a minute.)
    let log = envoy.log();
    assert!(
        log.contains("dlp_redact: response body chunk"),
        "the filter logged nothing at trace level"
    );
    let secrets: Vec<String> = corpus
        .positives
        .iter()
        .flat_map(|p| {
            let (_, secret) = tagged(&p.detector, &p.value);
            // grep -F takes one pattern per line: a multi-line value (PEM)
            // is checked line by line, which is stricter
            secret
                .split(['\r', '\n'])
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let patterns = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(patterns.path(), secrets.join("\n") + "\n").expect("write patterns");
    let grep = std::process::Command::new("grep")
        .args(["-F", "-n", "-f"])
        .arg(patterns.path())
        .arg(envoy.log_path())
        .output()
        .expect("run grep");
    assert_eq!(
        grep.status.code(),
        Some(1),
        "values in Envoy's log (or grep failed):\n{}{}",
        pwf_tests::tail(&String::from_utf8_lossy(&grep.stdout), 10),
        String::from_utf8_lossy(&grep.stderr)
    );
}

/// A body many times the held-back window long, with every corpus value far
/// apart in prose, sent in hundreds of pieces with a cut inside each value:
/// what is held back and what passes on must add up to the whole-body
/// redaction, piece after piece.
#[test]
fn a_long_body_in_many_pieces_is_redacted_as_a_whole() {
    let corpus = corpus();
    let filler = "lorem ipsum dolor sit amet, ".repeat(60);
    let (mut body, mut want) = (String::new(), String::new());
    let mut cuts = Vec::new();
    for (i, p) in corpus.positives.iter().enumerate() {
        let gap = format!("{} | ", &filler[..(i * 389) % filler.len()]);
        body.push_str(&gap);
        want.push_str(&gap);
        cuts.push(body.len() + i % p.value.len());
        body.push_str(&p.value);
        want.push_str(&tagged(&p.detector, &p.value).0);
        body.push_str(" | ");
        want.push_str(" | ");
    }
    cuts.extend((997..body.len()).step_by(997));
    cuts.sort_unstable();
    cuts.dedup();
    cuts.retain(|&c| c > 0 && c < body.len());
    assert!(body.len() > 8 * 8 * 1024, "{} bytes", body.len());

    let (_up, envoy, resp) = tag_split_body(&body, &cuts);
    assert!(
        resp.text() == want,
        "response differs from the expected redaction"
    );

    let resp = post_split(&envoy, &body, &cuts);
    assert!(
        resp.text() == want,
        "request differs from the expected redaction"
    );

    let values = corpus.positives.len() as u64;
    assert_eq!(counter(&envoy, "redacted"), 2 * values);
    let mut per_detector: std::collections::BTreeMap<&str, u64> = Default::default();
    for p in &corpus.positives {
        *per_detector.entry(p.detector.as_str()).or_default() += 2;
    }
    for (detector, n) in per_detector {
        assert_eq!(
            counter(&envoy, &format!("detected.{detector}")),
            n,
            "{detector}"
        );
    }
}

#[test]
fn text_that_cannot_begin_a_value_is_forwarded_before_the_next_piece_arrives() {
    // An event stream: the upstream sends the first event, pauses 1.5 s, then
    // sends the second. Only bytes that could still begin a value may wait
    // for the next piece, so the first event reaches the client during the
    // pause, and the card in the second is redacted.
    let first = "event: order shipped, no personal data here.\n";
    let second = "event: paid with card 4111 1111 1111 1111.\n";
    let up = BodyUpstream::start();
    up.serve(
        "/events",
        ResponseSpec::new(format!("{first}{second}"))
            .split_at(&[first.len()])
            .chunk_delay_ms(1500),
    );
    let envoy = start(&up, ALL_TAG);

    let mut conn = TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let sent = Instant::now();
    conn.write_all(b"GET /events HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .unwrap();
    let (mut raw, mut buf) = (Vec::new(), [0u8; 4096]);
    let mut first_seen = None;
    loop {
        let n = conn.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let arrived = raw.windows(first.len()).any(|w| w == first.as_bytes());
        if arrived && first_seen.is_none() {
            first_seen = Some(sent.elapsed());
        }
    }
    let done = sent.elapsed();
    let first_seen = first_seen.expect("the first event arrives in one piece");
    // The upstream pauses before each piece: the first comes at 1.5 s, the
    // second at 3 s.
    assert!(
        done >= Duration::from_millis(3000),
        "the upstream paused: {done:?}"
    );
    assert!(
        done - first_seen >= Duration::from_millis(1000),
        "the first event arrived at {first_seen:?}, with the second at {done:?}"
    );

    let text = String::from_utf8(raw).unwrap();
    let (head, chunked) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert_eq!(
        dechunk(chunked),
        format!("{first}event: paid with card [REDACTED:card].\n")
    );
    assert_eq!(counter(&envoy, "detected.card"), 1);
}

#[test]
fn long_tokens_are_redacted_whole_across_many_pieces() {
    // Longer than the usual bounds of the patterns (bearer tokens 4096,
    // JWT payloads 6144), within what streaming holds back.
    let token = "A1b2C3d4".repeat(750);
    let jwt = format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.c2lnbmF0dXJl",
        "eyJzdWIiOiIx".repeat(583)
    );
    let body = format!("Authorization: Bearer {token}\njwt {jwt} end\n");
    let cuts: Vec<usize> = (1000..body.len()).step_by(1000).collect();
    let (_up, envoy, resp) = tag_split_body(&body, &cuts);
    assert_eq!(
        resp.text(),
        "Authorization: Bearer [REDACTED:bearer_token]\njwt [REDACTED:jwt] end\n"
    );
    assert_eq!(counter(&envoy, "detected.bearer_token"), 1);
    assert_eq!(counter(&envoy, "detected.jwt"), 1);
}

/// A JWT (12 KB of claims), a bearer token (10 KB) and a PEM key block
/// (11 KB, JSON-escaped newlines): each longer than what the stream holds
/// back between chunks (about 8 KiB), sent in 1,000-byte pieces, as a
/// response and as a request.
fn values_longer_than_the_window() -> Vec<(&'static str, String)> {
    let jwt = format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.c2lnbmF0dXJl",
        "eyJzdWIiOiIx".repeat(1000)
    );
    let bearer = format!("Bearer {}", "A1b2C3d4".repeat(1250));
    let pem = format!(
        "-----BEGIN RSA PRIVATE KEY-----\\n{}-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEAx1b2C3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4\\n".repeat(165)
    );
    vec![
        ("jwt", jwt),
        ("bearer_token", bearer),
        ("pem_private_key", pem),
    ]
}

#[test]
fn values_longer_than_the_window_never_pass_when_split() {
    let values = values_longer_than_the_window();
    let mut want = String::from("{");
    let mut body = String::from("{");
    for (i, (detector, value)) in values.iter().enumerate() {
        let kept = if *detector == "bearer_token" {
            "Bearer "
        } else {
            ""
        };
        body.push_str(&format!("\"v{i}\":\"{value}\","));
        want.push_str(&format!("\"v{i}\":\"{kept}[REDACTED:{detector}]\","));
    }
    body.push_str("\"mail\":\"bob@example.com\"}");
    want.push_str("\"mail\":\"[REDACTED:email]\"}");
    let cuts: Vec<usize> = (1000..body.len()).step_by(1000).collect();
    let (_up, envoy, resp) = tag_split_body(&body, &cuts);
    assert!(
        resp.text() == want,
        "got {} bytes: {}...",
        resp.text().len(),
        resp.text().get(..300).unwrap_or_default()
    );

    // The same body as a request, in the same pieces: the upstream echoes
    // what it received.
    let resp = post_split(&envoy, &body, &cuts);
    assert!(
        resp.text() == want,
        "request: {}",
        resp.text().get(..300).unwrap_or_default()
    );

    for (detector, _) in &values {
        assert_eq!(
            counter(&envoy, &format!("detected.{detector}")),
            2,
            "{detector}"
        );
    }
    assert_eq!(counter(&envoy, "redacted"), 8);
    assert_eq!(counter(&envoy, "bytes_scanned"), 2 * body.len() as u64);
}

/// A private key too long to hold, then a certificate, as a PEM bundle in
/// pieces: the key is redacted up to its END line, the certificate passes.
#[test]
fn a_long_pem_key_before_a_certificate_ends_at_its_end_line() {
    let line = "MIIEowIBAAKCAQEAx1b2C3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4\n";
    let certificate = format!(
        "-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
        line.repeat(3)
    );
    let body = format!(
        "-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----\n{certificate}",
        line.repeat(160)
    );
    let cuts: Vec<usize> = (1000..body.len()).step_by(1000).collect();
    let (_up, envoy, resp) = tag_split_body(&body, &cuts);
    assert_eq!(
        resp.text(),
        format!("[REDACTED:pem_private_key]\n{certificate}")
    );
    assert_eq!(counter(&envoy, "detected.pem_private_key"), 1);
}

#[test]
fn a_masked_value_longer_than_the_window_keeps_the_length() {
    let up = BodyUpstream::start();
    let (_, jwt) = values_longer_than_the_window().remove(0);
    let body = format!("token {jwt} end");
    let cuts: Vec<usize> = (1000..body.len()).step_by(1000).collect();
    up.serve(
        "/long",
        ResponseSpec::new(body.clone())
            .split_at(&cuts)
            .chunk_delay_ms(1)
            .framing(Framing::ContentLength),
    );
    let envoy = start(
        &up,
        r#"{ "default_action": { "action": "mask" }, "detectors": { "jwt": { "action": "mask", "keep_last": 4 } } }"#,
    );
    let resp = get_streamed(envoy.port(), "/long", &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    let masked: String = jwt
        .chars()
        .map(|c| if c == '.' { '.' } else { '*' })
        .collect();
    assert!(
        resp.text() == format!("token {masked} end"),
        "{}",
        resp.text().get(..200).unwrap_or_default()
    );
    assert_eq!(
        resp.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(counter(&envoy, "detected.jwt"), 1);
}

/// The data of a chunked HTTP/1.1 body.
fn dechunk(mut rest: &str) -> String {
    let mut data = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return data;
        }
        data.push_str(&after[..size]);
        rest = after[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after a chunk");
    }
}

// ---------------------------------------------------------------------------
// 2. Actions

#[test]
fn mask_keeps_separators_last_characters_and_content_length() {
    let up = BodyUpstream::start();
    let body = "card 4111 1111 1111 1111, mail bob@example.com, iban GB82 WEST 1234 5698 7654 32, ssn 123-45-6789.";
    up.serve(
        "/m",
        ResponseSpec::new(body).framing(Framing::ContentLength),
    );
    let envoy = start(
        &up,
        r##"{
            "detectors": {
                "card": { "action": "mask", "keep_last": 4 },
                "iban": { "action": "mask", "keep_last": 4, "mask_char": "#" }
            },
            "default_action": { "action": "mask" }
        }"##,
    );
    let want = "card **** **** **** 1111, mail ***@*******.***, iban #### #### #### #### ##54 32, ssn ***-**-****.";
    assert_eq!(want.len(), body.len());
    for splits in [vec![], vec![8], vec![40], vec![60, 70], vec![9, 29, 33, 80]] {
        let resp = get_split(&envoy, "/m", &splits);
        assert_eq!(resp.status, 200);
        assert!(resp.complete, "{splits:?}");
        assert_eq!(resp.text(), want, "{splits:?}");
        // only length-preserving actions: Content-Length stays and is right
        assert_eq!(
            resp.header("content-length"),
            Some(body.len().to_string().as_str()),
            "{splits:?}"
        );
        assert_eq!(resp.header("transfer-encoding"), None);
    }
    assert_eq!(counter(&envoy, "detected.card"), 5);
    assert_eq!(counter(&envoy, "detected.email"), 5);
    assert_eq!(counter(&envoy, "detected.iban"), 5);
    assert_eq!(counter(&envoy, "detected.us_ssn"), 5);
    assert_eq!(counter(&envoy, "redacted"), 20);
    assert_eq!(counter(&envoy, "bodies_scanned"), 5);
    assert_eq!(counter(&envoy, "bytes_scanned"), 5 * body.len() as u64);
}

#[test]
fn hash_is_a_keyed_hmac_prefix_equal_for_equal_values() {
    const KEY: &str = "integration-test-hash-key-0001";
    let body = "a bob@example.com b 4111111111111111 c bob@example.com d alice.smith+tag@mail.example.co.uk";
    let up = BodyUpstream::start();
    up.serve(
        "/h",
        ResponseSpec::new(body).content_type("text/html; charset=utf-8"),
    );
    let expect = |key: &str| {
        format!(
            "a [HASH:email:{e1}] b [HASH:card:{c}] c [HASH:email:{e1}] d [HASH:email:{e2}]",
            e1 = hmac16(key, "bob@example.com"),
            c = hmac16(key, "4111111111111111"),
            e2 = hmac16(key, "alice.smith+tag@mail.example.co.uk"),
        )
    };

    let inline = start(
        &up,
        &format!(
            r#"{{ "default_action": {{ "action": "hash" }}, "hash_key": {{ "inline": "{KEY}" }} }}"#
        ),
    );
    let first = get_split(&inline, "/h", &[5, 30, 50]);
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), expect(KEY));
    // same value, other split: same output
    assert_eq!(get_split(&inline, "/h", &[12]).text(), expect(KEY));
    // hash changes the length: no Content-Length, chunked
    assert_eq!(first.header("content-length"), None);
    assert_eq!(first.header("transfer-encoding"), Some("chunked"));
    drop(inline);

    // the key from the VM environment (the config file's DLP_HASH_KEY)
    let from_env = start(
        &up,
        r#"{ "default_action": { "action": "hash" }, "hash_key": { "env": "DLP_HASH_KEY" } }"#,
    );
    let other = get_split(&from_env, "/h", &[]);
    assert_eq!(other.text(), expect(YAML_HASH_KEY));
    assert_ne!(
        other.text(),
        first.text(),
        "a different key gives different hashes"
    );
    assert_eq!(counter(&from_env, "detected.email"), 3);
    assert_eq!(counter(&from_env, "redacted"), 4);
}

#[test]
fn remove_and_tag_stream_with_content_length_dropped() {
    let up = BodyUpstream::start();
    let body = format!("ssn 123-45-6789; card {CARD}; key AKIAIOSFODNN7EXAMPLE end");
    up.serve(
        "/r",
        ResponseSpec::new(body.clone()).framing(Framing::ContentLength),
    );
    let envoy = start(
        &up,
        r#"{ "detectors": { "us_ssn": { "action": "remove" } }, "default_action": { "action": "tag" } }"#,
    );
    let want = "ssn ; card [REDACTED:card]; key [REDACTED:aws_access_key_id] end";
    for splits in [vec![], vec![6], vec![25, 30], vec![40, 50]] {
        let resp = get_split(&envoy, "/r", &splits);
        assert_eq!(resp.status, 200);
        assert!(resp.complete);
        assert_eq!(resp.text(), want, "{splits:?}");
        // the upstream sent content-length; the length changes, so the
        // client gets a chunked body instead
        assert_eq!(resp.header("content-length"), None, "{splits:?}");
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    }
    assert_eq!(counter(&envoy, "detected.us_ssn"), 4);
    assert_eq!(counter(&envoy, "detected.aws_access_key_id"), 4);
}

#[test]
fn alert_leaves_the_body_and_logs_only_the_detector_name() {
    let up = BodyUpstream::start();
    let body = format!("card {CARD} and 5555555555554444, mail bob@example.com");
    up.serve(
        "/a",
        ResponseSpec::new(body.clone()).framing(Framing::ContentLength),
    );
    let envoy = start(&up, r#"{ "default_action": { "action": "alert" } }"#);
    let resp = get_split(&envoy, "/a", &[10, 30]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), body);
    assert_eq!(
        resp.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(counter(&envoy, "detected.card"), 2);
    assert_eq!(counter(&envoy, "detected.email"), 1);
    assert_eq!(counter(&envoy, "redacted"), 0);
    envoy.wait_for_log("alert: card found 2 time(s) in response body");
    let log = envoy.log();
    let line = log
        .lines()
        .find(|l| l.contains("alert: card found"))
        .expect("alert line");
    assert!(line.contains("[warning]"), "not at warn level: {line}");
    assert!(log.contains("alert: email found 1 time(s) in response body"));
    for value in [CARD, "5555555555554444", "bob@example.com"] {
        assert!(!log.contains(value), "{value} in the log");
    }
}

#[test]
fn block_refuses_requests_and_aborts_responses_without_sending_the_value() {
    let up = BodyUpstream::start();
    let with_card = format!("hello {CARD} bye");
    up.serve("/card", ResponseSpec::new(with_card.clone()).split_at(&[9]));
    up.serve(
        "/clean",
        ResponseSpec::new("nothing to see here").framing(Framing::ContentLength),
    );
    let envoy = start(
        &up,
        r#"{
            "detectors": { "card": { "action": "block" } },
            "request": { "body": true, "headers": ["x-card"], "query": ["card"] },
            "response": { "body": true, "headers": ["x-debug-info"] }
        }"#,
    );

    // a response blocked on its body: the 200 head already went out, the
    // body is aborted and none of it is sent
    let resp = get_streamed(envoy.port(), "/card", &[]);
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "an aborted body must not look complete");
    assert_eq!(resp.text(), "", "no byte of a blocked body is sent");
    assert_eq!(counter(&envoy, "blocked"), 1);
    assert_eq!(counter(&envoy, "detected.card"), 1);

    // a clean body passes whole (buffered; content-length dropped)
    let resp = get_streamed(envoy.port(), "/clean", &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.text(), "nothing to see here");
    assert_eq!(resp.header("content-length"), None);

    // a response blocked on a header: a proper 502
    let resp = get_streamed(
        envoy.port(),
        "/clean",
        &[("x-echo-header-x-debug-info", "card 4111111111111111")],
    );
    assert_refused(
        &resp,
        502,
        "sensitive_data",
        "response blocked: contains card",
    );
    assert!(!resp.text().contains("4111"));
    // nor in the header itself: the refusal carries the redacted headers
    assert_eq!(resp.header("x-debug-info"), Some("card [REDACTED:card]"));
    assert!(
        resp.headers.iter().all(|(_, v)| !v.contains("4111")),
        "{:?}",
        resp.headers
    );

    // a request body with a card: 403; the upstream never gets a body byte
    let before = up.request_count();
    let resp = PieceRequest::new("POST", "/upload")
        .header("content-type", "text/plain")
        .pieces(["pay with 4111 1111 ", "1111 1111 please"])
        .send(envoy.port());
    assert_refused(
        &resp,
        403,
        "sensitive_data",
        "request blocked: contains card",
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    for r in up.requests().iter().skip(before) {
        assert!(
            r.body().is_empty(),
            "upstream got body bytes: {:?}",
            r.text()
        );
    }

    // a request header or query parameter with a card: 403, never forwarded
    let before = up.request_count();
    let resp = get_streamed(envoy.port(), "/x", &[("x-card", CARD)]);
    assert_refused(
        &resp,
        403,
        "sensitive_data",
        "request blocked: contains card",
    );
    let resp = get_streamed(envoy.port(), "/x?card=4111111111111111", &[]);
    assert_refused(
        &resp,
        403,
        "sensitive_data",
        "request blocked: contains card",
    );
    assert_eq!(up.request_count(), before);

    // a clean request body is forwarded whole
    let resp = PieceRequest::new("POST", "/upload")
        .header("content-type", "text/plain")
        .pieces(["all ", "clean"])
        .send(envoy.port());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "all clean");
    assert_eq!(up.last_request().expect("forwarded").text(), "all clean");
    assert_eq!(counter(&envoy, "blocked"), 5);
}

// ---------------------------------------------------------------------------
// 3. Scopes, content types, rules

#[test]
fn request_headers_query_body_and_response_headers_are_redacted() {
    let up = BodyUpstream::start();
    up.serve(
        "/pay/card",
        ResponseSpec::new(format!("card {CARD} mail bob@example.com")),
    );
    up.serve("/healthz/x", ResponseSpec::new(format!("card {CARD}")));
    let envoy = start(
        &up,
        r#"{
            "request": { "body": false, "headers": ["x-card"], "query": ["card", "email"] },
            "response": { "body": true, "headers": ["x-debug-info"] },
            "rules": [
                { "name": "health", "match": { "path": { "prefix": "/healthz" } }, "skip": true },
                { "name": "payments", "match": { "path": { "prefix": "/pay/" } },
                  "request": { "body": true }, "response": { "body": true },
                  "detectors": ["card"] }
            ]
        }"#,
    );

    // headers and query parameters in scope reach the upstream redacted;
    // others stay as sent
    let resp = get_streamed(
        envoy.port(),
        "/q?card=4111%201111%201111%201111&other=4111111111111111&email=bob%40example.com&n=1",
        &[
            ("x-card", "my card is 4111-1111-1111-1111!"),
            ("x-other", CARD),
            ("x-echo-header-x-debug-info", "user bob@example.com ok"),
            ("x-echo-header-x-public", "bob@example.com"),
        ],
    );
    assert_eq!(resp.status, 200);
    let got = up.last_request().expect("forwarded");
    assert_eq!(got.header("x-card"), Some("my card is [REDACTED:card]!"));
    assert_eq!(got.header("x-other"), Some(CARD));
    let (path, query) = got.path.split_once('?').expect("a query");
    assert_eq!(path, "/q");
    let query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let q = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{k} missing from {query:?}"))
    };
    assert_eq!(q("card"), "[REDACTED:card]");
    assert_eq!(q("other"), "4111111111111111");
    assert_eq!(q("email"), "[REDACTED:email]");
    assert_eq!(q("n"), "1");
    assert!(!got.path.contains("4111%20"), "{}", got.path);
    // response headers in scope
    assert_eq!(
        resp.header("x-debug-info"),
        Some("user [REDACTED:email] ok")
    );
    assert_eq!(resp.header("x-public"), Some("bob@example.com"));

    // request body out of scope by default: forwarded as is; the echoed
    // response body is in scope
    let body = format!("note {CARD} from bob@example.com");
    let resp = PieceRequest::new("POST", "/other")
        .header("content-type", "text/plain")
        .body_split(body.as_bytes(), &[10])
        .send(envoy.port());
    assert_eq!(up.last_request().expect("forwarded").text(), body);
    assert_eq!(resp.text(), "note [REDACTED:card] from [REDACTED:email]");

    // the payments rule: request body in scope, only the card detector
    let resp = PieceRequest::new("POST", "/pay/submit")
        .header("content-type", "application/x-www-form-urlencoded")
        .body_split(body.as_bytes(), &[12, 30])
        .send(envoy.port());
    let want = "note [REDACTED:card] from bob@example.com";
    assert_eq!(up.last_request().expect("forwarded").text(), want);
    assert_eq!(resp.text(), want);
    let resp = get_split(&envoy, "/pay/card", &[7]);
    assert_eq!(resp.text(), "card [REDACTED:card] mail bob@example.com");
    // the rule's scopes replace the top level: x-card is not scanned there
    get_streamed(envoy.port(), "/pay/h", &[("x-card", CARD)]);
    assert_eq!(
        up.last_request().expect("forwarded").header("x-card"),
        Some(CARD)
    );

    // the health rule skips everything
    let resp = get_streamed(envoy.port(), "/healthz/x", &[("x-card", CARD)]);
    assert_eq!(resp.text(), format!("card {CARD}"));
    assert_eq!(
        up.last_request().expect("forwarded").header("x-card"),
        Some(CARD)
    );
}

#[test]
fn only_selected_content_types_are_scanned() {
    let up = BodyUpstream::start();
    let body = format!("card {CARD}");
    let redacted = "card [REDACTED:card]";
    let cases: [(&str, Option<&str>, bool); 7] = [
        ("/png", Some("image/png"), false),
        ("/json", Some("application/json"), false),
        ("/vnd", Some("application/vnd.api+json"), true),
        ("/html", Some("TEXT/HTML; charset=utf-8"), true),
        ("/plain", Some("text/plain"), true),
        ("/octet", Some("application/octet-stream"), false),
        ("/none", None, false),
    ];
    for (path, ct, _) in cases {
        let spec = ResponseSpec::new(body.clone());
        let spec = match ct {
            Some(ct) => spec.content_type(ct),
            None => spec.no_content_type(),
        };
        up.serve(path, spec);
    }
    let envoy = start(
        &up,
        r#"{ "content_types": ["text/*", "application/*+json"] }"#,
    );
    for (path, ct, scanned) in cases {
        let resp = get_split(&envoy, path, &[8]);
        assert_eq!(resp.status, 200);
        let want = if scanned { redacted } else { body.as_str() };
        assert_eq!(resp.text(), want, "{path} {ct:?}");
    }
    assert_eq!(counter(&envoy, "bodies_scanned"), 3);

    // the default list: JSON is scanned, images are not
    let envoy = start(&up, "{}");
    assert_eq!(get_split(&envoy, "/json", &[]).text(), redacted);
    assert_eq!(get_split(&envoy, "/png", &[]).text(), body);
}

// ---------------------------------------------------------------------------
// 4. JSON field mode

const JSON_IN: &str = r#"{"user": {"Password": "hunter2", "ssn": "123-45-6789", "name": "bob", "notes": "mail bob@example.com"},
  "list": [{"password": 12345}, {"password": {"a": [1, 2]}}, {"password": null}, {"PASSWORD": true}],
  "n": 1.5, "big": 123456789012345678901234567890, "pan": 4111111111111111, "bob@example.com": 1e3,
  "ok": false, "card": "4111 1111 1111 1111"}"#;
const JSON_OUT: &str = r#"{"user": {"Password": "*******", "ssn": "***-**-****", "name": "bob", "notes": "mail [REDACTED:email]"},
  "list": [{"password": "*****"}, {"password": "{\"*\": [*, *]}"}, {"password": "****"}, {"PASSWORD": "****"}],
  "n": 1.5, "big": 123456789012345678901234567890, "pan": "[REDACTED:card]", "[REDACTED:email]": 1e3,
  "ok": false, "card": "[REDACTED:card]"}"#;

#[test]
fn json_fields_are_redacted_at_any_depth_and_invalid_json_is_refused() {
    let up = BodyUpstream::start();
    up.serve(
        "/j",
        ResponseSpec::new(JSON_IN)
            .content_type("application/json; charset=utf-8")
            .framing(Framing::ContentLength),
    );
    up.serve(
        "/bad",
        ResponseSpec::new(r#"{"password": "hunter2", "#).content_type("application/json"),
    );
    let envoy = start(
        &up,
        r#"{
            "json_fields": { "keys": ["password", "ssn"], "action": "mask" },
            "request": { "body": true }
        }"#,
    );
    let resp = get_split(&envoy, "/j", &[20, 100]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.text(), JSON_OUT);
    // buffered and rewritten: Content-Length dropped
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(counter(&envoy, "json_fields_redacted"), 6);

    // request direction: the upstream gets the redacted document
    let resp = PieceRequest::new("POST", "/echo")
        .header("content-type", "application/json")
        .body_split(JSON_IN.as_bytes(), &[5, 50])
        .send(envoy.port());
    assert_eq!(resp.status, 200);
    assert_eq!(up.last_request().expect("forwarded").text(), JSON_OUT);
    assert_eq!(resp.text(), JSON_OUT);

    // invalid JSON request: 400, no body byte upstream
    let before = up.request_count();
    let resp = PieceRequest::new("POST", "/echo")
        .header("content-type", "application/json")
        .pieces([r#"{"password": "#, r#""hunter2""#])
        .send(envoy.port());
    assert_refused(&resp, 400, "invalid_json", "request body is not valid JSON");
    std::thread::sleep(std::time::Duration::from_millis(200));
    for r in up.requests().iter().skip(before) {
        assert!(r.body().is_empty(), "upstream got {:?}", r.text());
    }
    // invalid JSON response: blocked on the body, so aborted with no byte sent
    let resp = get_streamed(envoy.port(), "/bad", &[]);
    assert_eq!(resp.status, 200);
    assert!(!resp.complete);
    assert_eq!(resp.text(), "");
    assert_eq!(counter(&envoy, "invalid_json"), 2);
    assert_eq!(counter(&envoy, "blocked"), 2);
}

#[test]
fn json_fields_remove_and_scan_invalid_json_as_text() {
    let up = BodyUpstream::start();
    up.serve(
        "/j",
        ResponseSpec::new(
            r#"[{"a": 1, "Secret": "x", "b": {"secret": [1]}}, "mail bob@example.com"]"#,
        )
        .content_type("application/problem+json"),
    );
    up.serve(
        "/bad",
        ResponseSpec::new("{broken bob@example.com")
            .content_type("application/json")
            .split_at(&[12]),
    );
    up.serve(
        "/text",
        ResponseSpec::new(r#"{"secret": "x"}"#).content_type("text/plain"),
    );
    let envoy = start(
        &up,
        r#"{
            "json_fields": { "keys": ["secret"], "action": "remove" },
            "on_invalid_json": "scan_as_text"
        }"#,
    );
    let resp = get_split(&envoy, "/j", &[3]);
    assert_eq!(
        resp.text(),
        r#"[{"a": 1, "b": {}}, "mail [REDACTED:email]"]"#
    );
    assert_eq!(counter(&envoy, "json_fields_redacted"), 2);
    let resp = get_streamed(envoy.port(), "/bad", &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.text(), "{broken [REDACTED:email]");
    assert_eq!(counter(&envoy, "invalid_json"), 1);
    assert_eq!(counter(&envoy, "blocked"), 0);
    // not a JSON content type: field mode does not apply
    assert_eq!(get_split(&envoy, "/text", &[]).text(), r#"{"secret": "x"}"#);
}

// ---------------------------------------------------------------------------
// 6. Buffer limits

fn filler(n: usize) -> String {
    "lorem ipsum ".repeat(n / 12 + 1)[..n].to_owned()
}

#[test]
fn over_the_buffer_limit_block_refuses_early_or_aborts() {
    let up = BodyUpstream::start();
    let big = filler(2000);
    up.serve(
        "/big-cl",
        ResponseSpec::new(big.clone()).framing(Framing::ContentLength),
    );
    up.serve(
        "/big-chunked",
        ResponseSpec::new(big.clone()).split_at(&[500, 1000, 1500]),
    );
    up.serve("/small", ResponseSpec::new(filler(1000)).split_at(&[500]));
    let envoy = start(
        &up,
        r#"{
            "detectors": { "card": { "action": "block" } },
            "request": { "body": true },
            "max_buffer_bytes": 1024,
            "on_over_limit": "block"
        }"#,
    );
    let req_msg = "request body is larger than the 1024 bytes the data-loss filter can inspect";
    let resp_msg = "response body is larger than the 1024 bytes the data-loss filter can inspect";

    // declared too large: refused before anything goes upstream
    let before = up.request_count();
    let resp = PieceRequest::new("POST", "/echo")
        .header("content-type", "text/plain")
        .framing(Framing::ContentLength)
        .body_split(big.as_bytes(), &[1000])
        .send(envoy.port());
    assert_refused(&resp, 413, "body_too_large", req_msg);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(up.request_count(), before, "the upstream was called");

    // chunked, found too large while buffering: 413, no body byte upstream
    let resp = PieceRequest::new("POST", "/echo")
        .header("content-type", "text/plain")
        .body_split(big.as_bytes(), &[600, 1200])
        .send(envoy.port());
    assert_refused(&resp, 413, "body_too_large", req_msg);
    std::thread::sleep(std::time::Duration::from_millis(200));
    for r in up.requests().iter().skip(before) {
        assert!(
            r.body().is_empty(),
            "upstream got {} body bytes",
            r.body().len()
        );
    }

    // response declared too large: 502 at header time
    let resp = get_streamed(envoy.port(), "/big-cl", &[]);
    assert_refused(&resp, 502, "body_too_large", resp_msg);

    // response found too large while buffering: aborted, nothing sent
    let resp = get_streamed(envoy.port(), "/big-chunked", &[]);
    assert_eq!(resp.status, 200);
    assert!(!resp.complete);
    assert_eq!(resp.text(), "");

    // under the limit: whole
    let resp = get_streamed(envoy.port(), "/small", &[]);
    assert_eq!(resp.text(), filler(1000));
    assert_eq!(counter(&envoy, "over_limit"), 4);
    assert_eq!(counter(&envoy, "blocked"), 4);
}

const STREAM_OVER_LIMIT: &str = r#"{
    "detectors": { "card": { "action": "block" } },
    "request": { "body": true },
    "max_buffer_bytes": 1024,
    "on_over_limit": "stream"
}"#;

fn over_limit_body() -> (String, String) {
    (
        format!("{} card {CARD} end", filler(3000)),
        format!("{} card [REDACTED:card] end", filler(3000)),
    )
}

/// Content-Length over the limit: streamed from the start, block acting as tag.
#[test]
fn over_the_buffer_limit_stream_redacts_a_declared_large_body() {
    let up = BodyUpstream::start();
    let (body, want) = over_limit_body();
    up.serve(
        "/cl",
        ResponseSpec::new(body.clone())
            .framing(Framing::ContentLength)
            .split_at(&[1000, 3010]),
    );
    let envoy = start(&up, STREAM_OVER_LIMIT);
    let resp = get_streamed(envoy.port(), "/cl", &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.text(), want);
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(counter(&envoy, "detected.card"), 1);

    // request direction, declared too large
    let resp = PieceRequest::new("POST", "/echo")
        .header("content-type", "text/plain")
        .framing(Framing::ContentLength)
        .body_split(body.as_bytes(), &[1500, 3008])
        .send(envoy.port());
    assert_eq!(resp.status, 200);
    assert_eq!(up.last_request().expect("forwarded").text(), want);
    assert_eq!(resp.text(), want);
    assert_eq!(counter(&envoy, "blocked"), 0);
    // found in the first response and in the request (the echo is clean)
    assert_eq!(counter(&envoy, "detected.card"), 2);
    // the first response, the request and its echo are all over the limit
    assert_eq!(
        counter(&envoy, "over_limit"),
        3,
        "every body over the limit is counted in over_limit"
    );
}

/// No Content-Length: buffered until the limit, then streamed.
#[test]
fn over_the_buffer_limit_stream_redacts_a_chunked_body() {
    let up = BodyUpstream::start();
    let (body, want) = over_limit_body();
    up.serve(
        "/chunked",
        ResponseSpec::new(body.clone()).split_at(&[700, 1400, 2100, 3009]),
    );
    let envoy = start(&up, STREAM_OVER_LIMIT);
    let resp = get_streamed(envoy.port(), "/chunked", &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.text(), want);
    assert_eq!(counter(&envoy, "over_limit"), 1);
    assert_eq!(counter(&envoy, "blocked"), 0);
    assert_eq!(counter(&envoy, "detected.card"), 1);
}

// ---------------------------------------------------------------------------
// 7. Compressed bodies

/// dlp-redact.yaml with Envoy's gzip decompressor after dlp-redact (so it
/// runs before it on responses).
fn start_with_decompressor(up: &BodyUpstream, plugin_config: &str) -> Envoy {
    Envoy::builder(CONFIG)
        .port(18000, up.port())
        .plugin_config(plugin_config)
        .edit(|config: &mut Value| {
            let filters = config["static_resources"]["listeners"][0]["filter_chains"][0]
                ["filters"][0]["typed_config"]["http_filters"]
                .as_array_mut()
                .expect("http_filters");
            assert_eq!(filters[0]["name"], "dlp-redact");
            filters.insert(
                1,
                json!({
                    "name": "envoy.filters.http.decompressor",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor",
                        "decompressor_library": {
                            "name": "gzip",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip"
                            }
                        }
                    }
                }),
            );
        })
        .start()
}

#[test]
fn compressed_bodies_are_skipped_or_blocked() {
    let up = BodyUpstream::start();
    let body = format!("{} card {CARD} end", filler(300));
    let spec = ResponseSpec::new(body.clone())
        .content_type("text/plain")
        .content_encoding("gzip")
        .split_at(&[20, 60]);
    let wire = spec.encoded_body();
    up.serve("/gz", spec);

    // skip: passed byte-identical, counted
    let envoy = start(&up, r#"{ "on_unreadable_encoding": "skip" }"#);
    let resp = get_streamed(envoy.port(), "/gz", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_eq!(resp.body, wire);
    assert_eq!(gunzip(&resp.body), body.as_bytes());
    assert_eq!(counter(&envoy, "skipped_encoding"), 1);
    assert_eq!(counter(&envoy, "bodies_scanned"), 0);
    drop(envoy);

    // block: 502 for responses, 415 for requests
    let envoy = start(
        &up,
        r#"{ "on_unreadable_encoding": "block", "request": { "body": true } }"#,
    );
    let resp = get_streamed(envoy.port(), "/gz", &[]);
    assert_refused(
        &resp,
        502,
        "unsupported_encoding",
        "response body has a content-encoding the data-loss filter cannot inspect",
    );
    let before = up.request_count();
    let resp = PieceRequest::new("POST", "/echo")
        .header("content-type", "text/plain")
        .header("content-encoding", "gzip")
        .pieces([wire.clone()])
        .send(envoy.port());
    assert_refused(
        &resp,
        415,
        "unsupported_encoding",
        "request body has a content-encoding the data-loss filter cannot inspect",
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(up.request_count(), before);
}

#[test]
fn a_streamed_body_ended_by_trailers_is_counted_as_truncated() {
    // Without `buffer`, the bytes a stream holds back cannot follow the
    // decompressor's trailers: the documented limitation, counted and logged.
    let up = BodyUpstream::start();
    let body = format!("{} card {CARD} end", filler(300));
    up.serve(
        "/gz",
        ResponseSpec::new(body)
            .content_type("text/plain")
            .content_encoding("gzip")
            .split_at(&[20, 60]),
    );
    let envoy = start_with_decompressor(&up, "{}");
    let resp = get_streamed(envoy.port(), "/gz", &[]);
    assert_eq!(resp.status, 200);
    assert!(!resp.text().contains(CARD), "the card never leaves");
    assert_eq!(counter(&envoy, "trailers_truncated"), 1);
    envoy.wait_for_log("ended with trailers");
}

// ---------------------------------------------------------------------------
// 9. Refused configurations

#[test]
fn bad_configs_fail_validation_naming_the_field() {
    let up = BodyUpstream::start();
    let cases: [(&str, &[&str]); 8] = [
        (
            r#"{ "detectors": { "cardd": { "action": "tag" } } }"#,
            &["detectors.cardd", "unknown detector 'cardd'"],
        ),
        (
            r#"{ "custom_detectors": [ { "name": "a_run", "regex": "a+" } ] }"#,
            &[
                "custom_detectors[0].regex",
                "the pattern has no maximum length",
            ],
        ),
        (
            r#"{ "detectors": { "email": { "action": "hash" } } }"#,
            &["hash_key", "required: an action is 'hash'"],
        ),
        (
            r#"{ "detectors": { "card": { "action": "tag", "keep_last": 4 } } }"#,
            &[
                "detectors.card.keep_last",
                "only allowed with action 'mask'",
            ],
        ),
        (r#"{ "detectorz": {} }"#, &["detectorz"]),
        (
            r#"{ "detectors": { "card": { "action": "mask", "keep_lst": 4 } } }"#,
            &["keep_lst"],
        ),
        (
            r#"{ "max_buffer_bytes": 0 }"#,
            &["max_buffer_bytes", "must be between 1 and"],
        ),
        (
            r#"{ "rules": [ { "match": { "path": { "prefix": "/" } }, "detectors": ["nope"] } ] }"#,
            &["rules[0].detectors", "nope"],
        ),
    ];
    for (config, needles) in cases {
        let result = Envoy::builder(CONFIG)
            .port(18000, up.port())
            .plugin_config(config)
            .validate();
        assert!(!result.ok, "{config} validated:\n{}", result.output);
        for needle in needles {
            assert!(
                result.output.contains(needle),
                "{config}: output lacks {needle:?}:\n{}",
                pwf_tests::tail(&result.output, 15)
            );
        }
    }
    // and the config file itself is valid
    let result = Envoy::builder(CONFIG).port(18000, up.port()).validate();
    assert!(result.ok, "{}", result.output);
}

#[test]
fn upstreams_are_asked_for_identity_and_envoys_compressor_compresses_the_redacted_body() {
    // The recommended setup for compressed traffic: dlp-redact removes
    // accept-encoding (identity_encoding, on by default) so the upstream
    // answers uncompressed, and Envoy's compressor, listed before
    // dlp-redact, compresses the redacted response for the client.
    let up = BodyUpstream::start();
    let body = format!("{} card {CARD} end", filler(300));
    up.serve(
        "/plain",
        ResponseSpec::new(body)
            .content_type("text/plain")
            .split_at(&[20, 60]),
    );
    let envoy = Envoy::builder(CONFIG)
        .port(18000, up.port())
        .plugin_config("{}")
        .edit(|config: &mut Value| {
            let filters = config["static_resources"]["listeners"][0]["filter_chains"][0]
                ["filters"][0]["typed_config"]["http_filters"]
                .as_array_mut()
                .expect("http_filters");
            filters.insert(
                0,
                json!({
                    "name": "envoy.filters.http.compressor",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor",
                        "response_direction_config": {
                            "common_config": { "min_content_length": 10, "content_type": ["text/plain"] }
                        },
                        "compressor_library": {
                            "name": "gzip",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip"
                            }
                        }
                    }
                }),
            );
        })
        .start();
    let resp = get_streamed(envoy.port(), "/plain", &[("accept-encoding", "gzip")]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    let upstream_saw = up.last_request().expect("one request");
    assert_eq!(upstream_saw.header("accept-encoding"), None);
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_eq!(
        String::from_utf8(gunzip(&resp.body)).unwrap(),
        format!("{} card [REDACTED:card] end", filler(300))
    );
    assert_eq!(counter(&envoy, "detected.card"), 1);

    // identity_encoding off: the client's accept-encoding reaches the upstream.
    let envoy = Envoy::builder(CONFIG)
        .port(18000, up.port())
        .plugin_config(r#"{"identity_encoding": false}"#)
        .start();
    let resp = get_streamed(envoy.port(), "/plain", &[("accept-encoding", "gzip")]);
    assert_eq!(resp.status, 200);
    assert_eq!(
        up.last_request()
            .expect("request")
            .header("accept-encoding"),
        Some("gzip")
    );
}
