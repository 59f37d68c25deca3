//! Echo server for the netns lab: `l3lb-echo --name pod1 --port 8080 [--bind 0.0.0.0]`.
//!
//! TCP: reads one line, answers `<name> <peer_ip>:<peer_port>\n` and closes. A connection whose
//! first line is `STREAM` stays open instead: every further line `L` is answered with
//! `<name> <peer_ip>:<peer_port> L\n` until the client closes (long-lived connections in tests).
//! UDP (same port): answers every datagram with the same text.
//! The peer address is what the pod sees, so tests can check that the client's source IP survives.
use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::ExitCode,
    thread,
    time::Duration,
};

struct Args {
    name: String,
    port: u16,
    bind: IpAddr,
}

fn usage() -> String {
    "usage: l3lb-echo --name NAME --port PORT [--bind ADDR]".to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut name = None;
    let mut port = None;
    let mut bind: IpAddr = [0, 0, 0, 0].into();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))
        };
        match flag.as_str() {
            "--name" => name = Some(value()?),
            "--port" => port = Some(value()?.parse().map_err(|e| format!("--port: {e}"))?),
            "--bind" => bind = value()?.parse().map_err(|e| format!("--bind: {e}"))?,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    Ok(Args {
        name: name.ok_or_else(usage)?,
        port: port.ok_or_else(usage)?,
        bind,
    })
}

/// Normalises IPv4-mapped IPv6 peers (from a dual-stack `[::]` bind) to plain IPv4.
fn reply(name: &str, peer: SocketAddr) -> String {
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    format!("{name} {}\n", SocketAddr::new(ip, peer.port()))
}

fn serve_tcp(name: &str, stream: TcpStream) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    // A client that sends nothing still gets its answer once the read times out or it shuts down.
    let mut reader = BufReader::new(&stream);
    let _ = reader.read_line(&mut line);
    if line.trim_end() != STREAM {
        (&stream).write_all(reply(name, peer).as_bytes())?;
        return Ok(());
    }
    // Long-lived: no idle limit, the client decides when it ends.
    stream.set_read_timeout(None)?;
    let prefix = reply(name, peer);
    let prefix = prefix.trim_end();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        (&stream).write_all(format!("{prefix} {}\n", line.trim_end()).as_bytes())?;
    }
}

/// First line that turns a TCP connection into a long-lived echo of every line.
const STREAM: &str = "STREAM";

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("l3lb-echo: bind tcp {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let udp = match UdpSocket::bind(addr) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("l3lb-echo: bind udp {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("l3lb-echo {}: listening on tcp+udp {addr}", args.name);

    let udp_name = args.name.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        loop {
            match udp.recv_from(&mut buf) {
                Ok((_, peer)) => {
                    if let Err(e) = udp.send_to(reply(&udp_name, peer).as_bytes(), peer) {
                        eprintln!("l3lb-echo: udp reply to {peer}: {e}");
                    }
                }
                Err(e) => eprintln!("l3lb-echo: udp recv: {e}"),
            }
        }
    });

    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let name = args.name.clone();
                thread::spawn(move || {
                    if let Err(e) = serve_tcp(&name, stream) {
                        eprintln!("l3lb-echo: tcp: {e}");
                    }
                });
            }
            Err(e) => eprintln!("l3lb-echo: accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}
