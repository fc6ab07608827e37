//! The cluster zone: every record of the Kubernetes DNS schema computed once from a
//! [`Snapshot`], looked up per query. Pure; the server swaps whole zones.
//!
//! Names (all case-insensitive, TTL [`TTL`]):
//! - `<svc>.<ns>.svc.<zone>`: A/AAAA of a ClusterIP Service's cluster IPs; of a
//!   headless Service's ready endpoints (none ready: NXDOMAIN); CNAME of an
//!   ExternalName Service.
//! - `<hostname>.<svc>.<ns>.svc.<zone>`: A/AAAA of a headless Service's ready
//!   endpoint; the hostname is the endpoint's `hostname`, else its address with
//!   dashes (`10-42-0-5`), as CoreDNS names them.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV per named port (per ready
//!   endpoint for headless Services), the targets' addresses as additionals.
//! - `<d>.<c>.<b>.<a>.in-addr.arpa` (and `ip6.arpa`): PTR of cluster IPs and of
//!   headless endpoints. Other reverse names are not ours (forwarded).
//! - `<a>-<b>-<c>-<d>.<ns>.pod.<zone>`: A (AAAA for `fd00--1`-style names) of
//!   the address itself, for any namespace, without API data.
//! - `dns-version.<zone>` TXT [`SCHEMA_VERSION`]; SOA and NS at the apex;
//!   `ns.dns.<zone>` A/AAAA of the cluster DNS address.
//!
//! A name that exists (with records of any type, or as the parent of one, like
//! `<ns>.svc.<zone>`) but has none of the asked type answers NODATA (NOERROR, no
//! answers, the SOA as authority); a name that does not exist answers NXDOMAIN with
//! the SOA. A CNAME answers every type but CNAME with the alias, then the target's
//! records when the target is in the zone; an outside target is left to the
//! forwarder ([`Answer::chase`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::snapshot::{Service, ServiceKind, Snapshot};
use super::{SCHEMA_VERSION, TTL};

/// How deep in-zone CNAME chains are followed.
const MAX_CNAME_CHAIN: usize = 8;

/// The answer to one question the zone owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// NoError (with or without answers) or NXDomain.
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    /// The SOA on a negative answer.
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
    /// An ExternalName target outside the zone whose records the forwarder adds.
    pub chase: Option<Name>,
}

#[derive(Debug)]
pub struct Zone {
    origin: LowerName,
    origin_labels: u8,
    soa: Record,
    names: HashMap<LowerName, Vec<Record>>,
}

impl Zone {
    /// The zone `domain` (e.g. `cluster.local`) of `snapshot`; `dns` is the cluster
    /// DNS address (the apex's name server), `serial` the SOA serial.
    pub fn build(
        domain: &str,
        dns: IpAddr,
        snapshot: &Snapshot,
        serial: u32,
    ) -> Result<Zone, super::DnsError> {
        let origin = fqdn(domain)
            .ok_or_else(|| super::DnsError::Domain(domain.into(), "not a domain name".into()))?;
        let label = |l: &str| {
            origin
                .prepend_label(l)
                .map_err(|e| super::DnsError::Domain(domain.into(), e.to_string()))
        };
        let ns_name = label("dns")?.prepend_label("ns").expect("short label");
        let soa = Record::from_rdata(
            origin.clone(),
            TTL,
            RData::SOA(SOA::new(
                ns_name.clone(),
                label("hostmaster")?,
                serial,
                7200,
                1800,
                86400,
                TTL,
            )),
        );
        let mut zone = Zone {
            origin: LowerName::new(&origin),
            origin_labels: origin.num_labels(),
            soa: soa.clone(),
            names: HashMap::new(),
        };
        zone.add(soa);
        zone.add(Record::from_rdata(
            origin.clone(),
            TTL,
            RData::NS(NS(ns_name.clone())),
        ));
        zone.add(address_record(ns_name, dns));
        zone.add(Record::from_rdata(
            label("dns-version")?,
            TTL,
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])),
        ));
        zone.touch(&label("svc")?);
        zone.touch(&label("pod")?);
        for service in &snapshot.services {
            zone.add_service(&origin, service);
        }
        Ok(zone)
    }

    /// The answer to `name`/`qtype`, or `None` when the name is not the zone's (to
    /// be forwarded).
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Option<Answer> {
        let key = LowerName::new(name);
        if !self.origin.zone_of(&key) {
            // Reverse names are ours only where we hold a PTR.
            let records = self.names.get(&key)?;
            return Some(self.answer_from(name, records, qtype, 0));
        }
        if let Some(records) = self.names.get(&key) {
            return Some(self.answer_from(name, records, qtype, 0));
        }
        if let Some(ip) = self.pod_address(name) {
            let record = address_record(name.clone(), ip);
            let answers = if qtype == record.record_type() || qtype == RecordType::ANY {
                vec![record]
            } else {
                vec![]
            };
            return Some(self.positive(answers, vec![]));
        }
        if self.is_pod_namespace(name) {
            return Some(self.positive(vec![], vec![]));
        }
        Some(self.negative(ResponseCode::NXDomain))
    }

    /// Whether `name` is inside the cluster zone.
    pub fn contains(&self, name: &Name) -> bool {
        self.origin.zone_of(&LowerName::new(name))
    }

    fn answer_from(
        &self,
        name: &Name,
        records: &[Record],
        qtype: RecordType,
        depth: usize,
    ) -> Answer {
        let cname = records
            .iter()
            .find(|r| r.record_type() == RecordType::CNAME);
        if let (Some(cname), false) = (cname, qtype == RecordType::CNAME) {
            return self.follow_cname(name, cname, qtype, depth);
        }
        let answers: Vec<Record> = records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .map(|r| renamed(r, name))
            .collect();
        let additionals = self.srv_additionals(&answers);
        self.positive(answers, additionals)
    }

    fn follow_cname(&self, name: &Name, cname: &Record, qtype: RecordType, depth: usize) -> Answer {
        let RData::CNAME(CNAME(target)) = cname.data() else {
            unreachable!("a CNAME record holds CNAME data")
        };
        let alias = renamed(cname, name);
        if !self.contains(target) {
            let mut answer = self.positive(vec![alias], vec![]);
            answer.chase = Some(target.clone());
            return answer;
        }
        let next = match self.names.get(&LowerName::new(target)) {
            Some(records) if depth < MAX_CNAME_CHAIN => {
                self.answer_from(target, records, qtype, depth + 1)
            }
            Some(_) => self.negative(ResponseCode::ServFail),
            None => self
                .lookup(target, qtype)
                .unwrap_or_else(|| self.negative(ResponseCode::NXDomain)),
        };
        let mut answers = vec![alias];
        answers.extend(next.answers);
        Answer { answers, ..next }
    }

    /// The A/AAAA records of SRV targets.
    fn srv_additionals(&self, answers: &[Record]) -> Vec<Record> {
        let mut additionals = Vec::new();
        for record in answers {
            let RData::SRV(srv) = record.data() else {
                continue;
            };
            let Some(records) = self.names.get(&LowerName::new(srv.target())) else {
                continue;
            };
            for address in records
                .iter()
                .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
            {
                if !additionals.contains(address) {
                    additionals.push(address.clone());
                }
            }
        }
        additionals
    }

    fn positive(&self, answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
        let authority = if answers.is_empty() {
            vec![self.soa.clone()]
        } else {
            vec![]
        };
        Answer {
            code: ResponseCode::NoError,
            answers,
            authority,
            additionals,
            chase: None,
        }
    }

    fn negative(&self, code: ResponseCode) -> Answer {
        Answer {
            code,
            answers: vec![],
            authority: vec![self.soa.clone()],
            additionals: vec![],
            chase: None,
        }
    }

    /// `<a>-<b>-<c>-<d>.<ns>.pod.<zone>` (or the IPv6 form with dashes for colons).
    fn pod_address(&self, name: &Name) -> Option<IpAddr> {
        if name.num_labels() != self.origin_labels + 3 {
            return None;
        }
        let mut labels = name.iter();
        let address = std::str::from_utf8(labels.next()?).ok()?;
        let _namespace = labels.next()?;
        if !labels.next()?.eq_ignore_ascii_case(b"pod") {
            return None;
        }
        if let Ok(v4) = address.replace('-', ".").parse::<Ipv4Addr>() {
            return Some(IpAddr::V4(v4));
        }
        address
            .replace('-', ":")
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6)
    }

    /// `<ns>.pod.<zone>`: exists for every namespace (NODATA).
    fn is_pod_namespace(&self, name: &Name) -> bool {
        name.num_labels() == self.origin_labels + 2
            && name
                .iter()
                .nth(1)
                .is_some_and(|l| l.eq_ignore_ascii_case(b"pod"))
    }

    fn add_service(&mut self, origin: &Name, service: &Service) {
        let Some(name) = Name::from_labels([
            service.name.as_bytes(),
            service.namespace.as_bytes(),
            b"svc",
        ])
        .ok()
        .and_then(|n| n.append_domain(origin).ok()) else {
            tracing::debug!(service = %service.name, namespace = %service.namespace, "service name is no DNS name");
            return;
        };
        match &service.kind {
            ServiceKind::ClusterIp(ips) => {
                for ip in ips {
                    self.add(address_record(name.clone(), *ip));
                    self.add(Record::from_rdata(
                        Name::from(*ip),
                        TTL,
                        RData::PTR(PTR(name.clone())),
                    ));
                }
                for (srv_name, port) in self.srv_names(&name, service) {
                    let srv = SRV::new(0, 100, port, name.clone());
                    self.add(Record::from_rdata(srv_name, TTL, RData::SRV(srv)));
                }
            }
            ServiceKind::Headless => self.add_headless(&name, service),
            ServiceKind::ExternalName(external) => {
                let Some(target) = fqdn(external) else {
                    return;
                };
                self.add(Record::from_rdata(name, TTL, RData::CNAME(CNAME(target))));
            }
        }
    }

    fn add_headless(&mut self, name: &Name, service: &Service) {
        let mut targets = Vec::new();
        for endpoint in &service.endpoints {
            for ip in &endpoint.addresses {
                let host = endpoint.hostname.clone().unwrap_or_else(|| dashed(*ip));
                let Ok(host_name) = name.prepend_label(host.as_str()) else {
                    continue;
                };
                self.add(address_record(name.clone(), *ip));
                self.add(address_record(host_name.clone(), *ip));
                self.add(Record::from_rdata(
                    Name::from(*ip),
                    TTL,
                    RData::PTR(PTR(host_name.clone())),
                ));
                if !targets.contains(&host_name) {
                    targets.push(host_name);
                }
            }
        }
        if targets.is_empty() {
            return;
        }
        let weight = (100 / targets.len()).max(1) as u16;
        for (srv_name, port) in self.srv_names(name, service) {
            for target in &targets {
                let srv = SRV::new(0, weight, port, target.clone());
                self.add(Record::from_rdata(srv_name.clone(), TTL, RData::SRV(srv)));
            }
        }
    }

    /// `_<port>._<proto>.<service name>` for each named port.
    fn srv_names(&self, name: &Name, service: &Service) -> Vec<(Name, u16)> {
        service
            .ports
            .iter()
            .filter(|p| !p.name.is_empty())
            .filter_map(|p| {
                let proto = format!("_{}", p.protocol.to_ascii_lowercase());
                let port = format!("_{}", p.name);
                let srv_name = name
                    .prepend_label(proto.as_str())
                    .and_then(|n| n.prepend_label(port.as_str()))
                    .ok()?;
                Some((srv_name, p.port))
            })
            .collect()
    }

    /// Adds a record, and its parents up to the origin as existing names.
    fn add(&mut self, record: Record) {
        self.touch(record.name());
        let records = self.names.entry(LowerName::new(record.name())).or_default();
        if !records.contains(&record) {
            records.push(record);
        }
    }

    /// Makes `name` and its parents inside the zone exist.
    fn touch(&mut self, name: &Name) {
        let mut key = LowerName::new(name);
        while self.origin.zone_of(&key) && !self.names.contains_key(&key) {
            self.names.insert(key.clone(), Vec::new());
            if key == self.origin {
                break;
            }
            key = key.base_name();
        }
        if !self.origin.zone_of(&key) {
            self.names.entry(key).or_default();
        }
    }
}

/// `text` as a fully qualified name.
fn fqdn(text: &str) -> Option<Name> {
    let text = text.trim_end_matches('.');
    if text.is_empty() {
        return None;
    }
    Name::from_ascii(format!("{text}.")).ok()
}

fn address_record(name: Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, TTL, data)
}

/// The address as one DNS label: dots or colons as dashes.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// `record` under the asker's spelling of its name.
fn renamed(record: &Record, name: &Name) -> Record {
    let mut record = record.clone();
    record.set_name(name.clone());
    record
}

#[cfg(test)]
mod tests;
