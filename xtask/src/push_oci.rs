//! `xtask push-oci --registry HOST[/NAMESPACE] [--dist DIR] [--dest-tls-verify=false]`:
//! pushes every image layout of a dist directory with skopeo, as
//! `<registry>/<filter>:<version>`, and checks that the registry stored the
//! manifest digest recorded in `digests.json` (the value `WasmPlugin.sha256`
//! must hold).
//!
//! `--preserve-digests` makes skopeo fail rather than rewrite the manifest,
//! and `--digestfile` reports the digest of what was written.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str =
    "usage: xtask push-oci --registry HOST[/NAMESPACE] [--dist DIR] [--dest-tls-verify=false]";

#[derive(Deserialize)]
struct Digests {
    version: String,
    filters: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    oci_layout: String,
    oci_manifest_digest: String,
}

struct Args {
    registry: String,
    dist: Option<PathBuf>,
    tls_verify: bool,
}

pub fn run(args: &[String]) -> Result<(), String> {
    let args = parse_args(args)?;
    let dist = match args.dist {
        Some(d) => d,
        None => crate::workspace::Workspace::load()?.root.join("dist"),
    };
    let path = dist.join("digests.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("reading {}: {e} (run `make dist` first)", path.display()))?;
    let digests: Digests =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let registry = args.registry.trim_end_matches('/');
    for (name, entry) in &digests.filters {
        let image = format!("{registry}/{name}:{}", digests.version);
        let pushed = push(
            &dist.join(&entry.oci_layout),
            &digests.version,
            &image,
            args.tls_verify,
        )?;
        if pushed != entry.oci_manifest_digest {
            return Err(format!(
                "{image}: the registry has manifest {pushed}, dist recorded {}",
                entry.oci_manifest_digest
            ));
        }
        println!("pushed {image}@{pushed}");
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut registry = None;
    let mut dist = None;
    let mut tls_verify = true;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or(format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--registry" => registry = Some(value()?),
            "--dist" => dist = Some(PathBuf::from(value()?)),
            "--dest-tls-verify=false" => tls_verify = false,
            "--dest-tls-verify=true" => tls_verify = true,
            _ => return Err(format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    match registry {
        Some(registry) if !registry.is_empty() => Ok(Args {
            registry,
            dist,
            tls_verify,
        }),
        _ => Err(format!("--registry is required\n{USAGE}")),
    }
}

/// `skopeo copy` of one layout; returns the digest skopeo reports.
fn push(layout: &Path, tag: &str, image: &str, tls_verify: bool) -> Result<String, String> {
    let digest_file = std::env::temp_dir().join(format!(
        "xtask-push-oci-{}-{}.digest",
        std::process::id(),
        image.replace(['/', ':'], "_")
    ));
    let status = Command::new("skopeo")
        .args(["copy", "--preserve-digests", "--digestfile"])
        .arg(&digest_file)
        .arg(format!("--dest-tls-verify={tls_verify}"))
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{image}"))
        .status()
        .map_err(|e| format!("running skopeo (make setup-registry installs it): {e}"))?;
    let digest = std::fs::read_to_string(&digest_file);
    let _ = std::fs::remove_file(&digest_file);
    if !status.success() {
        return Err(format!("skopeo copy to {image} failed ({status})"));
    }
    digest
        .map(|d| d.trim().to_string())
        .map_err(|e| format!("{image}: reading skopeo's digest file: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args() {
        let a = parse_args(&strings(&[
            "--registry",
            "127.0.0.1:5000/pwf",
            "--dest-tls-verify=false",
            "--dist",
            "/d",
        ]))
        .unwrap();
        assert_eq!(a.registry, "127.0.0.1:5000/pwf");
        assert!(!a.tls_verify);
        assert_eq!(a.dist, Some(PathBuf::from("/d")));
        assert!(
            parse_args(&strings(&["--registry", "ghcr.io/x"]))
                .unwrap()
                .tls_verify
        );
        assert_eq!(
            parse_args(&[]).err().unwrap(),
            format!("--registry is required\n{USAGE}")
        );
        assert_eq!(
            parse_args(&strings(&["--registry", ""])).err().unwrap(),
            format!("--registry is required\n{USAGE}")
        );
    }
}
