//! CIDR ranges and the client address, with std's `IpAddr` only.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are IPv4 addresses: a
//! dual-stack listener reports IPv4 clients that way, and `10.0.0.0/8` must
//! still match them. Ranges written in mapped form (`::ffff:10.0.0.0/104`)
//! become the IPv4 range they stand for. Otherwise an IPv4 address never
//! matches an IPv6 range and the other way round (`::/0` is every IPv6
//! address, `0.0.0.0/0` every IPv4 one).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network: its address with the host bits zero, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    V4 { network: u32, prefix: u8 },
    V6 { network: u128, prefix: u8 },
}

/// Bits of an IPv4-mapped IPv6 address that are not the IPv4 address.
const MAPPED_PREFIX: u8 = 96;

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (`/32` or `/128`).
    /// Host bits must be zero: `10.0.0.1/8` is rejected as a likely typo.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => {
                let prefix = if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                    p.parse::<u32>().ok()
                } else {
                    None
                };
                let prefix =
                    prefix.ok_or_else(|| format!("'{text}': prefix '{p}' is not a number"))?;
                (a, Some(prefix))
            }
            None => (text, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{text}': '{addr}' is not an IP address"))?;
        let cidr = match ip {
            IpAddr::V4(v4) => {
                let prefix = prefix.unwrap_or(32);
                let prefix = u8::try_from(prefix)
                    .ok()
                    .filter(|&p| p <= 32)
                    .ok_or_else(|| format!("'{text}': an IPv4 prefix is at most 32"))?;
                Self::v4(v4, prefix, text)?
            }
            IpAddr::V6(v6) => {
                let prefix = prefix.unwrap_or(128);
                let prefix = u8::try_from(prefix)
                    .ok()
                    .filter(|&p| p <= 128)
                    .ok_or_else(|| format!("'{text}': an IPv6 prefix is at most 128"))?;
                match v6.to_ipv4_mapped() {
                    Some(v4) if prefix >= MAPPED_PREFIX => {
                        Self::v4(v4, prefix - MAPPED_PREFIX, text)?
                    }
                    _ => {
                        let bits = u128::from(v6);
                        let network = bits & mask128(prefix);
                        if network != bits {
                            return Err(host_bits_error(
                                text,
                                &Ipv6Addr::from(network).to_string(),
                                prefix,
                            ));
                        }
                        Cidr::V6 { network, prefix }
                    }
                }
            }
        };
        Ok(cidr)
    }

    fn v4(addr: Ipv4Addr, prefix: u8, text: &str) -> Result<Self, String> {
        let bits = u32::from(addr);
        let network = bits & mask32(prefix);
        if network != bits {
            return Err(host_bits_error(
                text,
                &Ipv4Addr::from(network).to_string(),
                prefix,
            ));
        }
        Ok(Cidr::V4 { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, canonical(ip)) {
            (Cidr::V4 { network, prefix }, IpAddr::V4(a)) => {
                u32::from(a) & mask32(*prefix) == *network
            }
            (Cidr::V6 { network, prefix }, IpAddr::V6(a)) => {
                u128::from(a) & mask128(*prefix) == *network
            }
            _ => false,
        }
    }
}

fn host_bits_error(text: &str, network: &str, prefix: u8) -> String {
    format!("'{text}' has host bits set; the network is {network}/{prefix}")
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// IPv4-mapped IPv6 addresses as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether any range contains `ip`.
pub fn any_contains(ranges: &[Cidr], ip: IpAddr) -> bool {
    ranges.iter().any(|c| c.contains(ip))
}

/// The IP of Envoy's `source.address` attribute: `10.0.0.7:51234`,
/// `[::1]:51234`, or an address without a port. A link-local IPv6 address
/// may carry a zone (`[fe80::1%eth0]:51234`); ranges do not name zones, so
/// it is dropped. `None` for anything else (a pipe path, garbage).
pub fn parse_source_address(address: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(address).ok()?;
    let ipv6 = |ip: &str| {
        let without_zone = ip.split_once('%').map_or(ip, |(ip, _zone)| ip);
        without_zone.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, _port) = rest.split_once(']')?;
        return ipv6(ip);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if text.contains('%') {
        return ipv6(text);
    }
    let (ip, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}
