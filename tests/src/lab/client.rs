//! Client requests made from inside a namespace, with short timeouts.
use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context, bail};

use crate::netns::in_netns;

/// Connect, read and write timeout of one client request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends one line over TCP and returns the (trimmed) answer line.
pub(crate) fn tcp_request(ns: &str, addr: impl Into<IpAddr>, port: u16) -> anyhow::Result<String> {
    let to = SocketAddr::from((addr.into(), port));
    let answer = in_netns(ns, move || -> anyhow::Result<String> {
        let stream = TcpStream::connect_timeout(&to, REQUEST_TIMEOUT)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        (&stream).write_all(b"hello\n")?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        Ok(line)
    })?
    .with_context(|| format!("TCP request from {ns} to {to}"))?;
    if answer.is_empty() {
        bail!("TCP request from {ns} to {to}: connection closed without an answer");
    }
    Ok(answer.trim_end().to_string())
}

/// Sends one datagram and returns the (trimmed) answer.
pub(crate) fn udp_request(ns: &str, addr: impl Into<IpAddr>, port: u16) -> anyhow::Result<String> {
    let to = SocketAddr::from((addr.into(), port));
    let answer = in_netns(ns, move || -> anyhow::Result<String> {
        let any: IpAddr = match to {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let sock = UdpSocket::bind((any, 0))?;
        sock.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        sock.connect(to)?;
        sock.send(b"hello\n")?;
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })?
    .with_context(|| format!("UDP request from {ns} to {to}"))?;
    Ok(answer.trim_end().to_string())
}

/// One long-lived connection to an echo server's streaming mode (`STREAM` first line).
pub struct Stream {
    reader: BufReader<TcpStream>,
    /// The pod that answered the first line.
    pub pod: String,
}

impl Stream {
    /// Connects from namespace `ns` to `to` and exchanges a first line.
    pub fn open(ns: &str, to: SocketAddr) -> anyhow::Result<Stream> {
        let stream = in_netns(ns, move || TcpStream::connect_timeout(&to, REQUEST_TIMEOUT))??;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        (&stream).write_all(b"STREAM\n")?;
        let mut s = Stream {
            reader: BufReader::new(stream),
            pod: String::new(),
        };
        s.pod = s.exchange("hello")?;
        Ok(s)
    }

    /// Sends one line, returns the answering pod; the answer must echo the line.
    pub fn exchange(&mut self, line: &str) -> anyhow::Result<String> {
        self.reader
            .get_ref()
            .write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer)?;
        let words: Vec<&str> = answer.split_whitespace().collect();
        match words.as_slice() {
            [pod, _peer, echoed] if *echoed == line => Ok(pod.to_string()),
            _ => bail!("answer {answer:?} to {line:?}"),
        }
    }
}
