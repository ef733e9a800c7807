//! The driver of a run, chosen by the profile's `target.protocol`: the native driver for the
//! embedded server and native targets, the XMPP driver for XMPP servers. Each gets the run's
//! resolved target and, towards loopback only, the source addresses that spread connections
//! past one address's ephemeral ports.

use std::sync::Arc;

use super::RunError;
use super::target::Running;
use crate::profile::{Auth, Plan, Protocol, StartTls, Target};
use crate::transport::Driver;
use crate::transport::native::NativeDriver;
use crate::transport::tls::TlsOptions;
use crate::transport::xmpp::sasl::Mechanism;
use crate::transport::xmpp::{Passwords, StartTlsPolicy, XmppDriver, XmppDriverConfig};

/// The driver for `target` (warnings about the plan's source addresses go to `target`).
pub(super) fn open(plan: &Plan, target: &mut Running) -> Result<Arc<dyn Driver>, RunError> {
    let source_ips = source_ips(plan, target);
    match &target.protocol {
        Protocol::Native => Ok(Arc::new(NativeDriver::new(
            target.endpoint.clone(),
            target.auth.clone(),
            source_ips,
            plan.tester.connect_timeout,
        ))),
        Protocol::Xmpp(x) => {
            let Target::External { ca_file, insecure, .. } = &plan.target else {
                unreachable!("the profile check allows XMPP for external targets only")
            };
            let passwords = match &target.auth {
                Auth::Password(p) => Passwords::Same(p.clone()),
                Auth::Tokens(map) => Passwords::PerUser(map.clone()),
                Auth::Secret(_) => unreachable!("the profile check gives XMPP targets passwords"),
            };
            let starttls = match x.starttls {
                StartTls::Never => StartTlsPolicy::Never,
                StartTls::IfOffered => StartTlsPolicy::IfOffered,
                StartTls::Required => StartTlsPolicy::Required,
            };
            let driver = XmppDriver::new(XmppDriverConfig {
                url: target.url.clone(),
                domain: x.domain.clone(),
                muc_domain: x.muc_domain.clone(),
                passwords,
                starttls,
                tls: TlsOptions {
                    ca_file: ca_file.clone(),
                    insecure: *insecure,
                },
                source_ips,
                timeout: plan.tester.connect_timeout,
                endpoint: Some(target.endpoint.clone()),
                stream_management: x.stream_management,
                mechanism: x
                    .sasl_plain
                    .map(|plain| if plain { Mechanism::Plain } else { Mechanism::ScramSha1 }),
            })?;
            Ok(Arc::new(driver))
        }
    }
}

/// Connections per loopback source address. The kernel picks a connection's source port by
/// walking the ephemeral range (~28,000 ports) from a random point until a port is free for
/// that destination (`__inet_check_established`): with 16,000 ports of one address in use a
/// connect walked so far that it took a fifth of the machine's CPU at the end of a 48,000-user
/// ramp (`perf`). A few thousand per address keeps the walk short; 127.0.0.0/8 has plenty.
pub(super) const CONNECTIONS_PER_SOURCE_ADDRESS: u64 = 4_000;

/// Source addresses of the run's connections: 127.0.0.x to a loopback target (the profile's,
/// or one per [`CONNECTIONS_PER_SOURCE_ADDRESS`] beyond that many); none elsewhere (the OS
/// chooses; a profile's list is then ignored, with a warning).
fn source_ips(plan: &Plan, target: &mut Running) -> Vec<std::net::Ipv4Addr> {
    let connections = plan.local_peak_users() * plan.population.devices_per_user;
    let mut source_ips = plan.tester.source_ips.clone();
    if !target.endpoint.is_loopback() {
        if !source_ips.is_empty() {
            let w = format!(
                "tester.source_ips ignored: they are loopback addresses, and {} is not on loopback",
                target.url
            );
            eprintln!("warning: {w}");
            target.warnings.push(w);
        }
        return Vec::new();
    }
    if source_ips.is_empty() && connections > CONNECTIONS_PER_SOURCE_ADDRESS {
        source_ips = loopback_sources(0, connections.div_ceil(CONNECTIONS_PER_SOURCE_ADDRESS));
    }
    source_ips
}

/// `n` loopback source addresses from the `first`-th on: 127.0.0.1, .2, ..., then 127.0.1.0,
/// ... (every address of 127.0.0.0/8 is this machine's).
pub(super) fn loopback_sources(first: u64, n: u64) -> Vec<std::net::Ipv4Addr> {
    (first..first + n)
        .map(|i| {
            let a = (1 + i).min(0x00FF_FFFE) as u32;
            std::net::Ipv4Addr::from(0x7F00_0000 | a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_count_on_from_127_0_0_1() {
        let ips = loopback_sources(0, 3);
        assert_eq!(
            ips,
            ["127.0.0.1", "127.0.0.2", "127.0.0.3"].map(|s| s.parse::<std::net::Ipv4Addr>().unwrap())
        );
        let later = loopback_sources(254, 3);
        assert_eq!(later[0].to_string(), "127.0.0.255");
        assert_eq!(later[1].to_string(), "127.0.1.0");
        assert!(later.iter().all(|ip| ip.is_loopback()));
    }
}
