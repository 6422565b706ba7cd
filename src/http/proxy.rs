//! The client behind a trusted proxy (SPEC 3a "Client address"): with
//! `--trusted-proxy CIDR`, a connection from such a peer names its client
//! in a PROXY protocol v1/v2 header (`--proxy-protocol`), read before
//! anything else on the connection, or in `X-Forwarded-For`, of which the
//! rightmost address that is not itself a trusted proxy is the client's
//! (the entries left of it could be forged by the client). Caps at accept
//! time see the proxy's address; throttling, audit and everything after
//! the head see the client's.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};

/// An address block, `10.0.0.0/8` or `::1/128` (a bare address: one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("--trusted-proxy {s:?}: want an address or a block like 10.0.0.0/8");
        let (addr, bits) = s.split_once('/').map_or((s, None), |(a, b)| (a, Some(b)));
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b.parse::<u8>().ok().filter(|&b| b <= max).ok_or_else(bad)?,
        };
        Ok(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix(u32::from(n).into(), u32::from(a).into(), self.bits, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix(u128::from(n), u128::from(a), self.bits, 128),
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        Cidr::parse(s)
    }
}

fn prefix(net: u128, addr: u128, bits: u8, width: u32) -> bool {
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    (net >> shift) == (addr >> shift)
}

pub fn trusted(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|c| c.contains(ip))
}

/// The client named by `X-Forwarded-For` values (in order of the headers)
/// sent by a trusted `peer`: the rightmost entry not itself trusted; the
/// peer if there is no usable entry.
pub fn forwarded_for<'a>(
    list: &[Cidr],
    peer: SocketAddr,
    values: impl DoubleEndedIterator<Item = &'a str>,
) -> SocketAddr {
    if !trusted(list, peer.ip()) {
        return peer;
    }
    let entries: Vec<&str> = values.flat_map(|v| v.split(',')).collect();
    for entry in entries.iter().rev() {
        let e = entry.trim_matches([' ', '\t']);
        let e = e
            .strip_prefix('[')
            .and_then(|x| x.split_once(']'))
            .map_or(e, |(a, _)| a);
        let Ok(ip) = e.parse::<IpAddr>() else {
            // Not an address (`unknown`, garbage): nothing left of it is
            // trustworthy either.
            return peer;
        };
        if !trusted(list, ip) {
            return SocketAddr::new(ip, 0);
        }
    }
    peer
}

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Read a PROXY protocol header (v1 or v2) from the start of `sock`, and
/// nothing more: the client's address, or `None` for `LOCAL`/`UNKNOWN`
/// (a health check of the proxy itself). A missing or malformed header is
/// an error: the connection is closed.
pub fn read_header(sock: &mut TcpStream) -> io::Result<Option<SocketAddr>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut first = [0u8; 12];
    sock.read_exact(&mut first[..6])?;
    if &first[..6] == b"PROXY " {
        let mut line = b"PROXY ".to_vec();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if line.len() >= 107 {
                return Err(bad("PROXY v1 line too long"));
            }
            sock.read_exact(&mut b)?;
            line.push(b[0]);
        }
        return parse_v1(&line).ok_or_else(|| bad("malformed PROXY v1 line"));
    }
    sock.read_exact(&mut first[6..])?;
    if &first != V2_SIGNATURE {
        return Err(bad("no PROXY protocol header"));
    }
    let mut head = [0u8; 4];
    sock.read_exact(&mut head)?;
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    if len > 512 {
        return Err(bad("PROXY v2 header too long"));
    }
    let mut rest = vec![0u8; len];
    sock.read_exact(&mut rest)?;
    parse_v2(head[0], head[1], &rest).ok_or_else(|| bad("malformed PROXY v2 header"))
}

/// `PROXY TCP4 src dst sport dport\r\n` (or `PROXY UNKNOWN ...`).
fn parse_v1(line: &[u8]) -> Option<Option<SocketAddr>> {
    let text = std::str::from_utf8(line.strip_suffix(b"\r\n")?).ok()?;
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Some(None),
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().ok()?;
            if ip.is_ipv4() != (*fam == "TCP4") {
                return None;
            }
            Some(Some(SocketAddr::new(ip, sport.parse().ok()?)))
        }
        _ => None,
    }
}

/// The v2 binary header after its signature: version/command, family,
/// then the addresses.
fn parse_v2(ver_cmd: u8, family: u8, rest: &[u8]) -> Option<Option<SocketAddr>> {
    if ver_cmd >> 4 != 2 {
        return None;
    }
    match ver_cmd & 0x0f {
        0 => return Some(None), // LOCAL
        1 => {}                 // PROXY
        _ => return None,
    }
    match family >> 4 {
        1 if rest.len() >= 12 => {
            let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            let port = u16::from_be_bytes([rest[8], rest[9]]);
            Some(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 if rest.len() >= 36 => {
            let octets: [u8; 16] = rest[..16].try_into().ok()?;
            let port = u16::from_be_bytes([rest[32], rest[33]]);
            Some(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        0 => Some(None), // UNSPEC
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    #[test]
    fn blocks() {
        let c = cidrs(&["10.0.0.0/8", "::1", "2001:db8::/32"]);
        for (ip, want) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("::1", true),
            ("::2", false),
            ("2001:db8:ffff::1", true),
            ("::ffff:10.0.0.1", true),
        ] {
            assert_eq!(trusted(&c, ip.parse().unwrap()), want, "{ip}");
        }
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn the_rightmost_untrusted_forwarded_address_is_the_client() {
        let c = cidrs(&["127.0.0.1", "10.0.0.0/8"]);
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let client = |v: &[&str]| forwarded_for(&c, proxy, v.iter().copied()).ip().to_string();
        assert_eq!(client(&["1.1.1.1"]), "1.1.1.1");
        assert_eq!(
            client(&["6.6.6.6, 1.1.1.1"]),
            "1.1.1.1",
            "the forged left entry is ignored"
        );
        assert_eq!(client(&["6.6.6.6", "1.1.1.1, 10.0.0.5"]), "1.1.1.1");
        assert_eq!(client(&["[2001:db8::1]:443"]), "2001:db8::1");
        assert_eq!(client(&["10.0.0.5"]), "127.0.0.1", "only proxies: the peer");
        assert_eq!(client(&["1.1.1.1, unknown"]), "127.0.0.1");
        assert_eq!(client(&[]), "127.0.0.1");
        let stranger: SocketAddr = "8.8.8.8:1".parse().unwrap();
        let got = forwarded_for(&c, stranger, ["1.1.1.1"].into_iter());
        assert_eq!(got, stranger, "an untrusted peer names no one");
    }

    #[test]
    fn proxy_protocol_headers() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n"),
            Some(Some("192.0.2.1:56324".parse().unwrap()))
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"),
            Some(Some("[2001:db8::1]:1".parse().unwrap()))
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n"), Some(None));
        assert_eq!(parse_v1(b"PROXY TCP4 2001:db8::1 ::1 1 2\r\n"), None);
        assert_eq!(parse_v1(b"PROXY TCP4 1.2.3.4\r\n"), None);
        let v4 = [192, 0, 2, 1, 192, 0, 2, 2, 0xdc, 0x04, 0x01, 0xbb];
        assert_eq!(
            parse_v2(0x21, 0x11, &v4),
            Some(Some("192.0.2.1:56324".parse().unwrap()))
        );
        assert_eq!(parse_v2(0x20, 0x00, &[]), Some(None), "LOCAL");
        assert_eq!(parse_v2(0x31, 0x11, &v4), None, "version 3");
        assert_eq!(parse_v2(0x21, 0x11, &v4[..4]), None, "short");
    }
}
