//! Key rotation in `platform::auth::Authenticator`, against real files and a real
//! (tiny, hand-written) HTTP server on 127.0.0.1: a new `kid` is picked up from a
//! rotated JWKS without a restart, unknown `kid`s cannot turn into a flood of JWKS
//! fetches, an identity provider that is down at start delays only the calls, and
//! the periodic refresh follows a rotated file on its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platform::auth::dev::{DevIssuer, TokenSpec};
use platform::auth::{AuthError, AuthSettings, Authenticator, JwksSource, MIN_REFRESH_GAP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A fresh signing key for the development issuer and audience.
fn key() -> DevIssuer {
    DevIssuer::generate().expect("generate a key")
}

/// A JWKS document holding the public keys of `issuers`.
fn jwks(issuers: &[&DevIssuer]) -> String {
    let keys: Vec<serde_json::Value> = issuers
        .iter()
        .map(|i| {
            let doc: serde_json::Value = serde_json::from_str(i.jwks()).expect("JWKS JSON");
            doc["keys"][0].clone()
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

fn settings(source: JwksSource, refresh: Duration) -> AuthSettings {
    AuthSettings {
        auth_jwks: source,
        auth_issuer: platform::auth::dev::DEV_ISSUER.into(),
        auth_audience: platform::auth::dev::DEV_AUDIENCE.into(),
        auth_jwks_refresh: refresh,
        auth_leeway: Duration::from_secs(30),
        auth_jwks_ca: None,
        auth_roles_claim: "roles".parse().expect("claim path"),
        auth_talents_claim: "talents".parse().expect("claim path"),
    }
}

/// An `authorization` value with a customer token from `issuer`.
fn bearer(issuer: &DevIssuer, customer: &str) -> Vec<u8> {
    let token = issuer
        .mint(&TokenSpec::customer(customer), Duration::from_secs(600))
        .expect("mint");
    format!("Bearer {token}").into_bytes()
}

/// An `authorization` value whose token is signed with `issuer`'s key but names
/// `kid` (a made-up one, which no JWKS holds).
fn bearer_with_kid(issuer: &DevIssuer, kid: &str) -> Vec<u8> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "iss": issuer.issuer(), "aud": issuer.audience(), "sub": "alice",
        "nbf": now, "exp": now + 600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let token = jsonwebtoken::encode(&header, &claims, issuer.encoding_key()).expect("sign");
    format!("Bearer {token}").into_bytes()
}

fn write(path: &Path, contents: &str) {
    // Write-then-rename, as a ConfigMap update or a careful operator does, so the
    // authenticator never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write JWKS");
    std::fs::rename(&tmp, path).expect("replace JWKS");
}

fn jwks_file(dir: &tempfile::TempDir, contents: &str) -> PathBuf {
    let path = dir.path().join("jwks.json");
    write(&path, contents);
    path
}

/// An authenticator reading the JWKS file at `path`, whose periodic refresh is too
/// slow to matter in a test: only on-demand re-reads pick up a change.
async fn on_file(path: &Path) -> Authenticator {
    Authenticator::load(&settings(
        JwksSource::File(path.to_owned()),
        Duration::from_secs(3600),
    ))
    .await
    .expect("load")
}

#[tokio::test]
async fn a_new_kid_is_refused_until_the_jwks_file_has_it_then_accepted() {
    let (old, new) = (key(), key());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = jwks_file(&dir, &jwks(&[&old]));
    let auth = on_file(&path).await;

    let caller = auth
        .verify(Some(&bearer(&old, "alice")))
        .await
        .expect("old key");
    assert_eq!(caller.subject().as_ref(), "alice");

    // The identity provider signs with a key the file does not hold yet: the unknown
    // kid makes the authenticator re-read the file at once, which does not help.
    assert_eq!(
        auth.verify(Some(&bearer(&new, "bob"))).await,
        Err(AuthError::UnknownKey)
    );

    // The file gains the new key (the old one stays, as during any rotation). The
    // re-read just done counts against MIN_REFRESH_GAP, so a token within the gap is
    // still refused: unknown kids cannot make the authenticator re-read on every call.
    write(&path, &jwks(&[&old, &new]));
    assert_eq!(
        auth.verify(Some(&bearer(&new, "bob"))).await,
        Err(AuthError::UnknownKey)
    );

    // Once the gap has passed, the next unknown kid re-reads the file: accepted.
    tokio::time::sleep(MIN_REFRESH_GAP + Duration::from_millis(100)).await;
    let caller = auth
        .verify(Some(&bearer(&new, "bob")))
        .await
        .expect("new key");
    assert_eq!(caller.subject().as_ref(), "bob");
    auth.verify(Some(&bearer(&old, "alice")))
        .await
        .expect("old key still trusted");
}

#[tokio::test]
async fn a_rotation_in_place_before_the_first_unknown_kid_is_accepted_at_once() {
    let (old, new) = (key(), key());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = jwks_file(&dir, &jwks(&[&old]));
    let auth = on_file(&path).await;

    // No restart, no waiting for the periodic refresh: the first token with the new
    // kid re-reads the file.
    write(&path, &jwks(&[&new]));
    auth.verify(Some(&bearer(&new, "bob")))
        .await
        .expect("new key after an on-demand refresh");
    // The re-read replaced the key set: the retired key is gone.
    assert_eq!(
        auth.verify(Some(&bearer(&old, "alice"))).await,
        Err(AuthError::UnknownKey)
    );
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_its_key_leaves_the_key_set() {
    let (old, new) = (key(), key());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = jwks_file(&dir, &jwks(&[&old]));
    let auth = on_file(&path).await;

    // The same token twice: the second call is answered from the verified-token
    // memory, which is what must not outlive the key.
    let token = bearer(&old, "alice");
    auth.verify(Some(&token)).await.expect("old key");
    auth.verify(Some(&token))
        .await
        .expect("old key, remembered");

    // The key is withdrawn (a leaked key, say). The next unknown kid re-reads the
    // file; the token verified before must now be refused, not served from memory.
    write(&path, &jwks(&[&new]));
    auth.verify(Some(&bearer(&new, "bob")))
        .await
        .expect("new key after an on-demand refresh");
    assert_eq!(
        auth.verify(Some(&token)).await,
        Err(AuthError::UnknownKey),
        "a token remembered before the reload outlived its key"
    );
}

/// A JWKS endpoint: answers every GET with the current document and counts requests.
struct JwksServer {
    addr: SocketAddr,
    body: Arc<std::sync::Mutex<String>>,
    requests: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, body, None)
    }

    /// Serves over TLS with `acceptor`'s certificate.
    async fn start_tls(body: String, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, body, Some(acceptor))
    }

    /// Serves on an address chosen before (a server that comes up late).
    async fn start_on(addr: SocketAddr, body: String) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind again");
        Self::serve(listener, body, None)
    }

    fn serve(listener: TcpListener, body: String, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let server = Self {
            addr: listener.local_addr().expect("addr"),
            body: Arc::new(std::sync::Mutex::new(body)),
            requests: Arc::new(AtomicUsize::new(0)),
            stop: CancellationToken::new(),
        };
        let (body, requests, stop) = (
            server.body.clone(),
            server.requests.clone(),
            server.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (socket, _) = tokio::select! {
                    accepted = listener.accept() => accepted.expect("accept"),
                    _ = stop.cancelled() => return,
                };
                let (body, requests, tls) = (body.clone(), requests.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => answer(socket, &body, &requests).await,
                        // A client that refuses the certificate ends the handshake.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(socket).await {
                                answer(stream, &body, &requests).await;
                            }
                        }
                    }
                });
            }
        });
        server
    }

    fn url(&self) -> JwksSource {
        format!("http://{}/.well-known/jwks.json", self.addr)
            .parse()
            .expect("a loopback http URL is a JWKS source")
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Answers one request on `socket` with the current JWKS and counts it.
async fn answer<S>(mut socket: S, body: &std::sync::Mutex<String>, requests: &AtomicUsize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // Read the request head; a GET has no body.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let body = body.lock().expect("body lock").clone();
    // `Connection: close`, so every fetch is one request on one connection and the
    // count is exact.
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// A private CA and a `localhost` server certificate it signed: the acceptor for the
/// server and the CA's PEM for the client.
fn private_ca() -> (tokio_rustls::TlsAcceptor, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "talentshare test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("server key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&leaf_key, &issuer)
        .expect("server cert");
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
        .expect("server key DER");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server TLS config");
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_cert.pem(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_jwks_behind_a_private_ca_is_trusted_only_with_auth_jwks_ca() {
    let key = key();
    let (acceptor, ca_pem) = private_ca();
    let server = JwksServer::start_tls(jwks(&[&key]), acceptor).await;
    let url: JwksSource = format!("https://localhost:{}/jwks", server.addr.port())
        .parse()
        .expect("an https URL is a JWKS source");

    // Without the CA the certificate is not trusted: the service starts, but no key
    // is loaded, so calls are UNAVAILABLE (a retryable configuration problem).
    let untrusting = Authenticator::load(&settings(url.clone(), Duration::from_secs(600)))
        .await
        .expect("a JWKS URL that fails does not stop the start");
    assert_eq!(
        untrusting.verify(Some(&bearer(&key, "alice"))).await,
        Err(AuthError::KeysUnavailable)
    );
    assert_eq!(
        server.requests(),
        0,
        "no request got past the TLS handshake"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write CA");
    let mut with_ca = settings(url, Duration::from_secs(600));
    with_ca.auth_jwks_ca = Some(ca_file);
    let trusting = Authenticator::load(&with_ca).await.expect("load");
    let caller = trusting
        .verify(Some(&bearer(&key, "alice")))
        .await
        .expect("a token verified against the JWKS fetched over TLS");
    assert_eq!(caller.subject().as_ref(), "alice");
    assert_eq!(server.requests(), 1);

    // A CA file that is not one stops the start, naming the setting.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").expect("write");
    let mut bad = with_ca.clone();
    bad.auth_jwks_ca = Some(bogus);
    let err = Authenticator::load(&bad).await.err().expect("refused");
    assert!(err.to_string().contains("AUTH_JWKS_CA"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_at_start_and_unknown_kids_cannot_flood_it() {
    let signer = key();
    let server = JwksServer::start(jwks(&[&signer])).await;
    let auth = Authenticator::load(&settings(server.url(), Duration::from_secs(3600)))
        .await
        .expect("load");
    assert_eq!(server.requests(), 1, "fetched once at start");

    // Known keys need no fetch.
    for _ in 0..5 {
        auth.verify(Some(&bearer(&signer, "alice")))
            .await
            .expect("known key");
    }
    assert_eq!(server.requests(), 1, "no fetch for a known kid");

    // An unknown kid: exactly one fetch.
    assert_eq!(
        auth.verify(Some(&bearer_with_kid(&signer, "made-up-0")))
            .await,
        Err(AuthError::UnknownKey)
    );
    assert_eq!(server.requests(), 2, "one fetch for an unknown kid");

    // A burst of 50 different made-up kids, all at once, within MIN_REFRESH_GAP.
    let burst: Vec<_> = (1..=50)
        .map(|i| {
            let auth = auth.clone();
            let header = bearer_with_kid(&signer, &format!("made-up-{i}"));
            tokio::spawn(async move { auth.verify(Some(&header)).await })
        })
        .collect();
    for call in burst {
        assert_eq!(call.await.expect("join"), Err(AuthError::UnknownKey));
    }
    assert!(
        server.requests() <= 3,
        "a burst of unknown kids caused {} fetches",
        server.requests() - 2
    );

    // Good tokens still verify throughout.
    auth.verify(Some(&bearer(&signer, "alice")))
        .await
        .expect("known key after the burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_share_one_fetch() {
    let signer = key();
    let server = JwksServer::start(jwks(&[&signer])).await;
    let auth = Authenticator::load(&settings(server.url(), Duration::from_secs(3600)))
        .await
        .expect("load");
    // The very first unknown kids arrive together: they wait for one fetch instead of
    // each starting their own.
    let burst: Vec<_> = (0..50)
        .map(|i| {
            let auth = auth.clone();
            let header = bearer_with_kid(&signer, &format!("made-up-{i}"));
            tokio::spawn(async move { auth.verify(Some(&header)).await })
        })
        .collect();
    for call in burst {
        assert_eq!(call.await.expect("join"), Err(AuthError::UnknownKey));
    }
    assert_eq!(
        server.requests(),
        2,
        "start, then one fetch for the whole burst"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_down_at_start_delays_calls_but_not_the_service() {
    let signer = key();
    // A port nobody listens on (taken, then released).
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let source: JwksSource = format!("http://{addr}/jwks").parse().expect("source");
    let auth = Authenticator::load(&settings(source, Duration::from_secs(3600)))
        .await
        .expect("a JWKS URL that does not answer does not stop the service");

    // Until the keys arrive, calls are told to come back (UNAVAILABLE), not that
    // their token is bad.
    let refused = auth.verify(Some(&bearer(&signer, "alice"))).await;
    assert_eq!(refused, Err(AuthError::KeysUnavailable));
    assert_eq!(
        refused.unwrap_err().to_status().code(),
        tonic::Code::Unavailable
    );
    // Within MIN_REFRESH_GAP of that failed fetch, no new one is tried.
    assert_eq!(
        auth.verify(Some(&bearer(&signer, "alice"))).await,
        Err(AuthError::KeysUnavailable)
    );

    // The identity provider comes up; the next call after the gap fetches the keys.
    let server = JwksServer::start_on(addr, jwks(&[&signer])).await;
    tokio::time::sleep(MIN_REFRESH_GAP + Duration::from_millis(100)).await;
    let caller = auth
        .verify(Some(&bearer(&signer, "alice")))
        .await
        .expect("keys fetched once the URL answers");
    assert_eq!(caller.subject().as_ref(), "alice");
    assert_eq!(server.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_refresh_follows_a_rotated_file() {
    let (old, new) = (key(), key());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = jwks_file(&dir, &jwks(&[&old]));
    let auth = Authenticator::load(&settings(
        JwksSource::File(path.clone()),
        Duration::from_millis(100),
    ))
    .await
    .expect("load");
    let stop = CancellationToken::new();
    let task = tokio::spawn(auth.clone().refresh_periodically(stop.clone()));

    // Spend the on-demand refresh first, so only the periodic one can pick up the
    // rotation within MIN_REFRESH_GAP.
    assert_eq!(
        auth.verify(Some(&bearer_with_kid(&old, "made-up"))).await,
        Err(AuthError::UnknownKey)
    );
    let started = std::time::Instant::now();
    write(&path, &jwks(&[&new]));

    let deadline = started + Duration::from_secs(5);
    loop {
        match auth.verify(Some(&bearer(&new, "bob"))).await {
            Ok(caller) => {
                assert_eq!(caller.subject().as_ref(), "bob");
                break;
            }
            Err(AuthError::UnknownKey) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the rotated key was not picked up: {e}"),
        }
    }
    assert!(
        started.elapsed() < MIN_REFRESH_GAP,
        "picked up by the periodic refresh, not an on-demand one"
    );
    assert_eq!(
        auth.verify(Some(&bearer(&old, "alice"))).await,
        Err(AuthError::UnknownKey),
        "the retired key is gone"
    );

    // A broken file keeps the keys already loaded.
    write(&path, "not json");
    tokio::time::sleep(Duration::from_millis(300)).await;
    auth.verify(Some(&bearer(&new, "bob")))
        .await
        .expect("keys kept through a failed refresh");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the refresh task stops when told")
        .expect("join");
}

#[tokio::test]
async fn roles_and_talents_can_come_from_nested_claims() {
    let key = key();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&key])).expect("write JWKS");
    let mut keycloak = settings(JwksSource::File(path), Duration::from_secs(600));
    keycloak.auth_roles_claim = "realm_access.roles".parse().expect("claim path");
    keycloak.auth_talents_claim = "talentshare.talents".parse().expect("claim path");
    let auth = Authenticator::load(&keycloak).await.expect("load");

    let token = |claims: serde_json::Value| {
        let now = jsonwebtoken::get_current_timestamp();
        let mut all = serde_json::json!({
            "iss": key.issuer(), "aud": key.audience(), "sub": "lee",
            "iat": now, "exp": now + 600,
        });
        all.as_object_mut()
            .expect("object")
            .extend(claims.as_object().expect("object").clone());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(key.kid().to_owned());
        let jwt = jsonwebtoken::encode(&header, &all, key.encoding_key()).expect("sign");
        format!("Bearer {jwt}").into_bytes()
    };

    let manager = auth
        .verify(Some(&token(serde_json::json!({
            "realm_access": {"roles": ["offline_access", "manager"]},
            "talentshare": {"talents": ["t-1", "t-2"]},
        }))))
        .await
        .expect("a manager by the nested claims");
    assert!(manager.manages("t-2") && !manager.manages("t-3"));
    // The top-level names mean nothing once the paths point elsewhere.
    let customer = auth
        .verify(Some(&token(serde_json::json!({"roles": ["manager"]}))))
        .await
        .expect("a customer");
    assert!(manager.manager().is_ok() && customer.manager().is_err());
    let err = auth
        .verify(Some(&token(
            serde_json::json!({"realm_access": {"roles": "manager"}}),
        )))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::Claims("`realm_access.roles` must be a list of strings".into())
    );
    assert!(
        "realm_access..roles"
            .parse::<platform::auth::ClaimPath>()
            .is_err()
    );
    assert!("".parse::<platform::auth::ClaimPath>().is_err());
}
