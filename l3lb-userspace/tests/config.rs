//! `l3lb run` flags as the operator types them, validated into a `Config`.
use std::{net::SocketAddr, time::Duration};

use clap::Parser as _;
use l3lb_userspace::{
    cli::{Cli, Command, ConfigError},
    core::config::Config,
};

fn config(extra: &[&str]) -> Result<Config, ConfigError> {
    let mut argv = vec![
        "l3lb",
        "run",
        "--node-name",
        "n1",
        "--prefix",
        "198.51.100.0/24",
        "--uplink",
        "eth0",
    ];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
    let Command::Run(args) = cli.command else {
        panic!("not `run`")
    };
    Config::try_from(args)
}

fn rejected(extra: &[&str]) -> String {
    let mut argv = vec![
        "l3lb",
        "run",
        "--node-name",
        "n1",
        "--prefix",
        "198.51.100.0/24",
        "--uplink",
        "eth0",
    ];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn defaults_serve_metrics_and_give_vips_a_minute() {
    let c = config(&[]).unwrap();
    assert_eq!(c.metrics_addr, Some(SocketAddr::from(([0, 0, 0, 0], 9465))));
    assert_eq!(c.address_lifetime, Some(Duration::from_secs(60)));
    assert_eq!(c.resync_interval, Duration::from_secs(20));
}

#[test]
fn metrics_listener_takes_an_address_or_off() {
    let c = config(&["--metrics-addr", "127.0.0.1:9999"]).unwrap();
    assert_eq!(
        c.metrics_addr,
        Some(SocketAddr::from(([127, 0, 0, 1], 9999)))
    );
    let c = config(&["--metrics-addr", "[::1]:9465"]).unwrap();
    assert!(c.metrics_addr.is_some_and(|a| a.is_ipv6()));
    assert_eq!(
        config(&["--metrics-addr", "off"]).unwrap().metrics_addr,
        None
    );
    assert!(rejected(&["--metrics-addr", "9465"]).contains("not an address"));
}

#[test]
fn address_lifetime_forever_or_more_than_two_resyncs() {
    for forever in ["0", "forever"] {
        let c = config(&["--address-lifetime", forever]).unwrap();
        assert_eq!(c.address_lifetime, None, "{forever}");
    }
    let c = config(&["--address-lifetime", "5s", "--resync-interval", "2s"]).unwrap();
    assert_eq!(c.address_lifetime, Some(Duration::from_secs(5)));
    assert_eq!(
        config(&["--address-lifetime", "60s", "--resync-interval", "30s"]),
        Err(ConfigError::LifetimeTooShort {
            lifetime: Duration::from_secs(60),
            resync: Duration::from_secs(30)
        }),
        "a resync of half the lifetime could let VIPs expire"
    );
    // Without a lifetime the resync interval is free.
    let c = config(&["--address-lifetime", "forever", "--resync-interval", "5m"]).unwrap();
    assert_eq!(c.resync_interval, Duration::from_secs(300));
    assert!(rejected(&["--address-lifetime", "soon"]).contains("not a duration"));
}
