//! Native tests of the pure logic: configuration, streaming across every
//! chunk boundary, actions, query and JSON field redaction, body plans.

use crate::body::{self, BodyHeaders, BodyPlan, Direction, Refusal};
use crate::config::{Config, Policy};
use crate::detectors::BUILTINS;
use crate::json_fields::redact_json;
use crate::query::redact_query;
use crate::redact::{Blocker, Pass, Report};
use crate::stream::Stream;
use serde_json::{json, Value};

const KEY: &str = "0123456789abcdef-test-key";

/// A policy from JSON, with every built-in detector off unless `builtins` is
/// true, so custom-detector tests do not depend on the catalog.
fn policy_with(mut config: Value, builtins: bool) -> Result<Policy, String> {
    if !builtins {
        let detectors = config
            .as_object_mut()
            .unwrap()
            .entry("detectors")
            .or_insert_with(|| json!({}));
        for b in BUILTINS {
            detectors
                .as_object_mut()
                .unwrap()
                .entry(b.name)
                .or_insert_with(|| json!({"enabled": false}));
        }
    }
    let text = serde_json::to_vec(&config).unwrap();
    let env = |name: &str| (name == "DLP_KEY").then(|| KEY.to_string());
    pwf_shared::config::parse_json::<Config>(Some(&text))
        .and_then(|c| c.compile(&env))
        .map_err(|e| e.to_string())
}

fn policy(config: Value) -> Policy {
    policy_with(config, false).unwrap()
}

fn pass(p: &Policy) -> Pass<'_> {
    p.pass(&p.defaults).unwrap()
}

/// Streams `body` through in chunks split at `cuts`.
fn stream_split(p: &Policy, body: &[u8], cuts: &[usize]) -> (Vec<u8>, Report) {
    let mut stream = Stream::default();
    let mut out = Vec::new();
    let mut report = Report::default();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
        let eos = cut == body.len();
        let before = out.len();
        let unchanged = stream.push(&pass(p), &body[from..cut], eos, &mut out, &mut report);
        if unchanged {
            // The filter would leave Envoy's chunk as it is.
            assert_eq!(&out[before..], &body[from..cut], "chunk {from}..{cut}");
        }
        from = cut;
    }
    (out, report)
}

#[test]
fn a_stream_reports_the_chunks_it_passes_through_unchanged() {
    let p = policy_with(json!({}), true).unwrap();
    let mut stream = Stream::default();
    let (mut out, mut report) = (Vec::new(), Report::default());
    let mut push = |chunk: &[u8], eos: bool| {
        let before = out.len();
        let unchanged = stream.push(&pass(&p), chunk, eos, &mut out, &mut report);
        (unchanged, out[before..].to_vec())
    };
    // Nothing held, nothing found: Envoy's chunk stays as it is.
    assert_eq!(
        push(b"Nothing to see. ", false),
        (true, b"Nothing to see. ".to_vec())
    );
    // The digits are held back: the chunk must be rewritten shorter.
    assert_eq!(push(b"Card 4111 1111", false), (false, b"Card ".to_vec()));
    // The held digits go out in front of this chunk, redacted.
    assert_eq!(
        push(b" 1111 1111 paid. ", false),
        (false, b"[REDACTED:card] paid. ".to_vec())
    );
    assert_eq!(push(b"All clear. ", false), (true, b"All clear. ".to_vec()));
    // A value inside one chunk is redacted in place.
    assert_eq!(
        push(b"Mail bob@example.com now. ", false),
        (false, b"Mail [REDACTED:email] now. ".to_vec())
    );
    assert_eq!(push(b"The end", true), (true, b"The end".to_vec()));
}

fn custom(detectors: Value) -> Policy {
    policy(json!({ "custom_detectors": detectors, "hash_key": {"inline": KEY} }))
}

fn secret_policy() -> Policy {
    custom(json!([
        {"name": "secret", "regex": "\\bSECRET-[0-9]{4,8}\\b", "action": "tag"},
        {"name": "pin", "regex": "\\bPIN[0-9]{4}\\b", "action": "mask", "keep_last": 2},
    ]))
}

#[test]
fn a_value_split_at_every_position_is_redacted() {
    let p = secret_policy();
    let body = b"lead text, SECRET-123456 and PIN1234, trailing text";
    let expected = b"lead text, [REDACTED:secret] and *****34, trailing text".to_vec();
    for a in 0..=body.len() {
        let (out, report) = stream_split(&p, body, &[a]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected),
            "cut at {a}"
        );
        assert_eq!(report.redacted, 2);
        for b in a..=body.len() {
            let (out, _) = stream_split(&p, body, &[a, b]);
            assert_eq!(out, expected, "cuts at {a}, {b}");
        }
    }
}

#[test]
fn one_byte_chunks_are_redacted() {
    let p = secret_policy();
    let body = b"SECRET-1234 PIN9876 SECRET-87654321";
    let cuts: Vec<usize> = (1..body.len()).collect();
    let (out, report) = stream_split(&p, body, &cuts);
    assert_eq!(out, b"[REDACTED:secret] *****76 [REDACTED:secret]");
    let secret = p.catalog.detector_id("secret").unwrap();
    let pin = p.catalog.detector_id("pin").unwrap();
    assert_eq!(report.found, vec![(secret, 2), (pin, 1)]);
}

#[test]
fn word_boundaries_hold_across_chunks() {
    // `\b` before the value needs the byte before it, which was emitted with an earlier chunk.
    let p = secret_policy();
    let body = b"xSECRET-1234 SECRET-12345x SECRET-1234";
    for a in 0..=body.len() {
        let (out, _) = stream_split(&p, body, &[a]);
        assert_eq!(
            out, b"xSECRET-1234 SECRET-12345x [REDACTED:secret]",
            "cut at {a}"
        );
    }
}

#[test]
fn the_stream_holds_back_at_most_the_window() {
    let p = secret_policy();
    let window = pass(&p).scanner.window();
    assert_eq!(window, "SECRET-".len() + 8 + 2);
    let mut stream = Stream::default();
    let mut out = Vec::new();
    let mut report = Report::default();
    let chunk = vec![b'a'; 1000];
    for _ in 0..10 {
        stream.push(&pass(&p), &chunk, false, &mut out, &mut report);
        assert!(stream.pending() <= window);
    }
    assert_eq!(out.len(), 10_000 - stream.pending());
    assert!(stream.peak() <= 1000 + window + 1);
    stream.push(&pass(&p), b"", true, &mut out, &mut report);
    assert_eq!(out.len(), 10_000);
    assert_eq!(stream.pending(), 0);
}

/// Every built-in detector on, the opt-in ones too, with its default action.
fn every_builtin_policy() -> Policy {
    let all_on = BUILTINS
        .iter()
        .map(|b| (b.name.to_string(), json!({"enabled": true})))
        .collect::<serde_json::Map<_, _>>();
    policy_with(json!({ "detectors": all_on }), true).unwrap()
}

/// Every corpus positive, far apart in filler text: a body many windows long
/// whose matches are sparse, so that most chunks end with no match pending.
/// Also returns how many values it holds.
fn sparse_document() -> (Vec<u8>, u64) {
    let corpus: Value = serde_json::from_str(include_str!("../corpus.json")).unwrap();
    let positives = corpus["positives"].as_array().unwrap();
    let filler = "lorem ipsum dolor sit amet, ".repeat(400);
    let mut doc = String::new();
    for (i, positive) in positives.iter().enumerate() {
        doc.push_str(&filler[..(i * 2749) % filler.len()]);
        doc.push_str(" | ");
        doc.push_str(positive["value"].as_str().unwrap());
        doc.push_str(" | ");
    }
    doc.push_str(&filler);
    (doc.into_bytes(), positives.len() as u64)
}

#[test]
fn a_sparse_body_streams_to_the_same_bytes_in_any_chunk_size() {
    let p = every_builtin_policy();
    let (body, values) = sparse_document();
    let (whole, whole_report) = stream_split(&p, &body, &[]);
    assert_eq!(whole_report.redacted, values);
    for chunk in [61, 255, 1000, 4096, 8191, 16384] {
        let cuts: Vec<usize> = (chunk..body.len()).step_by(chunk).collect();
        let (out, report) = stream_split(&p, &body, &cuts);
        assert!(out == whole, "chunk {chunk}");
        assert_eq!(report.found, whole_report.found, "chunk {chunk}");
    }
}

#[test]
fn every_action_writes_its_replacement() {
    let p = custom(json!([
        {"name": "m", "regex": "\\bM[0-9]{3}-[0-9]{4}\\b", "action": "mask", "keep_last": 4},
        {"name": "mx", "regex": "\\bX[0-9]{4}\\b", "action": "mask", "mask_char": "#"},
        {"name": "h", "regex": "\\bH[0-9]{4}\\b", "action": "hash"},
        {"name": "r", "regex": "\\bR[0-9]{4}\\b", "action": "remove"},
        {"name": "t", "regex": "\\bT[0-9]{4}\\b", "action": "tag"},
        {"name": "a", "regex": "\\bA[0-9]{4}\\b", "action": "alert"},
        {"name": "b", "regex": "\\bB[0-9]{4}\\b", "action": "block"},
    ]));
    let mut report = Report::default();
    let out = pass(&p)
        .redact_value(
            b"M123-4567 X1234 H1111 H1111 H2222 R1234. T1234 A1234",
            &mut report,
        )
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let hashes: Vec<&str> = text
        .split(' ')
        .filter(|s| s.starts_with("[HASH:h:"))
        .collect();
    assert_eq!(hashes.len(), 3);
    assert_eq!(hashes[0], hashes[1], "equal values hash equally");
    assert_ne!(hashes[0], hashes[2]);
    assert_eq!(hashes[0].len(), "[HASH:h:]".len() + 16);
    assert_eq!(
        text.replace(hashes[0], "H1").replace(hashes[2], "H2"),
        "****-4567 ##### H1 H1 H2 . [REDACTED:t] A1234"
    );
    assert_eq!(report.redacted, 7);
    assert!(report.block.is_none());

    let mut report = Report::default();
    pass(&p).redact_value(b"x B1234 y", &mut report).unwrap();
    assert_eq!(
        report.block.map(|b| matches!(b, Blocker::Detector(_))),
        Some(true)
    );

    // Alert only: the value is left, nothing changes.
    let mut report = Report::default();
    assert_eq!(pass(&p).redact_value(b"A1234", &mut report), None);
    assert_eq!(report.redacted, 0);
    assert_eq!(report.found.len(), 1);
}

#[test]
fn hashes_depend_on_the_key() {
    let detector = json!([{"name": "h", "regex": "\\bH[0-9]{4}\\b", "action": "hash"}]);
    let a = policy(json!({"custom_detectors": detector, "hash_key": {"inline": KEY}}));
    let b = policy(
        json!({"custom_detectors": detector, "hash_key": {"inline": "another-key-0123456789"}}),
    );
    let mut r = Report::default();
    assert_ne!(
        pass(&a).redact_value(b"H1234", &mut r),
        pass(&b).redact_value(b"H1234", &mut r)
    );
}

#[test]
fn validators_reject_matches_without_hiding_later_ones() {
    let p = custom(json!([
        {"name": "num", "regex": "\\b[0-9]{4}(?: [0-9]{4}){3}\\b", "validator": "luhn", "action": "tag"},
    ]));
    let mut r = Report::default();
    // The first group of 16 digits fails Luhn; the next one passes.
    let out = pass(&p)
        .redact_value(b"4111 1111 1111 1112 4111 1111 1111 1111", &mut r)
        .unwrap();
    assert_eq!(out, b"4111 1111 1111 1112 [REDACTED:num]");
}

#[test]
fn a_rejected_match_gives_way_to_a_shorter_one_or_another_lanes() {
    let p = policy_with(json!({}), true).unwrap();
    for (body, want) in [
        // a CVV after the number: 19 digits fail, the 16 before them pass
        (
            "pay 4111 1111 1111 1111 123 thanks",
            "pay [REDACTED:card] 123 thanks",
        ),
        (
            "pay 4111-1111-1111-1111-123 thanks",
            "pay [REDACTED:card]-123 thanks",
        ),
        (
            "card 5555 5555 5555 4444 737 exp 12/27",
            "card [REDACTED:card] 737 exp 12/27",
        ),
        // a date after an E.164 number
        (
            "call +14155552671 20240101 ok",
            "call [REDACTED:phone] 20240101 ok",
        ),
        // a digit run that is no card does not hide the e-mail address at its start
        (
            "mail 1234567890123@example.com ok",
            "mail [REDACTED:email] ok",
        ),
        // a dot with no digit before it is no decimal fraction
        (
            "Card No.4111111111111111 paid",
            "Card No.[REDACTED:card] paid",
        ),
        ("x 0.4111111111111111 y", "x 0.4111111111111111 y"),
    ] {
        assert_splits_match_whole(&p, body, want);
    }
}

#[test]
fn json_escaped_slashes_do_not_cut_a_secret_short() {
    // PHP's json_encode and some Java serializers write `/` as `\/`.
    let p = policy_with(json!({}), true).unwrap();
    assert_splits_match_whole(
        &p,
        r#"{"aws_secret_access_key":"wJalrXUtnFEMI\/K7MDENG\/bPxRfiCYEXAMPLEKEY","x":1}"#,
        r#"{"aws_secret_access_key":"[REDACTED:aws_secret_access_key]","x":1}"#,
    );
    assert_splits_match_whole(
        &p,
        r#"{"auth":"Bearer abcdefghijklmnop\/qrstuvwxyz0123456789"}"#,
        r#"{"auth":"Bearer [REDACTED:bearer_token]"}"#,
    );
}

#[test]
fn query_values_are_decoded_scanned_and_reencoded() {
    let p = secret_policy();
    let mut r = Report::default();
    let names = vec!["note".to_string(), "n2".to_string()];
    let out = redact_query(
        b"/a/b?x=SECRET-1234&note=my%20SECRET-1234+here&n2=SECRET%2D9999&keep=%41#frag",
        &names,
        &pass(&p),
        &mut r,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "/a/b?x=SECRET-1234&note=my+%5BREDACTED%3Asecret%5D+here&n2=%5BREDACTED%3Asecret%5D&keep=%41#frag"
    );
    assert_eq!(
        redact_query(b"/a?note=clean", &names, &pass(&p), &mut r),
        None
    );
    assert_eq!(redact_query(b"/a", &names, &pass(&p), &mut r), None);
}

fn json_policy(action: Value) -> Policy {
    let mut fields = json!({"keys": ["Password", "ssn"]});
    for (k, v) in action.as_object().unwrap() {
        fields[k] = v.clone();
    }
    policy(json!({
        "custom_detectors": [{"name": "secret", "regex": "\\bSECRET-[0-9]{4}\\b"}],
        "json_fields": fields,
        "hash_key": {"inline": KEY},
    }))
}

fn run_json(p: &Policy, body: &str) -> Result<(String, Report, u64), ()> {
    let mut report = Report::default();
    let mut n = 0;
    let fields = p.json_fields.as_ref().unwrap();
    redact_json(body.as_bytes(), fields, &pass(p), &mut report, &mut n)
        .map(|out| (String::from_utf8(out).unwrap(), report, n))
        .map_err(|_| ())
}

#[test]
fn json_fields_are_redacted_at_any_depth_in_order() {
    let p = json_policy(json!({"action": "mask", "keep_last": 2}));
    let body = r#"{ "z": 1, "user": {"password": "hunter2", "SSN": 123456789, "note": "see SECRET-1234"},
                   "list": [{"PASSWORD": {"nested": true}}, "SECRET-9999"], "a": null }"#;
    let (out, report, n) = run_json(&p, body).unwrap();
    assert_eq!(
        out,
        r#"{ "z": 1, "user": {"password": "*****r2", "SSN": "*******89", "note": "see [REDACTED:secret]"},
                   "list": [{"PASSWORD": "{\"******\": **ue}"}, "[REDACTED:secret]"], "a": null }"#
    );
    assert_eq!(n, 3);
    assert_eq!(report.redacted, 2);
}

#[test]
fn json_field_actions_remove_tag_and_block() {
    let body = r#"{"password":"x","keep":"y"}"#;
    let (out, _, _) = run_json(&json_policy(json!({"action": "remove"})), body).unwrap();
    assert_eq!(out, r#"{"keep":"y"}"#);
    // a removed member takes one separator with it, wherever it is
    let remove = json_policy(json!({"action": "remove"}));
    for (body, want) in [
        (r#"{"a": 1, "password": "x"}"#, r#"{"a": 1}"#),
        (r#"{"password": "x" , "a": 1}"#, r#"{"a": 1}"#),
        (
            r#"{"a": 1, "password": "x", "b": 2}"#,
            r#"{"a": 1, "b": 2}"#,
        ),
        (
            r#"{"password": 1, "PASSWORD": [2], "a": 3, "ssn": 4, "Ssn": 5}"#,
            r#"{"a": 3}"#,
        ),
        (r#"{ "password": {"x": [1]} }"#, r#"{  }"#),
        (r#"[{"ssn":1,"password":2},{}]"#, r#"[{},{}]"#),
    ] {
        let (out, _, _) = run_json(&remove, body).unwrap();
        assert_eq!(out, want, "{body}");
        let _: Value = serde_json::from_str(&out).unwrap();
    }
    let (out, _, _) = run_json(&json_policy(json!({"action": "tag"})), body).unwrap();
    assert_eq!(out, r#"{"password":"[REDACTED:password]","keep":"y"}"#);
    let (_, report, _) = run_json(&json_policy(json!({"action": "block"})), body).unwrap();
    assert_eq!(report.block, Some(Blocker::JsonField));
}

#[test]
fn json_field_mode_scans_keys_and_numbers_and_keeps_every_other_byte() {
    let p = policy_with(
        json!({"json_fields": {"keys": ["password"], "action": "tag"}}),
        true,
    )
    .unwrap();
    let body = r#"{
  "bob@example.com": {"plan": "pro"},
  "pan": 4111111111111111,
  "big": 123456789012345678901234567890, "f": 1e5, "g": -0.10E+2,
  "pass\u0077ord": 12, "esc": "card 4111\u00201111 1111 1111",
  "ok": [true, false, null, 42, "x\"y"]
}"#;
    let (out, report, n) = run_json(&p, body).unwrap();
    assert_eq!(
        out,
        r#"{
  "[REDACTED:email]": {"plan": "pro"},
  "pan": "[REDACTED:card]",
  "big": 123456789012345678901234567890, "f": 1e5, "g": -0.10E+2,
  "pass\u0077ord": "[REDACTED:password]", "esc": "card [REDACTED:card]",
  "ok": [true, false, null, 42, "x\"y"]
}"#
    );
    assert_eq!((report.redacted, n), (3, 1));
    // the same values leave no trace, as in streaming mode
    assert!(!out.contains("4111") && !out.contains("bob@"));
    let (unchanged, _, _) = run_json(&p, r#" [1, {"a" : "b"}] "#).unwrap();
    assert_eq!(unchanged, r#" [1, {"a" : "b"}] "#);
}

#[test]
fn json_field_mode_finds_key_dependent_values_and_scans_kept_fields() {
    // The AWS secret pattern needs its key: found as in streaming mode.
    let p = policy_with(
        json!({"json_fields": {"keys": ["note"], "action": "alert"}}),
        true,
    )
    .unwrap();
    let body = r#"{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "n": 1}"#;
    let (out, report, _) = run_json(&p, body).unwrap();
    assert_eq!(
        out,
        r#"{"aws_secret_access_key": "[REDACTED:aws_secret_access_key]", "n": 1}"#
    );
    assert_eq!(report.redacted, 1);
    // A field whose action keeps its value (alert) is still scanned.
    let body = r#"{"note": "card 4111 1111 1111 1111", "other": "card 4111 1111 1111 1111"}"#;
    let (out, report, n) = run_json(&p, body).unwrap();
    assert_eq!(
        out,
        r#"{"note": "card [REDACTED:card]", "other": "card [REDACTED:card]"}"#
    );
    assert_eq!((report.redacted, n), (2, 1));
    // ... and with card set to block, the message is blocked.
    let blocking = policy_with(
        json!({"json_fields": {"keys": ["note"], "action": "alert"},
               "detectors": {"card": {"action": "block"}}}),
        true,
    )
    .unwrap();
    let (_, report, _) = run_json(&blocking, r#"{"note": "4111 1111 1111 1111"}"#).unwrap();
    assert!(report.block.is_some());
}

#[test]
fn malformed_json_is_an_error() {
    let p = json_policy(json!({"action": "tag"}));
    for bad in [r#"{"password": "x""#, "not json", r#"{"a":1} trailing"#, ""] {
        assert!(run_json(&p, bad).is_err(), "{bad}");
    }
    let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
    assert!(run_json(&p, &deep(128)).is_ok());
    assert!(run_json(&p, &deep(129)).is_err(), "nesting beyond 128");
    assert!(run_json(&p, &deep(100_000)).is_err(), "no stack overflow");
    // invalid UTF-8 and a lone surrogate escape
    assert!(run_json(&p, "{\"a\": \"\u{0}\"}").is_err());
    let mut latin1 = br#"{"a": "caf"#.to_vec();
    latin1.extend_from_slice(b"\xe9\"}");
    let mut report = Report::default();
    let fields = p.json_fields.as_ref().unwrap();
    assert!(redact_json(&latin1, fields, &pass(&p), &mut report, &mut 0).is_err());
    assert!(run_json(&p, r#"{"a": "\ud800"}"#).is_err());
}

fn plan(p: &Policy, ct: &str, encoding: Option<&str>, length: Option<&str>) -> BodyPlan {
    body::plan(
        p,
        &p.defaults,
        Direction::Response,
        true,
        BodyHeaders {
            content_type: Some(ct.as_bytes()),
            content_encoding: encoding.map(str::as_bytes),
            content_length: length.map(str::as_bytes),
        },
    )
}

#[test]
fn body_plans_follow_content_type_encoding_and_actions() {
    let tag = secret_policy();
    assert_eq!(
        plan(&tag, "application/json; charset=utf-8", None, None),
        BodyPlan::Stream {
            drop_content_length: true,
            over_limit: false
        }
    );
    assert_eq!(
        plan(&tag, "TEXT/plain", Some("identity"), None),
        BodyPlan::Stream {
            drop_content_length: true,
            over_limit: false
        }
    );
    assert_eq!(
        plan(&tag, "application/problem+json", None, None),
        BodyPlan::Stream {
            drop_content_length: true,
            over_limit: false
        }
    );
    assert_eq!(plan(&tag, "image/png", None, None), BodyPlan::Skip);
    assert_eq!(
        plan(&tag, "application/json", Some("gzip"), None),
        BodyPlan::SkipEncoding
    );

    let mask = custom(json!([{"name": "m", "regex": "\\bM[0-9]{4}\\b", "action": "mask"}]));
    assert_eq!(
        plan(&mask, "text/html", None, Some("10")),
        BodyPlan::Stream {
            drop_content_length: false,
            over_limit: false
        }
    );

    let block = policy(json!({
        "custom_detectors": [{"name": "b", "regex": "\\bB[0-9]{4}\\b", "action": "block"}],
        "max_buffer_bytes": 100,
        "on_unreadable_encoding": "block",
    }));
    assert_eq!(
        plan(&block, "text/plain", None, Some("100")),
        BodyPlan::Buffer {
            json: false,
            drop_content_length: true
        }
    );
    assert_eq!(
        plan(&block, "text/plain", None, Some("101")),
        BodyPlan::RejectTooLarge
    );
    assert_eq!(
        plan(&block, "text/plain", Some("br"), None),
        BodyPlan::RejectEncoding
    );

    let json_mode = json_policy(json!({"action": "tag"}));
    assert_eq!(
        plan(&json_mode, "application/json", None, None),
        BodyPlan::Buffer {
            json: true,
            drop_content_length: true
        }
    );
    assert_eq!(
        plan(&json_mode, "text/plain", None, None),
        BodyPlan::Stream {
            drop_content_length: true,
            over_limit: false
        }
    );
}

#[test]
fn refusals_are_json_errors_without_values() {
    let r = Refusal::sensitive(Direction::Request, "card");
    assert_eq!(r.status, 403);
    let v: Value = serde_json::from_str(&r.body()).unwrap();
    assert_eq!(
        v,
        json!({"error": "sensitive_data", "message": "request blocked: contains card", "status": 403})
    );
    assert_eq!(Refusal::sensitive(Direction::Response, "card").status, 502);
    assert_eq!(Refusal::too_large(Direction::Request, 10).status, 413);
    assert_eq!(Refusal::encoding(Direction::Request).status, 415);
    assert_eq!(Refusal::invalid_json(Direction::Request).status, 400);
    assert_eq!(Refusal::invalid_json(Direction::Response).status, 502);
}

#[test]
fn rules_pick_profiles() {
    let p = policy(json!({
        "custom_detectors": [
            {"name": "a", "regex": "\\bA[0-9]{4}\\b"},
            {"name": "b", "regex": "\\bB[0-9]{4}\\b"},
        ],
        "rules": [
            {"match": {"path": {"prefix": "/health"}}, "skip": true},
            {"match": {"path": {"prefix": "/pay/"}}, "request": {"body": true}, "detectors": ["a"]},
        ],
    }));
    let req =
        |path: &str| pwf_shared::HeaderList::from_pairs([(":path", path), (":method", "GET")]);
    assert!(p.profile_for(&req("/healthz")).is_none());
    let pay = p.profile_for(&req("/pay/x")).unwrap();
    assert!(pay.request.body && pay.response.body);
    let a = p.catalog.detector_id("a").unwrap();
    let b = p.catalog.detector_id("b").unwrap();
    assert!(pay.active.contains(a) && !pay.active.contains(b));
    let other = p.profile_for(&req("/other")).unwrap();
    assert!(!other.request.body && other.active.contains(a) && other.active.contains(b));
}

#[test]
fn bad_configs_name_the_field() {
    let cases = [
        (
            json!({"detectors": {"credit_card": {}}}),
            "detectors.credit_card: unknown detector 'credit_card'",
        ),
        (
            json!({"custom_detectors": [{"name": "x", "regex": "a+"}]}),
            "custom_detectors[0].regex: the pattern has no maximum length",
        ),
        (
            json!({"custom_detectors": [{"name": "x", "regex": "a{0,3}"}]}),
            "custom_detectors[0].regex: the pattern can match the empty string",
        ),
        (
            json!({"custom_detectors": [{"name": "x", "regex": "(a"}]}),
            "custom_detectors[0].regex: invalid regex",
        ),
        (
            json!({"custom_detectors": [{"name": "X", "regex": "a"}]}),
            "custom_detectors[0].name: detector name 'X'",
        ),
        (
            json!({"custom_detectors": [{"name": "x", "regex": "a", "action": "hash"}]}),
            "hash_key: required: an action is 'hash'",
        ),
        (
            json!({"custom_detectors": [{"name": "x", "regex": "a", "action": "tag", "keep_last": 2}]}),
            "custom_detectors[0].keep_last: only allowed with action 'mask'",
        ),
        (
            json!({"default_action": {"action": "mask", "mask_char": "é"}}),
            "default_action.mask_char: must be a visible ASCII character",
        ),
        (
            json!({"default_action": {"action": "explode"}}),
            "default_action.action: unknown variant `explode`",
        ),
        (
            json!({"hash_key": {"inline": "short"}}),
            "hash_key: the key must be at least 16 bytes long",
        ),
        (
            json!({"hash_key": {"env": "NOPE"}}),
            "hash_key.env: environment variable 'NOPE' is not set",
        ),
        (
            json!({"response": {"query": ["a"]}}),
            "response.query: query parameters exist on requests only",
        ),
        (
            json!({"request": {"headers": ["bad header"]}}),
            "request.headers[0]: 'bad header'",
        ),
        (
            json!({"content_types": ["json"]}),
            "content_types[0]: 'json' is not a media type",
        ),
        (
            json!({"max_buffer_bytes": 0}),
            "max_buffer_bytes: must be between 1",
        ),
        (
            json!({"json_fields": {"keys": [], "action": "tag"}}),
            "json_fields.keys: must name at least one key",
        ),
        (
            json!({"rules": [{"skip": true, "detectors": ["card"]}]}),
            "rules[0]: a rule with 'skip' cannot also set",
        ),
        (
            json!({"rules": [{"detectors": ["nope"]}]}),
            "rules[0].detectors[0]: unknown detector 'nope'",
        ),
        (
            json!({"on_over_limit": "pass"}),
            "on_over_limit: unknown variant `pass`",
        ),
        (
            json!({"response": {"body": true, "bogus": 1}}),
            "response.bogus: unknown field `bogus`",
        ),
    ];
    for (config, expected) in cases {
        let err = policy_with(config.clone(), false).unwrap_err();
        assert!(
            err.starts_with(expected),
            "{config}: got {err}, want {expected}"
        );
    }
}

#[test]
fn an_empty_config_scans_response_bodies_with_the_default_set() {
    let p = policy_with(json!({}), true).unwrap();
    assert!(p.defaults.response.body && !p.defaults.request.body);
    for b in BUILTINS {
        let id = p.catalog.detector_id(b.name).unwrap();
        assert_eq!(p.defaults.active.contains(id), !b.opt_in, "{}", b.name);
    }
    assert!(p.scans_content_type(b"application/json"));
    assert!(p.scans_content_type(b"application/vnd.api+json"));
    assert!(p.scans_content_type(b"text/csv; charset=utf-8"));
    assert!(!p.scans_content_type(b"application/octet-stream"));
}

/// The README's detector table, as generated from the catalog.
fn detector_table() -> String {
    let mut parser = regex_syntax::ParserBuilder::new();
    parser.unicode(false).utf8(false);
    let mut out = String::from(
        "| detector | finds | validator | streamed whole up to | default |\n|---|---|---|---|---|\n",
    );
    for b in BUILTINS {
        let longest = parser
            .build()
            .parse(b.pattern)
            .unwrap()
            .properties()
            .maximum_len()
            .unwrap();
        let validator = match b.validator {
            crate::detectors::Validator::None => "none",
            crate::detectors::Validator::Luhn => "Luhn",
            crate::detectors::Validator::Card => "Luhn, length, issuer prefix",
            crate::detectors::Validator::UsSsn => "area, group, serial rules",
            crate::detectors::Validator::Iban => "country length, mod-97",
        };
        let default = if b.opt_in { "off (opt-in)" } else { "on" };
        out.push_str(&format!(
            "| `{}` | {} | {validator} | {longest} | {default} |\n",
            b.name, b.description
        ));
    }
    out
}

#[test]
fn the_readme_lists_every_detector() {
    let readme = include_str!("../README.md");
    let start = "<!-- detectors-table -->\n";
    let end = "<!-- /detectors-table -->";
    let from = readme.find(start).expect("start marker") + start.len();
    let to = readme.find(end).expect("end marker");
    let expected = detector_table();
    assert!(
        readme[from..to] == expected,
        "README detector table is out of date; replace it with:\n{expected}"
    );
}

/// Native throughput of the default set over the bench fixture, whole and in
/// 16 KiB chunks: `cargo test --release -p dlp-redact --lib throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_of_the_default_set() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/fixtures/dlp-1m.json"
    );
    let Ok(body) = std::fs::read(path) else {
        eprintln!("no fixture at {path}: run the dlp-redact bench config tests first");
        return;
    };
    let p = policy_with(json!({}), true).unwrap();
    println!("window: {} bytes", pass(&p).scanner.window());
    let mut b64 = Vec::with_capacity(1 << 20);
    let mut x: u32 = 7;
    while b64.len() < 1 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        b64.push(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                [(x >> 16) as usize % 64],
        );
    }
    let start = std::time::Instant::now();
    stream_split(&p, &b64, &[]);
    println!(
        "base64, whole: {:.0} MB/s",
        b64.len() as f64 / start.elapsed().as_secs_f64() / 1e6
    );
    for chunk in [16 * 1024, 1024] {
        let cuts: Vec<usize> = (chunk..b64.len()).step_by(chunk).collect();
        stream_split(&p, &b64, &cuts);
        let start = std::time::Instant::now();
        stream_split(&p, &b64, &cuts);
        println!(
            "base64, chunk {chunk:>6}: {:.0} MB/s",
            b64.len() as f64 / start.elapsed().as_secs_f64() / 1e6
        );
    }
    for b in BUILTINS.iter().filter(|b| !b.opt_in) {
        let q = policy_with(json!({"detectors": {b.name: {"enabled": false}}}), true).unwrap();
        let cuts: Vec<usize> = (16384..body.len()).step_by(16384).collect();
        stream_split(&q, &body, &cuts); // warm the lazy DFA
        let start = std::time::Instant::now();
        stream_split(&q, &body, &cuts);
        println!(
            "without {:<22} {:.0} MB/s",
            b.name,
            body.len() as f64 / start.elapsed().as_secs_f64() / 1e6
        );
    }
    let (sparse, _) = sparse_document();
    for chunk in [sparse.len(), 16 * 1024, 4096, 1024] {
        let cuts: Vec<usize> = (chunk..sparse.len()).step_by(chunk).collect();
        stream_split(&p, &sparse, &cuts);
        let rounds = 5;
        let start = std::time::Instant::now();
        let mut peak = 0;
        for _ in 0..rounds {
            let mut stream = Stream::default();
            let mut out = Vec::new();
            let mut report = Report::default();
            for piece in sparse.chunks(chunk) {
                let eos = piece.as_ptr_range().end == sparse.as_ptr_range().end;
                stream.push(&pass(&p), piece, eos, &mut out, &mut report);
            }
            peak = stream.peak();
        }
        let secs = start.elapsed().as_secs_f64() / rounds as f64;
        println!(
            "sparse {} KiB, chunk {chunk:>6}: {:.0} MB/s, peak held {peak} bytes",
            sparse.len() / 1024,
            sparse.len() as f64 / secs / 1e6
        );
    }
    for chunk in [body.len(), 256 * 1024, 64 * 1024, 16 * 1024, 4096, 1024] {
        let cuts: Vec<usize> = (chunk..body.len()).step_by(chunk).collect();
        stream_split(&p, &body, &cuts); // new chunk ends add states to the lazy DFAs
        let start = std::time::Instant::now();
        let rounds = 5;
        let mut found = 0;
        for _ in 0..rounds {
            let (_, report) = stream_split(&p, &body, &cuts);
            found = report.found.iter().map(|(_, n)| n).sum::<u64>();
        }
        let secs = start.elapsed().as_secs_f64() / rounds as f64;
        println!(
            "chunk {chunk:>8}: {:.0} MB/s, {found} values",
            body.len() as f64 / secs / 1e6
        );
    }
}

#[test]
fn a_stream_releases_at_once_what_cannot_begin_a_value() {
    let p = policy_with(json!({}), true).unwrap();
    let mut stream = Stream::default();
    let mut out = Vec::new();
    let mut report = Report::default();
    stream.push(
        &pass(&p),
        b"Nothing to see here. ",
        false,
        &mut out,
        &mut report,
    );
    assert_eq!(out, b"Nothing to see here. ");
    assert_eq!(stream.pending(), 0);

    stream.push(&pass(&p), b"Card 4111 1111", false, &mut out, &mut report);
    assert_eq!(out, b"Nothing to see here. Card ");
    assert_eq!(
        stream.pending(),
        "4111 1111".len(),
        "only the digits that may be a card are held"
    );

    stream.push(&pass(&p), b" 1111 1111 paid.", true, &mut out, &mut report);
    assert_eq!(out, b"Nothing to see here. Card [REDACTED:card] paid.");
    assert_eq!(stream.pending(), 0);
}

/// The examples of "Streaming and buffering" in the README.
#[test]
fn a_stream_holds_back_only_what_may_begin_a_value() {
    let p = policy_with(json!({}), true).unwrap();
    let pem = format!(
        "key: -----BEGIN RSA PRIVATE KEY-----\n{}",
        "MIIEowIBAAKCAQEA1234567890abcdefghijklmnopqrstuvwxyz+/ABCDEFGHIJKL\n".repeat(96)
    );
    let cases: [(&str, &str); 6] = [
        ("The order shipped.\n", ""),
        ("The order shipped.", "shipped."),
        ("Paid with card 4111 11", "4111 11"),
        (r#"{"name":"Alice","mail":"alice.smi"#, "alice.smi"),
        ("Authorization: Bearer eyJhbGciOi", "Bearer eyJhbGciOi"),
        (&pem, &pem["key: ".len()..]),
    ];
    for (chunk, held) in cases {
        let mut stream = Stream::default();
        let (mut out, mut report) = (Vec::new(), Report::default());
        stream.push(&pass(&p), chunk.as_bytes(), false, &mut out, &mut report);
        assert_eq!(stream.pending(), held.len(), "{chunk:.40}");
        assert_eq!(
            out,
            &chunk.as_bytes()[..chunk.len() - held.len()],
            "{chunk:.40}"
        );
    }
    // A JWT with 12 KiB more still to come than the window holds: nothing
    // is held, its replacement goes out, its rest is dropped as it arrives.
    let jwt = format!(r#"{{"token":"eyJhbGciOi{}"#, "JIUzI1NiJ9".repeat(1229));
    let mut stream = Stream::default();
    let (mut out, mut report) = (Vec::new(), Report::default());
    stream.push(&pass(&p), jwt.as_bytes(), false, &mut out, &mut report);
    assert_eq!(stream.pending(), 0);
    stream.push(&pass(&p), b"more.sig\",", true, &mut out, &mut report);
    assert_eq!(
        String::from_utf8_lossy(&out),
        r#"{"token":"[REDACTED:jwt]","#
    );
}

/// Tokens longer than the built-in patterns' usual bounds (a 6,000-byte
/// bearer token, a JWT with a 7,000-byte payload) are redacted whole, in one
/// piece or streamed in 1 KiB chunks.
#[test]
fn long_tokens_are_redacted_whole() {
    let p = policy_with(json!({}), true).unwrap();
    let token = "A1b2C3d4".repeat(750);
    let jwt = format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.c2lnbmF0dXJl",
        "eyJzdWIiOiIx".repeat(583)
    );
    let body = format!("Authorization: Bearer {token}\njwt {jwt} end\n");
    let want = "Authorization: Bearer [REDACTED:bearer_token]\njwt [REDACTED:jwt] end\n";
    assert_eq!(stream_split(&p, body.as_bytes(), &[]).0, want.as_bytes());
    let cuts: Vec<usize> = (1024..body.len()).step_by(1024).collect();
    assert_eq!(stream_split(&p, body.as_bytes(), &cuts).0, want.as_bytes());
}

/// A deterministic generator of numbers below `n` (xorshift64).
fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

/// Random documents of corpus values (positives and negatives) packed close
/// together with separators and the starts of other values, cut at random
/// places: the stream must produce exactly what one pass over the whole body
/// does. A hold-back that ends too early (a value's start released before
/// its end arrived) shows up here as a difference.
#[test]
fn random_documents_stream_to_the_same_bytes_as_whole_bodies() {
    let corpus: Value = serde_json::from_str(include_str!("../corpus.json")).unwrap();
    let mut pieces: Vec<String> = ["positives", "negatives"]
        .iter()
        .flat_map(|kind| corpus[kind].as_array().unwrap().iter())
        .map(|v| {
            v.get("value")
                .unwrap_or(&v["text"])
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    pieces.extend(
        [
            " ",
            "\n",
            ", ",
            ".",
            "-",
            ":",
            "\"",
            "=",
            "@",
            "+1 ",
            "Bearer ",
            "eyJ",
            "AKIA",
            "secret_access_key=",
            "-----BEGIN RSA PRIVATE KEY-----\n",
            "4111 ",
            "GB82 ",
            "word",
            "4111111111111111",
            ".5",
            "5500-0000-0000-0004",
            ".",
        ]
        .map(String::from),
    );
    let p = every_builtin_policy();
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for round in 0..400 {
        let mut body = String::new();
        for _ in 0..(5 + next(40)) {
            body.push_str(&pieces[next(pieces.len())]);
        }
        let mut cuts: Vec<usize> = (0..next(12)).map(|_| next(body.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = stream_split(&p, body.as_bytes(), &[]);
        let streamed = stream_split(&p, body.as_bytes(), &cuts);
        assert!(
            streamed.0 == whole.0 && streamed.1 == whole.1,
            "round {round}, cuts {cuts:?}, body {body:?}"
        );
    }
}

/// Values whose acceptance depends on the bytes after them (a card followed
/// by `.5` is a decimal, `1.2.3.4.5` is no IPv4 address, a trailing dot is
/// not part of an e-mail domain), cut at every position.
#[test]
fn values_decided_by_the_bytes_after_them_stream_like_whole_bodies() {
    let p = every_builtin_policy();
    for (body, want) in [
        (
            "paid 4111111111111111.5 and 4111111111111111. done",
            "paid 4111111111111111.5 and [REDACTED:card]. done",
        ),
        (
            "hosts 1.2.3.4.5 and 10.0.0.1.",
            "hosts 1.2.3.4.5 and [REDACTED:ipv4].",
        ),
        (
            "mail bob@example.com. or bob@example.co.uk",
            "mail [REDACTED:email]. or [REDACTED:email]",
        ),
    ] {
        assert_splits_match_whole(&p, body, want);
    }
    // Alone, without the e-mail pattern (whose prefixes also cover `1111.`),
    // the Luhn validator's look-ahead is what holds the number back.
    let luhn_only = custom(json!([
        {"name": "acct", "regex": "\\b[0-9]{16}\\b", "validator": "luhn", "action": "tag"}
    ]));
    assert_splits_match_whole(
        &luhn_only,
        "paid 4111111111111111.5 and 4111111111111111. done",
        "paid 4111111111111111.5 and [REDACTED:acct]. done",
    );
}

fn assert_splits_match_whole(p: &Policy, body: &str, want: &str) {
    let (whole, _) = stream_split(p, body.as_bytes(), &[]);
    assert_eq!(String::from_utf8_lossy(&whole), want);
    for cut in 0..=body.len() {
        let (out, _) = stream_split(p, body.as_bytes(), &[cut]);
        assert!(out == whole, "{body:?} cut at {cut}");
    }
}

/// Tokens longer than the stream's window (a JWT with a 12,000-byte
/// payload, a 10,000-byte bearer token, a PEM block of 11,000 bytes) cannot
/// be held back whole. Split anywhere, they are still redacted whole: the
/// part that has to pass is redacted as it goes, and so is the rest.
#[test]
fn tokens_longer_than_the_window_never_pass_when_split() {
    let p = policy_with(json!({}), true).unwrap();
    let window = pass(&p).scanner.window();
    let jwt = format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.c2lnbmF0dXJl",
        "eyJzdWIiOiIx".repeat(1000)
    );
    // Three `=`: the pattern takes two, the third is text after the token.
    let bearer = format!("{}===", "A1b2C3d4".repeat(1250));
    let pem = format!(
        "-----BEGIN RSA PRIVATE KEY-----\\n{}-----END RSA PRIVATE KEY-----",
        format!(
            "{}\\n",
            "MIIEowIBAAKCAQEAx1b2C3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4"
        )
        .repeat(165)
    );
    for (value, tag) in [
        (jwt.as_str(), "[REDACTED:jwt]"),
        (bearer.as_str(), "[REDACTED:bearer_token]"),
        (pem.as_str(), "[REDACTED:pem_private_key]"),
    ] {
        assert!(value.len() > window, "{} > {window}", value.len());
        let value = if value == bearer.as_str() {
            format!("Bearer {value}")
        } else {
            value.to_string()
        };
        let body = format!("{{\"v\":\"{value}\",\"w\":\"bob@example.com\"}}");
        let (whole, whole_report) = stream_split(&p, body.as_bytes(), &[]);
        let text = String::from_utf8_lossy(&whole).to_string();
        assert!(
            text.contains(&format!("{tag}\",")) || text.contains(&format!("{tag}=\",")),
            "{text}"
        );
        assert!(text.contains("[REDACTED:email]"), "{text}");
        for size in [1000, 4096, 7000, 16384] {
            let cuts: Vec<usize> = (size..body.len()).step_by(size).collect();
            let (out, report) = stream_split(&p, body.as_bytes(), &cuts);
            let out = String::from_utf8_lossy(&out);
            assert!(
                out == text,
                "{tag} in chunks of {size}: {}...",
                out.get(..200).unwrap_or(&out)
            );
            assert_eq!(report, whole_report, "{tag} in chunks of {size}");
        }
        // The value's end at every position around a chunk boundary, and
        // the memory bound while a value is open.
        let end = body.find(value.as_str()).unwrap() + value.len();
        for at in end - 4..end + 4 {
            let mut cuts: Vec<usize> = (1000..at).step_by(1000).collect();
            cuts.push(at);
            let (out, report) = stream_split(&p, body.as_bytes(), &cuts);
            assert!(out == whole, "{tag}: cut at {at} (value ends at {end})");
            assert_eq!(report, whole_report, "{tag}: cut at {at}");
        }
        let mut stream = Stream::default();
        let (mut out, mut report) = (Vec::new(), Report::default());
        for piece in body.as_bytes().chunks(4096) {
            stream.push(&pass(&p), piece, false, &mut out, &mut report);
            assert!(stream.pending() <= window, "{tag}");
        }
        assert!(
            stream.peak() <= 4096 + window + 1,
            "{tag}: {}",
            stream.peak()
        );
    }
}

/// A value too long to hold keeps its action's character: a mask keeps the
/// length and hides every character, `alert` passes it and counts it once,
/// a hash covers the part that could not be held, and the bytes around it
/// are untouched.
#[test]
fn a_value_longer_than_the_window_keeps_its_action() {
    let jwt = format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", "eyJzdWIiOiIx".repeat(1000));
    let body = format!("before {jwt} after bob@example.com");
    let cuts: Vec<usize> = (1000..body.len()).step_by(1000).collect();
    let mask = policy(json!({"detectors": {"jwt": {"action": "mask"}}}));
    let (out, report) = stream_split(&mask, body.as_bytes(), &cuts);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.len(), body.len());
    let masked = &out[7..7 + jwt.len()];
    assert!(masked.bytes().all(|b| b == b'*' || b == b'.'), "{masked}");
    assert_eq!(masked.matches('.').count(), 2);
    assert_eq!(&out[..7], "before ");
    assert_eq!(&out[7 + jwt.len()..], " after bob@example.com");
    assert_eq!(report.found, vec![(detector_id(&mask, "jwt"), 1)]);

    let alert = policy(json!({"detectors": {"jwt": {"action": "alert"}}}));
    let (out, report) = stream_split(&alert, body.as_bytes(), &cuts);
    assert!(out == body.as_bytes());
    assert_eq!(report.found, vec![(detector_id(&alert, "jwt"), 1)]);
    assert_eq!(report.redacted, 0);

    let hash =
        policy(json!({"hash_key": {"env": "DLP_KEY"}, "detectors": {"jwt": {"action": "hash"}}}));
    let (out, _) = stream_split(&hash, body.as_bytes(), &cuts);
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("before [HASH:jwt:"), "{out}");
    assert!(out.ends_with("] after bob@example.com"), "{out}");
    assert_eq!(
        out.len(),
        "before [HASH:jwt:0123456789abcdef] after bob@example.com".len()
    );
}

fn detector_id(p: &Policy, name: &str) -> usize {
    p.catalog
        .detectors()
        .iter()
        .position(|d| d.name == name)
        .unwrap()
}

/// A key too long to hold, followed by a certificate (whose characters all
/// fit a PEM body): the key's value ends at its END line, as in a whole-body
/// scan, and the certificate passes.
#[test]
fn a_long_pem_key_ends_at_its_end_line_when_streamed() {
    let p = policy_with(json!({}), true).unwrap();
    let line = "MIIEowIBAAKCAQEAx1b2C3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4\n";
    let body = format!(
        "-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
        line.repeat(160),
        line.repeat(3)
    );
    let (whole, _) = stream_split(&p, body.as_bytes(), &[]);
    let want = format!(
        "[REDACTED:pem_private_key]\n-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
        line.repeat(3)
    );
    assert_eq!(String::from_utf8_lossy(&whole), want);
    for size in [1000, 4096] {
        let cuts: Vec<usize> = (size..body.len()).step_by(size).collect();
        let (out, _) = stream_split(&p, body.as_bytes(), &cuts);
        assert_eq!(String::from_utf8_lossy(&out), want, "chunks of {size}");
    }
}

/// Random documents with one token longer than the window (a JWT, a bearer
/// token or a PEM key of 8.5 to 14 KB) among corpus values, cut at random
/// places into chunks of 1 byte to 5 KB: the stream must produce exactly
/// what one pass over the whole body does.
#[test]
fn random_documents_with_tokens_longer_than_the_window_stream_like_whole_bodies() {
    let corpus: Value = serde_json::from_str(include_str!("../corpus.json")).unwrap();
    let pieces: Vec<String> = corpus["positives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap().to_string())
        .chain([" ", "\n", ", ", "\"", "=", ": ", "word", "4111 "].map(String::from))
        .collect();
    let p = every_builtin_policy();
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for round in 0..60 {
        let fill = |n: usize| "TG9uZ1Rva2Vu".repeat(n / 12 + 1);
        let size = 8_500 + next(5_500);
        let token = match round % 3 {
            0 => format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", fill(size)),
            1 => format!("Bearer {}", fill(size)),
            _ => format!(
                "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----",
                fill(size)
            ),
        };
        let mut body = String::new();
        for _ in 0..next(20) {
            body.push_str(&pieces[next(pieces.len())]);
        }
        body.push_str(" \"");
        body.push_str(&token);
        body.push_str("\" ");
        for _ in 0..next(20) {
            body.push_str(&pieces[next(pieces.len())]);
        }
        let chunk = 1 + next(5_000);
        let mut cuts: Vec<usize> = (chunk..body.len()).step_by(chunk).collect();
        cuts.extend((0..next(4)).map(|_| next(body.len() + 1)));
        cuts.sort_unstable();
        cuts.dedup();
        let whole = stream_split(&p, body.as_bytes(), &[]);
        let streamed = stream_split(&p, body.as_bytes(), &cuts);
        assert!(
            streamed.0 == whole.0 && streamed.1 == whole.1,
            "round {round}: chunks of {chunk}, token of {} bytes",
            token.len()
        );
        let out = String::from_utf8_lossy(&streamed.0);
        assert!(
            !out.contains("TG9uZ1Rva2Vu"),
            "round {round}: the token passed"
        );
    }
}
