# syntax=docker/dockerfile:1
# The jobq server, plus the example email worker the Helm chart can run.
# Build: docker build -t jobq:0.1.0 .
# protoc comes from the protoc-bin-vendored crate, so the build image needs
# nothing beyond the Rust toolchain.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin jobq --example email_worker \
 && install -D target/release/jobq /out/jobq \
 && install -D target/release/examples/email_worker /out/jobq-email-worker

# glibc and libgcc only, no shell; uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# Loopback is the binary's default; in a container the ports must be reachable.
# One malloc arena keeps resident memory near the memory budget (README,
# Limits and back-pressure).
ENV JOBQ_LISTEN=0.0.0.0:50051 \
    JOBQ_METRICS_LISTEN=0.0.0.0:9090 \
    JOBQ_LOG_FORMAT=json \
    MALLOC_ARENA_MAX=1
# The dashboard (8080) stays on the container's loopback until tokens are
# set: then JOBQ_WEB_LISTEN=0.0.0.0:8080 serves it behind its login.
EXPOSE 50051 9090 8080
USER 65532:65532
# jobq drains on SIGTERM: health turns NOT_SERVING, then up to
# JOBQ_SHUTDOWN_GRACE for calls in flight.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/jobq"]
CMD ["serve"]
