# Multi-stage build of the `warden` server: compile in the Rust image, run on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin warden

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/warden warden && mkdir -p /var/lib/warden \
    && chown warden /var/lib/warden
COPY --from=build /src/target/release/warden /usr/local/bin/warden
USER warden
WORKDIR /var/lib/warden
EXPOSE 7350
# Listen on all interfaces inside the container; the store comes from WARDEN_MONGODB_URI.
ENV WARDEN_LISTEN=0.0.0.0:7350 WARDEN_DATA_DIR=/var/lib/warden
ENTRYPOINT ["warden"]
CMD ["serve"]
