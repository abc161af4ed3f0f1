//! The dlp-redact bench configs (`bench/configs/dlp-*.yaml`, suite
//! `bench/suites/dlp-redact.json`): the suite runs them with the goals and
//! body sizes of the fixtures they serve, they validate, the body reaches
//! the filters in chunks, and in a real Envoy the no-filter variants return
//! the fixture byte for byte while dlp-redact and the Lua filter redact the
//! same values in it.

#[path = "../src/bench/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use fixtures::{write_dlp_fixtures, DLP_FIXTURES, SENTINEL_CARDS};
use pwf_tests::{filter_names, http_filters, load_config_file, repo_root, tail, Envoy};
use serde_json::{json, Value};

const SUITE: &str = "bench/suites/dlp-redact.json";
const SIZES: [&str; 2] = ["1m", "64k"];

fn config(kind: &str, size: &str) -> String {
    format!("bench/configs/dlp-{kind}-{size}.yaml")
}

fn fixture(size: &str) -> Vec<u8> {
    write_dlp_fixtures(&repo_root());
    let path = repo_root().join(format!("bench/fixtures/dlp-{size}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The values of `key` at any depth of `v`.
fn values_of<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == key {
                    out.push(child);
                }
                values_of(child, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|c| values_of(c, key, out)),
        _ => {}
    }
}

fn strings_of(v: &Value, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    values_of(v, key, &mut out);
    out.iter()
        .map(|v| v.as_str().expect("a string value").to_owned())
        .collect()
}

fn luhn_ok(digits: &str) -> bool {
    let (body, check) = digits.split_at(digits.len() - 1);
    fixtures::with_luhn(body).ends_with(check)
}

#[test]
fn fixtures_are_exact_sized_deterministic_json_with_the_sentinels() {
    for &(_, size, seed) in DLP_FIXTURES {
        let a = fixtures::generate(size, seed);
        assert_eq!(a.len(), size);
        assert_eq!(a, fixtures::generate(size, seed));
        let doc: serde_json::Value = serde_json::from_slice(&a).unwrap();
        let data = doc["data"].as_array().unwrap();
        assert!(data.len() > 50, "{} records", data.len());
        let text = String::from_utf8(a).unwrap();
        for card in SENTINEL_CARDS {
            assert!(text.contains(card), "{card}");
        }
        let cards: Vec<&str> = data
            .iter()
            .filter_map(|r| r["payment"]["card_number"].as_str())
            .collect();
        // The sentinels and about one payment in six.
        let expected = (data.len() - SENTINEL_CARDS.len()) / 6;
        assert!(cards.len() >= expected / 2 && cards.len() <= SENTINEL_CARDS.len() + expected * 2);
        for c in cards {
            let digits: String = c.chars().filter(char::is_ascii_digit).collect();
            assert!(luhn_ok(&digits), "{c}");
            assert!(matches!(digits.len(), 15 | 16), "{c}");
        }
    }
}

#[test]
fn luhn_of_known_test_numbers() {
    for n in [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
    ] {
        assert!(luhn_ok(n), "{n}");
    }
    assert!(!luhn_ok("4111111111111112"));
}

#[test]
fn the_1m_fixture_has_every_kind_at_its_density() {
    let &(_, size, seed) = &DLP_FIXTURES[0];
    let text = String::from_utf8(fixtures::generate(size, seed)).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let records = doc["data"].as_array().unwrap().len();
    let count = |needle: &str| text.matches(needle).count();
    assert_eq!(count("\"email\":"), records);
    assert_eq!(count("\"phone\":"), records);
    let ssns = count("\"tax_id\":");
    assert!(
        ssns > records / 60 && ssns < records / 15,
        "{ssns} of {records}"
    );
    assert!(count("eyJhbGciOi") >= 3, "JWTs");
    assert!(count("AKIA") >= 1, "AWS key ids");
}

#[test]
fn the_suite_runs_these_configs_with_the_goals_and_fixture_sizes() {
    let suite = load_config_file(SUITE);
    let variants = suite["variants"].as_array().unwrap();
    let got: Vec<(&str, &str, &Value, &Value)> = variants
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap(),
                v["config"].as_str().unwrap(),
                &v["body_bytes"],
                &v["net_of"],
            )
        })
        .collect();
    let mut want = Vec::new();
    for &(path, size, _) in DLP_FIXTURES {
        let tag = if size == 1 << 20 { "1m" } else { "64k" };
        assert_eq!(path, format!("bench/fixtures/dlp-{tag}.json"));
        let base = format!("no-filter-{tag}");
        want.push((
            base.clone(),
            config("no-filter", tag),
            json!(size),
            Value::Null,
        ));
        for kind in ["redact", "lua"] {
            want.push((
                format!("{kind}-{tag}").replace("redact", "dlp-redact"),
                config(kind, tag),
                json!(size),
                json!(base),
            ));
        }
    }
    let want: Vec<(&str, &str, &Value, &Value)> = want
        .iter()
        .map(|(n, c, b, o)| (n.as_str(), c.as_str(), b, o))
        .collect();
    assert_eq!(got, want);
    for v in variants {
        if v["name"].as_str().unwrap().starts_with("dlp-redact-") {
            assert_eq!(v["min_mb_per_s"], json!(150.0), "{}", v["name"]);
        }
    }
    let goals: Vec<(&Value, &Value, &Value)> = suite["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (&c["variant"], &c["against"], &c["min_mb_per_s_ratio"]))
        .collect();
    assert_eq!(
        goals,
        [
            (&json!("dlp-redact-1m"), &json!("lua-1m"), &json!(3.0)),
            (&json!("dlp-redact-64k"), &json!("lua-64k"), &json!(3.0)),
        ]
    );
    assert_eq!(
        suite["histograms"],
        json!(["wasmcustom.dlp_redact.stream_peak_bytes"])
    );
}

#[test]
fn each_variant_runs_the_filter_it_names_on_the_fixture_it_names() {
    for size in SIZES {
        let fixture_path = format!("bench/fixtures/dlp-{size}.json");
        for (kind, filters) in [
            ("no-filter", vec!["envoy.filters.http.router"]),
            ("redact", vec!["dlp-redact", "envoy.filters.http.router"]),
            (
                "lua",
                vec!["envoy.filters.http.lua", "envoy.filters.http.router"],
            ),
        ] {
            let path = config(kind, size);
            let cfg = load_config_file(&path);
            assert_eq!(filter_names(&http_filters(&cfg)), filters, "{path}");
            let origin = &cfg["static_resources"]["listeners"][1]["filter_chains"][0]["filters"][0]
                ["typed_config"]["route_config"];
            assert_eq!(
                origin["virtual_hosts"][0]["routes"][0]["direct_response"]["body"]["filename"],
                json!(fixture_path),
                "{path}"
            );
            assert_eq!(
                cfg["static_resources"]["clusters"][0]["per_connection_buffer_limit_bytes"],
                json!(16384),
                "{path}: the origin is read in chunks"
            );
        }
        let dlp = http_filters(&load_config_file(&config("redact", size)));
        let plugin: Value = serde_json::from_str(
            dlp[0]["typed_config"]["config"]["configuration"]["value"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            plugin,
            json!({ "default_action": { "action": "tag" }, "response": { "body": true } }),
            "the default detector set, tagged"
        );
    }
}

#[test]
fn dlp_bench_configs_validate() {
    write_dlp_fixtures(&repo_root());
    for size in SIZES {
        for kind in ["no-filter", "redact", "lua"] {
            let path = config(kind, size);
            let result = Envoy::builder(&path).validate();
            assert!(result.ok, "{path}:\n{}", tail(&result.output, 25));
        }
    }
}

#[test]
fn no_filter_returns_the_fixture_and_both_filters_redact_it() {
    for size in SIZES {
        let original = fixture(size);
        let doc: Value = serde_json::from_slice(&original).unwrap();
        let records = doc["data"].as_array().unwrap().len();
        let cards = strings_of(&doc, "card_number");
        let emails = strings_of(&doc, "email");
        let ssns = strings_of(&doc, "tax_id");
        assert!(
            cards.len() > 4 && !ssns.is_empty(),
            "{size}: {cards:?} {ssns:?}"
        );
        let original_text = String::from_utf8(original.clone()).unwrap();
        for card in SENTINEL_CARDS {
            assert!(original_text.contains(card), "{size}: {card}");
        }

        let plain = Envoy::builder(config("no-filter", size)).start();
        let resp = plain.get("/");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-powered-by"), Some("bench"));
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert!(
            resp.body == original,
            "{size}: no-filter returns the fixture unchanged"
        );

        for kind in ["redact", "lua"] {
            let envoy = Envoy::builder(config(kind, size)).start();
            let resp = envoy.get("/");
            let what = format!("{kind}-{size}");
            assert_eq!(resp.status, 200, "{what}");
            assert_eq!(resp.header("x-powered-by"), Some("bench"), "{what}");
            let text = resp.text();
            for card in SENTINEL_CARDS
                .iter()
                .map(|c| c.to_string())
                .chain(cards.clone())
            {
                assert!(!text.contains(&card), "{what}: card {card} leaked");
            }
            let got: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{what}: not JSON any more: {e}"));
            assert_eq!(got["data"].as_array().unwrap().len(), records, "{what}");
            let tagged = |key: &str, kind: &str| {
                let values = strings_of(&got, key);
                let want = format!("[REDACTED:{kind}]");
                let hits = values.iter().filter(|v| **v == want).count();
                (hits, values.len())
            };
            assert_eq!(
                tagged("card_number", "card"),
                (cards.len(), cards.len()),
                "{what}"
            );
            assert_eq!(
                tagged("email", "email"),
                (emails.len(), emails.len()),
                "{what}"
            );
            assert_eq!(
                tagged("tax_id", "us_ssn"),
                (ssns.len(), ssns.len()),
                "{what}"
            );
            assert_eq!(tagged("phone", "phone"), (records, records), "{what}");
            // Ids, timestamps, prices and partial card numbers stay.
            for key in ["id", "uuid", "created_at", "postal_code", "last4"] {
                assert_eq!(
                    strings_of(&got, key),
                    strings_of(&doc, key),
                    "{what}: {key}"
                );
            }
            let jwts = original_text.matches("\"session_token\":\"eyJ").count();
            assert_eq!(
                text.matches("\"session_token\":\"[REDACTED:jwt]\"").count(),
                jwts,
                "{what}"
            );
            let keys = original_text.matches("temporary key AKIA").count();
            assert_eq!(
                text.matches("temporary key [REDACTED:aws_access_key_id] rotated")
                    .count(),
                keys,
                "{what}"
            );
        }
    }
}

#[test]
fn the_origin_sends_the_body_in_chunks_of_about_16_kib() {
    write_dlp_fixtures(&repo_root());
    let counter = r#"
function envoy_on_response(h)
  local n, largest = 0, 0
  for chunk in h:bodyChunks() do
    n = n + 1
    if chunk:length() > largest then largest = chunk:length() end
  end
  h:logWarn("dlp-bench-chunks " .. n .. " largest " .. largest .. " end")
end
"#;
    let envoy = Envoy::builder(config("lua", "1m"))
        .edit(move |c| {
            let lua = &mut c["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["http_filters"][0]["typed_config"];
            lua["default_source_code"] = json!({ "inline_string": counter });
        })
        .start();
    let resp = envoy.get("/");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), 1 << 20);
    // Headers went out before the body, so the script logs what it saw.
    envoy.wait_for_log("dlp-bench-chunks ");
    let log = envoy.log();
    let line = log
        .lines()
        .find(|l| l.contains("dlp-bench-chunks "))
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "dlp-bench-chunks").unwrap();
    let (chunks, largest): (usize, usize) = (
        words[at + 1].parse().unwrap(),
        words[at + 3].parse().unwrap(),
    );
    // Reads of 16 KiB, sometimes 32 KiB (and a last empty chunk).
    assert!(chunks >= 1024 / 32, "{chunks} chunks");
    assert!(largest <= 64 << 10, "largest chunk {largest}");
}
