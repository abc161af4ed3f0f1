//! The OCI images of `make dist` in a real registry: `make push-oci` pushes
//! them to Debian's docker-registry on loopback with skopeo; the registry
//! serves each manifest under the digest dist recorded (the value
//! `WasmPlugin.sha256` must hold for `oci://` URLs), and pulling the image
//! back gives a layer with the same module bytes.

use std::path::Path;
use std::process::Command;

use pwf_tests::dist::{sha256sum, xtask_bin, Dist};
use pwf_tests::{repo_root, run_ok, Registry};
use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const NAMESPACE: &str = "pwf";

/// `make push-oci` against `registry`, with the xtask binary the tests use
/// (so the Makefile recipe runs without compiling xtask again).
fn make_push_oci(dist: &Path, registry: &str) -> std::process::Output {
    Command::new("make")
        .current_dir(repo_root())
        .args(["-s", "push-oci"])
        .arg(format!("REGISTRY={registry}"))
        .arg("TLS_VERIFY=false")
        .arg(format!("DIST={}", dist.display()))
        .arg(format!("XTASK={}", xtask_bin().display()))
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .output()
        .expect("run make push-oci")
}

#[test]
fn pushed_images_keep_the_recorded_digest_and_module() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = Dist::build(&tmp.path().join("dist"));
    let registry = Registry::start();
    let host = registry.host();
    let version = &dist.digests.version;

    let out = make_push_oci(&dist.dir, &format!("{host}/{NAMESPACE}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "make push-oci failed:\n{stdout}{}\nregistry log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        registry.log()
    );

    for (filter, entry) in &dist.digests.filters {
        let image = format!("{host}/{NAMESPACE}/{filter}:{version}");
        assert!(
            stdout.contains(&format!("pushed {image}@{}", entry.oci_manifest_digest)),
            "{stdout}"
        );

        // The registry API, as Istio's fetcher asks for the manifest.
        let resp = registry
            .client()
            .req(
                "GET",
                &format!("/v2/{NAMESPACE}/{filter}/manifests/{version}"),
            )
            .header("accept", OCI_MANIFEST)
            .send();
        assert_eq!(resp.status, 200, "{filter}: {}", resp.text());
        assert_eq!(resp.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            resp.header("docker-content-digest"),
            Some(entry.oci_manifest_digest.as_str()),
            "{filter}"
        );
        assert_eq!(
            format!("sha256:{}", sha256sum(&resp.body)),
            entry.oci_manifest_digest
        );
        // Byte for byte the manifest of the layout.
        let hex = entry.oci_manifest_digest.strip_prefix("sha256:").unwrap();
        assert_eq!(
            resp.body,
            dist.read(&format!("{}/blobs/sha256/{hex}", entry.oci_layout))
        );
        // Pinned by digest, as `url: oci://...` with `sha256` resolves it.
        let by_digest = registry
            .client()
            .req(
                "GET",
                &format!(
                    "/v2/{NAMESPACE}/{filter}/manifests/{}",
                    entry.oci_manifest_digest
                ),
            )
            .header("accept", OCI_MANIFEST)
            .send();
        assert_eq!(by_digest.status, 200);
        assert_eq!(by_digest.body, resp.body);

        // Pull it back with skopeo into a new layout and unpack the layer.
        let pulled = tmp.path().join("pulled").join(filter);
        std::fs::create_dir_all(pulled.parent().unwrap()).unwrap();
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--src-tls-verify=false"])
                .arg(format!("docker://{image}"))
                .arg(format!("oci:{}:{version}", pulled.display())),
        );
        let index: Value =
            serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            entry.oci_manifest_digest.as_str()
        );
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(pulled.join("blobs/sha256").join(hex)).unwrap())
                .unwrap();
        let layer_hex = manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap()
            .to_string();
        let wasm = run_ok(
            Command::new("tar")
                .arg("-xzOf")
                .arg(pulled.join("blobs/sha256").join(&layer_hex))
                .arg("plugin.wasm"),
        );
        assert!(
            wasm == dist.read(&entry.wasm),
            "{filter}: pulled plugin.wasm differs from {}",
            entry.wasm
        );
    }
}

#[test]
fn push_oci_fails_when_the_registry_would_not_hold_the_recorded_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = Dist::build(&tmp.path().join("dist"));
    // Record a wrong digest for one filter: the push succeeds, the check fails.
    let path = dist.dir.join("digests.json");
    let mut digests: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    digests["filters"]["header-transform"]["oci_manifest_digest"] = wrong.clone().into();
    std::fs::write(&path, serde_json::to_vec_pretty(&digests).unwrap()).unwrap();

    let registry = Registry::start();
    let out = make_push_oci(&dist.dir, &format!("{}/{NAMESPACE}", registry.host()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let real = &dist.filter("header-transform").oci_manifest_digest;
    assert!(
        stderr.contains(&format!(
            "{}/{NAMESPACE}/header-transform:{}: the registry has manifest {real}, dist recorded {wrong}",
            registry.host(),
            dist.digests.version
        )),
        "{stderr}"
    );
}

#[test]
fn push_oci_needs_a_registry() {
    let out = Command::new("make")
        .current_dir(repo_root())
        .args(["-s", "push-oci", "REGISTRY="])
        .arg(format!("XTASK={}", xtask_bin().display()))
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("usage: make push-oci REGISTRY=host/namespace"));
}
