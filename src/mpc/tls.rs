//! Who a party is on the network: a key and a self-signed certificate per party, and TLS 1.3
//! configurations in which every peer is pinned by its certificate and bound to its role.
//!
//! Why pinning rather than a CA: a deployment has three parties that know each other; each runs
//! `marill keygen` on its own machine and hands the others only its certificate. A peer is
//! accepted when it presents exactly the certificate pinned for a role (and proves it holds the
//! key in the handshake); no one can take another party's role, and a stranger fails the
//! handshake. Every protocol's security rests on this: the seeds and masks the parties send each
//! other would let an eavesdropper or an impostor reconstruct the secrets.
//!
//! Crypto provider: *ring*, deliberately. It builds from C and assembly with the `cc` compiler
//! alone (aws-lc-rs needs CMake and a much longer build), is the provider `rcgen` signs with, and
//! its AES-GCM uses AES-NI and carry-less multiplication, which our bulk traffic (dealer material
//! in the tens of MB) needs. AES-128-GCM is offered first: the fastest suite on such CPUs, with a
//! security margin far beyond the session's life.

use super::protocol::Role;
use anyhow::{Context, Result, anyhow, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name a role's certificate is issued for (and the TLS server name it is dialled by).
pub fn role_name(role: Role) -> String {
    format!("{role}.marill")
}

/// `DIR/ROLE.key` and `DIR/ROLE.crt`.
pub fn identity_paths(dir: &Path, role: Role) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{role}.key")),
        dir.join(format!("{role}.crt")),
    )
}

/// A fresh key pair and self-signed certificate for `role`, as PEM: (key, certificate).
pub fn generate(role: Role) -> Result<(String, String)> {
    let certified = rcgen::generate_simple_self_signed(vec![role_name(role)])
        .context("generating a key and certificate")?;
    Ok((certified.signing_key.serialize_pem(), certified.cert.pem()))
}

/// `marill keygen`: writes `ROLE.key` (readable by its owner only) and `ROLE.crt` into `dir`.
/// Refuses to overwrite an existing key.
pub fn write_identity(dir: &Path, role: Role) -> Result<(PathBuf, PathBuf)> {
    let (key_path, cert_path) = identity_paths(dir, role);
    if key_path.exists() {
        bail!(
            "{}: exists; remove it first to make a new key",
            key_path.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let (key, cert) = generate(role)?;
    write_private(&key_path, key.as_bytes())?;
    crate::atomic::write_atomic(&cert_path, cert.as_bytes())?;
    Ok((key_path, cert_path))
}

/// Fresh identities for every party of `roles`, one directory each under `root` (created
/// readable by its owner only) as [`PartyTls::load`] reads it: its own key and certificate,
/// and the others' certificates. For parties one command starts on loopback.
pub fn write_ephemeral(root: &Path, roles: &[Role]) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::DirBuilderExt;
    let pems: Vec<(String, String)> = roles.iter().map(|&r| generate(r)).collect::<Result<_>>()?;
    roles
        .iter()
        .enumerate()
        .map(|(i, &role)| {
            let dir = root.join(role.to_string());
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            for (j, &other) in roles.iter().enumerate() {
                let (key_path, cert_path) = identity_paths(&dir, other);
                if i == j {
                    write_private(&key_path, pems[j].0.as_bytes())?;
                }
                crate::atomic::write_atomic(&cert_path, pems[j].1.as_bytes())?;
            }
            Ok(dir)
        })
        .collect()
}

/// Writes a secret file with mode 0600 from its creation on.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// One party's TLS identity and the pinned certificates of its peers.
#[derive(Clone, Debug)]
pub struct PartyTls {
    pub role: Role,
    cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
    peers: Vec<(Role, CertificateDer<'static>)>,
}

impl PartyTls {
    /// From PEM text: this party's key and certificate, and each peer's certificate.
    pub fn from_pem(role: Role, key: &str, cert: &str, peers: &[(Role, String)]) -> Result<Self> {
        let cert = parse_cert(cert).with_context(|| format!("the {role}'s certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|e| anyhow!("the {role}'s key: not a PEM private key: {e}"))?;
        let peers = peers
            .iter()
            .map(|(r, pem)| {
                let cert = parse_cert(pem).with_context(|| format!("the {r}'s certificate"))?;
                Ok((*r, cert))
            })
            .collect::<Result<Vec<_>>>()?;
        let tls = PartyTls {
            role,
            cert,
            key: Arc::new(key),
            peers,
        };
        tls.check()?;
        Ok(tls)
    }

    /// `DIR/ROLE.key`, `DIR/ROLE.crt` and `DIR/PEER.crt` for each of `peers`.
    pub fn load(dir: &Path, role: Role, peers: &[Role]) -> Result<Self> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))
        };
        let (key_path, cert_path) = identity_paths(dir, role);
        let peer_pems = peers
            .iter()
            .map(|&r| Ok((r, read(&identity_paths(dir, r).1)?)))
            .collect::<Result<Vec<_>>>()?;
        Self::from_pem(role, &read(&key_path)?, &read(&cert_path)?, &peer_pems)
            .with_context(|| format!("{}", dir.display()))
    }

    /// Fresh identities for every party of `roles`, each pinning the others (parties started on
    /// loopback by one command, and tests).
    pub fn ephemeral(roles: &[Role]) -> Result<Vec<Self>> {
        let pems: Vec<(Role, (String, String))> = roles
            .iter()
            .map(|&r| Ok((r, generate(r)?)))
            .collect::<Result<_>>()?;
        pems.iter()
            .map(|(role, (key, cert))| {
                let peers: Vec<(Role, String)> = pems
                    .iter()
                    .filter(|(r, _)| r != role)
                    .map(|(r, (_, c))| (*r, c.clone()))
                    .collect();
                Self::from_pem(*role, key, cert, &peers)
            })
            .collect()
    }

    /// Every certificate distinct: one party pinned for two roles would be able to take both.
    fn check(&self) -> Result<()> {
        let mut all: Vec<(Role, &CertificateDer)> = vec![(self.role, &self.cert)];
        all.extend(self.peers.iter().map(|(r, c)| (*r, c)));
        for (i, (ra, a)) in all.iter().enumerate() {
            for (rb, b) in &all[i + 1..] {
                if a == b {
                    bail!("the {ra} and the {rb} have the same certificate");
                }
            }
        }
        Ok(())
    }

    /// The peer whose pinned certificate `cert` is.
    pub fn peer_of(&self, cert: &CertificateDer) -> Option<Role> {
        self.peers.iter().find(|(_, c)| c == cert).map(|(r, _)| *r)
    }

    fn pinned(&self, role: Role) -> Result<CertificateDer<'static>> {
        self.peers
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, c)| c.clone())
            .with_context(|| format!("no certificate pinned for the {role}"))
    }

    /// The configuration for dialling `peer`: it must present the certificate pinned for it.
    pub fn client_config(&self, peer: Role) -> Result<Arc<ClientConfig>> {
        let provider = provider();
        let verifier = Pinned {
            certs: vec![self.pinned(peer)?],
            algorithms: provider.signature_verification_algorithms,
        };
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())
            .context("this party's key does not match its certificate")?;
        Ok(Arc::new(config))
    }

    /// The configuration for accepting peers: each must present one of the pinned certificates.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let provider = provider();
        let verifier = Pinned {
            certs: self.peers.iter().map(|(_, c)| c.clone()).collect(),
            algorithms: provider.signature_verification_algorithms,
        };
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .context("this party's key does not match its certificate")?;
        // Connections are never resumed; tickets would only sit unread in one-way links.
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

/// The TLS server name a role is dialled by.
pub fn server_name(role: Role) -> ServerName<'static> {
    ServerName::try_from(role_name(role)).expect("role names are valid DNS names")
}

fn parse_cert(pem: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))
}

/// ring, with TLS 1.3's AES-128-GCM first (see the module doc).
fn provider() -> CryptoProvider {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..default_provider()
    }
}

/// Accepts exactly the pinned certificates: dialling, the one of the role dialled; accepting,
/// any peer's (which one says who connected). The handshake's signature proves the key.
#[derive(Debug)]
struct Pinned {
    certs: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn admit(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.certs.iter().any(|c| c.as_ref() == cert.as_ref()) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

/// The signature methods both verifier traits require, the same for both: TLS 1.3 handshake
/// signatures checked with the provider's algorithms; TLS 1.2 is never offered.
macro_rules! pinned_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not offered".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.admit(end_entity)
            .map(|_| ServerCertVerified::assertion())
    }

    pinned_signatures!();
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.admit(end_entity)
            .map(|_| ClientCertVerified::assertion())
    }

    pinned_signatures!();
}
