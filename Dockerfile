# syntax=docker/dockerfile:1
# tether: a static (musl) binary on a distroless base, running as UID 65532.
#   docker build -t tether --build-arg TETHER_BUILD_COMMIT="$(git rev-parse --short=12 HEAD)" .
#   (--build-arg PGO=false: one plain release build instead of the profile-guided one)
#   docker run --rm tether --help

# ---- build -------------------------------------------------------------------
# Exact versions, so a rebuild of the same commit uses the same toolchain and base. To
# update the runtime digest: `crane digest gcr.io/distroless/static-debian12:nonroot`.
FROM rust:1.95.0-bookworm AS build
ARG RUST_TARGET=x86_64-unknown-linux-musl
# `tether version` reports these; .git is not in the build context. SOURCE_DATE_EPOCH, when
# given, is the build date (reproducible builds).
ARG TETHER_BUILD_COMMIT=unknown
ARG SOURCE_DATE_EPOCH
# Profile-guided optimisation (scripts/build-pgo.sh: an instrumented build, a training run
# over bench/fixtures, the optimised build): about 18 % less CPU per admission request
# (bench/RESULTS.md, round ten). PGO=false builds once, without it.
ARG PGO=true
# musl-tools: a musl C compiler for crates that build C (e.g. ring). curl and llvm-tools (its
# llvm-profdata matches rustc's LLVM): the PGO training run and the merge of its counts.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools curl \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "${RUST_TARGET}" \
    && rustup component add llvm-tools
WORKDIR /src
COPY . .
# --locked: build exactly Cargo.lock. The cache mounts only speed up rebuilds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    if [ "${PGO}" = "true" ]; then \
        bash scripts/build-pgo.sh --target "${RUST_TARGET}" --out /out/tether; \
    else \
        cargo build --release --locked --target "${RUST_TARGET}" \
        && install -D -m 0755 "target/${RUST_TARGET}/release/tether" /out/tether; \
    fi

# ---- runtime -----------------------------------------------------------------
# No shell, no package manager; CA certificates and /etc/passwd for nonroot only.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/tether /usr/local/bin/tether
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# 8443: HTTPS admission (/mutate, /validate, /healthz, /readyz); 9090: /metrics.
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["serve"]
