# ferry as a container: `ferry run` watching /config, DuckDB files in /data.
#
#   docker build -t ferry .
#   docker run -v "$PWD/ferry.d:/config:ro" -v ferry-data:/data \
#     -e FERRY_API_TOKEN=change-me -p 8080:8080 ferry
#
# The server listens on 0.0.0.0:8080 inside the container, and ferry
# refuses a non-loopback address unless FERRY_API_TOKEN is set (it guards
# POST /flows/{name}/run). In a Kubernetes pod, where the sidecar shares
# the application's network namespace, FERRY_LISTEN=127.0.0.1:8080 needs
# no token.

# --- build ---------------------------------------------------------------
FROM rust:1.95-slim-trixie AS build

# DuckDB's bundled C++ sources need a C++ compiler; aws-lc (TLS and JWT
# signing) needs cmake and perl.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make cmake perl pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The whole repository minus .dockerignore: the build embeds files from
# specs/ (built-in connectors) besides src/.
COPY . .

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ferry \
    && cp target/release/ferry /usr/local/bin/ferry

# --- runtime -------------------------------------------------------------
FROM debian:trixie-slim

# ca-certificates for HTTPS APIs; curl for the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin ferry \
    && mkdir -p /config /data \
    && chown ferry:ferry /data

COPY --from=build /usr/local/bin/ferry /usr/local/bin/ferry

USER ferry
# Relative DuckDB paths (duckdb://./warehouse.duckdb) land in /data.
WORKDIR /data
ENV FERRY_CONFIG=/config \
    FERRY_LISTEN=0.0.0.0:8080 \
    FERRY_LOG_FORMAT=json

VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

ENTRYPOINT ["ferry"]
CMD ["run"]
