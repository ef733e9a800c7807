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

/// Source addresses of the run's connections: 127.0.0.x to a loopback target (the profile's,
/// or enough for ~28k ephemeral ports each beyond 25,000 connections); none elsewhere (the OS
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
    if source_ips.is_empty() && connections > 25_000 {
        // ~28k ephemeral ports per source address: spread over 127.0.0.1, .2, ...
        source_ips = (1..=connections.div_ceil(25_000) as u8)
            .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i))
            .collect();
    }
    source_ips
}
