//! gRPC-Web: a browser calls order-svc with no proxy. The same port answers gRPC-Web
//! over HTTP/1.1 (what `fetch` speaks), CORS admits exactly the configured origins
//! with the headers a gRPC-Web client sends and reads, and the end-user token is
//! checked as for gRPC. payment-svc, internal, does not speak HTTP/1.1 at all.

use std::net::SocketAddr;

use prost::Message;
use talentshare_proto::order::{GetOrderRequest, GetOrderResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{APPROVED_CARD, Options, place_request, spawn_app_with};
use testkit::Backend;

const ORIGIN: &str = "http://app.example.test:8080";
const PATH: &str = "/talentshare.order.v1.OrderService/GetOrder";

/// One HTTP/1.1 exchange on a fresh connection: the head (lower-cased) and the body.
async fn http1(addr: SocketAddr, request_head: String, body: &[u8]) -> (String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request_head.as_bytes())
        .await
        .expect("send head");
    stream.write_all(body).await.expect("send body");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    (head, answer[split..].to_vec())
}

fn preflight(addr: SocketAddr, origin: &str) -> String {
    format!(
        "OPTIONS {PATH} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: authorization,content-type,x-grpc-web,x-user-agent\r\n\
         Connection: close\r\n\r\n"
    )
}

/// A gRPC-Web call's body: one length-prefixed message frame.
fn frame(message: &impl Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// Undoes HTTP/1.1 chunked transfer coding.
fn unchunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                .expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The frames of a gRPC-Web response body: (flags, payload).
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_calls_order_svc_over_grpc_web_from_an_allowed_origin_only() {
    let mut app = spawn_app_with(
        Backend::Sqlite,
        Options {
            args: &["--cors-allowed-origins", ORIGIN],
            ..Default::default()
        },
    )
    .await;
    let order = app.place(place_request(APPROVED_CARD)).await;
    let addr = app.addr();

    // The preflight from the configured origin is admitted, with what gRPC-Web needs.
    let (head, _) = http1(addr, preflight(addr, ORIGIN), b"").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("access-control-allow-origin: {ORIGIN}")),
        "{head}"
    );
    for header in ["authorization", "content-type", "x-grpc-web"] {
        assert!(head.contains(header), "{header} allowed: {head}");
    }
    // Any other origin gets no CORS grant, so the browser refuses to send the call.
    let (head, _) = http1(addr, preflight(addr, "http://evil.example.test"), b"").await;
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    // The call itself, as a browser's fetch sends it.
    let body = frame(&GetOrderRequest {
        order_id: order.order_id.clone(),
    });
    let call = |token: Option<String>| {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        format!(
            "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {ORIGIN}\r\n{auth}\
             Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    let (head, raw) = http1(addr, call(Some(app.identity.customer("cust-1"))), &body).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/grpc-web"),
        "{head}"
    );
    assert!(
        head.contains(&format!("access-control-allow-origin: {ORIGIN}")),
        "{head}"
    );
    assert!(head.contains("access-control-expose-headers"), "{head}");
    let payload = if head.contains("transfer-encoding: chunked") {
        unchunk(&raw)
    } else {
        raw
    };
    let frames = frames(&payload);
    assert_eq!(frames.len(), 2, "a message and the trailers: {frames:?}");
    let got = GetOrderResponse::decode(frames[0].1.as_slice()).expect("a GetOrderResponse");
    assert_eq!(got.order.expect("the order").order_id, order.order_id);
    assert_eq!(frames[1].0 & 0x80, 0x80, "the trailer frame");
    let trailers = String::from_utf8_lossy(&frames[1].1).to_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // Without a token: UNAUTHENTICATED, its status readable by the page.
    let (head, _) = http1(addr, call(None), &body).await;
    assert!(head.contains("grpc-status: 16"), "{head}");
    assert!(head.contains("grpc-status-details-bin"), "{head}");

    // payment-svc is internal: no HTTP/1.1, so no gRPC-Web and no CORS.
    let payment = app.payment_addr();
    let (head, _) = http1(payment, preflight(payment, ORIGIN), b"").await;
    assert!(!head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    app.stop().await;
}
