# Multi-stage build of the `warden` server (and the `client-sim` load tool): compile in the Rust
# image, run on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p warden --bin warden -p client-sim --bin client-sim

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/warden warden && mkdir -p /var/lib/warden \
    && chown warden /var/lib/warden
COPY --from=build /src/target/release/warden /src/target/release/client-sim /usr/local/bin/
USER warden
WORKDIR /var/lib/warden
EXPOSE 7350
# Listen on all interfaces inside the container; the store comes from WARDEN_MONGODB_URI.
ENV WARDEN_LISTEN=0.0.0.0:7350 WARDEN_DATA_DIR=/var/lib/warden
ENTRYPOINT ["warden"]
CMD ["serve"]
