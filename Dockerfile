# syntax=docker/dockerfile:1
# oidc-logout: the receiver binary plus the two example programs, on a distroless base, non-root.
#   docker build -t oidc-logout .
#   docker run --rm -p 8080:8080 -e OIDC_LOGOUT_ISSUER=… -e OIDC_LOGOUT_CLIENT_ID=… \
#     -e OIDC_LOGOUT_REDIS_URL=redis://redis:6379/ oidc-logout
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin oidc-logout --example app --example api \
    && mkdir -p /out \
    && cp target/release/oidc-logout /out/oidc-logout \
    && cp target/release/examples/app /out/oidc-logout-example-app \
    && cp target/release/examples/api /out/oidc-logout-example-api

# glibc, libgcc and CA certificates; no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
ENV OIDC_LOGOUT_LISTEN=0.0.0.0:8080
EXPOSE 8080 9090
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/oidc-logout"]
CMD ["serve"]
