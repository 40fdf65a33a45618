//! End-user authentication at the real order-svc: every kind of bad token is refused
//! with UNAUTHENTICATED naming the failed check (never echoing the token), stores
//! nothing and charges nothing, and leaves the service serving good tokens; an RSA key
//! in the JWKS next to the ES256 one makes RS256 tokens work too.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use platform::auth::dev::{DevIssuer, TokenSpec};
use serde_json::{Value, json};
use talentshare_proto::order::{
    GetOrderRequest, OrderStatus, PlaceOrderRequest, order_service_client::OrderServiceClient,
};
use testkit::{Backend, Bearer, TEST_ONLY_RSA_KEY_PEM, TestIdentity};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;

use crate::helpers::{
    APPROVED_CARD, CUSTOMER, Options, TestApp, place_request, spawn_app, spawn_app_trusting,
};

/// The customer every bad token claims to be: nothing may ever be stored or charged
/// for them.
const INTRUDER: &str = "intruder";
/// The `kid` of the test RSA key in the JWKS.
const RSA_KID: &str = "test-only-rsa";

/// A bad `authorization` value and the words the refusal must contain.
struct Case {
    what: &'static str,
    /// The whole metadata value; `None` sends no `authorization` at all.
    header: Option<String>,
    expect: &'static str,
}

impl Case {
    fn new(what: &'static str, header: Option<String>, expect: &'static str) -> Self {
        Self {
            what,
            header,
            expect,
        }
    }

    fn bearer(what: &'static str, token: String, expect: &'static str) -> Self {
        Self::new(what, Some(format!("Bearer {token}")), expect)
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims order-svc would accept from `identity`, for `sub`; cases spoil one field.
fn good_claims(identity: &TestIdentity, sub: &str) -> Value {
    let now = now();
    json!({
        "iss": identity.issuer().issuer(),
        "aud": identity.issuer().audience(),
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    })
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("sign a test token")
}

/// A token signed with the key order-svc trusts, under its `kid`.
fn signed(identity: &TestIdentity, claims: &Value) -> String {
    let dev = identity.issuer();
    sign(
        &header(Algorithm::ES256, Some(dev.kid())),
        claims,
        dev.encoding_key(),
    )
}

/// A token from raw header and claims JSON with the given signature part, built by
/// hand because no library produces the malformed ones.
fn by_hand(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(TEST_ONLY_RSA_KEY_PEM.as_bytes()).expect("the test RSA key")
}

/// The public half of the test RSA key as a JWK pinned to RS256.
fn rsa_jwk() -> Value {
    let mut jwk = Jwk::from_encoding_key(&rsa_key(), Algorithm::RS256).expect("RSA JWK");
    jwk.common.key_id = Some(RSA_KID.into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(jwk).expect("JWK JSON")
}

/// The trusted EC public key as PEM: what an attacker would feed an HMAC verifier.
fn public_key_pem(identity: &TestIdentity) -> String {
    let jwks: Value = serde_json::from_str(identity.issuer().jwks()).expect("JWKS JSON");
    let key = &jwks["keys"][0];
    // Only the key's own members: p256 refuses the JWKS's `kid`, `alg` and `use`.
    let bare = json!({ "kty": key["kty"], "crv": key["crv"], "x": key["x"], "y": key["y"] });
    p256::PublicKey::from_jwk_str(&bare.to_string())
        .expect("the dev key is a P-256 JWK")
        .to_public_key_pem(LineEnding::LF)
        .expect("PEM")
}

fn cases(identity: &TestIdentity) -> Vec<Case> {
    let dev = identity.issuer();
    let good = good_claims(identity, INTRUDER);
    let with = |changes: &[(&str, Value)]| {
        let mut claims = good.clone();
        for (field, value) in changes {
            claims[*field] = value.clone();
        }
        claims
    };
    let without = |field: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().expect("object").remove(field);
        claims
    };
    let es256 = json!({ "alg": "ES256", "typ": "JWT", "kid": dev.kid() });
    let valid = signed(identity, &good);
    let (valid_header, _) = valid.split_once('.').expect("a JWT");
    let valid_signature = valid.rsplit('.').next().expect("a JWT");

    // Larger than MAX_TOKEN_BYTES (8 KiB) yet under HTTP/2's 16 KiB header limit, and
    // otherwise perfectly valid: refused for its size alone, before any parsing.
    let talents: Vec<String> = (0..600).map(|i| format!("talent-{i:05}")).collect();
    let talents: Vec<&str> = talents.iter().map(String::as_str).collect();
    let oversized = dev
        .mint(
            &TokenSpec::manager(INTRUDER, &talents),
            std::time::Duration::from_secs(3600),
        )
        .expect("mint");
    assert!(
        (8 * 1024 + 1..15 * 1024).contains(&oversized.len()),
        "{}",
        oversized.len()
    );

    // Another key under the trusted key's `kid`: only the signature can tell.
    let impostor = DevIssuer::generate().expect("another key");

    vec![
        Case::new("no authorization metadata", None, "missing `authorization"),
        Case::new(
            "Basic credentials",
            Some(format!("Basic {}", B64.encode("intruder:hunter2"))),
            "must be `Bearer <token>`",
        ),
        Case::new("a bare `Bearer`", Some("Bearer".into()), "must be `Bearer"),
        Case::bearer(
            "two parts",
            format!("{valid_header}.{valid_signature}"),
            "three dot-separated parts",
        ),
        Case::bearer(
            "four parts",
            format!("{valid}.{valid_signature}"),
            "three dot-separated parts",
        ),
        Case::bearer(
            "a header that is not base64url",
            format!("!!{}", &valid[2..]),
            "the header is not base64url",
        ),
        Case::bearer(
            "a header that is not JSON",
            format!(
                "{}.{}",
                B64.encode("not json"),
                valid.split_once('.').unwrap().1
            ),
            "the header is not a JWT header",
        ),
        Case::bearer("larger than 8 KiB", oversized, "larger than 8192 bytes"),
        Case::bearer(
            "expired an hour ago (beyond the leeway)",
            signed(
                identity,
                &with(&[("exp", json!(now() - 3600)), ("nbf", json!(now() - 7200))]),
            ),
            "has expired",
        ),
        Case::bearer(
            "valid only from an hour on (beyond the leeway)",
            signed(identity, &with(&[("nbf", json!(now() + 3600))])),
            "not valid yet (`nbf`)",
        ),
        Case::bearer(
            "another issuer",
            signed(
                identity,
                &with(&[("iss", json!("https://evil.example.com"))]),
            ),
            "wrong issuer",
        ),
        Case::bearer(
            "another audience",
            signed(identity, &with(&[("aud", json!("some-other-api"))])),
            "wrong audience",
        ),
        Case::bearer(
            "no `sub`",
            signed(identity, &without("sub")),
            "lacks the `sub` claim",
        ),
        Case::bearer(
            "a `sub` that is no id",
            signed(identity, &with(&[("sub", json!("../../etc/passwd"))])),
            "`sub` must be an id",
        ),
        Case::bearer(
            "`roles` that is no list",
            signed(identity, &with(&[("roles", json!("manager"))])),
            "`roles` must be a list of strings",
        ),
        Case::bearer(
            "expired, with odd extra claims too (expiry is named first)",
            signed(
                identity,
                &with(&[
                    ("exp", json!(now() - 3600)),
                    ("nbf", json!(now() - 7200)),
                    ("talents", json!(42)),
                ]),
            ),
            "has expired",
        ),
        Case::bearer(
            "an unknown kid",
            sign(
                &header(Algorithm::ES256, Some("no-such-key")),
                &good,
                dev.encoding_key(),
            ),
            "unknown key (`kid` not in the JWKS)",
        ),
        Case::bearer(
            "no kid",
            sign(&header(Algorithm::ES256, None), &good, dev.encoding_key()),
            "has no `kid`",
        ),
        Case::bearer(
            "another key under the trusted kid",
            sign(
                &header(Algorithm::ES256, Some(dev.kid())),
                &good,
                impostor.encoding_key(),
            ),
            "signature does not verify",
        ),
        Case::bearer(
            "claims changed after signing",
            by_hand(
                &es256,
                &with(&[("sub", json!("someone-else"))]),
                valid_signature,
            ),
            "signature does not verify",
        ),
        Case::bearer(
            "alg none, unsigned",
            by_hand(&json!({ "alg": "none", "kid": dev.kid() }), &good, ""),
            "algorithm `none` is not accepted",
        ),
        Case::bearer(
            "HS256 keyed with the JWKS JSON (algorithm confusion)",
            sign(
                &header(Algorithm::HS256, Some(dev.kid())),
                &good,
                &EncodingKey::from_secret(dev.jwks().as_bytes()),
            ),
            "algorithm `HS256` is not accepted",
        ),
        Case::bearer(
            "HS256 keyed with the public key PEM (algorithm confusion)",
            sign(
                &header(Algorithm::HS256, Some(dev.kid())),
                &good,
                &EncodingKey::from_secret(public_key_pem(identity).as_bytes()),
            ),
            "algorithm `HS256` is not accepted",
        ),
        Case::bearer(
            "RS256 under the EC key's kid",
            sign(
                &header(Algorithm::RS256, Some(dev.kid())),
                &good,
                &rsa_key(),
            ),
            "does not match its signing key",
        ),
    ]
}

/// A PlaceOrder for [`INTRUDER`], with `authorization` as the case says.
fn intruder_request(case: &Case) -> tonic::Request<PlaceOrderRequest> {
    let mut req = place_request(APPROVED_CARD);
    req.customer_id = INTRUDER.into();
    let mut request = tonic::Request::new(req);
    if let Some(value) = &case.header {
        request.metadata_mut().insert(
            "authorization",
            value.parse().expect("ASCII metadata value"),
        );
    }
    request
}

async fn assert_nothing_stored(app: &mut TestApp) {
    assert!(app.order_rows().await.is_empty(), "no order row");
    assert_eq!(app.outbox_len().await, 0, "no event waiting in the outbox");
    assert!(
        app.payments_of(INTRUDER).await.is_empty(),
        "nothing charged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_token_is_refused_naming_the_check() {
    let mut app = spawn_app(Backend::Postgres).await;
    let mut anonymous = OrderServiceClient::new(app.channel.clone());
    let cases = cases(&app.identity);

    let mut failures = Vec::new();
    for case in &cases {
        let status = match anonymous.place_order(intruder_request(case)).await {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.what));
                continue;
            }
            Err(status) => status,
        };
        if status.code() != Code::Unauthenticated {
            failures.push(format!(
                "{}: {:?} {}",
                case.what,
                status.code(),
                status.message()
            ));
            continue;
        }
        let message = status.message();
        let reason = testkit::details(&status).reason;
        let expected = if message.contains("missing `authorization") {
            "TOKEN_MISSING"
        } else if message.contains("expired") {
            "TOKEN_EXPIRED"
        } else {
            "TOKEN_INVALID"
        };
        if reason != expected {
            failures.push(format!("{}: reason {reason}, not {expected}", case.what));
        }
        if !message.contains(case.expect) {
            failures.push(format!(
                "{}: `{message}` does not say `{}`",
                case.what, case.expect
            ));
        }
        // Neither the token nor any of its parts is echoed back (parts too short to
        // tell apart from ordinary words are not looked for).
        if let Some((_, token)) = case.header.as_deref().and_then(|v| v.split_once(' ')) {
            let echoed = std::iter::once(token)
                .chain(token.split('.'))
                .filter(|part| part.len() >= 8)
                .any(|part| message.contains(part));
            if echoed {
                failures.push(format!("{}: `{message}` echoes the token", case.what));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A read is refused the same way as a write.
    let err = anonymous
        .get_order(GetOrderRequest {
            order_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    assert_nothing_stored(&mut app).await;

    // The service is none the worse: a good token places an order.
    let order = app.place(place_request(APPROVED_CARD)).await;
    assert_eq!(order.status, OrderStatus::Paid as i32);
    assert_eq!(order.customer_id, CUSTOMER);
    assert_eq!(app.order_rows().await.len(), 1);
    assert!(app.payments_of(INTRUDER).await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expired_within_the_leeway_is_still_accepted() {
    let app = spawn_app(Backend::Postgres).await;
    // The default AUTH_LEEWAY is 30 s: clocks a few seconds apart cause no refusal,
    // either way.
    for (field, value) in [("exp", now() - 5), ("nbf", now() + 5)] {
        let mut claims = good_claims(&app.identity, CUSTOMER);
        claims[field] = json!(value);
        let token = signed(&app.identity, &claims);
        let mut client = OrderServiceClient::new(InterceptedService::new(
            app.channel.clone(),
            Bearer::new(&token),
        ));
        let order = client
            .place_order(place_request(APPROVED_CARD))
            .await
            .unwrap_or_else(|e| panic!("`{field}` within the leeway refused: {e}"))
            .into_inner()
            .order
            .expect("order");
        assert_eq!(order.status, OrderStatus::Paid as i32);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_with_an_rsa_key_too_makes_rs256_tokens_work_next_to_es256() {
    let identity = TestIdentity::create();
    identity.add_jwk(rsa_jwk());
    let mut app = spawn_app_trusting(Backend::Postgres, Options::default(), identity).await;

    // ES256, the development key.
    let es = app.place(place_request(APPROVED_CARD)).await;

    // RS256, the test RSA key, for the same customer: sees the ES256 order too.
    let rs_token = sign(
        &header(Algorithm::RS256, Some(RSA_KID)),
        &good_claims(&app.identity, CUSTOMER),
        &rsa_key(),
    );
    let mut rs = OrderServiceClient::new(InterceptedService::new(
        app.channel.clone(),
        Bearer::new(&rs_token),
    ));
    let placed = rs
        .place_order(place_request(APPROVED_CARD))
        .await
        .expect("RS256 accepted")
        .into_inner()
        .order
        .expect("order");
    assert_eq!(placed.status, OrderStatus::Paid as i32);
    let seen = rs
        .get_order(GetOrderRequest {
            order_id: es.order_id.clone(),
        })
        .await
        .expect("RS256 reads the ES256 order of the same customer")
        .into_inner()
        .order
        .expect("order");
    assert_eq!(seen.order_id, es.order_id);

    // The JWK pins RS256: the same RSA key under PS256 is refused.
    let ps_token = sign(
        &header(Algorithm::PS256, Some(RSA_KID)),
        &good_claims(&app.identity, CUSTOMER),
        &rsa_key(),
    );
    let mut ps = OrderServiceClient::new(InterceptedService::new(
        app.channel.clone(),
        Bearer::new(&ps_token),
    ));
    let err = ps
        .place_order(place_request(APPROVED_CARD))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("does not match its signing key"),
        "{}",
        err.message()
    );
    assert_eq!(app.order_rows().await.len(), 2);
    app.stop().await;
}
