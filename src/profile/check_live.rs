//! `tester.metrics_listen`, checked: the address the live metrics exporter binds
//! (`runner::live`). Only its form is checked here; whether it can be bound is known when the
//! run binds it, before any user starts.

use std::net::SocketAddr;

use super::check::Checker;

/// The listen address, or `None` (not given, or wrong: reported to `c` with the value).
pub(super) fn metrics_listen(c: &mut Checker, raw: Option<&str>) -> Option<SocketAddr> {
    let text = raw?;
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            c.fail(
                "tester.metrics_listen",
                format!("{text:?} is not a listen address like \"127.0.0.1:9464\" or \"0.0.0.0:9464\" (IP:PORT)"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, parse_text, problems};
    use super::super::{effective_toml, workload_hash};

    #[test]
    fn a_listen_address_is_parsed_kept_out_of_the_workload_and_written_back() {
        let plain = parse_text(MINIMAL, &[]).unwrap();
        assert_eq!(plain.tester.metrics_listen, None);
        assert!(!effective_toml(&plain).contains("metrics_listen"));
        let p = parse_text(MINIMAL, &["tester.metrics_listen=\"127.0.0.1:9464\""]).unwrap();
        assert_eq!(p.tester.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        let eff = effective_toml(&p);
        assert!(eff.contains("metrics_listen = \"127.0.0.1:9464\""), "{eff}");
        assert_eq!(parse_text(&eff, &[]).unwrap(), p);
        // Where the metrics are served is not what the users do.
        assert_eq!(workload_hash(&p), workload_hash(&plain));
        let v6 = parse_text(MINIMAL, &["tester.metrics_listen=\"[::1]:0\""]).unwrap();
        assert_eq!(v6.tester.metrics_listen.map(|a| a.port()), Some(0));
    }

    #[test]
    fn a_bad_listen_address_names_the_key_and_the_value() {
        for bad in ["localhost", "127.0.0.1", "127.0.0.1:http", "999.0.0.1:80"] {
            let found = problems(MINIMAL, &[&format!("tester.metrics_listen=\"{bad}\"")]);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, "tester.metrics_listen");
            assert!(
                found[0].1.starts_with(&format!("{bad:?} is not a listen address")),
                "{found:?}"
            );
        }
    }
}
