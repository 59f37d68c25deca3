//! The datapath's configuration map: the VIP prefixes. XDP passes packets to addresses outside
//! them without a map lookup.
use ipnet::IpNet;
use l3lb_common::{Config, MAP_CONFIG, MAX_PREFIXES, ip6};

use super::{Datapath, DatapathError, map_err};

/// The configuration value for `prefixes` (each family's first [`MAX_PREFIXES`]).
pub fn config_of(prefixes: &[IpNet]) -> Result<Config, DatapathError> {
    let mut config = Config::default();
    for prefix in prefixes {
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
    Ok(config)
}

impl Datapath {
    /// Tells XDP which prefixes VIPs come from (the daemon's `--prefix`es).
    pub fn set_prefixes(&mut self, prefixes: &[IpNet]) -> Result<(), DatapathError> {
        let mut config = config_of(prefixes)?;
        let map = self
            .ebpf
            .map_mut(MAP_CONFIG)
            .ok_or(DatapathError::MissingMap { name: MAP_CONFIG })?;
        let mut array: aya::maps::Array<&mut aya::maps::MapData, Config> =
            aya::maps::Array::try_from(map).map_err(map_err(MAP_CONFIG, "open"))?;
        // The redirect flag is the refresh task's (it survives in a reused pinned map).
        let current = array.get(&0, 0).map_err(map_err(MAP_CONFIG, "lookup"))?;
        config.flags = current.flags;
        array
            .set(0, config, 0)
            .map_err(map_err(MAP_CONFIG, "update"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_in_network_order_per_family() {
        let c = config_of(&[
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8::/64".parse().unwrap(),
        ])
        .unwrap();
        assert_eq!(c.v4_count, 1);
        assert_eq!(c.v4[0][0].to_ne_bytes(), [198, 51, 100, 0]);
        assert_eq!(c.v4[0][1].to_ne_bytes(), [255, 255, 255, 0]);
        assert_eq!(c.v6_count, 1);
        assert_eq!(l3lb_common::ip6_octets(c.v6[0][1])[7], 0xff);
        assert_eq!(l3lb_common::ip6_octets(c.v6[0][1])[8], 0);
        let many: Vec<IpNet> = (0..9u8)
            .map(|i| format!("10.{i}.0.0/16").parse().unwrap())
            .collect();
        assert!(config_of(&many).is_err());
    }
}
