//! `[tls]` and `[proxy.tls]`: the rustls server configuration of a listener jwtd terminates
//! TLS on, with client-certificate verification (`client_ca_file`, `client_auth`) for
//! RFC 8705 certificate-bound tokens. Loaded once, before the listener is announced.

use crate::config::{ClientAuth, TlsSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// The longest a TLS handshake may take on jwtd's listeners: the `[server]
/// header_read_timeout` (it counts toward the request header's deadline, from the accept).
pub fn handshake_timeout(server: &crate::config::ServerSettings) -> std::time::Duration {
    server.header_read_timeout.0
}

/// The rustls configuration of `t` (`what` names the table in errors, `[tls]` or
/// `[proxy.tls]`), offering `alpn` (e.g. `h2`, `http/1.1`). An error names the file that
/// cannot be read or used.
pub fn server_config(
    t: &TlsSettings,
    what: &str,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("{what} cert_file {}: {e}", t.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} cert_file {}: no certificate in it",
            t.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key_file)
        .map_err(|e| format!("{what} key_file {}: {e}", t.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{what}: {e}"))?;
    let builder = match &t.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| format!("{what} client_ca_file {}: {e}", path.display()))?;
            if cas.is_empty() {
                return Err(format!(
                    "{what} client_ca_file {}: no certificate in it",
                    path.display()
                ));
            }
            for ca in cas {
                roots
                    .add(ca)
                    .map_err(|e| format!("{what} client_ca_file {}: {e}", path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = match t.client_auth.unwrap_or_default() {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            }
            .build()
            .map_err(|e| format!("{what} client_ca_file {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{what} cert_file {} and key_file {}: {e}",
            t.cert_file.display(),
            t.key_file.display()
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The API listener's configuration (`[tls]`: HTTP/2 and HTTP/1.1), when there is one.
pub fn api_config(config: &crate::Config) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    config
        .tls
        .as_ref()
        .map(|t| server_config(t, "[tls]", &[b"h2", b"http/1.1"]))
        .transpose()
}

/// The proxy listener's configuration (`[proxy.tls]`: HTTP/1.1), when there is one.
pub fn proxy_config(config: &crate::Config) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    config
        .proxy
        .as_ref()
        .and_then(|p| p.tls.as_ref())
        .map(|t| server_config(t, "[proxy.tls]", &[b"http/1.1"]))
        .transpose()
}

/// The DER of the end-entity certificate a TLS peer presented, if any.
pub fn peer_certificate(conn: &rustls::ServerConnection) -> Option<Arc<[u8]>> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::from(c.as_ref()))
}
