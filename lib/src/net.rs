//! IP networks, as settings name them (`10.0.0.0/8`, `::1/128`, or one address): trusted proxies
//! for session details, and trusted senders and proxies for the listeners' admission.

use std::net::IpAddr;

/// A network (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// `a.b.c.d/n`, `x::/n`, or one address; an IPv4-mapped IPv6 network is the IPv4 one.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        // `::ffff:a.b.c.d/n` is an IPv4 network, as peers are compared as IPv4.
        Some(match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => Self {
                    address: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                _ => Self { address, prefix },
            },
            IpAddr::V4(_) => Self { address, prefix },
        })
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address as the IPv4 one) is in the network.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let ((net, len), (candidate, candidate_len)) = (bits(self.address), bits(ip));
        if len != candidate_len {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        net & mask == candidate & mask
    }
}

/// A setting that should name an IP address or network and does not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or network (a.b.c.d/n)")]
pub struct NotANetwork;

/// The source address as a network check sees it: an IPv4-mapped IPv6 address as the IPv4 one.
#[cfg(feature = "server")]
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
