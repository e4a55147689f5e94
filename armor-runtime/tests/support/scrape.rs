//! Reading the metrics endpoint over plain HTTP, as a scraper does. Shared by the metrics tests
//! (armor-runtime's and the agent's in examples/).
#![allow(dead_code, reason = "each test binary uses part of the shared module")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// `GET path`: the status code and the body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    (code, text.split_once("\r\n\r\n").unwrap().1.to_string())
}

/// The value of `name` (a series with its labels as rendered) in a scrape.
pub(crate) fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
