//! End-user identity for tests: a fresh development signing key per test, its JWKS in
//! a temporary file the services read (`AUTH_JWKS`), and clients that send a token.

use std::time::Duration;

use platform::auth::dev::{DevIssuer, TokenSpec};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A 2048-bit RSA private key committed for tests only (`testkit/fixtures`), trusted
/// by nothing but the tests that add it: many identity providers sign RS256, so the
/// services are checked to accept RSA keys next to the ES256 development key.
pub const TEST_ONLY_RSA_KEY_PEM: &str = include_str!("../fixtures/test-only-rsa-2048.pem");

/// A channel whose every call carries one bearer token.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// An interceptor sending `token`.
    pub fn new(token: &str) -> Self {
        Self(
            format!("Bearer {token}")
                .parse()
                .expect("a JWT is valid metadata"),
        )
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A test's identity provider: signs tokens the services it configured accept.
pub struct TestIdentity {
    issuer: DevIssuer,
    dir: tempfile::TempDir,
}

impl TestIdentity {
    /// A fresh key, its JWKS written to a temporary file.
    pub fn create() -> Self {
        let issuer = DevIssuer::generate().expect("generate a signing key");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("jwks.json"), issuer.jwks()).expect("write JWKS");
        Self { issuer, dir }
    }

    /// The JWKS file the services verify against.
    pub fn jwks_path(&self) -> std::path::PathBuf {
        self.dir.path().join("jwks.json")
    }

    /// Adds a public key (a JWK) to the JWKS file, next to the development key: a
    /// service started afterwards trusts both; a running one picks it up on its next
    /// refresh.
    pub fn add_jwk(&self, jwk: serde_json::Value) {
        let path = self.jwks_path();
        let mut jwks: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read JWKS")).expect("JWKS JSON");
        jwks["keys"]
            .as_array_mut()
            .expect("JWKS has keys")
            .push(jwk);
        std::fs::write(&path, jwks.to_string()).expect("write JWKS");
    }

    /// The service flags that make it trust this identity provider.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--auth-jwks".into(),
            self.jwks_path().display().to_string(),
            "--auth-issuer".into(),
            self.issuer.issuer().to_owned(),
            "--auth-audience".into(),
            self.issuer.audience().to_owned(),
        ]
    }

    /// The same settings as environment variables, for service processes.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AUTH_JWKS", self.jwks_path().display().to_string()),
            ("AUTH_ISSUER", self.issuer.issuer().to_owned()),
            ("AUTH_AUDIENCE", self.issuer.audience().to_owned()),
        ]
    }

    /// The signer, for tests that craft their own tokens.
    pub fn issuer(&self) -> &DevIssuer {
        &self.issuer
    }

    /// A customer token, valid for an hour.
    pub fn customer(&self, id: &str) -> String {
        self.mint(&TokenSpec::customer(id))
    }

    /// A manager token for `talents`, valid for an hour.
    pub fn manager(&self, id: &str, talents: &[&str]) -> String {
        self.mint(&TokenSpec::manager(id, talents))
    }

    fn mint(&self, spec: &TokenSpec) -> String {
        self.issuer
            .mint(spec, Duration::from_secs(3600))
            .expect("mint a token")
    }

    /// `channel` sending a customer token for `id`.
    pub fn as_customer(&self, channel: Channel, id: &str) -> AuthChannel {
        InterceptedService::new(channel, Bearer::new(&self.customer(id)))
    }

    /// `channel` sending a manager token.
    pub fn as_manager(&self, channel: Channel, id: &str, talents: &[&str]) -> AuthChannel {
        InterceptedService::new(channel, Bearer::new(&self.manager(id, talents)))
    }
}
