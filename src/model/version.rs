//! The Kubernetes version skiff speaks and the platform names Kubernetes uses.
//!
//! Owns: [`KUBERNETES_VERSION`], [`go_arch`]. Calls: nothing in skiff.

/// The version skiff reports; kubectl picks its client version from `minor`.
pub const KUBERNETES_VERSION: (&str, &str, &str) = ("1", "32", "v1.32.4");

/// The architecture as Kubernetes names it (amd64, arm64, arm).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}
