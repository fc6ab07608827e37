//! IPv4 CIDRs (`10.43.0.0/16`): the service and cluster ranges the API allocates
//! from and the node agent and controllers hand out pod ranges from.
//!
//! Owns: [`Cidr`], its parsing and display. Calls: nothing in skiff.

use std::net::Ipv4Addr;

/// An IPv4 CIDR such as 10.43.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR {s:?}: expected address/prefix"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("invalid CIDR {s:?}: bad IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("invalid CIDR {s:?}: prefix must be 8..30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// How many addresses the range holds.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The n-th address (1 = the first usable one).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }
}
