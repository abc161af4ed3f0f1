//! A Wasm module as an OCI image in the "compat" variant that Istio's
//! WasmPlugin accepts for `oci://` URLs, written as an OCI image layout
//! directory (`oci-layout`, `index.json`, `blobs/sha256/<hex>`).
//!
//! What Istio checks (`pkg/wasm/imagefetcher.go`, and the solo-io Wasm image
//! spec `spec-compat.md`): the manifest is an image manifest (not an index),
//! its last layer has the media type
//! `application/vnd.oci.image.layer.v1.tar+gzip`, and the tar holds a file
//! whose base name is `plugin.wasm`. `WasmPlugin.sha256` is compared with the
//! manifest digest. The spec also asks for the manifest annotation
//! `module.wasm.image/variant: compat`.
//!
//! The output is a pure function of its inputs: tar and gzip headers carry
//! fixed times, owners and modes, no gzip file name, and every JSON document
//! is serialized from structs (fixed key order) or sorted maps.

use crate::sha256;
use flate2::{Compression, GzBuilder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file name Istio looks for inside the layer.
pub const WASM_FILE_NAME: &str = "plugin.wasm";
const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// The tag name inside the layout (`oci:<dir>:<ref>` in skopeo).
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Tar entry time. Fixed so that the layer depends only on the module.
const LAYER_MTIME: u64 = 0;
/// gzip header OS byte: 255 = unknown, so the host does not show through.
const GZIP_OS_UNKNOWN: u8 = 255;

/// Descriptive metadata, stored as OCI manifest annotations.
pub struct ImageMeta<'a> {
    pub title: &'a str,
    pub version: &'a str,
    pub description: &'a str,
    pub source: &'a str,
    pub licenses: &'a str,
}

/// One image layout: its files (path relative to the layout root, bytes)
/// and the manifest digest (`sha256:<hex>`).
pub struct Layout {
    pub files: Vec<(String, Vec<u8>)>,
    pub manifest_digest: String,
}

#[derive(Serialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    digest: String,
    size: usize,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

impl Descriptor {
    fn of(media_type: &'static str, blob: &[u8]) -> Self {
        Descriptor {
            media_type,
            digest: sha256::oci_digest(blob),
            size: blob.len(),
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// The image config. `architecture`/`os` use Go's names for the target
/// (GOARCH=wasm, GOOS=wasip1); nothing in the pull path checks them.
#[derive(Serialize)]
struct ImageConfig {
    architecture: &'static str,
    os: &'static str,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
struct OciLayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: &'static str,
}

/// The compat-variant image of `wasm`, tagged `meta.version` in the layout.
pub fn compat_image(wasm: &[u8], meta: &ImageMeta) -> Result<Layout, String> {
    let tar = layer_tar(wasm)?;
    let layer = gzip(&tar)?;
    let config = to_json(&ImageConfig {
        architecture: "wasm",
        os: "wasip1",
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![sha256::oci_digest(&tar)],
        },
    })?;
    let manifest = to_json(&Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        config: Descriptor::of(CONFIG_MEDIA_TYPE, &config),
        layers: vec![Descriptor::of(LAYER_MEDIA_TYPE, &layer)],
        annotations: manifest_annotations(meta),
    })?;
    let mut manifest_descriptor = Descriptor::of(MANIFEST_MEDIA_TYPE, &manifest);
    manifest_descriptor
        .annotations
        .insert(REF_NAME_ANNOTATION, meta.version.to_string());
    let index = to_json(&Index {
        schema_version: 2,
        media_type: INDEX_MEDIA_TYPE,
        manifests: vec![manifest_descriptor],
    })?;
    let oci_layout = to_json(&OciLayoutFile {
        image_layout_version: "1.0.0",
    })?;

    let manifest_digest = sha256::oci_digest(&manifest);
    let mut files = vec![
        ("oci-layout".to_string(), oci_layout),
        ("index.json".to_string(), index),
    ];
    for blob in [manifest, config, layer] {
        files.push((format!("blobs/sha256/{}", sha256::hex(&blob)), blob));
    }
    Ok(Layout {
        files,
        manifest_digest,
    })
}

impl Layout {
    /// Writes the layout below `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> Result<(), String> {
        for (rel, bytes) in &self.files {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            std::fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

fn manifest_annotations(meta: &ImageMeta) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (VARIANT_ANNOTATION, "compat".to_string()),
        ("org.opencontainers.image.title", meta.title.to_string()),
        ("org.opencontainers.image.version", meta.version.to_string()),
        (
            "org.opencontainers.image.description",
            meta.description.to_string(),
        ),
        ("org.opencontainers.image.source", meta.source.to_string()),
        (
            "org.opencontainers.image.licenses",
            meta.licenses.to_string(),
        ),
    ])
}

/// A tar holding only `plugin.wasm`: owner root (0:0, no names), mode 0644,
/// fixed mtime.
fn layer_tar(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(LAYER_MTIME);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header, WASM_FILE_NAME, wasm)
        .map_err(|e| format!("tar: {e}"))?;
    builder.into_inner().map_err(|e| format!("tar: {e}"))
}

/// gzip with mtime 0, no file name, unknown OS, best compression.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(GZIP_OS_UNKNOWN)
        .write(Vec::new(), Compression::best());
    encoder.write_all(bytes).map_err(|e| format!("gzip: {e}"))?;
    encoder.finish().map_err(|e| format!("gzip: {e}"))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("JSON: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::Value;
    use std::io::Read;

    const META: ImageMeta = ImageMeta {
        title: "demo",
        version: "1.2.3",
        description: "a demo",
        source: "https://example.com/repo",
        licenses: "Apache-2.0",
    };
    const WASM: &[u8] = b"\0asm\x01\0\0\0 pretend module";

    fn file<'a>(layout: &'a Layout, name: &str) -> &'a [u8] {
        &layout.files.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn blob<'a>(layout: &'a Layout, digest: &str) -> &'a [u8] {
        let hex = digest.strip_prefix("sha256:").unwrap();
        file(layout, &format!("blobs/sha256/{hex}"))
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn same_input_same_bytes() {
        let a = compat_image(WASM, &META).unwrap();
        let b = compat_image(WASM, &META).unwrap();
        assert_eq!(a.files, b.files);
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let other = compat_image(b"\0asm\x01\0\0\0 other", &META).unwrap();
        assert_ne!(a.manifest_digest, other.manifest_digest);
    }

    #[test]
    fn layout_files_and_blob_names_are_digests() {
        let layout = compat_image(WASM, &META).unwrap();
        let names: Vec<&str> = layout.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 5);
        assert_eq!(names[..2], ["oci-layout", "index.json"]);
        for (name, bytes) in &layout.files[2..] {
            assert_eq!(*name, format!("blobs/sha256/{}", sha256::hex(bytes)));
        }
        assert_eq!(
            json(file(&layout, "oci-layout")),
            serde_json::json!({"imageLayoutVersion": "1.0.0"})
        );
    }

    #[test]
    fn index_tags_the_manifest_with_the_version() {
        let layout = compat_image(WASM, &META).unwrap();
        let index = json(file(&layout, "index.json"));
        assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE);
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1);
        assert_eq!(manifests[0]["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifests[0]["digest"], layout.manifest_digest.as_str());
        assert_eq!(
            manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
            "1.2.3"
        );
        let manifest = blob(&layout, &layout.manifest_digest);
        assert_eq!(manifests[0]["size"], manifest.len());
        assert_eq!(sha256::oci_digest(manifest), layout.manifest_digest);
    }

    #[test]
    fn manifest_is_the_compat_variant() {
        let layout = compat_image(WASM, &META).unwrap();
        let manifest = json(blob(&layout, &layout.manifest_digest));
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], LAYER_MEDIA_TYPE);
        let annotations = &manifest["annotations"];
        assert_eq!(annotations["module.wasm.image/variant"], "compat");
        assert_eq!(annotations["org.opencontainers.image.version"], "1.2.3");
        assert_eq!(annotations["org.opencontainers.image.title"], "demo");
        assert_eq!(
            annotations["org.opencontainers.image.source"],
            "https://example.com/repo"
        );
        let layer = blob(&layout, layers[0]["digest"].as_str().unwrap());
        assert_eq!(layers[0]["size"], layer.len());
    }

    #[test]
    fn layer_is_a_fixed_tar_gz_of_plugin_wasm() {
        let layout = compat_image(WASM, &META).unwrap();
        let manifest = json(blob(&layout, &layout.manifest_digest));
        let layer = blob(&layout, manifest["layers"][0]["digest"].as_str().unwrap());
        // gzip header: magic, deflate, FLG=0 (no name/comment/extra), MTIME=0, OS=255.
        assert_eq!(layer[..4], [0x1f, 0x8b, 8, 0]);
        assert_eq!(layer[4..8], [0, 0, 0, 0]);
        assert_eq!(layer[9], 255);

        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(layer)
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let config = json(blob(
            &layout,
            manifest["config"]["digest"].as_str().unwrap(),
        ));
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!([sha256::oci_digest(&tar_bytes)])
        );
        assert_eq!(config["rootfs"]["type"], "layers");

        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        let header = entry.header();
        assert_eq!(header.path().unwrap().to_str(), Some("plugin.wasm"));
        assert_eq!(header.mode().unwrap(), 0o644);
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.gid().unwrap(), 0);
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!(header.entry_type(), tar::EntryType::Regular);
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, WASM);
        drop(entry);
        assert!(entries.next().is_none());
    }
}
