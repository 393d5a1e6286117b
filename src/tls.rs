//! TLS basics shared by FTPS, PostgreSQL and alert webhooks: which
//! certificate authorities ferry trusts, and the client configuration.

use crate::error::{Error, Result};
use tokio_rustls::rustls;

/// The system's root certificates plus those in `ca_file` (PEM): what
/// FTPS and PostgreSQL's `verify-full` trust.
pub fn trusted_roots(ca_file: Option<&str>) -> Result<rustls::RootCertStore> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(file) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .and_then(|it| it.collect::<std::result::Result<_, _>>())
            .map_err(|e| Error::config(format!("cannot read CA certificates from {file}: {e}")))?;
        if certs.is_empty() {
            return Err(Error::config(format!("{file} holds no PEM certificates")));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| Error::config(format!("bad CA certificate in {file}: {e}")))?;
        }
    }
    Ok(roots)
}

/// The rustls client configuration (aws-lc-rs, safe protocol versions):
/// system roots plus `ca_file`.
pub fn client_config(ca_file: Option<&str>) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    let roots = trusted_roots(ca_file)?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}
