//! An in-memory [`Kernel`] for the reconcile tests: links, addresses, routes,
//! neighbours and fdb entries as sets, every change counted; it refuses what the
//! kernel refuses (a second VXLAN device with the same VNI and port, WireGuard).

use std::collections::BTreeSet;
use std::io::{Error, ErrorKind};

use super::*;

#[derive(Debug, Default)]
pub struct FakeKernel {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: BTreeSet<Route>,
    pub neighbours: BTreeSet<(u32, Neighbour)>,
    pub fdb: BTreeSet<(u32, Fdb)>,
    pub next_index: u32,
    pub writes: usize,
    pub has_wireguard: bool,
}

fn refused(action: &str, kind: ErrorKind) -> OverlayError {
    OverlayError::kernel(action, Error::from(kind))
}

impl FakeKernel {
    /// A machine with `eth0` (index 2, MTU 1500) holding `ip`/24.
    pub fn with_uplink(ip: Ipv4Addr) -> FakeKernel {
        FakeKernel {
            links: vec![Link {
                index: 2,
                name: "eth0".into(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                mtu: 1500,
                up: true,
                ..Link::default()
            }],
            addresses: vec![Address {
                index: 2,
                ip,
                prefix: 24,
            }],
            next_index: 10,
            ..FakeKernel::default()
        }
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    fn exists(&self, index: u32) -> Result<(), OverlayError> {
        if self.links.iter().any(|l| l.index == index) {
            Ok(())
        } else {
            Err(refused("no such link", ErrorKind::NotFound))
        }
    }

    fn add_link(&mut self, link: Link) {
        self.next_index += 1;
        self.links.push(Link {
            index: self.next_index,
            ..link
        });
        self.writes += 1;
    }
}

impl Kernel for FakeKernel {
    fn links(&mut self) -> Result<Vec<Link>, OverlayError> {
        Ok(self.links.clone())
    }

    fn addresses(&mut self) -> Result<Vec<Address>, OverlayError> {
        Ok(self.addresses.clone())
    }

    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<(), OverlayError> {
        let clash = self.links.iter().any(|l| {
            l.name == spec.name
                || l.vxlan
                    .is_some_and(|v| v.vni == spec.vxlan.vni && v.port == spec.vxlan.port)
        });
        if clash {
            return Err(refused("creating vxlan", ErrorKind::AlreadyExists));
        }
        self.add_link(Link {
            name: spec.name.clone(),
            mac: Some(spec.mac),
            mtu: spec.mtu,
            vxlan: Some(spec.vxlan),
            ..Link::default()
        });
        Ok(())
    }

    fn set_link(
        &mut self,
        index: u32,
        mac: Mac,
        mtu: u32,
        alias: &str,
    ) -> Result<(), OverlayError> {
        self.exists(index)?;
        let link = self.links.iter_mut().find(|l| l.index == index).unwrap();
        link.mac = Some(mac);
        link.mtu = mtu;
        link.up = true;
        link.alias = Some(alias.into());
        self.writes += 1;
        Ok(())
    }

    fn delete_link(&mut self, index: u32) -> Result<(), OverlayError> {
        self.exists(index)?;
        self.links.retain(|l| l.index != index);
        // As the kernel: what hangs off the link goes with it.
        self.addresses.retain(|a| a.index != index);
        self.routes.retain(|r| r.oif != Some(index));
        self.neighbours.retain(|(i, _)| *i != index);
        self.fdb.retain(|(i, _)| *i != index);
        self.writes += 1;
        Ok(())
    }

    fn add_address(&mut self, address: Address) -> Result<(), OverlayError> {
        self.exists(address.index)?;
        if self.addresses.contains(&address) {
            return Err(refused("adding address", ErrorKind::AlreadyExists));
        }
        self.addresses.push(address);
        self.writes += 1;
        Ok(())
    }

    fn delete_address(&mut self, address: Address) -> Result<(), OverlayError> {
        self.addresses.retain(|a| *a != address);
        self.writes += 1;
        Ok(())
    }

    fn routes(&mut self) -> Result<Vec<Route>, OverlayError> {
        Ok(self.routes.iter().copied().collect())
    }

    fn replace_route(&mut self, route: Route) -> Result<(), OverlayError> {
        if let Some(oif) = route.oif {
            self.exists(oif)?;
        }
        // The kernel fills in the output interface of a gateway route.
        let route = Route {
            oif: route.oif.or(Some(2)),
            ..route
        };
        self.routes.retain(|r| r.dst != route.dst);
        self.routes.insert(route);
        self.writes += 1;
        Ok(())
    }

    fn delete_route(&mut self, route: Route) -> Result<(), OverlayError> {
        if !self.routes.remove(&route) {
            return Err(refused("deleting route", ErrorKind::NotFound));
        }
        self.writes += 1;
        Ok(())
    }

    fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>, OverlayError> {
        Ok(self
            .neighbours
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, n)| *n)
            .collect())
    }

    fn replace_neighbour(&mut self, index: u32, entry: Neighbour) -> Result<(), OverlayError> {
        self.exists(index)?;
        self.neighbours
            .retain(|(i, n)| !(*i == index && n.ip == entry.ip));
        self.neighbours.insert((index, entry));
        self.writes += 1;
        Ok(())
    }

    fn delete_neighbour(&mut self, index: u32, entry: Neighbour) -> Result<(), OverlayError> {
        self.neighbours.remove(&(index, entry));
        self.writes += 1;
        Ok(())
    }

    fn fdb(&mut self, index: u32) -> Result<Vec<Fdb>, OverlayError> {
        Ok(self
            .fdb
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, f)| *f)
            .collect())
    }

    fn replace_fdb(&mut self, index: u32, entry: Fdb) -> Result<(), OverlayError> {
        self.exists(index)?;
        self.fdb
            .retain(|(i, f)| !(*i == index && f.mac == entry.mac));
        self.fdb.insert((index, entry));
        self.writes += 1;
        Ok(())
    }

    fn delete_fdb(&mut self, index: u32, entry: Fdb) -> Result<(), OverlayError> {
        self.fdb.remove(&(index, entry));
        self.writes += 1;
        Ok(())
    }

    fn create_wireguard(&mut self, name: &str) -> Result<(), OverlayError> {
        if !self.has_wireguard {
            return Err(refused("creating wireguard link", ErrorKind::Unsupported));
        }
        self.add_link(Link {
            name: name.into(),
            ..Link::default()
        });
        Ok(())
    }
}
