//! The datapath's settings besides its frontends ([`DatapathSettings`]): the configuration map
//! (the VIP prefixes, so XDP passes packets to other addresses without a map lookup, and whether
//! it may redirect) and the redirect map (the interfaces it may redirect into). Written only by
//! the executor's `Configure` step, read back by the observer; the one other flag, whether the
//! programs log rare events, is the daemon's start-time choice (`bpf_log`), which every write
//! here keeps.
use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::maps::{Array, DevMapHash, MapData};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use l3lb_common::{
    CONFIG_LOG, CONFIG_REDIRECT, Config, MAP_CONFIG, MAP_REDIRECT, MAX_PREFIXES, ip6, ip6_octets,
};

use super::{Datapath, DatapathError, map_err};
use crate::core::model::DatapathSettings;

/// The configuration value for `settings` (each family's first [`MAX_PREFIXES`]).
pub fn config_of(settings: &DatapathSettings) -> Result<Config, DatapathError> {
    let mut config = Config::default();
    for prefix in &settings.prefixes {
        match prefix {
            IpNet::V4(p) => {
                let i = config.v4_count as usize;
                if i == MAX_PREFIXES {
                    return Err(DatapathError::TooManyPrefixes { max: MAX_PREFIXES });
                }
                config.v4[i] = [
                    u32::from(p.network()).to_be(),
                    u32::from(p.netmask()).to_be(),
                ];
                config.v4_count += 1;
            }
            IpNet::V6(p) => {
                let i = config.v6_count as usize;
                if i == MAX_PREFIXES {
                    return Err(DatapathError::TooManyPrefixes { max: MAX_PREFIXES });
                }
                config.v6[i] = [ip6(p.network().octets()), ip6(p.netmask().octets())];
                config.v6_count += 1;
            }
        }
    }
    if !settings.redirect_targets.is_empty() {
        config.flags |= CONFIG_REDIRECT;
    }
    Ok(config)
}

/// The prefixes a configuration value holds.
pub fn prefixes_of(config: &Config) -> BTreeSet<IpNet> {
    let v4 = config
        .v4
        .iter()
        .take(config.v4_count as usize)
        .map(|[net, mask]| {
            let len = u32::from_be(*mask).count_ones() as u8;
            IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(u32::from_be(*net)), len))
        });
    let v6 = config
        .v6
        .iter()
        .take(config.v6_count as usize)
        .map(|[net, mask]| {
            let len = u128::from_be_bytes(ip6_octets(*mask)).count_ones() as u8;
            IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(ip6_octets(*net)), len))
        });
    v4.chain(v6).collect()
}

impl Datapath {
    /// Writes `settings` to the maps. Targets go in before the flag that sends packets to them,
    /// and the flag goes off before they go out, so no frame is redirected to a removed target.
    pub fn configure(&mut self, settings: &DatapathSettings) -> Result<(), DatapathError> {
        let config = config_of(settings)?;
        if settings.redirect_targets.is_empty() {
            self.write_config(config)?;
            self.sync_targets(&settings.redirect_targets)
        } else {
            self.sync_targets(&settings.redirect_targets)?;
            self.write_config(config)
        }
    }

    /// Only the prefixes, no redirect target (tests and benchmarks).
    pub fn set_prefixes(&mut self, prefixes: &[IpNet]) -> Result<(), DatapathError> {
        self.configure(&DatapathSettings {
            prefixes: prefixes.iter().copied().collect(),
            redirect_targets: BTreeSet::new(),
        })
    }

    /// The settings the maps hold now.
    pub fn settings(&self) -> Result<DatapathSettings, DatapathError> {
        let map = self
            .ebpf
            .map(MAP_CONFIG)
            .ok_or(DatapathError::MissingMap { name: MAP_CONFIG })?;
        let array: Array<&MapData, Config> =
            Array::try_from(map).map_err(map_err(MAP_CONFIG, "open"))?;
        let config = array.get(&0, 0).map_err(map_err(MAP_CONFIG, "lookup"))?;
        Ok(DatapathSettings {
            prefixes: prefixes_of(&config),
            redirect_targets: self.targets()?,
        })
    }

    /// Writes `config`, with `CONFIG_LOG` while the programs' log is forwarded.
    fn write_config(&mut self, mut config: Config) -> Result<(), DatapathError> {
        if self.logging {
            config.flags |= CONFIG_LOG;
        }
        let map = self
            .ebpf
            .map_mut(MAP_CONFIG)
            .ok_or(DatapathError::MissingMap { name: MAP_CONFIG })?;
        let mut array: Array<&mut MapData, Config> =
            Array::try_from(map).map_err(map_err(MAP_CONFIG, "open"))?;
        array
            .set(0, config, 0)
            .map_err(map_err(MAP_CONFIG, "update"))
    }

    fn targets(&self) -> Result<BTreeSet<u32>, DatapathError> {
        let map = self
            .ebpf
            .map(MAP_REDIRECT)
            .ok_or(DatapathError::MissingMap { name: MAP_REDIRECT })?;
        let devmap: DevMapHash<&MapData> =
            DevMapHash::try_from(map).map_err(map_err(MAP_REDIRECT, "open"))?;
        devmap
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_REDIRECT, "keys"))
    }

    /// Makes the redirect map list exactly `want`.
    fn sync_targets(&mut self, want: &BTreeSet<u32>) -> Result<(), DatapathError> {
        let have = self.targets()?;
        let map = self
            .ebpf
            .map_mut(MAP_REDIRECT)
            .ok_or(DatapathError::MissingMap { name: MAP_REDIRECT })?;
        let mut devmap: DevMapHash<&mut MapData> =
            DevMapHash::try_from(map).map_err(map_err(MAP_REDIRECT, "open"))?;
        for ifindex in want.difference(&have) {
            devmap
                .insert(*ifindex, *ifindex, None, 0)
                .map_err(|source| DatapathError::RedirectTarget {
                    ifindex: *ifindex,
                    source,
                })?;
        }
        for ifindex in have.difference(want) {
            devmap
                .remove(*ifindex)
                .map_err(map_err(MAP_REDIRECT, "delete"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_in_network_order_per_family_and_back() {
        let settings = DatapathSettings {
            prefixes: [
                "198.51.100.0/24".parse().unwrap(),
                "2001:db8::/64".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ]
            .into(),
            redirect_targets: BTreeSet::new(),
        };
        let c = config_of(&settings).unwrap();
        assert_eq!(c.v4_count, 2);
        assert_eq!(c.v4[0][0].to_ne_bytes(), [10, 0, 0, 0]);
        assert_eq!(c.v4[1][0].to_ne_bytes(), [198, 51, 100, 0]);
        assert_eq!(c.v4[1][1].to_ne_bytes(), [255, 255, 255, 0]);
        assert_eq!(c.v6_count, 1);
        assert_eq!(ip6_octets(c.v6[0][1])[7], 0xff);
        assert_eq!(ip6_octets(c.v6[0][1])[8], 0);
        assert_eq!(c.flags, 0, "no redirect target, no redirect");
        assert_eq!(
            prefixes_of(&c),
            settings.prefixes,
            "decodes to what it encodes"
        );

        let with_target = DatapathSettings {
            redirect_targets: [7].into(),
            ..settings
        };
        assert_eq!(config_of(&with_target).unwrap().flags, CONFIG_REDIRECT);
        let many = DatapathSettings {
            prefixes: (0..9u8)
                .map(|i| format!("10.{i}.0.0/16").parse().unwrap())
                .collect(),
            redirect_targets: BTreeSet::new(),
        };
        assert!(config_of(&many).is_err());
    }
}
