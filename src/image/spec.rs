//! The OCI and Docker (schema 2) manifest formats, their media types, and platform
//! selection from an index or manifest list.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::reference::Digest;
use super::ImageError;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Everything a manifests request accepts, best first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Annotation naming an image in an OCI layout (`index.json`).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name in exported OCI layouts.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Layer media types this module can unpack (compression is detected from the bytes).
const LAYER_TYPES: &[&str] = &[
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

pub fn is_layer_type(media_type: &str) -> bool {
    LAYER_TYPES.contains(&media_type)
}

pub fn is_config_type(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// A pointer to content: what it is, its digest and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a manifests document turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Index,
    Manifest,
}

/// Classifies a manifests document from its media type (the HTTP Content-Type or
/// the descriptor's), falling back to the document's own `mediaType` and shape.
pub fn manifest_kind(media_type: Option<&str>, body: &[u8]) -> Result<ManifestKind, String> {
    let declared = media_type
        .map(|m| m.split(';').next().unwrap_or(m).trim().to_string())
        .filter(|m| !m.is_empty() && m != "application/json" && m != "text/plain");
    let probe: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid json: {e}"))?;
    let media = declared.or_else(|| probe["mediaType"].as_str().map(str::to_string));
    match media.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => Ok(ManifestKind::Index),
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => Ok(ManifestKind::Manifest),
        Some(other) if other.contains("manifest.v1") => Err(format!(
            "unsupported manifest media type {other} (docker schema 1 is obsolete)"
        )),
        Some(other) => Err(format!("unsupported manifest media type {other}")),
        None if probe.get("manifests").is_some() => Ok(ManifestKind::Index),
        None if probe.get("config").is_some() => Ok(ManifestKind::Manifest),
        None => Err("document is neither an image manifest nor an index".to_string()),
    }
}

/// An os/architecture/variant triple (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary was built for (`linux/amd64`, `linux/arm64/v8`,
    /// `linux/arm/v7`).
    pub fn current() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "riscv64" => ("riscv64", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.to_string(),
            os: std::env::consts::OS.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, ImageError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: parts.get(2).map(|v| v.to_string()),
            }
            .normalized()),
            _ => Err(ImageError::InvalidPlatform(s.to_string())),
        }
    }

    /// Canonical names: `x86_64` → `amd64`, `aarch64` → `arm64` (variant `v8`),
    /// `arm` without variant → `v7`.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let (architecture, variant) = match self.architecture.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64".to_string(), self.variant.clone()),
            "aarch64" | "arm64" => (
                "arm64".to_string(),
                Some(self.variant.clone().unwrap_or_else(|| "v8".to_string())),
            ),
            "armhf" => ("arm".to_string(), Some("v7".to_string())),
            "armel" => ("arm".to_string(), Some("v6".to_string())),
            "arm" => (
                "arm".to_string(),
                Some(self.variant.clone().unwrap_or_else(|| "v7".to_string())),
            ),
            "i386" | "i686" | "386" => ("386".to_string(), self.variant.clone()),
            other => (other.to_string(), self.variant.clone()),
        };
        let variant = variant
            .map(|v| v.to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .filter(|v| !(architecture == "amd64" && v == "v1"));
        Platform {
            architecture,
            os,
            variant,
        }
    }

    /// How well an image built for `candidate` runs here: `Some(0)` is an exact
    /// match, larger numbers are older variants this node also runs (arm v6 on a v7
    /// node), `None` cannot run.
    pub fn match_rank(&self, candidate: &Platform) -> Option<u32> {
        let want = self.normalized();
        let have = candidate.normalized();
        if want.os != have.os || want.architecture != have.architecture {
            return None;
        }
        match (&want.variant, &have.variant) {
            (None, None) => Some(0),
            (Some(w), Some(h)) if w == h => Some(0),
            (Some(w), h) => {
                let w = variant_number(w)?;
                let h = h.as_deref().map_or(Some(1), variant_number)?;
                (h <= w).then(|| w - h)
            }
            (None, Some(_)) => None,
        }
    }
}

fn variant_number(variant: &str) -> Option<u32> {
    variant.strip_prefix('v')?.parse().ok()
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the index entry that runs best on `platform` (ties go to the first one).
pub fn select_platform<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    index
        .manifests
        .iter()
        .filter_map(|d| {
            let rank = platform.match_rank(d.platform.as_ref()?)?;
            Some((rank, d))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, d)| d)
}

/// The platforms an index offers, for error messages.
pub fn offered_platforms(index: &Index) -> String {
    let list: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, fill: char) -> serde_json::Value {
        let mut platform = serde_json::json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{}", fill.to_string().repeat(64)),
            "size": 100,
            "platform": platform,
        })
    }

    fn index(entries: Vec<serde_json::Value>) -> Index {
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        }))
        .unwrap()
    }

    fn pick(idx: &Index, platform: &str) -> Option<char> {
        let d = select_platform(idx, &Platform::parse(platform).unwrap())?;
        d.digest.hex().chars().next()
    }

    #[test]
    fn selects_this_nodes_platform_from_an_index() {
        let idx = index(vec![
            entry("amd64", None, 'a'),
            entry("arm64", Some("v8"), 'b'),
            entry("arm", Some("v6"), 'c'),
            entry("arm", Some("v7"), 'd'),
            entry("unknown", None, 'e'),
        ]);
        assert_eq!(pick(&idx, "linux/amd64"), Some('a'));
        assert_eq!(pick(&idx, "linux/arm64/v8"), Some('b'));
        assert_eq!(pick(&idx, "linux/arm64"), Some('b'));
        assert_eq!(pick(&idx, "linux/arm/v7"), Some('d'));
        assert_eq!(pick(&idx, "linux/arm/v6"), Some('c'));
        assert_eq!(pick(&idx, "linux/riscv64"), None);
        assert_eq!(pick(&idx, "windows/amd64"), None);
    }

    #[test]
    fn older_arm_variants_run_on_newer_nodes() {
        let idx = index(vec![entry("arm", Some("v6"), 'c')]);
        assert_eq!(pick(&idx, "linux/arm/v7"), Some('c'));
        let arm64_plain = index(vec![entry("arm64", None, 'f')]);
        assert_eq!(pick(&arm64_plain, "linux/arm64/v8"), Some('f'));
        let v7_only = index(vec![entry("arm", Some("v7"), 'd')]);
        assert_eq!(pick(&v7_only, "linux/arm/v6"), None);
    }

    #[test]
    fn current_platform_is_known() {
        let p = Platform::current();
        assert_eq!(p.os, "linux");
        assert!(!p.architecture.is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(p.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn classifies_manifest_documents() {
        let idx = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(manifest_kind(None, idx), Ok(ManifestKind::Index));
        assert_eq!(
            manifest_kind(Some(DOCKER_MANIFEST), b"{}"),
            Ok(ManifestKind::Manifest)
        );
        assert_eq!(
            manifest_kind(Some("application/json"), idx),
            Ok(ManifestKind::Index)
        );
        assert!(manifest_kind(
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            b"{}"
        )
        .unwrap_err()
        .contains("schema 1"));
    }
}
