//! `make dist` output: release modules with digests, schemas, OCI image
//! layouts in the compat variant Istio accepts, digests.json; packaging and
//! compilation are reproducible.
//!
//! The tests package the modules of `make build` with the xtask binary
//! (`make test` builds both first); see `pwf_tests::dist`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pwf_tests::dist::{files_below, sha256sum, Dist};
use pwf_tests::{repo_root, run_ok};
use serde_json::Value;

const FILTERS: [&str; 6] = [
    "cos-router",
    "dlp-redact",
    "header-transform",
    "jwt-acquire",
    "jwt-auth",
    "plan-ratelimit",
];

/// `version` of `[workspace.package]` in the root Cargo.toml.
fn workspace_version() -> String {
    let text = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let section = text
        .split("[workspace.package]")
        .nth(1)
        .expect("[workspace.package] section");
    section
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("version in [workspace.package]")
}

fn built_wasm(filter: &str) -> PathBuf {
    repo_root()
        .join("target/wasm32-wasip1/release")
        .join(format!("{}.wasm", filter.replace('-', "_")))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

#[test]
fn dist_has_every_filter_with_digests_and_schemas() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = Dist::build(tmp.path());
    let version = workspace_version();
    assert_eq!(dist.digests.version, version);
    let names: Vec<&str> = dist.digests.filters.keys().map(String::as_str).collect();
    assert_eq!(names, FILTERS);

    let mut expected_sums = BTreeSet::new();
    for filter in FILTERS {
        let entry = dist.filter(filter);
        let wasm_file = format!("{filter}-{version}.wasm");
        assert_eq!(entry.wasm, wasm_file);
        assert_eq!(entry.oci_layout, format!("oci/{filter}"));

        let wasm = dist.read(&wasm_file);
        assert_eq!(
            wasm,
            std::fs::read(built_wasm(filter)).unwrap(),
            "{filter}: dist holds the module of make build"
        );
        let hex = sha256sum(&wasm);
        assert_eq!(entry.wasm_sha256, hex);
        assert_eq!(
            String::from_utf8(dist.read(&format!("{wasm_file}.sha256"))).unwrap(),
            format!("{hex}  {wasm_file}\n")
        );
        expected_sums.insert(format!("{hex}  {wasm_file}"));

        let schema_source = repo_root().join(format!("filters/{filter}/config.schema.json"));
        if schema_source.exists() {
            let schema_file = format!("{filter}-{version}.schema.json");
            assert_eq!(entry.schema.as_deref(), Some(schema_file.as_str()));
            let schema = dist.read(&schema_file);
            assert_eq!(schema, std::fs::read(&schema_source).unwrap());
            expected_sums.insert(format!("{}  {schema_file}", sha256sum(&schema)));
        } else {
            assert_eq!(entry.schema, None, "{filter}");
            assert!(
                dist.output.contains(&format!("warning: {filter}: no ")),
                "{}",
                dist.output
            );
        }
    }

    let sums = String::from_utf8(dist.read("SHA256SUMS")).unwrap();
    let lines: BTreeSet<String> = sums.lines().map(str::to_string).collect();
    assert_eq!(lines, expected_sums);
    // coreutils agrees with every line.
    let checked = run_ok(
        Command::new("sha256sum")
            .args(["-c", "--strict", "SHA256SUMS"])
            .current_dir(&dist.dir),
    );
    assert_eq!(
        String::from_utf8_lossy(&checked).lines().count(),
        expected_sums.len()
    );
}

/// The compat variant as Istio's image fetcher reads it: an image manifest
/// whose last (here: only) layer is `application/vnd.oci.image.layer.v1.tar+gzip`
/// holding `plugin.wasm`; `WasmPlugin.sha256` is the manifest digest.
#[test]
fn oci_layouts_are_compat_images_of_the_modules() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = Dist::build(tmp.path());
    for filter in FILTERS {
        let entry = dist.filter(filter);
        let layout = dist.dir.join(&entry.oci_layout);
        let blob = |digest: &str| {
            let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
            let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob");
            assert_eq!(sha256sum(&bytes), hex, "{filter}: blob named by its digest");
            bytes
        };
        assert_eq!(
            json(&std::fs::read(layout.join("oci-layout")).unwrap()),
            serde_json::json!({"imageLayoutVersion": "1.0.0"})
        );
        let index = json(&std::fs::read(layout.join("index.json")).unwrap());
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1, "{filter}");
        assert_eq!(
            manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
            dist.digests.version.as_str()
        );
        assert_eq!(manifests[0]["digest"], entry.oci_manifest_digest.as_str());

        let manifest_bytes = blob(&entry.oci_manifest_digest);
        assert_eq!(manifests[0]["size"], manifest_bytes.len());
        let manifest = json(&manifest_bytes);
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(
            manifest["annotations"]["module.wasm.image/variant"],
            "compat"
        );
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.version"],
            dist.digests.version.as_str()
        );
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{filter}");
        assert_eq!(
            layers[0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );

        let layer = blob(layers[0]["digest"].as_str().unwrap());
        assert_eq!(layers[0]["size"], layer.len());
        // gzip header: deflate, no flags (so no file name), MTIME 0.
        assert_eq!(layer[..8], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0], "{filter}");
        let layer_path = tmp.path().join(format!("{filter}.tar.gz"));
        std::fs::write(&layer_path, &layer).unwrap();

        // GNU tar reads it: one regular file plugin.wasm, 0/0, 0644, epoch.
        let wasm = dist.read(&entry.wasm);
        let listing = run_ok(
            Command::new("tar")
                .args(["--numeric-owner", "--utc", "-tvzf"])
                .arg(&layer_path),
        );
        let listing = String::from_utf8_lossy(&listing).into_owned();
        let fields: Vec<&str> = listing.split_whitespace().collect();
        let size = wasm.len().to_string();
        assert_eq!(
            fields,
            [
                "-rw-r--r--",
                "0/0",
                &size,
                "1970-01-01",
                "00:00",
                "plugin.wasm"
            ],
            "{filter}: {listing}"
        );
        assert_eq!(listing.lines().count(), 1);
        let extracted = run_ok(
            Command::new("tar")
                .args(["-xzOf"])
                .arg(&layer_path)
                .arg("plugin.wasm"),
        );
        assert_eq!(extracted, wasm, "{filter}: the layer holds the module");

        let config = json(&blob(manifest["config"]["digest"].as_str().unwrap()));
        let tar = run_ok(Command::new("gzip").arg("-dc").arg(&layer_path));
        assert_eq!(
            config["rootfs"],
            serde_json::json!({"type": "layers", "diff_ids": [format!("sha256:{}", sha256sum(&tar))]})
        );
    }
}

#[test]
fn packaging_twice_gives_byte_identical_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Dist::build(&tmp.path().join("a"));
    let b = Dist::build(&tmp.path().join("deeper/b"));
    let (files_a, files_b) = (files_below(&a.dir), files_below(&b.dir));
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&files_a), names(&files_b));
    // A module, its .sha256 and an image layout of 5 files per filter,
    // SHA256SUMS, digests.json, and the schemas.
    let schemas = a
        .digests
        .filters
        .values()
        .filter(|f| f.schema.is_some())
        .count();
    assert_eq!(files_a.len(), FILTERS.len() * (1 + 1 + 5) + 2 + schemas);
    for ((name, x), (_, y)) in files_a.iter().zip(&files_b) {
        assert!(x == y, "{name} differs between two packagings");
    }
}

/// Compilation is reproducible and does not depend on where the sources,
/// the target dir or Cargo's crate cache ($CARGO_HOME) are: header-transform
/// built by `make build FILTERS=header-transform` from a copy of the
/// sources at another path, into a fresh target dir, with another
/// CARGO_HOME path (its registry a symlink to the real one, so nothing is
/// downloaded), is byte-identical to the release module.
#[test]
fn release_module_rebuilds_identically_at_other_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = Dist::build(&tmp.path().join("dist"));
    let copy = tmp.path().join("elsewhere/checkout/pwf");
    copy_sources(&repo_root(), &copy);

    let real_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let cargo_home = tmp.path().join("other-cargo-home");
    std::fs::create_dir_all(&cargo_home).unwrap();
    std::os::unix::fs::symlink(
        real_cargo_home.join("registry"),
        cargo_home.join("registry"),
    )
    .unwrap();
    let target = tmp.path().join("fresh-target");

    run_ok(
        Command::new("make")
            .args(["-s", "build", "FILTERS=header-transform"])
            .current_dir(&copy)
            .env("CARGO_HOME", &cargo_home)
            .env("CARGO_TARGET_DIR", &target)
            .env("CARGO_NET_OFFLINE", "true")
            .env_remove("CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS"),
    );
    let rebuilt = std::fs::read(target.join("wasm32-wasip1/release/header_transform.wasm"))
        .expect("rebuilt module");

    let released = dist.read(&dist.filter("header-transform").wasm);
    for path in [&repo_root(), &copy, &real_cargo_home, &cargo_home, &target] {
        let needle = path.to_string_lossy();
        assert!(
            !contains(&rebuilt, needle.as_bytes()) && !contains(&released, needle.as_bytes()),
            "a module names the host path {needle}"
        );
    }
    assert!(
        rebuilt == released,
        "header-transform rebuilt elsewhere differs from the release module \
         ({} vs {} bytes; sha256 {} vs {}); was target/ built by `make build`?",
        rebuilt.len(),
        released.len(),
        sha256sum(&rebuilt),
        sha256sum(&released)
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files git would commit (tracked and untracked, not ignored).
fn copy_sources(from: &Path, to: &Path) {
    let list = run_ok(
        Command::new("git")
            .args([
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ])
            .current_dir(from),
    );
    for rel in list.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).expect("UTF-8 path"));
        let src = from.join(rel);
        if !src.is_file() {
            continue; // deleted in the work tree
        }
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
}

/// The README's Envoy snippet: a release module fetched over HTTP by a
/// `remote` data source, pinned by its sha256. Served from the dist
/// directory by a small file server on the port of the `wasm_releases`
/// cluster.
const REMOTE_WASM_CONFIG: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }
          http_filters:
          - name: header-transform
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: header-transform
                vm_config:
                  vm_id: header-transform
                  runtime: envoy.wasm.runtime.v8
                  code:
                    remote:
                      http_uri:
                        uri: http://127.0.0.1:18300/WASM_FILE
                        cluster: wasm_releases
                        timeout: 10s
                      sha256: "WASM_SHA256"
                      retry_policy: { num_retries: 1 }
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"response": [{"operations": [{"set": {"header": "x-filter", "value": "loaded"}}]}]}'
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: wasm_releases
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: wasm_releases
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18300 } } }
"#;

fn envoy_with_remote_module(
    dist: &Dist,
    server: &pwf_tests::FileServer,
    sha256: &str,
) -> pwf_tests::Envoy {
    let entry = dist.filter("header-transform");
    let yaml = REMOTE_WASM_CONFIG
        .replace("WASM_FILE", &entry.wasm)
        .replace("WASM_SHA256", sha256);
    pwf_tests::Envoy::builder_inline(&yaml)
        .port(18300, server.port())
        .start()
}

#[test]
fn envoy_loads_the_release_module_from_a_url_pinned_by_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = Dist::build(tmp.path());
    let server = pwf_tests::FileServer::start(&dist.dir);
    let entry = dist.filter("header-transform");
    let envoy = envoy_with_remote_module(&dist, &server, &entry.wasm_sha256);

    let resp = envoy.get("/anything");
    assert_eq!(resp.status, 200, "{}", pwf_tests::tail(&envoy.log(), 20));
    assert_eq!(resp.header("x-filter"), Some("loaded"));
    assert_eq!(server.requests(), [format!("/{}", entry.wasm)]);
}

#[test]
fn envoy_rejects_the_release_module_with_a_wrong_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = Dist::build(tmp.path());
    let server = pwf_tests::FileServer::start(&dist.dir);
    let entry = dist.filter("header-transform");
    // The digest of another release file: well-formed, not this module's.
    let wrong = &dist.filter("jwt-auth").wasm_sha256;
    assert_ne!(wrong, &entry.wasm_sha256);
    let envoy = envoy_with_remote_module(&dist, &server, wrong);

    // The module is fetched (and retried) but never loaded: the filter
    // fails closed.
    envoy.wait_for_log("Retry limit exceeded for fetching data from remote data source");
    let resp = envoy.get("/anything");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("x-filter"), None);
    assert_eq!(
        server.requests(),
        vec![format!("/{}", entry.wasm); 2],
        "one fetch and one retry"
    );
}
