//! The body upstream and the piecewise client really deliver bodies to Envoy
//! filters in the pieces asked for: an inline Lua filter logs the length of
//! every body chunk it is handed, and the lengths must equal the split.

use pwf_tests::{get_streamed, gunzip, BodyUpstream, Envoy, Framing, PieceRequest, ResponseSpec};
use serde_json::{json, Value};

const LUA: &str = r#"
function envoy_on_request(request_handle)
  local id = request_handle:headers():get("x-test-id") or "-"
  for chunk in request_handle:bodyChunks() do
    request_handle:logWarn("reqchunk:" .. id .. ":" .. chunk:length())
  end
  request_handle:logWarn("reqdone:" .. id)
end
function envoy_on_response(response_handle)
  local id = response_handle:headers():get("x-test-id") or "-"
  for chunk in response_handle:bodyChunks() do
    response_handle:logWarn("chunk:" .. id .. ":" .. chunk:length())
  end
  response_handle:logWarn("done:" .. id)
end
"#;

/// passthrough.yaml with the chunk-logging Lua filter before the router.
fn start(upstream: &BodyUpstream) -> Envoy {
    Envoy::builder("envoy-configs/passthrough.yaml")
        .port(18000, upstream.port())
        .edit(|config: &mut Value| {
            let filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                [0]["typed_config"]["http_filters"]
                .as_array_mut()
                .expect("http_filters");
            filters.insert(
                0,
                json!({
                    "name": "envoy.filters.http.lua",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                        "default_source_code": { "inline_string": LUA }
                    }
                }),
            );
        })
        .start()
}

/// The chunk lengths Lua logged under `kind` (`chunk` or `reqchunk`) for `id`.
fn logged_chunks(envoy: &Envoy, kind: &str, id: &str) -> Vec<usize> {
    let done = if kind == "chunk" { "done" } else { "reqdone" };
    envoy.wait_for_log(&format!("{done}:{id}\n"));
    let needle = format!("{kind}:{id}:");
    envoy
        .log()
        .lines()
        .filter_map(|l| {
            l.split_once(&needle)
                .map(|(_, n)| n.trim().parse().expect("a length"))
        })
        .filter(|&n: &usize| n > 0)
        .collect()
}

fn lengths(total: usize, splits: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = splits
        .iter()
        .copied()
        .filter(|&p| p > 0 && p < total)
        .collect();
    cuts.push(total);
    let mut last = 0;
    cuts.iter()
        .map(|&c| {
            let n = c - last;
            last = c;
            n
        })
        .collect()
}

#[test]
fn response_pieces_reach_envoy_filters_as_separate_chunks() {
    let up = BodyUpstream::start();
    let body: Vec<u8> = (0..200u8).map(|i| b'a' + i % 26).collect();
    up.serve(
        "/split",
        ResponseSpec::new(body.clone()).split_at(&[10, 50, 51, 120]),
    );
    let envoy = start(&up);

    // registered splits, chunked framing
    let resp = get_streamed(envoy.port(), "/split", &[("x-echo-header-x-test-id", "a")]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert_eq!(resp.body, body);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(logged_chunks(&envoy, "chunk", "a"), [10, 40, 1, 69, 80]);

    // x-split-at overrides, content-length framing, 20 ms between pieces
    // (with 1 ms, two one-byte pieces were once read as one on a busy CI machine)
    for (id, splits) in [
        ("b", vec![1usize, 2, 3]),
        ("c", vec![199]),
        ("d", vec![77, 150]),
    ] {
        let header = splits
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let resp = get_streamed(
            envoy.port(),
            "/split",
            &[
                ("x-echo-header-x-test-id", id),
                ("x-split-at", &header),
                ("x-framing", "content-length"),
                ("x-chunk-delay-ms", "20"),
            ],
        );
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length"), Some("200"));
        assert_eq!(resp.body, body, "{id}");
        assert_eq!(
            logged_chunks(&envoy, "chunk", id),
            lengths(200, &splits),
            "{id}"
        );
    }
}

#[test]
fn gzip_bodies_are_compressed_before_splitting() {
    let up = BodyUpstream::start();
    let body = b"the quick brown fox jumps over the lazy dog, twice: the quick brown fox".to_vec();
    let spec = ResponseSpec::new(body.clone())
        .content_type("application/json")
        .content_encoding("gzip")
        .status(201);
    let wire = spec.encoded_body();
    up.serve("/gz", spec.split_at(&[7]));
    let envoy = start(&up);
    let resp = get_streamed(envoy.port(), "/gz", &[("x-echo-header-x-test-id", "gz")]);
    assert_eq!(resp.status, 201);
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.body, wire);
    assert_eq!(gunzip(&resp.body), body);
    assert_eq!(logged_chunks(&envoy, "chunk", "gz"), [7, wire.len() - 7]);
}

#[test]
fn request_pieces_reach_filters_and_upstream_as_separate_chunks() {
    let up = BodyUpstream::start();
    let envoy = start(&up);
    let pieces = ["card 4111 ", "1111", " 1111 1111", " end"];
    let resp = PieceRequest::new("POST", "/echo?x=1")
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-test-id", "req")
        .pieces(pieces)
        .send(envoy.port());
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    // echo mode: the body back, with the request's content type
    assert_eq!(resp.text(), pieces.concat());
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(logged_chunks(&envoy, "reqchunk", "req"), [10, 4, 10, 4]);

    let got = up.last_request().expect("upstream saw the request");
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/echo?x=1");
    assert!(got.complete);
    let chunks: Vec<String> = got
        .chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(chunks, pieces);

    // content-length framing with pieces: same body, one recorded piece
    let resp = PieceRequest::new("PUT", "/echo")
        .header("content-type", "application/json")
        .header("x-test-id", "cl")
        .framing(Framing::ContentLength)
        .body_split(br#"{"a":"bcdefgh"}"#, &[3, 9])
        .send(envoy.port());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), r#"{"a":"bcdefgh"}"#);
    assert_eq!(logged_chunks(&envoy, "reqchunk", "cl"), [3, 6, 6]);
    let got = up.last_request().expect("upstream saw the request");
    assert_eq!(got.header("content-length"), Some("15"));
    assert_eq!(got.text(), r#"{"a":"bcdefgh"}"#);
}
