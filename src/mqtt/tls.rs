//! `mqtts://`: the rustls client config for the broker (the crate's aws-lc-rs provider), with
//! `[mqtt] ca` or the system's CA certificates, and an optional client certificate.

use crate::config::MqttTls;
use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// The client config for `tls`.
pub fn client_config(tls: &MqttTls) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .with_context(|| {
                    format!(
                        "cannot read certificates from {} ([mqtt] ca), expected PEM",
                        ca.display()
                    )
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                anyhow::bail!(
                    "no usable CA certificate in {} ([mqtt] ca), expected PEM \"BEGIN CERTIFICATE\"",
                    ca.display()
                );
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                anyhow::bail!(
                    "no system CA certificates for mqtts:// (install ca-certificates, or set [mqtt] ca)"
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match &tls.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .with_context(|| {
                    format!(
                        "cannot read certificates from {} ([mqtt] cert), expected PEM",
                        cert.display()
                    )
                })?;
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
                format!(
                    "cannot read a private key from {} ([mqtt] key), expected PEM (PKCS#8, PKCS#1 or SEC1)",
                    key.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .context("[mqtt] cert and key do not form a usable pair")?
        }
    };
    Ok(config)
}

/// The client config for `tls`, if any (built once, shared by every reconnection).
pub fn prepare(tls: Option<&MqttTls>) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    tls.map(|t| client_config(t).map(Arc::new)).transpose()
}

/// Sets the transport of `o`: TLS with `tls`, or plain TCP.
pub fn set_transport(o: &mut rumqttc::MqttOptions, tls: Option<&Arc<rustls::ClientConfig>>) {
    if let Some(c) = tls {
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(c.clone()),
        ));
    }
}
