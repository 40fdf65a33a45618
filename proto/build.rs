//! Compiles talentshare's `.proto` contracts into Rust (prost messages plus tonic
//! clients and servers) and writes their file descriptor set for gRPC server
//! reflection.
//!
//! `protoc` comes from `protoc-bin-vendored`, so building needs no system
//! protobuf install; the well-known types (`google/protobuf/timestamp.proto`)
//! come from the include directory that ships with it.

use std::{env, io, path::PathBuf};

/// The contract files, relative to this crate's root (which is also the protoc
/// include root, so import paths read `talentshare/order/v1/order.proto`).
const PROTOS: &[&str] = &[
    "talentshare/common/v1/types.proto",
    "talentshare/common/v1/errors.proto",
    "talentshare/order/v1/order.proto",
    "talentshare/payment/v1/payment.proto",
    "talentshare/reservation/v1/reservation.proto",
    "talentshare/mypage/v1/mypage.proto",
    "talentshare/events/v1/events.proto",
];

/// Messages that carry a card number. prost's derived `Debug` would print the full
/// number wherever a request is logged (`{:?}` in a span, an error, a panic), so
/// their `Debug` is written by hand in `src/redact.rs`, masking it. A new message
/// with a `card_number` belongs here too (the `redact` test checks the list).
const CARD_MESSAGES: &[&str] = &[
    ".talentshare.order.v1.PlaceOrderRequest",
    ".talentshare.payment.v1.PayRequest",
];

/// File name of the descriptor set in `OUT_DIR`; `src/lib.rs` includes it.
const DESCRIPTOR_SET: &str = "talentshare_descriptor.bin";

fn main() -> io::Result<()> {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(io::Error::other)?;
    let wkt_include = protoc_bin_vendored::include_path().map_err(io::Error::other)?;

    // prost-build reads the compiler from PROTOC. Handing it to the `Config`
    // directly does the same without `env::set_var`, which is `unsafe` in
    // edition 2024.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(&protoc);

    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| manifest_dir.join(p)).collect();
    let includes = vec![manifest_dir.clone(), wkt_include];

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .skip_debug(CARD_MESSAGES)
        .file_descriptor_set_path(out_dir.join(DESCRIPTOR_SET))
        .compile_with_config(config, &protos, &includes)?;

    // prost-build emits no rerun-if-changed lines (tonic-prost-build 0.14's
    // `emit_rerun_if_changed` is stored but unused), so name the inputs here.
    // Cargo scans a directory recursively, which also catches new files.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("talentshare").display()
    );
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}
