# syntax=docker/dockerfile:1
#
# The Glint image: the `glint` binary as entrypoint, a subcommand as command.
#
#   docker build -t glint .                      (BuildKit: the default builder since Docker 23)
#   docker run --rm -v "$PWD:/in:ro" glint inspect /in/disk.qcow2
#
# docker-compose.yml builds it and runs the production shape (api, worker, migrate). With no
# arguments the container runs `glint serve` with the built-in defaults: SQLite and images under
# /var/lib/glint/data and no-auth on 127.0.0.1:9292, i.e. reachable only from inside the
# container. To listen on the network set GLINT__SERVER__BIND=0.0.0.0:9292, and, while auth is
# no-auth (every caller is an admin), GLINT__AUTH__ALLOW_NOAUTH_ON_NON_LOOPBACK=true: never on a
# network that untrusted clients reach.

ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

# ---- build ----------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The registry and target/ live in BuildKit cache mounts, so a rebuild after a source change
# recompiles only the changed crates. target/ is not in the image layer, hence the copy to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin glint \
    && install -D -m 0755 target/release/glint /out/glint

# ---- runtime --------------------------------------------------------------------------------
# The same Debian release as the builder (glibc). Disk formats are pure Rust (no qemu-img) and
# SQLite is bundled; ca-certificates is the root store for HTTPS (web-download, S3 stores).
FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates unpinned on purpose: it must follow the release's updates. libssl3 is the
# libcrypto the image digests come from (the openssl crate links it).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so shared storage (NFS exports of images/ and staging/) can grant it access.
# The directories exist, owned by glint, so a named volume mounted on them starts out writable.
RUN groupadd --system --gid 10001 glint \
    && useradd --system --uid 10001 --gid glint --home-dir /var/lib/glint --no-create-home \
        --shell /usr/sbin/nologin glint \
    && install -d -o glint -g glint -m 0750 \
        /var/lib/glint /var/lib/glint/images /var/lib/glint/staging /var/lib/glint/data
COPY --from=build /out/glint /usr/local/bin/glint
# Every key with its default, for reference: docker run --rm --entrypoint cat glint /usr/share/doc/glint/glint.toml
COPY etc/glint.toml /usr/share/doc/glint/glint.toml
# The default metadefs catalog is compiled into the binary; the files are here to read, edit
# and re-load: docker run ... glint metadefs load /usr/share/glint/metadefs
COPY etc/metadefs /usr/share/glint/metadefs
USER 10001:10001
WORKDIR /var/lib/glint
EXPOSE 9292
# glint stops cleanly on SIGTERM (docker stop), finishing the requests in flight.
ENTRYPOINT ["glint"]
CMD ["serve"]
