# syntax=docker/dockerfile:1
#
# One image for all of talentshare: the four service binaries (order-svc, payment-svc,
# reservation-svc, mypage-svc) and the `talentshare` command (`talentshare probe` is what
# the Helm test hook runs). The Helm chart picks the binary per Deployment with `command:`.
#
#   docker build -t talentshare:0.1.0 .
#
# Build stage: the Rust toolchain the workspace asks for (rust-version = 1.95).
# protoc comes from the protoc-bin-vendored crate, so no system protobuf is needed.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        --bin order-svc --bin payment-svc --bin reservation-svc --bin mypage-svc --bin talentshare \
 && mkdir -p /out \
 && cp target/release/order-svc target/release/payment-svc target/release/reservation-svc \
       target/release/mypage-svc target/release/talentshare /out/

# Runtime stage: distroless with glibc, libgcc and CA certificates, no shell, no package
# manager. TLS is rustls, so nothing else is needed at run time.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# The distroless `nonroot` user, by number so Kubernetes can verify runAsNonRoot.
USER 65532:65532
WORKDIR /home/nonroot
# Ports of order, payment, reservation and mypage (each binary listens on its own).
EXPOSE 50051 50052 50053 50054
# The chart always sets DATABASE_URL (PostgreSQL), so the services write nothing to the
# root filesystem and run with readOnlyRootFilesystem. Without DATABASE_URL they fall back
# to SQLite files under DATA_DIR (default `data`, i.e. /home/nonroot/data): mount a volume.
ENTRYPOINT ["/usr/local/bin/talentshare"]
CMD ["--help"]
