//! Pod networking: network namespaces and the CNI invoker that wires them up.
//! The Service data plane's kernel side is `proxy`; nftables go through `nft`.
//!
//! Owns: pod network namespaces, CNI invocation and its result cache, the built-in
//! CNI plugins (`plugins`: bridge, host-local, portmap, loopback), nftables.
//! May call: nothing else in skiff; the kernel (namespaces, mounts) and CNI plugins.

pub mod cni;
pub mod netns;
pub mod nft;
pub mod overlay;
pub mod plugins;
pub mod proxy;
