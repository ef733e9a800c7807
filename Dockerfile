# ackstorm's container image: the tester (and the reference server) as one static-ish binary
# on a distroless runtime, running as a non-root user. Used by deploy/kubernetes/ (one pod per
# shard); see "Run across machines" in the README.
#
#   docker build -t ackstorm:dev .
#   docker run --rm ackstorm:dev run /profiles/smoke.toml --users 200 --duration 10s
#
# Two stages: `builder` compiles with the full toolchain; the final stage holds only the binary,
# the shipped profiles and what the binary links against (glibc, libgcc: distroless "cc"). The
# builder's Debian release must match the runtime's (bookworm = Debian 12): the binary links
# against the builder's glibc.

# ---- build ----------------------------------------------------------------------------------
ARG RUST_VERSION=1
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /build

# Dependencies first, in their own layer: compiled against stub sources, so that a change to
# src/ rebuilds only ackstorm itself. The stubs cover every target Cargo.toml declares (cargo
# refuses a manifest whose [[bench]] files are missing). rust:slim has gcc and libc6-dev, all
# that *ring* needs (no cmake, no OpenSSL: TLS is rustls).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for b in protocol routing socket_chains; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo build --release --locked --bin ackstorm \
 && rm -rf src benches

# The real sources. `touch` makes cargo see them as newer than the stubs' build.
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin ackstorm \
 && install -D -m 0755 target/release/ackstorm /out/ackstorm

# ---- runtime --------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates (read by rustls-native-certs for wss:// targets),
# no shell, no package manager. The :nonroot tag's user is uid/gid 65532 with home
# /home/nonroot.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/ackstorm /usr/local/bin/ackstorm
COPY profiles /profiles
# Numeric, so Kubernetes' `runAsNonRoot: true` can verify it without reading /etc/passwd. The
# manifests in deploy/kubernetes/ set the same uid (and fsGroup, for the results volume).
USER 65532:65532
# Writable for `docker run` without --results (the default results/ lands here); under
# Kubernetes the root filesystem is read-only and results go to the /results volume.
WORKDIR /home/nonroot
# Live metrics of `run --metrics-listen 0.0.0.0:9464`, and `serve`'s default port.
EXPOSE 9464 9400
ENTRYPOINT ["ackstorm"]
CMD ["--help"]
